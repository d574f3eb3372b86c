//! `POST /v1/erasures` (admin): GDPR erasure of one guest (SPEC §5.3).
//!
//! Body `{org_id?, email?, phone?}` with at least one address. The guest's address is removed
//! from every personal-data location and readable suppression entry, one hashed `erased`
//! suppression entry is kept (in `org_id`'s list, or the global one without it), and the
//! erasure is recorded without the address; see `wedsync_kinds::erasure` for the decisions.
//! The answer is `201` with that record: counts per location and the hashes, never the address
//! (it is also what an `Idempotency-Key` replay returns, and that replay is stored).

use crate::ApiState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, FieldError};
use crate::extract::Json;
use crate::routes::Route;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::post;
use serde::Deserialize;
use wedsync_kinds::erasure::{self, ErasureError, ErasureRecord, ErasureRequest};
use wedsync_kinds::suppression::{Address, Channel};

const MAX_ORG_LEN: usize = 255;

pub fn routes() -> Vec<Route> {
    vec![("/v1/erasures", post(create))]
}

/// An admin caller; anyone else is refused before the body is read.
pub struct Admin(pub Principal);

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(Role::Admin)?;
        Ok(Admin(principal))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateErasure {
    org_id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

async fn create(
    State(state): State<ApiState>,
    Admin(principal): Admin,
    Json(body): Json<CreateErasure>,
) -> Result<(StatusCode, Json<ErasureRecord>), ApiError> {
    let request = validate(body, principal.org_id)?;
    let record = erasure::erase(&state.pool, &request)
        .await
        .map_err(|err| match err {
            ErasureError::NothingToErase => ApiError::invalid_field("email", err.to_string()),
            other => ApiError::internal(other),
        })?;
    let total: u64 = record.counts.values().sum();
    tracing::info!(erasure.id = record.id, rows = total, "guest erased");
    Ok((StatusCode::CREATED, Json(record)))
}

fn validate(body: CreateErasure, requested_by: String) -> Result<ErasureRequest, ApiError> {
    let mut errors = Vec::new();
    let mut parse = |field: &str, channel: Channel, raw: Option<String>| {
        raw.and_then(|raw| {
            Address::parse(channel, &raw)
                .map_err(|e| errors.push(FieldError::new(field, e.to_string())))
                .ok()
        })
    };
    let missing = body.email.is_none() && body.phone.is_none();
    let email = parse("email", Channel::Email, body.email);
    let phone = parse("phone", Channel::Sms, body.phone);
    if missing {
        errors.push(FieldError::new(
            "email",
            "give the guest's email, phone or both",
        ));
    }
    if let Some(org) = &body.org_id
        && (org.is_empty() || org.len() > MAX_ORG_LEN)
    {
        errors.push(FieldError::new(
            "org_id",
            format!("must be 1 to {MAX_ORG_LEN} characters"),
        ));
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    Ok(ErasureRequest {
        org_id: body.org_id,
        email,
        phone,
        requested_by,
    })
}
