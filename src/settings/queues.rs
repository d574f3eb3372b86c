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
    /// The pool's bounds and base size per worker process for the scaling rules (SPEC §6),
    /// given to the pool when it is created; after that the pool row rules (`PUT /v1/pools`).
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub base: Option<u32>,
}

/// Largest pool size the file may give (the rules' hard ceiling).
const MAX_POOL_SIZE: u32 = 1_000;

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
    for (name, queue) in &queues {
        for (key, value) in [("min", queue.min), ("max", queue.max), ("base", queue.base)] {
            if value.is_some_and(|v| v > MAX_POOL_SIZE) {
                return Err(SettingsError::invalid(
                    format!("[queues.{name}] {key} in {}", path.display()),
                    "is too large",
                    format!("an integer from 0 to {MAX_POOL_SIZE}"),
                ));
            }
        }
        if let (Some(min), Some(max)) = (queue.min, queue.max)
            && min > max
        {
            return Err(SettingsError::invalid(
                format!("[queues.{name}] min={min} in {}", path.display()),
                format!("exceeds max={max}"),
                "min <= max",
            ));
        }
    }
    Ok(queues)
}

impl QueueSettings {
    /// Whether the file sizes this queue's pool for the scaling rules.
    pub fn has_pool(&self) -> bool {
        self.min.is_some() || self.max.is_some() || self.base.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, QueueSettings>, SettingsError> {
        let value: toml::Value = toml::from_str(text).unwrap();
        parse_queues(value.get("queues").cloned(), Path::new("wedsync.toml"))
    }

    #[test]
    fn a_queue_may_give_its_pool_bounds_and_base() {
        let queues = parse("[queues.photos]\nmin = 1\nmax = 16\nbase = 4\n").unwrap();
        let photos = &queues["photos"];
        assert_eq!(
            (photos.min, photos.max, photos.base),
            (Some(1), Some(16), Some(4))
        );
        assert!(photos.has_pool());
    }

    #[test]
    fn a_minimum_above_the_maximum_names_the_queue() {
        let err = parse("[queues.photos]\nmin = 8\nmax = 2\n").unwrap_err();
        assert!(err.to_string().contains("[queues.photos] min=8"), "{err}");
    }
}
