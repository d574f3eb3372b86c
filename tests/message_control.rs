//! Pause, resume and cancel acting on a send that is being sent (SPEC §5.1, issue #3): a pause
//! stops new messages within 2 s, a resume carries on where it stopped, and a cancel leaves
//! what was not sent `cancelled`.

mod support;

use std::time::{Duration, Instant};
use support::messages::{
    ORG, context_with, is_stalled, new_send, only_job, recipients, smtp_provider, store,
    wait_until_finished,
};
use support::smtp::SmtpServer;
use support::{start_worker, test_config, wait_for, wait_for_activity};
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::fanout::fan_out_next_slice;
use wedsync_kinds::messages::providers::{
    BreakerConfig, EmailTransport, Provider, ProviderRole, Providers,
};
use wedsync_kinds::messages::{Category, NewSend, control, get_send};
use wedsync_kinds::register_all;
use wedsync_queue::Queue;

/// Sending at 100 messages a second, so a send of 400 takes about 4 s.
fn slow_context(db: &TestDb, smtp: &SmtpServer) -> wedsync_kinds::AppContext {
    let provider = smtp_provider(ProviderRole::Primary, &smtp.url(), BreakerConfig::default())
        .with_rate_limit(db.pool.clone(), 100.0);
    context_with(db, Providers::new().with(provider))
}

/// Wait until no batch job of the send is running (each has stopped and snoozed, or ended).
async fn wait_until_no_batch_runs(db: &TestDb) {
    wait_for("the batches to stop", Duration::from_secs(10), || async {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'deliver_batch' AND state = 'running'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (running == 0).then_some(())
    })
    .await;
}

/// A send of 400 at 100 messages a second, its first 50 messages out.
async fn sending_400(db: &TestDb, smtp: &SmtpServer) -> (NewSend, support::RunningWorker) {
    let send = new_send(Category::Transactional, recipients(400));
    store(db, &send).await;
    let worker = start_worker(
        db,
        register_all(),
        slow_context(db, smtp),
        test_config(&["messages"]),
    );
    wait_for("the first messages", Duration::from_secs(20), || async {
        (smtp.count() >= 50).then_some(())
    })
    .await;
    (send, worker)
}

/// A send of `n` recipients, fanned out: its deliveries `queued`, its batch jobs waiting.
async fn fanned_out(db: &TestDb, smtp: &SmtpServer, n: usize) -> NewSend {
    let app = support::messages::context(db, &smtp.url());
    let send = new_send(Category::Transactional, recipients(n));
    store(db, &send).await;
    support::messages::run_fanout(&app, &send.id).await.unwrap();
    send
}

