//! The send loop of one batch job: claim a chunk of deliveries, send them all at once through
//! the providers, write each outcome the moment it is known, and claim the next chunk while the
//! current one is still sending, until the batch is done or something says stop.

use super::chunk_size::{ChunkSize, LastChunkSizes};
use super::claim::{Chunk, Claimed, claim_chunk};
use super::compose::Composer;
use super::go_ahead::{GoAhead, Guest};
use super::watch::{SendStates, StateWatch};
use super::writer::{StatusChange, StatusWriter};
use crate::messages::providers::{Dispatched, Providers, SendError};
use crate::messages::template::Rendered;
use crate::suppression::{Address, Reason, SuppressionList};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wedsync_queue::{JobError, Lease};

/// A send that came back: the delivery, its Message-ID and bodies, and how it fared.
struct Sent {
    delivery: Claimed,
    message_id: Option<String>,
    rendered: Rendered,
    dispatched: Dispatched,
    permit: Option<OwnedSemaphorePermit>,
    /// Withdrawn because the guest was suppressed while the message waited (`go_ahead`).
    suppressed_meanwhile: bool,
    /// Withdrawn because the suppression list could not be read (`go_ahead`).
    lookup_failed: bool,
}

/// Why a batch stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Paused,
    Cancelled,
    /// Every provider of the channel is open: come back after this long.
    Waiting(Duration),
}

impl Stop {
    /// This stop, found after `earlier`: a cancel wins over a pause, and either over waiting for
    /// a breaker (a cancelled batch must settle its rest now, not snooze first; a paused one
    /// must be woken by the resume, not sleep out the breaker); two breaker waits keep the
    /// shorter.
    pub(super) fn after(self, earlier: Option<Stop>) -> Option<Stop> {
        Some(match (earlier, self) {
            (None, new) => new,
            (Some(Stop::Cancelled), _) | (_, Stop::Cancelled) => Stop::Cancelled,
            (Some(Stop::Paused), _) | (_, Stop::Paused) => Stop::Paused,
            (Some(Stop::Waiting(a)), Stop::Waiting(b)) => Stop::Waiting(a.min(b)),
        })
    }
}

/// How many deliveries ended how in this run of the batch.
#[derive(Debug, Default, Serialize)]
pub(super) struct Tally {
    pub sent: u32,
    pub suppressed: u32,
    pub bounced: u32,
    pub failed: u32,
    /// Back to `queued` for the job's retry (temporary failures).
    pub requeued: u32,
    /// Back to `queued` unsent: the send was paused or cancelled while they waited for their
    /// rate-limit slot.
    pub withdrawn: u32,
    /// Back to `queued` unsent: the suppression list, or the provider's shared rate limit,
    /// could not be read for them.
    pub lookup_failed: u32,
}

pub(super) struct Finished {
    pub tally: Tally,
    pub stop: Option<Stop>,
    /// The longest `retry_after` a provider asked for.
    pub retry_hint: Option<Duration>,
    /// Deliveries of the batch are still to be sent although the send is active and nothing
    /// stopped the run: it stopped claiming in time (`claim_until`), or a claim found the send
    /// paused and it was resumed before the run ended. The job runs again at once.
    pub unfinished: bool,
}

/// One run of a batch: ordinals `first..=last` of `send_id`.
pub(super) struct Batch<'a> {
    pub pool: &'a PgPool,
    pub send_id: &'a str,
    pub org_id: &'a str,
    pub first: i32,
    pub last: i32,
    /// The most deliveries claimed at a time (`chunk_size`: fewer while sending is slow).
    pub chunk: i64,
    /// Where the process's batch jobs keep the chunk size they settled on.
    pub last_chunk_sizes: &'a LastChunkSizes,
    /// On the job's last attempt a temporary failure is final.
    pub last_attempt: bool,
    pub composer: &'a Composer<'a>,
    pub providers: &'a Providers,
    pub writer: &'a StatusWriter,
    /// Whether the send was paused or cancelled meanwhile (`watch`).
    pub states: &'a SendStates,
    pub unrecorded: &'a Arc<Semaphore>,
    /// Whether the worker still holds the job: no message goes while it may not (`go_ahead`).
    pub lease: &'a Lease,
    /// No chunk is claimed after this, well inside the job's timeout: a rate-limited batch can
    /// take longer than one run may (200 messages at 1/s shared by ten batches), and a run cut
    /// off by its timeout would drop messages mid-send. A chunk is at most half a second's
    /// worth under a rate limit (`MessagesContext::chunk_for`), so the last one claimed ends
    /// soon after; the job then runs again straight away for the rest.
    pub claim_until: Instant,
}

