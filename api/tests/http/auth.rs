//! Keys, roles and organisation isolation.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::{Role, keys};

#[tokio::test]
async fn missing_key_is_401_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .client
        .get(format!("{}/v1/jobs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn unknown_key_is_401_problem() {
    let app = TestApp::spawn().await;
    let response = app
        .get("/v1/jobs", &keys::generate_key())
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn revoked_key_is_401_problem() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", Role::Operator).await;
    keys::revoke_key(&app.db.pool, &key[..keys::DISPLAY_PREFIX_LEN])
        .await
        .unwrap();
    let response = app.get("/v1/jobs", &key).send().await.unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn keys_are_stored_hashed_with_a_clear_prefix() {
    let app = TestApp::spawn().await;
    let key = app.key("acme", Role::Planner).await;
    let (hash, prefix): (String, String) =
        sqlx::query_as("SELECT key_hash, key_prefix FROM api_keys WHERE org_id = 'acme'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(hash, keys::hash_key(&key));
    assert_eq!(prefix, &key[..12]);
    assert!(key.starts_with("wsk_") && key.len() == 44);
}

#[tokio::test]
async fn planner_cannot_enqueue() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .post("/v1/jobs", &planner)
        .json(&json!({ "kind": "noop" }))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn planner_cannot_pause_queues() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .post("/v1/queues/default/pause", &planner)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn planner_gets_404_for_another_orgs_job() {
    let app = TestApp::spawn().await;
    let theirs = app
        .enqueue(json!({ "kind": "noop", "org_id": "globex" }))
        .await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .get(&format!("/v1/jobs/{}", theirs["id"]), &planner)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn planner_reads_own_orgs_job() {
    let app = TestApp::spawn().await;
    let ours = app
        .enqueue(json!({ "kind": "noop", "org_id": "acme" }))
        .await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .get(&format!("/v1/jobs/{}", ours["id"]), &planner)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["id"], ours["id"]);
}

#[tokio::test]
async fn planner_listing_shows_only_own_org() {
    let app = TestApp::spawn().await;
    let ours = app
        .enqueue(json!({ "kind": "noop", "org_id": "acme" }))
        .await;
    app.enqueue(json!({ "kind": "noop", "org_id": "globex" }))
        .await;
    app.enqueue(json!({ "kind": "noop" })).await;
    let planner = app.key("acme", Role::Planner).await;
    // Asking for another org explicitly changes nothing.
    let page: Value = app
        .get("/v1/jobs?org_id=globex", &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["id"])
        .collect();
    assert_eq!(ids, vec![&ours["id"]]);
}
