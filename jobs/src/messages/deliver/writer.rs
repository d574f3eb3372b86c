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
//!
//! The writer runs on a thread of its own, with a single-threaded runtime and a connection of
//! its own (not the pool's). Its write is what every permit waits for, so its latency is the
//! duplicate window: on the process's runtime, busy rendering and sending for many batch jobs,
//! the task woke late for each reply, and taking a pooled connection cost a check of it (a round
//! trip) before every write. Measured in `docs/benchmarks.md` ("The outcome writer on a thread of
//! its own"). A failed write drops the connection and is tried again on a new one; the write is
//! safe to repeat (it changes only rows still `sending`, and a body already stored stays).

use crate::messages::sql;
use crate::messages::template::Rendered;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection, PgPool};
use std::borrow::Cow;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// Most outcomes per statement.
const MAX_BATCH: usize = 1_000;
/// The longest pause between two tries of a failing write. A write is tried until it succeeds:
/// giving outcomes up would leave their rows `sending` with a job told they were recorded, and
/// while it is retried no new message goes out (the permits stay taken), which is what a process
/// that cannot record what it sends should do.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How the writer's connection is named in `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "wedsync-outcome-writer";

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
    /// Start the writer's thread; it connects with `pool`'s options and ends once every
    /// `StatusWriter` is dropped.
    pub fn spawn(pool: &PgPool) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let options = pool
            .connect_options()
            .as_ref()
            .clone()
            .application_name(APPLICATION_NAME);
        std::thread::Builder::new()
            .name("outcome-writer".to_owned())
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("starting the outcome writer's runtime")
                    .block_on(run(options, rx))
            })
            .expect("starting the outcome writer's thread");
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

async fn run(options: PgConnectOptions, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut connection = None;
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
            write_retrying(&options, &mut connection, &changes).await;
        }
        // The permits go back with the changes, now that they are recorded.
        drop(changes);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Write `batch` on the writer's connection, connecting first when it has none; on failure drop
