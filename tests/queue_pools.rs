//! Pools: a queue's per-process concurrency, applied from the first claim and changed live
//! without a restart; and a worker that keeps working through a failed claim (SPEC §4, §6).

mod support;

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use support::kinds::{TestCtx, registry_with_sleeper, sleeper};
use support::{db_now, start_worker, test_config, wait_for, wait_for_job_state};
use wedsync_db::testing::TestDb;
use wedsync_queue::{JobState, NewJob, Queue};

async fn setup() -> (TestDb, Queue, TestCtx) {
    let db = TestDb::new().await.expect("test database");
    let ctx = TestCtx::with_spans(db.pool.clone()).await;
    let queue = Queue::new(db.pool.clone());
    (db, queue, ctx)
}

/// Handlers running right now (started, not ended).
async fn running_now(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_spans WHERE ended_at IS NULL")
        .fetch_one(&db.pool)
        .await
        .expect("count running handlers")
}

/// Handlers that ran to their end; with `since`, only those that started after it.
async fn ended(db: &TestDb, since: Option<DateTime<Utc>>) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM test_spans
          WHERE ended_at IS NOT NULL AND ($1::timestamptz IS NULL OR started_at > $1)",
    )
    .bind(since)
    .fetch_one(&db.pool)
    .await
    .expect("count ended handlers")
}

/// The most handlers that ran at once, looking at the moments a handler started (the only
/// moments the count can rise); with `since`, only handlers starting after it are looked at.
async fn max_overlap(db: &TestDb, since: Option<DateTime<Utc>>) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(max(n), 0) FROM (
             SELECT (SELECT count(*) FROM test_spans o
                      WHERE o.started_at <= s.started_at
                        AND (o.ended_at IS NULL OR o.ended_at > s.started_at)) AS n
               FROM test_spans s
              WHERE $1::timestamptz IS NULL OR s.started_at > $1) AS at_starts",
    )
    .bind(since)
    .fetch_one(&db.pool)
    .await
    .expect("compute overlap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_pool_raises_running_jobs_without_restart() {
    let (db, queue, ctx) = setup().await;
    queue.set_concurrency("test", 2, None).await.unwrap();
    // Enough that the queue still holds jobs after ~3 s at 20 at a time.
    let jobs: Vec<NewJob> = (0..200).map(|_| sleeper(300)).collect();
    queue.enqueue_many(&jobs).await.unwrap();
    let mut config = test_config(&["test"]);
    // Matching default, so the start does not depend on when the pool row is first read (that
    // is pool_concurrency_applies_from_the_first_claim).
    config.default_concurrency = 2;
    let worker = start_worker(&db, registry_with_sleeper(), ctx, config);

    // At 2: four handlers have run to their end, never more than two at once.
    wait_for("four jobs to finish", Duration::from_secs(10), || async {
        (ended(&db, None).await >= 4).then_some(())
    })
    .await;
    assert_eq!(max_overlap(&db, None).await, 2, "at concurrency 2");

    // Raised to 20: at least 10 handlers run at once within a few seconds, same process.
    let raising = Instant::now();
    let before_raise = db_now(&db).await;
    queue.set_concurrency("test", 20, None).await.unwrap();
    // From the handlers' recorded spans, so a short peak cannot fall between two polls.
    let peak = wait_for(
        "at least 10 jobs running at once",
        Duration::from_secs(5),
        || async {
            let n = max_overlap(&db, Some(before_raise)).await;
            (n >= 10).then_some(n)
        },
    )
    .await;
    println!(
        "raised 2 → 20: {peak} running after {:?}",
        raising.elapsed()
    );

    // Lowered to 1: the jobs in flight finish and then only one runs at a time.
    queue.set_concurrency("test", 1, None).await.unwrap();
    let settled_at = wait_for(
        "running jobs to drop to at most 1",
        Duration::from_secs(5),
        || async {
            if running_now(&db).await <= 1 {
                Some(db_now(&db).await)
            } else {
                None
            }
        },
    )
    .await;
    wait_for(
        "three more jobs to run at concurrency 1",
        Duration::from_secs(10),
        || async { (ended(&db, Some(settled_at)).await >= 3).then_some(()) },
    )
    .await;
    assert_eq!(
        max_overlap(&db, Some(settled_at)).await,
        1,
        "at concurrency 1 after the in-flight jobs finished"
    );
    worker.stop().await;
    assert!(
        support::unfinished(&db, "test").await > 0,
        "the queue must still have held jobs at concurrency 1 for the test to mean anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_concurrency_applies_from_the_first_claim() {
    let (db, queue, ctx) = setup().await;
    queue.set_concurrency("test", 2, None).await.unwrap();
    let jobs: Vec<NewJob> = (0..6).map(|_| sleeper(300)).collect();
    queue.enqueue_many(&jobs).await.unwrap();
    // The worker's default concurrency (10) is for queues without a pool row; `test` has one.
    let worker = start_worker(&db, registry_with_sleeper(), ctx, test_config(&["test"]));

    // A third handler starts only once one of the first two has ended (when the pool holds).
    wait_for("a third job to start", Duration::from_secs(10), || async {
        let started: i64 = sqlx::query_scalar("SELECT count(*) FROM test_spans")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        (started >= 3).then_some(())
    })
    .await;
    let overlap = max_overlap(&db, None).await;
    worker.stop().await;
    assert!(
        overlap <= 2,
        "{overlap} jobs ran at once on a queue whose pool allows 2"
    );
}

/// Makes every claim fail while `test_fail_claims` has a row, counting the failures in a
/// sequence (which a rolled-back statement does not undo).
const INJECT_CLAIM_FAILURES: &str = r#"
CREATE TABLE test_fail_claims (armed bool);
CREATE SEQUENCE test_claim_failures;
CREATE FUNCTION test_fail_claim() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM test_fail_claims) THEN
        PERFORM nextval('test_claim_failures');
        RAISE EXCEPTION 'injected claim failure';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_fail_claim BEFORE UPDATE ON jobs FOR EACH ROW
    WHEN (OLD.state = 'available' AND NEW.state = 'running')
    EXECUTE FUNCTION test_fail_claim();
INSERT INTO test_fail_claims VALUES (true);
"#;

#[tokio::test]
async fn worker_survives_a_database_error_in_a_claim() {
    let (db, queue, ctx) = setup().await;
    sqlx::raw_sql(INJECT_CLAIM_FAILURES)
        .execute(&db.pool)
        .await
        .unwrap();
    let id = queue.enqueue(sleeper(0)).await.unwrap().id;
    let worker = start_worker(&db, registry_with_sleeper(), ctx, test_config(&["test"]));

    wait_for("three failed claims", Duration::from_secs(10), || async {
        let failures: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM test_claim_failures",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (failures >= 3).then_some(())
    })
    .await;
    let job = queue.job(id, None).await.unwrap();
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Available, 0),
        "failed claims left no trace"
    );
    assert!(
        !worker.handle.is_finished(),
        "the worker stopped on a failed claim"
    );

    sqlx::query("DELETE FROM test_fail_claims")
        .execute(&db.pool)
        .await
        .unwrap();
    // Claim errors back off up to 5 s between tries.
    let job = wait_for_job_state(&queue, id, "completed", Duration::from_secs(15)).await;
    assert_eq!(job.attempt, 1, "{job:?}");
    worker.stop().await;
}
