//! SMTP over TLS (issue #3): `smtps://` (implicit TLS) and `smtp://…?tls=required` (STARTTLS)
//! to the in-test server, whose certificate only `WEDSYNC_SMTP_CA_FILE` vouches for; a
//! certificate nobody vouches for, or a server without STARTTLS when it is required, stops the
//! send before any of the message is said. A login (AUTH PLAIN) follows the server's offer,
//! never precedes a second EHLO, and keeps every character of the password. The last look
//! before a message (the worker's lease) comes after its connection is set up.

mod support;

use std::time::Duration;
use support::WorkerProcess;
use support::messages::{PUBLIC_URL, mail_to, new_send, recipients, store, wait_until_finished};
use support::smtp::{Encryption, SmtpServer, ca_file};
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::Category;
use wedsync_kinds::messages::providers::{EmailTransport, SendError};

fn trusting_the_test_ca(url: &str) -> EmailTransport {
    let ca = std::fs::read(ca_file()).unwrap();
    EmailTransport::smtp("WEDSYNC_SMTP_URL", url, 1, Some(&ca)).unwrap()
}

/// Two messages through a pool of one connection, so the second goes over the kept session.
async fn two_messages_arrive_encrypted(tls: Encryption) {
    let smtp = SmtpServer::start_with(tls).await;
    let transport = trusting_the_test_ca(&smtp.url());
    for to in ["first@example.com", "second@example.com"] {
        transport.send(&mail_to(to)).await.unwrap();
    }
    let received = smtp.messages();
    let to: Vec<&str> = received.iter().map(|m| m.to[0].as_str()).collect();
    assert_eq!(to, ["first@example.com", "second@example.com"]);
    assert!(
        received.iter().all(|m| m.encrypted),
        "{tls:?}: sent in clear"
    );
}

#[tokio::test]
async fn with_starttls_mail_goes_encrypted() {
    two_messages_arrive_encrypted(Encryption::StartTls).await;
}

#[tokio::test]
async fn over_smtps_mail_goes_encrypted() {
    two_messages_arrive_encrypted(Encryption::Implicit).await;
}

#[tokio::test]
async fn a_certificate_nobody_vouches_for_stops_the_send_before_any_command() {
    for tls in [Encryption::StartTls, Encryption::Implicit] {
        let smtp = SmtpServer::start_with(tls).await;
        let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
        let err = transport
            .send(&mail_to("guest@example.com"))
            .await
            .unwrap_err();
        // The provider's trouble (the breaker counts it), not the recipient's: nobody bounces.
        assert!(
            matches!(&err, SendError::Unavailable(_)),
            "{tls:?}: {err:?}"
        );
        assert!(err.to_string().contains("TLS"), "{tls:?}: {err}");
        assert_eq!(smtp.rcpt_count("guest@example.com"), 0, "{tls:?}");
        assert_eq!(smtp.count(), 0, "{tls:?}");
    }
}

#[tokio::test]
async fn when_tls_is_required_a_server_without_starttls_gets_nothing_in_clear() {
    let smtp = SmtpServer::start().await;
    let url = format!("smtp://{}?tls=required", smtp.addr);
    let err = trusting_the_test_ca(&url)
        .send(&mail_to("guest@example.com"))
        .await
        .unwrap_err();
    assert!(matches!(&err, SendError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert_eq!(smtp.rcpt_count("guest@example.com"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_configured_for_smtps_and_the_ca_file_delivers_a_send_encrypted() {
    let db = TestDb::new().await.unwrap();
    let smtp = SmtpServer::start_with(Encryption::Implicit).await;
    let url = smtp.url();
    let ca = ca_file();
    let _worker = WorkerProcess::spawn(
        &db,
        "messages",
        &[
            ("WEDSYNC_SMTP_URL", url.as_str()),
            ("WEDSYNC_SMTP_CA_FILE", ca.to_str().unwrap()),
            ("WEDSYNC_PUBLIC_URL", PUBLIC_URL),
        ],
    );
    let send = new_send(Category::Marketing, recipients(30));
    store(&db, &send).await;
    let summary = wait_until_finished(&db, &send.id, Duration::from_secs(30)).await;
    assert_eq!(summary.sent, 30);
    let received = smtp.messages();
    assert_eq!(received.len(), 30);
    assert!(received.iter().all(|m| m.encrypted));
}

#[tokio::test]
async fn a_login_comes_after_the_servers_offer_is_read_and_keeps_every_character_of_its_password() {
    for tls in [Encryption::None, Encryption::StartTls, Encryption::Implicit] {
        let smtp = SmtpServer::start_with(tls).await;
        smtp.require_login("planner@ann", "p&ss+w/rd");
        let url = smtp
            .url()
            .replacen("://", "://planner%40ann:p&ss+w%2Frd@", 1);
        let transport = trusting_the_test_ca(&url);
        for to in ["first@example.com", "second@example.com"] {
            transport.send(&mail_to(to)).await.unwrap();
        }
        assert_eq!(smtp.count(), 2, "{tls:?}");
        // Some servers refuse an EHLO after AUTH (503) or forget the login (530 to MAIL).
        assert_eq!(smtp.ehlos_after_login(), 0, "{tls:?}");
        // The offer was read: the transactions still went whole.
        assert_eq!(smtp.whole_transaction_count(), 2, "{tls:?}");

        let wrong = trusting_the_test_ca(&smtp.url().replacen("://", "://planner%40ann:p@", 1));
        let err = wrong.send(&mail_to("third@example.com")).await.unwrap_err();
        assert!(
            matches!(&err, SendError::Unavailable(_)),
            "{tls:?}: {err:?}"
        );
        assert_eq!(smtp.count(), 2, "{tls:?}");
    }
}

#[tokio::test]
async fn the_last_look_before_a_message_comes_after_its_connection_is_set_up() {
    let smtp = SmtpServer::start().await;
    smtp.greet_after(Duration::from_millis(600));
    let transport = EmailTransport::smtp("WEDSYNC_SMTP_URL", &smtp.url(), 1, None).unwrap();
    let asked = std::time::Instant::now();
    // As a worker's lease of 300 ms that no heartbeat renews: lapsed once the server greets.
    let held = || asked.elapsed() < Duration::from_millis(300);
    let sent = transport
        .send_if(&mail_to("guest@example.com"), &held)
        .await
        .unwrap();
    assert!(!sent);
    assert_eq!(smtp.mail_count(), 0);
    // The connection is kept for the next message, which may go.
    let sent = transport
        .send_if(&mail_to("guest@example.com"), &|| true)
        .await
        .unwrap();
    assert!(sent);
    assert_eq!(smtp.count(), 1);
}
