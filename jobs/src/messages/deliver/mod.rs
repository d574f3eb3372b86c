//! `deliver_batch`: sends the deliveries of one batch (a range of ordinals of a send).
//!
//! The batch is worked in chunks (at most [`MessagesContext::chunk_size`] deliveries, fewer while
//! sending is slow: `chunk_size`). Each chunk is
//! taken with one statement that also checks the send is still active and checks every address
//! against the suppression list (organisation + global) at that moment, right before sending;
//! the chunk's messages then go out concurrently through the providers (breakers, failover,
//! rate limit), and each outcome is written as soon as it is known (`writer`). The next chunk is
//! taken while the current one is sending. A message that then waits (for its rate-limit slot,
//! for an SMTP connection) has the send's state and, after half a second, the
//! suppression list looked at again right before it goes (`go_ahead`).
//!
//! What a delivery becomes:
//! - accepted → `sent` (Message-ID, provider, rendered bodies);
//! - suppressed at its claim, or while it waited to go → `suppressed`, unsent;
//! - permanent refusal (SMTP 5xx, SMS 4xx about the number) → `bounced` and a `hard_bounce`
//!   entry on the organisation's suppression list;
//! - temporary failure (SMTP 4xx, 429, a failing provider) → back to `queued`, and the job
//!   retries the batch after a growing delay (`MessagesContext::retry_delay`); on the job's last
//!   attempt → `failed`;
//! - every provider's breaker open → back to `queued`, and the job snoozes until the first one
//!   half-opens: an outage uses up no attempts and fails nothing.
//!
//! The send's state is obeyed at every chunk: `paused` → the job stops taking deliveries, puts
//! any it took but did not send back, and snoozes ([`PAUSED_SNOOZE`]; a resume wakes it at
//! once); `cancelled` → what is left of the batch becomes `cancelled` and the job ends.
//!
//! A delivery in a final status is never taken again, so a `sent` one is never re-sent,
//! whatever is retried. The duplicate window: a worker that dies between a provider's accept and
//! the `sent` write leaves the row `sending`; the rescued job takes `sending` rows again (no
//! other job holds them: one job per batch) and sends them again — rather than lose them.

mod batch;
mod chunk_size;
mod claim;
mod compose;
mod go_ahead;
mod watch;
mod writer;

use crate::context::AppContext;
use batch::{Batch, Stop};
pub(crate) use chunk_size::LastChunkSizes;
use compose::{Composer, SendRow};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
pub(crate) use watch::SendStates;
use wedsync_queue::{Job, JobContext, JobError, JobResult, NewJob, Outcome};
pub(crate) use writer::StatusWriter;

/// The batch job's timeout. A run stops claiming at half of it and snoozes for the rest
/// (`Batch::claim_until`), so a rate-limited batch never reaches it.
pub const BATCH_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a batch of a paused send sleeps before looking again. A resume wakes it at once; this
/// is the fallback (a batch that was just stopping when the resume came, a wake-up that failed),
/// and the cost of a long pause: each batch job of a paused send is claimed once per snooze.
pub const PAUSED_SNOOZE: Duration = Duration::from_secs(15);

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

impl Job for DeliverBatch {
    const KIND: &'static str = "deliver_batch";
    const QUEUE: &'static str = super::QUEUE;
    const PRIORITY: i16 = 4;
    const MAX_ATTEMPTS: i32 = 20;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        BATCH_TIMEOUT
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let pool = &ctx.app.pool;
        let send: Option<SendRow> = sqlx::query_as(super::sql::LOAD_SEND)
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
            "cancelled" => return self.cancel_rest(&ctx).await,
            "paused" => return Ok(Outcome::Snooze(PAUSED_SNOOZE)),
            _ => {}
        }
        let messages = &ctx.app.messages;
        let composer =
            Composer::new(&send, &self.send_id, messages).map_err(JobError::permanent)?;
        let batch = Batch {
            pool,
            send_id: &self.send_id,
            org_id: &send.org_id,
            first: self.first,
            last: self.last,
            chunk: messages.chunk_for(composer.channel()),
            last_chunk_sizes: messages.last_chunk_sizes(),
            last_attempt: ctx.attempt >= ctx.max_attempts,
            composer: &composer,
            providers: &messages.providers,
            writer: messages.writer(pool),
            states: messages.send_states(pool),
            unrecorded: messages.unrecorded(),
            lease: &ctx.lease,
            claim_until: Instant::now() + messages.run_budget.min(BATCH_TIMEOUT) / 2,
        };
        let finished = batch.run().await?;
        let tally = json!(finished.tally);
        match finished.stop {
            Some(Stop::Cancelled) => self.cancel_rest(&ctx).await,
            Some(Stop::Paused) => Ok(Outcome::Snooze(PAUSED_SNOOZE)),
            Some(Stop::Waiting(after)) => {
                // Spread the batches that waited on the same breaker over a moment.
                let jitter = Duration::from_millis(rand::rng().random_range(0..250));
                tracing::info!(send_id = %self.send_id, wait = ?after, %tally, "every provider is open; batch snoozed");
                Ok(Outcome::Snooze(after + jitter))
            }
            None if finished.tally.requeued > 0 => Err(JobError::retry_after(
                messages
                    .retry_delay(ctx.attempt)
                    .max(finished.retry_hint.unwrap_or_default()),
                format!(
                    "{} deliveries failed temporarily and wait for a retry: {tally}",
                    finished.tally.requeued
                ),
            )),
            // The suppression list or the shared rate limit could not be read (the database
            // failing): after the backoff of a retry, but with the attempt given back, as the
            // provider did nothing wrong.
            None if finished.tally.lookup_failed > 0 => {
                let wait = messages.retry_delay(ctx.attempt);
                tracing::warn!(send_id = %self.send_id, ?wait, %tally, "the suppression list or a rate limit could not be read; batch snoozed");
                Ok(Outcome::Snooze(wait))
            }
            // Time was up, or a pause came and went between two claims: run again at once (the
            // attempt is given back; nothing failed).
            None if finished.unfinished || finished.tally.withdrawn > 0 => {
                Ok(Outcome::Snooze(Duration::ZERO))
            }
            None => {
                sqlx::query(super::sql::MARK_DONE)
                    .bind(&self.send_id)
                    .execute(pool)
                    .await?;
                Ok(Outcome::Completed(Some(tally)))
            }
        }
    }
}

impl DeliverBatch {
    /// The send was cancelled: nothing left of this batch will be sent.
    async fn cancel_rest(&self, ctx: &JobContext<AppContext>) -> JobResult {
        let cancelled = sqlx::query(super::sql::CANCEL_REST_OF_BATCH)
            .bind(&self.send_id)
            .bind(self.first)
            .bind(self.last)
            .execute(&ctx.app.pool)
            .await?
            .rows_affected();
        Ok(Outcome::Cancelled(format!(
            "the bulk send was cancelled ({cancelled} deliveries of this batch left unsent)"
        )))
    }
}
