//! `/v1/schedules`: listing cron entries with their next fire times, and running one by hand.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::Value;
use wedsync_scheduler::Entry;

fn nightly() -> Entry {
    Entry::parse(
        "nightly-noop",
        "0 30 1 * * *",
        chrono_tz::Europe::London,
        "noop",
        serde_json::json!({ "sleep_ms": 1 }),
        "default",
    )
    .unwrap()
}

#[tokio::test]
async fn schedules_list_entries_with_their_next_fire_times() {
    let app = TestApp::spawn_with(|state| state.with_schedules(vec![nightly()])).await;
    let body: Value = app
        .get("/v1/schedules", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entry = &body["schedules"][0];
    assert_eq!(entry["name"], "nightly-noop");
    assert_eq!(entry["timezone"], "Europe/London");
    assert_eq!(entry["last_fire_at"], Value::Null);
    let next: Vec<chrono::DateTime<chrono::Utc>> =
        serde_json::from_value(entry["next_fire_times"].clone()).unwrap();
    assert_eq!(next.len(), 5);
    assert!(next.windows(2).all(|w| w[0] < w[1]));
    let local = next[0].with_timezone(&chrono_tz::Europe::London);
    assert_eq!(local.format("%H:%M:%S").to_string(), "01:30:00");
}

#[tokio::test]
async fn running_a_schedule_by_hand_enqueues_its_job() {
    let app = TestApp::spawn_with(|state| state.with_schedules(vec![nightly()])).await;
    let response = app
        .post("/v1/schedules/nightly-noop/run", &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let job: Value = response.json().await.unwrap();
    assert_eq!(
        (job["kind"].as_str(), job["state"].as_str()),
        (Some("noop"), Some("available"))
    );
    assert_eq!(job["args"]["sleep_ms"], 1);
    assert_eq!(app.job_count().await, 1);

    let missing = app
        .post("/v1/schedules/no-such-entry/run", &app.operator)
        .send()
        .await
        .unwrap();
    problem(missing, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}
