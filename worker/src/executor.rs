//! Runs one claimed job: decode, run under its timeout with panics caught, then record the
//! outcome (completion batched; failures, discards and cancellations written directly).
//!
//! Only the handler can be interrupted (operator cancel, end of the shutdown grace): once it has
//! returned, recording its outcome always runs to the end, so a finished job is never handed back.

use crate::completer::Completion;
use futures::FutureExt;
use futures::future::{AbortHandle, AbortRegistration, Abortable};
use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tracing::Instrument;
use wedsync_queue::{JobError, JobRow, JobState, Lease, Outcome, Queue, Registry, error_entry};

/// One claim of a job: the same job claimed again (after a rescue) is a different claim.
pub(crate) type Claim = (i64, i32);

/// The longest retry delay honoured; a handler asking for more gets this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30 * 24 * 3600);

/// What every job task of this process shares.
pub(crate) struct Shared<C> {
    pub queue: Queue,
    pub registry: Arc<Registry<C>>,
    pub app: C,
    pub completions: mpsc::Sender<Completion>,
    /// Handlers running in this process, to interrupt on cancel or at the end of the grace.
    pub running: Mutex<HashMap<Claim, AbortHandle>>,
    /// Claims whose handler was interrupted before it finished (handed back at shutdown).
    pub interrupted: Mutex<Vec<Claim>>,
    /// Notified whenever a job task ends, for the shutdown drain.
    pub job_ended: Notify,
    pub run_log: Option<Mutex<Vec<i64>>>,
    /// Where a raw metric event per execution goes (never blocks), unless events are off.
    pub events: Option<wedsync_metrics::EventSink>,
    /// This process's hold on its claimed jobs, renewed by each successful heartbeat.
    pub lease: Lease,
}

/// Jobs in flight for one queue, and a signal when one ends.
#[derive(Default)]
pub(crate) struct Slots {
    pub in_flight: AtomicUsize,
    pub freed: Notify,
}

/// Frees the slot and forgets the claim when the task ends, however it ends.
struct SlotGuard<C> {
    shared: Arc<Shared<C>>,
    slots: Arc<Slots>,
    claim: Claim,
}

impl<C> Drop for SlotGuard<C> {
    fn drop(&mut self) {
        lock(&self.shared.running).remove(&self.claim);
        self.slots.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.slots.freed.notify_one();
        self.shared.job_ended.notify_one();
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Start `row` on its own task (so a panic touches nothing else).
pub(crate) fn spawn_job<C: Clone + Send + Sync + 'static>(
    shared: &Arc<Shared<C>>,
    slots: &Arc<Slots>,
    row: JobRow,
    claimed_by: Arc<str>,
) {
    let claim = (row.id, row.attempt);
    let (handle, registration) = AbortHandle::new_pair();
    lock(&shared.running).insert(claim, handle);
    slots.in_flight.fetch_add(1, Ordering::AcqRel);
    let guard = SlotGuard {
        shared: shared.clone(),
        slots: slots.clone(),
        claim,
    };
    tokio::spawn(run_job(
        shared.clone(),
        row,
        claimed_by,
        registration,
        guard,
    ));
}

async fn run_job<C: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<C>>,
    row: JobRow,
    claimed_by: Arc<str>,
    registration: AbortRegistration,
    _guard: SlotGuard<C>,
) {
    if let Some(log) = &shared.run_log {
        lock(log).push(row.id);
    }
    let span = tracing::info_span!("job", job.id = row.id, job.kind = %row.kind, job.attempt = row.attempt);
    let started = Instant::now();
    let Ok(result) = Abortable::new(execute(&shared, &row), registration)
        .instrument(span.clone())
        .await
    else {
        lock(&shared.interrupted).push((row.id, row.attempt));
        return;
    };
    let outcome = match &result {
        Ok(Outcome::Completed(_)) => "completed",
        Ok(Outcome::Cancelled(_)) => "cancelled",
        Ok(Outcome::Snooze(_)) => "snoozed",
        Err(_) => "failed",
    };
    let elapsed = started.elapsed();
    metrics::histogram!("wedsync_job_duration_seconds", "queue" => row.queue.clone(), "kind" => row.kind.clone(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    if let Some(events) = &shared.events {
        events.record(wedsync_metrics::MetricEvent::job(
            &row.queue, &row.kind, outcome, elapsed,
        ));
    }
    record(&shared, &row, claimed_by, result)
        .instrument(span)
        .await;
}

/// Decode and run the handler under its timeout; a panic anywhere in it is a failed attempt.
async fn execute<C: Clone + Send + Sync + 'static>(
    shared: &Shared<C>,
    row: &JobRow,
) -> Result<Outcome, JobError> {
    let attempt = async {
        let prepared = shared
            .registry
            .prepare(row, shared.app.clone(), shared.lease.clone())?;
        match tokio::time::timeout(prepared.timeout, prepared.future).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Retry(format!(
                "timed out after {:?}",
                prepared.timeout
            ))),
        }
    };
    match AssertUnwindSafe(attempt).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(JobError::Retry(format!(
            "panicked: {}",
            panic_message(panic.as_ref())
        ))),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Write what happened, guarded by the claim's own worker id (a claim from before this worker
