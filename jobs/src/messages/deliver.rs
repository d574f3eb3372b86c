//! `deliver_batch`: sends the deliveries of one batch (a range of ordinals of a send).
//!
//! Per delivery, in order:
//! 1. claim it: `queued → sending` in one conditional UPDATE; a row in any other status is
//!    skipped, so a delivery already `sent` (or suppressed, bounced, failed) is never sent again,
//!    whatever is retried;
//! 2. check the suppression list (organisation + global, normalised address) → `suppressed`;
//! 3. render and send; the SMTP accept is written as `sent` at once.
//!
//! A permanent SMTP reply (5xx) → `bounced` and a `hard_bounce` entry on the organisation's
//! suppression list. A temporary one (4xx, connection refused or dropped, timeout) puts the
//! delivery back to `queued` and the job asks to be retried after a growing delay; the rest of
//! the batch waits for that retry. On the job's last attempt a temporary failure is final
//! (`failed`) instead.
//!
//! The duplicate window: a worker that dies between the SMTP accept and the `sent` write leaves
//! the row `sending`. The job's next attempt (after rescue) claims `sending` rows too and sends
//! them again — at most one message per crashed batch job may arrive twice, rather than being
//! lost. The stable `Message-ID` lets receivers and logs recognise such a repeat.

use super::email::{self, Envelope};
use super::template::{Footer, TemplateSource, Templates};
use super::{SendError, sql};
use crate::context::AppContext;
use crate::suppression::{Address, Channel, Reason, SuppressionList};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobError, JobResult, NewJob, Outcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverBatch {
    pub send_id: String,
    /// First and last ordinal of the batch, inclusive.
    pub first: i32,
    pub last: i32,
}

impl DeliverBatch {
    pub fn new_job(send_id: &str, org_id: &str, first: i32, last: i32) -> NewJob {
        let job = DeliverBatch {
            send_id: send_id.to_owned(),
            first,
            last,
        };
        job.to_new_job()
            .expect("batch args serialise")
            .with_unique_key(batch_unique_key(send_id, first))
            .with_org(org_id)
    }
}

/// The unique key of the batch job of `send_id` starting at ordinal `first`: at most one job
/// per batch is ever unfinished, and a resume finds the batch jobs of a send by these keys.
pub fn batch_unique_key(send_id: &str, first: i32) -> String {
    format!("{}:{send_id}:{first}", DeliverBatch::KIND)
}

/// The batches (first and last ordinal, inclusive) of a send of `count` recipients.
pub fn batch_ranges(count: i32, batch_size: i32) -> impl Iterator<Item = (i32, i32)> {
    let size = batch_size.max(1);
    (0..count.max(0))
        .step_by(size as usize)
        .map(move |first| (first, (first + size - 1).min(count - 1)))
}

#[derive(sqlx::FromRow)]
struct SendRow {
    org_id: String,
    category: String,
    state: String,
    subject_template: String,
    text_template: String,
    html_template: Option<String>,
    sender_name: String,
    sender_email: String,
    postal_address: String,
}

/// How many deliveries of the batch ended how in this attempt.
#[derive(Default, Serialize)]
struct Tally {
    sent: u32,
    suppressed: u32,
    bounced: u32,
    failed: u32,
    skipped: u32,
}

