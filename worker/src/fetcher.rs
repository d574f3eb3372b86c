//! One queue's fetch loop: claim as many jobs as there are free slots (in batches), start them,
//! then sleep until a slot frees, a notification or pool change arrives, or the poll timer fires.

use crate::executor::{Shared, Slots, spawn_job};
use crate::housekeeping::Identity;
use crate::signals::PoolState;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

pub(crate) struct Fetcher<C> {
    pub shared: Arc<Shared<C>>,
    pub identity: Arc<Identity>,
    pub queue: String,
    pub slots: Arc<Slots>,
    pub pool: watch::Receiver<PoolState>,
    /// Notified when jobs become available on this queue.
    pub wake: Arc<Notify>,
    pub max_batch: i64,
    pub poll_interval: Duration,
}

impl<C: Clone + Send + Sync + 'static> Fetcher<C> {
    /// Runs until `stop` is cancelled; claims nothing after that.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut error_delay = Duration::from_millis(100);
        loop {
            if stop.is_cancelled() {
                return;
            }
            let state = *self.pool.borrow_and_update();
            let limit = state.limit();
            let free = limit.saturating_sub(self.slots.in_flight.load(Ordering::Acquire));
            let mut drained = false;
            if free > 0 {
                // Claim nothing while this process may have been declared dead: a claim under
                // the old id would be stopped with the rest once a heartbeat tells it so, and
                // sit `running` until the sweep for jobs of vanished workers.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    () = self.shared.lease.held() => {}
                }
                let want = (free as i64).min(self.max_batch);
                let worker_id = self.identity.current();
                match self
                    .shared
                    .queue
                    .claim_batch(&self.queue, want, &worker_id)
                    .await
                {
                    Ok(jobs) => {
                        error_delay = Duration::from_millis(100);
                        drained = (jobs.len() as i64) < want;
                        for job in jobs {
                            spawn_job(&self.shared, &self.slots, job, worker_id.clone());
                        }
                        if !drained {
                            continue;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(queue = %self.queue, error = %err, "claiming jobs failed; backing off");
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(error_delay) => {}
                        }
                        error_delay = (error_delay * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
            let at_limit = free == 0 && limit > 0;
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = self.pool.changed() => {
                    if changed.is_err() {
                        return; // the pool watcher is gone: the worker is stopping
                    }
                }
                _ = self.wake.notified(), if !at_limit => {}
                _ = self.slots.freed.notified(), if at_limit => {}
                _ = tokio::time::sleep(self.poll_interval), if drained || limit == 0 => {}
            }
        }
    }
}
