//! `noop`: does nothing, optionally after sleeping; for benchmarks and smoke tests.

use crate::context::AppContext;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobResult, Outcome};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noop {
    /// Sleep this long before finishing (to simulate work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
}

impl Job for Noop {
    const KIND: &'static str = "noop";
    const QUEUE: &'static str = "default";
    type Context = AppContext;

    async fn run(self, _ctx: JobContext<AppContext>) -> JobResult {
        if let Some(ms) = self.sleep_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        Ok(Outcome::done())
    }
}
