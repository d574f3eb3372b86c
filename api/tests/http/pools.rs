//! `/v1/pools` and `/v1/scaling`: pool settings and overrides applied at once, their history,
//! and what KEDA reads.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;

impl TestApp {
    pub fn put(&self, path: &str, key: &str) -> reqwest::RequestBuilder {
        self.client
            .put(format!("{}{path}", self.base))
            .bearer_auth(key)
    }

    async fn pools(&self) -> Value {
        let response = self.get("/v1/pools", &self.operator).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

#[tokio::test]
async fn an_override_applies_at_once_and_is_listed_with_its_history() {
    let app = TestApp::spawn().await;
    let response = app
        .put("/v1/pools/photos", &app.operator)
        .json(&json!({
            "min": 1, "max": 16, "base": 4,
            "override": { "size": 30, "ttl_seconds": 3600, "reason": "wedding fair" }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let pool: Value = response.json().await.unwrap();
    // Not bounded by the maximum: an operator may go past it in an incident.
    assert_eq!(pool["concurrency"], 30);
    assert_eq!(
        (pool["min"].as_u64(), pool["max"].as_u64()),
        (Some(1), Some(16))
    );
    assert_eq!(pool["override"]["reason"], "wedding fair");
    assert_eq!(pool["override"]["active"], true);
    assert_eq!(pool["reasons"][0]["rule"], "override");
    assert!(
        pool["reasons"][0]["text"]
            .as_str()
            .unwrap()
            .contains("wedding fair")
    );

    let list = app.pools().await;
    let photos = &list["pools"][0];
    assert_eq!(photos["queue"], "photos");
    let history = photos["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0]["to"], 30);
    assert_eq!(history[0]["source"], "override");

    // Cleared: the rules size it again at once (base 4, or more on a Saturday or in season,
    // never above the maximum of 16).
    let cleared: Value = app
        .put("/v1/pools/photos", &app.operator)
        .json(&json!({ "override": null }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["override"], Value::Null);
    let size = cleared["concurrency"].as_u64().unwrap();
    assert!((4..=16).contains(&size), "{cleared}");
    assert_eq!(cleared["history"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn invalid_pool_settings_are_422_naming_each_field() {
    let app = TestApp::spawn().await;
    let response = app
        .put("/v1/pools/photos", &app.operator)
        .json(&json!({
            "min": -1,
            "base": 5000,
            "override": { "size": 3, "until": "2001-01-01T00:00:00Z" }
        }))
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
    for field in ["min", "base", "override.until", "override.reason"] {
        assert!(fields.contains(&field), "{field} missing from {body}");
    }

    let inverted = app
        .put("/v1/pools/photos", &app.operator)
        .json(&json!({ "min": 8, "max": 2 }))
        .send()
        .await
        .unwrap();
    let body = problem(
        inverted,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "min");
    assert!(app.pools().await["pools"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn planners_may_not_change_pools() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .put("/v1/pools/photos", &planner)
        .json(&json!({ "base": 2 }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let listing = app.get("/v1/scaling", &planner).send().await.unwrap();
    problem(listing, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn scaling_publishes_replicas_where_keda_reads_them() {
    let app = TestApp::spawn().await;
    // A pinned per-process size of 2 with an override of 0: the pool is drained.
    app.put("/v1/pools/email", &app.operator)
        .json(&json!({ "min": 1, "max": 2, "base": 2 }))
        .send()
        .await
        .unwrap();
    app.put("/v1/pools/photos", &app.operator)
        .json(&json!({
            "override": { "size": 0, "ttl_seconds": 600, "reason": "storage outage" }
        }))
        .send()
        .await
        .unwrap();
    let scaling: Value = app
        .get("/v1/scaling", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        scaling.pointer("/pools/photos/desired_replicas"),
        Some(&json!(0))
    );
    assert_eq!(
        scaling.pointer("/pools/photos/concurrency"),
        Some(&json!(0))
    );
    let email = scaling.pointer("/pools/email/desired_replicas").unwrap();
    assert!(email.as_u64().unwrap() >= 1, "{scaling}");

    let metrics = app.metrics().await;
    assert!(metrics.contains("wedsync_pool_desired_replicas{queue=\"photos\"} 0"));
}

#[tokio::test]
async fn a_ttl_beyond_any_date_is_a_422_not_a_500() {
    let app = TestApp::spawn().await;
    for ttl in [9_000_000_000_000_i64, i64::MAX] {
        let response = app
            .put("/v1/pools/photos", &app.operator)
            .json(&json!({
                "override": { "size": 1, "ttl_seconds": ttl, "reason": "typo" }
            }))
            .send()
            .await
            .unwrap();
        let body = problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "override.ttl_seconds", "{body}");
    }
}
