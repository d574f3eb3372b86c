//! GDPR erasure of one guest (SPEC §5.3): their address removed from every registered
//! [`LOCATIONS`] entry and from readable suppression entries, one hashed `erased` suppression
//! entry kept so they stay unsubscribed, and the erasure itself recorded without the address.
//!
//! Decisions:
//! - Data is **redacted in place**, not deleted: a finished job stays in the history with
//!   `"[erased]"` where the address was, and an unfinished one still runs (a send to
//!   `"[erased]"` fails validation, and the guest is suppressed anyway). Deleting would also
//!   remove other guests' data that shares the row (a bulk send's recipient list).
//! - Personal data is removed **everywhere**, whichever organisation holds it; `org_id` only
//!   chooses the list that gets the `erased` entry (absent: the global list, so no organisation
//!   can write to them again). Readable entries of any scope keep their reason but lose their
//!   address.
//! - **One transaction**: all or nothing, and repeating an erasure is harmless (it finds nothing
//!   left and the suppression entry already exists). Each location is one statement that scans
//!   its table with a regular expression, so its cost grows with the table (jobs_finished
//!   dominates; retention keeps it bounded); locks are taken only on the matching rows.
//! - A job **running** while the erasure commits may still write the address into its result
//!   when it finishes; run the erasure again after such jobs end (it is idempotent).

mod locations;

pub use locations::{LOCATIONS, Location, Param};

use crate::suppression::{Address, Channel, Reason};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, Transaction};
use std::collections::BTreeMap;

/// Who to erase: at least one of `email`, `phone`.
#[derive(Debug, Clone)]
pub struct ErasureRequest {
    /// The list that gets the `erased` entry; `None`: global.
    pub org_id: Option<String>,
    pub email: Option<Address>,
    pub phone: Option<Address>,
    /// The organisation of the caller, for the record.
    pub requested_by: String,
}

