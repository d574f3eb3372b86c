//! Queue semantics seen from outside (SPEC §4): scheduled jobs, paused queues, unique keys, bulk
//! and transactional enqueue, priority, operator cancel and retry, and wake-ups by NOTIFY.

mod support;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::str::FromStr;
use std::time::Duration;
use support::kinds::{TestCtx, registry_with_sleeper, sleeper, sleeper_failing_permanently};
use support::{db_now, start_worker, test_config, wait_for, wait_for_job_state, wait_for_listener};
use wedsync_db::testing::TestDb;
use wedsync_queue::{JobState, NewJob, Queue, QueueError};

async fn setup() -> (TestDb, Queue, TestCtx) {
    let db = TestDb::new().await.expect("test database");
    let ctx = TestCtx::with_spans(db.pool.clone()).await;
    let queue = Queue::new(db.pool.clone());
    (db, queue, ctx)
}

/// A quick job on another queue than the kind's own.
fn quick_on(queue: &str) -> NewJob {
    NewJob {
        queue: queue.to_owned(),
        ..sleeper(0)
    }
}

/// Ids of the jobs whose handler started, in the order they started (one entry per run).
async fn runs(db: &TestDb) -> Vec<i64> {
    sqlx::query_scalar("SELECT job_id FROM test_spans ORDER BY started_at")
        .fetch_all(&db.pool)
        .await
        .expect("read test_spans")
}

async fn states(queue: &Queue, ids: &[i64]) -> Vec<JobState> {
    let mut states = Vec::with_capacity(ids.len());
    for &id in ids {
        states.push(queue.job(id, None).await.expect("job").state);
    }
    states
}

#[tokio::test]
async fn scheduled_job_does_not_run_before_its_time() {
    let (db, queue, ctx) = setup().await;
    let at = Utc::now() + chrono::Duration::milliseconds(1500);
    let id = queue.enqueue(sleeper(0).scheduled_at(at)).await.unwrap().id;
    assert_eq!(
        queue.job(id, None).await.unwrap().state,
        JobState::Scheduled
    );

    let worker = start_worker(&db, registry_with_sleeper(), ctx, test_config(&["test"]));
    let job = wait_for_job_state(&queue, id, "completed", Duration::from_secs(10)).await;
    worker.stop().await;

    let attempted_at = job.attempted_at.expect("attempted");
    let ran_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT started_at FROM test_spans WHERE job_id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    println!(
        "scheduled {}, attempted {attempted_at}, handler ran {ran_at}",
        job.scheduled_at
    );
    assert!(
        attempted_at >= job.scheduled_at,
        "claimed at {attempted_at}, before its time {}",
        job.scheduled_at
    );
    assert!(ran_at >= job.scheduled_at, "ran at {ran_at}, early");
    // Promotion runs without a notification (maintenance every 100 ms in tests).
    let late = (attempted_at - job.scheduled_at).to_std().unwrap();
    assert!(late < Duration::from_secs(2), "became due {late:?} late");
}

#[tokio::test]
async fn paused_queue_runs_nothing_until_resumed() {
    let (db, queue, ctx) = setup().await;
    queue.set_paused("test", true, 10).await.unwrap();
    let mut paused_ids = Vec::new();
    for _ in 0..3 {
        paused_ids.push(queue.enqueue(sleeper(0)).await.unwrap().id);
    }
    let other = queue.enqueue(quick_on("other")).await.unwrap().id;

    // One worker works both queues, `test` listed first. A job of `other` completing proves the
    // worker was up and claiming; a `test` fetch loop ignoring the pause would have claimed
    // its (older, already waiting) jobs at start-up at the latest then.
    let worker = start_worker(
        &db,
        registry_with_sleeper(),
        ctx,
        test_config(&["test", "other"]),
    );
    wait_for_job_state(&queue, other, "completed", Duration::from_secs(10)).await;
    assert_eq!(
        states(&queue, &paused_ids).await,
        [JobState::Available; 3],
        "jobs of a queue paused before the worker started ran"
    );

    // Jobs enqueued into the paused queue while the worker runs: their NOTIFY reaches the
    // worker before that of the `other` job enqueued after them, which then completes.
    paused_ids.push(queue.enqueue(sleeper(0)).await.unwrap().id);
    let other = queue.enqueue(quick_on("other")).await.unwrap().id;
    wait_for_job_state(&queue, other, "completed", Duration::from_secs(10)).await;
    assert_eq!(
        states(&queue, &paused_ids).await,
        [JobState::Available; 4],
        "a job enqueued into a paused queue ran"
    );
    let ran = runs(&db).await;
    assert!(
        paused_ids.iter().all(|id| !ran.contains(id)),
        "handlers of paused jobs ran: {ran:?}"
    );

    queue.set_paused("test", false, 10).await.unwrap();
    for &id in &paused_ids {
        wait_for_job_state(&queue, id, "completed", Duration::from_secs(10)).await;
    }
    worker.stop().await;
}

