//! One module per group of subcommands.

pub mod admin;
pub mod bench;
mod bench_retention;
pub mod jobs;
mod output;
pub mod serve;
