//! Providers in trouble (SPEC §5.1, issue #3): with the primary SMTP refusing connections the
//! breaker opens and the send waits (or goes through the secondary), and once the provider is
//! back every message arrives exactly once and no delivery has failed.

mod support;

use std::time::Duration;
use support::messages::{
    context_with, mail_to, messages_context, new_send, recipients, smtp_provider,
    smtp_provider_pooled, store, wait_until_finished,
};
use support::refusing_address;
use support::smtp::{Action, SmtpServer};
use support::{start_worker, test_config, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::Category;
use wedsync_kinds::messages::providers::status::{ProviderStatus, REPORT_FRESHNESS};
use wedsync_kinds::messages::providers::{
    BreakerConfig, BreakerState, Dispatched, EmailTransport, Outgoing, Permission, Proceed,
    ProviderRole, Providers, SendError, breaker_states,
};
use wedsync_kinds::register_all;
use wedsync_kinds::suppression::Channel;

/// Opens after 3 provider failures; stays open 200 ms before one probe may go.
const BREAKER: BreakerConfig = BreakerConfig {
    failure_threshold: 3,
    open_for: Duration::from_millis(200),
};

fn deliveries_by_provider(rows: &[(String, Option<String>)], provider: &str) -> usize {
    rows.iter()
        .filter(|(_, p)| p.as_deref() == Some(provider))
        .count()
}

async fn provider_of_each(db: &TestDb, send_id: &str) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT status, provider FROM deliveries WHERE send_id = $1::uuid")
        .bind(send_id)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// The published state of the `smtp` provider's breaker, if it is `state`.
async fn published_smtp(db: &TestDb, state: BreakerState) -> Option<ProviderStatus> {
    let states = breaker_states(&db.pool, REPORT_FRESHNESS).await.unwrap();
    states
        .into_iter()
        .find(|s| s.provider == "smtp" && s.state == state)
}

/// A primary SMTP provider at `primary` and `secondary` to fail over to.
fn primary_and_secondary(primary: &str, secondary: &SmtpServer) -> Providers {
    Providers::new()
        .with(smtp_provider(ProviderRole::Primary, primary, BREAKER))
        .with(smtp_provider(
            ProviderRole::Secondary,
            &secondary.url(),
            BREAKER,
        ))
}

#[tokio::test]
async fn while_the_only_provider_is_down_the_send_waits_and_after_recovery_all_arrive_once() {
    let db = TestDb::new().await.unwrap();
    let down = refusing_address();
    let primary = smtp_provider(
        ProviderRole::Primary,
        &format!("smtp://{}", down.addr),
        BREAKER,
    );
    let app = context_with(&db, Providers::new().with(primary));
    let providers = app.messages.providers.clone();
    // What the binary starts in every worker process: operators see the breaker.
    let publisher = providers.spawn_publisher(db.pool.clone(), "test-worker".to_owned());
    let send = new_send(Category::Transactional, recipients(300));
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));

    let breaker = providers.of(Channel::Email)[0].breaker().clone();
    wait_for("the breaker to open", Duration::from_secs(20), || async {
        (breaker.state() == BreakerState::Open).then_some(())
    })
    .await;
    let published = wait_for(
        "the open breaker to be published",
        Duration::from_secs(10),
        || published_smtp(&db, BreakerState::Open),
    )
    .await;
    assert_eq!(published.open_processes, 1);
    // The failures that opened it are counted before it opens, so any report of it open shows
    // them (more may have failed meanwhile; how many depends on scheduling).
    assert!(
        published.failures >= i64::from(BREAKER.failure_threshold),
        "{published:?}"
    );
    // Batches wait for the provider (snoozed), not failing or using up attempts.
    wait_for("every batch to wait", Duration::from_secs(20), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'deliver_batch' AND state <> 'running'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        (waiting == 6).then_some(())
    })
    .await;
    // The provider stays down for a while: a half-open probe fails and opens it again.
    let failures = breaker.snapshot().failures;
    wait_for("a failed probe", Duration::from_secs(20), || async {
        (breaker.snapshot().failures > failures).then_some(())
    })
    .await;

    let smtp = SmtpServer::start_on(down.release()).await;
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    worker.stop().await;
    wait_for(
        "the closed breaker to be published",
        Duration::from_secs(10),
        || published_smtp(&db, BreakerState::Closed),
    )
    .await;
    // A process that stops cleanly is no longer counted (not for REPORT_FRESHNESS more).
    publisher.withdraw().await;
    let states = breaker_states(&db.pool, REPORT_FRESHNESS).await.unwrap();
    assert!(
        states.is_empty(),
        "a stopped process still shows: {states:?}"
    );

    assert_eq!((summary.sent, summary.failed, summary.bounced), (300, 0, 0));
    let mut to = smtp.first_recipients();
    to.sort();
    to.dedup();
    assert_eq!(smtp.count(), 300, "someone got two messages");
    assert_eq!(to.len(), 300);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let snapshot = breaker.snapshot();
    assert!(snapshot.rejected > 0, "{snapshot:?}");
    let attempts: i32 =
        sqlx::query_scalar("SELECT max(attempt) FROM jobs_finished WHERE kind = 'deliver_batch'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        attempts < 20,
        "waiting for the provider used up the batch's attempts ({attempts})"
    );
}

