//! Reporting this process's breakers to `provider_breakers` (see `status`): at start, at every
//! state change, and every [`PUBLISH_EVERY`] so that readers can tell a live process from a
//! gone one.

use super::Providers;
use super::status::{BreakerReport, PRUNE_AFTER, publish_breakers};
use futures::future::select_all;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

/// Well inside `status::REPORT_FRESHNESS`, so a live process never looks gone.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(5);

impl Providers {
    /// Every provider's breaker as it stands now.
    pub fn reports(&self) -> Vec<BreakerReport> {
        self.all()
            .map(|p| BreakerReport {
                provider: p.name().to_owned(),
                channel: p.channel(),
                role: p.role(),
                breaker: p.breaker().snapshot(),
            })
            .collect()
    }

    /// Publish the reports as `process_id` for as long as the process runs. A failed write is
    /// logged and tried again at the next tick: reporting never holds up sending.
    pub fn spawn_publisher(
        self: &Arc<Self>,
        pool: PgPool,
        process_id: String,
    ) -> tokio::task::JoinHandle<()> {
        let providers = self.clone();
        tokio::spawn(async move {
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
                let tick = tokio::time::sleep(PUBLISH_EVERY);
                if changes.is_empty() {
                    tick.await;
                } else {
                    tokio::select! {
                        _ = tick => {}
                        _ = select_all(changes) => {}
                    }
                }
            }
        })
    }
}
