//! The command line (SPEC §1).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "wedsync-jobs",
    version,
    about = "WedSync Jobs: Postgres-backed background jobs"
)]
pub struct Cli {
    /// TOML file with queues, pools and the schedule (SPEC §2).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// API, workers for every queue and the scheduler in one process (the embedded default).
    All,
    /// The HTTP API only.
    Api,
    /// A worker process; many may run on many hosts against one database.
    Worker(WorkerArgs),
    /// Cron and scaling evaluation; several may run, one acts.
    Scheduler,
    /// Apply migrations and exit.
    Migrate,
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Inspect, enqueue, retry and cancel jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Depth, activity and pool of every queue.
    Queues(JsonFlag),
    /// Worker pools.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Default, Args)]
pub struct WorkerArgs {
    /// Queues to work (default: every queue of a registered kind).
    #[arg(long, value_delimiter = ',')]
    pub queues: Vec<String>,
    /// Concurrency of a queue that has no pool row yet; the pool row, once it exists, rules.
    #[arg(long)]
    pub concurrency: Option<i32>,
    /// Write the id of every job this process started to FILE at shutdown (tests, benchmarks).
    #[arg(long, hide = true, value_name = "FILE")]
    pub run_log: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print a new API key (only its hash is stored).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = ["planner", "operator", "admin"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Enqueue COUNT jobs of KIND with ARGS_JSON.
    Enqueue {
        kind: String,
        #[arg(default_value = "{}")]
        args: String,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, value_parser = clap::value_parser!(i16).range(0..=9))]
        priority: Option<i16>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        queue: Option<String>,
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Show one job with its error history.
    Show {
        id: i64,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Run a job again now.
    Retry {
        id: i64,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Cancel an unfinished job.
    Cancel {
        id: i64,
        #[command(flatten)]
        output: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Set a queue's per-process concurrency; running workers follow within a second.
    Set {
        queue: String,
        #[arg(value_parser = clap::value_parser!(i32).range(0..=10_000))]
        size: i32,
        /// How long the setting is meant to hold, e.g. 6h (recorded with the reason).
        #[arg(long = "for")]
        for_: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List pools.
    List(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue N no-op jobs in bulk, drain them with W worker processes, verify each ran once.
    Queue(BenchQueueArgs),
    /// Run the photo pipeline over a folder of photos; compare with libvips' `vipsthumbnail`.
    Photos(BenchPhotosArgs),
}

#[derive(Debug, Args)]
pub struct BenchPhotosArgs {
    /// Folder of JPEG/PNG/WebP photos (not recursive).
    #[arg(long)]
    pub dir: std::path::PathBuf,
    /// Photos processed at once (default: the number of CPU cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Skip the comparison with `vipsthumbnail`.
    #[arg(long)]
    pub no_vips: bool,
}

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrency of each worker process.
    #[arg(long, default_value_t = 1000)]
    pub concurrency: i32,
    /// Back-to-back runs in one database (finished jobs accumulate, as in production).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Samples of single-job pickup latency on an idle queue.
    #[arg(long, default_value_t = 200)]
    pub pickup_samples: usize,
}
