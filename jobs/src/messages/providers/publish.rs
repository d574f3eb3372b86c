//! Reporting this process's breakers to `provider_breakers` (see `status`): at start, at every
//! state change, and every [`PUBLISH_EVERY`] so that readers can tell a live process from a
//! gone one. A process that stops cleanly withdraws its rows ([`BreakerPublisher::withdraw`]);
//! one that dies stops counting after `status::REPORT_FRESHNESS`.

use super::Providers;
use super::status::{BreakerReport, PRUNE_AFTER, publish_breakers, withdraw_breakers};
use futures::future::select_all;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// Well inside `status::REPORT_FRESHNESS`, so a live process never looks gone.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);

/// The longest [`BreakerPublisher::withdraw`] waits.
const WITHDRAW_WITHIN: Duration = Duration::from_secs(5);

impl Providers {
    /// Every provider's breaker as it stands now.
    pub fn reports(&self) -> Vec<BreakerReport> {
        self.all()
            .map(|p| BreakerReport {
                provider: p.name().to_owned(),
                channel: p.channel(),
                role: p.role(),
                breaker: p.breaker().snapshot(),
                rate_limit_per_second: p.rate_limit(),
            })
            .collect()
    }

    /// Publish the reports as `process_id` until [`BreakerPublisher::withdraw`] (or until the
    /// `BreakerPublisher` is dropped, which withdraws too). A failed write is logged and tried
    /// again at the next tick: reporting never holds up sending.
    pub fn spawn_publisher(self: &Arc<Self>, pool: PgPool, process_id: String) -> BreakerPublisher {
        let providers = self.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                // Register for the next change before reading the states: a change that lands
                // between the read and the wait then still wakes us (notify_waiters keeps no
                // permit for a waiter that was not yet enabled).
                let mut changes: Vec<_> = providers
                    .all()
                    .map(|p| Box::pin(p.breaker().changed()))
                    .collect();
                for change in &mut changes {
                    change.as_mut().enable();
                }
                let reports = providers.reports();
                if let Err(err) = publish_breakers(&pool, &process_id, &reports, PRUNE_AFTER).await
                {
                    tracing::warn!(error = %err, "publishing circuit-breaker states failed");
                }
                // Stopping is looked at only between writes, so no publish can land after the
                // withdrawal and show the stopped process again.
                let changed = async {
                    if changes.is_empty() {
                        std::future::pending::<()>().await;
                    }
                    select_all(changes).await;
                };
                tokio::select! {
                    _ = tokio::time::sleep(PUBLISH_EVERY) => {}
                    _ = changed => {}
                    _ = &mut stopped => break,
                }
            }
            if let Err(err) = withdraw_breakers(&pool, &process_id).await {
                tracing::warn!(error = %err, "withdrawing circuit-breaker states failed");
            }
        });
        BreakerPublisher { stop, task }
    }
}

/// The task [`Providers::spawn_publisher`] started.
#[must_use = "withdraw the reports when the process stops"]
pub struct BreakerPublisher {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl BreakerPublisher {
    /// Stop publishing and delete this process's rows, so that `GET /v1/queues` and `/metrics`
    /// stop counting a process that is gone (before, for up to `REPORT_FRESHNESS`). Call it
    /// once the worker has stopped: until then its breakers still decide its sends.
    /// Bounded by [`WITHDRAW_WITHIN`] (a publish in flight against a stalled database must not
    /// hold up the shutdown): rows left behind stop counting after `REPORT_FRESHNESS` anyway.
    pub async fn withdraw(self) {
        let _ = self.stop.send(());
        match tokio::time::timeout(WITHDRAW_WITHIN, self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(error = %err, "the circuit-breaker publisher failed"),
            Err(_) => tracing::warn!("withdrawing circuit-breaker states timed out"),
        }
    }
}
