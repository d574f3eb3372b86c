//! A worker process: wires the fetch loops, completer, listener, pool watcher and housekeeping
//! together, and shuts them down in the order that loses nothing.

use crate::completer::run_completer;
use crate::config::WorkerConfig;
use crate::executor::{Shared, Slots, lock};
use crate::fetcher::Fetcher;
use crate::housekeeping::{self, Health, Identity};
use crate::signals::{PoolState, listen, watch_pools};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wedsync_metrics::EventWriter;
use wedsync_queue::{Lease, Queue, QueueError, Registry};

/// After the grace period, how long interrupted jobs get to unwind before they are handed back.
const UNWIND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("starting the worker: {0}")]
    Start(#[from] QueueError),
    #[error("writing the run log {path}: {source}")]
    RunLog {
        path: String,
        source: std::io::Error,
    },
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerReport {
    pub started_jobs: u64,
    /// Jobs still running at the end of the grace period, returned to the queue.
    pub handed_back: u64,
}

pub struct Worker<C> {
    queue: Queue,
    registry: Arc<Registry<C>>,
    app: C,
    config: WorkerConfig,
}

impl<C: Clone + Send + Sync + 'static> Worker<C> {
    pub fn new(queue: Queue, registry: Arc<Registry<C>>, app: C, config: WorkerConfig) -> Self {
        Worker {
            queue,
            registry,
            app,
            config,
        }
    }

    /// Work the configured queues until `shutdown` is cancelled, then stop claiming, give
    /// in-flight jobs the grace period, hand back the rest and deregister.
    pub async fn run(self, shutdown: CancellationToken) -> Result<WorkerReport, WorkerError> {
        let Worker {
            queue,
            registry,
            app,
            mut config,
        } = self;
        config.queues.sort();
        config.queues.dedup();
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let identity = Arc::new(Identity::new(config.worker_id.clone()));
        let lease = Lease::lapsed(lease_time(&config));
        let registering = std::time::Instant::now();
        queue
            .register_worker(&config.worker_id, &host, &config.queues)
            .await?;
        // Registering is this process's first heartbeat.
        lease.renew(registering);
        for name in &config.queues {
            queue
                .ensure_pool(name, config.initial_concurrency(name))
                .await?;
        }
        // Fetchers start from the pools as stored, so a paused queue is never claimed from.
        let pools = queue.pools().await?;
        tracing::info!(worker_id = %config.worker_id, queues = ?config.queues, "worker started");

        let (completions, completions_rx) = mpsc::channel(config.max_completion_batch * 4);
        let (events, event_writer) = match config.metric_events {
            Some(writer) => {
                let (sink, writer) = EventWriter::spawn(queue.pool().clone(), writer);
                (Some(sink), Some(writer))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            queue: queue.clone(),
            registry,
            app,
            completions,
            running: Mutex::new(HashMap::new()),
            interrupted: Mutex::new(Vec::new()),
            job_ended: Notify::new(),
            lease,
            run_log: config.run_log.as_ref().map(|_| Mutex::new(Vec::new())),
            events,
        });
        let completer_stop = CancellationToken::new();
        let completer = tokio::spawn(run_completer(
            queue.clone(),
            completions_rx,
            config.max_completion_batch,
            completer_stop.clone(),
        ));

        // Background loops stop after the fetchers and in-flight jobs are done.
        let background_stop = CancellationToken::new();
        let mut background = JoinSet::new();
        let fetch_stop = shutdown.child_token();
        let mut fetchers = JoinSet::new();
        let mut pool_senders = HashMap::new();
        let mut wakes = HashMap::new();
        for name in &config.queues {
            let initial = PoolState::from_rows(&pools, name, config.initial_concurrency(name));
            let (tx, rx) = watch::channel(initial);
            let wake = Arc::new(Notify::new());
            pool_senders.insert(name.clone(), tx);
            wakes.insert(name.clone(), wake.clone());
            let fetcher = Fetcher {
                shared: shared.clone(),
                identity: identity.clone(),
                queue: name.clone(),
                slots: Arc::new(Slots::default()),
                pool: rx,
                wake,
                max_batch: config.max_claim_batch,
                poll_interval: config.poll_interval,
            };
            fetchers.spawn(fetcher.run(fetch_stop.clone()));
        }
        let reload_pools = Arc::new(Notify::new());
        let health = Arc::new(Health::default());
        background.spawn(watch_pools(
            queue.clone(),
            pool_senders,
            config.default_concurrency,
            reload_pools.clone(),
            config.poll_interval,
            background_stop.clone(),
        ));
        background.spawn(listen(
            queue.pool().clone(),
            wakes,
            reload_pools,
            shared.clone(),
            background_stop.clone(),
        ));
        background.spawn(housekeeping::heartbeat(
            shared.clone(),
            identity.clone(),
            health.clone(),
            host,
            config.queues.clone(),
            config.heartbeat_interval,
            background_stop.clone(),
        ));
        background.spawn(housekeeping::maintain(
            queue.clone(),
            health,
            config.maintenance_interval,
            config.heartbeat_timeout,
            background_stop.clone(),
        ));

        fetchers.join_all().await;
        tracing::info!("stopped claiming; waiting for in-flight jobs");
        drain_in_flight(&shared, config.shutdown_grace).await;
        // Completions must be written before unfinished jobs are handed back: a job handed back
        // while its completion was still buffered would run again.
        completer_stop.cancel();
        let _ = completer.await;
        let interrupted: Vec<i64> = lock(&shared.interrupted).iter().map(|c| c.0).collect();
        let worker_id = identity.current();
        let handed_back = if interrupted.is_empty() {
            0
        } else {
            match queue.hand_back(&worker_id, &interrupted).await {
                Ok(n) => {
                    tracing::info!(jobs = n, "handed unfinished jobs back to the queue");
                    n
                }
                Err(err) => {
                    tracing::error!(error = %err, "handing jobs back failed; the rescuer will return them");
                    0
                }
            }
        };
        // Every job task has ended, so every event is buffered: write them all. After the
        // hand-back, which matters more and must not wait on a struggling database twice.
        if let Some(writer) = event_writer {
            writer.finish().await;
        }
        background_stop.cancel();
        background.join_all().await;
        if let Err(err) = queue.deregister_worker(&worker_id).await {
            tracing::warn!(error = %err, "deregistering failed; the rescuer will remove this worker");
        }
        let started_jobs = write_run_log(&shared, &config)?;
        tracing::info!(handed_back, "worker stopped");
        Ok(WorkerReport {
            started_jobs,
            handed_back,
        })
    }
}

