//! Where values come from: the environment, else the config file's scalar keys.

use super::SettingsError;
use std::path::Path;

/// Every scalar setting, by variable name.
pub(super) const SCALARS: &[&str] = &[
    "DATABASE_URL",
    "WEDSYNC_LISTEN",
    "WEDSYNC_DB_POOL_SIZE",
    "WEDSYNC_SMTP_URL",
    "WEDSYNC_SMS_URL",
    "WEDSYNC_SMTP_SECONDARY_URL",
    "WEDSYNC_SMTP_POOL_SIZE",
    "WEDSYNC_SMTP_CA_FILE",
    "WEDSYNC_SMTP_RATE_PER_SECOND",
    "WEDSYNC_SMTP_SECONDARY_RATE_PER_SECOND",
    "WEDSYNC_SMS_SECONDARY_URL",
    "WEDSYNC_SMS_RATE_PER_SECOND",
    "WEDSYNC_SMS_SECONDARY_RATE_PER_SECOND",
    "WEDSYNC_SMS_FROM",
    "WEDSYNC_BOUNCE_ADDRESS",
    "WEDSYNC_BREAKER_FAILURES",
    "WEDSYNC_BREAKER_OPEN_MS",
    "WEDSYNC_MESSAGE_CHUNK",
    "WEDSYNC_UNRECORDED_LIMIT",
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
    "WEDSYNC_METRIC_EVENTS",
    "WEDSYNC_MAX_UPLOAD_BYTES",
    "WEDSYNC_MAX_PHOTO_PIXELS",
];

/// The config file key of a variable: lower case, without `WEDSYNC_`.
pub(super) fn file_key(name: &str) -> String {
    name.strip_prefix("WEDSYNC_")
        .unwrap_or(name)
        .to_ascii_lowercase()
}

pub(super) struct Source<'a> {
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's scalar keys (empty without a file).
    pub(super) file: &'a toml::Table,
    pub(super) path: &'a Path,
}

/// A value and how to name it in a message.
pub(super) struct Value {
    pub(super) raw: String,
    /// `NAME=\`value\``, `key=\`value\` in file`, or with `(value hidden)` for secrets.
    pub(super) setting: String,
}

impl Value {
    /// `raw`, trimmed unless secret, named `name=\`raw\`` or, for a secret,
    /// `hidden_name (value hidden)`, then `suffix`; `None` when blank.
    fn new(
        raw: String,
        secret: bool,
        name: &str,
        hidden_name: &str,
        suffix: &str,
    ) -> Option<Value> {
        if raw.trim().is_empty() {
            return None;
        }
        Some(if secret {
            Value {
                setting: format!("{hidden_name} (value hidden){suffix}"),
                raw,
            }
        } else {
            let raw = raw.trim().to_owned();
            Value {
                setting: format!("{name}=`{raw}`{suffix}"),
                raw,
            }
        })
    }

    pub(super) fn invalid(&self, problem: &str, expected: &str) -> SettingsError {
        SettingsError::invalid(self.setting.clone(), problem, expected)
    }
}

impl Source<'_> {
    /// The value of `name` from the environment, else the file; empty counts as unset.
    /// Values are trimmed, secrets excepted.
    pub(super) fn get(
        &self,
        name: &'static str,
        secret: bool,
    ) -> Result<Option<Value>, SettingsError> {
        debug_assert!(SCALARS.contains(&name));
        if let Some(raw) = (self.env)(name)
            && let Some(value) = Value::new(raw, secret, name, name, "")
        {
            return Ok(Some(value));
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
                return Err(SettingsError::invalid(
                    format!("`{key}` in {}", self.path.display()),
                    "is a table or an array",
                    "a string or a number",
                ));
            }
        };
        let suffix = format!(" in {}", self.path.display());
        Ok(Value::new(raw, secret, &key, &format!("`{key}`"), &suffix))
    }
}
