//! Bulk sends for tests: a sender and templates, recipients `guest<i>@example.com` with their
//! own variables, contexts on real SMTP servers, and waiting for a send to finish.

use super::wait_for_explained;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use wedsync_db::testing::TestDb;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::email::Email;
use wedsync_kinds::messages::providers::{
    BreakerConfig, EmailTransport, Provider, ProviderRole, Providers,
};
use wedsync_kinds::messages::template::TemplateSource;
use wedsync_kinds::messages::validate::ValidRecipient;
use wedsync_kinds::messages::{
    Category, MessagesContext, NewSend, SendSummary, Sender, create_send, get_send,
};

pub const ORG: &str = "acme";
/// Deliveries per batch job in these sends.
pub const TEST_BATCH_SIZE: i32 = 50;
pub const PUBLIC_URL: &str = "https://jobs.wedsync.test";

pub fn guest(i: usize) -> String {
    format!("guest{i}@example.com")
}

/// The index of `guest<i>@example.com`.
pub fn guest_index(address: &str) -> usize {
    address
        .trim_start_matches("guest")
        .trim_end_matches("@example.com")
        .parse()
        .expect("a guest address")
}

pub fn new_send(category: Category, recipients: Vec<ValidRecipient>) -> NewSend {
    NewSend {
        id: uuid::Uuid::new_v4().to_string(),
        org_id: ORG.to_owned(),
        channel: wedsync_kinds::suppression::Channel::Email,
        category,
        sender: Sender {
            name: "Ann and Bob".to_owned(),
            email: "hello@ann-and-bob.example".to_owned(),
            postal_address: "1 Chapel Lane, York YO1 7HH".to_owned(),
        },
        template: TemplateSource {
            subject: "Save the date, {{ name }}".to_owned(),
            text: "Dear {{ name }}, you are at table {{ table }}.".to_owned(),
            html: Some("<p>Dear {{ name }}, you are at table {{ table }}.</p>".to_owned()),
        },
        send_at: None,
        recipients,
        // Small batches, so that even a test's small send is several batch jobs at once.
        batch_size: TEST_BATCH_SIZE,
    }
}

/// Guests `0..n`, guest `i` with name `Guest i` at table `i % 40`.
pub fn recipients(n: usize) -> Vec<ValidRecipient> {
    (0..n)
        .map(|i| ValidRecipient {
            address: guest(i),
            variables: json!({"name": format!("Guest {i}"), "table": i % 40}),
        })
        .collect()
}

/// Whether the send reads as `stalled` (`GET /v1/bulk-sends/{id}`).
pub async fn is_stalled(db: &TestDb, send_id: &str) -> bool {
    get_send(&db.pool, send_id, Some(ORG))
        .await
        .unwrap()
        .expect("the send exists")
        .stalled
}

/// The id of the one job of `kind`.
pub async fn only_job(db: &TestDb, kind: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM jobs WHERE kind = $1")
        .bind(kind)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

/// The id of the send [`insert_bare_send`] makes.
pub const BARE_SEND_ID: &str = "00000000-0000-0000-0000-000000000001";

/// A transactional send of `org` by plain SQL, for tests that write its deliveries themselves
/// (retention, upgrades): works on any schema version since 0011.
pub async fn insert_bare_send(db: &TestDb, org: &str, recipient_count: i32) {
    sqlx::query(
        "WITH sender AS (
             INSERT INTO senders (org_id, name, email, postal_address)
             VALUES ($1, 'Ann', 'hello@ann.example', '1 Chapel Lane') RETURNING id)
         INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                                 text_template, recipient_count)
         SELECT $2::uuid, $1, 'email', 'transactional', id, 's', 't', $3 FROM sender",
    )
    .bind(org)
    .bind(BARE_SEND_ID)
    .bind(recipient_count)
    .execute(&db.pool)
    .await
    .expect("insert a bare send");
}

pub async fn store(db: &TestDb, send: &NewSend) {
    let mut tx = db.pool.begin().await.unwrap();
    create_send(&mut tx, send).await.unwrap();
    tx.commit().await.unwrap();
}

/// One run of the send's fan-out job, as a worker would run it.
pub async fn run_fanout(app: &AppContext, send_id: &str) -> wedsync_queue::JobResult {
    use wedsync_queue::{Job, JobContext};
    wedsync_kinds::messages::BulkSendFanout {
        send_id: send_id.to_owned(),
    }
    .run(JobContext {
        app: app.clone(),
        job_id: 0,
        attempt: 1,
        max_attempts: 10,
        org_id: Some(ORG.to_owned()),
        lease: wedsync_queue::Lease::unbounded(),
    })
    .await
}

