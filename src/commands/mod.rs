//! One module per group of subcommands.

pub mod admin;
pub mod bench;
mod bench_bulk;
mod bench_photos;
mod bench_retention;
mod bench_rollup;
pub mod jobs;
pub mod messages;
pub mod metrics_schedule;
mod output;
pub mod pools;
pub mod serve;
pub mod signing;
