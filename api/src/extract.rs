//! Extractors whose rejections are problem documents.
//!
//! axum's own `Json`, `Query` and `Path` reject with plain-text bodies; these wrappers keep the
//! same ergonomics but turn every rejection into an [`ApiError`], so a client gets
//! `application/problem+json` with a stable code whatever was wrong with its request.

use crate::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest request body accepted, in bytes (1 MiB).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// A JSON body (in) or a JSON response (out).
///
/// In: the content type must be `application/json` (or `application/*+json`) → else 415;
/// a body over [`BODY_LIMIT`] → 413; malformed JSON → 400; well-formed JSON of the wrong shape
/// (missing or unknown field, wrong type) → 422.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(req.headers().get(header::CONTENT_TYPE)) {
            return Err(ApiError::UnsupportedMediaType(
                "expected a request body with `Content-Type: application/json`".to_owned(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(Json)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A route's own body limit, where it raised the default ([`BODY_LIMIT`]); a request extension,
/// so a 413 states the limit that applied.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// The whole request body within the configured limit (`DefaultBodyLimit`).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(BODY_LIMIT, |l| l.0);
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| bytes_rejection(rejection, limit))
}

fn bytes_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::BadRequest(format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ))
    }
}

/// Decode JSON, telling a syntax error (400) from a shape error (422) so clients can tell a
/// broken encoder from a wrong field. A shape error names the field at fault in `errors`
/// (`recipients[3].address`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| {
        use serde_json::error::Category;
        match err.classify() {
            Category::Data => ApiError::Validation {
                detail: format!("the JSON body does not match the expected shape: {err}"),
                errors: shape_error_path::<T>(bytes)
                    .map(|path| vec![FieldError::new(path, err.to_string())])
                    .unwrap_or_default(),
            },
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("the request body is not valid JSON: {err}"))
            }
        }
    })
}

/// Where in the document decoding into `T` fails, by decoding it again with the path tracked:
/// only on the error path, so a good body (up to 32 MiB of recipients) is decoded once, at full
/// speed. `None` when the whole document is at fault.
fn shape_error_path<T: DeserializeOwned>(bytes: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = serde_path_to_error::deserialize::<_, T>(&mut de).err()?;
    let path = err.path().to_string();
    (path != ".").then_some(path)
}

fn is_json_content_type(value: Option<&header::HeaderValue>) -> bool {
    let essence = media_type(value);
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The media type of a `Content-Type` value, lower-cased and without parameters (`""`: none).
pub fn media_type(value: Option<&header::HeaderValue>) -> String {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Query-string parameters; a string that does not decode is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

/// Path parameters; a segment of the wrong type (e.g. a non-numeric job id) is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |s: &'static str| is_json_content_type(Some(&HeaderValue::from_static(s)));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=utf-8"));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn syntax_errors_are_400_and_shape_errors_422() {
        let syntax = parse_json::<serde_json::Value>(b"{\"a\":").unwrap_err();
        assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Shape {
            n: i32,
        }
        let shape = parse_json::<Shape>(b"{\"n\":\"x\"}").unwrap_err();
        assert_eq!(shape.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