#[tokio::test]
async fn unique_key_deduplicates_while_unfinished() {
    let (db, queue, ctx) = setup().await;
    let keyed = |key: &str| sleeper(0).with_unique_key(key);

    let first = queue.enqueue(keyed("wedding-42")).await.unwrap();
    assert!(!first.duplicate);
    let second = queue.enqueue(keyed("wedding-42")).await.unwrap();
    assert!(second.duplicate, "{second:?}");
    assert_eq!(second.id, first.id);

    // In one bulk call: a key repeated within the call, a key held by an earlier job, no key.
    let bulk = queue
        .enqueue_many(&[
            keyed("photo-7"),
            keyed("photo-7"),
            sleeper(0),
            keyed("wedding-42"),
            keyed("photo-8"),
        ])
        .await
        .unwrap();
    let flags: Vec<bool> = bulk.iter().map(|e| e.duplicate).collect();
    assert_eq!(flags, [false, true, false, true, false]);
    assert_eq!(bulk[1].id, bulk[0].id);
    assert_eq!(bulk[3].id, first.id);
    let fresh: HashSet<i64> = [first.id, bulk[0].id, bulk[2].id, bulk[4].id].into();
    assert_eq!(fresh.len(), 4, "fresh jobs got distinct ids: {bulk:?}");
    assert_eq!(support::unfinished(&db, "test").await, 4, "rows stored");

    // Once the holder has finished, the key is free again.
    let worker = start_worker(&db, registry_with_sleeper(), ctx, test_config(&["test"]));
    wait_for_job_state(&queue, first.id, "completed", Duration::from_secs(10)).await;
    let again = queue.enqueue(keyed("wedding-42")).await.unwrap();
    assert!(!again.duplicate, "{again:?}");
    assert_ne!(again.id, first.id);
    wait_for_job_state(&queue, again.id, "completed", Duration::from_secs(10)).await;
    worker.stop().await;
}

