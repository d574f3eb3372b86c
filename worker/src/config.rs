//! Settings of one worker process.

use std::path::PathBuf;
use std::time::Duration;

/// How a worker process behaves; every field has a production default.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Unique per process; written to `jobs.attempted_by` of the jobs it holds.
    pub worker_id: String,
    /// Queues to work; each gets its own fetch loop.
    pub queues: Vec<String>,
    /// Concurrency of a queue that has no pool row yet (the row is created with it).
    pub default_concurrency: i32,
    /// Per-queue concurrency for new pool rows, overriding `default_concurrency`.
    pub queue_concurrency: std::collections::HashMap<String, i32>,
    /// Most jobs claimed by one statement.
    pub max_claim_batch: i64,
    /// Fallback poll when no notification arrives (scheduled jobs, lost notifications).
    pub poll_interval: Duration,
    pub heartbeat_interval: Duration,
    /// A worker silent for this long is declared dead and its jobs are rescued.
    pub heartbeat_timeout: Duration,
    /// How often this process tries to run maintenance (promotion of due jobs, rescue).
    pub maintenance_interval: Duration,
    /// Time in-flight jobs get to finish on shutdown before they are handed back.
    pub shutdown_grace: Duration,
    /// Most completions written by one statement.
    pub max_completion_batch: usize,
    /// When set, the id of every job this process starts is written here at shutdown, one per
    /// line (used by the benchmark and tests to prove exactly-once execution).
    pub run_log: Option<PathBuf>,
    /// Write a raw metric event per job execution (SPEC §5.4) with this writer; `None` = off.
    pub metric_events: Option<wedsync_metrics::EventWriterConfig>,
}

impl WorkerConfig {
    /// The concurrency a new pool row of `queue` starts with.
    pub fn initial_concurrency(&self, queue: &str) -> i32 {
        self.queue_concurrency
            .get(queue)
            .copied()
            .unwrap_or(self.default_concurrency)
    }

    pub fn new(queues: Vec<String>) -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            queues,
            default_concurrency: 10,
            queue_concurrency: Default::default(),
            max_claim_batch: 500,
            poll_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(1),
            heartbeat_timeout: Duration::from_secs(5),
            maintenance_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            max_completion_batch: 1000,
            run_log: None,
            metric_events: Some(Default::default()),
        }
    }
}

/// `host:pid:random`, unique across restarts on the same host.
pub fn default_worker_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}:{}:{suffix}", std::process::id())
}
