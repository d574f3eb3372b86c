//! Taking the next deliveries of a batch: one statement that checks the send is still active,
//! checks each address against the suppression list and marks the rows `sending` (or
//! `suppressed`), right before they are sent.

use crate::messages::sql;
use sqlx::PgPool;
use tokio::time::Instant;

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

/// The deliveries one claim took, and when it began.
pub(super) struct Chunk {
    pub deliveries: Vec<Claimed>,
    /// When the claim's statement was sent: its suppression check is at least this old. The
    /// next chunk is claimed while the current one sends, so its messages may start long after
    /// this; `go_ahead` looks an address up again once the check is too old.
    pub checked_at: Instant,
}

/// Up to `limit` deliveries of `send_id` with an ordinal in `(after, last]`; none when none is
/// left or the send is no longer active.
pub(super) async fn claim_chunk(
    pool: &PgPool,
    send_id: &str,
    after: i32,
    last: i32,
    limit: i64,
) -> Result<Chunk, sqlx::Error> {
    let checked_at = Instant::now();
    let deliveries = sqlx::query_as(sql::CLAIM_CHUNK)
        .bind(send_id)
        .bind(after)
        .bind(last)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(Chunk {
        deliveries,
        checked_at,
    })
}

impl Chunk {
    pub fn empty() -> Chunk {
        Chunk {
            deliveries: Vec::new(),
            checked_at: Instant::now(),
        }
    }
}