/// Every delivery of `send` `sending`, as batch runs' claims leave them.
async fn claim_all(db: &TestDb, send: &NewSend) {
    sqlx::query("UPDATE deliveries SET status = 'sending' WHERE send_id = $1::uuid")
        .bind(&send.id)
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn against_a_slow_server_a_pause_still_stops_new_messages_within_two_seconds() {
    // One connection, each message answered after 100 ms: every message the batches have
    // claimed queues for it (seconds of sending), and those must stop too.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.slow_down(Duration::from_millis(100));
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    let provider = Provider::email(ProviderRole::Primary, transport, BreakerConfig::default());
    let send = new_send(Category::Transactional, recipients(200));
    store(&db, &send).await;
    let worker = start_worker(
        &db,
        register_all(),
        context_with(&db, Providers::new().with(provider)),
        test_config(&["messages"]),
    );
    wait_for("the first messages", Duration::from_secs(20), || async {
        (smtp.count() >= 5).then_some(())
    })
    .await;

    let paused_at = Instant::now();
    control::pause(&db.pool, &send.id, Some(ORG)).await.unwrap();
    wait_until_no_batch_runs(&db).await;
    worker.stop().await;
    let sent = smtp.count();
    let last = smtp.messages().iter().map(|m| m.accepted_at).max().unwrap();
    let stopped_after = last.saturating_duration_since(paused_at);
    println!("slow server: last message {stopped_after:?} after the pause, {sent} of 200 sent");
    assert!(
        stopped_after < Duration::from_secs(2),
        "still sending {stopped_after:?} after the pause"
    );
    let paused = get_send(&db.pool, &send.id, None).await.unwrap().unwrap();
    assert_eq!((paused.sending, paused.queued as usize), (0, 200 - sent));
}

#[tokio::test]
async fn a_pause_stops_new_messages_within_two_seconds_and_a_resume_sends_the_rest_once() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let (send, worker) = sending_400(&db, &smtp).await;

    let paused_at = Instant::now();
    let summary = control::pause(&db.pool, &send.id, Some(ORG)).await.unwrap();
    assert_eq!(summary.state, "paused");
    wait_until_no_batch_runs(&db).await;
    let at_pause = smtp.count();
    // Nothing happens while it stays paused: an absence, so it is watched for a while.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.count(), at_pause, "messages went out while paused");
    let last = smtp.messages().iter().map(|m| m.accepted_at).max().unwrap();
    let stopped_after = last.saturating_duration_since(paused_at);
    println!("pause: last message {stopped_after:?} after the pause, {at_pause} of 400 sent");
    assert!(
        stopped_after < Duration::from_secs(2),
        "still sending {stopped_after:?} after the pause"
    );
    assert!(at_pause < 400, "the send was over before the pause");
    let paused = get_send(&db.pool, &send.id, None).await.unwrap().unwrap();
    assert_eq!(
        (paused.sending, paused.queued as usize),
        (0, 400 - at_pause)
    );

    let resumed_at = Instant::now();
    control::resume(&Queue::new(db.pool.clone()), &send.id, Some(ORG))
        .await
        .unwrap();
    wait_for("the send to finish", Duration::from_secs(30), || async {
        let s = get_send(&db.pool, &send.id, None).await.unwrap()?;
        (s.state == "done").then_some(())
    })
    .await;
    worker.stop().await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 400);
    let mut to: Vec<&str> = messages.iter().map(|m| m.to[0].as_str()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 400, "someone got two messages");
    let first_after_resume = messages
        .iter()
        .map(|m| m.accepted_at)
        .filter(|at| *at > resumed_at)
        .min()
        .unwrap();
    assert!(
        first_after_resume - resumed_at < Duration::from_secs(2),
        "the resume took {:?} to send again",
        first_after_resume - resumed_at
    );
}

#[tokio::test]
async fn a_cancel_leaves_what_was_not_sent_cancelled() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let (send, worker) = sending_400(&db, &smtp).await;
    control::cancel(&Queue::new(db.pool.clone()), &send.id, Some(ORG))
        .await
        .unwrap();
    wait_until_no_batch_runs(&db).await;
    wait_for("every batch to end", Duration::from_secs(10), || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'deliver_batch'")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        (left == 0).then_some(())
    })
    .await;
    worker.stop().await;

    let summary = get_send(&db.pool, &send.id, None).await.unwrap().unwrap();
    assert_eq!(summary.state, "cancelled");
    assert_eq!((summary.queued, summary.sending), (0, 0));
    assert_eq!(
        summary.sent as usize,
        smtp.count(),
        "sent counts what the server got"
    );
    assert!(summary.cancelled > 0 && summary.sent > 0);
    assert_eq!(summary.sent + summary.cancelled, 400);
}

#[tokio::test]
async fn a_batch_longer_than_one_run_is_finished_by_the_next_runs_without_using_attempts() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(Category::Transactional, recipients(200));
    store(&db, &send).await;
    // A run's time is up as soon as it starts, as it would be for a batch of 200 at 1/s within
    // the job's timeout: each run sends the one chunk (25 at 100/s) it claimed and hands on.
    let mut app = slow_context(&db, &smtp);
    app.messages.run_budget = Duration::ZERO;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.failed, summary.queued), (200, 0, 0));
    assert_eq!(smtp.count(), 200);
    let runs: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT attempt, (result->>'sent')::bigint FROM jobs_finished
          WHERE kind = 'deliver_batch' AND state = 'completed'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(
        runs.iter().all(|(attempt, _)| *attempt == 1),
        "a run handing on its batch used up an attempt: {runs:?}"
    );
    // Each batch's last run sent only what its earlier run left: one chunk.
    assert!(runs.iter().all(|(_, sent)| *sent == 25), "{runs:?}");
}

