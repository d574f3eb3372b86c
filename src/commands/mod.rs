//! One module per group of subcommands.

pub mod admin;
pub mod bench;
pub mod jobs;
mod output;
pub mod pools;
pub mod serve;
