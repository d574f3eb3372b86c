//! Pause, resume and cancel of a bulk send (SPEC §5.1: they act within seconds).
//!
//! Here the send's `state` changes (and, on cancel, its queued deliveries). The `deliver_batch`
//! jobs read the state at each claim of deliveries, so a running batch notices within one
//! claim: on `paused` it puts back what it took and snoozes, on `cancelled` it marks what it
//! took `cancelled` and ends. What this module adds around that:
//! - resume wakes the send's batch jobs at once (they snoozed while it was paused), found by
//!   the unique keys the fan-out gave them;
//! - cancel marks every `queued` delivery `cancelled` in the same transaction (and a `sending`
//!   one whose batch job is gone: killed on its last attempt and discarded, or cancelled by an
//!   operator, nothing else would settle it), drops the inline
//!   recipients of a send not fanned out yet (or only partly), and wakes the batch jobs (and a
//!   fan-out waiting for its `send_at`) so they end now rather than when their wait runs out.
//!
//! Wake-ups follow the commit: a job woken earlier would still read the old state.

use super::fanout::BulkSendFanout;
use super::{SendSummary, batch_ranges, batch_unique_key, get_send, sql};
use sqlx::{PgConnection, PgPool};
use wedsync_queue::{Job, Queue, QueueError};

/// Why a pause, resume or cancel did not happen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No such send, or one of another organisation.
    #[error("bulk send not found")]
    NotFound,
    /// The send's state does not allow it, e.g. "the send is cancelled; it cannot be resumed".
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The state changed (and is committed), but its jobs could not be woken.
    #[error("could not wake the send's jobs: {0}")]
    Queue(#[from] QueueError),
}

/// Stop sending `id` until it is resumed: `active → paused`. A paused send stays paused (no-op);
/// a `done` or `cancelled` one is a [`ControlError::Conflict`].
pub async fn pause(
    pool: &PgPool,
    id: &str,
    org: Option<&str>,
) -> Result<SendSummary, ControlError> {
    let mut tx = pool.begin().await?;
    let send = lock(&mut tx, id, org).await?;
    match send.state.as_str() {
        "active" => {
            sqlx::query(sql::PAUSE_SEND)
                .bind(&send.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(bulk_send.id = %send.id, "bulk send paused");
        }
        "paused" => {}
        other => return Err(refused(other, "paused")),
    }
    summary(pool, &send.id, org).await
}

/// Carry on sending `id`: `paused → active`, then its waiting batch jobs run at once. An active
/// send is left as it is (no-op, nothing woken); a `done` or `cancelled` one is a conflict.
pub async fn resume(
    queue: &Queue,
    id: &str,
    org: Option<&str>,
) -> Result<SendSummary, ControlError> {
    let mut tx = queue.pool().begin().await?;
    let send = lock(&mut tx, id, org).await?;
    match send.state.as_str() {
        "paused" => {
            sqlx::query(sql::RESUME_SEND)
                .bind(&send.id)
                .execute(&mut *tx)
                .await?;
            // Paused between its last delivery and the batch job's "done" check, a send has no
            // job left to finish it.
            sqlx::query(sql::MARK_DONE)
                .bind(&send.id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            let woken = queue
                .run_snoozed_now_by_unique_keys(&send.batch_keys())
                .await?;
            tracing::info!(bulk_send.id = %send.id, woken, "bulk send resumed");
        }
        "active" => {}
        other => return Err(refused(other, "resumed")),
    }
    summary(queue.pool(), &send.id, org).await
}

/// Stop `id` for good: state `cancelled`, every `queued` delivery `cancelled` (sent ones stay
/// as they are), a send not fanned out yet (or only partly) loses its recipients; then its
/// waiting jobs are woken to end. Cancelling a cancelled send settles again what its batch jobs
/// left (a job gone since, killed on its last attempt or cancelled by an operator, leaves its
/// claimed deliveries `sending`) and wakes them again; a `done` one is a conflict.
pub async fn cancel(
    queue: &Queue,
    id: &str,
    org: Option<&str>,
) -> Result<SendSummary, ControlError> {
    let send = read(queue.pool(), id, org).await?;
    match send.state.as_str() {
        "active" | "paused" => cancel_now(queue.pool(), &send).await?,
        "cancelled" => settle_again(queue.pool(), &send).await?,
        other => return Err(refused(other, "cancelled")),
    }
    let mut keys = send.batch_keys();
    keys.push(fanout_unique_key(&send.id));
    queue.run_now_by_unique_keys(&keys).await?;
    summary(queue.pool(), &send.id, org).await
}

/// The cancel itself, in one transaction: the send's row first (which waits for a fan-out in
/// progress, so the deliveries it made are cancelled too), then its queued deliveries (waiting
/// for any claim in flight on them). Nothing takes the two the other way round: a claim reads
/// the send's row without locking it, the counting trigger writes per-session shards of
/// `bulk_send_counts`, not the row, and the foreign-key check of a new shard row
/// (`FOR KEY SHARE`) does not conflict with the cancel's `FOR NO KEY UPDATE` (`sql::CANCEL_SEND`).
async fn cancel_now(pool: &PgPool, send: &Target) -> Result<(), ControlError> {
    let mut tx = pool.begin().await?;
    let changed: Option<String> = sqlx::query_scalar(sql::CANCEL_SEND)
        .bind(&send.id)
        .fetch_optional(&mut *tx)
        .await?;
    if changed.is_none() {
        // Cancelled or done since it was read; both are final.
        tx.rollback().await?;
        let now = read(pool, &send.id, None).await?;
        return match now.state.as_str() {
            "cancelled" => Ok(()),
            other => Err(refused(other, "cancelled")),
        };
    }
    let (deliveries, orphaned) = cancel_unsettled(&mut tx, send).await?;
    tx.commit().await?;
    tracing::info!(bulk_send.id = %send.id, deliveries, orphaned, "bulk send cancelled");
    Ok(())
}

/// A cancelled send's deliveries that nothing will settle any more, `cancelled` as at the
/// cancel: in the same order, the send's row first, then its deliveries.
async fn settle_again(pool: &PgPool, send: &Target) -> Result<(), ControlError> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, &send.id, None).await?;
    let (deliveries, orphaned) = cancel_unsettled(&mut tx, send).await?;
    tx.commit().await?;
    if deliveries + orphaned > 0 {
        tracing::info!(bulk_send.id = %send.id, deliveries, orphaned, "cancelled bulk send settled again");
    }
    Ok(())
}