impl Job for DeliverBatch {
    const KIND: &'static str = "deliver_batch";
    const QUEUE: &'static str = super::QUEUE;
    const PRIORITY: i16 = 4;
    const MAX_ATTEMPTS: i32 = 20;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let pool = &ctx.app.pool;
        let send: Option<SendRow> = sqlx::query_as(sql::LOAD_SEND)
            .bind(&self.send_id)
            .fetch_optional(pool)
            .await?;
        let Some(send) = send else {
            return Err(JobError::permanent(format!(
                "bulk send {} does not exist",
                self.send_id
            )));
        };
        match send.state.as_str() {
            "cancelled" => return Ok(Outcome::Cancelled("the bulk send was cancelled".into())),
            "paused" => {
                return Err(JobError::retry_after(
                    Duration::from_secs(10),
                    "the bulk send is paused",
                ));
            }
            _ => {}
        }
        let templates = Templates::compile(&TemplateSource {
            subject: send.subject_template.clone(),
            text: send.text_template.clone(),
            html: send.html_template.clone(),
        })
        .map_err(JobError::permanent)?;
        // After a crash (attempt > 1) a `sending` row may never have reached the server.
        let claimable: Vec<&str> = if ctx.attempt > 1 {
            vec!["queued", "sending"]
        } else {
            vec!["queued"]
        };
        let ids: Vec<i64> = sqlx::query_scalar(sql::BATCH)
            .bind(&self.send_id)
            .bind(self.first)
            .bind(self.last)
            .bind(&claimable)
            .fetch_all(pool)
            .await?;
        let suppressions = SuppressionList::new(pool.clone());
        let last_attempt = ctx.attempt >= ctx.max_attempts;
        let marketing = send.category == "marketing";
        let mut tally = Tally::default();
        for id in ids {
            let claimed: Option<(String, serde_json::Value, String)> = sqlx::query_as(sql::CLAIM)
                .bind(id)
                .bind(&claimable)
                .fetch_optional(pool)
                .await?;
            let Some((address, variables, token)) = claimed else {
                tally.skipped += 1;
                continue;
            };
            let parsed = match Address::parse(Channel::Email, &address) {
                Ok(parsed) => parsed,
                Err(e) => {
                    finish(pool, id, "failed", Some(&e.to_string())).await?;
                    tally.failed += 1;
                    continue;
                }
            };
            if suppressions.contains_address(&send.org_id, &parsed).await? {
                finish(pool, id, "suppressed", None).await?;
                tally.suppressed += 1;
                continue;
            }
            let https = format!("{}/unsubscribe?token={token}", ctx.app.messages.public_url);
            let mailto = unsubscribe_mailto(&ctx.app.messages.public_url, &token);
            let footer = Footer {
                sender_name: &send.sender_name,
                postal_address: &send.postal_address,
                unsubscribe_url: marketing.then_some(https.as_str()),
            };
            let message_id = email::message_id(id, &self.send_id, &send.sender_email);
            let built = templates
                .render(&variables, &footer)
                .map_err(|e| e.to_string())
                .and_then(|rendered| {
                    let envelope = Envelope {
                        sender_name: &send.sender_name,
                        sender_email: &send.sender_email,
                        to: parsed.as_str(),
                        message_id: &message_id,
                        unsubscribe: marketing.then_some((https.as_str(), mailto.as_str())),
                    };
                    email::build(&rendered, &envelope).map(|m| (rendered, m))
                });
            let (rendered, message) = match built {
                Ok(built) => built,
                Err(e) => {
                    finish(pool, id, "failed", Some(&e)).await?;
                    tally.failed += 1;
                    continue;
                }
            };
            match ctx.app.messages.mailer.send(message).await {
                Ok(()) => {
                    sqlx::query(sql::MARK_SENT)
                        .bind(id)
                        .bind(&message_id)
                        .bind(&rendered.subject)
                        .bind(&rendered.text)
                        .bind(rendered.html.as_deref())
                        .execute(pool)
                        .await?;
                    tally.sent += 1;
                }
                Err(SendError::Permanent(reason)) => {
                    finish(pool, id, "bounced", Some(&reason)).await?;
                    suppressions
                        .add(Some(&send.org_id), &parsed, Reason::HardBounce)
                        .await?;
                    tally.bounced += 1;
                }
                Err(SendError::Transient(reason)) if last_attempt => {
                    finish(pool, id, "failed", Some(&reason)).await?;
                    tally.failed += 1;
                }
                Err(SendError::Transient(reason)) => {
                    sqlx::query(sql::REQUEUE)
                        .bind(id)
                        .bind(&reason)
                        .execute(pool)
                        .await?;
                    return Err(JobError::retry_after(
                        ctx.app.messages.retry_delay(ctx.attempt),
                        format!("delivery {id}: {reason}"),
                    ));
                }
            }
        }
        sqlx::query(sql::MARK_DONE)
            .bind(&self.send_id)
            .execute(pool)
            .await?;
        Ok(Outcome::Completed(Some(json!(tally))))
    }
}

async fn finish(
    pool: &sqlx::PgPool,
    id: i64,
    status: &str,
    error: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::MARK_FINAL)
        .bind(id)
        .bind(status)
        .bind(error)
        .execute(pool)
        .await
        .map(|_| ())
}

/// `unsubscribe+<token>@<host of the public URL>`.
fn unsubscribe_mailto(public_url: &str, token: &str) -> String {
    let host = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("unsubscribe+{token}@{host}")
}
