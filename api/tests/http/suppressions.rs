//! `/v1/suppressions`: normalised, idempotent adds; typed 422s; who sees and writes which list.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;
use wedsync_kinds::suppression::{Address, Channel};

async fn add(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .post("/v1/suppressions", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn list(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let body: Value = app
        .get(&format!("/v1/suppressions{query}"), key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["suppressions"].as_array().expect("a list").clone()
}

fn delete(app: &TestApp, key: &str, body: Value) -> reqwest::RequestBuilder {
    app.client
        .delete(format!("{}/v1/suppressions", app.base))
        .bearer_auth(key)
        .json(&body)
}

fn addresses(entries: &[Value]) -> Vec<&str> {
    entries
        .iter()
        .map(|e| e["address"].as_str().unwrap_or("<erased>"))
        .collect()
}

#[tokio::test]
async fn an_added_address_is_normalised_and_adding_it_again_is_a_duplicate() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let (status, first) = add(
        &app,
        &planner,
        json!({"channel": "email", "address": "  Guest@Example.COM ", "reason": "unsubscribed"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["address"], "guest@example.com");
    assert_eq!(first["org_id"], "acme");
    assert_eq!(first["reason"], "unsubscribed");
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["address_hash"].as_str().unwrap().len(), 64);

    let (status, again) = add(
        &app,
        &planner,
        json!({"channel": "email", "address": "guest@example.com", "reason": "complaint"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["reason"], "unsubscribed", "the first entry is kept");

    let (status, phone) = add(
        &app,
        &planner,
        json!({"channel": "sms", "address": "+44 (7700) 900-123"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(phone["address"], "+447700900123");
    assert_eq!(phone["reason"], "manual");
}

#[tokio::test]
async fn invalid_addresses_channels_and_reasons_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    for (body, field) in [
        (
            json!({"channel": "email", "address": "guest.example.com"}),
            "address",
        ),
        (
            json!({"channel": "sms", "address": "07700 900123"}),
            "address",
        ),
        (
            json!({"channel": "fax", "address": "guest@example.com"}),
            "channel",
        ),
        (json!({"address": "guest@example.com"}), "channel"),
        (json!({"channel": "email"}), "address"),
        (
            json!({"channel": "email", "address": "g@example.com", "reason": "erased"}),
            "reason",
        ),
        (
            json!({"channel": "email", "address": "g@example.com", "reason": "bored"}),
            "reason",
        ),
    ] {
        let response = app
            .post("/v1/suppressions", &planner)
            .json(&body)
            .send()
            .await
            .unwrap();
        let problem = problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body} → {problem}");
    }
    let bad = problem(
        app.get("/v1/suppressions?channel=fax", &planner)
            .send()
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(bad["errors"][0]["field"], "channel");
    assert!(
        list(&app, &planner, "").await.is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_planner_sees_their_own_list_and_the_global_one_unreadable_but_no_other() {
    let app = TestApp::spawn().await;
    let admin = app.key("hq", Role::Admin).await;
    let acme = app.key("acme", Role::Planner).await;
    let other = app.key("other", Role::Planner).await;
    let entry = |address: &str| json!({"channel": "email", "address": address});
    let global = json!({"channel": "email", "address": "global@example.com", "global": true});
    assert_eq!(add(&app, &admin, global).await.0, StatusCode::CREATED);
    assert_eq!(
        add(&app, &acme, entry("a@example.com")).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        add(&app, &other, entry("o@example.com")).await.0,
        StatusCode::CREATED
    );

    let seen = list(&app, &acme, "").await;
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0]["address"], "a@example.com");
    // The global entry without its readable address, nor its hash (a phone number's is
    // reversed by trying every number): it may be any organisation's guest.
    assert!(seen[1]["org_id"].is_null());
    assert!(seen[1]["address"].is_null(), "{}", seen[1]);
    assert!(seen[1]["address_hash"].is_null(), "{}", seen[1]);
    // An admin sees it whole.
    let whole = list(&app, &admin, "?global=true").await;
    assert_eq!(
        whole[0]["address_hash"],
        Address::parse(Channel::Email, "global@example.com")
            .unwrap()
            .hash()
    );
    // Naming another organisation shows a planner nothing of it.
    assert!(list(&app, &acme, "?org_id=other").await.is_empty());
    assert_eq!(
        addresses(&list(&app, &app.operator, "?org_id=other").await),
        ["o@example.com"]
    );
    assert_eq!(
        addresses(&list(&app, &app.operator, "?global=true").await),
        ["global@example.com"]
    );
    assert_eq!(list(&app, &app.operator, "").await.len(), 3);
    assert!(
        list(&app, &app.operator, "?reason=complaint")
            .await
            .is_empty()
    );
    assert_eq!(
        list(&app, &app.operator, "?channel=email&reason=manual")
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn listings_page_by_id() {
    let app = TestApp::spawn().await;
    for i in 0..3 {
        let body = json!({"channel": "email", "address": format!("g{i}@example.com")});
        assert_eq!(add(&app, &app.operator, body).await.0, StatusCode::CREATED);
    }
    let page: Value = app
        .get("/v1/suppressions?limit=2", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["suppressions"].as_array().unwrap().len(), 2);
    let before = page["next_before"].as_i64().expect("a next page");
    let rest = list(&app, &app.operator, &format!("?limit=2&before={before}")).await;
    assert_eq!(addresses(&rest), ["g0@example.com"]);
}

#[tokio::test]
async fn only_an_admin_writes_the_global_list_and_planners_only_their_own() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let admin = app.key("hq", Role::Admin).await;
    let global = json!({"channel": "email", "address": "g@example.com", "global": true});
    let response = app
        .post("/v1/suppressions", &planner)
        .json(&global)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let elsewhere = json!({"channel": "email", "address": "g@example.com", "org_id": "other"});
    let response = app
        .post("/v1/suppressions", &planner)
        .json(&elsewhere)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;

    let (status, entry) = add(&app, &admin, global).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(entry["org_id"], Value::Null);
    // An operator may write any organisation's list.
    let (status, entry) = add(&app, &app.operator, elsewhere).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(entry["org_id"], "other");
}

#[tokio::test]
async fn deleting_removes_the_entry_and_a_missing_one_is_404() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let body = json!({"channel": "email", "address": "guest@example.com"});
    let (_, added) = add(&app, &planner, body).await;

    let response = delete(
        &app,
        &planner,
        json!({"channel": "email", "address": " GUEST@example.com"}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let removed: Value = response.json().await.unwrap();
    assert_eq!(removed["id"], added["id"]);
    assert!(list(&app, &planner, "").await.is_empty());

    let again = delete(
        &app,
        &planner,
        json!({"channel": "email", "address": "guest@example.com"}),
    )
    .send()
    .await
    .unwrap();
    problem(again, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let bad = delete(
        &app,
        &planner,
        json!({"channel": "email", "address": "nope"}),
    )
    .send()
    .await
    .unwrap();
    problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
}

/// SPEC §3: writes accept `Idempotency-Key`. A delete whose answer was lost, repeated with its
/// key, gets the first answer (the removed entry), not a 404 for the entry it removed.
#[tokio::test]
async fn a_delete_repeated_with_its_idempotency_key_replays_the_removed_entry() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let body = json!({"channel": "email", "address": "guest@example.com"});
    let (_, added) = add(&app, &planner, body.clone()).await;
    let keyed = || delete(&app, &planner, body.clone()).header("idempotency-key", "undo-1");

    let first = keyed().send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["id"], added["id"]);

    let repeat = keyed().send().await.unwrap();
    assert_eq!(repeat.status(), StatusCode::OK);
    assert_eq!(repeat.headers()["idempotent-replayed"], "true");
    assert_eq!(repeat.json::<Value>().await.unwrap(), first);

    // Without the key a repeat is a new request: the entry is gone.
    let unkeyed = delete(&app, &planner, body).send().await.unwrap();
    problem(unkeyed, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

/// A NUL character cannot be stored in PostgreSQL text: where it reaches a statement through a
/// field no check looks at, the answer is a 400 naming it, not a 500.
#[tokio::test]
async fn a_nul_character_in_an_org_id_is_a_400_not_a_500() {
    let app = TestApp::spawn().await;
    // An operator's listing reads that organisation's entries (a planner's, naming another
    // organisation than their own, reads nothing at all).
    let listing = app
        .get("/v1/suppressions?org_id=%00", &app.operator)
        .send()
        .await
        .unwrap();
    problem(listing, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let jobs = app
        .get("/v1/jobs?queue=a%00b", &app.operator)
        .send()
        .await
        .unwrap();
    problem(jobs, StatusCode::BAD_REQUEST, "BAD_REQUEST").await;
    let (status, body) = add(
        &app,
        &app.operator,
        json!({"channel": "email", "address": "guest@example.com", "org_id": "a\u{0}b"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "BAD_REQUEST");
    assert!(body["detail"].as_str().unwrap().contains("NUL"), "{body}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM suppressions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_planner_cannot_remove_a_guests_own_opt_out_or_complaint() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let admin = app.key("acme", Role::Admin).await;
    for (address, reason) in [
        ("left@example.com", "unsubscribed"),
        ("spam@example.com", "complaint"),
    ] {
        let body = json!({"channel": "email", "address": address, "reason": reason});
        assert_eq!(add(&app, &planner, body).await.0, StatusCode::CREATED);
        let target = json!({"channel": "email", "address": address});
        let refused = delete(&app, &planner, target.clone()).send().await.unwrap();
        let body = problem(refused, StatusCode::FORBIDDEN, "FORBIDDEN").await;
        assert!(body["detail"].as_str().unwrap().contains(reason), "{body}");
        assert_eq!(list(&app, &planner, "").await.len(), 1, "still suppressed");
        let removed = delete(&app, &admin, target).send().await.unwrap();
        assert_eq!(removed.status(), StatusCode::OK);
        assert!(list(&app, &planner, "").await.is_empty());
    }
}
