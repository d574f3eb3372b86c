//! The hourly rollup and the partitions it keeps ahead.
//!
//! Idempotent: an hour's rows are deleted and recomputed from the raw events in one
//! transaction, so re-running an hour replaces its rows (late events included) and never adds
//! to them. Rollups of the same hour are serialised by an advisory lock.

use crate::sql;
use chrono::{DateTime, Days, DurationRound, NaiveDate, TimeDelta, Timelike, Utc};
use sqlx::PgPool;

/// Days of partitions kept ready beyond today (UTC).
pub const PARTITION_DAYS_AHEAD: u64 = 3;

/// What one rollup did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupReport {
    pub hour: DateTime<Utc>,
    /// Rows (keys) written for the hour.
    pub rows: u64,
    /// Raw events they summarise.
    pub events: i64,
    /// Rows of an earlier rollup of the same hour that were replaced.
    pub replaced: u64,
}

/// The last hour that has fully ended at `now`.
pub fn previous_hour(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(TimeDelta::hours(1))
        .expect("an hour divides any timestamp")
        - TimeDelta::hours(1)
}

/// True for a timestamp on the hour (minutes, seconds and fractions zero).
pub fn is_whole_hour(t: DateTime<Utc>) -> bool {
    t.minute() == 0 && t.second() == 0 && t.nanosecond() == 0
}

/// Replace the rollup rows of `hour` (which must be whole, see [`is_whole_hour`]) with a fresh
/// computation over its raw events.
pub async fn rollup_hour(pool: &PgPool, hour: DateTime<Utc>) -> Result<RollupReport, sqlx::Error> {
    let end = hour + TimeDelta::hours(1);
    let hours_since_epoch = i32::try_from(hour.timestamp().div_euclid(3600)).unwrap_or(i32::MAX);
    let mut tx = pool.begin().await?;
    sqlx::query(sql::LOCK_HOUR)
        .bind(hours_since_epoch)
        .execute(&mut *tx)
        .await?;
    let replaced = sqlx::query(sql::DELETE_HOUR)
        .bind(hour)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let counts: Vec<i64> = sqlx::query_scalar(sql::ROLLUP_HOUR)
        .persistent(false)
        .bind(hour)
        .bind(end)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(RollupReport {
        hour,
        rows: counts.len() as u64,
        events: counts.iter().sum(),
        replaced,
    })
}

/// Make sure the daily partitions of `first` through `first + days_after` exist; returns how
/// many were created.
pub async fn ensure_partitions(
    pool: &PgPool,
    first: NaiveDate,
    days_after: u64,
) -> Result<u64, sqlx::Error> {
    let mut created = 0;
    for offset in 0..=days_after {
        let Some(day) = first.checked_add_days(Days::new(offset)) else {
            break;
        };
        let new: bool = sqlx::query_scalar(sql::ENSURE_PARTITION)
            .bind(day)
            .fetch_one(pool)
            .await?;
        created += u64::from(new);
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_previous_hour_is_the_last_complete_one() {
        assert_eq!(
            previous_hour(at("2026-11-22T06:05:00Z")),
            at("2026-11-22T05:00:00Z")
        );
        assert_eq!(
            previous_hour(at("2026-11-22T00:00:00Z")),
            at("2026-11-21T23:00:00Z")
        );
    }

    #[test]
    fn only_timestamps_on_the_hour_are_whole() {
        assert!(is_whole_hour(at("2026-11-22T05:00:00Z")));
        assert!(!is_whole_hour(at("2026-11-22T05:00:01Z")));
        assert!(!is_whole_hour(at("2026-11-22T05:00:00.5Z")));
    }
}
