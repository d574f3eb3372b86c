//! Running one policy: bounded batches until it is drained or the time budget is spent.

use super::policy::{Purge, Resolved};
use super::sql;
use crate::context::AppContext;
use crate::photos::retention::{BoxError, purge_failed_batch};
use tokio::time::Instant;

/// What one policy did in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub deleted: u64,
    /// The last batch came back short: nothing older than the cutoff is left that this run
    /// could take (rows locked by a concurrent cleanup are that cleanup's to remove and count).
    pub drained: bool,
}

/// A batch failed after `deleted` rows had been removed (and committed) by earlier ones.
#[derive(Debug)]
pub struct PurgeFailed {
    pub deleted: u64,
    pub error: BoxError,
}

/// Remove `resolved`'s expired rows in batches of `batch_size`, each its own transaction, until
/// a batch removes fewer than `batch_size` rows or `deadline` has passed. A deadline already
/// passed runs no batch at all.
pub async fn purge(
    app: &AppContext,
    resolved: &Resolved,
    batch_size: u32,
    deadline: Instant,
) -> Result<Purged, PurgeFailed> {
    let mut deleted = 0;
    while Instant::now() < deadline {
        let n = batch(app, resolved, batch_size)
            .await
            .map_err(|error| PurgeFailed { deleted, error })?;
        deleted += n;
        if n < u64::from(batch_size) {
            return Ok(Purged {
                deleted,
                drained: true,
            });
        }
    }
    Ok(Purged {
        deleted,
        drained: false,
    })
}

async fn batch(app: &AppContext, resolved: &Resolved, batch_size: u32) -> Result<u64, BoxError> {
    // Ages are at most MAX_OLDER_THAN_DAYS, well inside i32.
    let days = i32::try_from(resolved.older_than_days).unwrap_or(i32::MAX);
    // Unprepared: a cached generic plan could scan a whole large table for every batch.
    let (statement, state) = match resolved.policy.purge {
        Purge::Statement(statement) => (statement, None),
        Purge::FinishedJobs { state } => (sql::DELETE_FINISHED_JOBS, Some(state)),
        Purge::Counted(statement) => {
            let removed: i64 = sqlx::query_scalar(statement)
                .persistent(false)
                .bind(days)
                .bind(i64::from(batch_size))
                .fetch_one(&app.pool)
                .await?;
            return Ok(u64::try_from(removed).unwrap_or(0));
        }
        Purge::FailedPhotos => {
            return purge_failed_batch(&app.pool, &app.storage, days, i64::from(batch_size)).await;
        }
    };
    let mut query = sqlx::query(statement)
        .persistent(false)
        .bind(days)
        .bind(i64::from(batch_size));
    if let Some(state) = state {
        query = query.bind(state);
    }
    Ok(query.execute(&app.pool).await?.rows_affected())
}
