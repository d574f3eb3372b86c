//! What an SMS provider tells us after a text was accepted, through its webhooks (Twilio-style,
//! form-encoded and signed: [`signature`]):
//!
//! - **a guest's reply** ([`apply_reply`]). STOP and its synonyms put the number on the
//!   **global** SMS list as `unsubscribed`: every organisation texts from the one sending
//!   number (`WEDSYNC_SMS_FROM`), and the provider itself refuses every later text from it to
//!   that guest (Twilio's 21610), so the opt-out is not one organisation's. START takes that
//!   entry off again, and nothing else: an organisation's own entries, bounces and an
//!   operator's manual or erasure entries stay. HELP and ordinary replies change nothing.
//! - **a delivery receipt** ([`apply_receipt`]): see [`receipt`] for what each status means.
//!   The delivery is found by the number and the provider's message id (stored as the
//!   delivery's `message_id`), through the index of address hashes: no index on `message_id`,
//!   which would make every `sent` write a non-HOT update.
//!
//! Both are idempotent: a provider that delivers a webhook twice changes nothing more.

mod keyword;
mod receipt;
mod signature;

pub use keyword::Keyword;
pub use receipt::{NUMBER_CODES, ReceiptVerdict};
pub use signature::{WebhookTokens, sign};

/// Where a provider posts a guest's reply (its inbound-message webhook).
pub const REPLY_PATH: &str = "/v1/sms/inbound";
/// Where a provider posts delivery receipts (the `StatusCallback` of each text).
pub const STATUS_PATH: &str = "/v1/sms/status";

use crate::messages::sql;
use crate::suppression::{Address, AddressError, Channel, Reason, SuppressionList};
use sqlx::PgPool;

/// A webhook that cannot be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmsWebhookError {
    /// The guest's number (`From` of a reply, `To` of a receipt) is missing or not E.164.
    #[error("`{field}` is not a phone number: {source}")]
    Number {
        field: &'static str,
        source: AddressError,
    },
    #[error("applying the SMS webhook failed")]
    Database(#[from] sqlx::Error),
}

/// What a reply did to the global SMS list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyApplied {
    pub keyword: Keyword,
    /// Whether the number is on the global SMS list now (with any reason).
    pub globally_suppressed: bool,
}

/// Apply a guest's reply `body` from `from` (see the module documentation).
pub async fn apply_reply(
    pool: &PgPool,
    from: &str,
    body: &str,
) -> Result<ReplyApplied, SmsWebhookError> {
    let address = number("From", from)?;
    let keyword = Keyword::of(body);
    let list = SuppressionList::new(pool.clone());
    match keyword {
        Keyword::OptOut => {
            list.add(None, &address, Reason::Unsubscribed).await?;
        }
        Keyword::OptIn => {
            sqlx::query(sql::REMOVE_SMS_OPT_OUT)
                .bind(address.hash())
                .execute(pool)
                .await?;
        }
        Keyword::Help | Keyword::Other => {}
    }
    let globally_suppressed = list.find(None, &address).await?.is_some();
    Ok(ReplyApplied {
        keyword,
        globally_suppressed,
    })
}

/// A delivery receipt: `status` and `error_code` as the provider sent them, about the text
/// `message_sid` to `to`.
#[derive(Debug, Clone)]
pub struct Receipt<'a> {
    pub to: &'a str,
    pub message_sid: &'a str,
    pub status: &'a str,
    pub error_code: Option<u32>,
}

/// What a receipt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptApplied {
    pub verdict: ReceiptVerdict,
    /// `None`: no delivery of ours has this number and message id (pruned, erased, not ours).
    pub delivery: Option<ReceiptDelivery>,
}

/// The delivery a receipt was about, after it was applied.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReceiptDelivery {
    pub id: i64,
    pub send_id: String,
    pub org_id: String,
    /// Its status now.
    pub status: String,
    #[sqlx(skip)]
    /// The suppression entry the receipt called for (made now or before).
    pub suppressed: Option<Reason>,
}

#[derive(sqlx::FromRow)]
struct Found {
    #[sqlx(flatten)]
    delivery: ReceiptDelivery,
    address: String,
    address_hash: String,
}

/// Apply a delivery receipt (see [`receipt`]). Only a `sent` SMS delivery changes.
pub async fn apply_receipt(
    pool: &PgPool,
    receipt: &Receipt<'_>,
) -> Result<ReceiptApplied, SmsWebhookError> {
    let address = number("To", receipt.to)?;
    let verdict = ReceiptVerdict::of(receipt.status, receipt.error_code);
    let error = verdict.status().map(|_| {
        let code = receipt
            .error_code
            .map_or_else(String::new, |c| format!(", error {c}"));
        format!(
            "reported by the provider after it was accepted: {}{code}",
            receipt.status.trim()
        )
    });
    let found: Option<Found> = sqlx::query_as(sql::APPLY_SMS_RECEIPT)
        .bind(address.hash())
        .bind(receipt.message_sid)
        .bind(verdict.status())
        .bind(error)
        .fetch_optional(pool)
        .await?;
    let Some(mut found) = found else {
        return Ok(ReceiptApplied {
            verdict,
            delivery: None,
        });
    };
    match verdict {
        ReceiptVerdict::HardBounce => {
            found.delivery.suppressed = SuppressionList::new(pool.clone())
                .add_for_delivery(
                    &found.delivery.org_id,
                    Channel::Sms,
                    &found.address_hash,
                    &found.address,
                    Reason::HardBounce,
                )
                .await?
                .then_some(Reason::HardBounce);
        }
        // The guest's STOP refuses every organisation's texts: global, as at send time.
        ReceiptVerdict::OptedOut => {
            SuppressionList::new(pool.clone())
                .add(None, &address, Reason::Unsubscribed)
                .await?;
            found.delivery.suppressed = Some(Reason::Unsubscribed);
        }
        ReceiptVerdict::Failed | ReceiptVerdict::NoChange => {}
    }
    Ok(ReceiptApplied {
        verdict,
        delivery: Some(found.delivery),
    })
}

fn number(field: &'static str, raw: &str) -> Result<Address, SmsWebhookError> {
    Address::parse(Channel::Sms, raw).map_err(|source| SmsWebhookError::Number { field, source })
}
