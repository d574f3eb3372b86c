//! Bulk email end to end (SPEC §5.1) against a real SMTP server on loopback: suppressed guests
//! get nothing, everyone else exactly one message with their own variables, bounces suppress,
//! temporary failures are retried, and re-running the fan-out creates nothing twice.

mod support;

use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use support::messages::{
    ORG, context, guest, guest_index, new_send, recipients, run_fanout, send_with_worker, statuses,
    store, wait_until_finished,
};
use support::smtp::{Action, SmtpServer};
use support::start_worker;
use support::test_config;
use wedsync_api::ApiState;
use wedsync_db::testing::TestDb;
use wedsync_kinds::erasure::{ErasureRequest, erase};
use wedsync_kinds::messages::providers::{
    BreakerConfig, EmailTransport, Provider, ProviderRole, Providers,
};
use wedsync_kinds::messages::unsubscribe::UnsubscribeClaim;
use wedsync_kinds::messages::validate::ValidRecipient;
use wedsync_kinds::messages::{Category, DeliverBatch, batch_ranges, get_send};
use wedsync_kinds::suppression::{Address, Channel, Reason, SuppressionList};
use wedsync_kinds::{AppContext, register_all};
use wedsync_queue::Outcome;

#[tokio::test]
async fn of_a_thousand_guests_the_fifty_suppressed_get_nothing_and_the_rest_exactly_one_message() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let list = SuppressionList::new(db.pool.clone());
    // Every 20th guest, entered with odd case and spacing; half in the organisation's list,
    // half in the global one.
    let suppressed: Vec<usize> = (0..1000).step_by(20).collect();
    for (n, i) in suppressed.iter().enumerate() {
        let raw = format!("  GUEST{i}@Example.COM \t");
        let scope = (n % 2 == 0).then_some(ORG);
        let address = Address::parse(Channel::Email, &raw).unwrap();
        list.add(scope, &address, Reason::Unsubscribed)
            .await
            .unwrap();
    }
    let send = new_send(Category::Marketing, recipients(1000));
    let started = std::time::Instant::now();
    store(&db, &send).await;
    let worker = start_worker(
        &db,
        register_all(),
        support::messages::context(&db, &smtp.url()),
        test_config(&["messages"]),
    );

    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(60)).await;
    // A figure for docs/messages.md (`--nocapture` shows it), not an assertion.
    eprintln!(
        "1,000 recipients fanned out and delivered in {:?}",
        started.elapsed()
    );
    worker.stop().await;

    assert_eq!(
        (
            summary.total,
            summary.sent,
            summary.suppressed,
            summary.failed,
            summary.bounced
        ),
        (1000, 950, 50, 0, 0)
    );
    assert!(summary.fanned_out_at.is_some());
    let messages = smtp.messages();
    assert_eq!(messages.len(), 950);
    let mut seen = HashMap::new();
    for message in &messages {
        assert_eq!(message.to.len(), 1);
        *seen.entry(message.to[0].clone()).or_insert(0) += 1;
        let i = guest_index(&message.to[0]);
        assert!(
            message
                .data
                .contains(&format!("Dear Guest {i}, you are at table {}.", i % 40)),
            "wrong variables for guest {i}"
        );
        assert_eq!(
            message.header("Subject").unwrap(),
            format!("Save the date, Guest {i}")
        );
    }
    assert_eq!(seen.len(), 950, "someone got two messages");
    for i in &suppressed {
        assert!(
            !seen.contains_key(&guest(*i)),
            "suppressed guest {i} got mail"
        );
        assert_eq!(smtp.rcpt_count(&guest(*i)), 0);
    }
    // The counters agree with the rows.
    let by_status = statuses(&db, &send.id).await;
    let suppressed_rows = by_status.values().filter(|s| *s == "suppressed").count();
    assert_eq!(suppressed_rows, 50);
}

