//! The suppression list (SPEC §5.1): addresses that must not be sent to, per organisation or
//! global, matched by the hash of the normalised address ([`address`]).
//!
//! The bulk-messages family checks it at send time, not only at enqueue:
//! `SuppressionList::contains(org, channel, raw_address)` (or [`SuppressionList::contains_address`]
//! with an already parsed [`Address`]) is true when the organisation's own list or the global one
//! holds the address; a permanent bounce adds a `hard_bounce` entry with [`SuppressionList::add`],
//! an unsubscribe link an `unsubscribed` one with [`SuppressionList::add_hash`] (its token carries
//! the hash, not the address).

mod address;
mod list;
mod reason;
pub(crate) mod sql;

pub use address::{
    Address, AddressError, Channel, MAX_EMAIL_LEN, normalise_email, normalise_phone,
};
pub use list::ListFilter;
pub use reason::{Reason, UnknownReason};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// One entry as stored; `address` is `None` once the guest was erased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Entry {
    pub id: i64,
    /// `None`: global.
    pub org_id: Option<String>,
    pub channel: String,
    pub address: Option<String>,
    /// `None` in a planner's listing of a global entry: the hash of a phone number is quickly
    /// reversed by trying every number, and the global list holds other organisations' guests.
    pub address_hash: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// The result of [`SuppressionList::add`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub entry: Entry,
    /// False when the scope already held the address; that entry is returned unchanged.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuppressionError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("suppression list query failed")]
    Database(#[from] sqlx::Error),
}

/// The suppression list in the database; cheap to clone.
#[derive(Debug, Clone)]
pub struct SuppressionList {
    pool: PgPool,
}

impl SuppressionList {
    pub fn new(pool: PgPool) -> Self {
        SuppressionList { pool }
    }

    /// Is `address` (raw: it is normalised here) suppressed for `org` on `channel`, by the
    /// organisation's own list or the global one?
    pub async fn contains(
        &self,
        org: &str,
        channel: Channel,
        address: &str,
    ) -> Result<bool, SuppressionError> {
        let address = Address::parse(channel, address)?;
        Ok(self.contains_address(org, &address).await?)
    }

    /// [`SuppressionList::contains`] for an address already parsed.
    pub async fn contains_address(
        &self,
        org: &str,
        address: &Address,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(sql::CONTAINS)
            .bind(address.hash())
            .bind(address.channel().as_str())
            .bind(org)
            .fetch_one(&self.pool)
            .await
    }

    /// Add `address` to `org`'s list (`None`: the global list). Idempotent: an existing entry
    /// for the same scope and address is returned as it is (an erased guest's entry stays
    /// erased and gets no readable address back). A guest erased in any list is added without
    /// a readable address.
    pub async fn add(
        &self,
        org: Option<&str>,
        address: &Address,
        reason: Reason,
    ) -> Result<Added, sqlx::Error> {
        let readable = Some(address.as_str());
        self.add_hash(org, address.channel(), &address.hash(), readable, reason)
            .await
    }

    /// [`SuppressionList::add`] by hash, for callers that no longer have the address (an
    /// unsubscribe link whose delivery was erased or pruned). `readable`, when given, must be
    /// the normalised address of `hash`; it is not stored for an `erased` entry, nor when the
    /// guest was erased in any list.
    pub async fn add_hash(
        &self,
        org: Option<&str>,
        channel: Channel,
        hash: &str,
        readable: Option<&str>,
        reason: Reason,
    ) -> Result<Added, sqlx::Error> {
        let readable = readable.filter(|_| reason != Reason::Erased);
        // A concurrent remove between the two statements: insert again.
        loop {
            let mut tx = self.pool.begin().await?;
            if readable.is_some() {
                sqlx::query(sql::LOCK_ADDRESS)
                    .bind(hash)
                    .execute(&mut *tx)
                    .await?;
            }
            let inserted: Option<Entry> = sqlx::query_as(sql::INSERT)
                .bind(org)
                .bind(channel.as_str())
                .bind(hash)
                .bind(readable)
                .bind(reason.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            if let Some(entry) = inserted {
                return Ok(Added {
                    entry,
                    created: true,
                });
            }
            let Some(entry) = self.find_hash(org, channel, hash).await? else {
                continue;
            };
            // An organisation's entry a planner may remove gives way to the guest's own act.
            // Not a global one: the admins' list, where a guest's START removes only what
            // their STOP made.
            let weak = matches!(entry.reason.as_str(), "manual" | "hard_bounce");
            if org.is_some() && weak && matches!(reason, Reason::Unsubscribed | Reason::Complaint) {
                let strengthened: Option<Entry> = sqlx::query_as(sql::STRENGTHEN)
                    .bind(org)
                    .bind(channel.as_str())
                    .bind(hash)
                    .bind(reason.as_str())
                    .fetch_optional(&self.pool)
                    .await?;
                match strengthened {
                    Some(entry) => {
                        return Ok(Added {
                            entry,
                            created: false,
                        });
                    }
                    // Removed or changed meanwhile: look again.
                    None => continue,
                }
            }
            return Ok(Added {
                entry,
                created: false,
            });
        }
    }

    /// Put the guest of a delivery on `org`'s list, as a report about the delivery calls for:
    /// `address` and `hash` as the delivery stores them. Nothing when an erasure redacted the
    /// address (`[erased]`): that guest's `erased` entry already stands. Whether an entry is on
    /// the list now (made now or before).
    pub async fn add_for_delivery(
        &self,
        org: &str,
        channel: Channel,
        hash: &str,
        address: &str,
        reason: Reason,
    ) -> Result<bool, sqlx::Error> {
        if address.contains("[erased]") {
            return Ok(false);
        }
        self.add_hash(Some(org), channel, hash, Some(address), reason)
            .await?;
        Ok(true)
    }

    /// The entry for `address` in exactly this scope (`None`: global).
    pub async fn find(
        &self,
        org: Option<&str>,
        address: &Address,
    ) -> Result<Option<Entry>, sqlx::Error> {
        self.find_hash(org, address.channel(), &address.hash())
            .await
    }

    /// [`SuppressionList::find`] by hash.
    pub async fn find_hash(
        &self,
        org: Option<&str>,
        channel: Channel,
        hash: &str,
    ) -> Result<Option<Entry>, sqlx::Error> {
        sqlx::query_as(sql::FIND)
            .bind(org)
            .bind(channel.as_str())
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
    }

    /// Remove `address` from exactly this scope. Only `manual` and `hard_bounce` entries unless
    /// `admin`: an `unsubscribed` or `complaint` entry is the guest's own act, which a planner
    /// must not undo, and taking an `erased` guest off the list is a deliberate act too.
    /// Returns the removed entry, `None` if there was none (or it needs an admin).
    pub async fn remove(
        &self,
        org: Option<&str>,
        address: &Address,
        admin: bool,
    ) -> Result<Option<Entry>, sqlx::Error> {
        sqlx::query_as(sql::REMOVE)
            .bind(org)
            .bind(address.channel().as_str())
            .bind(address.hash())
            .bind(admin)
            .fetch_optional(&self.pool)
            .await
    }
}
