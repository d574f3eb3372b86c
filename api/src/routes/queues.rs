//! `/v1/queues`: depth and activity per queue, the providers' circuit breakers, and pausing
//! (operator).

use crate::ApiState;
use crate::auth::Operator;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::Route;
use axum::extract::State;
use axum::routing::{get, post};
use serde_json::{Value, json};
use wedsync_kinds::messages::providers::status::{REPORT_FRESHNESS, breaker_states};
use wedsync_queue::Pool;

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/queues", get(list)),
        ("/v1/queues/{queue}/pause", post(pause)),
        ("/v1/queues/{queue}/resume", post(resume)),
    ]
}

/// Queues, and each message provider's breaker across the worker processes that reported it
/// in the last [`REPORT_FRESHNESS`].
async fn list(State(state): State<ApiState>, _: Operator) -> Result<Json<Value>, ApiError> {
    let queues = state.queue.queue_stats().await?;
    let providers = breaker_states(&state.pool, REPORT_FRESHNESS).await?;
    Ok(Json(json!({ "queues": queues, "providers": providers })))
}

/// Workers stop claiming from the queue within a second; running jobs finish. A queue without a
/// pool row yet gets one, so a queue can be paused before its first job arrives.
async fn pause(
    State(state): State<ApiState>,
    _: Operator,
    Path(queue): Path<String>,
) -> Result<Json<Pool>, ApiError> {
    set_paused(&state, &queue, true).await
}

async fn resume(
    State(state): State<ApiState>,
    _: Operator,
    Path(queue): Path<String>,
) -> Result<Json<Pool>, ApiError> {
    set_paused(&state, &queue, false).await
}

async fn set_paused(state: &ApiState, queue: &str, paused: bool) -> Result<Json<Pool>, ApiError> {
    if queue.len() > 255 {
        return Err(ApiError::invalid_field(
            "queue",
            "must be at most 255 characters",
        ));
    }
    let pool = state
        .queue
        .set_paused(queue, paused, state.default_concurrency)
        .await?;
    tracing::info!(queue, paused, "queue pause flag set");
    Ok(Json(pool))
}
