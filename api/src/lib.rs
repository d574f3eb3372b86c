//! The HTTP API of WedSync Jobs (SPEC §3): `router(state)` for the binary to serve, one module per
//! resource under `routes/`, one error type in `error.rs`.
//!
//! Every response, including errors from extractors, unknown routes and panics, is JSON (errors
//! as `application/problem+json`) and carries `x-request-id`.

pub mod auth;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod keys;
pub mod request_events;
pub mod routes;
mod state;
pub mod telemetry;

pub use auth::{Principal, Role};
pub use error::{ApiError, FieldError};
pub use state::{ApiState, PhotoUploads};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use std::future::Future;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The whole API with its middleware, ready to serve.
pub fn router(state: ApiState) -> Router {
    let mut app = Router::new();
    for (path, handler) in routes::all() {
        app = app.route(path, handler);
    }
    app.route_layer(middleware::from_fn_with_state(
        state.clone(),
        idempotency::middleware,
    ))
    // Before the Idempotency-Key middleware reads the body (it is a route layer, inside this).
    .layer(middleware::from_fn(routes::bulk_sends::raise_body_limit))
    .method_not_allowed_fallback(routes::method_not_allowed)
    .fallback(routes::not_found)
    // Listed outermost first: the request id exists before the span that records it, and the
    // latency and panic layers sit inside the span so their logs carry it.
    .layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(telemetry::trace_layer())
            .layer(middleware::from_fn(telemetry::record_latency))
            .layer(middleware::from_fn_with_state(
                state.clone(),
                request_events::record,
            ))
            .layer(CatchPanicLayer::custom(telemetry::panic_response))
            .layer(DefaultBodyLimit::max(extract::BODY_LIMIT)),
    )
    .with_state(state)
}

/// Serve the API on `listener` until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
