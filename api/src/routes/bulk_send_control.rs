//! `POST /v1/bulk-sends/{id}/pause|resume|cancel` (SPEC §5.1): planners and up, a planner for
//! their own organisation's sends only.
//!
//! Each answers 200 with the send as `GET /v1/bulk-sends/{id}` shows it. Repeating an action
//! is a success that changes nothing (pausing a paused send); a transition the send's state
//! does not allow (any of them on a `done` send, pausing or resuming a cancelled one) is 409
//! `CONFLICT`. An unknown id, a malformed one or another organisation's send is 404
//! `NOT_FOUND`. Running batch jobs notice within one claim of deliveries; a resume or cancel
//! also wakes the send's waiting jobs at once (`wedsync_kinds::messages::control`).

use crate::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::routes::Route;
use crate::routes::bulk_sends::present;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use wedsync_kinds::messages::SendSummary;
use wedsync_kinds::messages::control::{self, ControlError};

pub fn routes() -> Vec<Route> {
    vec![
        ("/v1/bulk-sends/{id}/pause", post(pause)),
        ("/v1/bulk-sends/{id}/resume", post(resume)),
        ("/v1/bulk-sends/{id}/cancel", post(cancel)),
    ]
}

async fn pause(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(
        &id,
        control::pause(&state.pool, &id, principal.org_scope()).await,
    )
}

async fn resume(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(
        &id,
        control::resume(&state.queue, &id, principal.org_scope()).await,
    )
}

async fn cancel(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    answer(
        &id,
        control::cancel(&state.queue, &id, principal.org_scope()).await,
    )
}

fn answer(id: &str, result: Result<SendSummary, ControlError>) -> Result<Json<Value>, ApiError> {
    match result {
        Ok(summary) => Ok(Json(present(&summary))),
        Err(ControlError::NotFound) => Err(ApiError::NotFound(format!("bulk send {id} not found"))),
        Err(ControlError::Conflict(detail)) => Err(ApiError::Conflict(detail)),
        Err(other) => Err(ApiError::internal(other)),
    }
}
