//! `Idempotency-Key` on writes (POST, PUT, PATCH, DELETE): a repeat returns the first result and
//! never does the work twice (SPEC §3).
//!
//! A middleware rather than per-handler code, so every write gets the same guarantee:
//! 1. Claim `(org, key)` with the hash of method, path and body (`INSERT … ON CONFLICT DO
//!    NOTHING`, committed at once so a concurrent duplicate sees it).
//! 2. Run the handler in its own task: a client that disconnects mid-request does not cancel the
//!    work half-way, and the outcome is always recorded for its retry.
//! 3. Store the response status and JSON body. A 5xx is not stored: the claim is released so the
//!    client may retry with the same key — unless the work may have been done: the handler says
//!    so (`ApiError::OutcomeUnknown`, a commit sent but not confirmed), or it panicked, perhaps
//!    after its commit. Then the claim stays in flight.
//!
//! A repeat with the same key and the same request replays the stored response (with
//! `idempotent-replayed: true`); with a different request it is 422 `IDEMPOTENCY_KEY_REUSED`;
//! while the first is still running it is 409 `CONFLICT`. A claim whose process died before
//! recording stays "in flight" rather than risk doing the work twice; old rows are for retention
//! to prune.
//!
//! Routes without auth (`/unsubscribe` and `/unsubscribe/mail`, which a guest's mail client posts
//! or mails to, and the SMS provider's signed webhooks under `/v1/sms/`) pass through: there is no organisation to scope the key to, and the routes are
//! idempotent by themselves.

use crate::ApiState;
use crate::auth::{Principal, Role};
use crate::error::{ApiError, OutcomeUnknown, PROBLEM_JSON, error_chain};
use crate::extract;
use axum::RequestExt;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tracing::Instrument;

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted; UUIDs and ULIDs fit with room to spare.
const MAX_KEY_LEN: usize = 255;
/// Our own responses are small; this only bounds a runaway one.
const MAX_STORED_RESPONSE: usize = 16 * 1024 * 1024;

/// The middleware; reads (GET, HEAD), or requests without the header, pass straight through.
/// Every write takes the key (SPEC §3): POST, `PUT /v1/pools/{queue}`, and
/// `DELETE /v1/suppressions`, whose repeat after a lost answer would otherwise be a 404 for the
/// entry its first call removed.
pub async fn middleware(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    if !is_write(req.method())
        || !req.headers().contains_key(IDEMPOTENCY_KEY)
        || is_multipart(&req)
        || is_public(&req)
    {
        return next.run(req).await;
    }
    once(state, req, next)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn once(state: ApiState, req: Request, next: Next) -> Result<Response, ApiError> {
    let key = idempotency_key(req.headers().get(IDEMPOTENCY_KEY))?;
    let (mut parts, body) = req.with_limited_body().into_parts();
    let principal = Principal::from_request_parts(&mut parts, &state).await?;
    // With the request's extensions, so the body limit in force (e.g. the larger one of
    // `POST /v1/bulk-sends`) applies rather than axum's default.
    let mut limited = Request::new(body);
    *limited.extensions_mut() = parts.extensions.clone();
    let body = extract::body_bytes(limited, &()).await?;
    let hash = request_hash(principal.role, &parts.method, parts.uri.path(), &body);
    let pool = state.pool;

    match claim(&pool, &principal.org_id, &key, &hash).await? {
        Claim::Owned => {}
        Claim::Done { status, body } => return Ok(replay(status, &body)),
        Claim::InFlight => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry later"
                    .to_owned(),
            ));
        }
        Claim::Reused => return Err(ApiError::IdempotencyKeyReused),
    }

    let req = Request::from_parts(parts, Body::from(body));
    let org = principal.org_id;
    let task = tokio::spawn({
        let (pool, org, key) = (pool.clone(), org.clone(), key.clone());
        async move {
            let response = next.run(req).await;
            record(&pool, &org, &key, response).await
        }
        .instrument(tracing::Span::current())
    });
    match task.await {
        Ok(response) => Ok(response),
        // Whether the handler committed its work before it panicked is unknown: the key stays
        // claimed, as for `OutcomeUnknown`, so a retry is a 409 and never a second run.
        Err(panicked) => Err(ApiError::OutcomeUnknown(
            format!("the handler failed: {panicked}").into(),
        )),
    }
}

fn is_write(method: &Method) -> bool {
    [Method::POST, Method::PUT, Method::PATCH, Method::DELETE].contains(method)
}

