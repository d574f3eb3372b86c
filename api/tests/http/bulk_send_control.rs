//! `POST /v1/bulk-sends/{id}/pause|resume|cancel`: the state changes, a resume or cancel wakes
//! the send's waiting batch jobs (and only that send's), a cancel stops every queued delivery
//! and leaves sent ones alone, a send cancelled before its fan-out gets no delivery, impossible
//! transitions are 409 and other organisations' sends 404.
//!
//! Sends are created through the API and fanned out by running the fan-out job directly, so
//! their deliveries and `deliver_batch` jobs exist; nothing sends them. A snooze is simulated
//! by making batch jobs `scheduled` a day ahead.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;
use wedsync_kinds::AppContext;
use wedsync_kinds::messages::{self, BulkSendFanout};
use wedsync_queue::{Job, JobContext, Outcome};

const ORG: &str = "acme";
/// Three batches of the default 50: ordinals 0–49, 50–99, 100–119.
/// Three batches of the default size, the last one short.
const GUESTS: usize = 2 * messages::DEFAULT_BATCH_SIZE as usize + 20;
const BATCHES: usize = 3;

/// A `send_at` far enough ahead that nothing runs before the test ends, and within the
/// 400 days a send may be scheduled ahead.
fn months_ahead() -> String {
    (chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339()
}

fn body(guests: usize, send_at: Option<&str>) -> Value {
    let recipients: Vec<Value> = (0..guests)
        .map(|i| json!({"address": format!("guest{i}@example.com"), "variables": {"name": "G"}}))
        .collect();
    json!({
        "category": "transactional",
        "sender": {"name": "Ann and Bob", "email": "hello@ann-and-bob.example",
                   "postal_address": "1 Chapel Lane, York"},
        "template": {"subject": "Hello {{ name }}", "text": "Dear {{ name }}"},
        "recipients": recipients,
        "send_at": send_at,
    })
}

/// A send of `guests` recipients created by `planner`; returns its id.
async fn create(app: &TestApp, planner: &str, guests: usize, send_at: Option<&str>) -> String {
    let response = app
        .post("/v1/bulk-sends", planner)
        .json(&body(guests, send_at))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let send: Value = response.json().await.unwrap();
    send["id"].as_str().unwrap().to_owned()
}

async fn run_fanout(app: &TestApp, id: &str) -> Outcome {
    BulkSendFanout {
        send_id: id.to_owned(),
    }
    .run(JobContext {
        app: AppContext::new(app.db.pool.clone()),
        job_id: 0,
        attempt: 1,
        max_attempts: 10,
        org_id: Some(ORG.to_owned()),
        lease: wedsync_queue::Lease::unbounded(),
    })
    .await
    .unwrap()
}

/// A planner of `ORG` and a send of [`GUESTS`] fanned out into deliveries and batch jobs.
async fn fanned_out_send(app: &TestApp) -> (String, String) {
    let planner = app.key(ORG, Role::Planner).await;
    let id = create(app, &planner, GUESTS, None).await;
    run_fanout(app, &id).await;
    (planner, id)
}

async fn act(app: &TestApp, key: &str, id: &str, action: &str) -> reqwest::Response {
    app.post(&format!("/v1/bulk-sends/{id}/{action}"), key)
        .send()
        .await
        .unwrap()
}

/// `act`, expecting a 200 with the send.
async fn act_ok(app: &TestApp, key: &str, id: &str, action: &str) -> Value {
    let response = act(app, key, id, action).await;
    assert_eq!(response.status(), StatusCode::OK, "{action}");
    response.json().await.unwrap()
}

/// Make the batch jobs of `id` wait a day, as a snooze would.
async fn snooze_batches(app: &TestApp, id: &str) -> u64 {
    sqlx::query(
        "UPDATE jobs SET state = 'scheduled', scheduled_at = now() + interval '1 day'
          WHERE kind = 'deliver_batch' AND args->>'send_id' = $1",
    )
    .bind(id)
    .execute(&app.db.pool)
    .await
    .unwrap()
    .rows_affected()
}

/// The states of `id`'s batch jobs that are due now, and of those that are not.
async fn batch_job_states(app: &TestApp, id: &str) -> Vec<(String, bool)> {
    sqlx::query_as(
        "SELECT state, scheduled_at <= now() FROM jobs
          WHERE kind = 'deliver_batch' AND args->>'send_id' = $1 ORDER BY id",
    )
    .bind(id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
}

async fn delivery_status(app: &TestApp, id: &str, ordinal: i32) -> String {
    sqlx::query_scalar("SELECT status FROM deliveries WHERE send_id = $1::uuid AND ordinal = $2")
        .bind(id)
        .bind(ordinal)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn pausing_an_active_send_pauses_it() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    let paused = act_ok(&app, &planner, &id, "pause").await;
    assert_eq!(paused["state"], "paused");
    assert!(paused["paused_at"].is_string(), "{paused}");
    let shown: Value = app
        .get(&format!("/v1/bulk-sends/{id}"), &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown, paused, "the answer is the send as GET shows it");
}

#[tokio::test]
async fn pausing_a_paused_send_again_succeeds_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    let first = act_ok(&app, &planner, &id, "pause").await;
    let second = act_ok(&app, &planner, &id, "pause").await;
    assert_eq!(second["state"], "paused");
    assert_eq!(second["paused_at"], first["paused_at"]);
    assert_eq!(second["updated_at"], first["updated_at"]);
}

#[tokio::test]
async fn resuming_wakes_the_sends_snoozed_batch_jobs_at_once_and_only_its_own() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    let other = create(&app, &planner, 10, None).await;
    run_fanout(&app, &other).await;
    act_ok(&app, &planner, &id, "pause").await;
    assert_eq!(snooze_batches(&app, &id).await, BATCHES as u64);
    assert_eq!(snooze_batches(&app, &other).await, 1);

    let resumed = act_ok(&app, &planner, &id, "resume").await;
    assert_eq!(resumed["state"], "active");
    assert_eq!(resumed["paused_at"], Value::Null);
    assert_eq!(
        batch_job_states(&app, &id).await,
        vec![("available".to_owned(), true); BATCHES]
    );
    assert_eq!(
        batch_job_states(&app, &other).await,
        [("scheduled".to_owned(), false)],
        "another send's jobs keep waiting"
    );
}

