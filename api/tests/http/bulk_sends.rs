//! `/v1/bulk-sends`: a valid send is stored with its fan-out enqueued; 422s name the recipient
//! and the variable at fault; more than 50,000 recipients has its own code; organisations do
//! not see each other's sends.

use crate::support::{TestApp, problem};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wedsync_api::Role;

fn body(recipients: Value) -> Value {
    json!({
        "category": "marketing",
        "sender": {"name": "Ann and Bob", "email": "Hello@Ann-and-Bob.example",
                   "postal_address": "1 Chapel Lane, York"},
        "template": {"subject": "Save the date, {{ name }}",
                     "text": "Dear {{ name }}, table {{ table }}.",
                     "html": "<p>Dear {{ name }}</p>"},
        "recipients": recipients,
    })
}

/// Bulk sends in the database, of every organisation.
async fn stored_sends(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM bulk_sends")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn create(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.post("/v1/bulk-sends", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_valid_send_is_stored_with_its_fanout_enqueued() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": " Ann@Example.com ", "variables": {"name": "Ann", "table": 1}},
        {"address": "bob@example.com", "variables": {"name": "Bob", "table": 2}},
    ]);
    let response = create(&app, &planner, &body(recipients)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let send: Value = response.json().await.unwrap();
    assert_eq!(send["org_id"], "acme");
    assert_eq!(send["state"], "active");
    assert_eq!(send["recipient_count"], 2);
    assert_eq!(
        send["counts"]["queued"], 0,
        "no deliveries before the fan-out"
    );
    let id = send["id"].as_str().unwrap();
    let jobs: Vec<(String, Value)> =
        sqlx::query_as("SELECT kind, args FROM jobs WHERE org_id = 'acme'")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        jobs,
        [("bulk_send_fanout".to_owned(), json!({"send_id": id}))]
    );
    let stored: Value = sqlx::query_scalar("SELECT recipients FROM bulk_sends WHERE id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored[0]["address"], "ann@example.com");

    let fetched: Value = app
        .get(&format!("/v1/bulk-sends/{id}"), &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["id"], id);
    assert_eq!(fetched["counts"]["sent"], 0);
}

#[tokio::test]
async fn problems_name_the_recipient_and_the_variable() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}},
        {"address": "not an address", "variables": {"name": "Bob", "table": 2}},
        {"address": "cy@example.com", "variables": {"name": "Cy"}},
    ]);
    let response = create(&app, &planner, &body(recipients)).await;
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
    assert_eq!(
        fields,
        ["recipients[1].address", "recipients[2].variables.table"]
    );
    assert_eq!(stored_sends(&app).await, 0, "nothing is stored");
}

#[tokio::test]
async fn a_bad_template_and_a_bad_sender_are_named() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut bad = body(json!([{"address": "a@example.com", "variables": {"name": "A"}}]));
    bad["sender"]["email"] = json!("nobody");
    bad["category"] = json!("spam");
    let response = create(&app, &planner, &bad).await;
    let first = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    let text = first["errors"].to_string();
    assert!(
        text.contains("sender.email") && text.contains("category"),
        "{text}"
    );

    let mut broken =
        body(json!([{"address": "a@example.com", "variables": {"name": "A", "table": 1}}]));
    broken["template"]["text"] = json!("{% if %}");
    let response = create(&app, &planner, &broken).await;
    let second = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    assert_eq!(second["errors"][0]["field"], "template.text");
}

#[tokio::test]
async fn more_than_fifty_thousand_recipients_are_refused_with_their_own_code() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients: Vec<Value> = (0..50_001)
        .map(|i| json!({"address": format!("g{i}@example.com"), "variables": {"name": "G", "table": 1}}))
        .collect();
    // Over the API's usual 1 MiB body limit, and through the Idempotency-Key middleware.
    let response = app
        .post("/v1/bulk-sends", &planner)
        .header("Idempotency-Key", "too-many-1")
        .json(&body(Value::Array(recipients)))
        .send()
        .await
        .unwrap();
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "TOO_MANY_RECIPIENTS",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("50000"), "{body}");
}

#[tokio::test]
async fn a_body_over_the_bulk_send_limit_is_a_413_stating_that_limit() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let padding = "x".repeat(wedsync_api::routes::bulk_sends::BODY_LIMIT);
    let mut send = body(json!([{"address": "ann@example.com", "variables": {"pad": padding}}]));
    send["category"] = json!("transactional");
    for with_key in [false, true] {
        let mut request = app.post("/v1/bulk-sends", &planner).json(&send);
        if with_key {
            request = request.header("Idempotency-Key", "too-large-1");
        }
        let response = request.send().await.unwrap();
        let body = problem(response, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE").await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("33554432"), "{detail}");
    }
}