/// Multipart uploads (photos) are not buffered for replay: they may be far larger than any
/// stored response, and they are idempotent by content already (the same bytes uploaded to the
/// same wedding again return the first photo).
fn is_multipart(req: &Request) -> bool {
    extract::media_type(req.headers().get(header::CONTENT_TYPE)).starts_with("multipart/")
}

/// The routes anyone may call, without an API key.
fn is_public(req: &Request) -> bool {
    req.extensions().get::<MatchedPath>().is_some_and(|path| {
        [
            crate::routes::unsubscribe::PATH,
            crate::routes::unsubscribe_mail::PATH,
            crate::routes::sms_webhooks::REPLY_PATH,
            crate::routes::sms_webhooks::STATUS_PATH,
        ]
        .contains(&path.as_str())
    })
}

fn idempotency_key(value: Option<&HeaderValue>) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::invalid_field(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
        )
    };
    let key = value.and_then(|v| v.to_str().ok()).ok_or_else(invalid)?;
    let valid = (1..=MAX_KEY_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| key.to_owned()).ok_or_else(invalid)
}

/// Identifies "the same request": a key reused on another endpoint or body is a different one,
/// and so is one reused by a caller of another role. Keys are scoped to the organisation, and a
/// replay runs no handler, so no role check: without the role, a planner repeating an admin's
/// request (an erasure, say) with its key would be handed the admin's stored response. A
/// repeat under another role is 422 `IDEMPOTENCY_KEY_REUSED`, and nothing runs.
///
/// Upgrading from a release whose hash had no role: a retry straddling the upgrade is answered
/// 422 rather than replayed. Nothing is done twice.
fn request_hash(role: Role, method: &Method, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(role.to_string());
    hasher.update(b" ");
    hasher.update(method.as_str());
    hasher.update(b" ");
    hasher.update(path);
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

enum Claim {
    Owned,
    Done { status: i16, body: Value },
    InFlight,
    Reused,
}

async fn claim(pool: &PgPool, org: &str, key: &str, hash: &str) -> Result<Claim, ApiError> {
    // A claim released by a failed first attempt between our two statements: claim again.
    for _ in 0..3 {
        let inserted: Option<i32> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (org_id, key, request_hash) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id, key) DO NOTHING RETURNING 1",
        )
        .bind(org)
        .bind(key)
        .bind(hash)
        .fetch_optional(pool)
        .await?;
        if inserted.is_some() {
            return Ok(Claim::Owned);
        }
        let existing: Option<(String, Option<i16>, Option<Value>)> = sqlx::query_as(
            "SELECT request_hash, status, response FROM idempotency_keys \
             WHERE org_id = $1 AND key = $2",
        )
        .bind(org)
        .bind(key)
        .fetch_optional(pool)
        .await?;
        return Ok(match existing {
            None => continue,
            Some((stored, _, _)) if stored != hash => Claim::Reused,
            Some((_, Some(status), Some(body))) => Claim::Done { status, body },
            Some(_) => Claim::InFlight,
        });
    }
    Err(ApiError::Conflict(
        "this Idempotency-Key is being retried concurrently; retry later".to_owned(),
    ))
}

/// Store the outcome of the first request (or release the claim after a server error) and hand
/// the response on unchanged.
async fn record(pool: &PgPool, org: &str, key: &str, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    if parts.status.is_server_error() {
        // Released for a retry, unless the work may have been done: then it stays in flight.
        if parts.extensions.get::<OutcomeUnknown>().is_none() {
            log_failure(release(pool, org, key).await);
        }
        return Response::from_parts(parts, body);
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_STORED_RESPONSE).await else {
        log_failure(release(pool, org, key).await);
        return ApiError::internal("a response body could not be buffered").into_response();
    };
    let outcome = match serde_json::from_slice::<Value>(&bytes) {
        Ok(json) => sqlx::query(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE org_id = $1 AND key = $2",
        )
        .bind(org)
        .bind(key)
        .bind(parts.status.as_u16() as i16)
        .bind(json)
        .execute(pool)
        .await
        .map(drop),
        // Not JSON (none of our routes answers so): nothing to replay, so let a retry run it.
        Err(_) => release(pool, org, key).await,
    };
    log_failure(outcome);
    Response::from_parts(parts, Body::from(bytes))
}

