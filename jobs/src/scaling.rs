//! `pool_scaling`: the minute evaluation of every pool (SPEC §6), enqueued by the built-in
//! `pool-scaling` schedule entry.
//!
//! Being a cron entry's job makes it exactly-once per minute however many schedulers run (the
//! scheduler's tick guarantees it), visible in `/v1/schedules` and the job history, and runnable
//! by hand. Each pool is evaluated in its own transaction under its row lock, so even two
//! evaluations at once apply one after the other and the cooldowns hold.

use crate::context::AppContext;
use chrono::Utc;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobError, JobResult, Outcome};
use wedsync_scheduler::scaling::evaluate_pools;

/// An evaluation later than this is pointless: the next minute's evaluation is due.
const TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolScaling {
    /// IANA zone of the season and Saturday window rules; UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

impl PoolScaling {
    fn zone(&self) -> Result<Tz, String> {
        match &self.timezone {
            None => Ok(Tz::UTC),
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("timezone `{name}` is not an IANA time zone")),
        }
    }
}

impl Job for PoolScaling {
    const KIND: &'static str = "pool_scaling";
    const QUEUE: &'static str = "maintenance";
    const PRIORITY: i16 = 0;
    /// A failed evaluation is not retried: the next minute evaluates afresh.
    const MAX_ATTEMPTS: i32 = 1;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        TIMEOUT
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let tz = self.zone().map_err(JobError::permanent)?;
        let evaluated = evaluate_pools(&ctx.app.pool, tz, Utc::now())
            .await
            .map_err(JobError::retry)?;
        let pools: serde_json::Map<String, serde_json::Value> = evaluated
            .iter()
            .map(|e| {
                let value = json!({
                    "concurrency": e.sizing.concurrency,
                    "replicas": e.sizing.replicas,
                    "desired": e.plan.sizing.concurrency,
                    "changed": e.changed,
                });
                (e.queue.clone(), value)
            })
            .collect();
        Ok(Outcome::Completed(Some(json!({ "pools": pools }))))
    }
}
