//! Shared test harness: a fresh database per test, in-process workers, waiting on conditions.
#![allow(dead_code)]

pub mod all;
pub mod kinds;
pub mod messages;
pub mod rules;
pub mod sms;
pub mod smtp;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use wedsync_db::testing::TestDb;
use wedsync_queue::{Queue, Registry};
use wedsync_worker::{Worker, WorkerConfig, WorkerError, WorkerReport};

/// A loopback port held bound but not listening: connections to it are refused — a provider
/// that is down — and, while it is held, no other test (nor anything else binding port 0) can be
/// given the port. A port merely bound and let go a moment ago could be given to another test's
/// server, and the provider meant to be down would then answer.
pub struct RefusingAddress {
    pub addr: std::net::SocketAddr,
    _held: tokio::net::TcpSocket,
}

impl RefusingAddress {
    /// Give the port up, for a test that starts its provider there now (the provider is back).
    pub fn release(self) -> std::net::SocketAddr {
        self.addr
    }
}

pub fn refusing_address() -> RefusingAddress {
    let socket = tokio::net::TcpSocket::new_v4().expect("a probe socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind a probe port");
    RefusingAddress {
        addr: socket.local_addr().unwrap(),
        _held: socket,
    }
}

/// Poll `check` every 10 ms until it returns `Some`, or panic after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_explained(what, timeout, check, || async { String::new() }).await
}

/// [`wait_for`], and on timeout the panic adds what `explain` reports (the state that was
/// waited on, read at that moment).
pub async fn wait_for_explained<T, F, Fut, E, EFut>(
    what: &str,
    timeout: Duration,
    mut check: F,
    explain: E,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
    E: FnOnce() -> EFut,
    EFut: Future<Output = String>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() >= deadline {
            let state = explain().await;
            let sep = if state.is_empty() { "" } else { "; " };
            panic!("timed out after {timeout:?} waiting for {what}{sep}{state}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Fast timings for tests: quick polls, heartbeats and rescue.
pub fn test_config(queues: &[&str]) -> WorkerConfig {
    let mut config = WorkerConfig::new(queues.iter().map(|q| q.to_string()).collect());
    config.poll_interval = Duration::from_millis(100);
    config.heartbeat_interval = Duration::from_millis(200);
    config.heartbeat_timeout = Duration::from_secs(2);
    config.maintenance_interval = Duration::from_millis(100);
    config.shutdown_grace = Duration::from_secs(5);
    config
}

/// A worker running in this process until [`RunningWorker::stop`].
pub struct RunningWorker {
    pub stop: CancellationToken,
    pub handle: JoinHandle<Result<WorkerReport, WorkerError>>,
}

impl RunningWorker {
    pub async fn stop(self) -> WorkerReport {
        self.stop.cancel();
        self.handle.await.expect("worker task").expect("worker run")
    }
}

pub fn start_worker<C: Clone + Send + Sync + 'static>(
    db: &TestDb,
    registry: Registry<C>,
    app: C,
    config: WorkerConfig,
) -> RunningWorker {
    let stop = CancellationToken::new();
    let worker = Worker::new(Queue::new(db.pool.clone()), Arc::new(registry), app, config);
    let handle = tokio::spawn(worker.run(stop.clone()));
    RunningWorker { stop, handle }
}

/// Number of jobs in `state` (finished or not).
pub async fn count_in_state(db: &TestDb, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM all_jobs WHERE state = $1")
        .bind(state)
        .fetch_one(&db.pool)
        .await
        .expect("count jobs")
}

/// A `wedsync-jobs worker` child process on the test database, with fast test timings.
pub struct WorkerProcess {
    pub child: std::process::Child,
    pub run_log: std::path::PathBuf,
}

impl WorkerProcess {
    pub fn spawn(db: &TestDb, queues: &str, extra_env: &[(&str, &str)]) -> Self {
        let run_log = std::env::temp_dir().join(format!(
            "wedsync-run-{}-{}.log",
            db.name,
            uuid::Uuid::new_v4().simple()
        ));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"));
        command
            .args(["worker", "--queues", queues, "--run-log"])
            .arg(&run_log)
            .env("DATABASE_URL", &db.url)
            .env("RUST_LOG", "warn")
            .env("WEDSYNC_POLL_INTERVAL_MS", "100")
            .env("WEDSYNC_HEARTBEAT_INTERVAL_MS", "200")
            .env("WEDSYNC_HEARTBEAT_TIMEOUT_MS", "2000");
        for (key, value) in extra_env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start a worker process");
        WorkerProcess { child, run_log }
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }

    /// SIGTERM, wait for a clean exit, and return the job ids this process started.
    pub fn terminate(mut self) -> Vec<i64> {
        self.signal("-TERM");
        let status = self.child.wait().expect("wait for worker");
        assert!(status.success(), "worker exited with {status}");
        let ids = std::fs::read_to_string(&self.run_log)
            .expect("read run log")
            .lines()
            .map(|line| line.parse().expect("job id"))
            .collect();
        std::fs::remove_file(&self.run_log).ok();
        ids
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Jobs still in the hot table (unfinished) for `queue`.
pub async fn unfinished(db: &TestDb, queue: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE queue = $1")
        .bind(queue)
        .fetch_one(&db.pool)
        .await
        .expect("count unfinished")
}

/// Wait until job `id` is in `state` (finished or not) and return it.
pub async fn wait_for_job_state(
    queue: &Queue,
    id: i64,
    state: &str,
    timeout: Duration,
) -> wedsync_queue::JobRow {
    wait_for(&format!("job {id} to be {state}"), timeout, || async {
        let job = queue.job(id, None).await.ok()?;
        (job.state.as_str() == state).then_some(job)
    })
    .await
}

/// Wait until a connection to this database LISTENs for new jobs, i.e. a worker's listener is
/// up and NOTIFY can reach it (its LISTEN statement has finished: the connection is idle).
pub async fn wait_for_listener(db: &TestDb) {
    wait_for_activity(
        db,
        "a worker to LISTEN for new jobs",
        "state = 'idle' AND query LIKE 'LISTEN \"wedsync_jobs\"%'",
    )
    .await
}

/// Wait (up to 10 s) until a connection to this database matches `predicate`, an SQL condition
/// on `pg_stat_activity` (e.g. a statement waiting for a lock).
pub async fn wait_for_activity(db: &TestDb, what: &str, predicate: &str) {
    let query = format!(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE datname = current_database() AND {predicate})"
    );
    wait_for(what, Duration::from_secs(10), || async {
        // The predicate is the test's own text.
        let found: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(query.clone()))
            .fetch_one(&db.pool)
            .await
            .expect("read pg_stat_activity");
        found.then_some(())
    })
    .await
}

/// The database's clock now (not the transaction's start), to compare with job timestamps.
pub async fn db_now(db: &TestDb) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&db.pool)
        .await
        .expect("read the database clock")
}
