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
//! [[schedule]]
//! name = "nightly-retention"
//! cron = "0 30 3 * * *"          # the `cron` crate's syntax: seconds first
//! kind = "retention_cleanup"
//! queue = "maintenance"
//! args = { batch = 1000 }        # optional, a table
//! timezone = "Europe/London"     # optional, else WEDSYNC_TIMEZONE
//! ```
//!
//! An empty variable counts as unset. A bad value is a [`SettingsError`] naming the setting and
//! what was expected; the binary exits with status 2 on it. Secrets never appear in messages or
//! in `Debug` output.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use url::Url;

pub use chrono_tz::Tz;

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
/// The largest accepted concurrency (per queue and worker process).
pub const MAX_CONCURRENCY: i32 = 10_000;
/// The longest accepted interval or grace period (one day).
const MAX_MILLIS: u64 = 86_400_000;

/// The validated configuration of one `wedsync-jobs` process.
#[derive(Clone)]
pub struct Settings {
    /// `DATABASE_URL`; `None` → the embedded default's local PostgreSQL.
    pub database_url: Option<SecretString>,
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

/// Timings and sizes of worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTuning {
    /// `WEDSYNC_DEFAULT_CONCURRENCY`: concurrency of a queue with no pool or `[queues.*]` entry.
    pub default_concurrency: i32,
    /// `WEDSYNC_POLL_INTERVAL_MS`: fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// `WEDSYNC_HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval: Duration,
    /// `WEDSYNC_HEARTBEAT_TIMEOUT_MS`: a worker silent this long is dead; its jobs are rescued.
    pub heartbeat_timeout: Duration,
    /// `WEDSYNC_SHUTDOWN_GRACE_MS`: time in-flight jobs get to finish on SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        WorkerTuning {
            default_concurrency: DEFAULT_CONCURRENCY,
            poll_interval: Duration::from_millis(DEFAULT_POLL_INTERVAL_MS),
            heartbeat_interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            heartbeat_timeout: Duration::from_millis(DEFAULT_HEARTBEAT_TIMEOUT_MS),
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
        }
    }
}

/// A `[queues.<name>]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Jobs of this queue run at once per worker process; `None` → the default concurrency.
    pub concurrency: Option<i32>,
}

/// A `[[schedule]]` entry: enqueue `kind` with `args` on `queue` at every tick of `cron`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntry {
    /// Unique among the entries.
    pub name: String,
    /// The `cron` crate's syntax, seconds field first (6 or 7 fields, or `@daily` and the like).
    pub cron: String,
    pub kind: String,
    /// A JSON object (the entry's `args` table; empty when absent).
    pub args: serde_json::Value,
    pub queue: String,
    /// `None` → [`Settings::timezone`].
    pub timezone: Option<Tz>,
}