#[tokio::test]
async fn marketing_mail_carries_unsubscribe_headers_a_stable_message_id_and_the_footer() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(
        Category::Marketing,
        vec![ValidRecipient {
            address: "ann@example.com".to_owned(),
            variables: json!({"name": "<b>Ann</b>\r\nBcc: evil@example.com", "table": 1}),
        }],
    );
    store(&db, &send).await;
    let app = support::messages::context(&db, &smtp.url());
    let key = app.messages.signing_key.clone();
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    wait_until_finished(&db, &send.id, Duration::from_secs(20)).await;
    worker.stop().await;

    let messages = smtp.messages();
    assert_eq!(messages.len(), 1);
    let message = &messages[0];
    assert_eq!(
        message.to,
        ["ann@example.com"],
        "the CRLF added a recipient"
    );
    assert!(message.header("Bcc").is_none());
    // No header line starts with it (the text body may show the variable as written).
    let head = message.data.split("\r\n\r\n").next().unwrap();
    assert!(!head.contains("\r\nBcc:"), "{head}");
    let subject = message.header("Subject").unwrap();
    assert!(
        subject.starts_with("Save the date, <b>Ann</b>"),
        "{subject}"
    );
    // The HTML part escapes the variable; the text part shows it as written.
    assert!(
        message.data.contains("<p>Dear &lt;b&gt;Ann&lt;&#x2f;b&gt;"),
        "{}",
        message.data
    );
    assert!(!message.data.contains("<p>Dear <b>Ann"));
    let (id, hash): (i64, String) =
        sqlx::query_as("SELECT id, address_hash FROM deliveries WHERE send_id = $1::uuid")
            .bind(&send.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        message.header("Message-ID").unwrap(),
        format!("<delivery-{id}.{}@ann-and-bob.example>", send.id)
    );
    let list_unsubscribe = message.header("List-Unsubscribe").unwrap();
    let token = list_unsubscribe
        .strip_prefix("<https://jobs.wedsync.test/unsubscribe?token=")
        .and_then(|rest| rest.split_once('>'))
        .map(|(token, _)| token.to_owned())
        .unwrap_or_else(|| panic!("{list_unsubscribe}"));
    assert_eq!(
        list_unsubscribe,
        format!(
            "<https://jobs.wedsync.test/unsubscribe?token={token}>, \
             <mailto:unsubscribe@jobs.wedsync.test?subject=unsubscribe%20{token}>"
        )
    );
    // The token is signed with the workers' key and names this very delivery.
    let claim = key
        .verify(&token)
        .expect("a token signed with the workers' key");
    assert_eq!(
        claim,
        UnsubscribeClaim {
            delivery_id: id,
            org_id: ORG.to_owned(),
            channel: Channel::Email,
            address_hash: hash,
        }
    );
    assert_eq!(
        message.header("List-Unsubscribe-Post").unwrap(),
        "List-Unsubscribe=One-Click"
    );
    assert!(message.data.contains("1 Chapel Lane, York YO1 7HH"));
    // What was sent is kept with the delivery (for the `message_bodies` retention policy).
    let (subject_kept, text, html): (String, String, String) = sqlx::query_as(
        "SELECT subject, body_text, body_html FROM delivery_bodies WHERE delivery_id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .expect("the sent message's bodies are stored");
    assert!(
        subject_kept.starts_with("Save the date, <b>Ann</b>") && !subject_kept.contains('\n'),
        "{subject_kept}"
    );
    assert!(text.starts_with("Dear <b>Ann</b>"), "{text}");
    assert!(
        html.contains("<p>Dear &lt;b&gt;Ann&lt;&#x2f;b&gt;"),
        "{html}"
    );
    assert!(text.contains("1 Chapel Lane, York YO1 7HH"), "{text}");
}

#[tokio::test]
async fn transactional_mail_has_no_unsubscribe_headers() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(Category::Transactional, recipients(1));
    store(&db, &send).await;
    let worker = start_worker(
        &db,
        register_all(),
        support::messages::context(&db, &smtp.url()),
        test_config(&["messages"]),
    );
    wait_until_finished(&db, &send.id, Duration::from_secs(20)).await;
    worker.stop().await;
    let message = &smtp.messages()[0];
    assert!(message.header("List-Unsubscribe").is_none());
    assert!(message.header("List-Unsubscribe-Post").is_none());
    assert!(!message.data.contains("Unsubscribe"));
}

