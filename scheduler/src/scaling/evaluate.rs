//! The minute evaluation: [`evaluate_pools`] and one pool's [`evaluate_pool`].

use super::plan::{Plan, Sizing, Source, changes_now, plan};
use super::view::{PoolRow, size};
use super::{ScalingError, sql};
use crate::pools::{Backlog, PRESCALE_AHEAD, Reason, WEDDING_DURATION, Wedding};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgPool};

/// Throughput is measured over the jobs completed in this window before the evaluation.
pub const THROUGHPUT_WINDOW: TimeDelta = TimeDelta::minutes(10);

/// One pool after an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    pub queue: String,
    /// What the rules asked for.
    pub plan: Plan,
    /// What the pool runs now (the plan, or the previous size while a cooldown holds).
    pub sizing: Sizing,
    /// Whether this evaluation changed the pool (and wrote a history row).
    pub changed: bool,
}

/// Evaluate every pool at `now` (`tz`: the wall clock of the season and Saturday rules). Each
/// pool is evaluated in a transaction of its own holding its row lock.
pub async fn evaluate_pools(
    pool: &PgPool,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Vec<Evaluated>, ScalingError> {
    let queues: Vec<String> = sqlx::query_scalar(sql::POOL_QUEUES).fetch_all(pool).await?;
    let mut conn = pool.acquire().await?;
    let mut evaluated = Vec::with_capacity(queues.len());
    for queue in queues {
        let mut tx = conn.begin().await?;
        if let Some(one) = evaluate_pool(&mut tx, &queue, tz, now, false).await? {
            evaluated.push(one);
        }
        tx.commit().await?;
    }
    Ok(evaluated)
}

/// Evaluate `queue`'s pool at `now` inside the caller's transaction; None if it has no pool.
///
/// `forced` (an operator's change) applies the plan without waiting for a cooldown. A change
/// writes the pool's size, replicas and reasons and one `pool_changes` row; no change writes no
/// history (only what the rules asked for, when that differs).
pub async fn evaluate_pool(
    conn: &mut PgConnection,
    queue: &str,
    tz: Tz,
    now: DateTime<Utc>,
    forced: bool,
) -> Result<Option<Evaluated>, ScalingError> {
    let Some(row): Option<PoolRow> = sqlx::query_as(sql::LOCK_POOL)
        .bind(queue)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let weddings = active_weddings(conn, now).await?;
    let backlog = backlog(conn, queue, now).await?;
    let override_ = row.override_();
    let expired = override_.as_ref().is_some_and(|o| now >= o.until);
    let plan = plan(
        &row.config(),
        now,
        tz,
        &weddings,
        Some(backlog),
        override_.as_ref(),
    );
    let current = Sizing {
        concurrency: size(row.concurrency),
        replicas: size(row.desired_replicas),
    };
    let was_overridden = row
        .reasons()
        .iter()
        .any(|r| matches!(r, Reason::Override { .. }));
    let changed = changes_now(current, row.changed_at, &plan, was_overridden, forced, now);
    let desired = i32::try_from(plan.sizing.concurrency).unwrap_or(i32::MAX);
    let reasons = Json(serde_json::to_value(&plan.reasons).unwrap_or_default());
    let text: Vec<String> = plan.reasons.iter().map(ToString::to_string).collect();
    if changed {
        let source = if plan.overridden {
            Source::Override
        } else if forced {
            Source::Operator
        } else {
            Source::Rules
        };
        let replicas = i32::try_from(plan.sizing.replicas).unwrap_or(i32::MAX);
        sqlx::query(sql::APPLY_CHANGE)
            .bind(queue)
            .bind(desired)
            .bind(replicas)
            .bind(&reasons)
            .bind(text.join("; "))
            .bind(now)
            .bind(expired)
            .execute(&mut *conn)
            .await?;
        sqlx::query(sql::INSERT_CHANGE)
            .bind(queue)
            .bind(now)
            .bind(row.concurrency)
            .bind(desired)
            .bind(row.desired_replicas)
            .bind(replicas)
            .bind(&reasons)
            .bind(source.as_str())
            .execute(&mut *conn)
            .await?;
        tracing::info!(queue, from = row.concurrency, to = desired, replicas,
                       source = source.as_str(), reasons = %text.join("; "), "pool size changed");
    } else {
        // The reasons describe the current size: recorded only when the rules ask for it.
        let current_reasons = (plan.sizing == current).then_some(&reasons);
        sqlx::query(sql::NOTE_DESIRED)
            .bind(queue)
            .bind(desired)
            .bind(expired)
            .bind(current_reasons)
            .bind(current_reasons.map(|_| text.join("; ")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(Evaluated {
        queue: queue.to_owned(),
        sizing: if changed { plan.sizing } else { current },
        plan,
        changed,
    }))
}

/// Weddings active at `now` (the rules check the exact window).
async fn active_weddings(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Vec<Wedding>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, i32, i32)> = sqlx::query_as(sql::ACTIVE_WEDDINGS)
        .bind(now)
        .bind(PRESCALE_AHEAD.as_seconds_f64())
        .bind(WEDDING_DURATION.as_seconds_f64())
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(starts_at, guests, photos)| Wedding {
            starts_at,
            expected_guests: size(guests),
            expected_photos: size(photos),
        })
        .filter(|w| w.is_active(now))
        .collect())
}

/// The queue's available jobs and the throughput of one worker slot.
async fn backlog(
    conn: &mut PgConnection,
    queue: &str,
    now: DateTime<Utc>,
) -> Result<Backlog, sqlx::Error> {
    let available: i64 = sqlx::query_scalar(sql::AVAILABLE)
        .bind(queue)
        .fetch_one(&mut *conn)
        .await?;
    let (completed, busy_seconds): (i64, f64) = sqlx::query_as(sql::COMPLETED_WORK)
        .bind(queue)
        .bind(now)
        .bind(THROUGHPUT_WINDOW.as_seconds_f64())
        .fetch_one(&mut *conn)
        .await?;
    Ok(Backlog {
        available: u64::try_from(available).unwrap_or(0),
        per_worker_per_minute: measured_throughput(completed, busy_seconds),
    })
}

/// Jobs one worker slot completes per minute: the jobs completed in the window divided by the
/// minutes they ran (`finalized_at - attempted_at`). Idle slots do not dilute it, so it is the
/// rate of a slot that always has work, which is what clearing a backlog needs. 0 (unmeasured)
/// when nothing completed.
pub fn measured_throughput(completed: i64, busy_seconds: f64) -> f64 {
    if completed <= 0 || !busy_seconds.is_finite() || busy_seconds <= 0.0 {
        return 0.0;
    }
    completed as f64 / (busy_seconds / 60.0)
}

#[cfg(test)]
mod tests {
    use super::measured_throughput;

    #[test]
    fn throughput_is_jobs_per_busy_minute() {
        // 30 jobs of 2 s each: 60 busy seconds, 30 per minute.
        assert_eq!(measured_throughput(30, 60.0), 30.0);
        assert_eq!(measured_throughput(0, 0.0), 0.0);
        assert_eq!(measured_throughput(5, 0.0), 0.0);
    }
}
