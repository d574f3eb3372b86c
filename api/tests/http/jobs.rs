//! `/v1/jobs`: enqueue, validation, listing, retry and cancel.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn enqueue_applies_the_kinds_defaults() {
    let app = TestApp::spawn().await;
    let job = app.enqueue(json!({ "kind": "noop" })).await;
    assert_eq!(job["queue"], "default");
    assert_eq!(job["priority"], 5);
    assert_eq!(job["max_attempts"], 20);
    assert_eq!(job["state"], "available");
    assert_eq!(job["args"], json!({}));
    assert_eq!(job["duplicate"], false);
}

#[tokio::test]
async fn enqueue_in_the_future_is_scheduled() {
    let app = TestApp::spawn().await;
    let job = app
        .enqueue(json!({
            "kind": "noop", "args": { "sleep_ms": 5 }, "queue": "bulk", "priority": 1,
            "max_attempts": 3, "scheduled_at": "2999-01-01T00:00:00Z"
        }))
        .await;
    assert_eq!(job["state"], "scheduled");
    assert_eq!(job["queue"], "bulk");
    assert_eq!(job["args"]["sleep_ms"], 5);
}

#[tokio::test]
async fn unknown_kind_is_422_with_a_field_error() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .json(&json!({ "kind": "launch_rockets" }))
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "kind");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("noop")
    );
}

#[tokio::test]
async fn every_invalid_field_is_listed() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .json(&json!({ "kind": "noop", "priority": 12, "max_attempts": 0, "scheduled_at": "tomorrow" }))
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["priority", "max_attempts", "scheduled_at"]);
}

#[tokio::test]
async fn duplicate_unique_key_returns_the_existing_job() {
    let app = TestApp::spawn().await;
    let first = app
        .enqueue(json!({ "kind": "noop", "unique_key": "invite-42" }))
        .await;
    let response = app
        .post("/v1/jobs", &app.operator)
        .json(&json!({ "kind": "noop", "unique_key": "invite-42" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn listing_with_an_unknown_state_is_422() {
    let app = TestApp::spawn().await;
    let response = app
        .get("/v1/jobs?state=sleeping", &app.operator)
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "state");
}

#[tokio::test]
async fn listing_pages_newest_first() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            app.enqueue(json!({ "kind": "noop" })).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let page: Value = app
        .get("/v1/jobs?limit=2", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let got: Vec<i64> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, [ids[2], ids[1]]);
    assert_eq!(page["next_before"], ids[1]);
    let last: Value = app
        .get(
            &format!("/v1/jobs?limit=2&before={}", ids[1]),
            &app.operator,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["jobs"][0]["id"], ids[0]);
    assert_eq!(last["next_before"], Value::Null);
}

#[tokio::test]
async fn unknown_job_is_404() {
    let app = TestApp::spawn().await;
    let response = app
        .get("/v1/jobs/999999", &app.operator)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn cancelling_a_finished_job_is_409() {
    let app = TestApp::spawn().await;
    let job = app.enqueue(json!({ "kind": "noop" })).await;
    let path = format!("/v1/jobs/{}/cancel", job["id"]);
    let cancelled: Value = app
        .post(&path, &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    let again = app.post(&path, &app.operator).send().await.unwrap();
    problem(again, StatusCode::CONFLICT, "CONFLICT").await;
}

#[tokio::test]
async fn retrying_a_cancelled_job_makes_it_available() {
    let app = TestApp::spawn().await;
    let job = app.enqueue(json!({ "kind": "noop" })).await;
    let id = &job["id"];
    app.post(&format!("/v1/jobs/{id}/cancel"), &app.operator)
        .send()
        .await
        .unwrap();
    let response = app
        .post(&format!("/v1/jobs/{id}/retry"), &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let retried: Value = response.json().await.unwrap();
    assert_eq!(retried["state"], "available");
}
