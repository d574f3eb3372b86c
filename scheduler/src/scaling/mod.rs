//! Pools applied live (SPEC §6): the rules of [`crate::pools`] evaluated against the database.
//!
//! [`evaluate_pools`] runs once a minute (the built-in `pool-scaling` entry enqueues a
//! `pool_scaling` job); it reads each pool's bounds and override, the active weddings, the
//! backlog and the measured throughput, plans the pool's size ([`plan()`]), and when the
//! cooldowns let the size change writes `pools.concurrency` (which workers follow within a
//! second) and a `pool_changes` row with the reasons, in one transaction per pool. The time is
//! injected so tests evaluate a Saturday in June on any day.
//!
//! [`configure`] is the operator's side (`PUT /v1/pools/{queue}`, `wedsync-jobs pools set`):
//! bounds, base size and override, applied at once. [`weddings`] registers the weddings that
//! pre-scaling plans for. [`scaling_rows`] is what Kubernetes/KEDA reads.

mod configure;
mod evaluate;
mod plan;
mod sql;
mod view;
pub mod weddings;

pub use configure::{PoolChanges, configure, seed_pool, validate_override};
pub use evaluate::{
    Evaluated, THROUGHPUT_WINDOW, evaluate_pool, evaluate_pools, measured_throughput,
};
pub use plan::{Plan, Sizing, Source, changes_now, plan, replicas_for};
pub use view::{
    Change, OverrideView, PoolView, ScalingRow, pool_views, reasons_json, scaling_rows,
};

/// What can go wrong evaluating or configuring pools.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScalingError {
    /// The operator's input is invalid: every `(field, message)` at once.
    #[error("invalid pool settings: {}", .0.iter().map(|(f, m)| format!("{f} {m}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
