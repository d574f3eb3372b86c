//! `GET /v1/metrics/hourly` (operator): the hourly rollup of job executions and API requests
//! (SPEC §5.4), hours in `[from, to)`, optionally one `source`, `queue` or `kind`.
//!
//! `from` and `to` are RFC 3339; by default the last 24 hours. At most 31 days per request, and
//! at most 10,000 rows (`truncated: true` when there were more).

use crate::ApiState;
use crate::auth::Operator;
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Query};
use crate::routes::Route;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use wedsync_metrics::{HourlyFilter, HourlyRow};

/// Longest span one request may cover.
pub const MAX_RANGE_DAYS: i64 = 31;
/// Most rows one response carries.
pub const MAX_ROWS: i64 = 10_000;
const MAX_NAME_LEN: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![("/v1/metrics/hourly", get(hourly))]
}

/// Query of `GET /v1/metrics/hourly`; all optional, empty values ignored.
#[derive(Debug, Default, Deserialize)]
pub struct HourlyParams {
    from: Option<String>,
    to: Option<String>,
    source: Option<String>,
    queue: Option<String>,
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct HourlyResponse {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rows: Vec<HourlyRow>,
    truncated: bool,
}

async fn hourly(
    State(state): State<ApiState>,
    _: Operator,
    Query(params): Query<HourlyParams>,
) -> Result<Json<HourlyResponse>, ApiError> {
    let mut filter = validate(params, Utc::now())?;
    filter.limit = MAX_ROWS + 1;
    let mut rows = wedsync_metrics::hourly(&state.pool, &filter).await?;
    let truncated = rows.len() as i64 > MAX_ROWS;
    rows.truncate(MAX_ROWS as usize);
    Ok(Json(HourlyResponse {
        from: filter.from,
        to: filter.to,
        rows,
        truncated,
    }))
}

/// Every invalid parameter at once.
fn validate(params: HourlyParams, now: DateTime<Utc>) -> Result<HourlyFilter, ApiError> {
    let present = |v: Option<String>| v.filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    let mut time = |field: &str, value: Option<String>| {
        present(value).and_then(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    errors.push(FieldError::new(
                        field,
                        format!("must be an RFC 3339 timestamp like 2026-11-22T05:00:00Z: {e}"),
                    ))
                })
                .ok()
        })
    };
    let to = time("to", params.to);
    let from = time("from", params.from);
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - TimeDelta::hours(24));
    if from >= to {
        errors.push(FieldError::new("from", "must be before `to`"));
    } else if to - from > TimeDelta::days(MAX_RANGE_DAYS) {
        errors.push(FieldError::new(
            "to",
            format!("the range from `from` to `to` must be at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let source = present(params.source);
    if let Some(s) = &source
        && s != "job"
        && s != "api"
    {
        errors.push(FieldError::new("source", "must be `job` or `api`"));
    }
    let (queue, kind) = (present(params.queue), present(params.kind));
    for (field, value) in [("queue", &queue), ("kind", &kind)] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_NAME_LEN) {
            errors.push(FieldError::new(
                field,
                format!("must be at most {MAX_NAME_LEN} characters"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(HourlyFilter {
        from,
        to,
        source,
        queue,
        kind,
        limit: MAX_ROWS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: &str, to: &str) -> HourlyParams {
        HourlyParams {
            from: Some(from.to_owned()),
            to: Some(to.to_owned()),
            ..Default::default()
        }
    }

    fn fields(err: ApiError) -> Vec<String> {
        match err {
            ApiError::Validation { errors, .. } => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("not a validation error: {other:?}"),
        }
    }

    #[test]
    fn the_default_range_is_the_last_day() {
        let now: DateTime<Utc> = "2026-11-22T06:00:00Z".parse().unwrap();
        let filter = validate(HourlyParams::default(), now).unwrap();
        assert_eq!(filter.to, now);
        assert_eq!(filter.from, now - TimeDelta::hours(24));
    }

    #[test]
    fn bad_bounds_are_named() {
        let now = Utc::now();
        let err = validate(params("yesterday", "2026-11-22T06:00:00Z"), now).unwrap_err();
        assert_eq!(fields(err), ["from"]);
        let err =
            validate(params("2026-11-22T06:00:00Z", "2026-11-22T05:00:00Z"), now).unwrap_err();
        assert_eq!(fields(err), ["from"]);
        let err =
            validate(params("2026-01-01T00:00:00Z", "2026-03-01T00:00:00Z"), now).unwrap_err();
        assert_eq!(fields(err), ["to"]);
    }

    #[test]
    fn only_known_sources_are_accepted() {
        let mut p = params("2026-11-22T05:00:00Z", "2026-11-22T06:00:00Z");
        p.source = Some("cron".into());
        assert_eq!(fields(validate(p, Utc::now()).unwrap_err()), ["source"]);
    }
}
