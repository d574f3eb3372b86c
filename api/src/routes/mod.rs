//! One module per resource; each lists its own routes, and [`all`] is the table the router is
//! built from (and that the OpenAPI test checks against the document).

pub mod bulk_send_control;
pub mod bulk_sends;
pub mod erasures;
pub mod health;
pub mod jobs;
pub mod mail_reports;
pub mod metrics;
pub mod metrics_hourly;
pub mod openapi;
mod page_limit;
pub mod photos;
pub mod pools;
pub mod queues;
pub mod scaling;
pub mod schedules;
pub mod sms_webhooks;
pub mod suppressions;
pub mod unsubscribe;
pub mod unsubscribe_mail;
pub mod weddings;

use crate::ApiState;
use crate::error::ApiError;
use axum::http::{Method, Uri};
use axum::routing::MethodRouter;

/// A path template and its handlers.
pub type Route = (&'static str, MethodRouter<ApiState>);

/// Every route of the API.
pub fn all() -> Vec<Route> {
    [
        health::routes(),
        metrics::routes(),
        openapi::routes(),
        jobs::routes(),
        queues::routes(),
        schedules::routes(),
        metrics_hourly::routes(),
        suppressions::routes(),
        erasures::routes(),
        pools::routes(),
        scaling::routes(),
        weddings::routes(),
        photos::routes(),
        bulk_sends::routes(),
        bulk_send_control::routes(),
        unsubscribe::routes(),
        unsubscribe_mail::routes(),
        mail_reports::routes(),
        sms_webhooks::routes(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Fallback for paths no route matches.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

/// Fallback for a known path with a method it does not support.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not supported on {}", uri.path()))
}
