//! A worker process's hold on the jobs it claimed, as far as the process itself can tell.
//!
//! Another worker rescues a job once its holder's heartbeat is older than the heartbeat timeout.
//! A holder whose heartbeats fail (its database connection, a stalled runtime) cannot learn that
//! it was declared dead until a heartbeat gets through, and meanwhile its handlers run on. A
//! handler about to do what must not happen twice (hand a message to a provider) asks the
//! lease first: it is held while the last heartbeat that succeeded was *sent* less than
//! `valid_for` ago. The heartbeat's time in the database is no earlier than its sending, so
//! with `valid_for` below the timeout no rescue can have happened while the lease is held.
//! Once a heartbeat gets through again, either the process still holds its jobs (the lease is
//! renewed and waiting handlers go on) or it was declared dead (its handlers are stopped).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Cheap to clone; every clone is the same lease.
#[derive(Clone, Debug, Default)]
pub struct Lease(Option<Arc<Inner>>);

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// When the last successful heartbeat was sent, in nanoseconds after `origin`.
    renewed_at: AtomicU64,
    valid_for: Duration,
    renewed: Notify,
}

impl Lease {
    /// A lease that is always held: for a handler run outside a worker (a test, a command).
    pub fn unbounded() -> Lease {
        Lease(None)
    }

    /// A lease held for `valid_for` after each [`Lease::renew`], renewed now (the process has
    /// just registered: its first heartbeat).
    pub fn new(valid_for: Duration) -> Lease {
        let lease = Lease::lapsed(valid_for);
        lease.renew(Instant::now());
        lease
    }

    /// A lease held for `valid_for` after each [`Lease::renew`], not held until the first.
    pub fn lapsed(valid_for: Duration) -> Lease {
        let now = Instant::now();
        let origin = now.checked_sub(valid_for).unwrap_or(now);
        Lease(Some(Arc::new(Inner {
            origin,
            renewed_at: AtomicU64::new(0),
            valid_for,
            renewed: Notify::new(),
        })))
    }

    /// A heartbeat sent at `sent_at` succeeded.
    pub fn renew(&self, sent_at: Instant) {
        let Some(inner) = &self.0 else {
            return;
        };
        let at = sent_at.saturating_duration_since(inner.origin).as_nanos() as u64;
        inner.renewed_at.fetch_max(at, Ordering::AcqRel);
        inner.renewed.notify_waiters();
    }

    /// Whether no other worker can have taken this process's jobs.
    pub fn is_held(&self) -> bool {
        let Some(inner) = &self.0 else {
            return true;
        };
        let renewed = inner.origin + Duration::from_nanos(inner.renewed_at.load(Ordering::Acquire));
        renewed.elapsed() < inner.valid_for
    }

    /// Wait until the lease is held (at once when it is).
    pub async fn held(&self) {
        let Some(inner) = &self.0 else {
            return;
        };
        loop {
            let renewed = inner.renewed.notified();
            tokio::pin!(renewed);
            renewed.as_mut().enable();
            if self.is_held() {
                return;
            }
            renewed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn an_unbounded_lease_is_always_held() {
        let lease = Lease::unbounded();
        assert!(lease.is_held());
        assert!(lease.held().now_or_never().is_some());
    }

    #[test]
    fn a_lease_is_held_for_its_time_after_the_heartbeat_was_sent() {
        let lease = Lease::new(Duration::from_secs(4));
        assert!(lease.is_held(), "renewed when made");
        // Timed from when the heartbeat was sent, not from when its answer came.
        let lapsed = Lease::lapsed(Duration::from_secs(4));
        lapsed.renew(Instant::now() - Duration::from_millis(4_100));
        assert!(!lapsed.is_held());
        lapsed.renew(Instant::now() - Duration::from_millis(3_000));
        assert!(lapsed.is_held());
    }

    #[tokio::test]
    async fn a_lapsed_lease_holds_its_waiters_until_a_heartbeat_gets_through() {
        let lease = Lease::lapsed(Duration::from_secs(4));
        assert!(!lease.is_held());
        let mut waiting = Box::pin(lease.held());
        assert!(futures::poll!(&mut waiting).is_pending());
        // A heartbeat that got through, but was sent more than 4 s ago, renews nothing.
        lease.renew(Instant::now() - Duration::from_secs(5));
        assert!(!lease.is_held());
        assert!(futures::poll!(&mut waiting).is_pending());
        lease.renew(Instant::now());
        assert!(futures::poll!(&mut waiting).is_ready());
        // A late answer to an older heartbeat does not move it back.
        lease.renew(Instant::now() - Duration::from_secs(5));
        assert!(lease.is_held());
    }
}
