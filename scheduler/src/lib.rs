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
            match try_lead(&pool).await {
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

/// A detached connection holding the leader lock, or None if another scheduler holds it.
async fn try_lead(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LEADER_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    // Only the leader's connection leaves the pool; a follower's goes back to it.
    Ok(locked.then(|| conn.detach()))
}