#[tokio::test]
async fn bulk_enqueue_inserts_thousands_in_order_of_ids() {
    let (db, queue, _ctx) = setup().await;
    // 12,000 crosses two 5,000-row statement boundaries.
    let jobs: Vec<NewJob> = (0..12_000)
        .map(|n| NewJob::new("bulk", "noop", serde_json::json!({ "n": n })))
        .collect();
    let enqueued = queue.enqueue_many(&jobs).await.unwrap();

    assert_eq!(enqueued.len(), 12_000);
    assert!(enqueued.iter().all(|e| !e.duplicate));
    let distinct: HashSet<i64> = enqueued.iter().map(|e| e.id).collect();
    assert_eq!(distinct.len(), 12_000, "distinct ids");
    assert!(
        enqueued.windows(2).all(|w| w[0].id < w[1].id),
        "ids follow the input order"
    );
    // Each returned id is the row of the job at that position.
    let rows: Vec<(i64, i64, String)> =
        sqlx::query_as("SELECT id, (args->>'n')::bigint, state FROM jobs ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 12_000, "rows stored");
    for (n, (entry, (id, arg, state))) in enqueued.iter().zip(&rows).enumerate() {
        assert_eq!(
            (entry.id, *arg, state.as_str()),
            (*id, n as i64, "available")
        );
    }
}

#[tokio::test]
async fn transactional_enqueue_is_rolled_back_with_the_callers_transaction() {
    let (db, queue, ctx) = setup().await;
    let mut config = test_config(&["test"]);
    // Only a notification can wake the idle worker within the test's bounds.
    config.poll_interval = Duration::from_secs(30);
    let worker = start_worker(&db, registry_with_sleeper(), ctx, config);
    wait_for_listener(&db).await;

    let mut tx = db.pool.begin().await.unwrap();
    let rolled_back = wedsync_queue::enqueue(&mut tx, sleeper(0))
        .await
        .unwrap()
        .id;
    tx.rollback().await.unwrap();
    assert!(
        matches!(
            queue.job(rolled_back, None).await,
            Err(QueueError::NotFound(_))
        ),
        "a job enqueued in a rolled-back transaction exists"
    );

    let mut tx = db.pool.begin().await.unwrap();
    let committed = wedsync_queue::enqueue(&mut tx, sleeper(0))
        .await
        .unwrap()
        .id;
    assert!(
        matches!(
            queue.job(committed, None).await,
            Err(QueueError::NotFound(_))
        ),
        "the job is visible before the caller commits"
    );
    tx.commit().await.unwrap();
    let committed_at = db_now(&db).await;
    let job = wait_for_job_state(&queue, committed, "completed", Duration::from_secs(10)).await;
    let pickup = job.attempted_at.expect("attempted") - committed_at;
    println!("commit to claim: {} ms", pickup.num_milliseconds());
    // Far below the 30 s poll: the notification was delivered on commit.
    assert!(
        pickup < chrono::Duration::seconds(5),
        "picked up {pickup} after commit: no NOTIFY on commit?"
    );
    worker.stop().await;

    // The later job has run, so a runnable rolled-back job would have run too.
    assert_eq!(runs(&db).await, [committed]);
}

#[tokio::test]
async fn higher_priority_runs_first() {
    let (db, queue, ctx) = setup().await;
    queue.set_concurrency("test", 1, None).await.unwrap();
    let mut low = Vec::new();
    for _ in 0..5 {
        low.push(queue.enqueue(sleeper(0).with_priority(5)).await.unwrap().id);
    }
    let urgent = queue.enqueue(sleeper(0).with_priority(0)).await.unwrap().id;

    let mut config = test_config(&["test"]);
    // Also 1 by default, so this test does not depend on when the pool row is first read
    // (that is pool_concurrency_applies_from_the_first_claim in queue_pools.rs).
    config.default_concurrency = 1;
    let worker = start_worker(&db, registry_with_sleeper(), ctx, config);
    for &id in low.iter().chain([&urgent]) {
        wait_for_job_state(&queue, id, "completed", Duration::from_secs(10)).await;
    }
    worker.stop().await;

    let order = runs(&db).await;
    assert_eq!(order.len(), 6);
    assert_eq!(order[0], urgent, "run order {order:?}, urgent {urgent}");
    let urgent_at = queue.job(urgent, None).await.unwrap().attempted_at.unwrap();
    for id in low {
        let at = queue.job(id, None).await.unwrap().attempted_at.unwrap();
        assert!(
            urgent_at < at,
            "job {id} attempted at {at}, urgent at {urgent_at}"
        );
    }
}

#[tokio::test]
async fn operator_cancel_stops_a_running_job() {
    let (db, queue, ctx) = setup().await;
    // The stop order travels by NOTIFY, so the helper waits until the worker listens (a cancel
    // it cannot hear is operator_cancel_reaches_a_worker_that_missed_the_notification).
    let (worker, long) = one_slot_worker_running_a_long_job(&db, &queue, ctx).await;
    let cancelled = queue.cancel(long, None).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);

    // With one slot, the next job can only run once the cancelled one's task has ended.
    let next = queue.enqueue(sleeper(0)).await.unwrap().id;
    wait_for_job_state(&queue, next, "completed", Duration::from_secs(10)).await;
    let report = worker.stop().await;
    assert_eq!(report.handed_back, 0);

    let job = queue.job(long, None).await.unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Cancelled, 1));
    let ended: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT ended_at FROM test_spans WHERE job_id = $1")
            .bind(long)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(ended, None, "the cancelled handler ran to its end");
}

/// Start a worker with one slot on `test` and wait until a long job's handler runs and the
/// worker listens; returns the worker and the long job's id.
async fn one_slot_worker_running_a_long_job(
    db: &TestDb,
    queue: &Queue,
    ctx: TestCtx,
) -> (support::RunningWorker, i64) {
    queue.set_concurrency("test", 1, None).await.unwrap();
    let mut config = test_config(&["test"]);
    config.default_concurrency = 1;
    let worker = start_worker(db, registry_with_sleeper(), ctx, config);
    let long = queue.enqueue(sleeper(30_000)).await.unwrap().id;
    wait_for(
        "the long job's handler to start",
        Duration::from_secs(10),
        || async {
            let started: i64 =
                sqlx::query_scalar("SELECT count(*) FROM test_spans WHERE job_id = $1")
                    .bind(long)
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            (started == 1).then_some(())
        },
    )
    .await;
    wait_for_listener(db).await;
    (worker, long)
}

