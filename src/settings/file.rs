//! The optional TOML config file, split into its scalar settings, `[queues]` and `[[schedule]]`.

use super::SettingsError;
use super::source::{SCALARS, file_key};
use std::path::Path;

/// A parsed config file (empty when none was given) whose keys are all known.
pub(super) struct ConfigFile<'a> {
    /// The file's path, for messages (empty when none was given).
    pub(super) path: &'a Path,
    /// The keys of scalar settings.
    pub(super) scalars: toml::Table,
    pub(super) queues: Option<toml::Value>,
    pub(super) schedule: Option<toml::Value>,
}

impl<'a> ConfigFile<'a> {
    /// Parse the file's text; an unknown key is an error listing the known ones.
    pub(super) fn parse(file: Option<(&'a Path, &str)>) -> Result<ConfigFile<'a>, SettingsError> {
        let (path, mut table) = match file {
            Some((path, text)) => {
                let table: toml::Table =
                    toml::from_str(text).map_err(|e| SettingsError::file(path, e.to_string()))?;
                (path, table)
            }
            None => (Path::new(""), toml::Table::new()),
        };
        let queues = table.remove("queues");
        let schedule = table.remove("schedule");
        let known: Vec<String> = SCALARS
            .iter()
            .map(|name| file_key(name))
            .chain(["queues".into(), "schedule".into()])
            .collect();
        if let Some(key) = table.keys().find(|key| !known.contains(key)) {
            return Err(SettingsError::file(
                path,
                format!("unknown setting `{key}` (known: {})", known.join(", ")),
            ));
        }
        Ok(ConfigFile {
            path,
            scalars: table,
            queues,
            schedule,
        })
    }
}
