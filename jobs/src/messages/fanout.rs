//! `bulk_send_fanout`: turns a stored send into one delivery per recipient and enqueues the
//! [`DeliverBatch`] jobs that send them — all in one transaction, under the send's row lock.
//!
//! Re-running creates nothing twice: deliveries are keyed by (send, ordinal) and inserted with
//! `ON CONFLICT DO NOTHING`, batch jobs carry a unique key, and a finished fan-out clears the
//! send's inline recipients, so a second run finds nothing to do.

use super::deliver::{DeliverBatch, batch_ranges};
use super::sql;
use crate::context::AppContext;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobError, JobResult, NewJob, Outcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkSendFanout {
    pub send_id: String,
}

impl BulkSendFanout {
    /// The fan-out job of a send, unique per send, due at `send_at` (now when `None`).
    pub fn new_job(send_id: &str, org_id: &str, send_at: Option<DateTime<Utc>>) -> NewJob {
        let job = BulkSendFanout {
            send_id: send_id.to_owned(),
        };
        let mut new = job
            .to_new_job()
            .expect("fan-out args serialise")
            .with_unique_key(format!("{}:{send_id}", Self::KIND))
            .with_org(org_id);
        if let Some(at) = send_at {
            new = new.scheduled_at(at);
        }
        new
    }
}

impl Job for BulkSendFanout {
    const KIND: &'static str = "bulk_send_fanout";
    const QUEUE: &'static str = super::QUEUE;
    const PRIORITY: i16 = 3;
    const MAX_ATTEMPTS: i32 = 10;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        Duration::from_secs(600)
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let mut tx = ctx.app.pool.begin().await?;
        let row: Option<(String, i32, Option<i32>)> = sqlx::query_as(sql::LOCK_FOR_FANOUT)
            .bind(&self.send_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some((org_id, batch_size, count)) = row else {
            return Err(JobError::permanent(format!(
                "bulk send {} does not exist",
                self.send_id
            )));
        };
        let Some(count) = count else {
            return Ok(Outcome::Completed(Some(
                json!({"already_fanned_out": true}),
            )));
        };
        let inserted = sqlx::query(sql::INSERT_DELIVERIES)
            .bind(&self.send_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Erased since the send was created, or there from an earlier run. Ordinals are
        // positions in the request, so the batches cover every one.
        let skipped = (count as u64).saturating_sub(inserted);
        let jobs: Vec<NewJob> = batch_ranges(count, batch_size)
            .map(|(first, last)| DeliverBatch::new_job(&self.send_id, &org_id, first, last))
            .collect();
        let batches = jobs.len();
        wedsync_queue::enqueue_many(&mut tx, &jobs).await?;
        sqlx::query(sql::FINISH_FANOUT)
            .bind(&self.send_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            job_id = ctx.job_id,
            send_id = %self.send_id,
            deliveries = inserted,
            batches,
            skipped,
            "bulk send fanned out"
        );
        Ok(Outcome::Completed(Some(
            json!({"deliveries": inserted, "batches": batches}),
        )))
    }
}
