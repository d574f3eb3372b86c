//! The batched event writer: producers hand events to a bounded channel and never wait; one
//! task writes them in a single `INSERT … SELECT unnest(…)` per batch.
//!
//! A batch is written when it holds `max_batch` events or `flush_interval` after its first
//! event, whichever comes first, so a busy process writes a few large statements a second and
//! an idle one nothing at all. When the channel is full (the database is slower than the events,
//! or down) events are dropped and counted (`wedsync_metric_events_dropped_total`) rather than
//! slowing jobs or requests. Batches are committed with `synchronous_commit = off`: they do not
//! wait for the WAL flush the queue's own commits are waiting on, and a crash may lose the last
//! fraction of a second of events, which metrics can afford.

use crate::event::{EventDetail, MetricEvent};
use crate::sql;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counter of events dropped because the writer could not keep up or the database refused them.
pub const DROPPED: &str = "wedsync_metric_events_dropped_total";
/// Write attempts per batch before it is dropped (with a warning).
const WRITE_ATTEMPTS: u32 = 3;

/// Sizes and timing of an [`EventWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWriterConfig {
    /// Events buffered at most; beyond this they are dropped.
    pub capacity: usize,
    /// Most events per statement.
    pub max_batch: usize,
    /// Longest an event waits before its batch is written.
    pub flush_interval: Duration,
}

impl Default for EventWriterConfig {
    fn default() -> Self {
        EventWriterConfig {
            capacity: 100_000,
            max_batch: 10_000,
            flush_interval: Duration::from_millis(500),
        }
    }
}

/// The producer side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<MetricEvent>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    /// A sink and the receiving end of its channel.
    fn channel(capacity: usize) -> (EventSink, mpsc::Receiver<MetricEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let sink = EventSink {
            tx,
            dropped: Arc::default(),
        };
        (sink, rx)
    }

    /// Queue `event` for writing, or drop and count it when the buffer is full or the writer
    /// has stopped.
    pub fn record(&self, event: MetricEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.count_dropped(1),
        }
    }

    /// Events this sink (and its clones) dropped, including failed batches.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// A handle that only counts drops: the writer must not hold a sender, or its channel would
    /// never close.
    fn clone_counter(&self) -> DropCounter {
        DropCounter(self.dropped.clone())
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(DROPPED).increment(n);
    }
}

/// The writing task; [`EventWriter::finish`] writes what is buffered and stops it.
pub struct EventWriter {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl EventWriter {
    /// Start writing to `pool`; record events through the returned sink.
    pub fn spawn(pool: PgPool, config: EventWriterConfig) -> (EventSink, EventWriter) {
        let (sink, rx) = EventSink::channel(config.capacity);
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(pool, rx, sink.clone_counter(), config, stop.clone()));
        (sink, EventWriter { stop, task })
    }

    /// Stop accepting events, write every buffered one, and end (graceful shutdown).
    pub async fn finish(self) {
        self.stop.cancel();
        if let Err(err) = self.task.await {
            tracing::error!(error = %err, "the metric event writer failed");
        }
    }
}

struct DropCounter(Arc<AtomicU64>);

impl DropCounter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
        metrics::counter!(DROPPED).increment(n);
    }
}

async fn run(
    pool: PgPool,
    mut rx: mpsc::Receiver<MetricEvent>,
    dropped: DropCounter,
    config: EventWriterConfig,
    stop: CancellationToken,
) {
    let max_batch = config.max_batch.max(1);
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        let received = tokio::select! {
            n = rx.recv_many(&mut batch, max_batch) => n,
            _ = stop.cancelled(), if !rx.is_closed() => {
                // Senders now fail (and count a drop); what is buffered is still received.
                rx.close();
                continue;
            }
        };
        if received == 0 {
            return;
        }
        // Linger until the batch is full or its first event has waited `flush_interval`.
        let deadline = Instant::now() + config.flush_interval;
        while batch.len() < max_batch && !stop.is_cancelled() {
            let room = max_batch - batch.len();
            tokio::select! {
                n = rx.recv_many(&mut batch, room) => if n == 0 { break },
                _ = tokio::time::sleep_until(deadline) => break,
                _ = stop.cancelled() => break,
            }
        }
        if let Err(err) = write_with_retry(&pool, &batch).await {
            tracing::warn!(error = %err, events = batch.len(), "dropped a batch of metric events");
            dropped.add(batch.len() as u64);
        }
        batch.clear();
    }
}

