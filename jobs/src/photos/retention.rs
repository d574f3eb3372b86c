//! Retention of failed photos (policy `failed_photo_originals`): after the grace period a failed
//! photo's row goes, and so does its original unless another photo still uses the same content.
//!
//! One batch is one transaction: the expired rows are locked with `SKIP LOCKED` (a concurrent
//! cleanup takes other rows, so nothing is counted twice), the objects no other photo refers to
//! are deleted, then the rows. An object deleted just before a failed commit is harmless: the
//! rows are failed photos whose originals are no longer needed.

use super::sql;
use crate::storage::Storage;
use sqlx::PgPool;
use std::collections::BTreeSet;
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Remove at most `batch_size` photos failed more than `days` ago; how many were removed.
pub async fn purge_failed_batch(
    pool: &PgPool,
    storage: &Storage,
    days: i32,
    batch_size: i64,
) -> Result<u64, BoxError> {
    let mut tx = pool.begin().await?;
    let expired: Vec<(Uuid, String)> = sqlx::query_as(sql::LOCK_EXPIRED_FAILED)
        .persistent(false)
        .bind(days)
        .bind(batch_size)
        .fetch_all(&mut *tx)
        .await?;
    if expired.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = expired.iter().map(|(id, _)| *id).collect();
    let keys: BTreeSet<&str> = expired.iter().map(|(_, key)| key.as_str()).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let shared: Vec<String> = sqlx::query_scalar(sql::ORIGINALS_STILL_USED)
        .bind(&ids)
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await?;
    for key in keys.iter().filter(|k| !shared.iter().any(|s| s == *k)) {
        storage.delete(key).await?;
    }
    let deleted = sqlx::query(sql::DELETE_PHOTOS)
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(deleted)
}