/// A cancelled send's `queued` deliveries, and the `sending` ones of batch jobs that are gone,
/// `cancelled`; returns how many of each.
async fn cancel_unsettled(
    conn: &mut PgConnection,
    send: &Target,
) -> Result<(u64, u64), sqlx::Error> {
    let queued = sqlx::query(sql::CANCEL_QUEUED_DELIVERIES)
        .bind(&send.id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    let orphaned = sqlx::query(sql::CANCEL_ORPHANED_DELIVERIES)
        .bind(&send.id)
        .bind(send.batch_size.max(1))
        .execute(conn)
        .await?
        .rows_affected();
    Ok((queued, orphaned))
}

/// A send as read for a state change; `id` in the canonical form the job keys were made from.
struct Target {
    id: String,
    state: String,
    recipient_count: i32,
    batch_size: i32,
}

impl Target {
    /// The unique keys of every batch job the fan-out made (or will make) for this send.
    fn batch_keys(&self) -> Vec<String> {
        batch_ranges(self.recipient_count, self.batch_size)
            .map(|(first, _)| batch_unique_key(&self.id, first))
            .collect()
    }
}

/// The send, its row locked until the end of `conn`'s transaction.
async fn lock(
    conn: &mut PgConnection,
    id: &str,
    org: Option<&str>,
) -> Result<Target, ControlError> {
    let id = canonical(id)?;
    let row = sqlx::query_as(sql::LOCK_FOR_CONTROL)
        .bind(&id)
        .bind(org)
        .fetch_optional(conn)
        .await?;
    found(id, row)
}

/// The send, without a lock.
async fn read(pool: &PgPool, id: &str, org: Option<&str>) -> Result<Target, ControlError> {
    let id = canonical(id)?;
    let row = sqlx::query_as(sql::READ_FOR_CONTROL)
        .bind(&id)
        .bind(org)
        .fetch_optional(pool)
        .await?;
    found(id, row)
}

/// Any spelling of a UUID finds the send; the keys of its jobs use the hyphenated lower case.
fn canonical(id: &str) -> Result<String, ControlError> {
    super::canonical_send_id(id).ok_or(ControlError::NotFound)
}

fn found(id: String, row: Option<(String, i32, i32)>) -> Result<Target, ControlError> {
    let (state, recipient_count, batch_size) = row.ok_or(ControlError::NotFound)?;
    Ok(Target {
        id,
        state,
        recipient_count,
        batch_size,
    })
}

/// Mirrors the key `BulkSendFanout::new_job` gives a send's fan-out.
fn fanout_unique_key(send_id: &str) -> String {
    format!("{}:{send_id}", BulkSendFanout::KIND)
}

fn refused(state: &str, action: &str) -> ControlError {
    ControlError::Conflict(format!("the send is {state}; it cannot be {action}"))
}

async fn summary(pool: &PgPool, id: &str, org: Option<&str>) -> Result<SendSummary, ControlError> {
    get_send(pool, id, org).await?.ok_or(ControlError::NotFound)
}
