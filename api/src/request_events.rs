//! A raw metric event per API request (SPEC §5.4): method, route template, status, duration,
//! handed to the batched event writer so the request never waits on it.
//!
//! Like the latency histogram, it uses the route template from `MatchedPath` (`unmatched` for
//! unknown paths) so ids in URLs do not multiply the rollup's keys.

use crate::ApiState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::time::Instant;
use wedsync_metrics::MetricEvent;

/// Record an event for every request when the state has an event sink.
pub async fn record(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(events) = state.events.clone() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(req).await;
    events.record(MetricEvent::api(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    ));
    response
}
