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
    Bench(BenchArgs),
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
    /// Size a queue's pool; running workers follow within a second.
    ///
    /// `pools set QUEUE N` pins the size per worker process to N (min = base = max = N; more
    /// demand is published as replicas). With `--ttl` or `--until`, N is an operator override
    /// that wins over the rules until it expires. `--min`, `--max`, `--base` set the bounds and
    /// base size the rules work from.
    Set {
        queue: String,
        #[arg(value_parser = clap::value_parser!(u32).range(0..=1000))]
        size: Option<u32>,
        /// Override for this long, e.g. 90m, 6h, 2d.
        #[arg(
            long,
            visible_alias = "for",
            value_name = "DURATION",
            conflicts_with = "until"
        )]
        ttl: Option<String>,
        /// Override until this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Why (required with an override).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
        min: Option<u32>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
        max: Option<u32>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=1000))]
        base: Option<u32>,
        /// End the queue's override now.
        #[arg(long, conflicts_with_all = ["ttl", "until"])]
        clear_override: bool,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// List pools.
    List(JsonFlag),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The database a benchmark creates on the local PostgreSQL (replacing one of that name)
    /// and drops when it ends; its name must start with `wedsync_bench` or `wedsync_test_`
    /// (default: `wedsync_bench`, or `wedsync_bench_<benchmark>`). Tests give each run its own.
    #[arg(long, global = true, value_name = "NAME")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue N no-op jobs in bulk, drain them with W worker processes, verify each ran once.
    Queue(BenchQueueArgs),
    /// Seed N raw metric events over H hours, then time the hourly rollup of each hour.
    Rollup(BenchRollupArgs),
    /// Time a no-op drain with and without a retention cleanup of N old finished jobs running.
    Retention(BenchRetentionArgs),
    /// Run the photo pipeline over a folder of photos; compare with libvips' `vipsthumbnail`.
    Photos(BenchPhotosArgs),
    /// Bulk email to a local SMTP sink against a suppression list; compare with a bare lettre loop.
    BulkSend(BenchBulkSendArgs),
    /// A bare loop of `bench bulk-send` in a process of its own, as the worker is: started by it.
    #[command(hide = true)]
    BareLoop(BenchBareLoopArgs),
}

#[derive(Debug, Args)]
pub struct BenchBareLoopArgs {
    /// The sink's address.
    #[arg(long)]
    pub sink: std::net::SocketAddr,
    /// Recipients of the bench send (their messages are rendered as `bench bulk-send` renders them).
    #[arg(long)]
    pub recipients: usize,
    /// SMTP connections per worker process's worth (`bench bulk-send --pool`).
    #[arg(long)]
    pub pool: u32,
    /// Worker processes' worth of connections: lettre's loop opens `pool × workers`, each a task
    /// sending the next message; our transport's runs `workers` pools of `pool`.
    #[arg(long)]
    pub workers: usize,
    /// Which client the loop sends with.
    #[arg(long, value_enum)]
    pub client: BenchLoopClient,
}

/// The SMTP client of a bare loop: lettre's (`AsyncSmtpConnection::send`, the ceiling)
/// or our transport (the worker's pool, pipelined).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchLoopClient {
    Lettre,
    Transport,
}

#[derive(Debug, Args)]
pub struct BenchBulkSendArgs {
    /// Recipients in all (sends of at most 50,000 each); every 20th is on the suppression list.
    #[arg(long, default_value_t = 10_000)]
    pub recipients: usize,
    /// Entries on the suppression list (the suppressed recipients among them).
    #[arg(long, default_value_t = 1_000_000)]
    pub suppressed: u64,
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Batch jobs each worker process runs at once (the `messages` queue's concurrency).
    #[arg(long, default_value_t = 10)]
    pub concurrency: i32,
    /// Deliveries per batch job.
    #[arg(long, default_value_t = 200)]
    pub batch_size: i32,
    /// The most deliveries a batch job sends at once (`WEDSYNC_MESSAGE_CHUNK`).
    #[arg(long, default_value_t = 100)]
    pub chunk: u32,
    /// SMTP connections per worker process (`WEDSYNC_SMTP_POOL_SIZE`); the ceiling loop uses
    /// as many in all.
    #[arg(long, default_value_t = 10)]
    pub pool: u32,
    /// Also time lettre's own pooled transport on 2,000 of the messages (slow: Nagle).
    #[arg(long)]
    pub stock_lettre: bool,
    /// Messages a worker may have sent but not recorded (`WEDSYNC_UNRECORDED_LIMIT`).
    #[arg(long, default_value_t = 40)]
    pub unrecorded: u32,
    /// The sink waits this long before each reply it sends, as a server that far away would
    /// seem (0: loopback as it is).
    #[arg(long, default_value_t = 0)]
    pub sink_delay_ms: u64,
    /// Also print the messages the sink accepted in each 100 ms from the sends' creation: the
    /// creation and fan-out phases show as slower first seconds.
    #[arg(long)]
    pub timeline: bool,
}

#[derive(Debug, Args)]
pub struct BenchRollupArgs {
    /// Raw events to seed.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Hours they are spread over, ending with the last complete hour.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Distinct keys (job queue/kind or API route), so rows per hour.
    #[arg(long, default_value_t = 40)]
    pub keys: u32,
}

#[derive(Debug, Args)]
pub struct BenchRetentionArgs {
    /// Old finished jobs seeded for the cleanup to delete.
    #[arg(long, default_value_t = 5_000_000)]
    pub finished: u64,
    /// No-op jobs per timed drain.
    #[arg(long, default_value_t = 20_000)]
    pub drain: usize,
    /// Timed drains without the cleanup, and again with it running (medians are compared).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrency of each drain worker process.
    #[arg(long, default_value_t = 1000)]
    pub concurrency: i32,
    /// The cleanup's rows per batch.
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: u32,
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