/// A setting that cannot be used, or a config file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// e.g. "WEDSYNC_LISTEN=`abc` is not a socket address (expected e.g. 127.0.0.1:8080)".
    #[error("{setting} {problem} (expected {expected})")]
    Invalid {
        /// The variable or file key with its value (`(value hidden)` for secrets).
        setting: String,
        problem: String,
        expected: String,
    },
    #[error("cannot read the config file {}: {source} (check the --config path)", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config file {} is not valid: {message}", path.display())]
    File { path: PathBuf, message: String },
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

    /// The work of [`Settings::from_env_and_file`], with the file's path and text.
    fn from_env_and_toml(
        env: impl Fn(&str) -> Option<String>,
        file: Option<(&Path, &str)>,
    ) -> Result<Settings, SettingsError> {
        let mut table = toml::Table::new();
        let mut path = Path::new("");
        if let Some((file_path, text)) = file {
            path = file_path;
            table = toml::from_str(text).map_err(|e| SettingsError::File {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        }
        let queues = table.remove("queues");
        let schedule = table.remove("schedule");
        let known: Vec<String> = SCALARS
            .iter()
            .map(|name| file_key(name))
            .chain(["queues".into(), "schedule".into()])
            .collect();
        if let Some(key) = table.keys().find(|key| !known.contains(key)) {
            return Err(SettingsError::File {
                path: path.to_owned(),
                message: format!("unknown setting `{key}` (known: {})", known.join(", ")),
            });
        }
        let source = Source {
            env: &env,
            file: &table,
            path,
        };

        let database_url = source
            .get("DATABASE_URL", true)?
            .map(parse_database_url)
            .transpose()?;
        let listen = source
            .get("WEDSYNC_LISTEN", false)?
            .map(|v| {
                v.raw
                    .parse::<SocketAddr>()
                    .map_err(|_| v.invalid("is not a socket address", "e.g. 127.0.0.1:8080"))
            })
            .transpose()?
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let smtp_url = source
            .get("WEDSYNC_SMTP_URL", false)?
            .map(|v| parse_url(&v, &["smtp", "smtps"], "e.g. smtp://127.0.0.1:2525"))
            .transpose()?;
        let sms_url = source
            .get("WEDSYNC_SMS_URL", false)?
            .map(|v| parse_url(&v, &["http", "https"], "e.g. https://sms.example.com/api"))
            .transpose()?;
        let storage_url = source
            .get("WEDSYNC_STORAGE_URL", false)?
            .map(parse_storage_url)
            .transpose()?;
        let public_url = source
            .get("WEDSYNC_PUBLIC_URL", false)?
            .map(|v| parse_url(&v, &["http", "https"], "e.g. https://jobs.wedsync.example"))
            .transpose()?;
        let signing_key = source
            .get("WEDSYNC_SIGNING_KEY", true)?
            .map(|v| {
                if v.raw.len() < MIN_SIGNING_KEY_BYTES {
                    Err(v.invalid(
                        &format!("is {} bytes long", v.raw.len()),
                        &format!(
                            "at least {MIN_SIGNING_KEY_BYTES} bytes, e.g. the output of \
                             `openssl rand -hex 32`"
                        ),
                    ))
                } else {
                    Ok(SecretString::from(v.raw))
                }
            })
            .transpose()?;
        let timezone = source
            .get("WEDSYNC_TIMEZONE", false)?
            .map(|v| parse_timezone(&v.raw).map_err(|(p, e)| v.invalid(&p, &e)))
            .transpose()?
            .unwrap_or(chrono_tz::Europe::London);
        let log_format = source
            .get("WEDSYNC_LOG_FORMAT", false)?
            .map(|v| match v.raw.to_ascii_lowercase().as_str() {
                "pretty" => Ok(LogFormat::Pretty),
                "json" => Ok(LogFormat::Json),
                _ => Err(v.invalid("is not a log format", "`json` or `pretty`")),
            })
            .transpose()?
            .unwrap_or_default();
        let log_filter = source.get("RUST_LOG", false)?.map(|v| v.raw);
        let data_dir = source
            .get("WEDSYNC_DATA_DIR", false)?
            .map(|v| PathBuf::from(v.raw))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let default_concurrency = match source.get("WEDSYNC_DEFAULT_CONCURRENCY", false)? {
            Some(v) => parse_concurrency(&v.raw).map_err(|(p, e)| v.invalid(&p, &e))?,
            None => DEFAULT_CONCURRENCY,
        };
        let millis = |name: &'static str, default: u64| -> Result<Duration, SettingsError> {
            Ok(Duration::from_millis(match source.get(name, false)? {
                Some(v) => match v.raw.parse::<u64>() {
                    Ok(ms) if (1..=MAX_MILLIS).contains(&ms) => ms,
                    _ => {
                        return Err(v.invalid(
                            "is not a number of milliseconds",
                            &format!("an integer from 1 to {MAX_MILLIS}, e.g. {default}"),
                        ));
                    }
                },
                None => default,
            }))
        };
        let worker = WorkerTuning {
            default_concurrency,
            poll_interval: millis("WEDSYNC_POLL_INTERVAL_MS", DEFAULT_POLL_INTERVAL_MS)?,
            heartbeat_interval: millis(
                "WEDSYNC_HEARTBEAT_INTERVAL_MS",
                DEFAULT_HEARTBEAT_INTERVAL_MS,
            )?,
            heartbeat_timeout: millis(
                "WEDSYNC_HEARTBEAT_TIMEOUT_MS",
                DEFAULT_HEARTBEAT_TIMEOUT_MS,
            )?,
            shutdown_grace: millis("WEDSYNC_SHUTDOWN_GRACE_MS", DEFAULT_SHUTDOWN_GRACE_MS)?,
        };
        if worker.heartbeat_timeout <= worker.heartbeat_interval {
            let setting = match source.get("WEDSYNC_HEARTBEAT_TIMEOUT_MS", false)? {
                Some(v) => v.setting,
                None => format!(
                    "WEDSYNC_HEARTBEAT_TIMEOUT_MS={} (the default)",
                    DEFAULT_HEARTBEAT_TIMEOUT_MS
                ),
            };
            return Err(SettingsError::Invalid {
                setting,
                problem: format!(
                    "is not longer than WEDSYNC_HEARTBEAT_INTERVAL_MS={}",
                    worker.heartbeat_interval.as_millis()
                ),
                expected: "a timeout of several heartbeat intervals".into(),
            });
        }

        Ok(Settings {
            database_url,
            listen,
            smtp_url,
            sms_url,
            storage_url,
            public_url,
            signing_key,
            timezone,
            log_format,
            log_filter,
            data_dir,
            worker,
            queues: parse_queues(queues, path)?,
            schedule: parse_schedule(schedule, path)?,
        })
    }

    /// The concurrency of `queue` in this configuration (`[queues.<name>]`, else the default).
    pub fn queue_concurrency(&self, queue: &str) -> i32 {
        self.queues
            .get(queue)
            .and_then(|q| q.concurrency)
            .unwrap_or(self.worker.default_concurrency)
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = |u: &Option<Url>| u.as_ref().map(redact_url);
        f.debug_struct("Settings")
            .field("database_url", &self.database_url)
            .field("listen", &self.listen)
            .field("smtp_url", &url(&self.smtp_url))
            .field("sms_url", &url(&self.sms_url))
            .field("storage_url", &url(&self.storage_url))
            .field("public_url", &url(&self.public_url))
            .field("signing_key", &self.signing_key)
            .field("timezone", &self.timezone)
            .field("log_format", &self.log_format)
            .field("log_filter", &self.log_filter)
            .field("data_dir", &self.data_dir)
            .field("worker", &self.worker)
            .field("queues", &self.queues)
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// A URL for display: its password and query values replaced by `***`.
fn redact_url(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k.as_str(), "***")));
    }
    url.to_string()
}

