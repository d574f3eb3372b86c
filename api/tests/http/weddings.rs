//! `/v1/weddings`: registering upcoming weddings (DST-correct start instants) and listing them
//! per organisation.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;

async fn register(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.post("/v1/weddings", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_planner_registers_a_wedding_and_its_start_is_computed_in_its_zone() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let response = register(
        &app,
        &planner,
        json!({
            "name": "Ada & Grace",
            "date": "2030-06-22",
            "start_time": "14:00",
            "timezone": "Europe/London",
            "expected_guests": 120,
            "expected_photos": 1800
        }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let wedding: Value = response.json().await.unwrap();
    // British Summer Time: 14:00 local is 13:00 UTC.
    assert_eq!(wedding["starts_at"], "2030-06-22T13:00:00Z");
    assert_eq!(wedding["org_id"], "acme");
    assert_eq!(wedding["start_time"], "14:00:00");
    assert_eq!(wedding["timezone"], "Europe/London");

    let winter: Value = register(
        &app,
        &planner,
        json!({ "date": "2030-01-12", "start_time": "14:00", "timezone": "Europe/London" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(winter["starts_at"], "2030-01-12T14:00:00Z");
}

#[tokio::test]
async fn a_local_time_the_clocks_skip_or_an_unknown_zone_is_422() {
    let app = TestApp::spawn().await;
    // 01:30 on the last Sunday of March 2030 does not exist in London.
    let skipped = register(
        &app,
        &app.operator,
        json!({ "date": "2030-03-31", "start_time": "01:30", "timezone": "Europe/London" }),
    )
    .await;
    let body = problem(
        skipped,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "start_time");

    let bad = register(
        &app,
        &app.operator,
        json!({
            "date": "2030-13-01", "start_time": "25:00", "timezone": "Mars/Olympus",
            "expected_guests": -3
        }),
    )
    .await;
    let body = problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "VALIDATION_ERROR").await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["date", "start_time", "timezone", "expected_guests"]
    );
}

#[tokio::test]
async fn planners_see_and_register_only_their_own_organisations_weddings() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", Role::Planner).await;
    let other = app.key("other", Role::Planner).await;
    let wedding =
        json!({ "date": "2030-06-22", "start_time": "15:30", "timezone": "Europe/Paris" });
    assert_eq!(
        register(&app, &acme, wedding.clone()).await.status(),
        StatusCode::CREATED
    );
    let mut for_acme = wedding.clone();
    for_acme["org_id"] = json!("acme");
    assert_eq!(
        register(&app, &app.operator, for_acme).await.status(),
        StatusCode::CREATED
    );
    let mut spoofed = wedding;
    spoofed["org_id"] = json!("acme");
    problem(
        register(&app, &other, spoofed).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    let list = |key: String| {
        let app = &app;
        async move {
            let body: Value = app
                .get("/v1/weddings", &key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["weddings"].as_array().unwrap().len()
        }
    };
    assert_eq!(list(acme).await, 2);
    assert_eq!(list(other).await, 0);
    assert_eq!(list(app.operator.clone()).await, 2);
}
