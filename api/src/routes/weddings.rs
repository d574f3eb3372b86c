//! `/v1/weddings`: upcoming weddings that pre-scaling plans for (SPEC §3, §6).
//!
//! A planner registers and lists their own organisation's weddings; operators see all and may
//! register for any organisation (`org_id`, default their own). A wedding is given as its local
//! date, start time and IANA zone; `starts_at` is computed with daylight saving time applied,
//! and a local time the clocks skip is refused (422).

use crate::ApiState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Query};
use crate::routes::Route;
use crate::routes::page_limit::page_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Value, json};
use wedsync_scheduler::pools::WEDDING_DURATION;
use wedsync_scheduler::scaling::weddings::{self, NewWedding, WeddingRow};

const MAX_NAME_LEN: usize = 255;
/// Bounds on the expected numbers: far above any real wedding, below silly values.
const MAX_GUESTS: i64 = 100_000;
const MAX_PHOTOS: i64 = 1_000_000;
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 500;

pub fn routes() -> Vec<Route> {
    vec![("/v1/weddings", get(list).post(create))]
}

/// The body of `POST /v1/weddings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWedding {
    name: Option<String>,
    /// `YYYY-MM-DD`, local.
    date: Option<String>,
    /// `HH:MM` or `HH:MM:SS`, local.
    start_time: Option<String>,
    /// IANA zone, e.g. `Europe/London`.
    timezone: Option<String>,
    expected_guests: Option<i64>,
    expected_photos: Option<i64>,
    /// Operators only; a planner registers for their own organisation.
    org_id: Option<String>,
}

async fn create(
    State(state): State<ApiState>,
    principal: Principal,
    Json(body): Json<CreateWedding>,
) -> Result<(StatusCode, Json<WeddingRow>), ApiError> {
    let org_id = match body.org_id.as_deref() {
        Some(org) if org != principal.org_id => {
            principal.require(Role::Operator)?;
            org.to_owned()
        }
        _ => principal.org_id.clone(),
    };
    let wedding = validate(body, org_id)?;
    let row = weddings::register(&state.pool, &wedding).await?;
    tracing::info!(wedding = %row.id, org = %row.org_id, starts_at = %row.starts_at,
                   "wedding registered");
    Ok((StatusCode::CREATED, Json(row)))
}

/// Every invalid field at once.
fn validate(body: CreateWedding, org_id: String) -> Result<NewWedding, ApiError> {
    let mut errors = Vec::new();
    let mut required = |field: &str, value: Option<String>| {
        if value.is_none() {
            errors.push(FieldError::new(field, "is required"));
        }
        value
    };
    let date = required("date", body.date);
    let start = required("start_time", body.start_time);
    let zone = required("timezone", body.timezone);
    let date = date.and_then(|s| {
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map_err(|_| errors.push(FieldError::new("date", "must be a date YYYY-MM-DD")))
            .ok()
    });
    let start = start.and_then(|s| {
        NaiveTime::parse_from_str(&s, "%H:%M")
            .or_else(|_| NaiveTime::parse_from_str(&s, "%H:%M:%S"))
            .map_err(|_| {
                errors.push(FieldError::new(
                    "start_time",
                    "must be a local time HH:MM or HH:MM:SS",
                ))
            })
            .ok()
    });
    let timezone = zone.and_then(|s| {
        s.parse::<Tz>()
            .map_err(|_| {
                errors.push(FieldError::new(
                    "timezone",
                    format!("`{s}` is not an IANA time zone (e.g. Europe/London)"),
                ))
            })
            .ok()
    });
    let mut count = |field: &str, value: Option<i64>, max: i64| match value {
        None => 0,
        Some(n) if (0..=max).contains(&n) => n as u32,
        Some(_) => {
            errors.push(FieldError::new(field, format!("must be from 0 to {max}")));
            0
        }
    };
    let expected_guests = count("expected_guests", body.expected_guests, MAX_GUESTS);
    let expected_photos = count("expected_photos", body.expected_photos, MAX_PHOTOS);
    let name = body.name.unwrap_or_default();
    if name.chars().count() > MAX_NAME_LEN {
        errors.push(FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    match (date, start, timezone) {
        (Some(date), Some(start), Some(timezone)) if errors.is_empty() => Ok(NewWedding {
            org_id,
            name,
            date,
            start,
            timezone,
            expected_guests,
            expected_photos,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

/// Query of `GET /v1/weddings`.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    /// RFC 3339; default: weddings that may still be in progress (started up to 12 h ago).
    after: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let mut errors = Vec::new();
    let after = match params.after.as_deref().filter(|s| !s.is_empty()) {
        None => Utc::now() - WEDDING_DURATION,
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|_| {
                errors.push(FieldError::new("after", "must be an RFC 3339 timestamp"));
                Utc::now()
            }),
    };
    let limit = page_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT).unwrap_or_else(|e| {
        errors.push(e);
        DEFAULT_LIMIT
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let rows = weddings::list(&state.pool, principal.org_scope(), after, limit).await?;
    Ok(Json(json!({ "weddings": rows })))
}
