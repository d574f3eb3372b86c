//! The hot path: enqueue, claim, complete, fail, and the worker bookkeeping the rescuer relies on.

use crate::error::QueueError;
use crate::model::{Enqueued, JobRow, JobState, NewJob};
use crate::sql;
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::HashMap;
use std::time::Duration;

/// Rows per INSERT statement in a bulk enqueue; keeps each statement's parameters bounded.
const ENQUEUE_CHUNK: usize = 5_000;

/// Handle to the queue tables. Cheap to clone.
///
/// Statements on the hot table are sent unprepared (`persistent(false)`), so each is planned for
/// the table as it is now. A prepared statement's cached *generic* plan, chosen while the table
/// was nearly empty, kept sequential-scanning it once it held 100,000 jobs (drains fell from
/// ~60k to ~12k jobs/s); planning each statement costs far less than that.
#[derive(Clone, Debug)]
pub struct Queue {
    pool: PgPool,
}

impl Queue {
    pub fn new(pool: PgPool) -> Self {
        Queue { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued, QueueError> {
        let mut conn = self.pool.acquire().await?;
        enqueue(&mut conn, job).await
    }

    /// Enqueue all of `jobs` or none of them (one transaction around the bulk statements).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>, QueueError> {
        let mut tx = self.pool.begin().await?;
        let enqueued = enqueue_many(&mut tx, jobs).await?;
        tx.commit().await?;
        Ok(enqueued)
    }

    /// Claim up to `limit` available jobs of `queue` for `worker_id`, highest priority first.
    pub async fn claim_batch(
        &self,
        queue: &str,
        limit: i64,
        worker_id: &str,
    ) -> Result<Vec<JobRow>, QueueError> {
        Ok(sqlx::query_as(sql::CLAIM_BATCH)
            .persistent(false)
            .bind(queue)
            .bind(limit)
            .bind(worker_id)
            .fetch_all(&self.pool)
            .await?)
    }

    /// Mark jobs completed and move them to the archive in one statement. Returns how many of
    /// them were still held by this worker (a rescued job is not completed twice).
    pub async fn complete_batch(
        &self,
        worker_id: &str,
        done: &[(i64, Option<Value>)],
    ) -> Result<u64, QueueError> {
        let ids: Vec<i64> = done.iter().map(|(id, _)| *id).collect();
        let results: Vec<Option<Value>> = done.iter().map(|(_, r)| r.clone()).collect();
        let outcome = sqlx::query(sql::COMPLETE_BATCH)
            .persistent(false)
            .bind(ids)
            .bind(results)
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(outcome.rows_affected())
    }

    /// Record a failed attempt to be retried after `delay`.
    pub async fn fail_retry(
        &self,
        job: &JobRow,
        worker_id: &str,
        delay: Duration,
        error: Value,
    ) -> Result<bool, QueueError> {
        let outcome = sqlx::query(sql::FAIL_RETRY)
            .persistent(false)
            .bind(job.id)
            .bind(worker_id)
            .bind(delay.as_secs_f64())
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(outcome.rows_affected() == 1)
    }

    /// Finalise a running job as discarded or cancelled, appending `error` to its history.
    pub async fn finalize_running(
        &self,
        job_id: i64,
        worker_id: &str,
        state: JobState,
        error: Option<Value>,
    ) -> Result<bool, QueueError> {
        debug_assert!(matches!(state, JobState::Discarded | JobState::Cancelled));
        let outcome = sqlx::query(sql::FINALIZE_RUNNING)
            .persistent(false)
            .bind(job_id)
            .bind(worker_id)
            .bind(state.as_str())
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(outcome.rows_affected() == 1)
    }

    /// Return jobs a stopping worker did not finish; their attempt is not counted.
    pub async fn hand_back(&self, worker_id: &str, ids: &[i64]) -> Result<u64, QueueError> {
        let handed_back: i64 = sqlx::query_scalar(sql::HAND_BACK)
            .persistent(false)
            .bind(ids)
            .bind(worker_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(handed_back as u64)
    }

    /// Put a running job of `worker_id` back to wait for `delay` without counting the attempt
    /// ([`crate::Outcome::Snooze`]). False when the worker no longer held it.
    pub async fn snooze(
        &self,
        job_id: i64,
        worker_id: &str,
        delay: Duration,
    ) -> Result<bool, QueueError> {
        let snoozed: i64 = sqlx::query_scalar(sql::SNOOZE)
            .persistent(false)
            .bind(job_id)
            .bind(worker_id)
            .bind(delay.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok(snoozed == 1)
    }

    /// Make the waiting (scheduled or retryable) jobs with any of `unique_keys` available now,
    /// e.g. the jobs of a cancelled bulk send, so they end at once. Returns how many were woken.
    pub async fn run_now_by_unique_keys(&self, unique_keys: &[String]) -> Result<u64, QueueError> {
        self.wake_by_unique_keys(unique_keys, true).await
    }

    /// Make the snoozed (scheduled) jobs with any of `unique_keys` available now, e.g. those of
    /// a bulk send that was resumed. A job waiting out its retry backoff keeps waiting: the
    /// backoff is what its last failure asked for (a provider's `Retry-After`), and running it
    /// early would spend an attempt on the same answer. Returns how many were woken.
    pub async fn run_snoozed_now_by_unique_keys(
        &self,
        unique_keys: &[String],
    ) -> Result<u64, QueueError> {
        self.wake_by_unique_keys(unique_keys, false).await
    }

    async fn wake_by_unique_keys(
        &self,
        unique_keys: &[String],
        retryable_too: bool,
    ) -> Result<u64, QueueError> {
        let woken: i64 = sqlx::query_scalar(sql::RUN_NOW_BY_UNIQUE_KEYS)
            .persistent(false)
            .bind(unique_keys)
            .bind(retryable_too)
            .fetch_one(&self.pool)
            .await?;
        Ok(woken as u64)
    }

    pub async fn register_worker(
        &self,
        worker_id: &str,
        host: &str,
        queues: &[String],
    ) -> Result<(), QueueError> {
        sqlx::query(sql::REGISTER_WORKER)
            .bind(worker_id)
            .bind(host)
            .bind(std::process::id() as i32)
            .bind(queues)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Returns false when the worker's row is gone (it was declared dead and its jobs rescued).
    pub async fn heartbeat(&self, worker_id: &str) -> Result<bool, QueueError> {
        let row = sqlx::query(sql::HEARTBEAT)
            .bind(worker_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The subset of `ids` that `worker_id` still holds as running.
    pub async fn still_held(&self, worker_id: &str, ids: &[i64]) -> Result<Vec<i64>, QueueError> {
        Ok(sqlx::query_scalar(sql::STILL_HELD)
            .persistent(false)
            .bind(ids)
            .bind(worker_id)
            .fetch_all(&self.pool)
            .await?)
    }

    pub async fn deregister_worker(&self, worker_id: &str) -> Result<(), QueueError> {
        sqlx::query(sql::DEREGISTER_WORKER)
            .bind(worker_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// One maintenance pass, run by at most one process at a time: promote due scheduled and
    /// retryable jobs and, with `rescue` (the heartbeat timeout), return the jobs of workers silent
    /// for longer than that. About every 30 s (shared by all workers) the pass also sweeps for
    /// running jobs whose worker row is gone, which scans the hot table.
    pub async fn maintain(&self, rescue: Option<Duration>) -> Result<Maintenance, QueueError> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar(sql::TRY_MAINTENANCE_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Maintenance::default());
        }
        let promoted: i64 = sqlx::query(sql::PROMOTE_DUE)
            .persistent(false)
            .bind(10_000_i64)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get::<i64, _>("n"))
            .sum();
        let mut done = Maintenance {
            promoted,
            ..Maintenance::default()
        };
        if let Some(heartbeat_timeout) = rescue {
            let sweep = sqlx::query_scalar::<_, bool>(sql::CLAIM_ORPHAN_SWEEP)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            let rescued = sqlx::query(sql::RESCUE_ORPHANS)
                .persistent(false)
                .bind(heartbeat_timeout.as_secs_f64())
                .bind(sweep)
                .fetch_one(&mut *tx)
                .await?;
            done.rescued = rescued.get("rescued");
            done.discarded = rescued.get("discarded");
        }
        tx.commit().await?;
        Ok(done)
    }
}

impl Queue {
    /// Vacuum `jobs` when it holds more than `min_dead` dead row versions. Every job leaves two
    /// behind (claim, completion) and autovacuum wakes only once a minute, which under sustained
    /// load is long enough for dead index entries to slow every claim; a small hot table vacuums
    /// in milliseconds. Returns whether a vacuum ran.
    pub async fn vacuum_if_bloated(&self, min_dead: i64) -> Result<bool, QueueError> {
        let dead: i64 = sqlx::query_scalar(sql::JOBS_DEAD_TUPLES)
            .fetch_optional(&self.pool)
            .await?
            .unwrap_or(0);
        if dead < min_dead {
            return Ok(false);
        }
        sqlx::raw_sql(sql::VACUUM_JOBS).execute(&self.pool).await?;
        Ok(true)
    }
}

/// What one maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    pub promoted: i64,
    pub rescued: i64,
    pub discarded: i64,
}

/// Enqueue one job on `conn` (which may be inside the caller's transaction).
pub async fn enqueue(conn: &mut PgConnection, job: NewJob) -> Result<Enqueued, QueueError> {
    let mut out = enqueue_many(conn, std::slice::from_ref(&job)).await?;
    Ok(out.remove(0))
}

/// Enqueue many jobs on `conn` in statements of up to 5,000 rows. Jobs whose unique key is held
/// by an unfinished job are not inserted; their entry names the existing job.
/// Not atomic by itself across chunks: run it inside a transaction (as [`Queue::enqueue_many`]
/// does) when all-or-nothing matters.
pub async fn enqueue_many(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, QueueError> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(ENQUEUE_CHUNK) {
        out.extend(enqueue_chunk(conn, chunk).await?);
    }
    Ok(out)
}

async fn enqueue_chunk(
    conn: &mut PgConnection,
    jobs: &[NewJob],
) -> Result<Vec<Enqueued>, QueueError> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(sql::ENQUEUE_MANY)
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| &j.args).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.scheduled_at).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.unique_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.org_id.as_deref()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
    if rows.len() == jobs.len() {
        return Ok(rows
            .into_iter()
            .map(|(id, _)| Enqueued {
                id,
                duplicate: false,
            })
            .collect());
    }
    // Some unique keys were taken. Returned rows come in input order, so a keyed job was
    // inserted exactly when the next returned row carries its key.
    let mut returned = rows.into_iter().peekable();
    let mut fresh: Vec<Option<i64>> = Vec::with_capacity(jobs.len());
    let mut ids_by_key: HashMap<String, i64> = HashMap::new();
    for job in jobs {
        let matches_next = returned
            .peek()
            .is_some_and(|(_, key)| key.as_deref() == job.unique_key.as_deref());
        if matches_next {
            let (id, key) = returned.next().expect("peeked");
            if let Some(key) = key {
                ids_by_key.insert(key, id);
            }
            fresh.push(Some(id));
        } else {
            fresh.push(None);
        }
    }
    let missing: Vec<&str> = jobs
        .iter()
        .zip(&fresh)
        .filter(|(_, id)| id.is_none())
        .filter_map(|(job, _)| job.unique_key.as_deref())
        .filter(|key| !ids_by_key.contains_key(*key))
        .collect();
    if !missing.is_empty() {
        let existing: Vec<(i64, String)> = sqlx::query_as(sql::IDS_BY_UNIQUE_KEY)
            .bind(&missing)
            .fetch_all(&mut *conn)
            .await?;
        ids_by_key.extend(existing.into_iter().map(|(id, key)| (key, id)));
    }
    jobs.iter()
        .zip(fresh)
        .map(|(job, id)| match id {
            Some(id) => Ok(Enqueued {
                id,
                duplicate: false,
            }),
            None => {
                let key = job.unique_key.as_deref().unwrap_or_default();
                ids_by_key
                    .get(key)
                    .map(|&id| Enqueued {
                        id,
                        duplicate: true,
                    })
                    .ok_or_else(|| {
                        QueueError::Conflict(format!(
                            "unique key `{key}` was released during enqueue; try again"
                        ))
                    })
            }
        })
        .collect()
}

/// An error entry for a job's history.
pub fn error_entry(attempt: i32, class: &str, message: &str) -> Value {
    json!({ "attempt": attempt, "kind": class, "error": message, "at": chrono::Utc::now() })
}
