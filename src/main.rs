//! `wedsync-jobs`: one binary, many roles (SPEC §1). Exit codes: 0 ok, 1 runtime failure,
//! 2 bad usage or configuration.

use clap::Parser;
use std::process::ExitCode;
use wedsync_jobs::{Failure, cli::Cli};

/// jemalloc, not glibc's malloc: ~15 % of a worker's CPU went to glibc's malloc and free in a bulk
/// send, part of it waiting on arena locks (outcomes are built on the runtime's threads and freed
/// on the outcome writer's); see docs/benchmarks.md, "jemalloc".
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match runtime.block_on(wedsync_jobs::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(err)) => {
            tracing::error!(error = format!("{err:#}"), "wedsync-jobs failed");
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
