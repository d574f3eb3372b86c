//! Health, readiness, metrics, the OpenAPI document and queues.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn healthz_is_ok() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({ "status": "ok" })
    );
}

#[tokio::test]
async fn readyz_is_ok_on_a_migrated_database() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["migrations"], "ok");
}

#[tokio::test]
async fn readyz_is_503_when_a_migration_is_missing() {
    let app = TestApp::spawn().await;
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let response = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    let body = problem(response, StatusCode::SERVICE_UNAVAILABLE, "NOT_READY").await;
    assert!(body["checks"]["migrations"]["error"].is_string(), "{body}");
}

#[tokio::test]
async fn metrics_report_jobs_by_queue_kind_and_state() {
    let app = TestApp::spawn().await;
    app.enqueue(json!({ "kind": "noop" })).await;
    let text = app.metrics().await;
    assert!(
        text.contains(r#"wedsync_jobs{queue="default",kind="noop",state="available"} 1"#),
        "{text}"
    );
    assert!(
        // Latency is labelled with the route template, not the raw path.
        text.contains(
            r#"wedsync_http_request_duration_seconds_bucket{method="POST",route="/v1/jobs",status="201""#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn openapi_document_lists_the_jobs_endpoint() {
    let app = TestApp::spawn().await;
    let doc: Value = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/jobs"]["post"].is_object());
}

#[tokio::test]
async fn paused_queue_shows_as_paused() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/queues/email/pause", &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let pool: Value = response.json().await.unwrap();
    assert_eq!(pool["paused"], true);
    let list: Value = app
        .get("/v1/queues", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let email = list["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "email")
        .expect("the paused queue is listed");
    assert_eq!(email["paused"], true);
    assert_eq!(email["concurrency"], 10);
}

#[tokio::test]
async fn resumed_queue_is_no_longer_paused() {
    let app = TestApp::spawn().await;
    app.post("/v1/queues/email/pause", &app.operator)
        .send()
        .await
        .unwrap();
    let pool: Value = app
        .post("/v1/queues/email/resume", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pool["paused"], false);
}