/// A failed bookkeeping statement leaves the key in flight: a retry gets 409, never a second run.
fn log_failure(outcome: Result<(), sqlx::Error>) {
    if let Err(err) = outcome {
        tracing::error!(error = %error_chain(&err), "could not record an idempotent response");
    }
}

async fn release(pool: &PgPool, org: &str, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM idempotency_keys WHERE org_id = $1 AND key = $2 AND status IS NULL")
        .bind(org)
        .bind(key)
        .execute(pool)
        .await
        .map(drop)
}

fn replay(status: i16, body: &Value) -> Response {
    let status = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let content_type = if status.is_client_error() {
        PROBLEM_JSON
    } else {
        "application/json"
    };
    (
        status,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (REPLAYED, HeaderValue::from_static("true")),
        ],
        Bytes::from(body.to_string()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_short_visible_ascii() {
        let key = |s: &'static str| idempotency_key(Some(&HeaderValue::from_static(s)));
        assert_eq!(key("order-42").unwrap(), "order-42");
        assert!(key("").is_err());
        assert!(key("has space").is_err());
        assert!(idempotency_key(None).is_err());
    }

    #[tokio::test]
    async fn a_server_error_frees_the_key_unless_the_work_may_have_been_done() {
        let db = wedsync_db::testing::TestDb::new().await.unwrap();
        let hash = request_hash(Role::Planner, &Method::POST, "/v1/bulk-sends", b"{}");
        let first_try = |key: &'static str| {
            let pool = db.pool.clone();
            let hash = hash.clone();
            async move { claim(&pool, "acme", key, &hash).await.unwrap() }
        };
        // An ordinary 500: nothing was done, a retry with the key runs the request again.
        assert!(matches!(first_try("plain").await, Claim::Owned));
        let failed = ApiError::internal("boom").into_response();
        record(&db.pool, "acme", "plain", failed).await;
        assert!(matches!(first_try("plain").await, Claim::Owned));
        // A commit not confirmed: the key stays in flight, a retry is a 409, never a second run.
        assert!(matches!(first_try("unknown").await, Claim::Owned));
        let unknown = ApiError::OutcomeUnknown("connection reset".into()).into_response();
        assert_eq!(unknown.status(), StatusCode::INTERNAL_SERVER_ERROR);
        record(&db.pool, "acme", "unknown", unknown).await;
        assert!(matches!(first_try("unknown").await, Claim::InFlight));
    }

    /// A handler whose work is done (counted), then hits a bug.
    async fn commit_then_panic(runs: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> StatusCode {
        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("a bug after the commit")
    }

    #[tokio::test]
    async fn a_handler_that_panics_keeps_its_key_claimed_and_never_runs_twice() {
        use axum::Router;
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tower::ServiceExt;

        let db = wedsync_db::testing::TestDb::new().await.unwrap();
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let state = ApiState::new(db.pool.clone(), Vec::new(), prometheus);
        let key = crate::keys::create_key(&db.pool, "acme", crate::auth::Role::Operator)
            .await
            .unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/v1/commit-then-panic",
                axum::routing::post({
                    let runs = runs.clone();
                    move || commit_then_panic(runs.clone())
                }),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                middleware,
            ))
            .with_state(state);
        let request = || {
            Request::post("/v1/commit-then-panic")
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(IDEMPOTENCY_KEY, "once")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap()
        };

        let first = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(first.into_body(), 1 << 16)
            .await
            .unwrap();
        let problem: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(problem["code"], "OUTCOME_UNKNOWN");
        let retry = app.oneshot(request()).await.unwrap();
        assert_eq!(retry.status(), StatusCode::CONFLICT);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "the retry ran the handler again"
        );
    }

    #[test]
    fn the_same_key_on_another_path_body_or_role_is_another_request() {
        let a = request_hash(Role::Operator, &Method::POST, "/v1/jobs", b"{}");
        assert_eq!(
            a,
            request_hash(Role::Operator, &Method::POST, "/v1/jobs", b"{}")
        );
        assert_ne!(
            a,
            request_hash(Role::Operator, &Method::POST, "/v1/jobs/1/retry", b"{}")
        );
        assert_ne!(
            a,
            request_hash(Role::Operator, &Method::POST, "/v1/jobs", b"{\"a\":1}")
        );
        assert_ne!(
            a,
            request_hash(Role::Planner, &Method::POST, "/v1/jobs", b"{}")
        );
        assert_ne!(
            a,
            request_hash(Role::Admin, &Method::POST, "/v1/jobs", b"{}")
        );
    }
}
