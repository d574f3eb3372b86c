//! `/v1/schedules`: the cron entries with their last and next fire times, and running one by
//! hand (operator).

use crate::ApiState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::Route;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::{Value, json};

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/schedules", get(list)),
        ("/v1/schedules/{name}/run", post(run)),
    ]
}

async fn list(State(state): State<ApiState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let schedules =
        wedsync_scheduler::statuses(&state.pool, &state.schedules, chrono::Utc::now()).await?;
    Ok(Json(json!({ "schedules": schedules })))
}

/// Enqueue the entry's job now; its schedule is not moved.
async fn run(
    State(state): State<ApiState>,
    _: Operator,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let entry = state
        .schedules
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no schedule entry named `{name}`")))?;
    let enqueued = wedsync_scheduler::run_now(&state.queue, entry).await?;
    let job = state.queue.job(enqueued.id, None).await?;
    Ok((StatusCode::CREATED, Json(json!(job))))
}
