//! The last look before a delivery's message goes ([`Proceed`]), asked once its rate-limit slot
//! has come and an SMTP connection is free for it.
//!
//! - The message takes its permit of the unrecorded limit here (`writer`): the permit covers
//!   the message from right before its bytes go until its outcome is committed, and not its
//!   wait for a connection, so the limit bounds what a crash can send twice without also
//!   counting messages that are only queued. At a fallback provider the permit is taken
//!   before the wait for its connection instead ([`Proceed::reserve`]): a message failed over
//!   from the first provider waits there with its permit, so none may wait for one there.
//! - The send must still be active: read from the process's state watch, no query.
//! - The guest must still not be suppressed. The claim checked that; but under a rate limit
//!   shared by many batch jobs, or against a slow server (the next chunk is claimed while the
//!   current one sends), a claimed message can wait seconds for its turn, and a guest who
//!   unsubscribes meanwhile must get nothing. So a message that has waited longer than
//!   [`RECHECK_AFTER`] since the list was last read for it is checked again in the database
//!   (one indexed lookup, at most once per [`RECHECK_AFTER`]). Messages that go out at once —
//!   every message when nothing limits the rate — cost no query.
//!
//! - The worker must still hold the batch's job ([`Lease`]): while its heartbeats fail, another
//!   worker may be about to rescue the job and send the same deliveries. The message waits
//!   until a heartbeat gets through: then either the job is still this worker's and the
//!   message goes, or the worker learns it was declared dead and stops the run, and the
//!   message never goes from here. It waits before it takes a connection, a breaker call or a
//!   rate-limit slot (`Proceed::ready`), and the lease is looked at once more as the very last
//!   step, after the suppression lookup, with no wait between it and the message.
//!
//! A delivery found suppressed here is withdrawn unsent and becomes `suppressed`. When the
//! lookup itself fails the message is withdrawn too (back to `queued`, claimed again by the
//! next run): better late than sent to someone who asked not to be.

use super::watch::StateWatch;
use crate::messages::providers::Proceed;
use crate::suppression::{Address, Channel, SuppressionList};
use crate::sync::lock;
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wedsync_queue::Lease;

/// How stale the claim's suppression check may be when a message goes: well above the wait of
/// an unthrottled message for its turn (tens of milliseconds), so that only messages held up
/// by a rate limit or a slow server pay the query.
pub(super) const RECHECK_AFTER: Duration = Duration::from_millis(500);

pub(super) struct GoAhead<'a> {
    watch: &'a StateWatch,
    pool: &'a PgPool,
    org_id: &'a str,
    channel: Channel,
    /// Normalised, as the claim returned it.
    address: &'a str,
    /// When the list was last found not to hold the address: at first, when the claim's
    /// statement was sent (`claim::Chunk::checked_at`).
    checked_at: Mutex<Instant>,
    suppressed: AtomicBool,
    /// The suppression list could not be read, so the message was withdrawn unchecked.
    lookup_failed: AtomicBool,
    unrecorded: &'a Arc<Semaphore>,
    /// Taken by the first `proceed` that lets the message go; kept if it is tried again at a
    /// second provider.
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    lease: &'a Lease,
}

/// Whom a message is for: an organisation's guest on a channel.
pub(super) struct Guest<'a> {
    pub org_id: &'a str,
    pub channel: Channel,
    /// Normalised, as the claim returned it.
    pub address: &'a str,
}

impl<'a> GoAhead<'a> {
    pub fn new(
        watch: &'a StateWatch,
        pool: &'a PgPool,
        guest: Guest<'a>,
        checked_at: Instant,
        unrecorded: &'a Arc<Semaphore>,
        lease: &'a Lease,
    ) -> Self {
        GoAhead {
            watch,
            pool,
            org_id: guest.org_id,
            channel: guest.channel,
            address: guest.address,
            checked_at: Mutex::new(checked_at),
            suppressed: AtomicBool::new(false),
            lookup_failed: AtomicBool::new(false),
            unrecorded,
            permit: Mutex::new(None),
            lease,
        }
    }

    /// The unrecorded-limit permit of a message that went (or may have), to be given back once
    /// its outcome is committed; `None` when it never got as far.
    pub fn take_permit(&self) -> Option<OwnedSemaphorePermit> {
        lock(&self.permit).take()
    }

