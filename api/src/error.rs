//! The one error type of the API and how it becomes an `application/problem+json` response
//! (RFC 9457).
//!
//! Policy:
//! - Every error response, whatever produced it (a handler, an extractor rejection, the body
//!   limit, an unknown route, a panic), is a problem document with `type`, `title`, `status`,
//!   `detail` and a stable machine-readable `code`; validation failures add
//!   `errors: [{field, message}]`. Clients branch on `code`, never on `detail`.
//! - 4xx errors are the caller's to fix: `detail` says what was wrong in words meant for them.
//! - 5xx errors are ours: the whole error chain is logged with `tracing` (inside the request span,
//!   so it carries the request id) and the body is generic. No SQL, no stack trace, no internal
//!   message ever reaches a response; the `x-request-id` header is what links the two.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use wedsync_queue::QueueError;

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Everything a handler, extractor or middleware can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{detail}")]
    Validation {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// A 422 with its own stable code, for a refusal that is not about one field.
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    /// An `Idempotency-Key` already used for a different request.
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    /// A missing, malformed or forged unsubscribe token. Deliberately says no more than that.
    #[error("this unsubscribe link is invalid or has expired")]
    InvalidToken,
    /// A provider webhook whose signature is missing or matches none of our providers' tokens.
    #[error("{0}")]
    BadSignature(String),
    /// Readiness failed; `checks` says which dependency is not ready.
    #[error("{detail}")]
    NotReady { detail: String, checks: Value },
    /// Anything we did not expect; logged in full, answered generically.
    #[error(transparent)]
    Internal(Box<dyn std::error::Error + Send + Sync>),
    /// The work may have been done: its commit was sent but not confirmed. Unlike `Internal`,
    /// the request's `Idempotency-Key` stays claimed, so a retry cannot do it a second time.
    #[error(
        "the request may have taken effect: its commit was not confirmed; a retry with the same \
         Idempotency-Key answers 409 rather than risk doing it twice"
    )]
    OutcomeUnknown(Box<dyn std::error::Error + Send + Sync>),
}

/// Marks a response whose request may have taken effect (`ApiError::OutcomeUnknown`): the
/// idempotency middleware keeps its key claimed instead of releasing it for a retry.
#[derive(Debug, Clone, Copy)]
pub struct OutcomeUnknown;

impl ApiError {
    /// A 422 with a single field error.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid(vec![FieldError::new(field, message)])
    }

    /// A 422 listing every invalid field.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        ApiError::Validation {
            detail: "the request has invalid fields; see `errors`".to_owned(),
            errors,
        }
    }

    /// A server-side failure (500), unless the error, or one it was caused by, is PostgreSQL
    /// refusing text it cannot store: a NUL character (`%00` in a query, `\u0000` in JSON) that
    /// reached a statement through a field no check looked at is the request's fault, a 400
    /// naming the cause.
    pub fn internal(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let err = err.into();
        if holds_unstorable_text(&*err) {
            return ApiError::BadRequest(
                "the request holds a NUL character (\\u0000 or %00), which no field may contain"
                    .to_owned(),
            );
        }
        ApiError::Internal(err)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidToken => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::BadSignature(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. }
            | ApiError::Unprocessable { .. }
            | ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotReady { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) | ApiError::OutcomeUnknown(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The stable code clients branch on; part of the API contract.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::Validation { .. } => "VALIDATION_ERROR",
            ApiError::Unprocessable { code, .. } => code,
            ApiError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ApiError::InvalidToken => "INVALID_TOKEN",
            ApiError::BadSignature(_) => "BAD_SIGNATURE",
            ApiError::NotReady { .. } => "NOT_READY",
            ApiError::Internal(_) => "INTERNAL_ERROR",
            ApiError::OutcomeUnknown(_) => "OUTCOME_UNKNOWN",
        }
    }

    /// The problem document; for 5xx the detail is generic, whatever the cause.
    pub fn to_problem(&self) -> Value {
        let status = self.status();
        let code = self.code();
        let detail = match self {
            ApiError::Internal(_) => {
                "an internal error occurred; it has been logged with this request's x-request-id"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut problem = serde_json::json!({
            "type": format!("urn:wedsync:problem:{}", code.to_ascii_lowercase().replace('_', "-")),
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail,
            "code": code,
        });
        match self {
            ApiError::Validation { errors, .. } => {
                problem["errors"] = serde_json::to_value(errors).unwrap_or_default();
            }
            ApiError::NotReady { checks, .. } => problem["checks"] = checks.clone(),
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(err) | ApiError::OutcomeUnknown(err) = &self {
            tracing::error!(error = %error_chain(err.as_ref()), "request failed");
        }
        let mut response = (self.status(), self.to_problem().to_string()).into_response();
        if matches!(self, ApiError::OutcomeUnknown(_)) {
            response.extensions_mut().insert(OutcomeUnknown);
        }
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if matches!(self, ApiError::Unauthorized(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        match err {
            QueueError::NotFound(id) => ApiError::NotFound(format!("job {id} not found")),
            QueueError::Conflict(message) => ApiError::Conflict(message),
            other => ApiError::internal(other),
        }
    }
}

impl From<wedsync_scheduler::ScheduleError> for ApiError {
    fn from(err: wedsync_scheduler::ScheduleError) -> Self {
        match err {
            wedsync_scheduler::ScheduleError::Queue(err) => err.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<wedsync_scheduler::scaling::ScalingError> for ApiError {
    fn from(err: wedsync_scheduler::scaling::ScalingError) -> Self {
        match err {
            wedsync_scheduler::scaling::ScalingError::Invalid(errors) => ApiError::invalid(
                errors
                    .into_iter()
                    .map(|(field, message)| FieldError::new(field, message))
                    .collect(),
            ),
            other => ApiError::internal(other),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::internal(err)
    }
}

/// PostgreSQL's `character_not_in_repertoire` (a NUL byte in text) and `untranslatable_character`
/// (`\u0000` in `jsonb`), anywhere in the error's chain of causes.
fn holds_unstorable_text(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if let Some(db) = err
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            && matches!(db.code().as_deref(), Some("22021" | "22P05"))
        {
            return true;
        }
        cause = err.source();
    }
    false
}

pub use wedsync_queue::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_message() {
        let problem = ApiError::internal("relation \"jobs\" does not exist").to_problem();
        assert_eq!(problem["status"], 500);
        assert_eq!(problem["code"], "INTERNAL_ERROR");
        assert!(!problem.to_string().contains("relation"));
    }

    #[test]
    fn validation_errors_list_fields() {
        let problem = ApiError::invalid_field("kind", "unknown kind").to_problem();
        assert_eq!(problem["status"], 422);
        assert_eq!(problem["code"], "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], "kind");
        assert_eq!(problem["type"], "urn:wedsync:problem:validation-error");
    }
}
