//! The worker runtime of WedSync Jobs: per-queue fetch loops with live concurrency, batched
//! completion, LISTEN/NOTIFY wake-ups with a polling fallback, heartbeats, rescue of dead
//! workers' jobs, and a graceful shutdown that hands unfinished jobs back.

mod completer;
mod config;
mod executor;
mod fetcher;
mod housekeeping;
mod runtime;
mod signals;

pub use config::{WorkerConfig, default_worker_id};
pub use runtime::{Worker, WorkerError, WorkerReport};
