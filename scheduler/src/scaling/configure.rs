//! The operator's side: [`configure`] a pool's bounds, base size and override, applied at once.

use super::evaluate::evaluate_pool;
use super::view::{PoolRow, PoolView, pool_views, size};
use super::{ScalingError, sql};
use crate::pools::{OVERRIDE_CEILING, Override};
use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sqlx::PgPool;

/// An override may last at most this long; a longer one is a change of the pool's settings.
pub const MAX_OVERRIDE: TimeDelta = TimeDelta::days(30);
/// Longest override reason, in characters.
pub const MAX_REASON_LEN: usize = 500;
/// History rows shown with a pool after a change.
const HISTORY: i64 = 20;

/// What an operator changes; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolChanges {
    pub min: Option<u32>,
    pub max: Option<u32>,
    pub base: Option<u32>,
    /// `Some(None)` clears the override.
    pub override_: Option<Option<Override>>,
}

/// Problems with an override (field names as in the API: `override.size`, …).
pub fn validate_override(o: &Override, now: DateTime<Utc>) -> Vec<(String, String)> {
    let mut errors = Vec::new();
    if o.size > OVERRIDE_CEILING {
        errors.push((
            "override.size".into(),
            format!("must be at most {OVERRIDE_CEILING}"),
        ));
    }
    if o.until <= now {
        errors.push(("override.until".into(), "must be in the future".into()));
    } else if o.until - now > MAX_OVERRIDE {
        errors.push((
            "override.until".into(),
            format!("must be at most {} days ahead", MAX_OVERRIDE.num_days()),
        ));
    }
    let reason = o.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON_LEN {
        errors.push((
            "override.reason".into(),
            format!("is required, 1 to {MAX_REASON_LEN} characters"),
        ));
    }
    errors
}

/// Apply `changes` to `queue`'s pool (created with `default_size` as its size if it has none)
/// and evaluate it at once, without cooldown; returns the pool with its recent history.
pub async fn configure(
    pool: &PgPool,
    queue: &str,
    changes: &PoolChanges,
    default_size: u32,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<PoolView, ScalingError> {
    let mut errors = Vec::new();
    for (field, value) in [
        ("min", changes.min),
        ("max", changes.max),
        ("base", changes.base),
    ] {
        if value.is_some_and(|v| v > OVERRIDE_CEILING) {
            errors.push((
                field.to_owned(),
                format!("must be at most {OVERRIDE_CEILING}"),
            ));
        }
    }
    if let Some(Some(o)) = &changes.override_ {
        errors.extend(validate_override(o, now));
    }
    if !errors.is_empty() {
        return Err(ScalingError::Invalid(errors));
    }

    let mut tx = pool.begin().await?;
    let initial = changes.base.unwrap_or(default_size).min(OVERRIDE_CEILING);
    sqlx::query(sql::ENSURE_POOL)
        .bind(queue)
        .bind(initial as i32)
        .execute(&mut *tx)
        .await?;
    let row: PoolRow = sqlx::query_as(sql::LOCK_POOL)
        .bind(queue)
        .fetch_one(&mut *tx)
        .await?;
    let min = changes.min.unwrap_or(size(row.min_size));
    let max = changes.max.unwrap_or(size(row.max_size));
    let base = changes.base.unwrap_or(size(row.base_size));
    if min > max {
        let field = if changes.min.is_some() { "min" } else { "max" };
        return Err(ScalingError::Invalid(vec![(
            field.to_owned(),
            format!("the minimum ({min}) must not exceed the maximum ({max})"),
        )]));
    }
    let override_ = match &changes.override_ {
        Some(set) => set.clone(),
        None => row.override_(),
    };
    sqlx::query(sql::SET_CONFIG)
        .bind(queue)
        .bind(min as i32)
        .bind(max as i32)
        .bind(base as i32)
        .bind(override_.as_ref().map(|o| o.size as i32))
        .bind(override_.as_ref().map(|o| o.until))
        .bind(override_.as_ref().map(|o| o.reason.trim().to_owned()))
        .execute(&mut *tx)
        .await?;
    evaluate_pool(&mut tx, queue, tz, now, true).await?;
    tx.commit().await?;
    tracing::info!(
        queue,
        min,
        max,
        base,
        override_size = override_.as_ref().map(|o| o.size),
        "pool settings changed"
    );
    pool_views(pool, HISTORY, now)
        .await?
        .into_iter()
        .find(|p| p.queue == queue)
        .ok_or_else(|| ScalingError::Database(sqlx::Error::RowNotFound))
}

/// Create `queue`'s pool with `config` (running `config.base` until the first evaluation) unless
/// it has one; true if it was created. The configuration file's pools start this way; after
/// that the row rules, so an operator's change survives restarts.
pub async fn seed_pool(
    pool: &PgPool,
    queue: &str,
    config: crate::pools::PoolConfig,
) -> Result<bool, sqlx::Error> {
    let max = config.max.max(config.min);
    let size = |n: u32| i32::try_from(n.min(OVERRIDE_CEILING)).unwrap_or(0);
    let created = sqlx::query(sql::SEED_POOL)
        .bind(queue)
        .bind(size(config.base.clamp(config.min, max)))
        .bind(size(config.min))
        .bind(size(max))
        .bind(size(config.base))
        .execute(pool)
        .await?
        .rows_affected();
    Ok(created == 1)
}
