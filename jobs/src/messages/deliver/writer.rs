//! Writing what became of each delivery, as soon as it is known and in as few statements as the
//! load allows (group commit): one task per process takes every outcome that arrived while its
//! previous write was in flight — from every batch job — and writes them with one UPDATE.
//!
//! Why this shape: the time between a provider accepting a message and `sent` being committed
//! is the only window in which a crash causes a duplicate (see `docs/messages.md`). Writing
//! each outcome alone keeps that window at one round trip but costs a commit per message;
//! batching on a timer would cut commits but widen the window to the timer. Writing whatever is
//! waiting the moment the previous write returns keeps the window at about two round trips at
//! any rate, with a commit per round trip rather than per message. On top of that, a message
//! only goes out with a permit of [`MessagesContext::unrecorded`](crate::messages::MessagesContext)
//! that its write gives back: however slow the database, a process never has more messages
//! sent-but-unrecorded than it has permits.

use crate::messages::sql;
use crate::messages::template::Rendered;
use sqlx::PgPool;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Most outcomes per statement.
const MAX_BATCH: usize = 1_000;
/// The longest pause between two tries of a failing write. A write is tried until it succeeds:
/// giving outcomes up would leave their rows `sending` with a job told they were recorded, and
/// while it is retried no new message goes out (the permits stay taken), which is what a process
/// that cannot record what it sends should do.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// A delivery's new status, from `sending`.
#[derive(Debug)]
pub(crate) struct StatusChange {
    pub id: i64,
    pub status: &'static str,
    /// A provider was called (counts as an attempt of the delivery).
    pub tried: bool,
    pub error: Option<String>,
    pub message_id: Option<String>,
    pub provider: Option<String>,
    pub rendered: Option<Rendered>,
    /// Given back once the change is committed (see the module documentation).
    pub _permit: Option<OwnedSemaphorePermit>,
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
            _permit: None,
        }
    }

    pub fn tried(mut self) -> Self {
        self.tried = true;
        self
    }

    /// Without NUL characters, which a provider's reply could carry and PostgreSQL text cannot.
    pub fn error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into().replace('\0', ""));
        self
    }
}

/// The writer task is gone (the runtime is shutting down): what was pushed may be unwritten.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the delivery outcome writer has stopped")]
pub(crate) struct WriterStopped;

enum Item {
    Change(StatusChange),
    /// Answered once every change pushed before it is written.
    Flush(oneshot::Sender<()>),
}

/// The process's writer; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct StatusWriter {
    tx: mpsc::UnboundedSender<Item>,
}

impl StatusWriter {
    pub fn spawn(pool: PgPool) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, rx));
        StatusWriter { tx }
    }

    pub fn push(&self, change: StatusChange) {
        // The task ends only once every sender is gone.
        let _ = self.tx.send(Item::Change(change));
    }

    /// Wait until everything pushed so far is written.
    pub async fn flush(&self) -> Result<(), WriterStopped> {
        let (done, wait) = oneshot::channel();
        self.tx.send(Item::Flush(done)).map_err(|_| WriterStopped)?;
        wait.await.map_err(|_| WriterStopped)
    }
}

async fn run(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut items = Vec::new();
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut changes = Vec::with_capacity(items.len());
        let mut flushes = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Change(change) => changes.push(change),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !changes.is_empty() {
            write_retrying(&pool, &changes).await;
        }
        // The permits go back with the changes, now that they are recorded.
        drop(changes);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_retrying(pool: &PgPool, batch: &[StatusChange]) {
    let mut delay = Duration::from_millis(50);
    while let Err(err) = write(pool, batch).await {
        tracing::warn!(error = %err, rows = batch.len(), "writing delivery outcomes failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

async fn write(pool: &PgPool, batch: &[StatusChange]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&StatusChange) -> Option<&str>| -> Vec<Option<&str>> {
        batch.iter().map(f).collect()
    };
    let rendered = |f: fn(&Rendered) -> Option<&str>| -> Vec<Option<&str>> {
        batch
            .iter()
            .map(|o| o.rendered.as_ref().and_then(f))
            .collect()
    };
    sqlx::query(sql::WRITE_OUTCOMES)
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use wedsync_db::testing::TestDb;

    const DELIVERIES: i32 = 20_000;
    const OUTCOMES: i32 = 1_000;

    /// Every node of a JSON plan.
    fn nodes<'a>(node: &'a Value, out: &mut Vec<&'a Value>) {
        out.push(node);
        for child in node["Plans"].as_array().into_iter().flatten() {
            nodes(child, out);
        }
    }

    #[tokio::test]
    async fn outcomes_are_joined_by_id_even_when_the_statistics_say_nothing_is_sending() {
        let db = TestDb::new().await.unwrap();
        sqlx::query(
            "WITH sender AS (
                 INSERT INTO senders (org_id, name, email, postal_address)
                 VALUES ('org', 'Ann', 'hello@ann.example', '1 Chapel Lane') RETURNING id)
             INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                                     text_template, recipient_count)
             SELECT '00000000-0000-0000-0000-000000000001', 'org', 'email', 'transactional',
                    id, 's', 't', $1 FROM sender",
        )
        .bind(DELIVERIES)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO deliveries (send_id, ordinal, address, address_hash)
             SELECT '00000000-0000-0000-0000-000000000001', i, 'guest' || i || '@example.com',
                    md5(i::text)
               FROM generate_series(0, $1 - 1) AS i",
        )
        .bind(DELIVERIES)
        .execute(&db.pool)
        .await
        .unwrap();
        // Statistics taken while nothing was `sending`, as they nearly always are; then a claim.
        sqlx::query("ANALYZE deliveries")
            .execute(&db.pool)
            .await
            .unwrap();
        let ids: Vec<i64> = sqlx::query_scalar(
            "UPDATE deliveries SET status = 'sending' WHERE ordinal < $1 RETURNING id",
        )
        .bind(OUTCOMES)
        .fetch_all(&db.pool)
        .await
        .unwrap();

        let none = vec![None::<&str>; ids.len()];
        let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN (FORMAT JSON) {}",
            sql::WRITE_OUTCOMES
        )))
        .bind(&ids)
        .bind(vec!["sent"; ids.len()])
        .bind(vec![true; ids.len()])
        .bind(&none)
        .bind(&none)
        .bind(&none)
        .bind(&none)
        .bind(vec![Some("body"); ids.len()])
        .bind(&none)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        let mut all = Vec::new();
        nodes(&plan[0]["Plan"], &mut all);
        assert!(
            all.iter().any(|n| n["Relation Name"] == "deliveries"),
            "the plan reads deliveries: {plan}"
        );
        // The bad plan compared every outcome with every row its scan found (a nested loop
        // whose join filter is `d.id = t.id`); a join by key hashes, merges or looks up ids.
        let filters: Vec<&Value> = all.iter().filter_map(|n| n.get("Join Filter")).collect();
        assert!(
            filters.is_empty(),
            "outcomes are joined with their deliveries by id, not pair by pair: {plan}"
        );

        // And the write itself records them.
        let batch: Vec<StatusChange> = ids
            .iter()
            .map(|&id| StatusChange::new(id, "sent").tried())
            .collect();
        write(&db.pool, &batch).await.unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(sent, i64::from(OUTCOMES));
    }
}