    /// The message was withdrawn because the guest was suppressed while it waited.
    pub fn found_suppressed(&self) -> bool {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// The message was withdrawn because the suppression list could not be read: its batch job
    /// snoozes for a retry's backoff (not at once, which would claim and withdraw the same
    /// messages in a loop while the database struggles).
    pub fn lookup_failed(&self) -> bool {
        self.lookup_failed.load(Ordering::Relaxed)
    }

    /// Wait for a permit of the unrecorded limit. The semaphore is never closed; if it were, the
    /// message would go unbounded rather than never.
    async fn acquire_permit(&self) {
        let permit = self.unrecorded.clone().acquire_owned().await.ok();
        *lock(&self.permit) = permit;
    }

    async fn still_not_suppressed(&self) -> bool {
        if lock(&self.checked_at).elapsed() < RECHECK_AFTER {
            return true;
        }
        let checked = Instant::now();
        let address = match Address::parse(self.channel, self.address) {
            Ok(address) => address,
            // Stored addresses are normalised ones; the claim's check stands.
            Err(_) => return true,
        };
        let list = SuppressionList::new(self.pool.clone());
        match list.contains_address(self.org_id, &address).await {
            Ok(false) => {
                *lock(&self.checked_at) = checked;
                true
            }
            Ok(true) => {
                self.suppressed.store(true, Ordering::Relaxed);
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "checking the suppression list before sending failed; the message waits for the next run");
                self.lookup_failed.store(true, Ordering::Relaxed);
                false
            }
        }
    }
}

