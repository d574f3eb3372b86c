//! Reading the hourly rollup (`GET /v1/metrics/hourly`).

use crate::sql;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

/// Which rows to read: hours in `[from, to)`, optionally one source, queue or kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyFilter {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// `job` or `api`.
    pub source: Option<String>,
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub limit: i64,
}

/// One hour of one key: `queue`/`kind` for jobs, `method`/`route` for API requests.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct HourlyRow {
    pub hour: DateTime<Utc>,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    pub count: i64,
    pub errors: i64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// The rows matching `filter`, by hour then key, at most `filter.limit`.
pub async fn hourly(pool: &PgPool, filter: &HourlyFilter) -> Result<Vec<HourlyRow>, sqlx::Error> {
    sqlx::query_as(sql::SELECT_HOURLY)
        .bind(filter.from)
        .bind(filter.to)
        .bind(filter.source.as_deref())
        .bind(filter.queue.as_deref())
        .bind(filter.kind.as_deref())
        .bind(filter.limit)
        .fetch_all(pool)
        .await
}