// ---------------------------------------------------------------------------------------------
// Where values come from
// ---------------------------------------------------------------------------------------------

/// Every scalar setting, by variable name.
const SCALARS: &[&str] = &[
    "DATABASE_URL",
    "WEDSYNC_LISTEN",
    "WEDSYNC_SMTP_URL",
    "WEDSYNC_SMS_URL",
    "WEDSYNC_STORAGE_URL",
    "WEDSYNC_PUBLIC_URL",
    "WEDSYNC_SIGNING_KEY",
    "WEDSYNC_TIMEZONE",
    "WEDSYNC_LOG_FORMAT",
    "RUST_LOG",
    "WEDSYNC_DATA_DIR",
    "WEDSYNC_DEFAULT_CONCURRENCY",
    "WEDSYNC_POLL_INTERVAL_MS",
    "WEDSYNC_HEARTBEAT_INTERVAL_MS",
    "WEDSYNC_HEARTBEAT_TIMEOUT_MS",
    "WEDSYNC_SHUTDOWN_GRACE_MS",
];

/// The config file key of a variable: lower case, without `WEDSYNC_`.
fn file_key(name: &str) -> String {
    name.strip_prefix("WEDSYNC_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

struct Source<'a, E: Fn(&str) -> Option<String>> {
    env: &'a E,
    file: &'a toml::Table,
    path: &'a Path,
}

/// A value and how to name it in a message.
struct Value {
    raw: String,
    /// `NAME=\`value\``, `key=\`value\` in file`, or with `(value hidden)` for secrets.
    setting: String,
}

impl Value {
    fn invalid(&self, problem: &str, expected: &str) -> SettingsError {
        SettingsError::Invalid {
            setting: self.setting.clone(),
            problem: problem.to_owned(),
            expected: expected.to_owned(),
        }
    }
}

impl<E: Fn(&str) -> Option<String>> Source<'_, E> {
    /// The value of `name` from the environment, else the file; empty counts as unset.
    /// Values are trimmed, secrets excepted.
    fn get(&self, name: &'static str, secret: bool) -> Result<Option<Value>, SettingsError> {
        debug_assert!(SCALARS.contains(&name));
        let shown = |raw: &str| {
            if secret {
                "(value hidden)".to_owned()
            } else {
                format!("`{raw}`")
            }
        };
        if let Some(raw) = (self.env)(name).filter(|v| !v.trim().is_empty()) {
            let raw = if secret { raw } else { raw.trim().to_owned() };
            let setting = if secret {
                format!("{name} {}", shown(&raw))
            } else {
                format!("{name}={}", shown(&raw))
            };
            return Ok(Some(Value { raw, setting }));
        }
        let key = file_key(name);
        let Some(value) = self.file.get(&key) else {
            return Ok(None);
        };
        let raw = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                return Err(SettingsError::Invalid {
                    setting: format!("`{key}` in {}", self.path.display()),
                    problem: "is a table or an array".into(),
                    expected: "a string or a number".into(),
                });
            }
        };
        if raw.trim().is_empty() {
            return Ok(None);
        }
        let raw = if secret { raw } else { raw.trim().to_owned() };
        let setting = if secret {
            format!("`{key}` {} in {}", shown(&raw), self.path.display())
        } else {
            format!("{key}={} in {}", shown(&raw), self.path.display())
        };
        Ok(Some(Value { raw, setting }))
    }
}

