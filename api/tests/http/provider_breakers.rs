//! Circuit breakers as worker processes publish them: `GET /v1/queues` and `/metrics` show each
//! provider's worst state over the processes that reported recently, stale processes are
//! ignored, and publishing prunes the rows of processes gone quiet.

use crate::support::TestApp;
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use wedsync_kinds::messages::providers::status::REPORT_FRESHNESS;
use wedsync_kinds::messages::providers::{
    BreakerReport, BreakerSnapshot, BreakerState, ProviderRole, publish_breakers,
};
use wedsync_kinds::suppression::Channel;

const KEEP: Duration = Duration::from_secs(3600);

fn report(provider: &str, state: BreakerState, failures: i64, successes: i64) -> BreakerReport {
    BreakerReport {
        provider: provider.to_owned(),
        channel: if provider == "sms" {
            Channel::Sms
        } else {
            Channel::Email
        },
        role: ProviderRole::Primary,
        breaker: BreakerSnapshot {
            state,
            consecutive_failures: 0,
            failures,
            successes,
            rejected: 0,
            opened_at: None,
        },
        rate_limit_per_second: None,
    }
}

/// When process `a`'s breaker opened.
fn opened_at() -> DateTime<Utc> {
    "2026-05-01T10:00:00Z".parse().unwrap()
}

/// Process `a`: smtp open, sms closed. Process `b`: smtp closed. Process `c`: smtp open and
/// `smtp_secondary`, but its last report is older than the freshness window.
async fn seed(app: &TestApp) {
    let pool = &app.db.pool;
    let mut smtp_open = report("smtp", BreakerState::Open, 7, 10);
    smtp_open.breaker.consecutive_failures = 5;
    smtp_open.breaker.rejected = 3;
    smtp_open.breaker.opened_at = Some(opened_at());
    let a = [smtp_open, report("sms", BreakerState::Closed, 0, 4)];
    publish_breakers(pool, "a", &a, KEEP).await.unwrap();
    let mut b = [report("smtp", BreakerState::Closed, 1, 30)];
    b[0].breaker.consecutive_failures = 1;
    publish_breakers(pool, "b", &b, KEEP).await.unwrap();
    let c = [
        report("smtp", BreakerState::Open, 100, 0),
        BreakerReport {
            role: ProviderRole::Secondary,
            ..report("smtp_secondary", BreakerState::HalfOpen, 2, 2)
        },
    ];
    publish_breakers(pool, "c", &c, KEEP).await.unwrap();
    make_stale(app, "c", REPORT_FRESHNESS * 4).await;
}

async fn make_stale(app: &TestApp, process: &str, age: Duration) {
    sqlx::query(
        "UPDATE provider_breakers SET updated_at = now() - make_interval(secs => $2)
          WHERE process_id = $1",
    )
    .bind(process)
    .bind(age.as_secs_f64())
    .execute(&app.db.pool)
    .await
    .unwrap();
}