impl<'a> Batch<'a> {
    pub async fn run(&self) -> Result<Finished, JobError> {
        let watch = self.states.watch(self.send_id);
        let mut finished = Finished {
            tally: Tally::default(),
            stop: None,
            retry_hint: None,
            unfinished: false,
        };
        let sent = self.send_all(&watch, &mut finished).await;
        // The run ends only once its outcomes are recorded, whatever ended it: rows left
        // `sending` by a finished run would be left for nobody, and a retry could claim rows
        // whose `sent` was still on its way and send them again.
        self.writer.flush().await.map_err(JobError::retry)?;
        sent?;
        if finished.stop.is_none() {
            let (state, left): (String, bool) =
                sqlx::query_as(crate::messages::sql::BATCH_PROGRESS)
                    .bind(self.send_id)
                    .bind(self.first)
                    .bind(self.last)
                    .fetch_one(self.pool)
                    .await?;
            finished.stop = match state.as_str() {
                "paused" => Some(Stop::Paused),
                "cancelled" => Some(Stop::Cancelled),
                _ => None,
            };
            finished.unfinished = left;
        }
        Ok(finished)
    }

    /// Claim and send chunk after chunk, the next claimed while the current one sends, until
    /// the range is done, something says stop, or the budget is spent.
    async fn send_all(&self, watch: &StateWatch, finished: &mut Finished) -> Result<(), JobError> {
        let writer = self.writer;
        let channel = self.composer.channel();
        let mut size = ChunkSize::new(self.chunk, self.last_chunk_sizes.get(channel));
        let mut claimed = claim_chunk(
            self.pool,
            self.send_id,
            self.first - 1,
            self.last,
            size.next(),
        )
        .await?;
        while !claimed.deliveries.is_empty() {
            // The highest ordinal taken, whatever order the rows came back in: a cursor below
            // it would claim rows of this chunk again while they are in flight.
            let cursor = (claimed.deliveries.iter())
                .map(|d| d.ordinal)
                .max()
                .unwrap_or(self.last);
            let checked_at = claimed.checked_at;
            let sends: FuturesUnordered<_> = (claimed.deliveries.into_iter())
                .filter_map(|d| self.start(d, checked_at, writer, watch, finished))
                .collect();
            let (sending, started) = (sends.len(), Instant::now());
            let drain = self.drain(sends, writer, watch, finished);
            let next_size = size.next();
            let next = async {
                if cursor < self.last && Instant::now() < self.claim_until {
                    claim_chunk(self.pool, self.send_id, cursor, self.last, next_size).await
                } else {
                    Ok(Chunk::empty())
                }
            };
            let ((), next) = tokio::join!(drain, next);
            size.observe(sending, started.elapsed());
            self.last_chunk_sizes.set(channel, &size);
            claimed = next?;
            if finished.stop.is_some() {
                release(writer, &claimed.deliveries, &mut finished.tally);
                claimed.deliveries.clear();
            }
        }
        Ok(())
    }

