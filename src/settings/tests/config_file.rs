//! Settings from the TOML config file: scalars, `[queues]`, `[[schedule]]`, and bad files.

use super::*;
use secrecy::ExposeSecret;
use std::time::Duration;

#[test]
fn the_toml_file_is_parsed() {
    let s = load_toml(&[], FILE).unwrap();
    assert_eq!(s.listen.port(), 8081);
    assert_eq!(s.timezone, chrono_tz::Europe::Paris);
    assert_eq!(s.worker.heartbeat_timeout, Duration::from_secs(8));
    assert_eq!(
        s.database_url.as_ref().unwrap().expose_secret(),
        "postgres://file@db/wedsync"
    );
    assert_eq!(s.queues.len(), 2);
    assert_eq!(s.queues["email"].concurrency, Some(20));
    assert_eq!(s.queues["photos"], QueueSettings::default());
    assert_eq!(s.queue_concurrency("email"), 20);
    assert_eq!(s.queue_concurrency("photos"), 10);
    assert_eq!(
        s.schedule,
        vec![
            ScheduleEntry {
                name: "nightly-retention".into(),
                cron: "0 30 3 * * *".into(),
                kind: "retention_cleanup".into(),
                args: serde_json::json!({
                    "batch": 1000,
                    "dry_run": false,
                    "kinds": ["jobs", "events"],
                    "nested": {"ratio": 0.5},
                    "at": "1979-05-27T07:32:00Z",
                }),
                queue: "maintenance".into(),
                timezone: None,
            },
            ScheduleEntry {
                name: "hourly-rollup".into(),
                cron: "@hourly".into(),
                kind: "metrics_rollup".into(),
                args: serde_json::json!({}),
                queue: "maintenance".into(),
                timezone: Some(chrono_tz::UTC),
            },
        ]
    );
}

#[test]
fn the_environment_wins_over_the_file() {
    let s = load_toml(
        &[
            ("WEDSYNC_LISTEN", "127.0.0.1:7000"),
            ("WEDSYNC_TIMEZONE", "Asia/Tokyo"),
        ],
        FILE,
    )
    .unwrap();
    assert_eq!(s.listen.port(), 7000);
    assert_eq!(s.timezone, chrono_tz::Asia::Tokyo);
    assert_eq!(s.queues["email"].concurrency, Some(20));
}

#[test]
fn bad_files_are_explained() {
    let message = |text: &str| load_toml(&[], text).unwrap_err().to_string();

    let m = message("listen = \"nope\"");
    assert_eq!(
        m,
        "listen=`nope` in wedsync.toml is not a socket address (expected e.g. 127.0.0.1:8080)"
    );
    let m = message("lissten = \"127.0.0.1:1\"");
    assert!(m.contains("unknown setting `lissten`"), "{m}");
    assert!(m.contains("listen"), "{m}");
    let m = message("listen = ");
    assert!(
        m.starts_with("the config file wedsync.toml is not valid"),
        "{m}"
    );
    let m = message("[queues.email]\nconcurrency = 0");
    assert!(
        m.starts_with("[queues.email] concurrency=0 in wedsync.toml"),
        "{m}"
    );
    let m = message("[queues.email]\nconcurency = 3");
    assert!(m.contains("[queues]") && m.contains("concurency"), "{m}");
    let m = message("[[schedule]]\nname = \"a\"\nkind = \"noop\"\nqueue = \"q\"");
    assert!(m.contains("[[schedule]]") && m.contains("cron"), "{m}");
    let m =
        message("[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\nkind = \"noop\"\nqueue = \"q\"");
    assert!(m.starts_with("[[schedule]] `a`: cron=`* * * * *`"), "{m}");
    assert!(m.contains("seconds first"), "{m}");
    let m = message(
        "[[schedule]]\nname = \"a\"\ncron = \"0 * * * * *\"\nkind = \"noop\"\nqueue = \"q\"\ntimezone = \"Nowhere\"",
    );
    assert!(
        m.contains("timezone=`Nowhere`") && m.contains("IANA"),
        "{m}"
    );
    let entry =
        "[[schedule]]\nname = \"a\"\ncron = \"0 * * * * *\"\nkind = \"noop\"\nqueue = \"q\"\n";
    let m = message(&format!("{entry}{entry}"));
    assert!(m.contains("two [[schedule]] entries are named `a`"), "{m}");
    let m = message("signing_key = \"short-file-secret\"");
    assert!(
        m.starts_with("`signing_key` (value hidden) in wedsync.toml"),
        "{m}"
    );
    assert!(!m.contains("short-file-secret"), "{m}");
}

#[test]
fn the_file_is_read_from_its_path() {
    let dir = std::env::temp_dir().join(format!("wedsync-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wedsync.toml");
    std::fs::write(&path, FILE).unwrap();
    let s = Settings::from_env_and_file(env(&[]), Some(&path)).unwrap();
    assert_eq!(s.schedule.len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();

    let err = Settings::from_env_and_file(env(&[]), Some(&path)).unwrap_err();
    assert!(matches!(err, SettingsError::ReadFile { .. }), "{err}");
    assert!(err.to_string().contains("--config"), "{err}");
}
