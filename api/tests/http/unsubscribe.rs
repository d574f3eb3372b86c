//! `/unsubscribe?token=…`: RFC 8058 one-click unsubscribe with signed tokens, no auth; and
//! `/unsubscribe/mail`, the same token mailed to the `List-Unsubscribe` mailto.

use crate::support::{TestApp, problem, seed_sent_delivery};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode, Url};
use std::io::Write;
use std::sync::{Arc, Mutex};
use wedsync_kinds::messages::unsubscribe::{SigningKey, UnsubscribeClaim};
use wedsync_kinds::suppression::{Address, Channel, SuppressionList};
use wedsync_metrics::{EventWriter, EventWriterConfig};

const ORG: &str = "acme";
/// As the guest typed it; deliveries hold it normalised.
const RAW_ADDRESS: &str = "  Guest@Example.COM ";
const ONE_CLICK: &str = "List-Unsubscribe=One-Click";
const FORM: &str = "application/x-www-form-urlencoded";
const INVALID_DETAIL: &str = "this unsubscribe link is invalid or has expired";

/// An API verifying with `key`, and the signed token of one marketing delivery to the guest.
struct Guest {
    app: TestApp,
    claim: UnsubscribeClaim,
    token: String,
}

impl Guest {
    async fn new() -> Guest {
        let key = SigningKey::random();
        Guest::with_app(
            TestApp::spawn_with(|s| s.with_signing_key(key.clone())).await,
            key,
        )
        .await
    }

    async fn with_app(app: TestApp, key: SigningKey) -> Guest {
        let (_, delivery_id) = seed_sent_delivery(&app, ORG, RAW_ADDRESS).await;
        let address = Address::parse(Channel::Email, RAW_ADDRESS).unwrap();
        let claim = UnsubscribeClaim {
            delivery_id,
            org_id: ORG.to_owned(),
            channel: Channel::Email,
            address_hash: address.hash(),
        };
        let token = key.sign(&claim);
        Guest { app, claim, token }
    }

    fn url(&self, token: &str) -> String {
        format!("{}/unsubscribe?token={token}", self.app.base)
    }

    /// The one-click POST a mail client sends: no Authorization, the RFC 8058 form body.
    async fn one_click(&self, token: &str) -> Response {
        self.app
            .client
            .post(self.url(token))
            .header(CONTENT_TYPE, FORM)
            .body(ONE_CLICK)
            .send()
            .await
            .unwrap()
    }

    /// A message to the mailto of `List-Unsubscribe`, its subject folded as mail clients fold
    /// a long one, posted as the operator's inbound mail would.
    async fn mailed(&self, token: &str) -> Response {
        let message = format!(
            "From: <guest@example.com>\r\nTo: <unsubscribe@jobs.wedsync.test>\r\n\
             Subject: unsubscribe\r\n {token}\r\n\r\n"
        );
        self.mail_body(message.into_bytes()).await
    }

    async fn mail_body(&self, body: Vec<u8>) -> Response {
        self.app
            .client
            .post(format!("{}/unsubscribe/mail", self.app.base))
            .header(CONTENT_TYPE, "message/rfc822")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, token: &str) -> Response {
        self.app.client.get(self.url(token)).send().await.unwrap()
    }

    /// `(org, channel, address, reason)` of every suppression entry.
    async fn entries(&self) -> Vec<(Option<String>, String, Option<String>, String)> {
        sqlx::query_as("SELECT org_id, channel, address, reason FROM suppressions ORDER BY id")
            .fetch_all(&self.app.db.pool)
            .await
            .unwrap()
    }
}

fn unsubscribed(address: Option<&str>) -> (Option<String>, String, Option<String>, String) {
    (
        Some(ORG.to_owned()),
        "email".to_owned(),
        address.map(str::to_owned),
        "unsubscribed".to_owned(),
    )
}

/// Assert an HTML 200 and return the page.
async fn html_page(response: Response) -> String {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "text/html; charset=utf-8",
        "{:?}",
        response.headers()
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.text().await.unwrap()
}

async fn invalid_token(response: Response) {
    let body = problem(response, StatusCode::BAD_REQUEST, "INVALID_TOKEN").await;
    assert_eq!(
        body["detail"], INVALID_DETAIL,
        "says no more than that: {body}"
    );
}

#[tokio::test]
async fn the_one_click_post_suppresses_the_address_without_authorization() {
    let guest = Guest::new().await;
    let page = html_page(guest.one_click(&guest.token).await).await;
    assert!(page.contains("You are unsubscribed"), "{page}");
    assert_eq!(
        guest.entries().await,
        [unsubscribed(Some("guest@example.com"))]
    );
}

