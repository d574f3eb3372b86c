//! One module per group of subcommands.

pub mod admin;
pub mod bench;
mod bench_photos;
pub mod jobs;
mod output;
pub mod serve;
