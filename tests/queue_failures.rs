//! What happens when a job fails: backoff, discard after max attempts, "retry after",
//! "permanent", panics and timeouts (SPEC §4).

mod support;

use serde_json::Value;
use std::time::Duration;
use support::kinds::{Behaviour, TestCtx, registry, scripted};
use support::{count_in_state, start_worker, test_config, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_queue::{JobRow, Queue};

async fn setup() -> (TestDb, Queue, TestCtx) {
    let db = TestDb::new().await.expect("test database");
    let ctx = TestCtx::new(db.pool.clone()).await;
    let queue = Queue::new(db.pool.clone());
    (db, queue, ctx)
}

async fn wait_for_state(queue: &Queue, id: i64, state: &str, timeout: Duration) -> JobRow {
    wait_for(&format!("job {id} to be {state}"), timeout, || async {
        let job = queue.job(id, None).await.ok()?;
        (job.state.as_str() == state).then_some(job)
    })
    .await
}

/// Enqueue one scripted job, run a worker until the job reaches `state`, stop the worker.
async fn run_until(behaviour: Behaviour, state: &str) -> (TestDb, JobRow) {
    let (db, queue, ctx) = setup().await;
    let id = queue.enqueue(scripted(behaviour)).await.unwrap().id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    let job = wait_for_state(&queue, id, state, Duration::from_secs(10)).await;
    worker.stop().await;
    (db, job)
}

fn error_kinds(job: &JobRow) -> Vec<String> {
    job.errors
        .as_array()
        .expect("errors array")
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn failed_job_is_retried_with_backoff_then_discarded_after_max_attempts() {
    let (db, job) = run_until(Behaviour::Fail, "discarded").await;

    assert_eq!(job.attempt, 3);
    assert_eq!(error_kinds(&job), ["error", "error", "error"]);
    // Each retry waited at least its backoff (200 ms × attempt) after the failed attempt.
    let runs: Vec<(i32, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT attempt, at FROM test_runs WHERE job_id = $1 ORDER BY at")
            .bind(job.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    for pair in runs.windows(2) {
        let waited = (pair[1].1 - pair[0].1).to_std().unwrap();
        let backoff = Duration::from_millis(200 * pair[0].0 as u64);
        assert!(
            waited >= backoff,
            "retry after {waited:?}, backoff {backoff:?}"
        );
        assert!(
            waited < backoff + Duration::from_secs(2),
            "retry came late: {waited:?}"
        );
    }
}

#[tokio::test]
async fn job_that_succeeds_on_a_later_attempt_completes_with_its_error_history() {
    let (_db, job) = run_until(Behaviour::FailUntilAttempt(2), "completed").await;
    assert_eq!(job.attempt, 2);
    assert_eq!(job.errors.as_array().unwrap().len(), 1);
    assert_eq!(job.errors[0]["attempt"], 1);
}

#[tokio::test]
async fn retry_after_holds_the_job_back_for_the_requested_delay() {
    let (db, queue, ctx) = setup().await;
    let id = queue
        .enqueue(scripted(Behaviour::RetryAfterSecs(60)))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    let job = wait_for_state(&queue, id, "retryable", Duration::from_secs(10)).await;
    let attempted_at = job.attempted_at.expect("attempted");
    let delay = (job.scheduled_at - attempted_at).to_std().unwrap();
    assert!(
        delay >= Duration::from_secs(60) && delay < Duration::from_secs(61),
        "{delay:?}"
    );
    // A maintenance pass (the only thing that makes waiting jobs available) leaves it waiting.
    queue.maintain(Some(Duration::from_secs(60))).await.unwrap();
    assert_eq!(
        queue.job(id, None).await.unwrap().state.as_str(),
        "retryable"
    );
    worker.stop().await;
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM test_runs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 1, "a job told to retry after 60 s ran again early");
    assert_eq!(
        error_kinds(&queue.job(id, None).await.unwrap()),
        ["retry_after"]
    );
}

#[tokio::test]
async fn permanent_error_discards_without_retrying() {
    let (_db, job) = run_until(Behaviour::Permanent, "discarded").await;
    assert_eq!(job.attempt, 1);
    assert_eq!(error_kinds(&job), ["permanent"]);
    assert_eq!(job.errors[0]["error"], Value::from("this can never work"));
}

#[tokio::test]
async fn panic_is_a_failed_attempt_and_the_worker_keeps_working() {
    let (db, queue, ctx) = setup().await;
    let panicking = queue.enqueue(scripted(Behaviour::Panic)).await.unwrap().id;
    let fine = queue
        .enqueue(scripted(Behaviour::Succeed))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    wait_for_state(&queue, fine, "completed", Duration::from_secs(10)).await;
    let job = wait_for_state(&queue, panicking, "discarded", Duration::from_secs(10)).await;
    worker.stop().await;
    assert_eq!(job.attempt, 3);
    assert!(
        job.errors[0]["error"]
            .as_str()
            .unwrap()
            .contains("panicked: scripted panic")
    );
}

#[tokio::test]
async fn job_exceeding_its_timeout_is_failed_and_retried() {
    let (db, job) = run_until(Behaviour::Hang, "discarded").await;
    assert_eq!(job.attempt, 3);
    assert!(
        job.errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("timed out after 300ms")
    );
    assert_eq!(count_in_state(&db, "running").await, 0);
}

#[tokio::test]
async fn operator_retry_runs_a_job_waiting_for_its_retry_now() {
    let (db, queue, ctx) = setup().await;
    let id = queue
        .enqueue(scripted(Behaviour::RetryAfterSecs(3600)))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    wait_for_state(&queue, id, "retryable", Duration::from_secs(10)).await;

    // The returned row may already show the next attempt's outcome (the worker is woken at
    // once and this job asks for another hour every time), so the proof is the second run.
    queue.retry(id, None).await.unwrap();
    let runs = wait_for("the second attempt", Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE job_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .ok()?;
        (n == 2).then_some(n)
    })
    .await;
    worker.stop().await;
    assert_eq!(runs, 2, "retried long before its hour was up");
}

#[tokio::test]
async fn a_snoozed_job_runs_again_later_without_using_up_its_attempts() {
    // Five snoozes on a kind allowed three attempts: a retry would have discarded it.
    let (db, job) = run_until(Behaviour::SnoozeMs { ms: 50, times: 5 }, "completed").await;
    assert_eq!(job.attempt, 1, "snoozes are not attempts");
    assert_eq!(job.errors.as_array().map(Vec::len), Some(0));
    let runs: Vec<(i32, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT attempt, at FROM test_runs WHERE job_id = $1 ORDER BY at")
            .bind(job.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [1; 6]);
    for pair in runs.windows(2) {
        let gap = (pair[1].1 - pair[0].1).to_std().unwrap();
        assert!(gap >= Duration::from_millis(50), "ran again after {gap:?}");
    }
}

#[tokio::test]
async fn waiting_jobs_are_woken_by_their_unique_keys() {
    let (db, queue, ctx) = setup().await;
    let snoozer = scripted(Behaviour::SnoozeMs {
        ms: 3_600_000,
        times: 1,
    });
    let woken = queue
        .enqueue(snoozer.clone().with_unique_key("wake-me"))
        .await
        .unwrap()
        .id;
    let other = queue
        .enqueue(snoozer.with_unique_key("leave-me"))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    for id in [woken, other] {
        let job = wait_for_state(&queue, id, "scheduled", Duration::from_secs(10)).await;
        assert_eq!(job.attempt, 0);
    }

    let n = queue
        .run_now_by_unique_keys(&["wake-me".to_owned(), "absent".to_owned()])
        .await
        .unwrap();
    assert_eq!(n, 1);
    wait_for_state(&queue, woken, "completed", Duration::from_secs(10)).await;
    worker.stop().await;
    assert_eq!(
        queue.job(other, None).await.unwrap().state.as_str(),
        "scheduled"
    );
}

/// A completion the server refuses for a while, not for its row (read-only during a failover:
/// SQLSTATE 25006), is retried until it lands. Given up on, the job would stay `running` under a
/// live worker, which neither the rescuer nor the sweep moves.
#[tokio::test]
async fn a_completion_refused_for_a_while_is_written_once_the_database_takes_it() {
    let (db, queue, ctx) = setup().await;
    sqlx::raw_sql(
        "CREATE SEQUENCE refusals;
         CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM nextval('refusals');
             RAISE EXCEPTION 'read-only for a failover' USING ERRCODE = '25006';
         END $$;
         CREATE TRIGGER refuse_completion BEFORE INSERT ON jobs_finished
             FOR EACH ROW EXECUTE FUNCTION refuse_completion();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let id = queue
        .enqueue(scripted(Behaviour::Succeed))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry(), ctx, test_config(&["test"]));
    // Three refusals: as many as the old code made before it gave the completion up.
    wait_for("three refused writes", Duration::from_secs(10), || async {
        let refused: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM refusals",
        )
        .fetch_one(&db.pool)
        .await
        .ok()?;
        (refused >= 3).then_some(())
    })
    .await;
    sqlx::raw_sql("DROP TRIGGER refuse_completion ON jobs_finished")
        .execute(&db.pool)
        .await
        .unwrap();
    let job = wait_for_state(&queue, id, "completed", Duration::from_secs(20)).await;
    assert_eq!(job.attempt, 1);
    worker.stop().await;
}
