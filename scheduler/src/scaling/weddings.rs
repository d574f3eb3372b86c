//! Weddings registered ahead (`POST /v1/weddings`) that pre-scaling plans for.
//!
//! A wedding is registered with its local date, start time and IANA zone; `starts_at` is that
//! wall-clock time in the zone, with daylight saving time applied. A local time that does not
//! exist (skipped when the clocks go forward) is refused; one that happens twice (when they go
//! back) is the first of the two.

use super::{ScalingError, sql};
use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use sqlx::PgPool;

/// A wedding to register, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWedding {
    pub org_id: String,
    pub name: String,
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub timezone: Tz,
    pub expected_guests: u32,
    pub expected_photos: u32,
}

/// A registered wedding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct WeddingRow {
    pub id: String,
    pub org_id: String,
    pub name: String,
    #[serde(rename = "date")]
    pub local_date: NaiveDate,
    #[serde(rename = "start_time")]
    pub local_start: NaiveTime,
    pub timezone: String,
    pub starts_at: DateTime<Utc>,
    pub expected_guests: i32,
    pub expected_photos: i32,
    pub created_at: DateTime<Utc>,
}

/// The local time does not exist in the zone (the clocks skip it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{date} {start} does not exist in {zone} (the clocks go forward over it)")]
pub struct NonexistentLocalTime {
    pub date: NaiveDate,
    pub start: NaiveTime,
    pub zone: Tz,
}

/// The instant of `start` on `date` on the wall clock of `zone`.
pub fn starts_at(
    date: NaiveDate,
    start: NaiveTime,
    zone: Tz,
) -> Result<DateTime<Utc>, NonexistentLocalTime> {
    match zone.from_local_datetime(&date.and_time(start)) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(NonexistentLocalTime { date, start, zone }),
    }
}

/// Store a wedding; a local start time that does not exist is invalid (`start_time`).
pub async fn register(pool: &PgPool, wedding: &NewWedding) -> Result<WeddingRow, ScalingError> {
    let at = starts_at(wedding.date, wedding.start, wedding.timezone)
        .map_err(|err| ScalingError::Invalid(vec![("start_time".into(), err.to_string())]))?;
    Ok(sqlx::query_as(sql::INSERT_WEDDING)
        .bind(&wedding.org_id)
        .bind(&wedding.name)
        .bind(wedding.date)
        .bind(wedding.start)
        .bind(wedding.timezone.name())
        .bind(at)
        .bind(i32::try_from(wedding.expected_guests).unwrap_or(i32::MAX))
        .bind(i32::try_from(wedding.expected_photos).unwrap_or(i32::MAX))
        .fetch_one(pool)
        .await?)
}

/// Weddings starting after `after`, soonest first; `org` limits them to one organisation.
pub async fn list(
    pool: &PgPool,
    org: Option<&str>,
    after: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<WeddingRow>, sqlx::Error> {
    sqlx::query_as(sql::LIST_WEDDINGS)
        .bind(org)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::London;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn summer_and_winter_starts_follow_daylight_saving() {
        let summer = starts_at(d(2026, 6, 20), t(14, 0), London).unwrap();
        assert_eq!(summer.to_rfc3339(), "2026-06-20T13:00:00+00:00");
        let winter = starts_at(d(2026, 2, 14), t(14, 0), London).unwrap();
        assert_eq!(winter.to_rfc3339(), "2026-02-14T14:00:00+00:00");
    }

    #[test]
    fn a_skipped_local_time_is_refused_and_a_repeated_one_is_the_first() {
        assert!(starts_at(d(2026, 3, 29), t(1, 30), London).is_err());
        let repeated = starts_at(d(2026, 10, 25), t(1, 30), London).unwrap();
        assert_eq!(repeated.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }
}
