//! `/v1/pools` (operator): each queue's pool — bounds, base, desired size and its reasons,
//! override, recent history — and changing them (SPEC §6).
//!
//! `PUT /v1/pools/{queue}` changes any of `min`, `max`, `base` and `override` (`{size, until |
//! ttl_seconds, reason}`, or `null` to clear it) and applies the result at once, without
//! cooldown: every worker process follows within a second.

use crate::ApiState;
use crate::auth::Operator;
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Path};
use crate::routes::Route;
use axum::extract::State;
use axum::routing::get;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use wedsync_scheduler::pools::{OVERRIDE_CEILING, Override};
use wedsync_scheduler::scaling::{self, PoolChanges, PoolView};

/// Changes shown with each pool.
const HISTORY: i64 = 20;
const MAX_QUEUE_LEN: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/pools", get(list)),
        ("/v1/pools/{queue}", axum::routing::put(update)),
    ]
}

async fn list(State(state): State<ApiState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let pools = scaling::pool_views(&state.pool, HISTORY, Utc::now()).await?;
    Ok(Json(json!({ "pools": pools })))
}

/// The body of `PUT /v1/pools/{queue}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePool {
    min: Option<i64>,
    max: Option<i64>,
    base: Option<i64>,
    /// Absent: unchanged; `null`: cleared; an object: set.
    #[serde(default, rename = "override", deserialize_with = "present")]
    override_: Option<Option<OverrideBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideBody {
    size: Option<i64>,
    /// RFC 3339.
    until: Option<String>,
    ttl_seconds: Option<i64>,
    reason: Option<String>,
}

/// A field that is present (even as `null`) becomes `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

async fn update(
    State(state): State<ApiState>,
    _: Operator,
    Path(queue): Path<String>,
    Json(body): Json<UpdatePool>,
) -> Result<Json<PoolView>, ApiError> {
    if queue.is_empty() || queue.len() > MAX_QUEUE_LEN {
        return Err(ApiError::invalid_field(
            "queue",
            format!("must be 1 to {MAX_QUEUE_LEN} characters"),
        ));
    }
    let now = Utc::now();
    let changes = validate(body, now)?;
    let default_size = u32::try_from(state.default_concurrency).unwrap_or(0);
    let pool = scaling::configure(
        &state.pool,
        &queue,
        &changes,
        default_size,
        state.timezone,
        now,
    )
    .await?;
    Ok(Json(pool))
}

/// Every invalid field at once.
fn validate(body: UpdatePool, now: DateTime<Utc>) -> Result<PoolChanges, ApiError> {
    let mut errors = Vec::new();
    let mut size = |field: &str, value: Option<i64>| {
        let checked = value.map(|v| u32::try_from(v).ok().filter(|v| *v <= OVERRIDE_CEILING));
        if let Some(None) = checked {
            errors.push(FieldError::new(
                field,
                format!("must be an integer from 0 to {OVERRIDE_CEILING}"),
            ));
        }
        checked.flatten()
    };
    let mut changes = PoolChanges {
        min: size("min", body.min),
        max: size("max", body.max),
        base: size("base", body.base),
        override_: None,
    };
    if let Some(o) = body.override_ {
        changes.override_ = Some(match o {
            None => None,
            Some(o) => override_from(o, now, &mut errors),
        });
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(ApiError::invalid(errors))
    }
}

fn override_from(
    body: OverrideBody,
    now: DateTime<Utc>,
    errors: &mut Vec<FieldError>,
) -> Option<Override> {
    let before = errors.len();
    let size = match body.size.map(u32::try_from) {
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            errors.push(FieldError::new("override.size", "must not be negative"));
            None
        }
        None => {
            errors.push(FieldError::new("override.size", "is required"));
            None
        }
    };
    let until = match (body.until.as_deref(), body.ttl_seconds) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(FieldError::new(
                "override.until",
                "give exactly one of `until` (RFC 3339) and `ttl_seconds`",
            ));
            None
        }
        (Some(s), None) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                errors.push(FieldError::new(
                    "override.until",
                    format!("must be an RFC 3339 timestamp: {e}"),
                ))
            })
            .ok(),
        // Checked: chrono's `+` panics past its range (a 500, and a key that stays claimed).
        (None, Some(secs)) if secs > 0 => TimeDelta::try_seconds(secs)
            .and_then(|ttl| now.checked_add_signed(ttl))
            .or_else(|| {
                errors.push(FieldError::new("override.ttl_seconds", "is too large"));
                None
            }),
        (None, Some(_)) => {
            errors.push(FieldError::new("override.ttl_seconds", "must be positive"));
            None
        }
    };
    let o = Override {
        size: size.unwrap_or(0),
        until: until.unwrap_or(now),
        reason: body.reason.unwrap_or_default(),
    };
    for (field, message) in scaling::validate_override(&o, now) {
        let already = errors.iter().any(|e| e.field == field);
        if !already && (field != "override.until" || until.is_some()) {
            errors.push(FieldError::new(field, message));
        }
    }
    (errors.len() == before).then_some(o)
}