#[tokio::test]
async fn another_organisations_send_is_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.key("acme", Role::Planner).await;
    let other = app.key("other", Role::Planner).await;
    let response = create(
        &app,
        &acme,
        &body(json!([{"address": "a@example.com", "variables": {"name": "A", "table": 1}}])),
    )
    .await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for path in [
        format!("/v1/bulk-sends/{id}"),
        format!("/v1/bulk-sends/{id}/deliveries"),
    ] {
        let response = app.get(&path, &other).send().await.unwrap();
        problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
        let response = app.get(&path, &acme).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    // The operator sees every organisation's sends.
    let response = app
        .get(&format!("/v1/bulk-sends/{id}"), &app.operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .get("/v1/bulk-sends/not-a-uuid", &acme)
        .send()
        .await
        .unwrap();
    problem(response, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}

#[tokio::test]
async fn deliveries_are_listed_by_status_in_pages() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients: Vec<Value> = (0..5)
        .map(|i| json!({"address": format!("g{i}@example.com"), "variables": {"name": "G", "table": i}}))
        .collect();
    let response = create(&app, &planner, &body(Value::Array(recipients))).await;
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the fan-out and two deliveries would have done.
    sqlx::query(
        "INSERT INTO deliveries (send_id, ordinal, address, address_hash, variables)
         SELECT $1::uuid, g, 'g' || g || '@example.com', repeat('0', 64), '{}'
           FROM generate_series(0, 4) g",
    )
    .bind(&id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE deliveries SET status = 'sent' WHERE ordinal IN (1, 3)")
        .execute(&app.db.pool)
        .await
        .unwrap();

    let page = |query: String| {
        let app = &app;
        let planner = &planner;
        let id = &id;
        async move {
            let response = app
                .get(&format!("/v1/bulk-sends/{id}/deliveries{query}"), planner)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let first = page("?status=queued&limit=2".to_owned()).await;
    let ordinals: Vec<i64> = first["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ordinal"].as_i64().unwrap())
        .collect();
    assert_eq!(ordinals, [0, 2]);
    let after = first["next_after"].as_i64().unwrap();
    let second = page(format!("?status=queued&limit=2&after={after}")).await;
    assert_eq!(second["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(second["deliveries"][0]["ordinal"], 4);
    assert!(second["next_after"].is_null());

    let summary: Value = app
        .get(&format!("/v1/bulk-sends/{id}"), &planner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["counts"]["queued"], 3);
    assert_eq!(summary["counts"]["sent"], 2);

    for (query, field) in [
        ("status=lost", "status"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("after=x", "after"),
    ] {
        let response = app
            .get(&format!("/v1/bulk-sends/{id}/deliveries?{query}"), &planner)
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
async fn send_at_schedules_the_fanout() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut later =
        body(json!([{"address": "a@example.com", "variables": {"name": "A", "table": 1}}]));
    let at = (chrono::Utc::now() + chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    later["send_at"] = json!(at);
    let response = create(&app, &planner, &later).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let send: Value = response.json().await.unwrap();
    assert_eq!(send["send_at"], at);
    let scheduled: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT scheduled_at FROM jobs WHERE kind = 'bulk_send_fanout'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(
        scheduled.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        at
    );
    // A typo's year is refused, and nothing is stored for it.
    later["send_at"] = json!("9999-06-05T14:00:00Z");
    let response = create(&app, &planner, &later).await;
    assert_eq!(problem_fields(response).await, ["send_at"]);
    // So is one before PostgreSQL's range, which was a 500.
    later["send_at"] = json!("-5000-01-01T00:00:00Z");
    let response = create(&app, &planner, &later).await;
    assert_eq!(problem_fields(response).await, ["send_at"]);
    assert_eq!(stored_sends(&app).await, 1);
}

fn sms_body(recipients: Value) -> Value {
    json!({
        "channel": "sms",
        "category": "marketing",
        "sender": {"name": "Ann and Bob", "email": "hello@ann-and-bob.example",
                   "postal_address": "1 Chapel Lane, York"},
        "template": {"text": "Hi {{ name }}, save 6 June!"},
        "recipients": recipients,
    })
}

#[tokio::test]
async fn a_valid_sms_send_is_stored_with_channel_sms_and_no_subject() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([{"address": "+44 7700 900123", "variables": {"name": "Ann"}}]);
    let response = create(&app, &planner, &sms_body(recipients)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let send: Value = response.json().await.unwrap();
    assert_eq!(send["channel"], "sms");
    let stored: (String, Option<String>, String, Value) = sqlx::query_as(
        "SELECT channel, subject_template, text_template, recipients
           FROM bulk_sends WHERE id = $1::uuid",
    )
    .bind(send["id"].as_str().unwrap())
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(stored.0, "sms");
    assert_eq!(stored.1, None);
    assert_eq!(stored.2, "Hi {{ name }}, save 6 June!");
    assert_eq!(stored.3[0]["address"], "+447700900123");
}

/// The fields of a 422's errors, after asserting it is one.
async fn problem_fields(response: reqwest::Response) -> Vec<String> {
    let body = problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "VALIDATION_ERROR",
    )
    .await;
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn variables_of_too_many_values_are_a_422_naming_the_recipient() {
    // 1,000,001 zeros: 2 MB of body that parsed in full would be ~32 MB of values.
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let zeros = vec![0; 1_000_001];
    let send = body(json!([
        {"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}},
        {"address": "bob@example.com", "variables": {"name": "Bob", "table": 2, "x": zeros}},
    ]));
    let response = create(&app, &planner, &send).await;
    let fields = problem_fields(response).await;
    assert!(
        fields.len() == 1 && fields[0].starts_with("recipients[1].variables."),
        "{fields:?}"
    );
    assert_eq!(stored_sends(&app).await, 0);
}

#[tokio::test]
async fn a_sender_too_long_in_bytes_for_the_senders_index_is_a_422() {
    // Within the character limits (200 and 500), but four bytes each and varied, so nothing
    // compresses them: the senders' unique index entry would be over PostgreSQL's 2,704 bytes.
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let varied = |n: u32, from: u32| -> String {
        (0..n)
            .map(|i| char::from_u32(from + i * 7).unwrap())
            .collect()
    };
    let mut send =
        body(json!([{"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}}]));
    send["sender"]["name"] = json!(varied(200, 0x20000));
    send["sender"]["postal_address"] = json!(varied(500, 0x21000));
    let response = create(&app, &planner, &send).await;
    assert_eq!(problem_fields(response).await, ["sender.postal_address"]);
    assert_eq!(stored_sends(&app).await, 0);
    // Within the bytes too, it is stored.
    send["sender"]["postal_address"] = json!(varied(300, 0x21000));
    let response = create(&app, &planner, &send).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_nul_character_is_a_422_where_it_stands_and_nothing_is_stored() {
    // PostgreSQL text cannot hold NUL: stored, it would fail the insert (a 500) or, written by
    // the template, every outcome write of the worker that sent it.
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut send = body(json!([
        {"address": "ann@example.com", "variables": {"name": "Ann\u{0}", "table": 1}},
        {"address": "bob@example.com", "variables": {"name": "Bob", "table": 2}},
    ]));
    send["sender"]["postal_address"] = json!("1 Chapel Lane\u{0}");
    let response = create(&app, &planner, &send).await;
    assert_eq!(problem_fields(response).await, ["sender.postal_address"]);
    send["sender"]["postal_address"] = json!("1 Chapel Lane\nYork");
    let response = create(&app, &planner, &send).await;
    assert_eq!(problem_fields(response).await, ["recipients[0].variables"]);
    send["recipients"][0]["variables"]["name"] = json!("Ann");
    send["template"]["text"] = json!("Dear {{ name }}, table {{ table }}.{{ \"\\u0000\" }}");
    let response = create(&app, &planner, &send).await;
    assert_eq!(
        problem_fields(response).await,
        ["recipients[0].message", "recipients[1].message"]
    );
    assert_eq!(stored_sends(&app).await, 0, "nothing is stored");
}

#[tokio::test]
async fn a_guest_listed_twice_is_a_422_naming_the_repeat_and_nothing_is_stored() {
    // Sent, both listings would go out: the guest would get the message twice.
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": "Ann@example.com", "variables": {"name": "Ann", "table": 1}},
        {"address": "bob@example.com", "variables": {"name": "Bob", "table": 2}},
        {"address": " ann@example.com ", "variables": {"name": "Ann B", "table": 3}},
    ]);
    let response = create(&app, &planner, &body(recipients)).await;
    assert_eq!(problem_fields(response).await, ["recipients[2].address"]);
    assert_eq!(stored_sends(&app).await, 0, "nothing is stored");
}

#[tokio::test]
async fn a_misspelt_template_part_is_a_422_naming_it_and_nothing_is_stored() {
    // Ignored, the planner's HTML would be lost and every guest get the text part alone.
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut send = body(json!([
        {"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}},
    ]));
    send["template"]["HTML"] = json!("<p>Dear {{ name }}</p>");
    let response = create(&app, &planner, &send).await;
    let fields = problem_fields(response).await;
    assert!(
        fields.iter().any(|f| f.contains("HTML")),
        "the 422 names the misspelt part: {fields:?}"
    );
    assert_eq!(stored_sends(&app).await, 0, "nothing is stored");
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_a_422_naming_it() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}},
        {"address": 5, "variables": {"name": "Bob", "table": 2}},
    ]);
    let response = create(&app, &planner, &body(recipients)).await;
    assert_eq!(problem_fields(response).await, ["recipients[1].address"]);
}

#[tokio::test]
async fn a_national_format_number_is_a_422_naming_the_recipient() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": "+447700900123", "variables": {"name": "Ann"}},
        {"address": "07700 900124", "variables": {"name": "Bob"}},
    ]);
    let response = create(&app, &planner, &sms_body(recipients)).await;
    assert_eq!(problem_fields(response).await, ["recipients[1].address"]);
}

#[tokio::test]
async fn a_too_long_rendered_sms_is_a_422_naming_the_recipient() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let recipients = json!([
        {"address": "+447700900123", "variables": {"name": "Ann"}},
        {"address": "+447700900124", "variables": {"name": "B".repeat(1600)}},
    ]);
    let response = create(&app, &planner, &sms_body(recipients)).await;
    assert_eq!(problem_fields(response).await, ["recipients[1].variables"]);
}

#[tokio::test]
async fn a_subject_on_an_sms_send_is_a_422() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut body = sms_body(json!([{"address": "+447700900123", "variables": {"name": "A"}}]));
    body["template"]["subject"] = json!("Save the date");
    let response = create(&app, &planner, &body).await;
    assert_eq!(problem_fields(response).await, ["template.subject"]);
}

#[tokio::test]
async fn an_email_send_still_requires_a_subject() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let mut no_subject =
        body(json!([{"address": "a@example.com", "variables": {"name": "A", "table": 1}}]));
    no_subject["template"]
        .as_object_mut()
        .unwrap()
        .remove("subject");
    let response = create(&app, &planner, &no_subject).await;
    assert_eq!(problem_fields(response).await, ["template"]);
}

#[tokio::test]
async fn a_template_that_would_build_a_value_of_any_size_or_run_for_minutes_is_a_422() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let guests: Vec<Value> = (0..20_000)
        .map(|i| json!({"address": format!("g{i}@example.com"), "variables": {"name": "G"}}))
        .collect();
    for (text, field) in [
        ("{{ ([0] * 10000000000) | sum }}", "template.text"),
        (
            "{% set a %}{{ name }}{{ name }}{% endset %}{{ a }}",
            "template.text",
        ),
        ("{{ name | indent(1000000000) }}", "template.text"),
        (
            "{% for i in range(60000) %}{% endfor %}{{ name }}",
            "template",
        ),
    ] {
        let mut costly = body(json!(guests));
        costly["template"]["text"] = json!(text);
        let response = create(&app, &planner, &costly).await;
        assert_eq!(problem_fields(response).await, [field], "{text}");
    }
    assert_eq!(stored_sends(&app).await, 0);
}

#[tokio::test]
async fn a_send_is_found_by_any_spelling_of_its_id() {
    let app = TestApp::spawn().await;
    let planner = app.key("acme", Role::Planner).await;
    let guests = json!([{"address": "ann@example.com", "variables": {"name": "Ann", "table": 1}}]);
    let send: Value = create(&app, &planner, &body(guests))
        .await
        .json()
        .await
        .unwrap();
    let id = send["id"].as_str().unwrap();
    for spelling in [
        format!("urn:uuid:{id}"),
        id.to_uppercase(),
        id.replace('-', ""),
    ] {
        for path in [
            format!("/v1/bulk-sends/{spelling}"),
            format!("/v1/bulk-sends/{spelling}/deliveries"),
        ] {
            let response = app.get(&path, &planner).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{path}");
        }
    }
}
