//! Writes completions in batches: whatever finished while the previous batch was being written
//! goes out in the next statement, so batches grow with load and latency stays low when idle.

use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wedsync_queue::{Queue, QueueError};

/// A job that completed, with the worker id of the claim that ran it.
#[derive(Debug)]
pub struct Completion {
    pub id: i64,
    pub claimed_by: Arc<str>,
    pub result: Option<Value>,
}

/// After shutdown is requested, how long a failing final write is retried before the rescuer is
/// left to return those jobs.
const FINAL_WRITE_DEADLINE: Duration = Duration::from_secs(30);

/// Run until `stop` is cancelled, then write whatever is still buffered and end.
pub async fn run_completer(
    queue: Queue,
    mut rx: mpsc::Receiver<Completion>,
    max_batch: usize,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, max_batch) => n,
            _ = stop.cancelled(), if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        if received == 0 {
            return;
        }
        // Almost always one claimer; several only around a worker being declared dead.
        batch.sort_by(|a, b| a.claimed_by.cmp(&b.claimed_by));
        for group in batch.chunk_by(|a, b| a.claimed_by == b.claimed_by) {
            write_group(&queue, group, &stop).await;
        }
        batch.clear();
    }
}

async fn write_group(queue: &Queue, group: &[Completion], stop: &CancellationToken) {
    let worker = group[0].claimed_by.as_ref();
    let rows: Vec<(i64, Option<Value>)> = group.iter().map(|c| (c.id, c.result.clone())).collect();
    match write_with_retry(queue, worker, &rows, stop).await {
        Err(err) if rejects_the_rows(&err) && rows.len() > 1 => {
            // One row the database rejects must not block the others: write them one by one.
            tracing::warn!(error = %err, "a completion batch was rejected; writing rows one by one");
            for row in rows {
                write_alone(queue, worker, row, stop).await;
            }
        }
        Err(err) if rejects_the_rows(&err) => {
            let row = rows.into_iter().next().expect("a group is never empty");
            write_alone(queue, worker, row, stop).await;
        }
        Err(err) => {
            tracing::error!(error = %err, jobs = rows.len(), "gave up writing completions; the jobs will be rescued")
        }
        Ok(()) => {}
    }
}

/// A row rejected even alone is written without its result, which is the only part a handler
/// controls.
async fn write_alone(
    queue: &Queue,
    worker: &str,
    row: (i64, Option<Value>),
    stop: &CancellationToken,
) {
    let id = row.0;
    if write_with_retry(queue, worker, &[row], stop).await.is_ok() {
        return;
    }
    tracing::error!(
        job.id = id,
        "the database rejected this job's result; recording it without"
    );
    if let Err(err) = write_with_retry(queue, worker, &[(id, None)], stop).await {
        tracing::error!(job.id = id, error = %err, "could not record a completion");
    }
}

/// SQLSTATE classes of errors that pass: a lost connection (08), a server read-only during a
/// failover (25), a serialization failure or deadlock (40), a full disk or too many connections
/// (53), a lock not available (55), a statement cancelled or a backend terminated (57), an I/O
/// error (58). Given up on, such a completion would leave its job `running` under a live
/// worker, which nothing rescues.
const PASSING_CLASSES: [&str; 7] = ["08", "25", "40", "53", "55", "57", "58"];

/// Whether the database refused the statement for what it holds (a data exception, a broken
/// constraint, a value over a limit…), which no retry mends: every database error outside
/// [`PASSING_CLASSES`].
fn rejects_the_rows(err: &QueueError) -> bool {
    let QueueError::Database(sqlx::Error::Database(db)) = err else {
        return false;
    };
    let code = db.code();
    let class = code.as_deref().and_then(|code| code.get(..2));
    !class.is_some_and(|class| PASSING_CLASSES.contains(&class))
}

/// Retry failures with backoff, except a rejection of the rows ([`rejects_the_rows`]), which is
/// returned at once. After shutdown is requested, give up after the final-write deadline.
async fn write_with_retry(
    queue: &Queue,
    worker: &str,
    rows: &[(i64, Option<Value>)],
    stop: &CancellationToken,
) -> Result<(), QueueError> {
    let mut delay = Duration::from_millis(50);
    let mut deadline = None;
    loop {
        match queue.complete_batch(worker, rows).await {
            Ok(written) => {
                if written < rows.len() as u64 {
                    tracing::debug!(
                        lost = rows.len() as u64 - written,
                        "some completed jobs were no longer held by this claim (rescued or cancelled)"
                    );
                }
                return Ok(());
            }
            Err(err) if rejects_the_rows(&err) => return Err(err),
            Err(err) => {
                if stop.is_cancelled() {
                    let deadline = *deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + FINAL_WRITE_DEADLINE);
                    if tokio::time::Instant::now() > deadline {
                        return Err(err);
                    }
                }
                tracing::warn!(error = %err, jobs = rows.len(), "writing completions failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