impl Proceed for GoAhead<'_> {
    fn proceed(&self) -> BoxFuture<'_, bool> {
        async move {
            if self.watch.stop().is_some() {
                return false;
            }
            let held = lock(&self.permit).is_some();
            if !held {
                self.acquire_permit().await;
            }
            // The wait for a permit can be long (a slow database): look again after it.
            let mut go = self.watch.stop().is_none() && self.still_not_suppressed().await;
            // The lease last, with no wait after it, so that no rescue can come in between:
            // the suppression lookup is slow exactly when heartbeats fail. It was waited for
            // before the message took its slot and connection (`ready`); lapsed since (a long
            // wait for them), the message waits here, and looks again.
            while go && !self.lease.is_held() {
                self.lease.held().await;
                go = self.watch.stop().is_none() && self.still_not_suppressed().await;
            }
            // A permit taken for an earlier provider stays: that provider may have taken the
            // message before it failed, and it is unrecorded until its outcome is written.
            if !go && !held {
                self.take_permit();
            }
            go
        }
        .boxed()
    }

    /// The worker's lease, before the message takes a connection, a slot or a breaker call.
    fn ready(&self) -> BoxFuture<'_, ()> {
        self.lease.held().boxed()
    }

    /// The last look again once a connection is ready: the send still on, the lease held, and
    /// the suppression list read for the guest less than [`RECHECK_AFTER`] ago. A wait for the
    /// connection itself can be long (a kept one that does not answer its check, then a new
    /// one: up to twice the connect timeout); past that, the pool goes back to
    /// [`Proceed::proceed`], which reads the list again, and a guest who unsubscribed
    /// meanwhile gets nothing.
    fn still(&self) -> bool {
        self.watch.stop().is_none()
            && self.lease.is_held()
            && lock(&self.checked_at).elapsed() < RECHECK_AFTER
    }

    /// A fallback provider's connection is only queued for with the permit in hand (see
    /// [`Proceed`]); kept from the provider before, or taken now. Kept if `proceed` then
    /// withdraws the message, and given back with its outcome like any other.
    fn reserve(&self) -> BoxFuture<'_, ()> {
        async move {
            if lock(&self.permit).is_none() {
                self.acquire_permit().await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::deliver::watch::SendStates;
    use wedsync_db::testing::TestDb;

    /// The go-ahead of a message to `address` of organisation `org`, whose suppression list was
    /// last read for it at `checked_at`.
    fn go_ahead<'a>(
        watch: &'a StateWatch,
        pool: &'a PgPool,
        address: &'a str,
        checked_at: Instant,
        unrecorded: &'a Arc<Semaphore>,
        lease: &'a Lease,
    ) -> GoAhead<'a> {
        let guest = Guest {
            org_id: "org",
            channel: Channel::Email,
            address,
        };
        GoAhead::new(watch, pool, guest, checked_at, unrecorded, lease)
    }

    #[tokio::test]
    async fn the_unrecorded_permit_is_taken_when_the_message_may_go_and_kept_across_providers() {
        let db = TestDb::new().await.unwrap();
        let states = SendStates::spawn(db.pool.clone());
        // A send that is not there reads as active.
        let watch = states.watch(&uuid::Uuid::new_v4().to_string());
        let unrecorded = Arc::new(Semaphore::new(1));
        let lease = Lease::unbounded();
        let go = |address| {
            go_ahead(
                &watch,
                &db.pool,
                address,
                Instant::now(),
                &unrecorded,
                &lease,
            )
        };
        let first = go("a@example.com");
        let second = go("b@example.com");
        assert_eq!(unrecorded.available_permits(), 1, "waiting takes no permit");

        assert!(first.proceed().await);
        assert_eq!(unrecorded.available_permits(), 0);
        // Tried again at a secondary provider: the same permit, none more.
        assert!(first.proceed().await);
        assert_eq!(unrecorded.available_permits(), 0);

        // The limit holds: the other message cannot go until the first one's permit is back.
        let mut waiting = second.proceed();
        assert!(futures::poll!(&mut waiting).is_pending());
        let permit = first
            .take_permit()
            .expect("the message that went holds a permit");
        assert!(first.take_permit().is_none());
        assert!(
            futures::poll!(&mut waiting).is_pending(),
            "still unrecorded"
        );
        drop(permit);
        assert!(waiting.await);
        assert!(second.take_permit().is_some());
    }

    #[tokio::test]
    async fn no_message_goes_while_the_worker_may_have_lost_the_job() {
        let db = TestDb::new().await.unwrap();
        let states = SendStates::spawn(db.pool.clone());
        let watch = states.watch(&uuid::Uuid::new_v4().to_string());
        let unrecorded = Arc::new(Semaphore::new(1));
        // The worker's heartbeats have failed for longer than the lease.
        let lease = Lease::lapsed(Duration::from_secs(4));
        let go = go_ahead(
            &watch,
            &db.pool,
            "a@example.com",
            Instant::now(),
            &unrecorded,
            &lease,
        );
        let mut ready = go.ready();
        assert!(futures::poll!(&mut ready).is_pending());
        let mut proceed = go.proceed();
        assert!(futures::poll!(&mut proceed).is_pending());
        // A heartbeat gets through: the job is still this worker's.
        lease.renew(std::time::Instant::now());
        assert!(futures::poll!(&mut ready).is_ready());
        assert!(proceed.await);
    }

    #[tokio::test]
    async fn a_suppression_list_that_cannot_be_read_withdraws_the_message_as_a_failure() {
        let db = TestDb::new().await.unwrap();
        let states = SendStates::spawn(db.pool.clone());
        let watch = states.watch(&uuid::Uuid::new_v4().to_string());
        let unrecorded = Arc::new(Semaphore::new(1));
        let lease = Lease::unbounded();
        // A pool of its own, closed: every lookup through it fails.
        let closed = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy_with(db.pool.connect_options().as_ref().clone());
        closed.close().await;
        // Checked by the claim long enough ago to look again.
        let checked_at = Instant::now() - RECHECK_AFTER;
        let go = go_ahead(
            &watch,
            &closed,
            "a@example.com",
            checked_at,
            &unrecorded,
            &lease,
        );
        assert!(!go.proceed().await);
        assert!(go.lookup_failed());
        assert!(!go.found_suppressed());
        assert!(go.take_permit().is_none(), "nothing went: no permit kept");
    }

    #[tokio::test]
    async fn a_long_wait_for_a_connection_sends_the_message_back_to_the_suppression_list() {
        let db = TestDb::new().await.unwrap();
        let states = SendStates::spawn(db.pool.clone());
        let watch = states.watch(&uuid::Uuid::new_v4().to_string());
        let unrecorded = Arc::new(Semaphore::new(1));
        let lease = Lease::unbounded();
        let go = |checked_at| {
            go_ahead(
                &watch,
                &db.pool,
                "a@example.com",
                checked_at,
                &unrecorded,
                &lease,
            )
        };
        assert!(go(Instant::now()).still(), "just checked");
        let stale = go(Instant::now() - RECHECK_AFTER);
        assert!(!stale.still(), "checked too long ago to go without a look");
        // `proceed` reads the list again (the guest is not on it), and then it may go.
        assert!(stale.proceed().await);
        assert!(stale.still());
    }
}