    /// The send future of a claimed delivery, whose claim checked the suppression list at
    /// `checked_at`, or `None` when it needs none (suppressed, or its message cannot be
    /// composed).
    fn start<'s>(
        &'s self,
        delivery: Claimed,
        checked_at: Instant,
        writer: &StatusWriter,
        watch: &'s StateWatch,
        finished: &mut Finished,
    ) -> Option<impl Future<Output = Sent> + use<'s, 'a>> {
        if delivery.is_suppressed() {
            finished.tally.suppressed += 1;
            return None;
        }
        let composed = match self.composer.compose(&delivery) {
            Ok(composed) => composed,
            Err(reason) => {
                writer.push(StatusChange::new(delivery.id, "failed").error(reason));
                finished.tally.failed += 1;
                return None;
            }
        };
        let channel = self.composer.channel();
        Some(async move {
            let guest = Guest {
                org_id: self.org_id,
                channel,
                address: &delivery.address,
            };
            let go_ahead = GoAhead::new(
                watch,
                self.pool,
                guest,
                checked_at,
                self.unrecorded,
                self.lease,
            );
            let dispatched = self
                .providers
                .send(channel, composed.outgoing, &go_ahead)
                .await;
            // Here, not in `drain`: an insert awaited there would hold up every other message
            // of the chunk (their outcomes, and so their permits, and their rate-limit waits).
            match &dispatched {
                // The guest replied STOP to our number: every organisation's texts are
                // refused, so the entry is global; their START removes it
                // (`messages::sms_webhook`).
                Dispatched::Failed {
                    error: SendError::OptedOut(_),
                    ..
                } => self.suppress(&delivery, None, Reason::Unsubscribed).await,
                Dispatched::Failed {
                    error: SendError::Rejected(_),
                    ..
                } => {
                    self.suppress(&delivery, Some(self.org_id), Reason::HardBounce)
                        .await
                }
                _ => {}
            }
            let suppressed_meanwhile = go_ahead.found_suppressed();
            let lookup_failed = go_ahead.lookup_failed();
            let permit = go_ahead.take_permit();
            Sent {
                delivery,
                message_id: composed.message_id,
                rendered: composed.rendered,
                dispatched,
                permit,
                suppressed_meanwhile,
                lookup_failed,
            }
        })
    }

    /// Record each send's outcome as it completes.
    async fn drain<F: Future<Output = Sent>>(
        &self,
        mut sends: FuturesUnordered<F>,
        writer: &StatusWriter,
        watch: &StateWatch,
        finished: &mut Finished,
    ) {
        while let Some(sent) = sends.next().await {
            let Sent {
                delivery,
                message_id,
                rendered,
                dispatched,
                permit,
                suppressed_meanwhile,
                lookup_failed,
            } = sent;
            let id = delivery.id;
            let change = match dispatched {
                Dispatched::Sent {
                    provider,
                    provider_id,
                } => {
                    finished.tally.sent += 1;
                    StatusChange {
                        // Email: our Message-ID; SMS: the provider's id for the text.
                        message_id: message_id.or(provider_id),
                        provider: Some(provider),
                        rendered: Some(rendered),
                        ..StatusChange::new(id, "sent").tried()
                    }
                }
                Dispatched::Failed {
                    provider,
                    error: SendError::OptedOut(reason),
                } => {
                    // Put on the global list by the send's future (`start`).
                    finished.tally.suppressed += 1;
                    StatusChange {
                        provider: Some(provider),
                        ..StatusChange::new(id, "suppressed").tried().error(reason)
                    }
                }
                Dispatched::Failed {
                    provider,
                    error: SendError::Rejected(reason),
                } => {
                    // Put on the organisation's list by the send's future (`start`).
                    finished.tally.bounced += 1;
                    StatusChange {
                        provider: Some(provider),
                        ..StatusChange::new(id, "bounced").tried().error(reason)
                    }
                }
                Dispatched::Failed {
                    provider,
                    error: SendError::Refused(reason),
                } => {
                    // For good, but not the address's fault: nothing is suppressed, and an
                    // operator can retry it once the cause (size, content, policy) is fixed.
                    finished.tally.failed += 1;
                    StatusChange {
                        provider: Some(provider),
                        ..StatusChange::new(id, "failed").tried().error(reason)
                    }
                }
                Dispatched::Failed { error, .. } => {
                    if let SendError::Deferred {
                        retry_after: Some(after),
                        ..
                    } = &error
                    {
                        finished.retry_hint = finished.retry_hint.max(Some(*after));
                    }
                    let status = if self.last_attempt {
                        finished.tally.failed += 1;
                        "failed"
                    } else {
                        finished.tally.requeued += 1;
                        "queued"
                    };
                    StatusChange::new(id, status)
                        .tried()
                        .error(error.to_string())
                }
                Dispatched::Waiting { retry_after } => {
                    finished.tally.requeued += 1;
                    finished.stop = Stop::Waiting(retry_after).after(finished.stop);
                    StatusChange::new(id, "queued")
                }
                Dispatched::Withdrawn if suppressed_meanwhile => {
                    finished.tally.suppressed += 1;
                    StatusChange::new(id, "suppressed")
                }
                // Snoozed with backoff, not run again at once.
                Dispatched::Withdrawn if lookup_failed => {
                    finished.tally.lookup_failed += 1;
                    StatusChange::new(id, "queued")
                }
                // Likewise: our database, not the provider, failed; no attempt is charged.
                // Until 2026-12-07 this counted as the provider unavailable: an attempt used,
                // and `failed` on the last one.
                Dispatched::NotReady { reason } => {
                    finished.tally.lookup_failed += 1;
                    StatusChange::new(id, "queued").error(reason)
                }
                Dispatched::Withdrawn => {
                    finished.tally.withdrawn += 1;
                    if let Some(stop) = watch.stop() {
                        finished.stop = stop.after(finished.stop);
                    }
                    StatusChange::new(id, "queued")
                }
            };
            writer.push(StatusChange {
                _permit: permit,
                ..change
            });
        }
    }

    /// Put the delivery's address on a suppression list (`scope`: the organisation's, `None`
    /// the global one): a permanent rejection on the organisation's (SPEC §5.1), an opt-out at
    /// the provider on the global one. A failure here is logged, not fatal: the delivery's
    /// status says what happened either way.
    async fn suppress(&self, delivery: &Claimed, scope: Option<&str>, reason: Reason) {
        let Ok(address) = Address::parse(self.composer.channel(), &delivery.address) else {
            return;
        };
        let list = SuppressionList::new(self.pool.clone());
        if let Err(err) = list.add(scope, &address, reason).await {
            tracing::warn!(error = %err, delivery = delivery.id, reason = reason.as_str(), "adding to the suppression list failed");
        }
    }
}

