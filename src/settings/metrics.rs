//! `WEDSYNC_METRIC_EVENTS`: whether workers and the API write raw metric events (SPEC §5.4).
//!
//! On by default; turning it off leaves the hourly rollup empty (live `/metrics` is unaffected).
//! It exists to measure what the events cost and as an escape hatch, not as routine tuning.

use super::SettingsError;
use super::source::Source;

pub(super) fn read_metric_events(source: &Source<'_>) -> Result<bool, SettingsError> {
    let Some(v) = source.get("WEDSYNC_METRIC_EVENTS", false)? else {
        return Ok(true);
    };
    match v.raw.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(v.invalid("is not a switch", "`true` or `false`")),
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    fn load(value: &str) -> Result<Settings, crate::settings::SettingsError> {
        let value = value.to_owned();
        Settings::from_env_and_file(
            move |name| (name == "WEDSYNC_METRIC_EVENTS").then(|| value.clone()),
            None,
        )
    }

    #[test]
    fn metric_events_are_on_unless_switched_off() {
        assert!(load("").unwrap().metric_events);
        assert!(load("true").unwrap().metric_events);
        assert!(!load("false").unwrap().metric_events);
        assert!(!load("OFF").unwrap().metric_events);
    }

    #[test]
    fn a_bad_switch_names_the_variable() {
        let err = load("maybe").unwrap_err().to_string();
        assert!(err.contains("WEDSYNC_METRIC_EVENTS"), "{err}");
    }
}