#[tokio::test]
async fn resuming_an_active_send_succeeds_and_wakes_nothing() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    // A batch job waiting for its retry (a real backoff, not a pause) keeps waiting.
    snooze_batches(&app, &id).await;
    let resumed = act_ok(&app, &planner, &id, "resume").await;
    assert_eq!(resumed["state"], "active");
    assert_eq!(
        batch_job_states(&app, &id).await,
        vec![("scheduled".to_owned(), false); BATCHES]
    );
}

#[tokio::test]
async fn cancelling_cancels_the_queued_deliveries_and_leaves_sent_ones_alone() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    // Ordinal 0 went out already; ordinal 1 is in a running batch job's hands.
    for (ordinal, status) in [(0, "sent"), (1, "sending")] {
        sqlx::query("UPDATE deliveries SET status = $3 WHERE send_id = $1::uuid AND ordinal = $2")
            .bind(&id)
            .bind(ordinal)
            .bind(status)
            .execute(&app.db.pool)
            .await
            .unwrap();
    }

    let cancelled = act_ok(&app, &planner, &id, "cancel").await;
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["cancelled_at"].is_string(), "{cancelled}");
    let counts = &cancelled["counts"];
    assert_eq!(counts["cancelled"], GUESTS - 2);
    assert_eq!(counts["queued"], 0);
    assert_eq!(counts["sent"], 1);
    assert_eq!(counts["sending"], 1, "the batch job holding it settles it");
    assert_eq!(delivery_status(&app, &id, 0).await, "sent");
    assert_eq!(delivery_status(&app, &id, 2).await, "cancelled");
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE send_id = $1::uuid AND status = 'cancelled'",
    )
    .bind(&id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored, GUESTS as i64 - 2, "the counter matches the rows");
}

