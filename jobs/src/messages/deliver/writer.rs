//! Writing what became of each delivery a batch job took, as soon as it is known and in as few
//! statements as the load allows (group commit): one task per job takes every outcome that
//! arrived while its previous write was in flight and writes them with one UPDATE.
//!
//! Why this shape: the time between a provider accepting a message and `sent` being committed
//! is the only window in which a crash causes a duplicate (see `docs/messages.md`). Writing
//! each outcome alone keeps that window at one round trip but costs a commit per message;
//! batching on a timer would cut commits but widen the window to the timer. Writing whatever is
//! waiting the moment the previous write returns keeps the window at about two round trips at
//! any rate, with a commit per round trip rather than per message.

use crate::messages::sql;
use crate::messages::template::Rendered;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most outcomes per statement.
const MAX_BATCH: usize = 1_000;
/// How long a failing write is retried before the job gives up (its deliveries stay `sending`
/// and are sent again by the retry: a duplicate is better than a message lost).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);

/// A delivery's new status, from `sending`.
#[derive(Debug, Clone)]
pub(super) struct StatusChange {
    pub id: i64,
    pub status: &'static str,
    /// A provider was called (counts as an attempt of the delivery).
    pub tried: bool,
    pub error: Option<String>,
    pub message_id: Option<String>,
    pub provider: Option<String>,
    pub rendered: Option<Rendered>,
}

impl StatusChange {
    pub fn new(id: i64, status: &'static str) -> Self {
        StatusChange {
            id,
            status,
            tried: false,
            error: None,
            message_id: None,
            provider: None,
            rendered: None,
        }
    }

    pub fn tried(mut self) -> Self {
        self.tried = true;
        self
    }

    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }
}

pub(super) struct StatusWriter {
    tx: mpsc::UnboundedSender<StatusChange>,
    task: JoinHandle<Result<u64, sqlx::Error>>,
}

impl StatusWriter {
    pub fn spawn(pool: PgPool) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        StatusWriter {
            tx,
            task: tokio::spawn(run(pool, rx)),
        }
    }

    pub fn push(&self, change: StatusChange) {
        // The task only ends once every sender is gone, so this cannot fail while `self` lives.
        let _ = self.tx.send(change);
    }

    /// Write everything pushed so far; how many rows changed.
    pub async fn finish(self) -> Result<u64, sqlx::Error> {
        drop(self.tx);
        self.task
            .await
            .unwrap_or_else(|join| Err(sqlx::Error::Protocol(format!("outcome writer: {join}"))))
    }
}

async fn run(
    pool: PgPool,
    mut rx: mpsc::UnboundedReceiver<StatusChange>,
) -> Result<u64, sqlx::Error> {
    let mut written = 0;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        written += write_retrying(&pool, &batch).await?;
        batch.clear();
    }
    Ok(written)
}

async fn write_retrying(pool: &PgPool, batch: &[StatusChange]) -> Result<u64, sqlx::Error> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(50);
    loop {
        match write(pool, batch).await {
            Ok(n) => return Ok(n),
            Err(err) if started.elapsed() < GIVE_UP_AFTER => {
                tracing::warn!(error = %err, rows = batch.len(), "writing delivery outcomes failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(err),
        }
    }
}

async fn write(pool: &PgPool, batch: &[StatusChange]) -> Result<u64, sqlx::Error> {
    let column = |f: fn(&StatusChange) -> Option<&str>| -> Vec<Option<&str>> {
        batch.iter().map(f).collect()
    };
    let rendered = |f: fn(&Rendered) -> Option<&str>| -> Vec<Option<&str>> {
        batch
            .iter()
            .map(|o| o.rendered.as_ref().and_then(f))
            .collect()
    };
    let outcome = sqlx::query(sql::WRITE_OUTCOMES)
        .bind(batch.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind(batch.iter().map(|o| o.status).collect::<Vec<_>>())
        .bind(batch.iter().map(|o| o.tried).collect::<Vec<_>>())
        .bind(column(|o| o.error.as_deref()))
        .bind(column(|o| o.message_id.as_deref()))
        .bind(column(|o| o.provider.as_deref()))
        .bind(rendered(|r| {
            Some(r.subject.as_str()).filter(|s| !s.is_empty())
        }))
        .bind(rendered(|r| Some(r.text.as_str())))
        .bind(rendered(|r| r.html.as_deref()))
        .execute(pool)
        .await?;
    Ok(outcome.rows_affected())
}
