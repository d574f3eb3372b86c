//! Typed configuration of `wedsync-jobs` (SPEC §2), read and validated once at start-up.
//!
//! Every setting comes from an environment variable, or else from the optional TOML file given
//! with `--config`, or else from its default. In the file a setting's key is its variable's
//! name in lower case without the `WEDSYNC_` prefix (`WEDSYNC_LISTEN` → `listen`,
//! `DATABASE_URL` → `database_url`). The file also holds what variables cannot:
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//!
//! [queues.email]
//! concurrency = 20
//!
//! [queues.photos]                # the pool's bounds and base per worker process (SPEC §6),
//! min = 1                        # given to the pool when it is created
//! max = 16
//! base = 4
//!
//! [[schedule]]
//! name = "nightly-retention"
//! cron = "0 30 3 * * *"          # the `cron` crate's syntax: seconds first
//! kind = "retention_cleanup"
//! queue = "maintenance"
//! args = { batch_size = 1000 }        # optional, a table
//! timezone = "Europe/London"     # optional, else WEDSYNC_TIMEZONE
//! ```
//!
//! An empty variable counts as unset. A bad value is a [`SettingsError`] naming the setting and
//! what was expected; the binary exits with status 2 on it. Secrets never appear in messages or
//! in `Debug` output.

mod error;
mod file;
mod load;
mod messages;
mod metrics;
mod photos;
mod queues;
mod redact;
mod schedule;
mod source;
mod values;
mod worker;

#[cfg(test)]
mod tests;

pub use self::error::SettingsError;
pub use self::messages::MessageSettings;
pub use self::photos::PhotoSettings;
pub use self::queues::QueueSettings;
pub use self::schedule::ScheduleEntry;
pub use self::worker::WorkerTuning;
pub use chrono_tz::Tz;

use secrecy::SecretString;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_TIMEZONE: &str = "Europe/London";
pub const DEFAULT_DATA_DIR: &str = "./.wedsync";
pub const DEFAULT_CONCURRENCY: i32 = 10;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_HEARTBEAT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// The shortest accepted `WEDSYNC_SIGNING_KEY`, in bytes.
pub const MIN_SIGNING_KEY_BYTES: usize = 32;
/// The largest accepted `WEDSYNC_DB_POOL_SIZE`.
pub const MAX_DB_POOL_SIZE: u32 = 1_000;
/// The largest accepted concurrency (per queue and worker process).
pub const MAX_CONCURRENCY: i32 = 10_000;

/// The validated configuration of one `wedsync-jobs` process.
#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`; `None` → the embedded default's local PostgreSQL.
    pub database_url: Option<SecretString>,
    /// `WEDSYNC_DB_POOL_SIZE`: the most connections of the process's main pool; `None` → its
    /// role's default (`api` and `worker` 16, `scheduler` 4, `all` 32).
    pub db_pool_size: Option<u32>,
    /// `WEDSYNC_LISTEN`: where the HTTP API listens.
    pub listen: SocketAddr,
    /// `WEDSYNC_SMTP_URL` (`smtp://` or `smtps://`); `None` → mail goes to the outbox folder.
    pub smtp_url: Option<Url>,
    /// `WEDSYNC_SMS_URL`: the HTTP SMS provider's base URL (`http://` or `https://`).
    pub sms_url: Option<Url>,
    /// `WEDSYNC_STORAGE_URL`: `file:///absolute/dir` or `s3://bucket/prefix`; `None` → files
    /// under `<data_dir>/storage`.
    pub storage_url: Option<Url>,
    /// `WEDSYNC_PUBLIC_URL`: the public base URL (unsubscribe links), `http(s)://`.
    pub public_url: Option<Url>,
    /// `WEDSYNC_SIGNING_KEY`: HMAC key of unsubscribe tokens, at least 32 bytes; `None` → the
    /// embedded default generates and persists one.
    pub signing_key: Option<SecretString>,
    /// `WEDSYNC_TIMEZONE`: the IANA time zone of schedules and the Saturday window.
    pub timezone: Tz,
    /// `WEDSYNC_LOG_FORMAT`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: a tracing filter directive, passed on as is; `None` → the binary's default.
    pub log_filter: Option<String>,
    /// `WEDSYNC_DATA_DIR`: the embedded default's files (private PostgreSQL, outbox, storage).
    pub data_dir: PathBuf,
    /// Worker tuning (`WEDSYNC_*_MS`, `WEDSYNC_DEFAULT_CONCURRENCY`).
    pub worker: WorkerTuning,
    /// `WEDSYNC_METRIC_EVENTS` (default true): write raw metric events (SPEC §5.4).
    pub metric_events: bool,
    /// Photo limits (`WEDSYNC_MAX_UPLOAD_BYTES`, `WEDSYNC_MAX_PHOTO_PIXELS`).
    pub photos: PhotoSettings,
    /// Message providers beyond the primary URLs: secondaries, rates, breakers.
    pub messages: MessageSettings,
    /// `[queues.<name>]` tables of the config file.
    pub queues: BTreeMap<String, QueueSettings>,
    /// `[[schedule]]` entries of the config file, in file order.
    pub schedule: Vec<ScheduleEntry>,
}

/// `WEDSYNC_LOG_FORMAT`: `pretty` (default) or `json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

impl Settings {
    /// Read the process environment and, when given, the TOML file at `config_path`.
    pub fn load(config_path: Option<&Path>) -> Result<Settings, SettingsError> {
        Settings::from_env_and_file(|name| std::env::var(name).ok(), config_path)
    }

    /// Like [`Settings::load`] with the environment given as a function (for tests).
    pub fn from_env_and_file(
        env: impl Fn(&str) -> Option<String>,
        config_path: Option<&Path>,
    ) -> Result<Settings, SettingsError> {
        let file = match config_path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
                        path: path.to_owned(),
                        source,
                    })?;
                Some((path, text))
            }
            None => None,
        };
        Settings::from_env_and_toml(env, file.as_ref().map(|(p, t)| (*p, t.as_str())))
    }

    /// The concurrency of `queue` in this configuration (`[queues.<name>]`, else the default).
    pub fn queue_concurrency(&self, queue: &str) -> i32 {
        self.queues
            .get(queue)
            .and_then(|q| q.concurrency)
            .unwrap_or(self.worker.default_concurrency)
    }
}
