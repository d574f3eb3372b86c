//! Runs one claimed job: decode, run under its timeout with panics caught, then record the
//! outcome (completion batched; failures, discards and cancellations written directly).

use crate::completer::Completion;
use futures::FutureExt;
use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc};
use tokio::task::AbortHandle;
use tracing::Instrument;
use wedsync_queue::{JobError, JobRow, JobState, Outcome, Queue, Registry, error_entry};

/// What every job task of this process shares.
pub(crate) struct Shared<C> {
    pub queue: Queue,
    pub registry: Arc<Registry<C>>,
    pub app: C,
    pub worker_id: String,
    pub completions: mpsc::Sender<Completion>,
    /// Jobs running in this process, to abort on cancel or at the end of the shutdown grace.
    pub running: Mutex<HashMap<i64, AbortHandle>>,
    /// Notified whenever a job task ends, for the shutdown drain.
    pub job_ended: Notify,
    pub run_log: Option<Mutex<Vec<i64>>>,
}

/// Jobs in flight for one queue, and a signal when one ends.
#[derive(Default)]
pub(crate) struct Slots {
    pub in_flight: AtomicUsize,
    pub freed: Notify,
}

/// Frees the slot and forgets the job when the task ends, however it ends (done, panicked, aborted).
struct SlotGuard<C> {
    shared: Arc<Shared<C>>,
    slots: Arc<Slots>,
    job_id: i64,
}

impl<C> Drop for SlotGuard<C> {
    fn drop(&mut self) {
        lock(&self.shared.running).remove(&self.job_id);
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

/// Start `row` on its own task (so a panic or an abort touches nothing else).
pub(crate) fn spawn_job<C: Clone + Send + Sync + 'static>(
    shared: &Arc<Shared<C>>,
    slots: &Arc<Slots>,
    row: JobRow,
) {
    slots.in_flight.fetch_add(1, Ordering::AcqRel);
    let guard = SlotGuard {
        shared: shared.clone(),
        slots: slots.clone(),
        job_id: row.id,
    };
    let job_id = row.id;
    // Held across the spawn so the task cannot remove its entry before it is inserted.
    let mut running = lock(&shared.running);
    let task = tokio::spawn(run_job(shared.clone(), row, guard));
    running.insert(job_id, task.abort_handle());
}

async fn run_job<C: Clone + Send + Sync + 'static>(
    shared: Arc<Shared<C>>,
    row: JobRow,
    _guard: SlotGuard<C>,
) {
    if let Some(log) = &shared.run_log {
        lock(log).push(row.id);
    }
    let span = tracing::info_span!("job", job.id = row.id, job.kind = %row.kind, job.attempt = row.attempt);
    let started = Instant::now();
    let result = execute(&shared, &row).instrument(span.clone()).await;
    let outcome = match &result {
        Ok(Outcome::Completed(_)) => "completed",
        Ok(Outcome::Cancelled(_)) => "cancelled",
        Err(_) => "failed",
    };
    metrics::histogram!("wedsync_job_duration_seconds", "queue" => row.queue.clone(), "kind" => row.kind.clone(), "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    record(&shared, &row, result).instrument(span).await;
}

async fn execute<C: Clone + Send + Sync + 'static>(
    shared: &Shared<C>,
    row: &JobRow,
) -> Result<Outcome, JobError> {
    let prepared = shared.registry.prepare(row, shared.app.clone())?;
    match tokio::time::timeout(
        prepared.timeout,
        AssertUnwindSafe(prepared.future).catch_unwind(),
    )
    .await
    {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(JobError::Retry(format!(
            "panicked: {}",
            panic_message(panic.as_ref())
        ))),
        Err(_) => Err(JobError::Retry(format!(
            "timed out after {:?}",
            prepared.timeout
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

/// Write what happened. Completions go to the batching completer; the rest are rare and written
/// here, retried while the database is unreachable.
async fn record<C>(shared: &Shared<C>, row: &JobRow, result: Result<Outcome, JobError>) {
    let worker = shared.worker_id.as_str();
    match result {
        Ok(Outcome::Completed(value)) => {
            if shared.completions.send((row.id, value)).await.is_err() {
                tracing::error!("completer stopped before a completion was recorded");
            }
        }
        Ok(Outcome::Cancelled(reason)) => {
            let entry = error_entry(row.attempt, "cancelled", &reason);
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
        Err(err) => {
            let entry = error_entry(row.attempt, err.class(), err.message());
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
    match err {
        JobError::RetryAfter { after, .. } => *after,
        _ => shared.registry.backoff(&row.kind, row.attempt),
    }
}

/// Retry a state write for up to about a minute; after that the job stays `running` and is
/// rescued when this worker stops heartbeating.
async fn persist<F, Fut>(mut write: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, wedsync_queue::QueueError>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..20 {
        match write().await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(error = %err, "recording a job outcome failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!("gave up recording a job outcome; the job will be rescued");
}