#[tokio::test]
async fn cancelling_wakes_the_waiting_batch_jobs_so_they_end() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    act_ok(&app, &planner, &id, "pause").await;
    snooze_batches(&app, &id).await;
    act_ok(&app, &planner, &id, "cancel").await;
    assert_eq!(
        batch_job_states(&app, &id).await,
        vec![("available".to_owned(), true); BATCHES]
    );
}

#[tokio::test]
async fn cancelling_a_cancelled_send_again_succeeds_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    let first = act_ok(&app, &planner, &id, "cancel").await;
    let second = act_ok(&app, &planner, &id, "cancel").await;
    assert_eq!(second["state"], "cancelled");
    assert_eq!(second["cancelled_at"], first["cancelled_at"]);
    assert_eq!(second["counts"], first["counts"]);
}

#[tokio::test]
async fn resuming_a_cancelled_send_is_a_conflict() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    act_ok(&app, &planner, &id, "cancel").await;
    let response = act(&app, &planner, &id, "resume").await;
    let body = problem(response, StatusCode::CONFLICT, "CONFLICT").await;
    assert_eq!(
        body["detail"],
        "the send is cancelled; it cannot be resumed"
    );
}

#[tokio::test]
async fn a_done_send_cannot_be_paused_or_cancelled() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    sqlx::query("UPDATE bulk_sends SET state = 'done' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.db.pool)
        .await
        .unwrap();
    for action in ["pause", "cancel"] {
        let response = act(&app, &planner, &id, action).await;
        problem(response, StatusCode::CONFLICT, "CONFLICT").await;
    }
    assert_eq!(delivery_status(&app, &id, 0).await, "queued");
}

#[tokio::test]
async fn another_organisations_planner_gets_404_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (planner, id) = fanned_out_send(&app).await;
    let stranger = app.key("globex", Role::Planner).await;
    for action in ["pause", "resume", "cancel"] {
        let response = act(&app, &stranger, &id, action).await;
        problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
    let shown: Value = app
        .get(&format!("/v1/bulk-sends/{id}"), &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["state"], "active");
    assert_eq!(shown["counts"]["queued"], GUESTS);
}

#[tokio::test]
async fn an_operator_may_pause_any_organisations_send() {
    let app = TestApp::spawn().await;
    let (_, id) = fanned_out_send(&app).await;
    let paused = act_ok(&app, &app.operator, &id, "pause").await;
    assert_eq!(paused["state"], "paused");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = TestApp::spawn().await;
    let planner = app.key(ORG, Role::Planner).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [unknown.as_str(), "not-a-uuid"] {
        let response = act(&app, &planner, id, "cancel").await;
        problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    }
}

#[tokio::test]
async fn a_send_cancelled_before_its_fanout_gets_no_delivery() {
    let app = TestApp::spawn().await;
    let planner = app.key(ORG, Role::Planner).await;
    let id = create(&app, &planner, GUESTS, Some(&months_ahead())).await;

    let cancelled = act_ok(&app, &planner, &id, "cancel").await;
    assert_eq!(cancelled["counts"]["cancelled"], GUESTS);
    assert_eq!(cancelled["recipient_count"], GUESTS);
    let recipients: Option<Value> =
        sqlx::query_scalar("SELECT recipients FROM bulk_sends WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(recipients, None, "personal data does not wait for send_at");

    let outcome = run_fanout(&app, &id).await;
    assert_eq!(
        outcome,
        Outcome::Completed(Some(json!({"already_fanned_out": true})))
    );
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE send_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(deliveries, 0);
}

#[tokio::test]
async fn cancelling_before_the_fanout_wakes_a_fanout_waiting_for_its_send_time() {
    let app = TestApp::spawn().await;
    let planner = app.key(ORG, Role::Planner).await;
    let id = create(&app, &planner, 5, Some(&months_ahead())).await;
    let fanout_due = || async {
        sqlx::query_as::<_, (String, bool)>(
            "SELECT state, scheduled_at <= now() FROM jobs
              WHERE kind = 'bulk_send_fanout' AND args->>'send_id' = $1",
        )
        .bind(&id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
    };
    assert_eq!(fanout_due().await, ("scheduled".to_owned(), false));
    act_ok(&app, &planner, &id, "cancel").await;
    assert_eq!(fanout_due().await, ("available".to_owned(), true));
}
