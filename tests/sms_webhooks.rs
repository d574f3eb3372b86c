//! What the SMS provider tells us after a text was accepted (`messages::sms_webhook`), end to
//! end through the real API, a worker and the stub provider over HTTP: every text asks for
//! receipts at `/v1/sms/status`; signed receipts bounce or fail deliveries; a guest's STOP and
//! START, posted to `/v1/sms/inbound`, take them off and back onto the next send; a number the
//! provider reports as opted out (21610) is suppressed for everyone until its START. Unsigned or
//! forged webhooks change nothing.

mod support;

use metrics_exporter_prometheus::PrometheusBuilder;
use serde_json::Value;
use std::time::Duration;
use support::messages::{ORG, context_with, statuses, store, wait_until_finished};
use support::sms::{Action, SmsServer, TOKEN, number, sms_provider, sms_send};
use support::{start_worker, test_config};
use wedsync_api::ApiState;
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::providers::{ProviderRole, Providers};
use wedsync_kinds::messages::sms_webhook::{REPLY_PATH, STATUS_PATH, WebhookTokens, sign};
use wedsync_kinds::messages::{Category, get_send};
use wedsync_kinds::register_all;
use wedsync_kinds::suppression::{Address, Channel, SuppressionList};

/// Posts signed (or not) webhooks to the API, as the provider would.
struct Provider {
    api: String,
}

