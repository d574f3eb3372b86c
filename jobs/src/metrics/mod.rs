//! `metrics_rollup` (SPEC §5.4): rolls the raw metric events of one hour up into
//! `metric_hourly` (count, errors, p50/p95/p99 per queue/kind and per endpoint), replacing any
//! earlier rollup of that hour, and keeps the raw events' daily partitions ready ahead.
//!
//! Args: `{"hour": "2026-11-22T05:00:00Z"}`, optional; the default is the previous complete
//! hour (UTC). An hour that is not on the hour is a permanent error.
//!
//! Result: `{"hour": …, "rows": n, "events": n, "replaced": n, "partitions_created": n}`.

use crate::context::AppContext;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use wedsync_metrics::{PARTITION_DAYS_AHEAD, ensure_partitions, is_whole_hour, previous_hour};
use wedsync_queue::{Job, JobContext, JobError, JobResult, Outcome};

const TIMEOUT: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsRollup {
    /// The hour to roll up (its start, UTC); default: the previous complete hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hour: Option<DateTime<Utc>>,
}

impl MetricsRollup {
    /// The hour this run rolls up, given the time now.
    fn hour(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
        match self.hour {
            None => Ok(previous_hour(now)),
            Some(hour) if is_whole_hour(hour) => Ok(hour),
            Some(hour) => Err(format!(
                "hour must be the start of an hour (like 2026-11-22T05:00:00Z), not {}",
                hour.to_rfc3339()
            )),
        }
    }
}

impl Job for MetricsRollup {
    const KIND: &'static str = "metrics_rollup";
    const QUEUE: &'static str = "maintenance";
    const MAX_ATTEMPTS: i32 = 5;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        TIMEOUT
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let now = Utc::now();
        let hour = self.hour(now).map_err(JobError::permanent)?;
        let pool = &ctx.app.pool;
        // Hourly runs keep tomorrow's partitions ready long before the first event needs them.
        let created = ensure_partitions(pool, now.date_naive(), PARTITION_DAYS_AHEAD).await?;
        let report = wedsync_metrics::rollup_hour(pool, hour).await?;
        tracing::info!(
            job_id = ctx.job_id,
            hour = %hour,
            rows = report.rows,
            events = report.events,
            replaced = report.replaced,
            "metrics rolled up"
        );
        Ok(Outcome::Completed(Some(json!({
            "hour": hour,
            "rows": report.rows,
            "events": report.events,
            "replaced": report.replaced,
            "partitions_created": created,
        }))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn without_args_the_previous_hour_is_rolled_up() {
        let args: MetricsRollup = serde_json::from_value(json!({})).unwrap();
        assert_eq!(
            args.hour(at("2026-11-22T06:05:00Z")),
            Ok(at("2026-11-22T05:00:00Z"))
        );
    }

    #[test]
    fn an_hour_off_the_hour_is_refused() {
        let args: MetricsRollup =
            serde_json::from_value(json!({"hour": "2026-11-22T05:30:00Z"})).unwrap();
        let err = args.hour(Utc::now()).unwrap_err();
        assert!(err.contains("start of an hour"), "{err}");
        assert!(serde_json::from_value::<MetricsRollup>(json!({"hours": 1})).is_err());
    }
}
