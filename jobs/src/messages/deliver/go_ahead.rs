//! The last look before a delivery's message goes ([`Proceed`]), asked once its rate-limit slot
//! comes and again once an SMTP connection is free for it.
//!
//! - The send must still be active: read from the process's state watch, no query.
//! - The guest must still not be suppressed. The claim checked that, right before the send
//!   began; but under a rate limit shared by many batch jobs, or against a slow server, a
//!   claimed message can wait seconds for its turn, and a guest who unsubscribes meanwhile must
//!   get nothing. So a message that has waited longer than [`RECHECK_AFTER`] since the list was
//!   last read for it is checked again in the database (one indexed lookup, at most once per
//!   [`RECHECK_AFTER`]). Messages that go out at once — every message when nothing limits the
//!   rate — cost no query.
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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::time::Instant;

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
    /// When the list was last found not to hold the address (the claim, at first).
    checked_at: Mutex<Instant>,
    suppressed: AtomicBool,
}

impl<'a> GoAhead<'a> {
    pub fn new(
        watch: &'a StateWatch,
        pool: &'a PgPool,
        org_id: &'a str,
        channel: Channel,
        address: &'a str,
        claimed_at: Instant,
    ) -> Self {
        GoAhead {
            watch,
            pool,
            org_id,
            channel,
            address,
            checked_at: Mutex::new(claimed_at),
            suppressed: AtomicBool::new(false),
        }
    }

    /// The message was withdrawn because the guest was suppressed while it waited.
    pub fn found_suppressed(&self) -> bool {
        self.suppressed.load(Ordering::Relaxed)
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
                false
            }
        }
    }
}

impl Proceed for GoAhead<'_> {
    fn proceed(&self) -> BoxFuture<'_, bool> {
        async move { self.watch.stop().is_none() && self.still_not_suppressed().await }.boxed()
    }
}
