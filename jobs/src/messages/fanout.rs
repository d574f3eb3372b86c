//! `bulk_send_fanout`: turns a stored send into one delivery per recipient and enqueues the
//! [`DeliverBatch`] jobs that send them, a slice of recipients at a time.
//!
//! Each slice — its deliveries, its batch jobs and the send's `fanout_next` — commits in one
//! transaction under the send's row lock, so sending starts once the first slice is in instead
//! of after the whole send (a 50,000-recipient fan-out is about half a second of the database's
//! time). Slices grow with what was fanned out before them (see [`slice_end`]), so a large send
//! costs few statements: each reads the stored recipients once more.
//!
//! Re-running creates nothing twice: a retried fan-out carries on from `fanout_next`,
//! deliveries are keyed by (send, ordinal) and a range already holding some is inserted with
//! `ON CONFLICT DO NOTHING` (the others plainly, which is cheaper: `sql::INSERT_DELIVERIES`), batch
//! jobs carry a unique key, and a finished fan-out clears the send's inline recipients, so a
//! second run finds nothing to do. A cancel between two slices clears them too: the fan-out
//! stops there, and the cancel counted the rest (`recipient_count - fanout_next`) cancelled.

use super::deliver::{DeliverBatch, batch_ranges};
use super::sql;
use crate::context::AppContext;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobError, JobResult, NewJob, Outcome};

/// The smallest and the largest slice, in recipients (rounded up to whole batches).
const MIN_SLICE: i32 = 1_000;
const MAX_SLICE: i32 = 10_000;

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
        let mut done = Slice::default();
        let mut slices = 0;
        loop {
            match fan_out_next_slice(&ctx.app.pool, &self.send_id).await? {
                Step::Missing => {
                    return Err(JobError::permanent(format!(
                        "bulk send {} does not exist",
                        self.send_id
                    )));
                }
                Step::NothingLeft if slices == 0 => {
                    return Ok(Outcome::Completed(Some(
                        json!({"already_fanned_out": true}),
                    )));
                }
                // Cancelled between two slices.
                Step::NothingLeft => break,
                Step::Slice(slice) => {
                    slices += 1;
                    done.deliveries += slice.deliveries;
                    done.batches += slice.batches;
                    done.skipped += slice.skipped;
                    if slice.last {
                        break;
                    }
                }
            }
        }
        tracing::info!(
            job_id = ctx.job_id,
            send_id = %self.send_id,
            deliveries = done.deliveries,
            batches = done.batches,
            skipped = done.skipped,
            slices,
            "bulk send fanned out"
        );
        Ok(Outcome::Completed(Some(
            json!({"deliveries": done.deliveries, "batches": done.batches}),
        )))
    }
}

/// What one slice created.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Slice {
    pub deliveries: u64,
    pub batches: usize,
    /// Recipients of the slice that got no delivery: erased since the send was created, or
    /// there from an earlier run.
    pub skipped: u64,
    /// The slice reached the last recipient: the send is fanned out.
    pub last: bool,
}

/// What [`fan_out_next_slice`] found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Missing,
    /// Fanned out already, or cancelled.
    NothingLeft,
    Slice(Slice),
}

/// Fan out the next slice of the send, in one transaction (public for tests that stop a
/// fan-out between two slices).
pub async fn fan_out_next_slice(pool: &PgPool, send_id: &str) -> Result<Step, JobError> {
    let mut tx = pool.begin().await?;
    let row: Option<(String, i32, i32, bool, i32)> = sqlx::query_as(sql::LOCK_FOR_FANOUT)
        .bind(send_id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some((org_id, batch_size, count, pending, next)) = row else {
        return Ok(Step::Missing);
    };
    if !pending {
        return Ok(Step::NothingLeft);
    }
    let end = slice_end(next, count, batch_size);
    let deliveries = if end > next {
        // Under the row lock nothing else inserts the send's deliveries, so the answer holds.
        let some_exist: bool = sqlx::query_scalar(sql::ANY_DELIVERY_IN_RANGE)
            .bind(send_id)
            .bind(next)
            .bind(end - 1)
            .fetch_one(&mut *tx)
            .await?;
        let insert = if some_exist {
            sql::INSERT_DELIVERIES_SKIPPING
        } else {
            sql::INSERT_DELIVERIES
        };
        sqlx::query(insert)
            .bind(send_id)
            .bind(next)
            .bind(end - 1)
            .execute(&mut *tx)
            .await?
            .rows_affected()
    } else {
        0 // a send without recipients
    };
    // Ordinals are positions in the request and slices end on batch boundaries, so the
    // batches starting in the slice cover it exactly.
    let jobs: Vec<NewJob> = batch_ranges(count, batch_size)
        .filter(|&(first, _)| first >= next && first < end)
        .map(|(first, last)| DeliverBatch::new_job(send_id, &org_id, first, last))
        .collect();
    wedsync_queue::enqueue_many(&mut tx, &jobs).await?;
    let last = end >= count;
    sqlx::query(if last {
        sql::FINISH_FANOUT
    } else {
        sql::ADVANCE_FANOUT
    })
    .bind(send_id)
    .bind(end)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Step::Slice(Slice {
        deliveries,
        batches: jobs.len(),
        skipped: ((end - next).max(0) as u64).saturating_sub(deliveries),
        last,
    }))
}

/// Where the slice starting at ordinal `next` ends (exclusive): as many recipients as were
/// fanned out before it, within [`MIN_SLICE`]..=[`MAX_SLICE`], in whole batches of
/// `batch_size`, and never past the last of `count`.
fn slice_end(next: i32, count: i32, batch_size: i32) -> i32 {
    let size = batch_size.max(1);
    let wanted = next.clamp(MIN_SLICE, MAX_SLICE);
    let batches = (wanted + size - 1) / size;
    next.saturating_add(batches.saturating_mul(size)).min(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slices of a send, as (start, end) pairs.
    fn slices(count: i32, batch_size: i32) -> Vec<(i32, i32)> {
        let mut next = 0;
        let mut out = Vec::new();
        loop {
            let end = slice_end(next, count, batch_size);
            out.push((next, end));
            if end >= count {
                return out;
            }
            next = end;
        }
    }

    #[test]
    fn slices_grow_from_the_smallest_to_the_largest_in_whole_batches() {
        assert_eq!(
            slices(50_000, 200),
            vec![
                (0, 1_000),
                (1_000, 2_000),
                (2_000, 4_000),
                (4_000, 8_000),
                (8_000, 16_000),
                (16_000, 26_000),
                (26_000, 36_000),
                (36_000, 46_000),
                (46_000, 50_000),
            ]
        );
        // A batch larger than the smallest slice: one batch per slice at first.
        assert_eq!(slices(5_000, 3_000), vec![(0, 3_000), (3_000, 5_000)]);
        // Every slice but the last ends on a batch boundary.
        for (_, end) in slices(12_345, 300).iter().rev().skip(1) {
            assert_eq!(end % 300, 0);
        }
    }

    #[test]
    fn a_small_or_empty_send_is_one_slice() {
        assert_eq!(slices(120, 50), vec![(0, 120)]);
        assert_eq!(slices(0, 200), vec![(0, 0)]);
    }
}
