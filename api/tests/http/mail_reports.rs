//! `POST /v1/mail-reports`: bounces and complaints mailed after acceptance. What each report
//! changes, who may post one, and the refusals that change nothing.

use crate::support::{TestApp, problem, seed_sent_delivery};
use reqwest::{Response, StatusCode};
use serde_json::Value;
use wedsync_api::Role;

const ORG: &str = "acme";
const GUEST: &str = "guest@example.com";

async fn post(app: &TestApp, key: &str, report: String) -> Response {
    app.post("/v1/mail-reports", key)
        .header("content-type", "message/rfc822")
        .body(report)
        .send()
        .await
        .unwrap()
}

/// A DSN about delivery `delivery` of `send` with `status`, the original's headers returned.
fn dsn(send: &str, delivery: i64, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\r\n\
         --B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
         Final-Recipient: rfc822; {GUEST}\r\nAction: failed\r\nStatus: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} refused\r\n\r\n\
         --B\r\nContent-Type: text/rfc822-headers\r\n\r\n\
         Message-ID: <delivery-{delivery}.{send}@acme.test>\r\nTo: {GUEST}\r\n\r\n--B--\r\n"
    )
}

async fn delivery_row(app: &TestApp, id: i64) -> (String, Option<String>) {
    sqlx::query_as("SELECT status, last_error FROM deliveries WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

async fn suppressions(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT org_id, reason FROM suppressions ORDER BY id")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_hard_bounce_marks_the_delivery_bounced_and_suppresses_the_guest_once() {
    let app = TestApp::spawn().await;
    let (send, delivery) = seed_sent_delivery(&app, ORG, GUEST).await;
    for _ in 0..2 {
        let answer = post(&app, &app.operator, dsn(&send, delivery, "5.1.1")).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["report"], "delivery_status");
        assert_eq!(answer["verdict"], "hard_bounce");
        assert_eq!(answer["detail"], "5.1.1");
        assert_eq!(answer["delivery_id"], delivery.to_string());
        assert_eq!(answer["delivery"]["org_id"], ORG);
        assert_eq!(answer["delivery"]["status"], "bounced");
    }
    let (status, error) = delivery_row(&app, delivery).await;
    assert_eq!(status, "bounced");
    assert!(error.unwrap().contains("5.1.1 smtp; 550"));
    assert_eq!(
        suppressions(&app).await,
        [(ORG.to_owned(), "hard_bounce".to_owned())]
    );
}

#[tokio::test]
async fn a_failure_that_is_not_the_address_fails_the_delivery_and_suppresses_nobody() {
    let app = TestApp::spawn().await;
    let (send, delivery) = seed_sent_delivery(&app, ORG, GUEST).await;
    let answer: Value = post(&app, &app.operator, dsn(&send, delivery, "5.7.1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["verdict"], "failed");
    assert_eq!(answer["delivery"]["status"], "failed");
    assert_eq!(answer["delivery"]["suppressed"], Value::Null);
    assert_eq!(delivery_row(&app, delivery).await.0, "failed");
    assert!(suppressions(&app).await.is_empty());
}

#[tokio::test]
async fn a_report_about_a_delivery_that_is_gone_changes_nothing() {
    let app = TestApp::spawn().await;
    let (send, delivery) = seed_sent_delivery(&app, ORG, GUEST).await;
    let other_send = uuid::Uuid::new_v4().to_string();
    for (send, delivery) in [
        (other_send.as_str(), delivery),
        (send.as_str(), delivery + 1),
    ] {
        let answer = post(&app, &app.operator, dsn(send, delivery, "5.1.1")).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["delivery"], Value::Null);
    }
    assert_eq!(delivery_row(&app, delivery).await.0, "sent");
    assert!(suppressions(&app).await.is_empty());
}

#[tokio::test]
async fn only_operators_may_post_and_what_is_no_report_is_refused() {
    let app = TestApp::spawn().await;
    let (send, delivery) = seed_sent_delivery(&app, ORG, GUEST).await;
    let report = dsn(&send, delivery, "5.1.1");

    let anonymous = app
        .client
        .post(format!("{}/v1/mail-reports", app.base))
        .body(report.clone())
        .send()
        .await
        .unwrap();
    problem(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let planner = app.key(ORG, Role::Planner).await;
    problem(
        post(&app, &planner, report.clone()).await,
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
    )
    .await;

    problem(
        post(&app, &app.operator, String::new()).await,
        StatusCode::BAD_REQUEST,
        "BAD_REQUEST",
    )
    .await;
    let reply = format!(
        "From: {GUEST}\r\nSubject: Re: News\r\n\
         In-Reply-To: <delivery-{delivery}.{send}@acme.test>\r\n\r\nThanks!\r\n"
    );
    problem(
        post(&app, &app.operator, reply).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NOT_A_REPORT",
    )
    .await;
    let nameless = report.replace(&format!("<delivery-{delivery}.{send}@acme.test>"), "<x@y>");
    problem(
        post(&app, &app.operator, nameless).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NO_DELIVERY",
    )
    .await;

    assert_eq!(delivery_row(&app, delivery).await.0, "sent");
    assert!(suppressions(&app).await.is_empty());
}
