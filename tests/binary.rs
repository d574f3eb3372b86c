//! The `wedsync-jobs` binary end to end: `all` serving the API and running jobs, operator
//! commands with `--json`, and exit codes (SPEC §1).

mod support;

use std::process::{Command, Output};
use std::time::Duration;
use support::all::AllProcess;
use support::wait_for;
use wedsync_db::testing::TestDb;

fn wedsync(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wedsync-jobs")
}

fn json_of(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

#[tokio::test]
async fn all_serves_the_api_runs_jobs_and_stops_cleanly_on_sigterm() {
    let db = TestDb::new().await.unwrap();
    let mut all = AllProcess::start(&db, &[]);
    let (base, key) = (all.base.clone(), all.admin_key.clone());

    let http = reqwest::Client::new();
    let created: serde_json::Value = http
        .post(format!("{base}/v1/jobs"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "kind": "noop", "args": {} }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().expect("job id");
    wait_for("the job to complete", Duration::from_secs(20), || async {
        let job = all.get_json(&format!("/v1/jobs/{id}")).await?;
        (job["state"] == "completed").then_some(())
    })
    .await;

    let schedules: serde_json::Value = http
        .get(format!("{base}/v1/schedules"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        schedules["schedules"][0]["name"], "nightly-retention",
        "built in: {schedules}"
    );
    assert_eq!(
        schedules["schedules"][1]["name"], "hourly-metrics-rollup",
        "built in: {schedules}"
    );

    assert!(all.stop(), "`all` did not exit cleanly");
    assert_eq!(support::count_in_state(&db, "running").await, 0);
    // The stop wrote the raw metric events still buffered: the job's and the requests'.
    let events: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT DISTINCT source, kind, route FROM metric_events ORDER BY source, kind, route",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let event = |source: &str, kind: Option<&str>, route: Option<&str>| {
        (
            source.to_owned(),
            kind.map(str::to_owned),
            route.map(str::to_owned),
        )
    };
    assert!(
        events.contains(&event("job", Some("noop"), None)),
        "{events:?}"
    );
    assert!(
        events.contains(&event("api", None, Some("/v1/jobs/{id}"))),
        "{events:?}"
    );
}

#[tokio::test]
async fn operator_commands_print_json_with_the_api_field_names() {
    let db = TestDb::new().await.unwrap();
    let enqueued = json_of(&wedsync(
        &db,
        &["jobs", "enqueue", "noop", "{}", "--count", "3", "--json"],
    ));
    assert_eq!(enqueued.as_array().unwrap().len(), 3);
    let id = enqueued[0]["id"].as_i64().unwrap();

    let listed = json_of(&wedsync(
        &db,
        &["jobs", "list", "--state", "available", "--json"],
    ));
    let first = &listed.as_array().unwrap()[0];
    for field in [
        "id",
        "queue",
        "kind",
        "state",
        "attempt",
        "max_attempts",
        "priority",
        "scheduled_at",
        "errors",
    ] {
        assert!(first.get(field).is_some(), "`{field}` missing from {first}");
    }
    assert_eq!(listed.as_array().unwrap().len(), 3);

    let cancelled = json_of(&wedsync(
        &db,
        &["jobs", "cancel", &id.to_string(), "--json"],
    ));
    assert_eq!(cancelled[0]["state"], "cancelled");
    let retried = json_of(&wedsync(&db, &["jobs", "retry", &id.to_string(), "--json"]));
    assert_eq!(retried[0]["state"], "available");

    let pool = json_of(&wedsync(
        &db,
        &[
            "pools", "set", "default", "7", "--reason", "saturday", "--json",
        ],
    ));
    assert_eq!(pool[0]["concurrency"], 7);
    let queues = json_of(&wedsync(&db, &["queues", "--json"]));
    let default = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "default")
        .unwrap();
    assert_eq!(
        (
            default["available"].as_i64(),
            default["concurrency"].as_i64()
        ),
        (Some(3), Some(7))
    );

    let key = wedsync(
        &db,
        &["keys", "create", "--org", "acme", "--role", "planner"],
    );
    assert!(String::from_utf8(key.stdout).unwrap().starts_with("wsk_"));
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_variable() {
    let db = TestDb::new().await.unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
        .arg("migrate")
        .env("DATABASE_URL", &db.url)
        .env("WEDSYNC_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("WEDSYNC_LISTEN"));

    let unknown = wedsync(&db, &["jobs", "enqueue", "no-such-kind"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown kind `no-such-kind`"));

    let missing = wedsync(&db, &["jobs", "show", "987654"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("job 987654 not found"));
}

#[tokio::test]
async fn a_bad_schedule_entry_exits_2_naming_it() {
    let db = TestDb::new().await.unwrap();
    let config = std::env::temp_dir().join(format!("wedsync-{}.toml", db.name));
    let run = |toml: &str| {
        std::fs::write(&config, toml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
            .args(["scheduler", "--config"])
            .arg(&config)
            .env("DATABASE_URL", &db.url)
            .output()
            .unwrap()
    };
    let bad_cron = run(
        "[[schedule]]\nname = \"nightly\"\ncron = \"0 61 * * * *\"\nkind = \"noop\"\nqueue = \"default\"\n",
    );
    assert_eq!(bad_cron.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_cron.stderr).contains("nightly"));

    let bad_kind = run(
        "[[schedule]]\nname = \"hourly\"\ncron = \"0 0 * * * *\"\nkind = \"nope\"\nqueue = \"default\"\n",
    );
    assert_eq!(bad_kind.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_kind.stderr).contains("unknown kind `nope`"));
    std::fs::remove_file(&config).ok();
}

#[tokio::test]
async fn scheduler_enqueues_the_configured_entries() {
    let db = TestDb::new().await.unwrap();
    let config = std::env::temp_dir().join(format!("wedsync-{}.toml", db.name));
    std::fs::write(
        &config,
        "[[schedule]]\nname = \"every-second\"\ncron = \"* * * * * *\"\nkind = \"noop\"\nqueue = \"default\"\n",
    )
    .unwrap();
    let mut scheduler = Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
        .args(["scheduler", "--config"])
        .arg(&config)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let key = wait_for("a scheduled job", Duration::from_secs(20), || async {
        sqlx::query_scalar::<_, String>("SELECT unique_key FROM jobs WHERE kind = 'noop' LIMIT 1")
            .fetch_optional(&db.pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(key.starts_with("schedule:every-second:"), "{key}");
    Command::new("kill")
        .args(["-TERM", &scheduler.id().to_string()])
        .status()
        .unwrap();
    assert!(scheduler.wait().unwrap().success());
    std::fs::remove_file(&config).ok();
}

#[tokio::test]
async fn all_verifies_unsubscribe_links_with_the_key_kept_in_the_database() {
    use wedsync_kinds::messages::unsubscribe::{SigningKey, UnsubscribeClaim};
    use wedsync_kinds::suppression::{Address, Channel, SuppressionList};

    let db = TestDb::new().await.unwrap();
    let mut all = AllProcess::start(&db, &[("WEDSYNC_SIGNING_KEY", None)]);
    let base = all.base.clone();

    // Whichever of the test and the process created the key first, both now use that one.
    let key = SigningKey::load_or_create(&db.pool).await.unwrap();
    let address = Address::parse(Channel::Email, "guest@example.com").unwrap();
    let claim = UnsubscribeClaim {
        delivery_id: 1,
        org_id: "acme".to_owned(),
        channel: Channel::Email,
        address_hash: address.hash(),
    };
    support::messages::one_click_unsubscribe(&format!(
        "{base}/unsubscribe?token={}",
        key.sign(&claim)
    ))
    .await;
    let list = SuppressionList::new(db.pool.clone());
    assert!(list.contains_address("acme", &address).await.unwrap());

    assert!(all.stop(), "`all` did not exit cleanly");
}
