//! Per-request telemetry: a tracing span (request id, method, route, org), the API latency
//! histogram, and the response to a panic.
//!
//! Both use the route *template* (`/v1/jobs/{id}`) from axum's `MatchedPath`, never the raw path,
//! so that ids in URLs do not explode log and metric cardinality; unknown paths are `unmatched`.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::Response;
use axum::middleware::Next;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder};
use std::any::Any;
use std::time::Instant;
use tower_http::LatencyUnit;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, TraceLayer};
use tracing::{Level, Span};

/// Histogram of API request durations, labelled `method`, `route`, `status`.
pub const HTTP_DURATION: &str = "wedsync_http_request_duration_seconds";
/// Bucket bounds (seconds) for [`HTTP_DURATION`]: from a cached read to a slow bulk write.
pub const HTTP_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Give the API's histogram real buckets (the exporter renders summaries otherwise). The binary
/// calls this on the builder it installs as the global recorder.
pub fn configure_prometheus(builder: PrometheusBuilder) -> Result<PrometheusBuilder, BuildError> {
    builder.set_buckets_for_metric(
        Matcher::Full(HTTP_DURATION.to_owned()),
        HTTP_DURATION_BUCKETS,
    )
}

type MakeSpan = fn(&Request) -> Span;

/// The request span and an INFO line per response with its latency.
pub fn trace_layer() -> TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    MakeSpan,
    DefaultOnRequest,
    DefaultOnResponse,
> {
    TraceLayer::new_for_http()
        .make_span_with(request_span as MakeSpan)
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(LatencyUnit::Millis),
        )
}

fn request_span(req: &Request) -> Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id,
        method = %req.method(),
        route = route_of(req),
        // Filled in by the auth extractor once the caller is known.
        org = tracing::field::Empty,
    )
}

fn route_of(req: &Request) -> &str {
    req.extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
}

/// Record [`HTTP_DURATION`] for every request.
pub async fn record_latency(req: Request, next: Next) -> axum::response::Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = route_of(&req).to_owned();
    let response = next.run(req).await;
    metrics::histogram!(
        HTTP_DURATION,
        "method" => method,
        "route" => route,
        "status" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// A panicking handler becomes a generic 500 problem; the panic message is logged, not sent.
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    ApiError::internal(format!("handler panicked: {message}")).into_response()
}
