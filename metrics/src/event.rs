//! One raw metric event.

use chrono::{DateTime, Utc};
use std::time::Duration;

/// A job execution or an API request that ended at `occurred_at` after `duration`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricEvent {
    /// When it ended; the rollup counts it in this hour.
    pub occurred_at: DateTime<Utc>,
    pub duration: Duration,
    /// The job attempt failed, or the request was answered with a 5xx.
    pub error: bool,
    pub detail: EventDetail,
}

/// What the event is about.
#[derive(Debug, Clone, PartialEq)]
pub enum EventDetail {
    /// `outcome`: `completed`, `cancelled` or `failed`.
    Job {
        queue: String,
        kind: String,
        outcome: &'static str,
    },
    /// `route` is the template (`/v1/jobs/{id}`), never the raw path.
    Api {
        method: String,
        route: String,
        status: u16,
    },
}

impl MetricEvent {
    /// A job attempt that ended now; `outcome == "failed"` counts as an error.
    pub fn job(queue: &str, kind: &str, outcome: &'static str, duration: Duration) -> Self {
        MetricEvent {
            occurred_at: Utc::now(),
            duration,
            error: outcome == "failed",
            detail: EventDetail::Job {
                queue: queue.to_owned(),
                kind: kind.to_owned(),
                outcome,
            },
        }
    }

    /// An API request answered now; a 5xx counts as an error (4xx are the caller's).
    pub fn api(method: &str, route: &str, status: u16, duration: Duration) -> Self {
        MetricEvent {
            occurred_at: Utc::now(),
            duration,
            error: status >= 500,
            detail: EventDetail::Api {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_server_errors_are_errors() {
        let d = Duration::from_millis(1);
        assert!(MetricEvent::job("q", "k", "failed", d).error);
        assert!(!MetricEvent::job("q", "k", "cancelled", d).error);
        assert!(MetricEvent::api("GET", "/x", 503, d).error);
        assert!(!MetricEvent::api("GET", "/x", 404, d).error);
    }
}