#[tokio::test]
async fn a_permanent_rejection_bounces_the_delivery_and_suppresses_the_address() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt(&guest(1), Action::Reply(550), None);
    let send = new_send(Category::Transactional, recipients(3));
    store(&db, &send).await;
    let worker = start_worker(
        &db,
        register_all(),
        support::messages::context(&db, &smtp.url()),
        test_config(&["messages"]),
    );
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(20)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.bounced), (2, 1));
    let by_status = statuses(&db, &send.id).await;
    assert_eq!(by_status[&guest(1)], "bounced");
    let entry = SuppressionList::new(db.pool.clone())
        .find(
            Some(ORG),
            &Address::parse(Channel::Email, &guest(1)).unwrap(),
        )
        .await
        .unwrap()
        .expect("a hard-bounce entry");
    assert_eq!(entry.reason, "hard_bounce");
    let error: String = sqlx::query_scalar(
        "SELECT last_error FROM deliveries WHERE send_id = $1::uuid AND status = 'bounced'",
    )
    .bind(&send.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(error.contains("550"), "{error}");
    assert_eq!(smtp.messages().len(), 2);
}

/// A transactional send to guests 0, 1 and 2, sent through `smtp` by a worker until it has
/// finished (within `timeout`).
async fn three_guests_sent(
    db: &TestDb,
    smtp: &SmtpServer,
    timeout: Duration,
) -> (
    wedsync_kinds::messages::NewSend,
    wedsync_kinds::messages::SendSummary,
) {
    let send = new_send(Category::Transactional, recipients(3));
    store(db, &send).await;
    let app = support::messages::context(db, &smtp.url());
    let summary = send_with_worker(db, app, &send.id, timeout).await;
    (send, summary)
}

/// Suppression entries of the test organisation and the global list.
async fn suppression_count(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM suppressions")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn after_a_refused_recipient_the_same_connection_carries_the_next_guests_message() {
    // One connection, kept after the refusal (its transaction reset) rather than dropped, so the
    // next messages follow the refusal on it; the server, as real ones do, refuses a MAIL
    // inside an unfinished transaction (503), which would bounce the next guest.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt(&guest(1), Action::Reply(550), None);
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    let provider = Provider::email(ProviderRole::Primary, transport, BreakerConfig::default());
    let send = new_send(Category::Transactional, recipients(4));
    store(&db, &send).await;
    let summary = send_with_worker(
        &db,
        support::messages::context_with(&db, Providers::new().with(provider)),
        &send.id,
        Duration::from_secs(20),
    )
    .await;

    assert_eq!((summary.sent, summary.bounced, summary.failed), (3, 1, 0));
    assert_eq!(statuses(&db, &send.id).await[&guest(1)], "bounced");
    assert_eq!(smtp.messages().len(), 3);
    assert_eq!(suppression_count(&db).await, 1);
}

#[tokio::test]
async fn relaying_denied_at_rcpt_delays_the_send_and_bounces_nobody() {
    // `554 5.7.1 Relay access denied` answers every recipient of a relay that does not know
    // us yet: about us, like a refused sender, not about the guests.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    for n in 0..3 {
        smtp.on_rcpt(
            &guest(n),
            Action::ReplyWith(554, "5.7.1 Relay access denied"),
            Some(2),
        );
    }
    let (_, summary) = three_guests_sent(&db, &smtp, Duration::from_secs(30)).await;

    assert_eq!((summary.sent, summary.bounced, summary.failed), (3, 0, 0));
    for n in 0..3 {
        assert_eq!(smtp.rcpt_count(&guest(n)), 3, "refused twice, then taken");
    }
    assert_eq!(smtp.messages().len(), 3);
    assert_eq!(suppression_count(&db).await, 0);
}