#[tokio::test]
async fn a_send_whose_batch_job_was_cancelled_shows_stalled_until_an_operator_retries_it() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = fanned_out(&db, &smtp, 3).await;
    let stalled = || is_stalled(&db, &send.id);
    assert!(
        !stalled().await,
        "a fanned-out send with its batch job waiting"
    );

    // An operator cancels the only batch job (as the queue discards one out of attempts):
    // nothing will send the three deliveries, and the send says so.
    let queue = Queue::new(db.pool.clone());
    let batch = only_job(&db, "deliver_batch").await;
    queue.cancel(batch, Some(ORG)).await.unwrap();
    let summary = get_send(&db.pool, &send.id, Some(ORG))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.state.as_str(), summary.queued), ("active", 3));
    assert!(summary.stalled);

    queue.retry(batch, Some(ORG)).await.unwrap();
    assert!(!stalled().await, "the retried batch job will send them");
    let app = support::messages::context(&db, &smtp.url());
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!(summary.sent, 3);
    assert_eq!(smtp.count(), 3);
    assert!(!stalled().await);
}

#[tokio::test]
async fn a_cancel_waiting_for_a_claim_lets_the_claim_count_and_both_finish() {
    // A claim in flight holds deliveries, and its statement's counting trigger may add a count
    // row for its session, whose foreign key checks the send (`FOR KEY SHARE`). A cancel that
    // locked the send `FOR UPDATE` would block that check while waiting for the claim's
    // deliveries: a deadlock, one of the two failed after a second.
    let db = TestDb::new().await.unwrap();
    let send = new_send(Category::Transactional, recipients(20));
    store(&db, &send).await;
    fan_out_next_slice(&db.pool, &send.id).await.unwrap();
    let mut claim = db.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM deliveries WHERE send_id = $1::uuid AND ordinal = 0 FOR UPDATE")
        .bind(&send.id)
        .execute(&mut *claim)
        .await
        .unwrap();
    let cancel = tokio::spawn({
        let queue = Queue::new(db.pool.clone());
        let id = send.id.clone();
        async move { control::cancel(&queue, &id, Some(ORG)).await }
    });
    wait_for_activity(
        &db,
        "the cancel to wait for the claimed delivery",
        "wait_event_type = 'Lock' AND query LIKE '%SET status = ''cancelled''%'",
    )
    .await;
    // The claim's count row, new for its session (shard 7: not the fan-out's 16).
    sqlx::query("INSERT INTO bulk_send_counts (send_id, shard) VALUES ($1::uuid, 7)")
        .bind(&send.id)
        .execute(&mut *claim)
        .await
        .expect("the claim's count row went in beside the cancel");
    claim.commit().await.unwrap();
    let summary = cancel.await.unwrap().expect("the cancel went through");
    assert_eq!(summary.state, "cancelled");
    assert_eq!(summary.cancelled, 20);
}

#[tokio::test]
async fn a_cancel_settles_deliveries_left_sending_by_a_batch_job_that_is_gone() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = fanned_out(&db, &smtp, 3).await;
    // A run claimed all three (as its claim does) and was killed on its last attempt: the
    // rescuer discarded its job, and the deliveries are left `sending`.
    claim_all(&db, &send).await;
    let queue = Queue::new(db.pool.clone());
    queue
        .cancel(only_job(&db, "deliver_batch").await, Some(ORG))
        .await
        .unwrap();

    let summary = control::cancel(&queue, &send.id, Some(ORG)).await.unwrap();
    assert_eq!(summary.state, "cancelled");
    assert_eq!((summary.sending, summary.cancelled), (0, 3));
    assert_eq!(smtp.count(), 0);
}