async fn write_with_retry(pool: &PgPool, batch: &[MetricEvent]) -> Result<(), sqlx::Error> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match write(pool, batch).await {
            Ok(()) => return Ok(()),
            Err(err) if attempt >= WRITE_ATTEMPTS || matches!(err, sqlx::Error::Database(_)) => {
                return Err(err);
            }
            Err(err) => {
                tracing::debug!(error = %err, attempt, "writing metric events failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}

/// Column arrays of a batch, in [`sql::INSERT_EVENTS`]'s order.
#[derive(Default)]
struct Columns {
    occurred_at: Vec<chrono::DateTime<chrono::Utc>>,
    source: Vec<&'static str>,
    queue: Vec<Option<String>>,
    kind: Vec<Option<String>>,
    outcome: Vec<Option<&'static str>>,
    method: Vec<Option<String>>,
    route: Vec<Option<String>>,
    status: Vec<Option<i16>>,
    error: Vec<bool>,
    duration_us: Vec<i64>,
}

impl Columns {
    fn of(batch: &[MetricEvent]) -> Columns {
        let mut c = Columns::default();
        for e in batch {
            c.occurred_at.push(e.occurred_at);
            c.error.push(e.error);
            c.duration_us
                .push(i64::try_from(e.duration.as_micros()).unwrap_or(i64::MAX));
            match &e.detail {
                EventDetail::Job {
                    queue,
                    kind,
                    outcome,
                } => {
                    c.source.push("job");
                    c.queue.push(Some(queue.clone()));
                    c.kind.push(Some(kind.clone()));
                    c.outcome.push(Some(outcome));
                    c.method.push(None);
                    c.route.push(None);
                    c.status.push(None);
                }
                EventDetail::Api {
                    method,
                    route,
                    status,
                } => {
                    c.source.push("api");
                    c.queue.push(None);
                    c.kind.push(None);
                    c.outcome.push(None);
                    c.method.push(Some(method.clone()));
                    c.route.push(Some(route.clone()));
                    c.status
                        .push(Some(i16::try_from(*status).unwrap_or(i16::MAX)));
                }
            }
        }
        c
    }
}

async fn write(pool: &PgPool, batch: &[MetricEvent]) -> Result<(), sqlx::Error> {
    let c = Columns::of(batch);
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(sql::INSERT_EVENTS)
        .bind(&c.occurred_at)
        .bind(&c.source)
        .bind(&c.queue)
        .bind(&c.kind)
        .bind(&c.outcome)
        .bind(&c.method)
        .bind(&c.route)
        .bind(&c.status)
        .bind(&c.error)
        .bind(&c.duration_us)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_waiting() {
        let (sink, _rx) = EventSink::channel(2);
        let event = MetricEvent::job("q", "k", "completed", Duration::from_millis(3));
        for _ in 0..5 {
            sink.record(event.clone());
        }
        assert_eq!(sink.dropped(), 3);
    }

    #[test]
    fn a_stopped_writer_counts_events_as_dropped() {
        let (sink, rx) = EventSink::channel(8);
        drop(rx);
        sink.record(MetricEvent::api("GET", "/v1/queues", 200, Duration::ZERO));
        assert_eq!(sink.dropped(), 1);
    }

    #[test]
    fn columns_keep_the_fields_of_each_source_apart() {
        let events = [
            MetricEvent::job("email", "send", "failed", Duration::from_micros(1500)),
            MetricEvent::api("GET", "/v1/jobs/{id}", 404, Duration::from_micros(20)),
        ];
        let c = Columns::of(&events);
        assert_eq!(c.source, ["job", "api"]);
        assert_eq!(c.queue, [Some("email".to_owned()), None]);
        assert_eq!(c.route, [None, Some("/v1/jobs/{id}".to_owned())]);
        assert_eq!(c.status, [None, Some(404)]);
        assert_eq!(c.error, [true, false]);
        assert_eq!(c.duration_us, [1500, 20]);
    }
}
