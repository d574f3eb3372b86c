//! The `[[schedule]]` entries of the config file.

use super::values::{check_name, parse_timezone};
use super::{SettingsError, Tz};
use serde::Deserialize;
use std::path::Path;

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
    /// `None` → [`Settings::timezone`](super::Settings::timezone).
    pub timezone: Option<Tz>,
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

/// The `[[schedule]]` array of the file at `path`, if any, checked entry by entry.
pub(super) fn parse_schedule(
    value: Option<toml::Value>,
    path: &Path,
) -> Result<Vec<ScheduleEntry>, SettingsError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let raw: Vec<RawScheduleEntry> = value
        .try_into()
        .map_err(|e| SettingsError::file(path, format!("[[schedule]]: {e}")))?;
    let mut entries: Vec<ScheduleEntry> = Vec::with_capacity(raw.len());
    for entry in raw {
        let name = entry.name;
        check_name("[[schedule]] name", &name, path)?;
        if entries.iter().any(|e| e.name == name) {
            return Err(SettingsError::file(
                path,
                format!("two [[schedule]] entries are named `{name}`; names must be unique"),
            ));
        }
        let invalid = |field: &str, value: &str, problem: &str, expected: &str| {
            SettingsError::invalid(
                format!(
                    "[[schedule]] `{name}`: {field}=`{value}` in {}",
                    path.display()
                ),
                problem,
                expected,
            )
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