// ---------------------------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------------------------

fn parse_database_url(v: Value) -> Result<SecretString, SettingsError> {
    let expected = "a PostgreSQL URL, e.g. postgres://user:password@host:5432/wedsync";
    match Url::parse(&v.raw) {
        Ok(url) if matches!(url.scheme(), "postgres" | "postgresql") => {
            Ok(SecretString::from(v.raw))
        }
        Ok(url) => Err(v.invalid(&format!("has the scheme `{}`", url.scheme()), expected)),
        Err(e) => Err(v.invalid(&format!("is not a URL ({e})"), expected)),
    }
}

fn parse_url(v: &Value, schemes: &[&str], example: &str) -> Result<Url, SettingsError> {
    let schemes_text: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    let expected = format!("{}, {example}", schemes_text.join(" or "));
    let url =
        Url::parse(&v.raw).map_err(|e| v.invalid(&format!("is not a URL ({e})"), &expected))?;
    if !schemes.contains(&url.scheme()) {
        return Err(v.invalid(&format!("has the scheme `{}`", url.scheme()), &expected));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(v.invalid("has no host", &expected));
    }
    Ok(url)
}

fn parse_storage_url(v: Value) -> Result<Url, SettingsError> {
    let expected = "file:///absolute/directory or s3://bucket/prefix";
    let url =
        Url::parse(&v.raw).map_err(|e| v.invalid(&format!("is not a URL ({e})"), expected))?;
    match url.scheme() {
        "file" => {
            if url
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
                || url.path().len() <= 1
            {
                return Err(v.invalid("is not an absolute directory", expected));
            }
        }
        "s3" => {
            if url.host_str().is_none_or(str::is_empty) {
                return Err(v.invalid("names no bucket", expected));
            }
        }
        other => return Err(v.invalid(&format!("has the scheme `{other}`"), expected)),
    }
    Ok(url)
}

/// `(problem, expected)` when `name` is not an IANA time zone.
fn parse_timezone(name: &str) -> Result<Tz, (String, String)> {
    Tz::from_str(name).map_err(|_| {
        (
            "is not an IANA time zone".into(),
            "a name like Europe/London, America/New_York or UTC".into(),
        )
    })
}

fn parse_concurrency(raw: &str) -> Result<i32, (String, String)> {
    match raw.parse::<i32>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err((
            "is not a concurrency".into(),
            format!("an integer from 1 to {MAX_CONCURRENCY}, e.g. {DEFAULT_CONCURRENCY}"),
        )),
    }
}

fn file_error(path: &Path, message: String) -> SettingsError {
    SettingsError::File {
        path: path.to_owned(),
        message,
    }
}

fn check_name(what: &str, name: &str, path: &Path) -> Result<(), SettingsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SettingsError::Invalid {
            setting: format!("{what} `{name}` in {}", path.display()),
            problem: "is not a valid name".into(),
            expected: "1 to 64 letters, digits, `_`, `-` or `.`".into(),
        })
    }
}

fn parse_queues(
    value: Option<toml::Value>,
    path: &Path,
) -> Result<BTreeMap<String, QueueSettings>, SettingsError> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let queues: BTreeMap<String, QueueSettings> = value
        .try_into()
        .map_err(|e| file_error(path, format!("[queues]: {e}")))?;
    for (name, queue) in &queues {
        check_name("queue", name, path)?;
        if let Some(n) = queue.concurrency {
            parse_concurrency(&n.to_string()).map_err(|(problem, expected)| {
                SettingsError::Invalid {
                    setting: format!("[queues.{name}] concurrency={n} in {}", path.display()),
                    problem,
                    expected,
                }
            })?;
        }
    }
    Ok(queues)
}

/// A `[[schedule]]` entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduleEntry {
    name: String,
    cron: String,
    kind: String,
    #[serde(default)]
    args: toml::Table,
    queue: String,
    timezone: Option<String>,
}

