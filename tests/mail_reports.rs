//! Bounces and complaints that arrive by mail after the SMTP server accepted the message
//! (`messages::mail_report`), end to end: mail goes out with `WEDSYNC_BOUNCE_ADDRESS` as its
//! envelope sender, a DSN and a feedback report built from what the guests received are posted
//! to `POST /v1/mail-reports`, and the next send skips both guests.

mod support;

use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::Value;
use std::time::Duration;
use support::messages::{
    ORG, context, guest, new_send, recipients, statuses, store, wait_until_finished,
};
use support::smtp::{Received, SmtpServer};
use support::{start_worker, test_config};
use wedsync_api::{ApiState, Role};
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::{Category, get_send};
use wedsync_kinds::register_all;

const BOUNCES: &str = "bounces@mail.wedsync.test";

#[tokio::test]
async fn reports_mailed_after_acceptance_bounce_or_suppress_the_guest_for_the_next_send() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start().await;
    let mut app = context(&db, &smtp.url());
    app.messages.bounce_address = Some(BOUNCES.parse().unwrap());
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let state = ApiState::new(db.pool.clone(), [], prometheus);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(wedsync_api::serve(listener, state, std::future::pending()));
    let operator = wedsync_api::keys::create_key(&db.pool, "ops", Role::Operator)
        .await
        .unwrap();
    let planner = wedsync_api::keys::create_key(&db.pool, ORG, Role::Planner)
        .await
        .unwrap();

    let first = new_send(Category::Transactional, recipients(3));
    store(&db, &first).await;
    let worker = start_worker(&db, register_all(), app.clone(), test_config(&["messages"]));
    wait_until_finished(&db, &first.id, Duration::from_secs(20)).await;
    let received = smtp.messages();
    assert_eq!(received.len(), 3);
    for message in &received {
        assert_eq!(
            message.from, BOUNCES,
            "the envelope sender is the bounce address"
        );
        assert!(
            message.header("From").unwrap().contains("hello@"),
            "the From header stays the sender's"
        );
    }
    let to = |i: usize| received.iter().find(|m| m.to[0] == guest(i)).unwrap();

    let post = async |key: &str, report: String| {
        reqwest::Client::new()
            .post(format!("{api}/v1/mail-reports"))
            .bearer_auth(key)
            .header("content-type", "message/rfc822")
            .body(report)
            .send()
            .await
            .unwrap()
    };
    // Only an operator may: a planner's key changes nothing.
    let refused = post(&planner, dsn(to(1), "5.1.1")).await;
    assert_eq!(refused.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(statuses(&db, &first.id).await[&guest(1)], "sent");

    // Guest 1's mailbox does not exist; the relay says so later, by mail.
    for _ in 0..2 {
        let answer = post(&operator, dsn(to(1), "5.1.1")).await;
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["verdict"], "hard_bounce");
        assert_eq!(answer["send_id"], first.id.as_str());
        assert_eq!(answer["delivery"]["status"], "bounced");
        assert_eq!(answer["delivery"]["suppressed"], "hard_bounce");
    }
    // Guest 2 marks the message as spam; their provider's feedback loop reports it.
    let answer: Value = post(&operator, complaint(to(2)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&answer["verdict"], &answer["delivery"]["status"]),
        (&Value::from("complaint"), &Value::from("sent"))
    );
    // Guest 0's message was only delayed: nothing changes.
    let answer: Value = post(&operator, dsn(to(0), "4.2.2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["verdict"], "delayed");
    assert_eq!(answer["delivery"]["suppressed"], Value::Null);

    let by_status = statuses(&db, &first.id).await;
    assert_eq!(
        [0, 1, 2].map(|i| by_status[&guest(i)].as_str()),
        ["sent", "bounced", "sent"]
    );
    let counts = get_send(&db.pool, &first.id, None).await.unwrap().unwrap();
    assert_eq!((counts.sent, counts.bounced), (2, 1), "the counters follow");
    let reasons: Vec<(String, String)> =
        sqlx::query_as("SELECT address, reason FROM suppressions WHERE org_id = $1 ORDER BY 1")
            .bind(ORG)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [
            (guest(1), "hard_bounce".to_owned()),
            (guest(2), "complaint".to_owned())
        ],
        "one entry each, whatever was repeated"
    );

    let next = new_send(Category::Transactional, recipients(3));
    store(&db, &next).await;
    let summary = wait_until_finished(&db, &next.id, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!((summary.sent, summary.suppressed), (1, 2));
    let later: Vec<String> = smtp.messages()[3..]
        .iter()
        .map(|m| m.to[0].clone())
        .collect();
    assert_eq!(later, [guest(0)]);
}

/// A DSN as Postfix writes it, returning the original's headers. The final recipient is an
/// address the guest's mail was forwarded to: the report is matched by Message-ID alone.
fn dsn(original: &Received, status: &str) -> String {
    let (action, reply) = match status.as_bytes()[0] {
        b'4' => ("delayed", "452"),
        _ => ("failed", "550"),
    };
    format!(
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n\
         To: {BOUNCES}\r\nSubject: Undelivered Mail Returned to Sender\r\n\
         Date: Sun, 6 Dec 2026 18:00:00 +0000\r\nMessage-ID: <dsn.1@mx.example.net>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"B0UND\"\r\n\r\n\
         --B0UND\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
         --B0UND\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; forwarded@elsewhere.example\r\nAction: {action}\r\n\
         Status: {status}\r\nDiagnostic-Code: smtp; {reply} {status} mailbox unavailable\r\n\r\n\
         --B0UND\r\nContent-Type: text/rfc822-headers\r\n\r\n{}\r\n--B0UND--\r\n",
        headers(original)
    )
}

/// A feedback-loop report (ARF) of type `abuse` returning the whole original message.
fn complaint(original: &Received) -> String {
    format!(
        "From: fbl@feedback.mail.example\r\nTo: fbl@wedsync.test\r\n\
         Subject: Email Feedback Report\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=feedback-report; boundary=\"ARF\"\r\n\r\n\
         --ARF\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n\
         --ARF\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: abuse\r\nUser-Agent: SomeFBL/1.0\r\nVersion: 1\r\n\r\n\
         --ARF\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--ARF--\r\n",
        original.data
    )
}

fn headers(message: &Received) -> &str {
    message.data.split("\r\n\r\n").next().unwrap()
}
