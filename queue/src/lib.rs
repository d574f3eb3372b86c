//! The Postgres queue core of WedSync Jobs: job rows, enqueue, claim, complete, retry policy,
//! rescue and pools. It knows nothing of weddings, email or HTTP.
//!
//! Unfinished jobs live in `jobs`; a job that completes, is discarded or cancelled is moved to
//! `jobs_finished` by the statement that finalises it. See `docs/architecture.md`.

mod admin;
mod error;
mod job;
mod lease;
mod model;
pub mod retry;
pub mod sql;
mod store;

pub use admin::{Cancelled, StateCount};
pub use error::QueueError;
pub use job::{
    Job, JobContext, JobError, JobResult, KindInfo, Outcome, PreparedRun, Registry, SharedRegistry,
    error_chain,
};
pub use lease::Lease;
pub use model::{Enqueued, JobFilter, JobRow, JobState, NewJob, Pool, QueueStats, UnknownState};
pub use store::{Maintenance, Queue, enqueue, enqueue_many, error_entry};

/// Channel notified (payload: queue name) when jobs become available.
pub const JOBS_CHANNEL: &str = "wedsync_jobs";
/// Channel notified when any pool row changes.
pub const POOLS_CHANNEL: &str = "wedsync_pools";
/// Channel notified (payload: job id) when a job is cancelled.
pub const CANCEL_CHANNEL: &str = "wedsync_cancel";