#[tokio::test]
async fn a_full_mailbox_fails_the_delivery_and_suppresses_nobody() {
    // 552 5.2.2 at RCPT: the address is good, the guest wants their mail once they clear space.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt(
        &guest(1),
        Action::ReplyWith(552, "5.2.2 Mailbox full"),
        None,
    );
    let (send, summary) = three_guests_sent(&db, &smtp, Duration::from_secs(20)).await;

    assert_eq!((summary.sent, summary.bounced, summary.failed), (2, 0, 1));
    assert_eq!(statuses(&db, &send.id).await[&guest(1)], "failed");
    assert_eq!(suppression_count(&db).await, 0);
}

#[tokio::test]
async fn a_refused_sender_delays_the_send_and_bounces_nobody() {
    // 550 to MAIL FROM is about our sender (a set-up error), not the guests.
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(Category::Transactional, recipients(3));
    smtp.on_mail(&send.sender.email, 550, Some(3));
    store(&db, &send).await;
    let summary = send_with_worker(
        &db,
        support::messages::context(&db, &smtp.url()),
        &send.id,
        Duration::from_secs(30),
    )
    .await;

    assert_eq!((summary.sent, summary.bounced, summary.failed), (3, 0, 0));
    assert!(
        smtp.mail_count() >= 6,
        "{} MAIL commands",
        smtp.mail_count()
    );
    assert_eq!(smtp.messages().len(), 3);
    assert_eq!(suppression_count(&db).await, 0);
}

#[tokio::test]
async fn a_message_refused_after_its_content_fails_without_suppressing_the_guest() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt(&guest(1), Action::RefuseContent(554), None);
    let (send, summary) = three_guests_sent(&db, &smtp, Duration::from_secs(20)).await;

    assert_eq!((summary.sent, summary.bounced, summary.failed), (2, 0, 1));
    assert_eq!(statuses(&db, &send.id).await[&guest(1)], "failed");
    assert_eq!(suppression_count(&db).await, 0);
    let error: String = sqlx::query_scalar(
        "SELECT last_error FROM deliveries WHERE send_id = $1::uuid AND status = 'failed'",
    )
    .bind(&send.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(error.contains("554"), "{error}");
    // Refused for good: tried once, not retried.
    assert_eq!(smtp.rcpt_count(&guest(1)), 1);
}

#[tokio::test]
async fn temporary_failures_are_retried_and_each_guest_gets_one_message() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    smtp.on_rcpt(&guest(0), Action::Reply(421), Some(1));
    smtp.on_rcpt(&guest(1), Action::Reply(450), Some(2));
    smtp.on_rcpt(&guest(2), Action::Drop, Some(1));
    let send = new_send(Category::Transactional, recipients(4));
    store(&db, &send).await;
    let summary = send_with_worker(
        &db,
        support::messages::context(&db, &smtp.url()),
        &send.id,
        Duration::from_secs(30),
    )
    .await;

    assert_eq!((summary.sent, summary.failed, summary.bounced), (4, 0, 0));
    let mut to: Vec<String> = smtp.messages().iter().map(|m| m.to[0].clone()).collect();
    to.sort();
    assert_eq!(to, [guest(0), guest(1), guest(2), guest(3)]);
    assert_eq!(smtp.rcpt_count(&guest(0)), 2);
    assert_eq!(smtp.rcpt_count(&guest(1)), 3);
    let attempts: Vec<(String, i32)> = sqlx::query_as(
        "SELECT address, attempts FROM deliveries WHERE send_id = $1::uuid ORDER BY ordinal",
    )
    .bind(&send.id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts[0].1, 2);
    assert_eq!(attempts[1].1, 3);
    assert_eq!(attempts[2].1, 2);
    assert_eq!(attempts[3].1, 1);
}

