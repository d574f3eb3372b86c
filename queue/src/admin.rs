//! Operator-side queue operations: inspect, retry, cancel, pools, statistics.

use crate::error::QueueError;
use crate::model::{JobFilter, JobRow, JobState, Pool, QueueStats};
use crate::sql;
use crate::store::Queue;

/// A cancelled job, and the worker that was running it, if any.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Cancelled {
    pub id: i64,
    pub attempted_by: Option<String>,
}

/// Jobs of one (queue, kind, state), for Prometheus.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StateCount {
    pub queue: String,
    pub kind: String,
    pub state: String,
    pub n: i64,
}

impl Queue {
    /// One job by id; `org` limits the lookup to one organisation's jobs.
    pub async fn job(&self, id: i64, org: Option<&str>) -> Result<JobRow, QueueError> {
        let row: Option<JobRow> = sqlx::query_as(sql::GET_JOB)
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.filter(|job| org.is_none() || job.org_id.as_deref() == org)
            .ok_or(QueueError::NotFound(id))
    }

    /// Not a prepared statement: every filter combination is planned for its own values, so an
    /// unfinished state never walks the archive and a finished one never walks the hot table.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>, QueueError> {
        Ok(sqlx::query_as(sql::LIST_JOBS)
            .persistent(false)
            .bind(filter.queue.as_deref())
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(filter.org_id.as_deref())
            .bind(filter.before_id)
            .bind(filter.limit.clamp(1, 1000))
            .fetch_all(self.pool())
            .await?)
    }

    /// Cancel an unfinished job. A running one is told to stop via NOTIFY; whatever it does next
    /// is ignored. Cancelling a finished job is a conflict.
    pub async fn cancel(&self, id: i64, org: Option<&str>) -> Result<JobRow, QueueError> {
        let cancelled: Option<Cancelled> = sqlx::query_as(sql::CANCEL)
            .bind(id)
            .bind(org)
            .fetch_optional(self.pool())
            .await?;
        let job = self.job(id, org).await?;
        match cancelled {
            Some(_) => Ok(job),
            None => Err(QueueError::Conflict(format!(
                "job {id} is already {} and cannot be cancelled",
                job.state
            ))),
        }
    }

    /// Run a job again now: a waiting job becomes available at once; a finished one moves back
    /// to the queue with its history and at least one attempt left. A running job is a conflict.
    pub async fn retry(&self, id: i64, org: Option<&str>) -> Result<JobRow, QueueError> {
        let job = self.job(id, org).await?;
        let statement = match job.state {
            JobState::Running => {
                return Err(QueueError::Conflict(format!(
                    "job {id} is running; cancel it first or wait for it to finish"
                )));
            }
            state if state.is_finished() => sql::RETRY_FINISHED,
            _ => sql::RETRY_UNFINISHED,
        };
        let moved: Option<i64> = sqlx::query_scalar(statement)
            .bind(id)
            .bind(org)
            .fetch_optional(self.pool())
            .await
            .map_err(|err| {
                if QueueError::is_unique_violation(&err) {
                    QueueError::Conflict(format!(
                        "another unfinished job holds unique key {:?}",
                        job.unique_key.as_deref().unwrap_or_default()
                    ))
                } else {
                    err.into()
                }
            })?;
        match moved {
            Some(_) => self.job(id, org).await,
            None => Err(QueueError::Conflict(format!(
                "job {id} changed state while being retried; try again"
            ))),
        }
    }

    pub async fn pools(&self) -> Result<Vec<Pool>, QueueError> {
        Ok(sqlx::query_as(sql::POOLS).fetch_all(self.pool()).await?)
    }

    /// Give `queue` a pool row with `concurrency` unless it has one.
    pub async fn ensure_pool(&self, queue: &str, concurrency: i32) -> Result<(), QueueError> {
        sqlx::query(sql::ENSURE_POOL)
            .bind(queue)
            .bind(concurrency)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Set a queue's per-process concurrency; running workers follow within a second.
    pub async fn set_concurrency(
        &self,
        queue: &str,
        concurrency: i32,
        reason: Option<&str>,
    ) -> Result<Pool, QueueError> {
        Ok(sqlx::query_as(sql::SET_POOL_CONCURRENCY)
            .bind(queue)
            .bind(concurrency)
            .bind(reason)
            .fetch_one(self.pool())
            .await?)
    }

    /// Pause or resume a queue. A queue without a pool row gets one with `default_concurrency`.
    pub async fn set_paused(
        &self,
        queue: &str,
        paused: bool,
        default_concurrency: i32,
    ) -> Result<Pool, QueueError> {
        Ok(sqlx::query_as(sql::SET_POOL_PAUSED)
            .bind(queue)
            .bind(paused)
            .bind(default_concurrency)
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn queue_stats(&self) -> Result<Vec<QueueStats>, QueueError> {
        Ok(sqlx::query_as(sql::QUEUE_STATS)
            .fetch_all(self.pool())
            .await?)
    }

    pub async fn state_counts(&self) -> Result<Vec<StateCount>, QueueError> {
        Ok(sqlx::query_as(sql::STATE_COUNTS)
            .fetch_all(self.pool())
            .await?)
    }
}
