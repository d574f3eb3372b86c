//! Pools as operators and Kubernetes see them: [`pool_views`] (with recent history) and
//! [`scaling_rows`].

use super::sql;
use crate::pools::{Override, PoolConfig, Reason};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::BTreeMap;

/// A pool row as stored (migration 0007).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct PoolRow {
    pub queue: String,
    pub concurrency: i32,
    pub paused: bool,
    pub min_size: i32,
    pub max_size: i32,
    pub base_size: i32,
    pub desired: Option<i32>,
    pub desired_replicas: i32,
    pub override_size: Option<i32>,
    pub override_until: Option<DateTime<Utc>>,
    pub override_reason: Option<String>,
    pub reasons: Json<Value>,
    pub changed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// A stored size as the rules count (the columns are checked non-negative).
pub(crate) fn size(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

impl PoolRow {
    pub fn config(&self) -> PoolConfig {
        PoolConfig {
            min: size(self.min_size),
            max: size(self.max_size),
            base: size(self.base_size),
        }
    }

    pub fn override_(&self) -> Option<Override> {
        Some(Override {
            size: size(self.override_size?),
            until: self.override_until?,
            reason: self.override_reason.clone()?,
        })
    }

    /// The reasons of the current size, as the rules wrote them.
    pub fn reasons(&self) -> Vec<Reason> {
        serde_json::from_value(self.reasons.0.clone()).unwrap_or_default()
    }
}

/// Reasons for people and machines: each reason's fields plus `text`.
pub fn reasons_json(reasons: &[Reason]) -> Value {
    reasons
        .iter()
        .map(|reason| {
            let mut value = serde_json::to_value(reason).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut value {
                map.insert("text".into(), Value::String(reason.to_string()));
            }
            value
        })
        .collect()
}

/// An operator override as shown; `active` is false once it expired (the next evaluation
/// clears it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideView {
    pub size: u32,
    pub until: DateTime<Utc>,
    pub reason: String,
    pub active: bool,
}

/// One change of a pool's size, with its reasons.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Change {
    #[serde(skip)]
    pub queue: String,
    pub at: DateTime<Utc>,
    #[sqlx(rename = "from_size")]
    pub from: i32,
    #[sqlx(rename = "to_size")]
    pub to: i32,
    pub from_replicas: i32,
    pub to_replicas: i32,
    pub reasons: Json<Value>,
    pub source: String,
}

/// A pool: bounds, base, the size applied and the size asked for, replicas, override, reasons,
/// recent history (newest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolView {
    pub queue: String,
    /// The size every worker process applies now.
    pub concurrency: u32,
    pub paused: bool,
    pub min: u32,
    pub max: u32,
    pub base: u32,
    /// What the rules (or the override) asked for at the last evaluation; differs from
    /// `concurrency` while a cooldown holds.
    pub desired: Option<u32>,
    pub desired_replicas: u32,
    pub reasons: Value,
    #[serde(rename = "override")]
    pub override_: Option<OverrideView>,
    pub changed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
    pub history: Vec<Change>,
}

impl PoolView {
    fn new(row: PoolRow, history: Vec<Change>, now: DateTime<Utc>) -> Self {
        let override_ = row.override_().map(|o| OverrideView {
            active: now < o.until,
            size: o.size,
            until: o.until,
            reason: o.reason,
        });
        PoolView {
            concurrency: size(row.concurrency),
            paused: row.paused,
            min: size(row.min_size),
            max: size(row.max_size),
            base: size(row.base_size),
            desired: row.desired.map(size),
            desired_replicas: size(row.desired_replicas),
            reasons: reasons_json(&row.reasons()),
            override_,
            changed_at: row.changed_at,
            updated_at: row.updated_at,
            history,
            queue: row.queue,
        }
    }
}

/// Every pool with its `history` most recent changes; overrides judged active at `now`.
pub async fn pool_views(
    pool: &PgPool,
    history: i64,
    now: DateTime<Utc>,
) -> Result<Vec<PoolView>, sqlx::Error> {
    let rows: Vec<PoolRow> = sqlx::query_as(sql::LIST_POOLS).fetch_all(pool).await?;
    let changes: Vec<Change> = sqlx::query_as(sql::RECENT_CHANGES)
        .bind(history)
        .fetch_all(pool)
        .await?;
    let mut by_queue: BTreeMap<String, Vec<Change>> = BTreeMap::new();
    for mut change in changes {
        let reasons: Vec<Reason> =
            serde_json::from_value(change.reasons.0.clone()).unwrap_or_default();
        change.reasons = Json(reasons_json(&reasons));
        by_queue
            .entry(change.queue.clone())
            .or_default()
            .push(change);
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let history = by_queue.remove(&row.queue).unwrap_or_default();
            PoolView::new(row, history, now)
        })
        .collect())
}

/// One pool as Kubernetes/KEDA reads it (`wedsync_scaling`; a paused pool needs 0 replicas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct ScalingRow {
    pub queue: String,
    pub desired_replicas: i32,
    pub concurrency: i32,
    pub paused: bool,
}

pub async fn scaling_rows(pool: &PgPool) -> Result<Vec<ScalingRow>, sqlx::Error> {
    sqlx::query_as(sql::SCALING).fetch_all(pool).await
}
