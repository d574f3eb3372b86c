//! Reading, validating and printing settings, through the public entry points.

mod config_file;
mod variables;

use super::*;
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

/// A config file with every kind of entry.
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
