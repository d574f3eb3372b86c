//! `GET /v1/metrics/hourly` and the raw event every request leaves.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::Value;
use wedsync_api::Role;
use wedsync_metrics::{EventWriter, EventWriterConfig};

/// Rollup rows of three hours: two job keys and one API key each.
async fn seed_rollup(app: &TestApp) {
    sqlx::query(
        "INSERT INTO metric_hourly (hour, source, queue, kind, method, route, count, errors,
                                    p50_ms, p95_ms, p99_ms)
         SELECT '2026-11-20T10:00:00Z'::timestamptz + make_interval(hours => h),
                k.source, k.queue, k.kind, k.method, k.route, 10 * h + 1, h, 1.5, 9.5, 20.25
           FROM generate_series(0, 2) h,
                (VALUES ('job', 'email', 'send_email', NULL, NULL),
                        ('job', 'photos', 'resize', NULL, NULL),
                        ('api', NULL, NULL, 'GET', '/v1/jobs/{id}'))
                  AS k(source, queue, kind, method, route)",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn get_rows(app: &TestApp, query: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/v1/metrics/hourly?{query}"), &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["truncated"], false);
    body["rows"].as_array().unwrap().clone()
}

const RANGE: &str = "from=2026-11-20T10:00:00Z&to=2026-11-20T12:00:00Z";

#[tokio::test]
async fn hourly_rows_of_the_range_come_by_hour_then_key() {
    let app = TestApp::spawn().await;
    seed_rollup(&app).await;
    let rows = get_rows(&app, RANGE).await;
    // `to` is exclusive: hours 10:00 and 11:00, three keys each, by source (`api`, `job`) then key.
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0]["hour"], "2026-11-20T10:00:00Z");
    assert_eq!(rows[3]["hour"], "2026-11-20T11:00:00Z");
    assert_eq!(
        (&rows[0]["source"], &rows[0]["route"], &rows[0]["method"]),
        (
            &Value::from("api"),
            &Value::from("/v1/jobs/{id}"),
            &Value::from("GET")
        )
    );
    assert!(rows[0].get("queue").is_none());
    let job = &rows[4];
    assert_eq!(
        (&job["queue"], &job["kind"], &job["count"], &job["errors"]),
        (
            &Value::from("email"),
            &Value::from("send_email"),
            &Value::from(11),
            &Value::from(1)
        )
    );
    assert_eq!(
        (&job["p50_ms"], &job["p95_ms"], &job["p99_ms"]),
        (&Value::from(1.5), &Value::from(9.5), &Value::from(20.25))
    );
}

#[tokio::test]
async fn hourly_rows_filter_by_source_queue_and_kind() {
    let app = TestApp::spawn().await;
    seed_rollup(&app).await;
    let api = get_rows(&app, &format!("{RANGE}&source=api")).await;
    assert_eq!(api.len(), 2);
    assert!(api.iter().all(|r| r["source"] == "api"));
    let photos = get_rows(&app, &format!("{RANGE}&queue=photos")).await;
    assert_eq!(photos.len(), 2);
    assert!(photos.iter().all(|r| r["kind"] == "resize"));
    let send = get_rows(&app, &format!("{RANGE}&kind=send_email&source=job")).await;
    assert_eq!(send.len(), 2);
    assert!(
        get_rows(&app, &format!("{RANGE}&kind=nothing"))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn bad_parameters_are_validation_problems_naming_the_field() {
    let app = TestApp::spawn().await;
    for (query, field) in [
        ("from=yesterday", "from"),
        ("from=2026-11-20T12:00:00Z&to=2026-11-20T10:00:00Z", "from"),
        ("from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z", "to"),
        ("source=cron", "source"),
    ] {
        let response = app
            .get(&format!("/v1/metrics/hourly?{query}"), &app.operator)
            .send()
            .await
            .unwrap();
        let body = problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_ERROR",
        )
        .await;
        assert_eq!(body["errors"][0]["field"], field, "{query}: {body}");
    }
}

#[tokio::test]
async fn hourly_metrics_are_for_operators() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let response = app
        .get("/v1/metrics/hourly", &planner)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::FORBIDDEN, "FORBIDDEN").await;
    let response = app.get("/v1/metrics/hourly", "nope").send().await.unwrap();
    problem(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn every_request_leaves_a_raw_event_with_its_route_template() {
    let mut writer = None;
    let app = TestApp::spawn_with(|state| {
        let (sink, events) = EventWriter::spawn(state.pool.clone(), EventWriterConfig::default());
        writer = Some(events);
        state.with_events(sink)
    })
    .await;
    let queues = app.get("/v1/queues", &app.operator).send().await.unwrap();
    assert_eq!(queues.status(), StatusCode::OK);
    let missing = app
        .get("/v1/jobs/424242", &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Stopping the writer writes what it holds.
    writer.take().unwrap().finish().await;

    let events: Vec<(String, String, i16, bool)> = sqlx::query_as(
        "SELECT method, route, status, error FROM metric_events WHERE source = 'api' ORDER BY route",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            ("GET".to_owned(), "/v1/jobs/{id}".to_owned(), 404, false),
            ("GET".to_owned(), "/v1/queues".to_owned(), 200, false),
        ]
    );
}
