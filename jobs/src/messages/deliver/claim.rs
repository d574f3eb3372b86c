//! Taking the next deliveries of a batch: one statement that checks the send is still active,
//! checks each address against the suppression list and marks the rows `sending` (or
//! `suppressed`), right before they are sent.

use crate::messages::sql;
use sqlx::PgPool;

/// A delivery taken for sending (or found suppressed).
#[derive(Debug, sqlx::FromRow)]
pub(super) struct Claimed {
    pub id: i64,
    pub ordinal: i32,
    /// Normalised (lower-cased email, E.164 phone).
    pub address: String,
    pub address_hash: String,
    pub variables: serde_json::Value,
    /// `sending`, or `suppressed` when the suppression list holds the address.
    pub status: String,
}

impl Claimed {
    pub fn is_suppressed(&self) -> bool {
        self.status == "suppressed"
    }
}

/// Up to `limit` deliveries of `send_id` with an ordinal in `(after, last]`; empty when none is
/// left or the send is no longer active.
pub(super) async fn claim_chunk(
    pool: &PgPool,
    send_id: &str,
    after: i32,
    last: i32,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(sql::CLAIM_CHUNK)
        .bind(send_id)
        .bind(after)
        .bind(last)
        .bind(limit)
        .fetch_all(pool)
        .await
}
