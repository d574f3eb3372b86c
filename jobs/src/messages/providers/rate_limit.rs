//! A send-rate limit per provider that holds across every worker process together (issue #3):
//! the generic cell rate algorithm on one row of `provider_rate_limits` (migration 0011).
//!
//! The row's `next_slot_at` is the earliest instant the next message may go. A process reserves
//! `n` slots with one UPDATE that moves it on by `n` intervals (`1 / per_second`) from
//! `max(next_slot_at, now)`, and learns from the reply how far in the future its slots lie; each
//! message then waits for its own slot. All processes draw from the same row, so together they
//! never send more than one message per interval, and the database's clock is the only clock
//! that matters (the reply is an offset, not a timestamp).
//!
//! A process reserves about [`RESERVE_AHEAD`] worth of slots at a time (one UPDATE per ~50 ms
//! under load, not per message). Slots it does not use in time are dropped rather than spent
//! late, which would be a burst.

use sqlx::PgPool;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};
use tokio::time::Instant;

/// How much sending time one reservation covers.
pub const RESERVE_AHEAD: Duration = Duration::from_millis(50);

/// Serialises [`ENSURE`] per provider, so that its statement's snapshot sees what another
/// process wrote just before (two processes starting together would each see no row).
const LOCK_ENSURE: &str =
    "SELECT pg_advisory_xact_lock(hashtext('provider_rate_limits'), hashtext($1))";

/// Write this process's rate; returns the one it replaced (`NULL`: none, or the same).
const ENSURE: &str = "
WITH before AS (SELECT per_second FROM provider_rate_limits WHERE provider = $1)
INSERT INTO provider_rate_limits (provider, per_second) VALUES ($1, $2)
ON CONFLICT (provider) DO UPDATE SET per_second = EXCLUDED.per_second, updated_at = now()
RETURNING (SELECT per_second FROM before WHERE per_second <> $2)";

/// `$1` provider, `$2` slots: reserve them; returns the seconds from now to the end of the
/// reserved run and the rate in force (the row's, which every process shares).
const RESERVE: &str = "
UPDATE provider_rate_limits
   SET next_slot_at = greatest(next_slot_at, clock_timestamp()) + make_interval(secs => $2 / per_second)
 WHERE provider = $1
RETURNING extract(epoch FROM next_slot_at - clock_timestamp())::float8, per_second";

/// One provider's limit, shared by the tasks of this process.
#[derive(Debug)]
pub struct RateLimiter {
    pool: PgPool,
    provider: String,
    per_second: f64,
    ensured: OnceCell<()>,
    /// Reserved slots not used yet, earliest first.
    slots: Mutex<VecDeque<Instant>>,
}

impl RateLimiter {
    /// A limit of `per_second` messages for `provider`, written to the shared row with this
    /// process's first message under it. Every process should be configured alike: the last
    /// one to write wins, and logs a warning naming the rate it replaced.
    pub fn new(pool: PgPool, provider: impl Into<String>, per_second: f64) -> RateLimiter {
        RateLimiter {
            pool,
            provider: provider.into(),
            per_second,
            ensured: OnceCell::new(),
            slots: Mutex::new(VecDeque::new()),
        }
    }

    pub fn per_second(&self) -> f64 {
        self.per_second
    }

    /// Wait for this message's slot.
    pub async fn acquire(&self) -> Result<(), sqlx::Error> {
        let slot = self.next_slot().await?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    async fn next_slot(&self) -> Result<Instant, sqlx::Error> {
        self.ensured
            .get_or_try_init(|| async {
                let mut tx = self.pool.begin().await?;
                sqlx::query(LOCK_ENSURE)
                    .bind(&self.provider)
                    .execute(&mut *tx)
                    .await?;
                let replaced: Option<f64> = sqlx::query_scalar(ENSURE)
                    .bind(&self.provider)
                    .bind(self.per_second)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                if let Some(replaced) = replaced {
                    // Every process shares one limit: another was configured otherwise.
                    tracing::warn!(
                        provider = %self.provider,
                        replaced,
                        per_second = self.per_second,
                        "this process changed the send-rate limit every worker process shares; \
                         configure every process alike"
                    );
                }
                Ok::<_, sqlx::Error>(())
            })
            .await?;
        let mut slots = self.slots.lock().await;
        let interval = Duration::from_secs_f64(1.0 / self.per_second);
        let now = Instant::now();
        while slots.front().is_some_and(|s| *s + interval < now) {
            slots.pop_front();
        }
        if slots.is_empty() {
            slots.extend(self.reserve().await?);
        }
        Ok(slots
            .pop_front()
            .expect("a reservation holds at least one slot"))
    }

    /// Reserve about [`RESERVE_AHEAD`] of slots; their instants on this process's clock.
    async fn reserve(&self) -> Result<Vec<Instant>, sqlx::Error> {
        let n = (self.per_second * RESERVE_AHEAD.as_secs_f64())
            .floor()
            .max(1.0);
        let (ends_in, per_second): (f64, f64) = sqlx::query_as(RESERVE)
            .bind(&self.provider)
            .bind(n)
            .fetch_one(&self.pool)
            .await?;
        let received = Instant::now();
        let interval = 1.0 / per_second;
        Ok((0..n as u32)
            .map(|i| {
                let from_now = ends_in - (n - f64::from(i)) * interval;
                received + Duration::from_secs_f64(from_now.max(0.0))
            })
            .collect())
    }
}