async fn processes(app: &TestApp) -> Vec<(String, String)> {
    sqlx::query_as("SELECT process_id, provider FROM provider_breakers ORDER BY 1, 2")
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn queues_show_each_providers_worst_state_over_fresh_processes() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let response = app.get("/v1/queues", &app.operator).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let providers = body["providers"].as_array().unwrap();
    let names: Vec<&str> = providers
        .iter()
        .map(|p| p["provider"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sms", "smtp"], "only c reported smtp_secondary");

    let smtp = &providers[1];
    assert_eq!(smtp["channel"], "email");
    assert_eq!(smtp["role"], "primary");
    assert_eq!(smtp["state"], "open");
    assert_eq!(smtp["open_processes"], 1);
    assert_eq!(smtp["consecutive_failures"], 5);
    assert_eq!(
        smtp["failures"], 8,
        "a's 7 and b's 1; stale c's 100 left out"
    );
    assert_eq!(smtp["successes"], 40);
    assert_eq!(smtp["rejected"], 3);
    let opened: DateTime<Utc> = serde_json::from_value(smtp["opened_at"].clone()).unwrap();
    assert_eq!(opened, opened_at());
    let mut reporters: Vec<&str> = smtp["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["process_id"].as_str().unwrap())
        .collect();
    reporters.sort();
    assert_eq!(reporters, ["a", "b"]);

    assert_eq!(providers[0]["state"], "closed");
    assert_eq!(providers[0]["channel"], "sms");
    assert!(body["queues"].is_array());
}

#[tokio::test]
async fn metrics_show_breaker_gauges_per_provider() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let text = app.metrics().await;
    for line in [
        r#"wedsync_provider_breaker_state{provider="smtp",state="open"} 1"#,
        r#"wedsync_provider_breaker_state{provider="smtp",state="closed"} 0"#,
        r#"wedsync_provider_breaker_state{provider="smtp",state="half_open"} 0"#,
        r#"wedsync_provider_breaker_state{provider="sms",state="closed"} 1"#,
        r#"wedsync_provider_breaker_open_processes{provider="smtp"} 1"#,
        r#"wedsync_provider_consecutive_failures{provider="smtp"} 5"#,
        r#"wedsync_provider_failures{provider="smtp"} 8"#,
        r#"wedsync_provider_successes{provider="smtp"} 40"#,
        r#"wedsync_provider_rejected{provider="smtp"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
    }
    assert!(
        !text.contains(r#"provider="smtp_secondary""#),
        "a provider only a stale process reported is not shown"
    );
}

#[tokio::test]
async fn publishing_prunes_rows_not_refreshed_for_prune_after() {
    let app = TestApp::spawn().await;
    let pool = &app.db.pool;
    let closed = |p: &str| report(p, BreakerState::Closed, 0, 1);
    publish_breakers(pool, "a", &[closed("smtp"), closed("old")], KEEP)
        .await
        .unwrap();
    publish_breakers(pool, "gone", &[closed("smtp")], KEEP)
        .await
        .unwrap();
    publish_breakers(pool, "quiet", &[closed("smtp")], KEEP)
        .await
        .unwrap();
    make_stale(&app, "gone", Duration::from_secs(600)).await;
    make_stale(&app, "a", Duration::from_secs(600)).await;

    let prune_after = Duration::from_secs(300);
    publish_breakers(pool, "a", &[closed("smtp")], prune_after)
        .await
        .unwrap();
    let pair = |p: &str, q: &str| (p.to_owned(), q.to_owned());
    assert_eq!(
        processes(&app).await,
        [pair("a", "smtp"), pair("quiet", "smtp")],
        "gone's row and a's no longer reported provider are pruned; quiet is recent enough"
    );
}

#[tokio::test]
async fn the_rate_limit_in_force_shows_next_to_each_processes_own_setting() {
    let app = TestApp::spawn().await;
    let pool = &app.db.pool;
    let limited = |provider: &str, per_second: f64| BreakerReport {
        rate_limit_per_second: Some(per_second),
        ..report(provider, BreakerState::Closed, 0, 1)
    };
    // Two processes configured otherwise, and a shared row neither reports (a third process,
    // since stopped, sent last): the row is the limit in force.
    publish_breakers(
        pool,
        "a",
        &[limited("smtp", 40.0), limited("sms", 5.0)],
        KEEP,
    )
    .await
    .unwrap();
    let b = [
        limited("smtp", 50.0),
        report("smtp_secondary", BreakerState::Closed, 0, 1),
    ];
    publish_breakers(pool, "b", &b, KEEP).await.unwrap();
    sqlx::query("INSERT INTO provider_rate_limits (provider, per_second) VALUES ('smtp', 45)")
        .execute(pool)
        .await
        .unwrap();

    let body: Value = app
        .get("/v1/queues", &app.operator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let provider = |name: &str| {
        body["providers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["provider"] == name)
            .unwrap_or_else(|| panic!("no {name} in {body}"))
            .clone()
    };
    let smtp = provider("smtp");
    assert_eq!(smtp["rate_limit_per_second"], 45.0, "{smtp}");
    let mut own: Vec<(String, f64)> = smtp["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let id = p["process_id"].as_str().unwrap().to_owned();
            (id, p["rate_limit_per_second"].as_f64().unwrap())
        })
        .collect();
    own.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(own, [("a".to_owned(), 40.0), ("b".to_owned(), 50.0)]);
    // No message has gone under sms's limit yet, so no shared row: the process's own setting.
    assert_eq!(provider("sms")["rate_limit_per_second"], 5.0);
    let secondary = provider("smtp_secondary");
    assert!(secondary["rate_limit_per_second"].is_null(), "{secondary}");
    assert!(secondary["processes"][0]["rate_limit_per_second"].is_null());

    let text = app.metrics().await;
    assert!(
        text.lines()
            .any(|l| l == r#"wedsync_provider_rate_limit_per_second{provider="smtp"} 45"#),
        "{text}"
    );
    assert!(!text.contains(r#"wedsync_provider_rate_limit_per_second{provider="smtp_secondary"}"#));
}
