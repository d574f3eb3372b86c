//! Who is calling: `Authorization: Bearer <key>` → [`Principal`].
//!
//! Roles are ordered planner < operator < admin; a route states the least role it needs with
//! [`Principal::require`]. Operators and admins act across organisations; a planner only ever
//! sees its own organisation, and a handler gets that restriction from [`Principal::org_scope`]
//! so that another organisation's data is indistinguishable from data that does not exist (404,
//! never 403).

use crate::ApiState;
use crate::error::ApiError;
use crate::keys;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use std::fmt;
use std::str::FromStr;

/// What a key may do. The derive order is the privilege order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Their own organisation's sends and photos.
    Planner,
    /// Queues, jobs and pools of all organisations.
    Operator,
    /// Everything, including keys and retention.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Planner => "planner",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not planner, operator or admin.
#[derive(Debug, thiserror::Error)]
#[error("unknown role `{0}` (expected planner, operator or admin)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "planner" => Ok(Role::Planner),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub org_id: String,
    pub role: Role,
}

impl Principal {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this operation needs the {role} role; this key has the {} role",
                self.role
            )))
        }
    }

    /// The organisation a query must be limited to: `None` for roles that see all of them.
    pub fn org_scope(&self) -> Option<&str> {
        match self.role {
            Role::Planner => Some(&self.org_id),
            Role::Operator | Role::Admin => None,
        }
    }
}

impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    /// Looks the key up once per request; later extractions reuse the result.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let key = bearer_token(parts)?;
        let principal = lookup(state, key).await?;
        tracing::Span::current().record("org", principal.org_id.as_str());
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// A caller with at least the operator role; rejects planners with 403 before the body is read.
#[derive(Debug, Clone)]
pub struct Operator(pub Principal);

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(Role::Operator)?;
        Ok(Operator(principal))
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("missing `Authorization: Bearer <api key>` header".to_owned())
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".to_owned()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Ok(token.trim()),
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme".to_owned(),
        )),
    }
}

async fn lookup(state: &ApiState, key: &str) -> Result<Principal, ApiError> {
    let invalid = || ApiError::Unauthorized("invalid or revoked API key".to_owned());
    if !keys::looks_like_key(key) {
        return Err(invalid());
    }
    let row: Option<(String, String)> = sqlx::query_as(
        "SELECT org_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
    )
    .bind(keys::hash_key(key))
    .fetch_optional(&state.pool)
    .await?;
    let (org_id, role) = row.ok_or_else(invalid)?;
    let role = role.parse::<Role>().map_err(ApiError::internal)?;
    Ok(Principal { org_id, role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_privilege() {
        assert!(Role::Planner < Role::Operator && Role::Operator < Role::Admin);
        let operator = Principal {
            org_id: "o".into(),
            role: Role::Operator,
        };
        assert!(operator.require(Role::Planner).is_ok());
        assert!(operator.require(Role::Admin).is_err());
    }

    #[test]
    fn roles_round_trip_through_strings() {
        for role in [Role::Planner, Role::Operator, Role::Admin] {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        assert!("root".parse::<Role>().is_err());
    }
}
