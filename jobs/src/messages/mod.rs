//! Bulk messages (SPEC §5.1), email first: templates and their validation, the fan-out of a send
//! into deliveries, and the delivery job that checks the suppression list and sends over SMTP.
//!
//! Flow: `POST /v1/bulk-sends` validates and stores a send with its recipients and enqueues
//! [`BulkSendFanout`] in the same transaction; the fan-out inserts one delivery per recipient
//! and one [`DeliverBatch`] job per batch of deliveries ([`NewSend::batch_size`]), again in one
//! transaction; each batch job sends its deliveries one by one. See `docs/messages.md`.

pub mod capped_recipients;
pub mod control;
mod deliver;
pub mod email;
pub mod fanout;
pub mod mail_report;
mod one_line;
pub mod providers;
pub mod sms_webhook;
mod sql;
pub mod template;
pub mod unsubscribe;
pub mod unsubscribe_mail;
pub mod validate;

pub use deliver::{DeliverBatch, batch_ranges, batch_unique_key};
pub use fanout::BulkSendFanout;

use crate::suppression::Channel;
use providers::{EmailTransport, Provider, ProviderRole, Providers};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;

/// The queue every job of the family runs on.
pub const QUEUE: &str = "messages";

/// The public URL when `WEDSYNC_PUBLIC_URL` is unset (the embedded default's API).
pub const DEFAULT_PUBLIC_URL: &str = "http://localhost:8080";

/// What the family needs at run time; part of `AppContext`. Built once per process: the
/// providers (with their connection pools, breakers and rate limits) are shared by every job.
#[derive(Clone, Debug)]
pub struct MessagesContext {
    pub providers: Arc<Providers>,
    /// Base of the public links in messages, e.g. `https://wedsync.example` (no trailing `/`).
    pub public_url: String,
    /// The sender id SMS providers show (`WEDSYNC_SMS_FROM`).
    pub sms_from: String,
    /// Where SMS providers post delivery receipts: `{WEDSYNC_PUBLIC_URL}/v1/sms/status`
    /// ([`sms_webhook::STATUS_PATH`]), sent with every text; `None` when `WEDSYNC_PUBLIC_URL` is
    /// unset, since no provider can reach the embedded default's `localhost`.
    pub sms_status_callback: Option<String>,
    /// The envelope sender of every email, where bounces go (`WEDSYNC_BOUNCE_ADDRESS`); `None`:
    /// each send's own sender address.
    pub bounce_address: Option<email::Address>,
    /// First retry delay after a temporary send failure; doubles per attempt, at most 30 min.
    pub retry_base: Duration,
    /// The most deliveries a batch job takes and sends at once: fewer while sending is slow
    /// (`deliver::chunk_size`) and under a rate limit ([`MessagesContext::chunk_for`]).
    pub chunk_size: usize,
    /// How long one run of a batch job may take: it stops claiming after half of this and hands
    /// the rest of its batch to its next run. At most, and by default, the job's timeout.
    pub run_budget: Duration,
    /// Signs the unsubscribe links of marketing messages; the API verifies them with the same
    /// key (`WEDSYNC_SIGNING_KEY`, else the database's, see `unsubscribe`).
    pub signing_key: unsubscribe::SigningKey,
    /// Permits for messages handed to a provider and not yet recorded as sent: at most this
    /// many can arrive twice if the process dies ([`MessagesContext::with_unrecorded_limit`]).
    unrecorded: Arc<tokio::sync::Semaphore>,
    /// The process's outcome writer, started on first use (`deliver::writer`).
    writer: Arc<std::sync::OnceLock<deliver::StatusWriter>>,
    /// The process's watcher of send states, started on first use (`deliver::watch`).
    states: Arc<std::sync::OnceLock<deliver::SendStates>>,
    /// The chunk size the process's batch jobs last settled on (`deliver::chunk_size`).
    last_chunk_sizes: Arc<deliver::LastChunkSizes>,
}

/// Messages sent but not yet recorded, per process, unless configured: four SMTP pools' worth
/// (fewer cost throughput, `docs/benchmarks.md`).
pub const DEFAULT_UNRECORDED_LIMIT: usize = 40;