/// How long after a successful heartbeat was sent this process may take its jobs to be its own
/// (`Lease`): a heartbeat interval short of the timeout after which others rescue them, so a
/// lease renewed on time never lapses, and one that lapses does so before a rescue can happen.
fn lease_time(config: &WorkerConfig) -> Duration {
    config
        .heartbeat_timeout
        .saturating_sub(config.heartbeat_interval)
        .max(config.heartbeat_timeout / 2)
}

/// Wait up to `grace` for running jobs; then interrupt their handlers and wait (bounded) for the
/// tasks to unwind, so that every interrupted claim is known before hand-back.
async fn drain_in_flight<C>(shared: &Shared<C>, grace: Duration) {
    if !wait_until_idle(shared, grace).await {
        let handlers: Vec<_> = lock(&shared.running).values().cloned().collect();
        tracing::warn!(
            jobs = handlers.len(),
            "grace period over; interrupting running jobs"
        );
        handlers.iter().for_each(|h| h.abort());
        if !wait_until_idle(shared, UNWIND_TIMEOUT).await {
            tracing::error!("some job tasks did not unwind; the rescuer will return their jobs");
        }
    }
}

/// True once no job task is left, false if `timeout` passed first.
async fn wait_until_idle<C>(shared: &Shared<C>, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let job_ended = shared.job_ended.notified();
        if lock(&shared.running).is_empty() {
            return true;
        }
        tokio::select! {
            _ = job_ended => {}
            _ = tokio::time::sleep_until(deadline) => return false,
        }
    }
}

/// Write the ids of started jobs if asked to; returns how many jobs were started.
fn write_run_log<C>(shared: &Shared<C>, config: &WorkerConfig) -> Result<u64, WorkerError> {
    let (Some(path), Some(log)) = (&config.run_log, &shared.run_log) else {
        return Ok(0);
    };
    let ids = lock(log);
    let io_err = |source| WorkerError::RunLog {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io_err)?);
    for id in ids.iter() {
        writeln!(file, "{id}").map_err(io_err)?;
    }
    file.flush().map_err(io_err)?;
    Ok(ids.len() as u64)
}
