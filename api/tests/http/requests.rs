//! Cross-cutting request handling: malformed bodies, limits, request ids, idempotency.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn malformed_json_is_400_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .header("content-type", "application/json")
        .body(r#"{"kind": "noop""#)
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    assert!(body["detail"].as_str().unwrap().contains("not valid JSON"));
}

#[tokio::test]
async fn unknown_field_is_422_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .json(&json!({ "kind": "noop", "priorty": 1 }))
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("priorty"));
}

#[tokio::test]
async fn body_over_one_mebibyte_is_413_problem() {
    let app = TestApp::spawn().await;
    let padding = "x".repeat(1024 * 1024 + 1);
    let response = app
        .post("/v1/jobs", &app.operator)
        .json(&json!({ "kind": "noop", "args": { "padding": padding } }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn non_json_content_type_is_415_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .header("content-type", "text/plain")
        .body(r#"{"kind": "noop"}"#)
        .send()
        .await
        .unwrap();
    problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
    )
    .await;
}

#[tokio::test]
async fn unknown_route_is_404_problem() {
    let app = TestApp::spawn().await;
    let response = app.get("/v1/weddingz", &app.operator).send().await.unwrap();
    problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn unsupported_method_is_405_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .delete(format!("{}/v1/jobs", app.base))
        .bearer_auth(&app.operator)
        .send()
        .await
        .unwrap();
    problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
    )
    .await;
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let responses = [
        app.client
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap(),
        app.client
            .get(format!("{}/v1/jobs", app.base))
            .send()
            .await
            .unwrap(),
        app.get("/nowhere", &app.operator).send().await.unwrap(),
        app.get("/v1/jobs", &app.operator).send().await.unwrap(),
    ];
    let mut ids: Vec<String> = responses
        .iter()
        .map(|r| r.headers()["x-request-id"].to_str().unwrap().to_owned())
        .collect();
    assert!(
        ids.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()),
        "{ids:?}"
    );
    ids.dedup();
    assert_eq!(ids.len(), 4);
}

#[tokio::test]
async fn a_client_request_id_is_echoed() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
}

async fn post_with_key(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.post("/v1/jobs", &app.operator)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn idempotent_repeat_returns_the_first_job_and_creates_one() {
    let app = TestApp::spawn().await;
    let body = json!({ "kind": "noop" });
    let first = post_with_key(&app, "order-1", &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let repeat = post_with_key(&app, "order-1", &body).await;
    assert_eq!(repeat.status(), StatusCode::CREATED);
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    let repeat: Value = repeat.json().await.unwrap();
    assert_eq!(repeat["id"], first["id"]);
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn idempotency_key_reused_for_another_body_is_rejected() {
    let app = TestApp::spawn().await;
    post_with_key(&app, "order-1", &json!({ "kind": "noop" })).await;
    let other = post_with_key(&app, "order-1", &json!({ "kind": "noop", "priority": 1 })).await;
    problem(
        other,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn idempotency_keys_are_per_organisation() {
    let app = TestApp::spawn().await;
    let other_operator = app.key("other-ops", wedsync_api::Role::Operator).await;
    let body = json!({ "kind": "noop" });
    post_with_key(&app, "order-1", &body).await;
    let theirs = app
        .post("/v1/jobs", &other_operator)
        .header("idempotency-key", "order-1")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), StatusCode::CREATED);
    assert_eq!(app.job_count().await, 2);
}

#[tokio::test]
async fn idempotent_request_still_in_flight_is_409() {
    let app = TestApp::spawn().await;
    let body = json!({ "kind": "noop" });
    // What a first request holds while its handler runs: a claim without a response.
    let hash = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(format!("operator POST /v1/jobs\n{body}"));
        hex::encode(h.finalize())
    };
    sqlx::query(
        "INSERT INTO idempotency_keys (org_id, key, request_hash) VALUES ('ops', 'order-1', $1)",
    )
    .bind(hash)
    .execute(&app.db.pool)
    .await
    .unwrap();
    let response = post_with_key(&app, "order-1", &body).await;
    problem(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn idempotent_errors_are_replayed_too() {
    let app = TestApp::spawn().await;
    let body = json!({ "kind": "nope" });
    let first = post_with_key(&app, "order-1", &body).await;
    problem(first, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let repeat = post_with_key(&app, "order-1", &body).await;
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    problem(repeat, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
}