#[tokio::test]
async fn a_cancel_settles_only_the_batch_whose_job_is_gone() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = fanned_out(&db, &smtp, 450).await;
    let batch_size: i32 =
        sqlx::query_scalar("SELECT batch_size FROM bulk_sends WHERE id = $1::uuid")
            .bind(&send.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(2 * batch_size < 450, "three batches or more: {batch_size}");
    claim_all(&db, &send).await;
    // Only the second batch's job is gone.
    let queue = Queue::new(db.pool.clone());
    let second: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE unique_key = $1")
        .bind(wedsync_kinds::messages::batch_unique_key(
            &send.id, batch_size,
        ))
        .fetch_one(&db.pool)
        .await
        .unwrap();
    queue.cancel(second, Some(ORG)).await.unwrap();

    let summary = control::cancel(&queue, &send.id, Some(ORG)).await.unwrap();
    assert_eq!(
        (summary.sending, summary.cancelled),
        (450 - batch_size, batch_size)
    );
    let cancelled: Vec<i32> = sqlx::query_scalar(
        "SELECT ordinal FROM deliveries WHERE send_id = $1::uuid AND status = 'cancelled'
          ORDER BY ordinal",
    )
    .bind(&send.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(cancelled, (batch_size..2 * batch_size).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_cancel_leaves_the_deliveries_of_a_batch_job_still_there_to_that_job() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = fanned_out(&db, &smtp, 3).await;
    // Claimed by a run whose job is still there (it may be sending them now).
    claim_all(&db, &send).await;
    let queue = Queue::new(db.pool.clone());
    let summary = control::cancel(&queue, &send.id, Some(ORG)).await.unwrap();
    assert_eq!((summary.sending, summary.cancelled), (3, 0));

    // Then the job goes without settling them (its worker killed on its last attempt, or an
    // operator's cancel): cancelling the send again settles what it left.
    let batch = only_job(&db, "deliver_batch").await;
    queue.cancel(batch, Some(ORG)).await.unwrap();
    let summary = control::cancel(&queue, &send.id, Some(ORG)).await.unwrap();
    assert_eq!((summary.sending, summary.cancelled), (0, 3));
}

#[tokio::test]
async fn a_resume_leaves_a_batch_waiting_out_its_retry_backoff_alone() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = fanned_out(&db, &smtp, 3).await;
    // The batch's last run was told to come back in an hour (a provider's `Retry-After`).
    let batch = only_job(&db, "deliver_batch").await;
    let backoff = "SELECT state::text, scheduled_at, attempt FROM jobs WHERE id = $1";
    sqlx::query(
        "UPDATE jobs SET state = 'retryable', attempt = 1,
                         scheduled_at = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(batch)
    .execute(&db.pool)
    .await
    .unwrap();
    let before: (String, chrono::DateTime<chrono::Utc>, i32) = sqlx::query_as(backoff)
        .bind(batch)
        .fetch_one(&db.pool)
        .await
        .unwrap();

    let queue = Queue::new(db.pool.clone());
    control::pause(&db.pool, &send.id, Some(ORG)).await.unwrap();
    let summary = control::resume(&queue, &send.id, Some(ORG)).await.unwrap();
    assert_eq!(summary.state, "active");
    let after: (String, chrono::DateTime<chrono::Utc>, i32) = sqlx::query_as(backoff)
        .bind(batch)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        after, before,
        "the resume ran the batch before its backoff ended"
    );
}

#[tokio::test]
async fn a_worker_whose_heartbeats_cannot_get_through_sends_nothing_until_one_does() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    // 1,000 at 100 messages a second: still sending long after the heartbeats stop.
    let send = new_send(Category::Transactional, recipients(1_000));
    store(&db, &send).await;
    let worker = start_worker(
        &db,
        register_all(),
        slow_context(&db, &smtp),
        test_config(&["messages"]),
    );
    wait_for("the first messages", Duration::from_secs(20), || async {
        (smtp.count() >= 50).then_some(())
    })
    .await;

    // Hold the worker's row: its next heartbeat waits (as one stuck on a starved pool or a
    // stalled runtime would), and others would rescue its jobs 2 s after the last one.
    let mut holder = db.pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM workers FOR UPDATE")
        .fetch_all(&mut *holder)
        .await
        .unwrap();
    wait_for_activity(
        &db,
        "a heartbeat to wait",
        "wait_event_type = 'Lock' AND query LIKE 'UPDATE workers SET heartbeat_at%'",
    )
    .await;
    // The lease (1.8 s after the last heartbeat that got through was sent) has lapsed by now.
    // Absence of messages cannot be awaited: these two waits are the test.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_lapse = smtp.count();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        smtp.count(),
        at_lapse,
        "messages went while the worker could not know it still held its jobs"
    );
    assert!(at_lapse < 1_000);

    // The row is free: the heartbeat gets through and the send goes on — either the jobs are
    // still this worker's, or (if the rescue, waiting for the row too, came first) the worker
    // learns it was declared dead, stops its held-up runs, and the rescued jobs send the rest.
    // Each message once, either way.
    holder.rollback().await.unwrap();
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    worker.stop().await;
    assert_eq!((summary.sent, summary.failed), (1_000, 0));
    let mut addresses = smtp.first_recipients();
    addresses.sort();
    addresses.dedup();
    assert_eq!((smtp.count(), addresses.len()), (1_000, 1_000), "each once");
}
