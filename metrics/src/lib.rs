//! Metrics of WedSync Jobs (SPEC §5.4): one raw event per job execution and per API request,
//! written in batches off the hot path ([`EventWriter`]), rolled up per hour and key
//! ([`rollup_hour`]: count, errors, p50/p95/p99) and read back for `GET /v1/metrics/hourly`
//! ([`hourly`]).
//!
//! Raw events live in `metric_events`, partitioned by day (migration `0006_metrics.sql`): the
//! rollup of an hour reads one partition, and retention drops whole days.

mod event;
mod hourly;
mod rollup;
mod sql;
mod writer;

pub use event::{EventDetail, MetricEvent};
pub use hourly::{HourlyFilter, HourlyRow, hourly};
pub use rollup::{
    PARTITION_DAYS_AHEAD, RollupReport, ensure_partitions, is_whole_hour, previous_hour,
    rollup_hour,
};
pub use writer::{EventSink, EventWriter, EventWriterConfig};
