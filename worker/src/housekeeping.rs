//! Heartbeats of this process, and the maintenance pass (promote due jobs, rescue the jobs of
//! dead workers) that every worker attempts and one at a time performs.

use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wedsync_queue::Queue;

pub(crate) async fn heartbeat(
    queue: Queue,
    worker_id: String,
    host: String,
    queues: Vec<String>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match queue.heartbeat(&worker_id).await {
            Ok(true) => {}
            Ok(false) => {
                // Declared dead (e.g. a long pause); its jobs were rescued and our completions of
                // them will be ignored. Register again and carry on.
                tracing::warn!(%worker_id, "this worker was declared dead; registering again");
                if let Err(err) = queue.register_worker(&worker_id, &host, &queues).await {
                    tracing::warn!(error = %err, "re-registering failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }
}

/// How often each worker looks at the hot table's dead row count.
const VACUUM_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How often to look for running jobs whose worker row vanished without being declared dead.
const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Dead row versions that make a vacuum worth it.
const VACUUM_MIN_DEAD_TUPLES: i64 = 50_000;

pub(crate) async fn maintain(
    queue: Queue,
    interval: Duration,
    heartbeat_timeout: Duration,
    stop: CancellationToken,
) {
    let mut last_vacuum_check = tokio::time::Instant::now();
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        let sweep = last_sweep.elapsed() >= ORPHAN_SWEEP_INTERVAL;
        if sweep {
            last_sweep = tokio::time::Instant::now();
        }
        if last_vacuum_check.elapsed() >= VACUUM_CHECK_INTERVAL {
            last_vacuum_check = tokio::time::Instant::now();
            match queue.vacuum_if_bloated(VACUUM_MIN_DEAD_TUPLES).await {
                Ok(true) => tracing::debug!("vacuumed the jobs table"),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "vacuuming the jobs table failed"),
            }
        }
        match queue.maintain(heartbeat_timeout, sweep).await {
            Ok(done) if done.rescued + done.discarded > 0 => {
                tracing::warn!(
                    rescued = done.rescued,
                    discarded = done.discarded,
                    "rescued jobs of dead workers"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "maintenance pass failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
