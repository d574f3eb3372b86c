//! The SMS provider client against a real HTTP provider on loopback (`tests/support/sms.rs`):
//! what arrives, and how each kind of answer — or its absence — is classified. Plus the outbox
//! of the embedded default.

mod support;

use std::time::Duration;
use support::sms::{self, ACCOUNT, Action, SmsServer, TOKEN};
use wedsync_kinds::messages::providers::{SendError, SmsClient, SmsMessage, SmsOutbox};

const GUEST: &str = "+447700900123";

fn message(to: &str) -> SmsMessage {
    SmsMessage {
        to: to.to_owned(),
        from: "WedSync".to_owned(),
        body: "Ann & Bob: save the date, 6 June!".to_owned(),
        idempotency_key: Some("delivery-42".to_owned()),
        status_callback: None,
    }
}

fn client(url: &url::Url) -> SmsClient {
    SmsClient::new(url, Duration::from_secs(5)).expect("a valid provider URL")
}

#[tokio::test]
async fn a_message_arrives_with_its_fields_and_auth_and_its_sid_comes_back() {
    let server = SmsServer::start().await;
    let sid = client(&server.url()).send(&message(GUEST)).await.unwrap();
    let received = server.messages();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.to, GUEST);
    assert_eq!(got.from, "WedSync");
    assert_eq!(got.body, "Ann & Bob: save the date, 6 June!");
    assert_eq!(got.user, ACCOUNT);
    assert_eq!(got.idempotency_key.as_deref(), Some("delivery-42"));
    assert_eq!(sid, Some(got.sid.clone()));
}

#[tokio::test]
async fn an_answer_cut_off_after_the_provider_took_the_text_is_accepted_without_an_id() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::AcceptCutOff, Some(1));
    // Room for the status line on a loaded machine; the cut-off body then runs into it.
    let client = SmsClient::new(&server.url(), Duration::from_secs(2)).unwrap();
    let sent = client.send(&message(GUEST)).await;
    assert_eq!(sent, Ok(None));
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_bad_number_answered_400_is_rejected() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::Status(400), None);
    let err = client(&server.url())
        .send(&message(GUEST))
        .await
        .unwrap_err();
    let SendError::Rejected(reason) = &err else {
        panic!("not rejected: {err:?}");
    };
    assert!(reason.contains("HTTP 400"), "{reason}");
    assert!(reason.contains("provider code 21211"), "{reason}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_429_is_deferred_for_the_retry_after_it_gives() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::Status(429), None);
    let err = client(&server.url())
        .send(&message(GUEST))
        .await
        .unwrap_err();
    let SendError::Deferred { retry_after, .. } = err else {
        panic!("not deferred: {err:?}");
    };
    assert_eq!(retry_after, Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_500_is_unavailable() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::Status(500), None);
    let err = client(&server.url())
        .send(&message(GUEST))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SendError::Unavailable(r) if r.contains("HTTP 500")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wrong_credentials_are_unavailable_not_a_bounce() {
    let server = SmsServer::start().await;
    let mut url = server.url();
    url.set_password(Some("not-the-token")).unwrap();
    let err = client(&url).send(&message(GUEST)).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Unavailable(r) if r.contains("HTTP 401")),
        "{err:?}"
    );
    assert_eq!(server.requests_to(GUEST), 1);
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn a_dropped_connection_is_unavailable() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::Drop, Some(1));
    let client = client(&server.url());
    let err = client.send(&message(GUEST)).await.unwrap_err();
    assert!(matches!(err, SendError::Unavailable(_)), "{err:?}");
    // The rule was used once: the next request goes through on a new connection.
    assert!(client.send(&message(GUEST)).await.is_ok());
    assert_eq!(server.requests_to(GUEST), 2);
}

#[tokio::test]
async fn a_provider_slower_than_the_timeout_is_unavailable() {
    let server = SmsServer::start().await;
    server.on_to(GUEST, Action::Delay(Duration::from_secs(10)), None);
    let client = SmsClient::new(&server.url(), Duration::from_millis(300)).unwrap();
    let err = client.send(&message(GUEST)).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Unavailable(r) if r.contains("no answer within 300ms")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let down = support::refusing_address();
    let url = sms::base_url(down.addr);
    let err = client(&url).send(&message(GUEST)).await.unwrap_err();
    assert!(
        matches!(&err, SendError::Unavailable(r) if r.contains("could not connect")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_provider_back_on_a_port_that_refused_is_reached() {
    let down = support::refusing_address();
    let client = client(&sms::base_url(down.addr));
    assert!(client.send(&message(GUEST)).await.is_err());
    let server = SmsServer::start_on(down.release()).await;
    client.send(&message(GUEST)).await.unwrap();
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn credentials_appear_in_no_error_and_not_in_debug() {
    let server = SmsServer::start().await;
    let secrets = [ACCOUNT, TOKEN];
    // The stub's error bodies name the request path, which holds the account, as Twilio's do.
    let numbers = ["+447700900001", "+447700900002", "+447700900003"];
    server.on_to(numbers[0], Action::Status(404), None);
    server.on_to(numbers[1], Action::Status(429), None);
    server.on_to(numbers[2], Action::Status(503), None);
    let client = client(&server.url());
    let mut shown = vec![format!("{client:?}")];
    for number in numbers {
        let err = client.send(&message(number)).await.unwrap_err();
        assert!(err.to_string().contains("<account>"), "{err}");
        shown.push(format!("{err} {err:?}"));
    }
    let down = support::refusing_address();
    let refused = sms::base_url(down.addr);
    let err = self::client(&refused)
        .send(&message(GUEST))
        .await
        .unwrap_err();
    shown.push(format!("{err} {err:?}"));
    for text in shown {
        for secret in secrets {
            assert!(!text.contains(secret), "{secret} shown in: {text}");
        }
    }
}

#[tokio::test]
async fn the_outbox_writes_each_message_as_a_json_file() {
    let dir = std::env::temp_dir().join(format!("wedsync-sms-{}", uuid::Uuid::new_v4()));
    let outbox = SmsOutbox::new(&dir);
    let id = outbox.send(&message(GUEST)).await.unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files, [format!("{}.json", id.unwrap())]);
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&files[0])).unwrap()).unwrap();
    assert_eq!(
        written,
        serde_json::json!({
            "to": GUEST,
            "from": "WedSync",
            "body": "Ann & Bob: save the date, 6 June!",
            "idempotency_key": "delivery-42",
        })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