/// the connection and try again, until the write succeeds. A connection that had been working
/// (the server or a proxy may have closed it while idle) is replaced at once; a new one that
/// fails too is retried after a growing pause.
async fn write_retrying(
    options: &PgConnectOptions,
    connection: &mut Option<PgConnection>,
    batch: &[StatusChange],
) {
    let mut delay = Duration::from_millis(50);
    loop {
        let reused = connection.is_some();
        let result = match connection {
            Some(conn) => write(conn, batch).await,
            None => match options.connect().await {
                Ok(conn) => write(connection.insert(conn), batch).await,
                Err(err) => Err(err),
            },
        };
        let Err(err) = result else {
            return;
        };
        *connection = None;
        if reused {
            tracing::info!(error = %err, "the outcome writer's connection failed; reconnecting");
            continue;
        }
        tracing::warn!(error = %err, rows = batch.len(), "writing delivery outcomes failed; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

async fn write(conn: &mut PgConnection, batch: &[StatusChange]) -> Result<(), sqlx::Error> {
    let column = |f: fn(&StatusChange) -> Option<&str>| -> Vec<Option<Cow<'_, str>>> {
        batch.iter().map(|o| f(o).map(pg_text)).collect()
    };
    let rendered = |f: fn(&Rendered) -> Option<&str>| -> Vec<Option<Cow<'_, str>>> {
        batch
            .iter()
            .map(|o| o.rendered.as_ref().and_then(f).map(pg_text))
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
        .execute(conn)
        .await?;
    Ok(())
}

/// `text` without NUL characters, which PostgreSQL text cannot hold. One would fail the whole
/// statement, and the writer retries a statement until it succeeds: a provider's id or a
/// template that renders `"\u0000"` must not stop the process recording what it sends.
fn pg_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
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

    /// A transactional email send of `count` recipients (tests/support/messages.rs has the same
    /// for the integration tests, which this module cannot reach).
    async fn insert_bare_send(db: &TestDb, count: i32) {
        sqlx::query(
            "WITH sender AS (
                 INSERT INTO senders (org_id, name, email, postal_address)
                 VALUES ('org', 'Ann', 'hello@ann.example', '1 Chapel Lane') RETURNING id)
             INSERT INTO bulk_sends (id, org_id, channel, category, sender_id, subject_template,
                                     text_template, recipient_count)
             SELECT '00000000-0000-0000-0000-000000000001', 'org', 'email', 'transactional',
                    id, 's', 't', $1 FROM sender",
        )
        .bind(count)
        .execute(&db.pool)
        .await
        .unwrap();
    }

    /// `count` deliveries of a bare send, all `sending` (as a claim leaves them); their ids.
    async fn sending_deliveries(db: &TestDb, count: i32) -> Vec<i64> {
        insert_bare_send(db, count).await;
        sqlx::query_scalar(
            "INSERT INTO deliveries (send_id, ordinal, address, address_hash, status)
             SELECT '00000000-0000-0000-0000-000000000001', i, 'guest' || i || '@example.com',
                    md5(i::text), 'sending'
               FROM generate_series(0, $1 - 1) AS i
             RETURNING id",
        )
        .bind(count)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    }

    async fn status_of(db: &TestDb, id: i64) -> String {
        sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_writer_records_outcomes_on_a_new_connection_after_losing_its_own() {
        let db = TestDb::new().await.unwrap();
        let ids = sending_deliveries(&db, 2).await;
        let writer = StatusWriter::spawn(&db.pool);
        writer.push(StatusChange::new(ids[0], "sent").tried());
        writer.flush().await.unwrap();
        assert_eq!(status_of(&db, ids[0]).await, "sent");

        // The server ends the writer's connection (a restart, a failover, an operator).
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(APPLICATION_NAME)
        .fetch_all(&db.pool)
        .await
        .unwrap();
        assert_eq!(ended, [true], "the writer has one connection of its own");
        while writer_connections(&db).await > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        writer.push(StatusChange::new(ids[1], "bounced").tried().error("550"));
        tokio::time::timeout(Duration::from_secs(30), writer.flush())
            .await
            .expect("the outcome is written within 30 s")
            .unwrap();
        assert_eq!(status_of(&db, ids[1]).await, "bounced");
        assert_eq!(status_of(&db, ids[0]).await, "sent");
        assert_eq!(
            writer_connections(&db).await,
            1,
            "on a connection of its own again"
        );
    }

    #[tokio::test]
    async fn a_nul_in_a_providers_id_or_a_rendered_text_does_not_stop_the_writer() {
        let db = TestDb::new().await.unwrap();
        let ids = sending_deliveries(&db, 2).await;
        let writer = StatusWriter::spawn(&db.pool);
        writer.push(StatusChange {
            message_id: Some("SM\0x".to_owned()),
            rendered: Some(Rendered {
                subject: "Hello\0".to_owned(),
                text: "The ceremony\0 moved".to_owned(),
                html: None,
            }),
            ..StatusChange::new(ids[0], "sent").tried()
        });
        writer.push(StatusChange::new(ids[1], "sent").tried());
        tokio::time::timeout(Duration::from_secs(30), writer.flush())
            .await
            .expect("both outcomes are written within 30 s")
            .unwrap();
        assert_eq!(status_of(&db, ids[1]).await, "sent");
        let message_id: String =
            sqlx::query_scalar("SELECT message_id FROM deliveries WHERE id = $1")
                .bind(ids[0])
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(message_id, "SMx");
    }

    async fn writer_connections(db: &TestDb) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = $1 AND datname = current_database()",
        )
        .bind(APPLICATION_NAME)
        .fetch_one(&db.pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn outcomes_are_joined_by_id_even_when_the_statistics_say_nothing_is_sending() {
        let db = TestDb::new().await.unwrap();
        insert_bare_send(&db, DELIVERIES).await;
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
        write(&mut db.pool.acquire().await.unwrap(), &batch)
            .await
            .unwrap();
        let sent: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE status = 'sent'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(sent, i64::from(OUTCOMES));
    }
}
