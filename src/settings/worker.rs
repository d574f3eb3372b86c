//! Worker tuning: default concurrency, poll and heartbeat intervals, shutdown grace.

use super::source::Source;
use super::values::parse_concurrency;
use super::{
    DEFAULT_CONCURRENCY, DEFAULT_HEARTBEAT_INTERVAL_MS, DEFAULT_HEARTBEAT_TIMEOUT_MS,
    DEFAULT_POLL_INTERVAL_MS, DEFAULT_SHUTDOWN_GRACE_MS, SettingsError,
};
use std::time::Duration;

/// The longest accepted interval or grace period (one day).
const MAX_MILLIS: u64 = 86_400_000;

/// Timings and sizes of worker processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerTuning {
    /// `WEDSYNC_DEFAULT_CONCURRENCY`: concurrency of a queue with no pool or `[queues.*]` entry.
    pub default_concurrency: i32,
    /// `WEDSYNC_POLL_INTERVAL_MS`: fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// `WEDSYNC_HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval: Duration,
    /// `WEDSYNC_HEARTBEAT_TIMEOUT_MS`: a worker silent this long is dead; its jobs are rescued.
    pub heartbeat_timeout: Duration,
    /// `WEDSYNC_SHUTDOWN_GRACE_MS`: time in-flight jobs get to finish on SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        WorkerTuning {
            default_concurrency: DEFAULT_CONCURRENCY,
            poll_interval: Duration::from_millis(DEFAULT_POLL_INTERVAL_MS),
            heartbeat_interval: Duration::from_millis(DEFAULT_HEARTBEAT_INTERVAL_MS),
            heartbeat_timeout: Duration::from_millis(DEFAULT_HEARTBEAT_TIMEOUT_MS),
            shutdown_grace: Duration::from_millis(DEFAULT_SHUTDOWN_GRACE_MS),
        }
    }
}

impl WorkerTuning {
    /// The worker settings of `source`; the heartbeat timeout must exceed the interval.
    pub(super) fn read(source: &Source<'_>) -> Result<WorkerTuning, SettingsError> {
        let default_concurrency = match source.get("WEDSYNC_DEFAULT_CONCURRENCY", false)? {
            Some(v) => parse_concurrency(&v.raw).map_err(|(p, e)| v.invalid(&p, &e))?,
            None => DEFAULT_CONCURRENCY,
        };
        let worker = WorkerTuning {
            default_concurrency,
            poll_interval: millis(source, "WEDSYNC_POLL_INTERVAL_MS", DEFAULT_POLL_INTERVAL_MS)?,
            heartbeat_interval: millis(
                source,
                "WEDSYNC_HEARTBEAT_INTERVAL_MS",
                DEFAULT_HEARTBEAT_INTERVAL_MS,
            )?,
            heartbeat_timeout: millis(
                source,
                "WEDSYNC_HEARTBEAT_TIMEOUT_MS",
                DEFAULT_HEARTBEAT_TIMEOUT_MS,
            )?,
            shutdown_grace: millis(
                source,
                "WEDSYNC_SHUTDOWN_GRACE_MS",
                DEFAULT_SHUTDOWN_GRACE_MS,
            )?,
        };
        // A process's lease on its jobs lasts the timeout less one interval after a heartbeat
        // (`wedsync_queue::Lease`): with less than two intervals it would lapse between two
        // heartbeats on time, and stall sending and claiming every time.
        if worker.heartbeat_timeout < worker.heartbeat_interval * 2 {
            let setting = match source.get("WEDSYNC_HEARTBEAT_TIMEOUT_MS", false)? {
                Some(v) => v.setting,
                None => format!(
                    "WEDSYNC_HEARTBEAT_TIMEOUT_MS={} (the default)",
                    DEFAULT_HEARTBEAT_TIMEOUT_MS
                ),
            };
            return Err(SettingsError::invalid(
                setting,
                format!(
                    "is not at least twice WEDSYNC_HEARTBEAT_INTERVAL_MS={}",
                    worker.heartbeat_interval.as_millis()
                ),
                "a timeout of several heartbeat intervals",
            ));
        }
        Ok(worker)
    }
}

/// The duration setting `name` in milliseconds, 1 to [`MAX_MILLIS`]; unset → `default`.
fn millis(
    source: &Source<'_>,
    name: &'static str,
    default: u64,
) -> Result<Duration, SettingsError> {
    Ok(Duration::from_millis(match source.get(name, false)? {
        Some(v) => match v.raw.parse::<u64>() {
            Ok(ms) if (1..=MAX_MILLIS).contains(&ms) => ms,
            _ => {
                return Err(v.invalid(
                    "is not a number of milliseconds",
                    &format!("an integer from 1 to {MAX_MILLIS}, e.g. {default}"),
                ));
            }
        },
        None => default,
    }))
}
