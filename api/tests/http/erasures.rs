//! `POST /v1/erasures`: admin only, typed 422s, counts per location, the guest stays
//! suppressed, and nothing the API stored or answers holds the address afterwards.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;

const GUEST: &str = "guest@example.com";

async fn erase(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.post("/v1/erasures", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn only_an_admin_may_erase() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    for key in [&planner, &app.operator] {
        let response = erase(&app, key, json!({"email": GUEST})).await;
        problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM erasures")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

/// A replay runs no handler, so the role is part of what makes a repeat "the same request": a
/// planner of the admin's organisation who repeats the admin's erasure with its key is neither
/// handed the admin's stored record nor runs anything.
#[tokio::test]
async fn an_admins_idempotency_key_replays_nothing_to_a_planner() {
    let app = TestApp::spawn().await;
    let admin = app.key("hq", Role::Admin).await;
    let planner = app.key("hq", Role::Planner).await;
    let body = json!({"email": GUEST});
    let with_key = |key: &str| {
        app.post("/v1/erasures", key)
            .header("idempotency-key", "erase-1")
            .json(&body)
    };
    let first = with_key(&admin).send().await.unwrap();
    assert!(first.status().is_success(), "{}", first.status());
    let first: Value = first.json().await.unwrap();

    let theirs = with_key(&planner).send().await.unwrap();
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    problem(
        theirs,
        StatusCode::UNPROCESSABLE_ENTITY,
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;

    // The admin's own repeat is still the replay of the first answer.
    let again = with_key(&admin).send().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM erasures")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn an_erasure_without_a_valid_address_is_422() {
    let app = TestApp::spawn().await;
    let admin = app.key("hq", Role::Admin).await;
    for (body, field) in [
        (json!({}), "email"),
        (json!({"org_id": "acme"}), "email"),
        (json!({"email": "not an email"}), "email"),
        (json!({"phone": "07700 900123"}), "phone"),
        (json!({"email": GUEST, "org_id": ""}), "org_id"),
    ] {
        let response = erase(&app, &admin, body.clone()).await;
        let problem = problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body} → {problem}");
    }
    let response = erase(&app, &admin, json!({"email": GUEST, "name": "x"})).await;
    problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
}

#[tokio::test]
async fn an_erased_guest_is_gone_from_the_api_and_stays_suppressed() {
    let app = TestApp::spawn().await;
    let admin = app.key("hq", Role::Admin).await;
    let planner = app.key("acme", Role::Planner).await;
    // The guest in a suppression entry, in a stored idempotent response, and in a job.
    let response = app
        .post("/v1/suppressions", &planner)
        .header("Idempotency-Key", "unsub-1")
        .json(
            &json!({"channel": "email", "address": "Guest@Example.com", "reason": "unsubscribed"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let job = app
        .enqueue(
            json!({"kind": "noop", "args": {"note": "invite Guest@Example.com"}, "org_id": "acme"}),
        )
        .await;

    let response = erase(&app, &admin, json!({"email": " GUEST@example.com "})).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let text = response.text().await.unwrap();
    assert!(!text.to_lowercase().contains(GUEST), "{text}");
    let record: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(record["org_id"], Value::Null);
    assert_eq!(record["counts"]["jobs.args"], 1, "{record}");
    assert_eq!(record["counts"]["idempotency_keys.response"], 1, "{record}");
    assert_eq!(record["counts"]["suppressions.address"], 1, "{record}");
    assert_eq!(record["email_hash"].as_str().unwrap().len(), 64);

    let shown: Value = app
        .get(&format!("/v1/jobs/{}", job["id"]), &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["args"]["note"], "invite [erased]");
    // The planner's entry kept its reason but lost its address; the global `erased` entry has
    // none either.
    let listed: Value = app
        .get("/v1/suppressions", &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = listed["suppressions"].as_array().unwrap();
    let mut seen: Vec<(Value, Value, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["org_id"].clone(),
                e["reason"].clone(),
                e["address"].clone(),
            )
        })
        .collect();
    seen.sort_by_key(|s| s.0.to_string());
    assert_eq!(
        seen,
        [
            (json!("acme"), json!("unsubscribed"), Value::Null),
            (Value::Null, json!("erased"), Value::Null),
        ]
    );
    // The planner's own entry keeps its hash; the global one shows none to a planner.
    for entry in entries {
        let expected = match entry["org_id"].is_null() {
            true => &Value::Null,
            false => &record["email_hash"],
        };
        assert_eq!(&entry["address_hash"], expected, "{entry}");
    }
    // The replayed idempotent response was redacted too.
    let replay = app
        .post("/v1/suppressions", &planner)
        .header("Idempotency-Key", "unsub-1")
        .json(
            &json!({"channel": "email", "address": "Guest@Example.com", "reason": "unsubscribed"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed = replay.text().await.unwrap();
    assert!(!replayed.to_lowercase().contains(GUEST), "{replayed}");
    // Adding the address again does not bring it back into the erased entry.
    let admin_add = app
        .post("/v1/suppressions", &admin)
        .json(&json!({"channel": "email", "address": GUEST, "global": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(admin_add.status(), StatusCode::OK);
    let entry: Value = admin_add.json().await.unwrap();
    assert_eq!(
        (entry["reason"].clone(), entry["address"].clone()),
        (json!("erased"), Value::Null)
    );
    // Only an admin may take an erased guest off the list.
    let response = app
        .client
        .delete(format!("{}/v1/suppressions", app.base))
        .bearer_auth(&app.operator)
        .json(&json!({"channel": "email", "address": GUEST, "global": true}))
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
}

#[tokio::test]
async fn an_erasure_for_one_organisation_suppresses_in_its_list() {
    let app = TestApp::spawn().await;
    let admin = app.key("hq", Role::Admin).await;
    let response = erase(
        &app,
        &admin,
        json!({"org_id": "acme", "email": GUEST, "phone": "+44 7700 900123"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let record: Value = response.json().await.unwrap();
    assert_eq!(record["org_id"], "acme");
    assert!(record["phone_hash"].is_string());
    assert_eq!(record["suppression_ids"].as_array().unwrap().len(), 2);
    let rows: Vec<(Option<String>, String, String)> =
        sqlx::query_as("SELECT org_id, channel, reason FROM suppressions ORDER BY channel")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (Some("acme".into()), "email".into(), "erased".into()),
            (Some("acme".into()), "sms".into(), "erased".into()),
        ]
    );
}
