//! The built-in hourly metrics rollup entry, beside the built-in nightly retention.

use crate::Failure;
use wedsync_kinds::MetricsRollup;
use wedsync_queue::Job;

/// Name of the built-in entry.
pub const NAME: &str = "hourly-metrics-rollup";
/// Minute 5 of every hour: late events of the hour just ended (the writers flush within a
/// second) are in by then. On UTC, not `WEDSYNC_TIMEZONE`: the hours rolled up are UTC hours,
/// and a local zone's DST fall-back would skip the repeated hour, which then no run rolls up.
pub const CRON: &str = "0 5 * * * *";

/// `hourly-metrics-rollup` (no args: the previous complete hour), unless the configuration
/// schedules `metrics_rollup` itself.
pub fn hourly_metrics_rollup(
    entries: &[wedsync_scheduler::Entry],
) -> Result<Option<wedsync_scheduler::Entry>, Failure> {
    if entries.iter().any(|e| e.kind == MetricsRollup::KIND) {
        return Ok(None);
    }
    wedsync_scheduler::Entry::parse(
        NAME,
        CRON,
        chrono_tz::UTC,
        MetricsRollup::KIND,
        serde_json::json!({}),
        MetricsRollup::QUEUE,
    )
    .map(Some)
    .map_err(|err| Failure::Runtime(err.into()))
}
