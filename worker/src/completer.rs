//! Writes completions in batches: whatever finished while the previous batch was being written
//! goes out in the next statement, so batches grow with load and latency stays low when idle.

use serde_json::Value;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wedsync_queue::Queue;

pub type Completion = (i64, Option<Value>);

/// Run until `stop` is cancelled, then write whatever is still buffered and end.
pub async fn run_completer(
    queue: Queue,
    worker_id: String,
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
        write_with_retry(&queue, &worker_id, &batch).await;
        batch.clear();
    }
}

/// A failed write is retried with backoff; the completions are kept, never dropped.
async fn write_with_retry(queue: &Queue, worker_id: &str, batch: &[Completion]) {
    let mut delay = Duration::from_millis(50);
    loop {
        match queue.complete_batch(worker_id, batch).await {
            Ok(written) => {
                if written < batch.len() as u64 {
                    tracing::debug!(
                        lost = batch.len() as u64 - written,
                        "some completed jobs were no longer held by this worker (rescued or cancelled)"
                    );
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, jobs = batch.len(), "writing completions failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