/// A primary SMTP provider at `url` (a pool of 10), with `breaker`.
pub fn smtp_provider(role: ProviderRole, url: &str, breaker: BreakerConfig) -> Provider {
    smtp_provider_pooled(role, url, breaker, 10)
}

/// [`smtp_provider`] with `connections` SMTP connections.
pub fn smtp_provider_pooled(
    role: ProviderRole,
    url: &str,
    breaker: BreakerConfig,
    connections: u32,
) -> Provider {
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", url, connections, None).unwrap();
    Provider::email(role, transport, breaker)
}

/// The messages context for sending through `providers`, with quick retries.
pub fn messages_context(providers: Providers) -> MessagesContext {
    let mut messages = MessagesContext::new(providers);
    messages.public_url = PUBLIC_URL.to_owned();
    messages.retry_base = Duration::from_millis(50);
    messages
}

/// The job context for sending through `providers`, with quick retries.
pub fn context_with(db: &TestDb, providers: Providers) -> AppContext {
    AppContext::new(db.pool.clone()).with_messages(messages_context(providers))
}

/// The job context for sending through the SMTP server at `url` alone.
pub fn context(db: &TestDb, url: &str) -> AppContext {
    let provider = smtp_provider(ProviderRole::Primary, url, BreakerConfig::default());
    context_with(db, Providers::new().with(provider))
}

/// Wait until the send is done (fanned out, no delivery queued or sending, marked by the last
/// batch job), and return its summary.
///
/// On timeout it panics with what the send was stuck on: its summary, its deliveries by status
/// and the messages queue's jobs, unfinished and finished.
pub async fn wait_until_finished(db: &TestDb, id: &str, timeout: Duration) -> SendSummary {
    wait_for_explained(
        "the send to finish",
        timeout,
        || async {
            let send = get_send(&db.pool, id, Some(ORG)).await.unwrap()?;
            (send.state == "done").then_some(send)
        },
        || stuck_on(db, id),
    )
    .await
}

/// The state of a send that did not finish, for a test's failure message.
async fn stuck_on(db: &TestDb, id: &str) -> String {
    let send = get_send(&db.pool, id, Some(ORG)).await.unwrap();
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM deliveries WHERE send_id = $1::uuid GROUP BY status",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let jobs: Vec<(i64, String, String, i32, String, String)> = sqlx::query_as(
        "SELECT id, kind, state, attempt, (scheduled_at - now())::text, errors::text
           FROM jobs WHERE queue = 'messages' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let finished: Vec<(String, String, i64, Option<i32>)> = sqlx::query_as(
        "SELECT kind, state, count(*), max(attempt) FROM jobs_finished
          WHERE queue = 'messages' GROUP BY kind, state",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let breakers: Vec<String> =
        sqlx::query_scalar("SELECT row_to_json(b)::text FROM provider_breakers b")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    format!(
        "send: {send:?}; deliveries by status: {by_status:?}; unfinished jobs (id, kind, state, \
         attempt, due in, errors): {jobs:?}; finished jobs (kind, state, count, highest attempt): \
         {finished:?}; published breakers: {breakers:?}"
    )
}

/// Run a worker of the `messages` queue on `app` until the send `id` is done; its summary.
pub async fn send_with_worker(
    db: &TestDb,
    app: AppContext,
    id: &str,
    timeout: Duration,
) -> SendSummary {
    let worker = super::start_worker(
        db,
        wedsync_kinds::register_all(),
        app,
        super::test_config(&["messages"]),
    );
    let summary = wait_until_finished(db, id, timeout).await;
    worker.stop().await;
    summary
}

/// Each delivery's status by address.
pub async fn statuses(db: &TestDb, id: &str) -> HashMap<String, String> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT address, status FROM deliveries WHERE send_id = $1::uuid")
            .bind(id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

/// How many messages carried each Message-ID more than once (the duplicates a receiver sees).
pub fn duplicates(message_ids: impl IntoIterator<Item = String>) -> usize {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in message_ids {
        *seen.entry(id).or_default() += 1;
    }
    seen.values().map(|n| n - 1).sum()
}

/// A plain message to `to`, for tests of a transport alone.
pub fn mail_to(to: &str) -> Email {
    lettre::Message::builder()
        .from("Acme Weddings <hello@acme.test>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject("The ceremony moved to 3 pm")
        .body("See you there.".to_owned())
        .unwrap()
        .into()
}

/// The RFC 8058 one-click unsubscribe a mail client posts to `link`; it must answer 200.
pub async fn one_click_unsubscribe(link: &str) {
    let response = reqwest::Client::new()
        .post(link)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
}
