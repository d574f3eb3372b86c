//! Errors of the queue core.

/// What can go wrong talking to the queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("job {0} not found")]
    NotFound(i64),
    /// The operation does not fit the job's current state (e.g. retrying a running job).
    #[error("{0}")]
    Conflict(String),
    #[error("job args could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl QueueError {
    /// True when the database rejected a row for breaking a unique constraint.
    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
    }
}
