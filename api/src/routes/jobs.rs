//! `/v1/jobs`: generic enqueue and inspection.
//!
//! Operators enqueue, retry and cancel any job. Planners may read their own organisation's jobs;
//! another organisation's job is a 404 to them, exactly like a job that does not exist.
//! A new job is answered `201 Created`; an enqueue whose `unique_key` is held by an unfinished job
//! creates nothing and answers `200 OK` with that job and `"duplicate": true`.

use crate::ApiState;
use crate::auth::{Operator, Principal};
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Path, Query};
use crate::routes::Route;
use crate::routes::page_limit::page_limit;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wedsync_queue::{JobFilter, JobRow, JobState, NewJob};

const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 500;
/// Bound on free-text identifiers (queue, unique key, org) so they stay index-friendly.
const MAX_NAME_LEN: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/jobs", get(list).post(create)),
        ("/v1/jobs/{id}", get(show)),
        ("/v1/jobs/{id}/retry", post(retry)),
        ("/v1/jobs/{id}/cancel", post(cancel)),
    ]
}

/// The body of `POST /v1/jobs`. Only `kind` is required; the rest defaults to the kind's settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    kind: Option<String>,
    args: Option<Value>,
    queue: Option<String>,
    priority: Option<i64>,
    max_attempts: Option<i64>,
    /// RFC 3339; in the future means the job waits as `scheduled`.
    scheduled_at: Option<String>,
    unique_key: Option<String>,
    org_id: Option<String>,
}

/// A job as returned by `POST /v1/jobs`.
#[derive(Debug, Serialize)]
pub struct Created {
    #[serde(flatten)]
    pub job: JobRow,
    pub duplicate: bool,
}

async fn create(
    State(state): State<ApiState>,
    Operator(_): Operator,
    Json(body): Json<CreateJob>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let job = validate(&state, body)?;
    let enqueued = state.queue.enqueue(job).await?;
    let job = state.queue.job(enqueued.id, None).await?;
    let status = if enqueued.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    tracing::info!(job.id = job.id, job.kind = %job.kind, duplicate = enqueued.duplicate, "enqueued");
    Ok((
        status,
        Json(Created {
            job,
            duplicate: enqueued.duplicate,
        }),
    ))
}

/// Every invalid field at once, so a client fixes its request in one round trip.
fn validate(state: &ApiState, body: CreateJob) -> Result<NewJob, ApiError> {
    let mut errors = Vec::new();
    let mut error = |field: &str, message: String| errors.push(FieldError::new(field, message));
    let known = || {
        let names: Vec<&str> = state.kinds.iter().map(|k| k.kind).collect();
        names.join(", ")
    };
    let kind = match body.kind.as_deref() {
        None => {
            error("kind", format!("is required; known kinds: {}", known()));
            None
        }
        Some(name) => state.kind(name).or_else(|| {
            error(
                "kind",
                format!("unknown kind `{name}`; known kinds: {}", known()),
            );
            None
        }),
    };
    for (field, value) in [
        ("queue", &body.queue),
        ("unique_key", &body.unique_key),
        ("org_id", &body.org_id),
    ] {
        if let Some(value) = value
            && (value.is_empty() || value.len() > MAX_NAME_LEN)
        {
            error(field, format!("must be 1 to {MAX_NAME_LEN} characters"));
        }
    }
    if let Some(p) = body.priority
        && !(0..=9).contains(&p)
    {
        error(
            "priority",
            "must be between 0 (first) and 9 (last)".to_owned(),
        );
    }
    if let Some(n) = body.max_attempts
        && !(1..=i64::from(i32::MAX)).contains(&n)
    {
        error("max_attempts", "must be at least 1".to_owned());
    }
    let scheduled_at = body.scheduled_at.as_deref().and_then(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                error(
                    "scheduled_at",
                    format!("must be an RFC 3339 timestamp: {e}"),
                )
            })
            .ok()
    });
    let Some(kind) = kind.filter(|_| errors.is_empty()) else {
        return Err(ApiError::invalid(errors));
    };
    let mut job = NewJob::new(
        body.queue.as_deref().unwrap_or(kind.queue),
        kind.kind,
        body.args.unwrap_or_else(|| json!({})),
    )
    .with_priority(body.priority.map_or(kind.priority, |p| p as i16))
    .with_max_attempts(body.max_attempts.map_or(kind.max_attempts, |n| n as i32));
    job.scheduled_at = scheduled_at;
    job.unique_key = body.unique_key;
    job.org_id = body.org_id;
    Ok(job)
}

/// Query of `GET /v1/jobs`; all optional, empty values ignored.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    queue: Option<String>,
    state: Option<String>,
    kind: Option<String>,
    /// Operators only; a planner always sees exactly their own organisation.
    org_id: Option<String>,
    limit: Option<String>,
    /// Keyset paging: only jobs with a smaller id (pass the previous page's `next_before`).
    before: Option<String>,
}

async fn list(
    State(state): State<ApiState>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let filter = list_filter(&principal, params)?;
    let jobs = state.queue.list_jobs(&filter).await?;
    let full_page = jobs.len() as i64 == filter.limit;
    let next_before = jobs.last().filter(|_| full_page).map(|j| j.id);
    Ok(Json(json!({ "jobs": jobs, "next_before": next_before })))
}

fn list_filter(principal: &Principal, params: ListParams) -> Result<JobFilter, ApiError> {
    let present = |v: Option<String>| v.filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    let state = present(params.state).and_then(|s| {
        s.parse::<JobState>()
            .map_err(|e| errors.push(FieldError::new("state", e.to_string())))
            .ok()
    });
    let limit = page_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT).unwrap_or_else(|e| {
        errors.push(e);
        DEFAULT_LIMIT
    });
    let before_id = present(params.before).and_then(|s| {
        s.parse::<i64>()
            .map_err(|_| errors.push(FieldError::new("before", "must be a job id".to_owned())))
            .ok()
    });
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let org_id = match principal.org_scope() {
        Some(own) => Some(own.to_owned()),
        None => present(params.org_id),
    };
    Ok(JobFilter {
        queue: present(params.queue),
        state,
        kind: present(params.kind),
        org_id,
        before_id,
        limit,
    })
}

async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<i64>,
) -> Result<Json<JobRow>, ApiError> {
    Ok(Json(state.queue.job(id, principal.org_scope()).await?))
}

/// Run a job again now (see `Queue::retry`); a running job is a 409.
async fn retry(
    State(state): State<ApiState>,
    Operator(_): Operator,
    Path(id): Path<i64>,
) -> Result<Json<JobRow>, ApiError> {
    Ok(Json(state.queue.retry(id, None).await?))
}

/// Cancel an unfinished job; a finished one is a 409.
async fn cancel(
    State(state): State<ApiState>,
    Operator(_): Operator,
    Path(id): Path<i64>,
) -> Result<Json<JobRow>, ApiError> {
    Ok(Json(state.queue.cancel(id, None).await?))
}
