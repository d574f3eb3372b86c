//! What wakes a worker: pool rows (concurrency, pause) reloaded on NOTIFY and on a timer, and
//! notifications of new jobs and cancellations.

use crate::executor::{Shared, lock};
use sqlx::PgPool;
use sqlx::postgres::{PgListener, PgNotification};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use wedsync_queue::{CANCEL_CHANNEL, JOBS_CHANNEL, POOLS_CHANNEL, Pool, Queue};

/// A queue's pool as one worker process applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolState {
    pub concurrency: i32,
    pub paused: bool,
}

impl PoolState {
    /// The state of `queue` from its pool row, or `default_concurrency` unpaused without one.
    pub fn from_rows(pools: &[Pool], queue: &str, default_concurrency: i32) -> Self {
        pools.iter().find(|p| p.queue == queue).map_or(
            PoolState {
                concurrency: default_concurrency,
                paused: false,
            },
            |p| PoolState {
                concurrency: p.concurrency,
                paused: p.paused,
            },
        )
    }

    /// Jobs this process may run at once for the queue.
    pub fn limit(self) -> usize {
        if self.paused {
            0
        } else {
            self.concurrency.max(0) as usize
        }
    }
}

/// Reload pool rows whenever `reload` is notified or `interval` passes; publish each queue's state.
pub(crate) async fn watch_pools(
    queue: Queue,
    senders: HashMap<String, watch::Sender<PoolState>>,
    default_concurrency: i32,
    reload: Arc<Notify>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        match queue.pools().await {
            Ok(pools) => {
                for (name, sender) in &senders {
                    let state = PoolState::from_rows(&pools, name, default_concurrency);
                    sender.send_if_modified(|current| {
                        let changed = *current != state;
                        if changed {
                            tracing::info!(queue = %name, concurrency = state.concurrency, paused = state.paused, "pool changed");
                        }
                        *current = state;
                        changed
                    });
                }
            }
            Err(err) => tracing::warn!(error = %err, "loading pools failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = reload.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// LISTEN for new jobs, pool changes and cancellations; reconnects on its own. Notifications
/// lost while disconnected are covered by the poll timers, and every queue is woken on reconnect.
pub(crate) async fn listen<C>(
    pool: PgPool,
    wakes: HashMap<String, Arc<Notify>>,
    reload_pools: Arc<Notify>,
    shared: Arc<Shared<C>>,
    stop: CancellationToken,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut listener = match connect(&pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "LISTEN connection failed; polling until it is back");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        wakes.values().for_each(|w| w.notify_one());
        loop {
            let notification = tokio::select! {
                _ = stop.cancelled() => return,
                n = listener.try_recv() => n,
            };
            match notification {
                // The connection dropped; the next call reconnects. Whatever was notified in
                // between is lost, so every queue looks for work and pools are reloaded.
                Ok(None) => {
                    tracing::warn!("LISTEN connection lost; reconnecting");
                    wakes.values().for_each(|w| w.notify_one());
                    reload_pools.notify_one();
                }
                Ok(Some(n)) => dispatch(&n, &wakes, &reload_pools, &shared),
                Err(err) => {
                    tracing::warn!(error = %err, "LISTEN connection failed; reconnecting");
                    break;
                }
            }
        }
    }
}

fn dispatch<C>(
    notification: &PgNotification,
    wakes: &HashMap<String, Arc<Notify>>,
    reload_pools: &Notify,
    shared: &Shared<C>,
) {
    match notification.channel() {
        JOBS_CHANNEL => {
            if let Some(wake) = wakes.get(notification.payload()) {
                wake.notify_one();
            }
        }
        POOLS_CHANNEL => reload_pools.notify_one(),
        CANCEL_CHANNEL => {
            let Ok(id) = notification.payload().parse::<i64>() else {
                return;
            };
            for (claim, handler) in lock(&shared.running).iter() {
                if claim.0 == id {
                    tracing::info!(job.id = id, "job cancelled by an operator; stopping it");
                    handler.abort();
                }
            }
        }
        _ => {}
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener
        .listen_all([JOBS_CHANNEL, POOLS_CHANNEL, CANCEL_CHANNEL])
        .await?;
    Ok(listener)
}