#[tokio::test]
async fn repeating_the_one_click_post_answers_the_same_and_keeps_one_entry() {
    let guest = Guest::new().await;
    let first = html_page(guest.one_click(&guest.token).await).await;
    let again = html_page(guest.one_click(&guest.token).await).await;
    assert_eq!(first, again);
    assert_eq!(
        guest.entries().await,
        [unsubscribed(Some("guest@example.com"))]
    );
}

#[tokio::test]
async fn an_empty_post_unsubscribes_too() {
    let guest = Guest::new().await;
    let response = guest
        .app
        .client
        .post(guest.url(&guest.token))
        .send()
        .await
        .unwrap();
    html_page(response).await;
    assert_eq!(guest.entries().await.len(), 1);
}

#[tokio::test]
async fn a_multipart_one_click_post_unsubscribes_too() {
    let guest = Guest::new().await;
    let body = "--b0undary\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n\
                One-Click\r\n--b0undary--\r\n";
    let response = guest
        .app
        .client
        .post(guest.url(&guest.token))
        .header(CONTENT_TYPE, "multipart/form-data; boundary=b0undary")
        .body(body)
        .send()
        .await
        .unwrap();
    html_page(response).await;
    assert_eq!(guest.entries().await.len(), 1);
}

#[tokio::test]
async fn a_mailed_request_suppresses_the_address_and_a_repeat_keeps_one_entry() {
    let guest = Guest::new().await;
    for _ in 0..2 {
        let response = guest.mailed(&guest.token).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            guest.entries().await,
            [unsubscribed(Some("guest@example.com"))]
        );
    }
}