#[tokio::test]
async fn while_the_primary_is_down_mail_goes_through_the_secondary() {
    let db = TestDb::new().await.unwrap();
    let down = refusing_address();
    let secondary = SmtpServer::start().await;
    let providers = primary_and_secondary(&format!("smtp://{}", down.addr), &secondary);
    let app = context_with(&db, providers);
    let providers = app.messages.providers.clone();
    let send = new_send(Category::Marketing, recipients(200));
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.failed), (200, 0));
    assert_eq!(secondary.count(), 200);
    let rows = provider_of_each(&db, &send.id).await;
    assert_eq!(deliveries_by_provider(&rows, "smtp_secondary"), 200);
    let email = providers.of(Channel::Email);
    assert_eq!(email[0].breaker().state(), BreakerState::Open);
    assert_eq!(email[1].breaker().state(), BreakerState::Closed);
}

/// A message the primary refused keeps its unrecorded permit (the primary may have taken it)
/// while it waits for a connection of the secondary, and a message sent straight to the
/// secondary (the primary's breaker open) may hold that connection first. Had the latter waited
/// for a permit while holding the connection, the two would wait for each other for good once
/// the permits ran out: here two permits and one secondary connection, with several batch jobs
/// sending at once, stalled the send.
#[tokio::test]
async fn failing_over_with_the_unrecorded_permits_all_taken_does_not_stall_the_send() {
    let db = TestDb::new().await.unwrap();
    let down = refusing_address();
    let secondary = SmtpServer::start().await;
    let opens_at_once = BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    };
    let providers = Providers::new()
        .with(smtp_provider(
            ProviderRole::Primary,
            &format!("smtp://{}", down.addr),
            opens_at_once,
        ))
        .with(smtp_provider_pooled(
            ProviderRole::Secondary,
            &secondary.url(),
            BREAKER,
            1,
        ));
    let messages = messages_context(providers).with_unrecorded_limit(2);
    let app = AppContext::new(db.pool.clone()).with_messages(messages);
    let send = new_send(Category::Transactional, recipients(300));
    store(&db, &send).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.failed), (300, 0));
    assert_eq!(secondary.count(), 300);
}