#[tokio::test]
async fn rerunning_the_fanout_creates_nothing_twice() {
    let db = TestDb::new().await.unwrap();
    let send = new_send(Category::Transactional, recipients(120));
    store(&db, &send).await;
    let stored: Value = sqlx::query_scalar("SELECT recipients FROM bulk_sends WHERE id = $1::uuid")
        .bind(&send.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let app = AppContext::new(db.pool.clone());
    let run = || run_fanout(&app, &send.id);
    let first = run().await.unwrap();
    assert_eq!(
        first,
        Outcome::Completed(Some(json!({"deliveries": 120, "batches": 3})))
    );
    // The database computed each address's hash as the suppression list does.
    let hashes: Vec<(String, String)> =
        sqlx::query_as("SELECT address, address_hash FROM deliveries WHERE send_id = $1::uuid")
            .bind(&send.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for (address, hash) in hashes {
        assert_eq!(
            hash,
            Address::parse(Channel::Email, &address).unwrap().hash()
        );
    }
    // A second run after a finished fan-out finds nothing to do.
    run().await.unwrap();
    // Even with the recipients put back and the fan-out's progress reset (as if the first run's
    // clean-up had been lost), the deliveries and batch jobs are not duplicated.
    sqlx::query("UPDATE bulk_sends SET recipients = $2, fanout_next = 0 WHERE id = $1::uuid")
        .bind(&send.id)
        .bind(&stored)
        .execute(&db.pool)
        .await
        .unwrap();
    let third = run().await.unwrap();
    assert_eq!(
        third,
        Outcome::Completed(Some(json!({"deliveries": 0, "batches": 3})))
    );
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE send_id = $1::uuid")
            .bind(&send.id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'deliver_batch'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((deliveries, batches), (120, 3));
    let summary = get_send(&db.pool, &send.id, None).await.unwrap().unwrap();
    assert_eq!((summary.total, summary.queued), (120, 120));
}

fn erase_guest(i: usize) -> ErasureRequest {
    ErasureRequest {
        org_id: Some(ORG.to_owned()),
        email: Some(Address::parse(Channel::Email, &guest(i)).unwrap()),
        phone: None,
        requested_by: ORG.to_owned(),
    }
}

/// A cancel before the fan-out counts the recipients left `cancelled`, but not a guest erased
/// meanwhile: the fan-out would have skipped them, and an erased guest's count goes with them.
#[tokio::test]
async fn a_cancel_before_the_fanout_does_not_count_an_erased_guest() {
    let db = TestDb::new().await.unwrap();
    let send = new_send(Category::Transactional, recipients(3));
    store(&db, &send).await;
    erase(&db.pool, &erase_guest(1)).await.unwrap();
    let queue = wedsync_queue::Queue::new(db.pool.clone());
    let summary = wedsync_kinds::messages::control::cancel(&queue, &send.id, Some(ORG))
        .await
        .unwrap();
    // No delivery was made (`total` counts deliveries); two recipients will never get one.
    assert_eq!((summary.total, summary.cancelled), (0, 2));
}

#[tokio::test]
async fn an_erased_guest_gets_no_delivery_and_their_delivery_rows_go() {
    let db = TestDb::new().await.unwrap();
    let send = new_send(Category::Transactional, recipients(3));
    store(&db, &send).await;
    // Before the fan-out: only the pending recipients hold the address.
    erase(&db.pool, &erase_guest(1)).await.unwrap();
    let app = AppContext::new(db.pool.clone());
    run_fanout(&app, &send.id).await.unwrap();
    // After it: the delivery row holds it.
    erase(&db.pool, &erase_guest(2)).await.unwrap();
    let left: Vec<String> =
        sqlx::query_scalar("SELECT address FROM deliveries WHERE send_id = $1::uuid")
            .bind(&send.id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, [guest(0)]);
    // The counters lose the erased delivery too, so the send can finish: a `queued` left in
    // them would keep it `active` for ever.
    let counts = get_send(&db.pool, &send.id, None).await.unwrap().unwrap();
    assert_eq!((counts.total, counts.queued), (1, 1));
    let smtp = SmtpServer::start().await;
    let summary = send_with_worker(
        &db,
        support::messages::context(&db, &smtp.url()),
        &send.id,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!((summary.total, summary.sent, summary.queued), (1, 1, 0));
    assert_eq!(smtp.messages().len(), 1);
    // Deleting a send takes its deliveries and its counters with it (migration 0019: by
    // trigger, not by foreign key).
    sqlx::query("DELETE FROM bulk_sends WHERE id = $1::uuid")
        .bind(&send.id)
        .execute(&db.pool)
        .await
        .unwrap();
    let (deliveries, counters): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM deliveries WHERE send_id = $1::uuid),
                (SELECT count(*) FROM bulk_send_counts WHERE send_id = $1::uuid)",
    )
    .bind(&send.id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((deliveries, counters), (0, 0));
}

#[tokio::test]
async fn a_guest_who_unsubscribes_with_a_received_link_gets_nothing_from_a_send_already_created() {
    guest_0_unsubscribes_between_two_sends(async |api, received| {
        let header = received.header("List-Unsubscribe").unwrap();
        let link = header
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(link, _)| link.replace("https://jobs.wedsync.test", api))
            .unwrap();
        support::messages::one_click_unsubscribe(&link).await;
    })
    .await;
}

#[tokio::test]
async fn a_guest_who_unsubscribes_by_mail_gets_nothing_from_a_send_already_created() {
    guest_0_unsubscribes_between_two_sends(async |api, received| {
        // What a mail client does with the header's mailto: a message to its address with its
        // subject, which the client folds (the token is long) and the inbound MTA passes on.
        let header = received.header("List-Unsubscribe").unwrap();
        let mailto = header
            .split("<mailto:")
            .nth(1)
            .and_then(|rest| rest.split_once('>'))
            .map(|(mailto, _)| mailto)
            .unwrap();
        let (to, subject) = mailto.split_once("?subject=").unwrap();
        assert_eq!(to, "unsubscribe@jobs.wedsync.test");
        let (word, token) = subject.split_once("%20").unwrap();
        let mail = |subject: &str| {
            format!(
                "From: {guest} <{guest}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
                 Date: Sun, 6 Dec 2026 16:00:00 +0000\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\nSent from my phone\r\n",
                guest = received.to[0],
            )
        };
        let post = async |body: String| {
            reqwest::Client::new()
                .post(format!("{api}/unsubscribe/mail"))
                .header("content-type", "message/rfc822")
                .body(body)
                .send()
                .await
                .unwrap()
        };
        // A forged token is refused and suppresses nobody.
        let forged = format!("{}{}", &token[..token.len() - 4], "AAAA");
        let refused = post(mail(&format!("{word}\r\n {forged}"))).await;
        assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["code"], "INVALID_TOKEN");

        let accepted = post(mail(&format!("{word}\r\n {token}"))).await;
        assert_eq!(accepted.status(), reqwest::StatusCode::NO_CONTENT);
        let again = post(mail(&format!("Re: {word} {token}"))).await;
        assert_eq!(again.status(), reqwest::StatusCode::NO_CONTENT);
    })
    .await;
}

/// A marketing send to two guests; then a second one to three, created before guest 0 does
/// `unsubscribe` (given the API's base URL and the message guest 0 received from the first
/// send) and sent after: guest 0 gets nothing from it, the others get theirs.
async fn guest_0_unsubscribes_between_two_sends(
    unsubscribe: impl AsyncFnOnce(&str, &support::smtp::Received),
) {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let app = support::messages::context(&db, &smtp.url());
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let state = ApiState::new(db.pool.clone(), [], prometheus)
        .with_signing_key(app.messages.signing_key.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(wedsync_api::serve(listener, state, std::future::pending()));

    let earlier = new_send(Category::Marketing, recipients(2));
    store(&db, &earlier).await;
    let worker = start_worker(&db, register_all(), app.clone(), test_config(&["messages"]));
    wait_until_finished(&db, &earlier.id, Duration::from_secs(20)).await;
    worker.stop().await;
    let received = smtp.messages();
    let to_guest_0 = received.iter().find(|m| m.to[0] == guest(0)).unwrap();

    // The next send is created before the guest unsubscribes; its deliveries have not run.
    let later = new_send(Category::Marketing, recipients(3));
    store(&db, &later).await;
    unsubscribe(&api, to_guest_0).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &later.id, Duration::from_secs(20)).await;
    worker.stop().await;

    assert_eq!((summary.sent, summary.suppressed), (2, 1));
    let later_to: Vec<String> = smtp.messages()[received.len()..]
        .iter()
        .map(|m| m.to[0].clone())
        .collect();
    assert!(
        !later_to.contains(&guest(0)),
        "the guest who unsubscribed got mail"
    );
    assert_eq!(later_to.len(), 2);
    assert_eq!(statuses(&db, &later.id).await[&guest(0)], "suppressed");
    let reasons: Vec<String> = sqlx::query_scalar("SELECT reason FROM suppressions")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        reasons,
        ["unsubscribed"],
        "one entry, whatever was repeated"
    );
}