#[tokio::test]
async fn a_mailed_request_without_a_valid_token_suppresses_nobody() {
    let guest = Guest::new().await;
    let forged = SigningKey::random().sign(&guest.claim);
    invalid_token(guest.mailed(&forged).await).await;
    invalid_token(
        guest
            .mail_body(b"Subject: unsubscribe me\r\n\r\n".to_vec())
            .await,
    )
    .await;
    problem(
        guest.mail_body(Vec::new()).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    let huge = [b"Subject: x\r\n\r\n".as_slice(), &vec![b'a'; 1024 * 1024]].concat();
    problem(
        guest.mail_body(huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
    )
    .await;
    assert_eq!(guest.entries().await, []);
}

#[tokio::test]
async fn get_shows_a_form_posting_to_the_same_url_and_suppresses_nothing() {
    let guest = Guest::new().await;
    let page = html_page(guest.get(&guest.token).await).await;
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert!(
        page.contains(&format!("action=\"?token={}\"", guest.token)),
        "{page}"
    );
    assert!(
        guest.entries().await.is_empty(),
        "a GET must not unsubscribe"
    );
}

#[tokio::test]
async fn the_confirmation_form_submitted_by_a_browser_unsubscribes() {
    let guest = Guest::new().await;
    let page_url = Url::parse(&guest.url(&guest.token)).unwrap();
    let page = html_page(guest.get(&guest.token).await).await;
    let action = page
        .split("action=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a form action");
    // What a browser does: resolve the action against the page, post the form's fields.
    let target = page_url.join(&action.replace("&amp;", "&")).unwrap();
    assert_eq!(target, page_url);
    let response = guest
        .app
        .client
        .post(target)
        .header(CONTENT_TYPE, FORM)
        .body(ONE_CLICK)
        .send()
        .await
        .unwrap();
    html_page(response).await;
    assert_eq!(
        guest.entries().await,
        [unsubscribed(Some("guest@example.com"))]
    );
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_invalid() {
    let guest = Guest::new().await;
    let forged = SigningKey::random().sign(&guest.claim);
    invalid_token(guest.one_click(&forged).await).await;
    invalid_token(guest.get(&forged).await).await;
    assert!(guest.entries().await.is_empty());
}

#[tokio::test]
async fn a_tampered_token_is_invalid() {
    let guest = Guest::new().await;
    // One character changed in the signed part (the address hash), then in the MAC.
    let change = |at: usize| {
        let mut token = guest.token.clone();
        let other = if token[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        token.replace_range(at..at + 1, other);
        token
    };
    for token in [change(20), change(guest.token.len() - 1)] {
        invalid_token(guest.one_click(&token).await).await;
    }
    assert!(guest.entries().await.is_empty());
}

#[tokio::test]
async fn a_missing_token_is_invalid() {
    let guest = Guest::new().await;
    let url = format!("{}/unsubscribe", guest.app.base);
    let post = guest.app.client.post(&url).body(ONE_CLICK);
    invalid_token(post.header(CONTENT_TYPE, FORM).send().await.unwrap()).await;
    invalid_token(guest.app.client.get(&url).send().await.unwrap()).await;
    invalid_token(guest.get("").await).await;
    assert!(guest.entries().await.is_empty());
}

#[tokio::test]
async fn a_token_whose_delivery_was_deleted_still_suppresses_by_hash() {
    let guest = Guest::new().await;
    sqlx::query("DELETE FROM deliveries WHERE id = $1")
        .bind(guest.claim.delivery_id)
        .execute(&guest.app.db.pool)
        .await
        .unwrap();
    html_page(guest.one_click(&guest.token).await).await;
    assert_eq!(guest.entries().await, [unsubscribed(None)]);
    let list = SuppressionList::new(guest.app.db.pool.clone());
    assert!(
        list.contains(ORG, Channel::Email, RAW_ADDRESS)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_unsubscribed_guest_is_on_the_suppression_list_whatever_the_case() {
    let guest = Guest::new().await;
    let list = SuppressionList::new(guest.app.db.pool.clone());
    assert!(
        !list
            .contains(ORG, Channel::Email, RAW_ADDRESS)
            .await
            .unwrap()
    );
    html_page(guest.one_click(&guest.token).await).await;
    assert!(
        list.contains(ORG, Channel::Email, RAW_ADDRESS)
            .await
            .unwrap()
    );
    assert!(
        !list
            .contains("other-org", Channel::Email, RAW_ADDRESS)
            .await
            .unwrap(),
        "only the token's organisation"
    );
}

#[tokio::test]
async fn an_idempotency_key_on_the_one_click_post_is_accepted_without_auth() {
    let guest = Guest::new().await;
    for _ in 0..2 {
        let response = guest
            .app
            .client
            .post(guest.url(&guest.token))
            .header("idempotency-key", "unsubscribe-1")
            .header(CONTENT_TYPE, FORM)
            .body(ONE_CLICK)
            .send()
            .await
            .unwrap();
        html_page(response).await;
    }
    assert_eq!(guest.entries().await.len(), 1);
}

#[tokio::test]
async fn unsubscribe_requests_leave_events_under_the_route_template() {
    let key = SigningKey::random();
    let mut writer = None;
    let app = TestApp::spawn_with(|state| {
        let (sink, events) = EventWriter::spawn(state.pool.clone(), EventWriterConfig::default());
        writer = Some(events);
        state.with_events(sink).with_signing_key(key.clone())
    })
    .await;
    let guest = Guest::with_app(app, key).await;
    html_page(guest.get(&guest.token).await).await;
    html_page(guest.one_click(&guest.token).await).await;
    invalid_token(guest.one_click("forged").await).await;
    writer.take().unwrap().finish().await;

    let events: Vec<(String, String, i16)> = sqlx::query_as(
        "SELECT method, route, status FROM metric_events WHERE source = 'api' \
          ORDER BY method, status",
    )
    .fetch_all(&guest.app.db.pool)
    .await
    .unwrap();
    let event = |method: &str, status| (method.to_owned(), "/unsubscribe".to_owned(), status);
    assert_eq!(
        events,
        [event("GET", 200), event("POST", 200), event("POST", 400)]
    );
}

#[tokio::test]
async fn without_a_signing_key_the_route_answers_a_500() {
    let app = TestApp::spawn().await;
    let guest = Guest::with_app(app, SigningKey::random()).await;
    let response = guest.one_click(&guest.token).await;
    problem(
        response,
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
    )
    .await;
    assert!(guest.entries().await.is_empty());
}

/// Collects everything logged by this test binary: a process-wide subscriber, installed by the
/// first test that asks for it. (A thread-local one missed events when other tests ran at the
/// same time, tracing's callsite cache being shared by all threads.)
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

fn captured_logs() -> Captured {
    static CAPTURED: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter("debug,reqwest=off,hyper_util=off")
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
            captured
        })
        .clone()
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_token_is_never_logged() {
    let captured = captured_logs();
    let guest = Guest::new().await;
    html_page(guest.get(&guest.token).await).await;
    html_page(guest.one_click(&guest.token).await).await;
    let forged = SigningKey::random().sign(&guest.claim);
    invalid_token(guest.one_click(&forged).await).await;
    assert_eq!(
        guest.mailed(&guest.token).await.status(),
        StatusCode::NO_CONTENT
    );
    invalid_token(guest.mailed(&forged).await).await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines =
        |needle: &str| -> Vec<&str> { logs.lines().filter(|l| l.contains(needle)).collect() };
    // The capture works: the three requests and the unsubscribe were logged (other tests'
    // requests may be in the capture too).
    assert!(
        lines(r#"route="/unsubscribe""#).len() >= 3,
        "requests unlogged"
    );
    assert!(!lines("unsubscribed delivery.id=").is_empty());
    assert!(!lines(r#"by="mail""#).is_empty());
    for secret in [guest.token.as_str(), forged.as_str(), "guest@example.com"] {
        assert_eq!(lines(secret), Vec::<&str>::new(), "logged");
    }
}