/// The stored record of an erasure (it holds no address).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureRecord {
    pub id: i64,
    pub org_id: Option<String>,
    pub email_hash: Option<String>,
    pub phone_hash: Option<String>,
    /// Rows changed per location; `suppressions.address` counts readable entries made
    /// unreadable. Every location is listed, with 0 where nothing was found.
    pub counts: BTreeMap<String, u64>,
    /// Ids of the `erased` suppression entries (one per address).
    pub suppression_ids: Vec<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErasureError {
    #[error("an erasure needs an email address or a phone number")]
    NothingToErase,
    #[error("erasure failed at `{location}`")]
    Database {
        location: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn at(location: &'static str) -> impl FnOnce(sqlx::Error) -> ErasureError {
    move |source| ErasureError::Database { location, source }
}

/// Erase the guest in one transaction and return the record.
pub async fn erase(pool: &PgPool, request: &ErasureRequest) -> Result<ErasureRecord, ErasureError> {
    let addresses: Vec<&Address> = request.email.iter().chain(&request.phone).collect();
    if addresses.is_empty() {
        return Err(ErasureError::NothingToErase);
    }
    let mut tx = pool.begin().await.map_err(at("begin"))?;
    let mut counts: BTreeMap<String, u64> = LOCATIONS
        .iter()
        .map(|l| (l.name.to_owned(), 0))
        .chain([(SUPPRESSIONS.to_owned(), 0)])
        .collect();
    let mut suppression_ids = Vec::new();
    // Location by location, each for every address: the hot rows (a send's, its deliveries'
    // and their counters, which claims and pause or cancel wait for) are in the last
    // locations, so they are locked only for the erasure's last moments, not through a second
    // round of scans for the other address.
    for location in LOCATIONS {
        for address in &addresses {
            let n = run_location(&mut tx, location, address).await?;
            *counts.entry(location.name.to_owned()).or_default() += n;
        }
    }
    for address in addresses {
        let (redacted, id) = suppress(&mut tx, request.org_id.as_deref(), address).await?;
        *counts.entry(SUPPRESSIONS.to_owned()).or_default() += redacted;
        suppression_ids.push(id);
    }
    let hash_of = |channel: Channel| {
        [&request.email, &request.phone]
            .into_iter()
            .flatten()
            .find(|a| a.channel() == channel)
            .map(Address::hash)
    };
    let (email_hash, phone_hash) = (hash_of(Channel::Email), hash_of(Channel::Sms));
    let (id, created_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO erasures (org_id, email_hash, phone_hash, counts, requested_by)
         VALUES ($1, $2, $3, $4, $5) RETURNING id, created_at",
    )
    .bind(request.org_id.as_deref())
    .bind(email_hash.as_deref())
    .bind(phone_hash.as_deref())
    .bind(serde_json::to_value(&counts).unwrap_or_default())
    .bind(&request.requested_by)
    .fetch_one(&mut *tx)
    .await
    .map_err(at("erasures"))?;
    tx.commit().await.map_err(at("commit"))?;
    Ok(ErasureRecord {
        id,
        org_id: request.org_id.clone(),
        email_hash,
        phone_hash,
        counts,
        suppression_ids,
        created_at,
    })
}

/// The count key for readable suppression entries made unreadable.
const SUPPRESSIONS: &str = "suppressions.address";

async fn run_location(
    tx: &mut Transaction<'_, Postgres>,
    location: &'static Location,
    address: &Address,
) -> Result<u64, ErasureError> {
    let param = match location.param {
        Param::Pattern => match_pattern(address),
        Param::Normalised => address.as_str().to_owned(),
        Param::Hash => address.hash(),
    };
    // Unprepared: each runs once per erasure, and a generic plan gains nothing.
    let done = sqlx::query(location.statement)
        .persistent(false)
        .bind(param)
        .execute(&mut **tx)
        .await
        .map_err(at(location.name))?;
    Ok(done.rows_affected())
}

/// Strip the readable address from every entry with this hash, then make sure the chosen list
/// holds an `erased` entry (turning an existing entry of that scope into one). Returns the
/// number of entries stripped and the id of the `erased` entry.
async fn suppress(
    tx: &mut Transaction<'_, Postgres>,
    org: Option<&str>,
    address: &Address,
) -> Result<(u64, i64), ErasureError> {
    let hash = address.hash();
    // Held to the commit: an insert that would store this address readable waits for it.
    sqlx::query(crate::suppression::sql::LOCK_ADDRESS)
        .bind(&hash)
        .execute(&mut **tx)
        .await
        .map_err(at(SUPPRESSIONS))?;
    let redacted = sqlx::query(
        "UPDATE suppressions SET address = NULL WHERE address_hash = $1 AND address IS NOT NULL",
    )
    .bind(&hash)
    .execute(&mut **tx)
    .await
    .map_err(at(SUPPRESSIONS))?
    .rows_affected();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO suppressions (org_id, channel, address_hash, address, reason)
         VALUES ($1, $2, $3, NULL, $4)
         ON CONFLICT ON CONSTRAINT suppressions_scope_key
         DO UPDATE SET reason = EXCLUDED.reason, address = NULL
         RETURNING id",
    )
    .bind(org)
    .bind(address.channel().as_str())
    .bind(&hash)
    .bind(Reason::Erased.as_str())
    .fetch_one(&mut **tx)
    .await
    .map_err(at("suppressions"))?;
    Ok((redacted, id))
}

/// A PostgreSQL (ARE) regular expression, used case-insensitively, that matches the normalised
/// address but not as part of a longer one: `bob@example.com` must not match inside
/// `jimbob@example.com`, `o'bob@example.com` or `bob@example.com.au`, nor `+4477009001` inside
/// `+447700900123`.
pub fn match_pattern(address: &Address) -> String {
    // A backslash before a non-alphanumeric character makes it literal in an ARE.
    let literal: String = address
        .as_str()
        .chars()
        .flat_map(|c| {
            let escape = (!c.is_alphanumeric()).then_some('\\');
            escape.into_iter().chain([c])
        })
        .collect();
    match address.channel() {
        // Not after a character a local part may hold (RFC 5322's atext, a dot, any non-ASCII
        // letter): erasing `brien@example.com` must leave `o'brien@example.com` alone. But
        // after a JSON escape (`\n` in a jsonb value's text) it does match: that `n` is not
        // part of the address. Not before more of a domain, either.
        Channel::Email => format!(
            r"(?:(?<![a-z0-9.!#$%&'*+/=?^_`{{|}}~\u0080-\uffff-])|(?<=\\[nrtbf])){literal}(?![a-z0-9\u0080-\uffff-]|\.[a-z0-9\u0080-\uffff])"
        ),
        Channel::Sms => format!(r"(?<![0-9+]){literal}(?![0-9])"),
    }
}