#[tokio::test]
async fn operator_cancel_reaches_a_worker_that_missed_the_notification() {
    let (db, queue, ctx) = setup().await;
    let (worker, long) = one_slot_worker_running_a_long_job(&db, &queue, ctx).await;

    // Cut the worker's LISTEN connection and keep it from coming back while the job is
    // cancelled: hold every other connection of the pool (the worker shares it) and refuse new
    // ones. The cancel's NOTIFY then reaches no one, as in any LISTEN reconnect.
    let mut held = Vec::new();
    for _ in 1..db.pool.options().get_max_connections() {
        held.push(db.pool.acquire().await.unwrap());
    }
    let conn = &mut held[0];
    // A database cannot refuse connections to itself from its own session.
    let admin_options = PgConnectOptions::from_str(&db.url)
        .unwrap()
        .database("postgres");
    let mut admin = PgConnection::connect_with(&admin_options).await.unwrap();
    let allow = |on: bool| {
        sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE \"{}\" ALLOW_CONNECTIONS {on}",
            db.name
        ))
    };
    sqlx::raw_sql(allow(false))
        .execute(&mut admin)
        .await
        .unwrap();
    let cut: bool = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity
          WHERE datname = current_database() AND query LIKE 'LISTEN \"wedsync_jobs\"%'",
    )
    .fetch_one(&mut **conn)
    .await
    .unwrap();
    assert!(cut, "the worker's LISTEN connection was not terminated");
    let cancelled: Option<(i64, Option<String>)> = sqlx::query_as(wedsync_queue::sql::CANCEL)
        .bind(long)
        .bind(None::<String>)
        .fetch_optional(&mut **conn)
        .await
        .unwrap();
    assert!(cancelled.is_some(), "the running job was not cancelled");
    sqlx::raw_sql(allow(true))
        .execute(&mut admin)
        .await
        .unwrap();
    admin.close().await.ok();
    drop(held);
    wait_for_listener(&db).await;

    // With one slot, the next job runs only once the worker has stopped the cancelled one.
    let next = queue.enqueue(sleeper(0)).await.unwrap().id;
    wait_for_job_state(&queue, next, "completed", Duration::from_secs(10)).await;
    worker.stop().await;
    let ended: Option<DateTime<Utc>> =
        sqlx::query_scalar("SELECT ended_at FROM test_spans WHERE job_id = $1")
            .bind(long)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(ended, None, "the cancelled handler ran to its end");
}

#[tokio::test]
async fn operator_retry_revives_a_discarded_job() {
    let (db, queue, ctx) = setup().await;
    let id = queue
        .enqueue(sleeper_failing_permanently(0))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, registry_with_sleeper(), ctx, test_config(&["test"]));
    let discarded = wait_for_job_state(&queue, id, "discarded", Duration::from_secs(10)).await;
    assert_eq!(discarded.attempt, 1);

    // What `retry` returns may already be the next attempt's outcome: the worker is running.
    assert_eq!(queue.retry(id, None).await.unwrap().id, id);
    let again = wait_for(
        "the retried job to be discarded again",
        Duration::from_secs(10),
        || async {
            let job = queue.job(id, None).await.ok()?;
            (job.state == JobState::Discarded && job.attempt == 2).then_some(job)
        },
    )
    .await;
    assert_eq!(runs(&db).await, [id, id]);
    let errors = again.errors.as_array().expect("errors array");
    assert_eq!(errors.len(), 2, "error history kept: {errors:?}");
    assert_eq!(
        (errors[0]["attempt"].as_i64(), errors[1]["attempt"].as_i64()),
        (Some(1), Some(2))
    );

    // A running job cannot be retried.
    let long = queue.enqueue(sleeper(30_000)).await.unwrap().id;
    wait_for_job_state(&queue, long, "running", Duration::from_secs(10)).await;
    let err = queue.retry(long, None).await.unwrap_err();
    assert!(matches!(err, QueueError::Conflict(_)), "{err:?}");
    assert_eq!(
        queue.job(long, None).await.unwrap().state,
        JobState::Running
    );
    queue.cancel(long, None).await.unwrap();
    worker.stop().await;
}

#[tokio::test]
async fn pickup_via_notify_is_fast() {
    let (db, queue, ctx) = setup().await;
    let mut config = test_config(&["test"]);
    // The fallback poll would take up to 30 s: only a notification can wake the worker in time.
    config.poll_interval = Duration::from_secs(30);
    let worker = start_worker(&db, registry_with_sleeper(), ctx, config);
    wait_for_listener(&db).await;
    // A first job settles start-up (the wake-up every queue gets when LISTEN connects).
    let warm_up = queue.enqueue(sleeper(0)).await.unwrap().id;
    wait_for_job_state(&queue, warm_up, "completed", Duration::from_secs(10)).await;

    let id = queue.enqueue(sleeper(0)).await.unwrap().id;
    let job = wait_for_job_state(&queue, id, "completed", Duration::from_secs(40)).await;
    worker.stop().await;

    let pickup = job.attempted_at.expect("attempted") - job.created_at;
    println!(
        "enqueue to claim on an idle worker: {} µs",
        pickup.num_microseconds().unwrap()
    );
    assert!(
        pickup < chrono::Duration::seconds(1),
        "idle worker took {pickup} to pick a job up"
    );
}
