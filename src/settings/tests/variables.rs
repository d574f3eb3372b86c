//! Settings from environment variables: defaults, parsing, and messages for bad values.

use super::*;
use secrecy::ExposeSecret;
use std::time::Duration;

#[test]
fn defaults() {
    let s = load(&[]).unwrap();
    assert!(s.database_url.is_none());
    assert_eq!(s.db_pool_size, None);
    assert_eq!(s.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert!(s.smtp_url.is_none() && s.sms_url.is_none());
    assert!(s.storage_url.is_none() && s.public_url.is_none());
    assert!(s.signing_key.is_none());
    assert_eq!(s.timezone, chrono_tz::Europe::London);
    assert_eq!(s.log_format, LogFormat::Pretty);
    assert_eq!(s.log_filter, None);
    assert_eq!(s.data_dir, PathBuf::from("./.wedsync"));
    assert_eq!(s.worker, WorkerTuning::default());
    assert_eq!(s.worker.default_concurrency, 10);
    assert_eq!(s.worker.poll_interval, Duration::from_millis(1000));
    assert_eq!(s.worker.heartbeat_interval, Duration::from_millis(1000));
    assert_eq!(s.worker.heartbeat_timeout, Duration::from_millis(5000));
    assert_eq!(s.worker.shutdown_grace, Duration::from_millis(10000));
    assert!(s.queues.is_empty() && s.schedule.is_empty());
    assert_eq!(s.queue_concurrency("email"), 10);
}

#[test]
fn every_variable_is_read() {
    let key = "k".repeat(32);
    let s = load(&[
        ("DATABASE_URL", "postgres://app:pw@db:5432/wedsync"),
        ("WEDSYNC_LISTEN", "0.0.0.0:9000"),
        ("WEDSYNC_DB_POOL_SIZE", "8"),
        ("WEDSYNC_SMTP_URL", "smtp://127.0.0.1:2525"),
        ("WEDSYNC_SMS_URL", "https://sms.example.com/api"),
        ("WEDSYNC_STORAGE_URL", "s3://photos/prod"),
        ("WEDSYNC_PUBLIC_URL", "https://jobs.example.com"),
        ("WEDSYNC_SIGNING_KEY", &key),
        ("WEDSYNC_TIMEZONE", "America/New_York"),
        ("WEDSYNC_LOG_FORMAT", "JSON"),
        ("RUST_LOG", "info,sqlx=warn"),
        ("WEDSYNC_DATA_DIR", "/var/lib/wedsync"),
        ("WEDSYNC_DEFAULT_CONCURRENCY", "25"),
        ("WEDSYNC_POLL_INTERVAL_MS", "250"),
        ("WEDSYNC_HEARTBEAT_INTERVAL_MS", "500"),
        ("WEDSYNC_HEARTBEAT_TIMEOUT_MS", "3000"),
        ("WEDSYNC_SHUTDOWN_GRACE_MS", "30000"),
        ("WEDSYNC_PUBLIC_URL_UNUSED", "ignored"),
    ])
    .unwrap();
    assert_eq!(
        s.database_url.unwrap().expose_secret(),
        "postgres://app:pw@db:5432/wedsync"
    );
    assert_eq!(s.listen.port(), 9000);
    assert_eq!(s.db_pool_size, Some(8));
    assert_eq!(s.smtp_url.unwrap().port(), Some(2525));
    assert_eq!(s.sms_url.unwrap().host_str(), Some("sms.example.com"));
    assert_eq!(s.storage_url.unwrap().as_str(), "s3://photos/prod");
    assert_eq!(s.public_url.unwrap().scheme(), "https");
    assert_eq!(s.signing_key.unwrap().expose_secret(), key);
    assert_eq!(s.timezone, chrono_tz::America::New_York);
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.log_filter.as_deref(), Some("info,sqlx=warn"));
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/wedsync"));
    assert_eq!(
        s.worker,
        WorkerTuning {
            default_concurrency: 25,
            poll_interval: Duration::from_millis(250),
            heartbeat_interval: Duration::from_millis(500),
            heartbeat_timeout: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(30),
        }
    );
}

