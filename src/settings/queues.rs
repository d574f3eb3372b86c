//! The `[queues.<name>]` tables of the config file.

use super::SettingsError;
use super::values::{check_name, parse_concurrency};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// A `[queues.<name>]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// Jobs of this queue run at once per worker process; `None` → the default concurrency.
    pub concurrency: Option<i32>,
}

/// The `[queues]` table of the file at `path`, if any, with valid names and concurrencies.
pub(super) fn parse_queues(
    value: Option<toml::Value>,
    path: &Path,
) -> Result<BTreeMap<String, QueueSettings>, SettingsError> {
    let Some(value) = value else {
        return Ok(BTreeMap::new());
    };
    let queues: BTreeMap<String, QueueSettings> = value
        .try_into()
        .map_err(|e| SettingsError::file(path, format!("[queues]: {e}")))?;
    for (name, queue) in &queues {
        check_name("queue", name, path)?;
        if let Some(n) = queue.concurrency {
            parse_concurrency(&n.to_string()).map_err(|(problem, expected)| {
                SettingsError::invalid(
                    format!("[queues.{name}] concurrency={n} in {}", path.display()),
                    problem,
                    expected,
                )
            })?;
        }
    }
    Ok(queues)
}