#[tokio::test]
async fn batch_jobs_enqueued_under_their_old_kind_are_sent_after_the_upgrade() {
    // A database as it stood before 0012, holding a send fanned out into batch jobs of the old
    // kind (what a worker of that version enqueued).
    let db = TestDb::migrated_to(11).await.unwrap();
    let smtp = SmtpServer::start().await;
    let send = new_send(Category::Transactional, recipients(120));
    store(&db, &send).await;
    let app = context(&db, &smtp.url());
    fan_out_as_before_0017(&db, &send.id).await;
    let renamed = sqlx::query(
        "UPDATE jobs SET kind = 'deliver_email_batch',
                unique_key = replace(unique_key, 'deliver_batch:', 'deliver_email_batch:')
          WHERE kind = 'deliver_batch'",
    )
    .execute(&db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert!(renamed >= 2, "{renamed} batch jobs");

    wedsync_db::MIGRATOR.run(&db.pool).await.unwrap();
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT unique_key FROM jobs WHERE kind = 'deliver_batch' ORDER BY unique_key",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(keys.len() as u64, renamed);
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("deliver_batch:{}:", send.id))),
        "{keys:?}"
    );
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    worker.stop().await;
    assert_eq!((summary.sent, summary.failed), (120, 0));
    assert_eq!(smtp.count(), 120);
}