#[test]
fn empty_variables_count_as_unset() {
    let s = load(&[("WEDSYNC_LISTEN", ""), ("DATABASE_URL", "  ")]).unwrap();
    assert_eq!(s.listen.port(), 8080);
    assert!(s.database_url.is_none());
}

#[test]
fn a_bad_value_names_the_variable_and_what_is_expected() {
    let err = load(&[("WEDSYNC_LISTEN", "abc")]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "WEDSYNC_LISTEN=`abc` is not a socket address (expected e.g. 127.0.0.1:8080)"
    );

    let cases = [
        ("WEDSYNC_SMTP_URL", "http://mail:25", "scheme `http`"),
        ("WEDSYNC_SMTP_URL", "not a url", "is not a URL"),
        ("WEDSYNC_SMS_URL", "ftp://sms", "https"),
        ("WEDSYNC_STORAGE_URL", "gs://bucket", "s3://bucket/prefix"),
        ("WEDSYNC_STORAGE_URL", "file://", "absolute directory"),
        ("WEDSYNC_STORAGE_URL", "s3:///prefix", "names no bucket"),
        ("WEDSYNC_PUBLIC_URL", "mailto:x@y", "scheme `mailto`"),
        ("WEDSYNC_TIMEZONE", "Mars/Olympus_Mons", "IANA time zone"),
        ("WEDSYNC_LOG_FORMAT", "xml", "`json` or `pretty`"),
        ("WEDSYNC_DEFAULT_CONCURRENCY", "0", "from 1 to 10000"),
        ("WEDSYNC_DB_POOL_SIZE", "0", "from 1 to 1000"),
        ("WEDSYNC_DB_POOL_SIZE", "lots", "pool size"),
        ("WEDSYNC_DEFAULT_CONCURRENCY", "ten", "from 1 to 10000"),
        ("WEDSYNC_POLL_INTERVAL_MS", "-5", "milliseconds"),
        ("WEDSYNC_SHUTDOWN_GRACE_MS", "1.5", "milliseconds"),
    ];
    for (name, value, needle) in cases {
        let message = load(&[(name, value)]).unwrap_err().to_string();
        // Provider URLs may carry credentials: named, their value hidden.
        let secret = name.ends_with("_SMTP_URL") || name.ends_with("_SMS_URL");
        let named = if secret {
            format!("{name} (value hidden)")
        } else {
            format!("{name}=`{value}`")
        };
        assert!(message.starts_with(&named), "{name}: {message}");
        assert!(!secret || !message.contains(value), "{name}: {message}");
        assert!(message.contains(needle), "{name}: {message}");
    }

    let message = load(&[("WEDSYNC_HEARTBEAT_TIMEOUT_MS", "1999")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("WEDSYNC_HEARTBEAT_TIMEOUT_MS=`1999` is not at least twice"),
        "{message}"
    );
    assert!(load(&[("WEDSYNC_HEARTBEAT_TIMEOUT_MS", "2000")]).is_ok());
    let message = load(&[("WEDSYNC_HEARTBEAT_INTERVAL_MS", "6000")])
        .unwrap_err()
        .to_string();
    assert!(message.contains("(the default)"), "{message}");
}

#[test]
fn bad_secrets_are_named_but_not_shown() {
    let err = load(&[("WEDSYNC_SIGNING_KEY", "tooshort-secret")]).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("WEDSYNC_SIGNING_KEY (value hidden) is 15 bytes long"),
        "{message}"
    );
    assert!(message.contains("at least 32 bytes"), "{message}");
    assert!(!message.contains("tooshort"), "{message}");

    let message = load(&[("DATABASE_URL", "mysql://root:hunter2@db/x")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("DATABASE_URL (value hidden)"),
        "{message}"
    );
    assert!(message.contains("scheme `mysql`"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let s = load(&[
        ("DATABASE_URL", "postgres://app:hunter2@db/wedsync"),
        ("WEDSYNC_SIGNING_KEY", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"),
        (
            "WEDSYNC_SMTP_URL",
            "smtps://mailer:mailpass@smtp.example.com:465",
        ),
        (
            "WEDSYNC_SMS_URL",
            "https://sms.example.com/api?api_key=smskey123",
        ),
    ])
    .unwrap();
    let debug = format!("{s:?}");
    for secret in ["hunter2", "s3cr3t", "mailpass", "smskey123"] {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
    assert!(debug.contains("REDACTED"), "{debug}");
    assert!(
        debug.contains("smtps://mailer:***@smtp.example.com:465"),
        "{debug}"
    );
    assert!(debug.contains("api_key=***"), "{debug}");
    assert!(debug.contains("listen: 127.0.0.1:8080"), "{debug}");
}

#[test]
fn photo_limits_have_defaults_and_are_validated() {
    let s = load(&[]).unwrap();
    assert_eq!(s.photos.max_upload_bytes, 50 * 1024 * 1024);
    assert_eq!(s.photos.max_pixels, 100_000_000);
    let s = load(&[
        ("WEDSYNC_MAX_UPLOAD_BYTES", "1048576"),
        ("WEDSYNC_MAX_PHOTO_PIXELS", "24000000"),
    ])
    .unwrap();
    assert_eq!(
        (s.photos.max_upload_bytes, s.photos.max_pixels),
        (1_048_576, 24_000_000)
    );
    for (name, bad) in [
        ("WEDSYNC_MAX_UPLOAD_BYTES", "0"),
        ("WEDSYNC_MAX_UPLOAD_BYTES", "50MB"),
        ("WEDSYNC_MAX_PHOTO_PIXELS", "-1"),
    ] {
        let err = load(&[(name, bad)]).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains(bad), "{err}");
    }
}

#[test]
fn the_smtp_ca_file_is_read_at_start_up_and_a_bad_one_is_named() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smtp_tls");
    let ca = fixtures.join("ca.pem");
    let s = load(&[("WEDSYNC_SMTP_CA_FILE", ca.to_str().unwrap())]).unwrap();
    let trusted = s.messages.smtp_ca.unwrap();
    assert_eq!(trusted.pem, std::fs::read(&ca).unwrap());
    assert_eq!(
        format!("{trusted:?}"),
        format!("TrustedCertificates({})", ca.display())
    );

    let not_pem = fixtures.join("README.md");
    let broken = std::env::temp_dir().join(format!("wedsync-ca-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    for (path, needle) in [
        (fixtures.join("missing.pem"), "cannot be read"),
        (not_pem, "holds no PEM certificate"),
        (broken.clone(), "is not valid PEM"),
    ] {
        let path = path.to_str().unwrap();
        let message = load(&[("WEDSYNC_SMTP_CA_FILE", path)])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("WEDSYNC_SMTP_CA_FILE=`{path}` {needle}")),
            "{message}"
        );
    }
    std::fs::remove_file(&broken).unwrap();
}

#[test]
fn the_bounce_address_is_an_email_address_or_named_as_wrong() {
    assert_eq!(load(&[]).unwrap().messages.bounce_address, None);
    let s = load(&[("WEDSYNC_BOUNCE_ADDRESS", " bounces@mail.wedsync.example ")]).unwrap();
    assert_eq!(
        s.messages.bounce_address.unwrap().to_string(),
        "bounces@mail.wedsync.example"
    );
    let message = load(&[("WEDSYNC_BOUNCE_ADDRESS", "bounces")])
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("WEDSYNC_BOUNCE_ADDRESS=`bounces` is not an email address"),
        "{message}"
    );
}
