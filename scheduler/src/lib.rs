//! The scheduler (SPEC §6): cron entries enqueued exactly once per fire time, however many
//! schedulers run, by a leader elected through a PostgreSQL advisory lock held on its own
//! connection. Pool sizing rules live in [`pools`] (pure functions); [`scaling`] applies them to
//! the database every minute (the `pool_scaling` job of the built-in `pool-scaling` entry).
//!
//! Exactly-once rests on the database, not on leadership: [`tick`] locks each entry's
//! `schedule_state` row and advances it in the transaction that enqueues the fire times, with a
//! unique key per fire time as a second guard. Leadership only keeps the other schedulers idle.

mod entry;
pub mod pools;
pub mod scaling;
mod status;
mod tick;

pub use entry::{Entry, next_fires};
pub use status::{EntryStatus, run_now, statuses};
pub use tick::{Fired, MAX_FIRES_PER_PASS, ON_TIME_GRACE, tick, tick_on, unique_key};

use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Advisory lock key of the scheduler leader.
const LEADER_LOCK: i64 = 7_460_327_412;

/// What can go wrong parsing entries or ticking.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    #[error("schedule entry `{name}`: invalid cron expression `{expression}`: {source}")]
    Cron {
        name: String,
        expression: String,
        #[source]
        source: cron::error::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Queue(#[from] wedsync_queue::QueueError),
}

/// [`run_with_entries`] without entries: only holds leadership.
pub async fn run(pool: PgPool, interval: Duration, stop: CancellationToken) {
    run_with_entries(pool, Vec::new(), interval, stop).await
}

/// Try to become leader every `interval` until `stop`. The leader ticks `entries` every
/// `interval`, or at the next fire time when that is sooner, on the connection holding its lock;
/// it keeps the lock until it stops or its connection dies, when another scheduler takes over.
pub async fn run_with_entries(
    pool: PgPool,
    entries: Vec<Entry>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut leader: Option<PgConnection> = None;
    loop {
        if let Some(conn) = leader.as_mut()
            && conn.ping().await.is_err()
        {
            tracing::warn!("scheduler lost its leader connection");
            leader = None;
        }
        if leader.is_none() {
            match try_lead(&pool, interval).await {
                Ok(Some(conn)) => {
                    tracing::info!("this scheduler is the leader");
                    leader = Some(conn);
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "leader election failed"),
            }
        }
        let mut pause = interval;
        if let Some(conn) = leader.as_mut() {
            let now = Utc::now();
            match tick_on(conn, &entries, now).await {
                Ok(fired) => {
                    for f in &fired {
                        tracing::debug!(entry = %f.name, fire_at = %f.fire_at, job = f.job_id,
                                        duplicate = f.duplicate, "scheduled job enqueued");
                    }
                }
                Err(err) => tracing::warn!(error = %err, "scheduler tick failed"),
            }
            let after = Utc::now().max(now);
            if let Some(next) = entries
                .iter()
                .filter_map(|entry| entry.fires_after(after).next())
                .min()
            {
                pause = pause.min((next - Utc::now()).to_std().unwrap_or_default());
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(pause) => {}
        }
    }
    if let Some(conn) = leader {
        let _ = conn.close().await;
    }
}

/// A detached connection holding the leader lock, or None if another scheduler holds it. The
/// server ends the connection's session, and with it the lock, once it has sat idle for
/// [`leader_timeout`]: a leader whose host died or whose process froze would otherwise keep the
/// lock until TCP keepalive gives up (about two hours with Linux's defaults), and no entry would
/// fire meanwhile. A live leader uses the connection every `interval`.
pub async fn try_lead(
    pool: &PgPool,
    interval: Duration,
) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        // Only the leader's connection leaves the pool; a follower's goes back to it.
        return Ok(None);
    }
    let mut conn = conn.detach();
    let timeout = format!("{}ms", leader_timeout(interval).as_millis());
    let set = sqlx::query(
        "SELECT set_config('idle_session_timeout', $1, false),
                set_config('idle_in_transaction_session_timeout', $1, false)",
    )
    .bind(&timeout)
    .execute(&mut conn)
    .await;
    if let Err(err) = set {
        // PostgreSQL before 14 has no `idle_session_timeout`: lead without it.
        tracing::warn!(error = %err, "the leader connection has no idle timeout");
    }
    Ok(Some(conn))
}

/// How long a leader's connection may sit idle (or idle in a transaction) before the server
/// ends it: ten checks' worth, at least two seconds. Leadership moving while the old leader
/// only stalled is harmless: every tick is exactly-once by its own row lock.
pub fn leader_timeout(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(2))
}
