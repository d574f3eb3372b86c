//! `retention_cleanup` (SPEC §5.3): removes expired data policy by policy, in bounded batches
//! that never block, or double count with, a second cleanup running at the same time, and
//! reports how many rows each policy removed.
//!
//! Args (all optional):
//! `{"policies": {"<policy>": {"older_than_days": N}}, "batch_size": 5000, "time_budget_secs": 600}`.
//! An unknown policy name or an out-of-range value is a permanent error.
//!
//! Result: `{"deleted": {"<policy>": n, ...}, "complete": bool}`; `complete` is false when the
//! time budget ran out first, which is still a success: the next run continues. Each policy gets
//! an equal share of the budget left when it starts. A policy that fails (a database or object
//! store error) does not stop the others: the run goes on, then fails as a retry naming it.

mod delete;
mod policy;
mod sql;

use crate::context::AppContext;
pub use policy::PolicyOverride;
use policy::Resolved;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;
use wedsync_queue::{Job, JobContext, JobError, JobResult, Outcome};

/// Rows per batch unless the args say otherwise.
pub const DEFAULT_BATCH_SIZE: u32 = 5_000;
/// The most rows one batch may lock and remove.
pub const MAX_BATCH_SIZE: u32 = 50_000;
/// How long a run keeps starting batches unless the args say otherwise.
pub const DEFAULT_TIME_BUDGET: Duration = Duration::from_secs(600);
/// The longest budget allowed: well inside the kind's timeout, so a run ends on its own.
pub const MAX_TIME_BUDGET: Duration = Duration::from_secs(25 * 60);
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionCleanup {
    /// Per-policy overrides of the default age, by policy name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, PolicyOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<u32>,
    /// Seconds (fractions allowed) after which no further batch is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_budget_secs: Option<f64>,
}

/// Validated args.
struct Plan {
    policies: Vec<Resolved>,
    batch_size: u32,
    time_budget: Duration,
}

impl RetentionCleanup {
    fn plan(&self) -> Result<Plan, String> {
        let policies = policy::resolve(&self.policies).map_err(|e| e.to_string())?;
        let batch_size = self.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(format!(
                "batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}"
            ));
        }
        let time_budget = match self.time_budget_secs {
            None => DEFAULT_TIME_BUDGET,
            Some(secs) => Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero() && *d <= MAX_TIME_BUDGET)
                .ok_or_else(|| {
                    format!(
                        "time_budget_secs must be more than 0 and at most {}, not {secs}",
                        MAX_TIME_BUDGET.as_secs()
                    )
                })?,
        };
        Ok(Plan {
            policies,
            batch_size,
            time_budget,
        })
    }
}

impl Job for RetentionCleanup {
    const KIND: &'static str = "retention_cleanup";
    const QUEUE: &'static str = "maintenance";
    const MAX_ATTEMPTS: i32 = 5;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        TIMEOUT
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let plan = self.plan().map_err(JobError::permanent)?;
        let deadline = Instant::now() + plan.time_budget;
        let mut deleted = serde_json::Map::new();
        let mut complete = true;
        let mut failures = Vec::new();
        for (i, resolved) in plan.policies.iter().enumerate() {
            let name = resolved.policy.name;
            let share = share_of_rest(deadline, plan.policies.len() - i);
            // A policy that fails does not hold back the ones after it (message bodies, say,
            // behind an object store that is down): the run goes on, then is retried.
            let purged = match delete::purge(&ctx.app, resolved, plan.batch_size, share).await {
                Ok(purged) => purged,
                Err(failed) => {
                    tracing::warn!(
                        job_id = ctx.job_id,
                        policy = name,
                        deleted = failed.deleted,
                        error = %failed.error,
                        "retention policy failed"
                    );
                    failures.push(format!(
                        "`{name}` failed after deleting {} rows: {}",
                        failed.deleted, failed.error
                    ));
                    delete::Purged {
                        deleted: failed.deleted,
                        drained: false,
                    }
                }
            };
            tracing::info!(
                job_id = ctx.job_id,
                policy = name,
                older_than_days = resolved.older_than_days,
                deleted = purged.deleted,
                complete = purged.drained,
                "retention policy done"
            );
            complete &= purged.drained;
            deleted.insert(name.to_owned(), json!(purged.deleted));
        }
        if !failures.is_empty() {
            return Err(JobError::retry(format!(
                "retention policies failed ({}); deleted: {}",
                failures.join("; "),
                serde_json::Value::Object(deleted)
            )));
        }
        Ok(Outcome::Completed(Some(
            json!({ "deleted": deleted, "complete": complete }),
        )))
    }
}

/// The deadline of the next of `left` policies: an equal share of the time left before
/// `deadline`, so a policy with a large backlog (finished jobs after a busy week) cannot spend
/// the whole budget and leave the ones after it (message bodies: personal data) untouched. Time
/// a policy does not need goes to the ones after it.
fn share_of_rest(deadline: Instant, left: usize) -> Instant {
    let now = Instant::now();
    let rest = deadline.saturating_duration_since(now);
    now + rest / u32::try_from(left.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: serde_json::Value) -> RetentionCleanup {
        serde_json::from_value(value).expect("args decode")
    }

    #[test]
    fn empty_args_use_the_defaults() {
        let plan = args(json!({})).plan().unwrap();
        assert_eq!(plan.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(plan.time_budget, DEFAULT_TIME_BUDGET);
        assert_eq!(plan.policies.len(), policy::POLICIES.len());
    }

    #[test]
    fn documented_args_decode() {
        let plan = args(json!({
            "policies": {"completed_jobs": {"older_than_days": 7}},
            "batch_size": 500,
            "time_budget_secs": 60
        }))
        .plan()
        .unwrap();
        assert_eq!(plan.batch_size, 500);
        assert_eq!(plan.time_budget, Duration::from_secs(60));
        assert_eq!(plan.policies[0].older_than_days, 7);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(args(json!({"batch_size": 0})).plan().is_err());
        assert!(args(json!({"time_budget_secs": 0})).plan().is_err());
        assert!(args(json!({"time_budget_secs": -1.0})).plan().is_err());
        assert!(args(json!({"time_budget_secs": 3600})).plan().is_err());
        let err = args(json!({"policies": {"photos": {"older_than_days": 3}}}))
            .plan()
            .err()
            .unwrap();
        assert!(err.contains("photos"), "{err}");
    }

    #[test]
    fn unknown_fields_do_not_decode() {
        assert!(serde_json::from_value::<RetentionCleanup>(json!({"batch": 1})).is_err());
    }
}
