//! `POST /v1/sms/inbound` and `POST /v1/sms/status`: the SMS provider's signed webhooks. What
//! is refused (no token configured, a signature over another URL, not a form, a bad error code)
//! and that a signed receipt about no delivery of ours changes nothing. What they change is
//! tested end to end in `tests/sms_webhooks.rs`.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::Value;
use wedsync_kinds::messages::sms_webhook::{WebhookTokens, sign};

const TOKEN: &str = "provider-auth-token";
const PUBLIC_URL: &str = "https://jobs.wedsync.test";

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

async fn app_with_token() -> TestApp {
    let provider = url::Url::parse(&format!("https://AC1:{TOKEN}@sms.example.com/x")).unwrap();
    TestApp::spawn_with(|state| {
        state
            .with_public_url(PUBLIC_URL)
            .with_sms_webhook_tokens(WebhookTokens::from_provider_urls([&provider]))
    })
    .await
}

/// Post `fields` to `path`, signed for `signed_url`.
async fn post_signed(
    app: &TestApp,
    path: &str,
    fields: &[(String, String)],
    signed_url: &str,
) -> reqwest::Response {
    app.client
        .post(format!("{}{path}", app.base))
        .header("X-Twilio-Signature", sign(TOKEN, signed_url, fields))
        .header("Idempotency-Key", "provider-retry-1")
        .form(fields)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn without_a_provider_token_every_webhook_is_refused() {
    let app = TestApp::spawn().await;
    let fields = form(&[("From", "+447700900123"), ("Body", "STOP")]);
    let url = "http://localhost:8080/v1/sms/inbound";
    let answer = post_signed(&app, "/v1/sms/inbound", &fields, url).await;
    let body = problem(answer, StatusCode::FORBIDDEN, "BAD_SIGNATURE").await;
    assert!(
        body["detail"].as_str().unwrap().contains("WEDSYNC_SMS_URL"),
        "{body}"
    );
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM suppressions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(entries, 0);
}

#[tokio::test]
async fn the_signature_covers_the_public_url_and_the_body_must_be_a_form() {
    let app = app_with_token().await;
    let fields = form(&[
        ("To", "+447700900123"),
        ("MessageSid", "SM0123"),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30005"),
    ]);
    // Signed for the address the request was sent to, not the public one: refused.
    let loopback = format!("{}/v1/sms/status", app.base);
    let answer = post_signed(&app, "/v1/sms/status", &fields, &loopback).await;
    problem(answer, StatusCode::FORBIDDEN, "BAD_SIGNATURE").await;

    // Signed for the public URL: applied, and about no delivery of ours.
    let public = format!("{PUBLIC_URL}/v1/sms/status");
    let answer = post_signed(&app, "/v1/sms/status", &fields, &public).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["verdict"], "hard_bounce");
    assert_eq!(body["delivery"], Value::Null);

    let bad_code = form(&[("To", "+447700900123"), ("ErrorCode", "thirty")]);
    let answer = post_signed(&app, "/v1/sms/status", &bad_code, &public).await;
    let body = problem(answer, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    assert_eq!(body["errors"][0]["field"], "ErrorCode");

    let answer = app
        .client
        .post(format!("{}/v1/sms/inbound", app.base))
        .header("X-Twilio-Signature", "x")
        .json(&serde_json::json!({"From": "+447700900123", "Body": "STOP"}))
        .send()
        .await
        .unwrap();
    problem(
        answer,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}