impl Provider {
    async fn post(&self, path: &str, fields: &[(&str, &str)], token: Option<&str>) -> Response {
        let url = format!("{}{path}", self.api);
        let owned: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut request = reqwest::Client::new().post(&url).form(&owned);
        if let Some(token) = token {
            request = request.header("X-Twilio-Signature", sign(token, &url, &owned));
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let content_type = answer
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = answer.text().await.unwrap();
        Response {
            status,
            content_type,
            body,
        }
    }

    async fn receipt(&self, to: &str, sid: &str, status: &str, code: Option<&str>) -> Value {
        let mut fields = vec![
            ("To", to),
            ("From", "WedSync"),
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("AccountSid", support::sms::ACCOUNT),
        ];
        if let Some(code) = code {
            fields.push(("ErrorCode", code));
        }
        let answer = self.post(STATUS_PATH, &fields, Some(TOKEN)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        serde_json::from_str(&answer.body).unwrap()
    }

    async fn reply(&self, from: &str, body: &str) -> Response {
        let fields = [("From", from), ("To", "+447700900000"), ("Body", body)];
        self.post(REPLY_PATH, &fields, Some(TOKEN)).await
    }
}

struct Response {
    status: u16,
    content_type: String,
    body: String,
}

impl Response {
    fn code(&self) -> Value {
        assert_eq!(
            self.content_type, "application/problem+json",
            "{}",
            self.body
        );
        serde_json::from_str::<Value>(&self.body).unwrap()["code"].clone()
    }
}

async fn globally_suppressed(db: &TestDb, i: usize) -> Option<String> {
    let address = Address::parse(Channel::Sms, &number(i)).unwrap();
    SuppressionList::new(db.pool.clone())
        .find(None, &address)
        .await
        .unwrap()
        .map(|entry| entry.reason)
}

#[tokio::test]
async fn receipts_and_replies_change_deliveries_and_the_next_send() {
    let db = TestDb::new().await.unwrap();
    let sms = SmsServer::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let prometheus = PrometheusBuilder::new().build_recorder().handle();
    let state = ApiState::new(db.pool.clone(), [], prometheus)
        .with_public_url(&api)
        .with_sms_webhook_tokens(WebhookTokens::from_provider_urls([&sms.url()]));
    tokio::spawn(wedsync_api::serve(listener, state, std::future::pending()));
    let provider = Provider { api: api.clone() };

    let mut app = context_with(
        &db,
        Providers::new().with(sms_provider(ProviderRole::Primary, &sms.url())),
    );
    app.messages.sms_status_callback = Some(format!("{api}{STATUS_PATH}"));
    // Guest 3 replied STOP to our number before, straight to the provider.
    sms.on_to(&number(3), Action::Code(400, 21610), Some(1));
    let first = sms_send(Category::Transactional, 5);
    store(&db, &first).await;
    let worker = start_worker(&db, register_all(), app, test_config(&["messages"]));
    wait_until_finished(&db, &first.id, Duration::from_secs(20)).await;

    let sent = sms.messages();
    assert_eq!(sent.len(), 4);
    for text in &sent {
        assert_eq!(
            text.status_callback.as_deref(),
            Some(format!("{api}/v1/sms/status").as_str()),
            "every text asks for its receipts"
        );
    }
    let sid = |i: usize| {
        sent.iter()
            .find(|t| t.to == number(i))
            .map(|t| t.sid.clone())
            .unwrap()
    };
    assert_eq!(statuses(&db, &first.id).await[&number(3)], "suppressed");
    assert_eq!(
        globally_suppressed(&db, 3).await.as_deref(),
        Some("unsubscribed"),
        "the provider's opt-out is everyone's"
    );

    // Unsigned, or signed with another token: refused, nothing changes.
    let receipt = [
        ("To", number(1)),
        ("MessageSid", sid(1)),
        ("MessageStatus", "undelivered".to_owned()),
        ("ErrorCode", "30005".to_owned()),
    ];
    let receipt: Vec<(&str, &str)> = receipt.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for token in [None, Some("not-the-token")] {
        let refused = provider.post(STATUS_PATH, &receipt, token).await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.code(), "BAD_SIGNATURE");
    }
    let stop = [("From", number(0)), ("Body", "STOP".to_owned())];
    let stop: Vec<(&str, &str)> = stop.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(provider.post(REPLY_PATH, &stop, None).await.status, 403);
    assert_eq!(globally_suppressed(&db, 0).await, None);
    assert_eq!(statuses(&db, &first.id).await[&number(1)], "sent");

    // Guest 1's number no longer exists: bounced, and suppressed for the organisation. Twice.
    for _ in 0..2 {
        let answer = provider
            .receipt(&number(1), &sid(1), "undelivered", Some("30005"))
            .await;
        assert_eq!(answer["verdict"], "hard_bounce");
        assert_eq!(answer["delivery"]["status"], "bounced");
        assert_eq!(answer["delivery"]["suppressed"], "hard_bounce");
        assert_eq!(answer["delivery"]["send_id"], first.id.as_str());
    }
    // Guest 2's handset was off: failed, not suppressed.
    let answer = provider
        .receipt(&number(2), &sid(2), "undelivered", Some("30003"))
        .await;
    assert_eq!(
        (&answer["verdict"], &answer["delivery"]["status"]),
        (&Value::from("failed"), &Value::from("failed"))
    );
    assert_eq!(answer["delivery"]["suppressed"], Value::Null);
    // Guest 0's text was delivered; a receipt for a text that is not ours finds nothing.
    let answer = provider
        .receipt(&number(0), &sid(0), "delivered", None)
        .await;
    assert_eq!(
        (&answer["verdict"], &answer["delivery"]["status"]),
        (&Value::from("no_change"), &Value::from("sent"))
    );
    let answer = provider
        .receipt(&number(0), &sid(1), "failed", Some("30005"))
        .await;
    assert_eq!(
        answer["delivery"],
        Value::Null,
        "another guest's message id"
    );

    // Guest 4 had replied STOP, and the provider said so only in the receipt: as at send time,
    // `suppressed` and a global opt-out.
    let answer = provider
        .receipt(&number(4), &sid(4), "failed", Some("21610"))
        .await;
    assert_eq!(
        (&answer["verdict"], &answer["delivery"]["status"]),
        (&Value::from("opted_out"), &Value::from("suppressed"))
    );
    assert_eq!(answer["delivery"]["suppressed"], "unsubscribed");
    assert_eq!(
        globally_suppressed(&db, 4).await.as_deref(),
        Some("unsubscribed")
    );

    let counts = get_send(&db.pool, &first.id, None).await.unwrap().unwrap();
    assert_eq!(
        (
            counts.sent,
            counts.bounced,
            counts.failed,
            counts.suppressed
        ),
        (1, 1, 1, 2),
        "the counters follow"
    );
    let org_entries: Vec<(String, String)> =
        sqlx::query_as("SELECT address, reason FROM suppressions WHERE org_id = $1")
            .bind(ORG)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(org_entries, [(number(1), "hard_bounce".to_owned())]);

    // Guest 0 replies STOP; guest 3 replies START.
    let answer = provider.reply(&number(0), " Stop ").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.content_type, "application/xml");
    assert!(answer.body.ends_with("<Response/>"), "{}", answer.body);
    assert_eq!(
        globally_suppressed(&db, 0).await.as_deref(),
        Some("unsubscribed")
    );
    assert_eq!(provider.reply(&number(3), "START").await.status, 200);
    assert_eq!(globally_suppressed(&db, 3).await, None);
    // An ordinary reply changes nothing; a number that is not E.164 is refused.
    assert_eq!(
        provider.reply(&number(2), "stop by at 3?").await.status,
        200
    );
    assert_eq!(globally_suppressed(&db, 2).await, None);
    let refused = provider.reply("07700 900123", "STOP").await;
    assert_eq!(
        (refused.status, refused.code()),
        (422, "INVALID_NUMBER".into())
    );

    let next = sms_send(Category::Transactional, 4);
    store(&db, &next).await;
    let summary = wait_until_finished(&db, &next.id, Duration::from_secs(20)).await;
    worker.stop().await;
    assert_eq!((summary.sent, summary.suppressed), (2, 2));
    let mut later: Vec<String> = sms.messages()[4..].iter().map(|t| t.to.clone()).collect();
    later.sort();
    assert_eq!(later, [number(2), number(3)]);
}