/// The most deliveries a batch job sends at once unless configured.
pub const DEFAULT_CHUNK_SIZE: usize = 100;

impl Default for MessagesContext {
    fn default() -> Self {
        let dir = std::env::temp_dir();
        let email = EmailTransport::outbox(dir.join("wedsync-outbox"));
        let sms = providers::SmsOutbox::new(dir.join("wedsync-sms-outbox"));
        MessagesContext::new(
            Providers::new()
                .with(Provider::email(
                    ProviderRole::Primary,
                    email,
                    Default::default(),
                ))
                .with(Provider::sms(
                    ProviderRole::Primary,
                    Arc::new(sms),
                    Default::default(),
                )),
        )
    }
}

impl MessagesContext {
    /// Defaults around `providers`.
    pub fn new(providers: Providers) -> Self {
        MessagesContext {
            providers: Arc::new(providers),
            public_url: DEFAULT_PUBLIC_URL.to_owned(),
            sms_from: "WedSync".to_owned(),
            sms_status_callback: None,
            bounce_address: None,
            retry_base: Duration::from_secs(30),
            chunk_size: DEFAULT_CHUNK_SIZE,
            run_budget: deliver::BATCH_TIMEOUT,
            signing_key: unsubscribe::SigningKey::random(),
            unrecorded: Arc::new(tokio::sync::Semaphore::new(DEFAULT_UNRECORDED_LIMIT)),
            writer: Arc::default(),
            states: Arc::default(),
            last_chunk_sizes: Arc::default(),
        }
    }

    /// At most `limit` messages of this process may be sent and not yet recorded at any time:
    /// what bounds the duplicates a crash can cause. Too low a limit costs throughput (a send
    /// waits for earlier outcomes to be written); about twice the SMTP pool is plenty.
    pub fn with_unrecorded_limit(mut self, limit: usize) -> Self {
        self.unrecorded = Arc::new(tokio::sync::Semaphore::new(limit.max(1)));
        self
    }

    pub(crate) fn unrecorded(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.unrecorded
    }

    /// The process's outcome writer on `pool` (started by the first caller).
    pub(crate) fn writer(&self, pool: &sqlx::PgPool) -> &deliver::StatusWriter {
        self.writer
            .get_or_init(|| deliver::StatusWriter::spawn(pool))
    }

    /// The process's watcher of send states on `pool` (started by the first caller).
    pub(crate) fn last_chunk_sizes(&self) -> &deliver::LastChunkSizes {
        &self.last_chunk_sizes
    }

    pub(crate) fn send_states(&self, pool: &sqlx::PgPool) -> &deliver::SendStates {
        self.states
            .get_or_init(|| deliver::SendStates::spawn(pool.clone()))
    }

    /// Delay before retrying after failed attempt `attempt` (1-based).
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.clamp(1, 16) as u32 - 1;
        self.retry_base
            .saturating_mul(1 << exponent)
            .min(Duration::from_secs(30 * 60))
    }

    /// Deliveries per chunk on `channel`: at most half a second's worth under the rate limit of
    /// the provider in use (`Providers::rate_limit`), so a pause takes effect within about a
    /// second however slow the provider is made to go.
    pub fn chunk_for(&self, channel: Channel) -> i64 {
        let chunk = self.chunk_size.max(1) as f64;
        let limited = self
            .providers
            .rate_limit(channel)
            .map_or(chunk, |per_second| chunk.min((per_second / 2.0).floor()));
        limited.max(1.0) as i64
    }
}

/// A validated send to store.
#[derive(Debug, Clone)]
pub struct NewSend {
    pub id: String,
    pub org_id: String,
    pub channel: crate::suppression::Channel,
    pub category: Category,
    pub sender: Sender,
    pub template: template::TemplateSource,
    pub send_at: Option<chrono::DateTime<chrono::Utc>>,
    pub recipients: Vec<validate::ValidRecipient>,
    /// Deliveries per batch job ([`DEFAULT_BATCH_SIZE`]), fixed for the life of the send.
    pub batch_size: i32,
}

/// Deliveries per [`DeliverBatch`] job unless a send says otherwise (measured against 50 and
/// 500 in `docs/benchmarks.md`).
pub const DEFAULT_BATCH_SIZE: i32 = 200;