fn parse_schedule(
    value: Option<toml::Value>,
    path: &Path,
) -> Result<Vec<ScheduleEntry>, SettingsError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawScheduleEntry> = value
        .try_into()
        .map_err(|e| file_error(path, format!("[[schedule]]: {e}")))?;
    let mut entries: Vec<ScheduleEntry> = Vec::with_capacity(raw.len());
    for entry in raw {
        let name = entry.name;
        check_name("[[schedule]] name", &name, path)?;
        if entries.iter().any(|e| e.name == name) {
            return Err(file_error(
                path,
                format!("two [[schedule]] entries are named `{name}`; names must be unique"),
            ));
        }
        let invalid =
            |field: &str, value: &str, problem: &str, expected: &str| SettingsError::Invalid {
                setting: format!(
                    "[[schedule]] `{name}`: {field}=`{value}` in {}",
                    path.display()
                ),
                problem: problem.to_owned(),
                expected: expected.to_owned(),
            };
        let fields = entry.cron.split_whitespace().count();
        let shortcut = matches!(
            entry.cron.trim(),
            "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@hourly"
        );
        if !shortcut && !(6..=7).contains(&fields) {
            return Err(invalid(
                "cron",
                &entry.cron,
                &format!("has {fields} fields"),
                "the cron crate's syntax with seconds first, 6 or 7 fields, e.g. `0 30 3 * * *`",
            ));
        }
        if entry.kind.trim().is_empty() {
            return Err(invalid(
                "kind",
                &entry.kind,
                "is empty",
                "a job kind, e.g. `noop`",
            ));
        }
        check_name("[[schedule]] queue", &entry.queue, path)?;
        let timezone = entry
            .timezone
            .map(|tz| parse_timezone(&tz).map_err(|(p, e)| invalid("timezone", &tz, &p, &e)))
            .transpose()?;
        let args = toml_to_json(toml::Value::Table(entry.args)).map_err(|problem| {
            invalid(
                "args",
                "…",
                &problem,
                "a table of strings, numbers, booleans, arrays and tables",
            )
        })?;
        entries.push(ScheduleEntry {
            name,
            cron: entry.cron.trim().to_owned(),
            kind: entry.kind,
            args,
            queue: entry.queue,
            timezone,
        });
    }
    Ok(entries)
}

/// A TOML value as JSON (dates and times become their RFC 3339 text).
fn toml_to_json(value: toml::Value) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(x) => J::Number(
            serde_json::Number::from_f64(x).ok_or_else(|| format!("holds the number {x}"))?,
        ),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(
            items
                .into_iter()
                .map(toml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => J::Object(
            table
                .into_iter()
                .map(|(k, v)| Ok((k, toml_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_env_and_file(env(pairs), None)
    }

    fn load_toml(pairs: &[(&str, &str)], text: &str) -> Result<Settings, SettingsError> {
        Settings::from_env_and_toml(env(pairs), Some((Path::new("wedsync.toml"), text)))
    }

    #[test]
    fn defaults() {
        let s = load(&[]).unwrap();
        assert!(s.database_url.is_none());
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
            ("WEDSYNC_DEFAULT_CONCURRENCY", "ten", "from 1 to 10000"),
            ("WEDSYNC_POLL_INTERVAL_MS", "-5", "milliseconds"),
            ("WEDSYNC_SHUTDOWN_GRACE_MS", "1.5", "milliseconds"),
        ];
        for (name, value, needle) in cases {
            let message = load(&[(name, value)]).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("{name}=`{value}`")),
                "{name}: {message}"
            );
            assert!(message.contains(needle), "{name}: {message}");
        }

        let message = load(&[("WEDSYNC_HEARTBEAT_TIMEOUT_MS", "1000")])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("WEDSYNC_HEARTBEAT_TIMEOUT_MS=`1000` is not longer than"),
            "{message}"
        );
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

    const FILE: &str = r#"
listen = "0.0.0.0:8081"
timezone = "Europe/Paris"
heartbeat_timeout_ms = 8000
database_url = "postgres://file@db/wedsync"

[queues.email]
concurrency = 20

[queues.photos]

[[schedule]]
name = "nightly-retention"
cron = "0 30 3 * * *"
kind = "retention_cleanup"
queue = "maintenance"
args = { batch = 1000, dry_run = false, kinds = ["jobs", "events"], nested = { ratio = 0.5 }, at = 1979-05-27T07:32:00Z }

[[schedule]]
name = "hourly-rollup"
cron = "@hourly"
kind = "metrics_rollup"
queue = "maintenance"
timezone = "UTC"
"#;

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
        let m = message(
            "[[schedule]]\nname = \"a\"\ncron = \"* * * * *\"\nkind = \"noop\"\nqueue = \"q\"",
        );
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
}
