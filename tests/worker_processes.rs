//! Several real worker processes on one database: exactly-once draining, rescue after
//! `kill -9`, and graceful shutdown on SIGTERM (SPEC §1, §4).

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{WorkerProcess, count_in_state, unfinished, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_queue::{NewJob, Queue};

fn noop(sleep_ms: u64) -> NewJob {
    NewJob::new(
        "default",
        "noop",
        serde_json::json!({ "sleep_ms": sleep_ms }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_worker_processes_run_ten_thousand_jobs_exactly_once() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    queue.set_concurrency("default", 50, None).await.unwrap();
    let jobs: Vec<NewJob> = (0..10_000)
        .map(|_| NewJob::new("default", "noop", serde_json::json!({})))
        .collect();
    let enqueued = queue.enqueue_many(&jobs).await.unwrap();
    assert_eq!(enqueued.len(), 10_000);

    let workers: Vec<_> = (0..3)
        .map(|_| WorkerProcess::spawn(&db, "default", &[]))
        .collect();
    wait_for("the queue to drain", Duration::from_secs(120), || async {
        (unfinished(&db, "default").await == 0).then_some(())
    })
    .await;
    let runs: Vec<i64> = workers
        .into_iter()
        .flat_map(WorkerProcess::terminate)
        .collect();

    let distinct: HashSet<i64> = runs.iter().copied().collect();
    let expected: HashSet<i64> = enqueued.iter().map(|e| e.id).collect();
    assert_eq!(runs.len(), 10_000, "executions");
    assert_eq!(distinct, expected, "every job ran, and only those");
    assert_eq!(count_in_state(&db, "completed").await, 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_killed_worker_are_rescued_and_completed() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    // Long enough that the victim is seen holding all ten, however late the poll comes.
    let jobs: Vec<NewJob> = (0..10).map(|_| noop(10_000)).collect();
    queue.enqueue_many(&jobs).await.unwrap();

    let victim = WorkerProcess::spawn(&db, "default", &[]);
    wait_for(
        "the victim to hold every job",
        Duration::from_secs(30),
        || async { (count_in_state(&db, "running").await == 10).then_some(()) },
    )
    .await;
    victim.signal("-KILL");
    let killed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let _rescuer = WorkerProcess::spawn(&db, "default", &[]);
    wait_for("every job to complete", Duration::from_secs(60), || async {
        (count_in_state(&db, "completed").await == 10).then_some(())
    })
    .await;

    let reruns: Vec<(i32, chrono::DateTime<chrono::Utc>, serde_json::Value)> =
        sqlx::query_as("SELECT attempt, attempted_at, errors FROM jobs_finished")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut delays: Vec<Duration> = reruns
        .iter()
        .map(|(attempt, at, errors)| {
            assert_eq!(*attempt, 2, "the killed attempt counts");
            assert_eq!(errors[0]["kind"], "rescued");
            (*at - killed_at).to_std().expect("re-run after the kill")
        })
        .collect();
    delays.sort();
    println!(
        "kill -9 to re-run: min {:?}, median {:?}, max {:?} (heartbeat timeout 2 s)",
        delays[0],
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );
    assert!(
        delays[delays.len() - 1] < Duration::from_secs(10),
        "rescue took {delays:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_jobs_finish_within_the_grace_period() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    queue.set_concurrency("default", 20, None).await.unwrap();
    // ~5 s to drain at 20 at a time: the SIGTERM lands while jobs are still waiting.
    let jobs: Vec<NewJob> = (0..400).map(|_| noop(250)).collect();
    queue.enqueue_many(&jobs).await.unwrap();

    let worker = WorkerProcess::spawn(&db, "default", &[("WEDSYNC_SHUTDOWN_GRACE_MS", "10000")]);
    wait_for("jobs to be running", Duration::from_secs(30), || async {
        (count_in_state(&db, "running").await > 0).then_some(())
    })
    .await;
    let started = worker.terminate();

    assert_eq!(
        count_in_state(&db, "running").await,
        0,
        "nothing left running"
    );
    let completed = count_in_state(&db, "completed").await;
    let available = count_in_state(&db, "available").await;
    assert_eq!(
        completed as usize,
        started.len(),
        "every started job finished"
    );
    assert_eq!(completed + available, 400, "no job lost");
    assert!(
        available > 0,
        "the worker stopped claiming before the queue was empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_back_jobs_that_outlast_the_grace_period() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    queue.set_concurrency("default", 5, None).await.unwrap();
    let jobs: Vec<NewJob> = (0..5).map(|_| noop(30_000)).collect();
    queue.enqueue_many(&jobs).await.unwrap();

    let worker = WorkerProcess::spawn(&db, "default", &[("WEDSYNC_SHUTDOWN_GRACE_MS", "200")]);
    wait_for(
        "all five to be running",
        Duration::from_secs(30),
        || async { (count_in_state(&db, "running").await == 5).then_some(()) },
    )
    .await;
    let stopping = Instant::now();
    worker.terminate();
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );

    let rows: Vec<(String, i32, Option<String>)> =
        sqlx::query_as("SELECT state, attempt, attempted_by FROM jobs")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 5);
    for (state, attempt, holder) in rows {
        assert_eq!(
            (state.as_str(), attempt, holder),
            ("available", 0, None),
            "handed back uncounted"
        );
    }
}