/// Who a send is from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sender {
    pub name: String,
    pub email: String,
    pub postal_address: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Transactional,
    Marketing,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Transactional => "transactional",
            Category::Marketing => "marketing",
        }
    }
}

/// Store `send` and enqueue its fan-out (at `send_at`) on `conn`, which should be a
/// transaction: a send is never stored without its fan-out, nor the reverse. An SMS send is
/// stored without a subject (NULL) or HTML.
pub async fn create_send(
    conn: &mut PgConnection,
    send: &NewSend,
) -> Result<(), wedsync_queue::QueueError> {
    let sender_id: i64 = sqlx::query_scalar(sql::UPSERT_SENDER)
        .bind(&send.org_id)
        .bind(&send.sender.name)
        .bind(&send.sender.email)
        .bind(&send.sender.postal_address)
        .fetch_one(&mut *conn)
        .await?;
    let subject = match send.channel {
        crate::suppression::Channel::Email => Some(send.template.subject.as_str()),
        crate::suppression::Channel::Sms => None,
    };
    sqlx::query(sql::INSERT_SEND)
        .bind(&send.id)
        .bind(&send.org_id)
        .bind(send.channel.as_str())
        .bind(send.category.as_str())
        .bind(sender_id)
        .bind(subject)
        .bind(&send.template.text)
        .bind(send.template.html.as_deref())
        .bind(send.send_at)
        // Serialised straight into the statement's buffer: a `serde_json::Value` of 50,000
        // recipients first would allocate every one of them again.
        .bind(sqlx::types::Json(&send.recipients))
        .bind(send.recipients.len() as i32)
        .bind(send.batch_size)
        .execute(&mut *conn)
        .await?;
    let job = BulkSendFanout::new_job(&send.id, &send.org_id, send.send_at);
    wedsync_queue::enqueue(conn, job).await?;
    Ok(())
}

/// A send with its progress counters.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct SendSummary {
    pub id: String,
    pub org_id: String,
    pub channel: String,
    pub category: String,
    pub state: String,
    pub send_at: Option<chrono::DateTime<chrono::Utc>>,
    pub fanned_out_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Nothing will finish the send: deliveries are left to send but no batch job will send
    /// them (every unfinished one was discarded, out of attempts, or cancelled), or its fan-out
    /// stopped part-way (or before it began) and its job was discarded or cancelled. An operator
    /// retries those jobs (`POST /v1/jobs/{id}/retry`) to carry on.
    pub stalled: bool,
    pub recipient_count: i32,
    pub total: i32,
    pub queued: i32,
    pub sending: i32,
    pub sent: i32,
    pub suppressed: i32,
    pub failed: i32,
    pub bounced: i32,
    /// Deliveries a cancel stopped, and recipients of a send cancelled before its fan-out
    /// reached them.
    pub cancelled: i32,
    /// When the current pause began (cleared by a resume).
    pub paused_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cancelled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// A send's id as stored (hyphenated lower case) from any spelling the `uuid` crate reads
/// (`urn:uuid:…`, upper case, no hyphens), which PostgreSQL's `uuid` does not all take; `None`
/// when it is no UUID.
pub fn canonical_send_id(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).ok().map(|id| id.to_string())
}

/// The send `id` if it exists and belongs to `org` (`None`: any organisation). One row read:
/// the counters are kept on the send.
pub async fn get_send(
    db: impl sqlx::PgExecutor<'_>,
    id: &str,
    org: Option<&str>,
) -> Result<Option<SendSummary>, sqlx::Error> {
    sqlx::query_as(sql::GET_SEND)
        .bind(id)
        .bind(org)
        .fetch_optional(db)
        .await
}

/// One delivery as listed.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub ordinal: i32,
    pub address: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The statuses a delivery can have.
pub const STATUSES: [&str; 7] = [
    "queued",
    "sending",
    "sent",
    "suppressed",
    "failed",
    "bounced",
    "cancelled",
];

/// Deliveries of `send_id` with an ordinal above `after` (`-1`: from the first), in recipient
/// order.
pub async fn list_deliveries(
    pool: &sqlx::PgPool,
    send_id: &str,
    status: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as(sql::LIST_DELIVERIES)
        .bind(send_id)
        .bind(status)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
}