/// was declared dead no longer holds its job). Completions go to the batching completer; the
/// rest are rare and written here, retried until the database takes them.
async fn record<C>(
    shared: &Shared<C>,
    row: &JobRow,
    claimed_by: Arc<str>,
    result: Result<Outcome, JobError>,
) {
    let worker: &str = &claimed_by;
    match result {
        Ok(Outcome::Completed(value)) => {
            let completion = Completion {
                id: row.id,
                claimed_by: claimed_by.clone(),
                result: value.map(strip_nul_from_json),
            };
            if shared.completions.send(completion).await.is_err() {
                tracing::error!("completer stopped before a completion was recorded");
            }
        }
        Ok(Outcome::Cancelled(reason)) => {
            let entry = error_entry(row.attempt, "cancelled", &strip_nul(&reason));
            persist(|| {
                shared.queue.finalize_running(
                    row.id,
                    worker,
                    JobState::Cancelled,
                    Some(entry.clone()),
                )
            })
            .await;
        }
        Ok(Outcome::Snooze(delay)) => {
            let delay = delay.min(MAX_RETRY_DELAY);
            tracing::debug!(snooze = ?delay, "job snoozed");
            persist(|| shared.queue.snooze(row.id, worker, delay)).await;
        }
        Err(err) => {
            let entry = error_entry(row.attempt, err.class(), &strip_nul(err.message()));
            let out_of_attempts = row.attempt >= row.max_attempts;
            if matches!(err, JobError::Permanent(_)) || out_of_attempts {
                tracing::warn!(error = %err, out_of_attempts, "job discarded");
                persist(|| {
                    shared.queue.finalize_running(
                        row.id,
                        worker,
                        JobState::Discarded,
                        Some(entry.clone()),
                    )
                })
                .await;
            } else {
                let delay = retry_delay(shared, row, &err);
                tracing::info!(error = %err, retry_in = ?delay, "job failed; will retry");
                persist(|| shared.queue.fail_retry(row, worker, delay, entry.clone())).await;
            }
        }
    }
}

fn retry_delay<C>(shared: &Shared<C>, row: &JobRow, err: &JobError) -> Duration {
    let delay = match err {
        JobError::RetryAfter { after, .. } => *after,
        _ => shared.registry.backoff(&row.kind, row.attempt),
    };
    delay.min(MAX_RETRY_DELAY)
}

/// Retry a state write until it succeeds: the job must not stay `running` on a live worker. A
/// shutdown that outlasts it interrupts nothing here; the rescuer covers a process that dies.
async fn persist<F, Fut>(mut write: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, wedsync_queue::QueueError>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "recording a job outcome failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// PostgreSQL's text and jsonb cannot hold U+0000.
fn strip_nul(text: &str) -> String {
    text.replace('\0', "")
}

fn strip_nul_from_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Value::String(strip_nul(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nul_from_json).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (strip_nul(&k), strip_nul_from_json(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_removed_from_results_at_any_depth() {
        let value = serde_json::json!({"a\u{0}": ["x\u{0}y", {"b": "\u{0}"}], "n": 1});
        assert_eq!(
            strip_nul_from_json(value),
            serde_json::json!({"a": ["xy", {"b": ""}], "n": 1})
        );
    }
}