#[tokio::test]
async fn a_provider_back_from_an_outage_takes_over_from_the_secondary_again() {
    let db = TestDb::new().await.unwrap();
    let primary_addr = refusing_address();
    let secondary = SmtpServer::start().await;
    let providers = primary_and_secondary(&format!("smtp://{}", primary_addr.addr), &secondary);
    let app = context_with(&db, providers);
    let breaker = app.messages.providers.of(Channel::Email)[0]
        .breaker()
        .clone();
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let during = new_send(Category::Transactional, recipients(50));
    store(&db, &during).await;
    wait_until_finished(&db, &during.id, Duration::from_secs(30)).await;
    assert_eq!(secondary.count(), 50);

    let primary = SmtpServer::start_on(primary_addr.release()).await;
    wait_for(
        "the primary's open time to pass",
        Duration::from_secs(10),
        || async {
            let opened_at = breaker.snapshot().opened_at?;
            let open_for = chrono::Duration::from_std(BREAKER.open_for).unwrap();
            (chrono::Utc::now() - opened_at > open_for).then_some(())
        },
    )
    .await;
    // The first send after its open time probes the primary, which answers: closed again.
    let probing = new_send(Category::Transactional, recipients(50));
    store(&db, &probing).await;
    wait_until_finished(&db, &probing.id, Duration::from_secs(30)).await;
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(primary.count() >= 1);
    let on_secondary = secondary.count();

    let after = new_send(Category::Transactional, recipients(50));
    store(&db, &after).await;
    wait_until_finished(&db, &after.id, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!(
        secondary.count(),
        on_secondary,
        "the secondary kept sending"
    );
    assert_eq!(primary.count() + secondary.count(), 150);
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_and_the_message_goes_once() {
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt("first@example.com", Action::CloseAfterMessage, None);
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    transport.send(&mail_to("first@example.com")).await.unwrap();
    wait_for("the server to close", Duration::from_secs(10), || async {
        (smtp.ended_session_count() == 1).then_some(())
    })
    .await;
    // The pool's one connection is kept, and closed by the server: the next send sees that on
    // the socket before it writes anything (the whole transaction, content included, would go
    // in one write) and sends the message on a new connection.
    transport
        .send(&mail_to("second@example.com"))
        .await
        .unwrap();
    let to = smtp.first_recipients();
    assert_eq!(to, ["first@example.com", "second@example.com"]);
}

/// A server (offering CHUNKING or not) and a pool of one connection to it that has sent one
/// message, so that the next send reuses the kept connection.
async fn warm_pool_of_one(chunking: bool) -> (SmtpServer, EmailTransport) {
    let smtp = SmtpServer::start().await;
    if !chunking {
        smtp.without_chunking();
    }
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    transport.send(&mail_to("warm@example.com")).await.unwrap();
    (smtp, transport)
}

#[tokio::test]
async fn a_kept_connection_lost_at_mail_is_replaced_at_once_only_while_no_content_had_gone() {
    for chunking in [false, true] {
        lost_at_mail(chunking).await;
    }
}

/// The server goes away at the MAIL of a message on a kept connection, after the peek found
/// the connection quiet. Without CHUNKING the content waits for `354`, so the server cannot
/// have the message and the pool sends it at once on a new connection; with CHUNKING the
/// content went in the same write and the lost answer is ambiguous: not sent again here.
async fn lost_at_mail(chunking: bool) {
    let (smtp, transport) = warm_pool_of_one(chunking).await;
    smtp.drop_at_mail("hello@acme.test", Some(1));
    let second = transport.send(&mail_to("guest@example.com")).await;
    let to = smtp.first_recipients();
    if chunking {
        assert!(
            matches!(second, Err(SendError::Unavailable(_))),
            "{second:?}"
        );
        assert_eq!(to, ["warm@example.com"]);
        assert_eq!(smtp.mail_count(), 2, "not tried again by the pool");
    } else {
        second.unwrap();
        assert_eq!(to, ["warm@example.com", "guest@example.com"]);
        assert_eq!(
            smtp.mail_count(),
            3,
            "the lost MAIL, then again on a new connection"
        );
    }
}

#[tokio::test]
async fn a_message_whose_answer_is_lost_after_its_content_is_not_sent_again_by_the_pool() {
    for chunking in [true, false] {
        lost_answer_after_content(chunking).await;
    }
}

async fn lost_answer_after_content(chunking: bool) {
    let (smtp, transport) = warm_pool_of_one(chunking).await;
    smtp.on_rcpt("guest@example.com", Action::DropAfterContent, None);
    // On the kept connection the server takes the message and goes away without answering:
    // it may have it, so the pool must not try again on a new connection.
    let err = transport
        .send(&mail_to("guest@example.com"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SendError::Unavailable(_)),
        "{chunking}: {err:?}"
    );
    let to = smtp.first_recipients();
    assert_eq!(to, ["warm@example.com", "guest@example.com"], "{chunking}");
}

/// Send three messages through a pool of one connection; the addresses the server took.
async fn send_three(smtp: &SmtpServer) -> Vec<String> {
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    for guest in ["ann@example.com", "bob@example.com", "cy@example.com"] {
        let message = lettre::Message::builder()
            .from("Acme Weddings <hello@acme.test>".parse().unwrap())
            .to(guest.parse().unwrap())
            .subject("The ceremony moved to 3 pm")
            .body("See you there.\r\n.dot\r\n".to_owned())
            .unwrap();
        transport.send(&message.into()).await.unwrap();
    }
    smtp.first_recipients()
}

#[tokio::test]
async fn a_server_offering_pipelining_and_chunking_gets_each_whole_transaction_in_one_write() {
    let smtp = SmtpServer::start().await;
    let to = send_three(&smtp).await;
    assert_eq!(to, ["ann@example.com", "bob@example.com", "cy@example.com"]);
    assert_eq!(smtp.pipelined_mail_count(), 3);
    assert_eq!(smtp.whole_transaction_count(), 3);
    // The content came as it is: a line starting with a dot keeps its one dot.
    let data = &smtp.messages()[0].data;
    assert!(data.contains("\r\n.dot\r\n"), "{data}");
}

#[tokio::test]
async fn a_server_offering_pipelining_alone_gets_each_transaction_up_to_data_in_one_write() {
    let smtp = SmtpServer::start().await;
    smtp.without_chunking();
    let to = send_three(&smtp).await;
    assert_eq!(to, ["ann@example.com", "bob@example.com", "cy@example.com"]);
    assert_eq!(smtp.pipelined_mail_count(), 3);
    assert_eq!(smtp.whole_transaction_count(), 0);
    let data = &smtp.messages()[0].data;
    assert!(data.contains("\r\n.dot\r\n"), "{data}");
}

#[tokio::test]
async fn a_server_without_pipelining_gets_one_command_at_a_time() {
    let smtp = SmtpServer::start().await;
    smtp.without_pipelining();
    let to = send_three(&smtp).await;
    assert_eq!(to, ["ann@example.com", "bob@example.com", "cy@example.com"]);
    assert_eq!(smtp.mail_count(), 3);
    assert_eq!(smtp.pipelined_mail_count(), 0);
    assert_eq!(smtp.whole_transaction_count(), 0);
}

#[tokio::test]
async fn pipelined_refusals_are_told_apart_and_the_connection_carries_the_next_message() {
    for chunking in [true, false] {
        pipelined_refusals(chunking).await;
    }
}

async fn pipelined_refusals(chunking: bool) {
    let smtp = SmtpServer::start().await;
    if !chunking {
        smtp.without_chunking();
    }
    smtp.on_rcpt("gone@example.com", Action::Reply(550), None);
    smtp.on_mail("hello@acme.test", 550, Some(1));
    smtp.on_rcpt("later@example.com", Action::RefuseContent(554), None);
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    // The sender refused (once): about us, not the guest, whatever RCPT and DATA were told.
    let err = transport
        .send(&mail_to("ann@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Unavailable(_)), "{err:?}");
    // The recipient refused: about the guest, although DATA went out behind it.
    let err = transport
        .send(&mail_to("gone@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Rejected(_)), "{err:?}");
    let err = transport
        .send(&mail_to("later@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Refused(_)), "{err:?}");
    transport.send(&mail_to("bob@example.com")).await.unwrap();
    let to = smtp.first_recipients();
    assert_eq!(to, ["bob@example.com"]);
    assert_eq!(smtp.pipelined_mail_count(), 4);
}

#[tokio::test]
async fn messages_queued_for_a_failing_primary_go_to_the_secondary_once_its_breaker_opens() {
    // Twenty messages queue for the primary's one connection, each let through by its breaker
    // while it was closed. The primary takes each connection and closes it at once. Once three
    // failures have opened the breaker, the rest must not try it: against a server that hangs
    // rather than closes, each would wait out its connect timeout first.
    let primary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let primary_addr = primary.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = primary.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let secondary = SmtpServer::start().await;
    let breaker = BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_secs(60),
    };
    let providers = Providers::new()
        .with(smtp_provider_pooled(
            ProviderRole::Primary,
            &format!("smtp://{primary_addr}"),
            breaker,
            1,
        ))
        .with(smtp_provider(
            ProviderRole::Secondary,
            &secondary.url(),
            breaker,
        ));
    let go = || true;
    let sends = (0..20).map(|n| {
        let outgoing = Outgoing::Email(Box::new(mail_to(&format!("guest{n}@example.com"))));
        providers.send(Channel::Email, outgoing, &go)
    });
    let dispatched = futures::future::join_all(sends).await;
    for d in &dispatched {
        assert!(
            matches!(d, Dispatched::Sent { provider, .. } if provider == "smtp_secondary"),
            "{d:?}"
        );
    }
    assert_eq!(secondary.count(), 20);
    // The third failure is told to the breaker just after its connection is given back, so
    // the fourth message may get there first.
    let tried = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (3..=4).contains(&tried),
        "the primary took {tried} connections"
    );
}

/// The most messages the server accepted within any one second, once it holds `expected`.
fn busiest_second(smtp: &SmtpServer, expected: usize) -> usize {
    let mut at: Vec<_> = smtp.messages().iter().map(|m| m.accepted_at).collect();
    at.sort();
    assert_eq!(at.len(), expected);
    (0..at.len())
        .map(|i| at[i..].partition_point(|t| *t < at[i] + Duration::from_secs(1)))
        .max()
        .unwrap()
}

#[tokio::test]
async fn after_a_stall_at_the_server_the_rate_limit_still_holds() {
    // 20 messages a second, ten connections, and a server that first takes a second per
    // message (ten a second). Messages queue for a connection meanwhile; a slot of the limit
    // taken before that wait would be spent late, all of them at once, when the stall ends.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.slow_down(Duration::from_secs(1));
    let providers = Providers::new().with(
        smtp_provider(ProviderRole::Primary, &smtp.url(), BreakerConfig::default())
            .with_rate_limit(db.pool.clone(), 20.0),
    );
    let go = || true;
    let sends = futures::future::join_all((0..60).map(|n| {
        let outgoing = Outgoing::Email(Box::new(mail_to(&format!("guest{n}@example.com"))));
        providers.send(Channel::Email, outgoing, &go)
    }));
    let stall_ends = async {
        wait_for(
            "20 messages in the stall",
            Duration::from_secs(20),
            || async { (smtp.count() >= 20).then_some(()) },
        )
        .await;
        smtp.slow_down(Duration::ZERO);
    };
    let (dispatched, ()) = tokio::join!(sends, stall_ends);
    assert!(
        dispatched
            .iter()
            .all(|d| matches!(d, Dispatched::Sent { .. }))
    );
    let busiest_second = busiest_second(&smtp, 60);
    // Slots are 50 ms apart: a runtime held up for D ms lets the slots due meanwhile go together,
    // about D / 50 more in that second. 32 allows 600 ms of that and still catches the 40 that
    // slots taken before the stall gave.
    assert!(
        busiest_second <= 32,
        "{busiest_second} messages in one second against a limit of 20"
    );
}

/// The shared rate limit lives in our database: when it cannot be read, nothing is sent and the
/// answer is `NotReady`, which the batch job waits out without using an attempt, not a provider
/// failure (which used one, and on the last attempt failed the delivery).
#[tokio::test]
async fn a_rate_limit_that_cannot_be_read_is_not_ready_not_a_provider_failure() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    // A pool of its own, closed: every reservation through it fails.
    let closed = sqlx::postgres::PgPoolOptions::new()
        .connect_lazy_with(db.pool.connect_options().as_ref().clone());
    closed.close().await;
    let providers = Providers::new().with(
        smtp_provider(ProviderRole::Primary, &smtp.url(), BreakerConfig::default())
            .with_rate_limit(closed, 20.0),
    );
    let go = || true;
    let outgoing = Outgoing::Email(Box::new(mail_to("guest@example.com")));
    let dispatched = providers.send(Channel::Email, outgoing, &go).await;
    assert!(
        matches!(&dispatched, Dispatched::NotReady { reason } if reason.contains("rate limit")),
        "{dispatched:?}"
    );
    assert_eq!(smtp.count(), 0, "nothing was sent");
}

/// Lets a message go only once `open` turns true, counting those that reached it: each has
/// taken its rate-limit slot by then.
struct HeldShut {
    open: tokio::sync::watch::Receiver<bool>,
    reached: std::sync::atomic::AtomicUsize,
}

impl Proceed for HeldShut {
    fn proceed(&self) -> futures::future::BoxFuture<'_, bool> {
        use futures::FutureExt;
        self.reached
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut open = self.open.clone();
        async move { open.wait_for(|open| *open).await.is_ok() }.boxed()
    }
}

/// Messages held up after their rate-limit slot (as behind an outcome writer that stalled with
/// every unrecorded permit taken) take new slots once let through, rather than all going on
/// slots long past.
#[tokio::test]
async fn messages_held_up_after_their_slot_do_not_go_out_together() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    // A connection for each message, so that all of them wait at the gate, past their slots.
    let providers = Providers::new().with(
        smtp_provider_pooled(
            ProviderRole::Primary,
            &smtp.url(),
            BreakerConfig::default(),
            40,
        )
        .with_rate_limit(db.pool.clone(), 20.0),
    );
    let (open, shut) = tokio::sync::watch::channel(false);
    let gate = HeldShut {
        open: shut,
        reached: Default::default(),
    };
    let sends = futures::future::join_all((0..40).map(|n| {
        let outgoing = Outgoing::Email(Box::new(mail_to(&format!("guest{n}@example.com"))));
        providers.send(Channel::Email, outgoing, &gate)
    }));
    let let_through = async {
        wait_for(
            "every message past its slot",
            Duration::from_secs(20),
            || async {
                (gate.reached.load(std::sync::atomic::Ordering::SeqCst) >= 40).then_some(())
            },
        )
        .await;
        open.send_replace(true);
    };
    let (dispatched, ()) = tokio::join!(sends, let_through);
    assert!(
        dispatched
            .iter()
            .all(|d| matches!(d, Dispatched::Sent { .. }))
    );
    let busiest_second = busiest_second(&smtp, 40);
    // 20 a second, and as in the stall test above, slack for a runtime held up on a loaded
    // machine; slots spent late sent all 40 within a few milliseconds.
    assert!(
        busiest_second <= 32,
        "{busiest_second} messages in one second against a limit of 20"
    );
}

#[tokio::test]
async fn a_server_that_hangs_after_a_refusal_costs_one_connection_not_the_pool() {
    // After a refusal the pool resets the transaction with RSET; lettre sets no read timeout,
    // so without one of ours a hung server would hold the message, and its connection, for good.
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt("gone@example.com", Action::Reply(550), None);
    smtp.hang_on_rset(1);
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        transport.send(&mail_to("gone@example.com")),
    )
    .await
    .expect("the send returned although the server never answered RSET");
    assert!(
        matches!(refused, Err(SendError::Rejected(_))),
        "{refused:?}"
    );
    transport.send(&mail_to("bob@example.com")).await.unwrap();
    assert_eq!(smtp.first_recipients(), ["bob@example.com"]);
}

#[tokio::test]
async fn a_refused_recipient_bounces_only_when_the_refusal_blames_the_address() {
    // Postfix refuses at RCPT for its relay, client and sender checks too: bouncing on those
    // would put a whole guest list on the suppression list for a set-up error.
    let smtp = SmtpServer::start().await;
    // (local part, code, the reply's text, class)
    let cases = [
        ("unknown", 550, "5.1.1 User unknown", "rejected"),
        ("disabled", 550, "5.2.1 Mailbox disabled", "rejected"),
        ("bare550", 550, "No such user here", "rejected"),
        ("relay", 554, "5.7.1 Relay access denied", "unavailable"),
        (
            "sender",
            553,
            "5.1.8 Sender domain not found",
            "unavailable",
        ),
        (
            "unlisted",
            550,
            "5.1.0 <hello@acme.test>: Sender address rejected: User unknown",
            "unavailable",
        ),
        ("other", 550, "5.1.0 Address rejected", "refused"),
        ("full", 552, "5.2.2 Mailbox full", "refused"),
        ("bare554", 554, "Transaction failed", "refused"),
    ];
    let address = |local: &str| format!("{local}@example.com");
    for (local, code, status, _) in cases {
        smtp.on_rcpt(&address(local), Action::ReplyWith(code, status), None);
    }
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    for (local, code, status, expected) in cases {
        let err = transport.send(&mail_to(&address(local))).await.unwrap_err();
        let class = match err {
            SendError::Rejected(_) => "rejected",
            SendError::Unavailable(_) => "unavailable",
            SendError::Refused(_) => "refused",
            _ => "other",
        };
        assert_eq!(class, expected, "{code} {status} to {local}: {err:?}");
    }
    // Every refusal left the one connection usable.
    transport.send(&mail_to("bob@example.com")).await.unwrap();
    assert_eq!(smtp.first_recipients(), ["bob@example.com"]);
}

/// During a primary's outage the secondary takes the messages, so a batch sizes its chunks to
/// the secondary's rate limit (half a second's worth), not to the primary's absence of one: a
/// chunk of 100 at 20 a second would hold a pause off for five seconds.
#[tokio::test]
async fn chunks_follow_the_rate_limit_of_the_provider_in_use() {
    let db = TestDb::new().await.unwrap();
    let down = refusing_address();
    let opens_at_once = BreakerConfig {
        failure_threshold: 1,
        open_for: Duration::from_secs(60),
    };
    let url = format!("smtp://{}", down.addr);
    let providers = Providers::new()
        .with(smtp_provider(ProviderRole::Primary, &url, opens_at_once))
        .with(
            smtp_provider(ProviderRole::Secondary, &url, BREAKER)
                .with_rate_limit(db.pool.clone(), 20.0),
        );
    let mut messages = messages_context(providers);
    messages.chunk_size = 100;
    assert_eq!(messages.chunk_for(Channel::Email), 100);

    let primary = &messages.providers.of(Channel::Email)[0];
    let Permission::Granted(call) = primary.breaker().permit() else {
        panic!("a closed breaker permits a call");
    };
    call.failed();
    assert_eq!(primary.breaker().state(), BreakerState::Open);
    assert_eq!(messages.chunk_for(Channel::Email), 10);
}