/// Put taken but unsent deliveries back to `queued` (suppressed ones stay suppressed).
fn release(writer: &StatusWriter, claimed: &[Claimed], tally: &mut Tally) {
    for delivery in claimed {
        if delivery.is_suppressed() {
            tally.suppressed += 1;
        } else {
            writer.push(StatusChange::new(delivery.id, "queued"));
            tally.requeued += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stop;
    use std::time::Duration;

    #[test]
    fn a_cancel_or_a_pause_is_never_overridden_by_a_breaker_wait() {
        let wait = |ms| Stop::Waiting(Duration::from_millis(ms));
        assert_eq!(wait(500).after(None), Some(wait(500)));
        assert_eq!(wait(500).after(Some(wait(200))), Some(wait(200)));
        assert_eq!(wait(100).after(Some(wait(200))), Some(wait(100)));
        assert_eq!(
            wait(100).after(Some(Stop::Cancelled)),
            Some(Stop::Cancelled)
        );
        assert_eq!(wait(100).after(Some(Stop::Paused)), Some(Stop::Paused));
        assert_eq!(Stop::Paused.after(Some(wait(100))), Some(Stop::Paused));
        assert_eq!(
            Stop::Cancelled.after(Some(Stop::Paused)),
            Some(Stop::Cancelled)
        );
        assert_eq!(
            Stop::Paused.after(Some(Stop::Cancelled)),
            Some(Stop::Cancelled)
        );
    }
}