/// The fan-out as releases before migration 0017 ran it (all recipients in one statement, no
/// `fanout_next`), with its batch jobs, in one transaction.
async fn fan_out_as_before_0017(db: &TestDb, send_id: &str) {
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
         SELECT b.id, (e.n - 1)::int, e.r->>'address',
                encode(sha256(convert_to(b.channel || ':' || (e.r->>'address'), 'UTF8')), 'hex'),
                coalesce(e.r->'variables', '{}'::jsonb)
           FROM bulk_sends b, jsonb_array_elements(b.recipients) WITH ORDINALITY AS e(r, n)
          WHERE b.id = $1::uuid ORDER BY e.n",
    )
    .bind(send_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    let (count, batch_size): (i32, i32) =
        sqlx::query_as("SELECT recipient_count, batch_size FROM bulk_sends WHERE id = $1::uuid")
            .bind(send_id)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let jobs: Vec<_> = batch_ranges(count, batch_size)
        .map(|(first, last)| DeliverBatch::new_job(send_id, ORG, first, last))
        .collect();
    wedsync_queue::enqueue_many(&mut tx, &jobs).await.unwrap();
    sqlx::query(
        "UPDATE bulk_sends SET recipients = NULL, fanned_out_at = now() WHERE id = $1::uuid",
    )
    .bind(send_id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// `WRITE_OUTCOMES` as the release before migration 0015 ran it: its workers may still be
/// running while the first worker of this release migrates (a rolling upgrade).
const PREVIOUS_WRITE_OUTCOMES: &str = "
UPDATE deliveries d
   SET status = t.status,
       attempts = d.attempts + t.tried::int,
       last_error = CASE WHEN t.status = 'sent' THEN NULL ELSE coalesce(t.error, d.last_error) END,
       message_id = coalesce(t.message_id, d.message_id),
       provider = coalesce(t.provider, d.provider),
       rendered_subject = coalesce(t.subject, d.rendered_subject),
       rendered_text = coalesce(t.body_text, d.rendered_text),
       rendered_html = coalesce(t.body_html, d.rendered_html),
       sent_at = CASE WHEN t.status = 'sent' THEN now() ELSE d.sent_at END,
       updated_at = now()
  FROM unnest($1::bigint[], $2::text[], $3::bool[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::text[], $9::text[])
       AS t(id, status, tried, error, message_id, provider, subject, body_text, body_html)
 WHERE d.id = t.id AND d.status = 'sending'";

#[tokio::test]
async fn bodies_on_the_delivery_rows_from_before_and_during_the_upgrade_end_in_their_table() {
    // A database as it stood before 0015, with a body kept on its delivery's row and a delivery
    // in flight at a worker of that release.
    let db = TestDb::migrated_to(14).await.unwrap();
    support::messages::insert_bare_send(&db, "acme", 2).await;
    sqlx::query(
        "INSERT INTO deliveries (send_id, ordinal, address, address_hash, status, sent_at,
                                 rendered_subject, rendered_text, rendered_html)
         VALUES ($1::uuid, 0, 'a@example.com', 'ha', 'sent', now() - interval '3 days',
                 'Hello', 'Dear A', '<p>Dear A</p>'),
                ($1::uuid, 1, 'b@example.com', 'hb', 'sending', NULL, NULL, NULL, NULL)",
    )
    .bind(support::messages::BARE_SEND_ID)
    .execute(&db.pool)
    .await
    .unwrap();

    // The expand (0015, up to the release before the contract): a worker of the previous
    // release still records what it sent, on the row.
    wedsync_db::MIGRATOR.run_to(20, &db.pool).await.unwrap();
    let in_flight: i64 = sqlx::query_scalar("SELECT id FROM deliveries WHERE ordinal = 1")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let recorded = sqlx::query(PREVIOUS_WRITE_OUTCOMES)
        .bind(vec![in_flight])
        .bind(vec!["sent"])
        .bind(vec![true])
        .bind(vec![None::<String>])
        .bind(vec![Some("<b@ann.example>")])
        .bind(vec![Some("smtp")])
        .bind(vec![Some("Hello")])
        .bind(vec![Some("Dear B")])
        .bind(vec![Some("<p>Dear B</p>")])
        .execute(&db.pool)
        .await
        .expect("the previous release's outcome write still works")
        .rows_affected();
    assert_eq!(recorded, 1);

    // The contract (0021): both bodies move to `delivery_bodies`, dated by their delivery's
    // `sent_at` (the retention policy's clock), and the old columns go.
    wedsync_db::MIGRATOR.run(&db.pool).await.unwrap();
    let moved: Vec<(i32, String, String, String, bool)> = sqlx::query_as(
        "SELECT d.ordinal, b.subject, b.body_text, b.body_html, b.sent_at = d.sent_at
           FROM deliveries d JOIN delivery_bodies b ON b.delivery_id = d.id
          ORDER BY d.ordinal",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let body = |ordinal: i32, name: &str| {
        (
            ordinal,
            "Hello".to_owned(),
            format!("Dear {name}"),
            format!("<p>Dear {name}</p>"),
            true,
        )
    };
    assert_eq!(moved, [body(0, "A"), body(1, "B")]);
    let old_columns: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns
          WHERE table_name = 'deliveries' AND column_name LIKE 'rendered%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(old_columns, 0);

    // Whatever deletes a delivery takes its body along (here the send's cascade).
    sqlx::query("DELETE FROM bulk_sends")
        .execute(&db.pool)
        .await
        .unwrap();
    let bodies: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_bodies")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(bodies, 0);
}
