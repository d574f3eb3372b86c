//! Heartbeats of this process, and the maintenance pass (promote due jobs, rescue the jobs of
//! dead workers, vacuum the hot table) that every worker attempts and one at a time performs.

use crate::config::default_worker_id;
use crate::executor::{Shared, lock};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wedsync_queue::Queue;

/// How often each worker looks at the hot table's dead row count.
const VACUUM_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Dead row versions that make a vacuum worth it.
const VACUUM_MIN_DEAD_TUPLES: i64 = 50_000;

/// The worker id that claims are made under. It changes when this process learns it was declared
/// dead: claims of its earlier life were rescued, and a new id keeps their late writes from
/// touching the jobs' new claims.
pub(crate) struct Identity {
    current: Mutex<Arc<str>>,
}

impl Identity {
    pub fn new(id: String) -> Self {
        Identity {
            current: Mutex::new(id.into()),
        }
    }
    pub fn current(&self) -> Arc<str> {
        lock(&self.current).clone()
    }
}

/// Since when this process's heartbeats have been succeeding without a break. A process only
/// rescues other workers' jobs once it has been healthy for a whole heartbeat timeout: after a
/// database outage every heartbeat is stale, and rescuing at once would run every in-flight job
/// twice.
#[derive(Default)]
pub(crate) struct Health {
    healthy_since: Mutex<Option<Instant>>,
}

impl Health {
    fn record(&self, ok: bool) {
        let mut since = lock(&self.healthy_since);
        match (ok, *since) {
            (true, None) => *since = Some(Instant::now()),
            (false, _) => *since = None,
            _ => {}
        }
    }
    fn healthy_for(&self, duration: Duration) -> bool {
        lock(&self.healthy_since).is_some_and(|since| since.elapsed() >= duration)
    }
}

pub(crate) async fn heartbeat<C>(
    shared: Arc<Shared<C>>,
    identity: Arc<Identity>,
    health: Arc<Health>,
    host: String,
    queues: Vec<String>,
    interval: Duration,
    stop: CancellationToken,
) {
    health.record(true);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let current = identity.current();
        let sent_at = std::time::Instant::now();
        let beat = tokio::select! {
            _ = stop.cancelled() => return,
            beat = shared.queue.heartbeat(&current) => beat,
        };
        match beat {
            Ok(true) => {
                shared.lease.renew(sent_at);
                health.record(true);
                stop_released_jobs(&shared, &current).await;
            }
            Ok(false) => {
                health.record(false);
                let fresh = default_worker_id();
                tracing::warn!(old = %current, new = %fresh, "this worker was declared dead and its jobs rescued; stopping them and carrying on under a new id");
                lock(&shared.running).values().for_each(|h| h.abort());
                let registering = std::time::Instant::now();
                match shared.queue.register_worker(&fresh, &host, &queues).await {
                    Ok(()) => {
                        *lock(&identity.current) = fresh.into();
                        shared.lease.renew(registering);
                    }
                    Err(err) => tracing::warn!(error = %err, "registering under a new id failed"),
                }
            }
            Err(err) => {
                health.record(false);
                tracing::warn!(error = %err, "heartbeat failed");
            }
        }
    }
}

/// Interrupt handlers whose job this worker no longer holds: cancelled or rescued while a
/// notification was lost (LISTEN reconnecting, or not yet listening at start-up).
async fn stop_released_jobs<C>(shared: &Shared<C>, worker_id: &str) {
    let ids: Vec<i64> = lock(&shared.running).keys().map(|claim| claim.0).collect();
    if ids.is_empty() {
        return;
    }
    let held = match shared.queue.still_held(worker_id, &ids).await {
        Ok(held) => held.into_iter().collect::<HashSet<_>>(),
        Err(err) => {
            tracing::warn!(error = %err, "checking held jobs failed");
            return;
        }
    };
    let checked: HashSet<i64> = ids.into_iter().collect();
    for (claim, handler) in lock(&shared.running).iter() {
        // Claims made after the check started were not asked about.
        if checked.contains(&claim.0) && !held.contains(&claim.0) {
            tracing::info!(
                job.id = claim.0,
                "job no longer held (cancelled or rescued); stopping it"
            );
            handler.abort();
        }
    }
}

pub(crate) async fn maintain(
    queue: Queue,
    health: Arc<Health>,
    interval: Duration,
    heartbeat_timeout: Duration,
    stop: CancellationToken,
) {
    let mut last_vacuum_check = Instant::now();
    loop {
        let pass = async {
            if last_vacuum_check.elapsed() >= VACUUM_CHECK_INTERVAL {
                last_vacuum_check = Instant::now();
                match queue.vacuum_if_bloated(VACUUM_MIN_DEAD_TUPLES).await {
                    Ok(true) => tracing::debug!("vacuumed the jobs table"),
                    Ok(false) => {}
                    Err(err) => tracing::warn!(error = %err, "vacuuming the jobs table failed"),
                }
            }
            let rescue = health
                .healthy_for(heartbeat_timeout)
                .then_some(heartbeat_timeout);
            match queue.maintain(rescue).await {
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
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = pass => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
