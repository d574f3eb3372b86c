//! `wedsync-jobs bench queue`: enqueue N no-op jobs in bulk, drain them with W worker
//! processes, prove each ran exactly once, and print throughput, pickup latency and worker RSS.

use crate::Failure;
use crate::cli::{BenchArgs, BenchCommand, BenchQueueArgs};
use crate::settings::Settings;
use anyhow::{Context, Result, bail};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use wedsync_db::testing::TestDb;
use wedsync_queue::{NewJob, Queue};

pub(crate) const QUEUE: &str = "bench";

pub async fn run(_settings: Settings, args: BenchArgs) -> Result<(), Failure> {
    let database =
        |default: &str| database_name(args.database.as_deref(), default).map_err(Failure::Usage);
    match args.command {
        BenchCommand::Queue(bench) => queue_bench(bench, &database("wedsync_bench")?)
            .await
            .map_err(Failure::Runtime),
        BenchCommand::Rollup(bench) => {
            super::bench_rollup::run(bench, &database("wedsync_bench_rollup")?)
                .await
                .map_err(Failure::Runtime)
        }
        BenchCommand::Retention(bench) => {
            super::bench_retention::run(bench, &database("wedsync_bench_retention")?)
                .await
                .map_err(Failure::Runtime)
        }
        BenchCommand::Photos(_) | BenchCommand::BareLoop(_) if args.database.is_some() => {
            Err(Failure::Usage(anyhow::anyhow!(
                "--database: this benchmark uses no database"
            )))
        }
        BenchCommand::Photos(bench) => super::bench_photos::run(bench)
            .await
            .map_err(Failure::Runtime),
        BenchCommand::BulkSend(bench) => {
            super::bench_bulk::run(bench, &database("wedsync_bench_bulk")?)
                .await
                .map_err(Failure::Runtime)
        }
        BenchCommand::BareLoop(bench) => super::bench_bulk::run_bare_loop_child(bench)
            .await
            .map_err(Failure::Runtime),
    }
}

/// Prefixes a benchmark's database may have: it is dropped and created again, so `--database`
/// must not be able to name the product's own.
const DATABASE_PREFIXES: [&str; 2] = ["wedsync_bench", "wedsync_test_"];

/// The database a benchmark replaces: `given` (`--database`) if it is a plain name with one of
/// [`DATABASE_PREFIXES`], else `default`.
fn database_name(given: Option<&str>, default: &str) -> Result<String> {
    let Some(name) = given else {
        return Ok(default.to_owned());
    };
    let plain = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain || !DATABASE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        bail!(
            "--database {name:?}: a benchmark drops and recreates its database, so the name \
             must start with {} and hold only a-z, 0-9 and _ (at most 63)",
            DATABASE_PREFIXES.join(" or ")
        );
    }
    Ok(name.to_owned())
}

async fn queue_bench(args: BenchQueueArgs, database: &str) -> Result<()> {
    let db = TestDb::named(database)
        .await
        .context("creating the bench database")?;
    let queue = Queue::new(db.pool.clone());
    queue
        .set_concurrency(QUEUE, args.concurrency, Some("bench"))
        .await?;
    let dir = std::env::temp_dir().join(format!("wedsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut workers = Workers::spawn(&db.url, &dir, &args)?;
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workers")
                .fetch_one(&db.pool)
                .await?;
            Ok(n as usize == args.workers)
        },
    )
    .await
    .context("waiting for the worker processes to register")?;
    println!(
        "bench queue: jobs={} workers={} concurrency={} runs={} (database {})",
        args.jobs, args.workers, args.concurrency, args.runs, db.name
    );

    let (p50, p99) = pickup_latency(&queue, args.pickup_samples).await?;
    println!(
        "pickup_latency_ms p50={p50:.2} p99={p99:.2} (idle queue, {} samples)",
        args.pickup_samples
    );

    let mut last = (0.0, 0.0);
    for run in 1..=args.runs {
        last = one_run(&queue, args.jobs).await?;
        println!(
            "run={run} enqueue_jobs_per_s={:.0} drain_jobs_per_s={:.0}",
            last.0, last.1
        );
    }
    let rss = workers.peak_rss_kib();
    println!(
        "worker_peak_rss_mib={}",
        rss.iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(",")
    );
    let executed = workers.stop_and_collect()?;
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs_finished WHERE queue = $1 AND state = 'completed'",
    )
    .bind(QUEUE)
    .fetch_one(&db.pool)
    .await?;
    let distinct: HashSet<i64> = executed.iter().copied().collect();
    let lost = (args.jobs * args.runs + args.pickup_samples).saturating_sub(distinct.len());
    let dup = executed.len() - distinct.len();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&db.pool)
        .await?;
    if expected as usize != distinct.len() || left != 0 {
        bail!(
            "completed={expected} executed_distinct={} left_in_queue={left}",
            distinct.len()
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    println!(
        "enqueue_jobs_per_s={:.0} drain_jobs_per_s={:.0} lost={lost} dup={dup}",
        last.0, last.1
    );
    Ok(())
}

/// Enqueue `jobs` with the queue paused, then resume and time the drain on the database clock:
/// from the resume to the last job finalised.
pub(crate) async fn one_run(queue: &Queue, jobs: usize) -> Result<(f64, f64)> {
    queue.set_paused(QUEUE, true, 0).await?;
    let batch: Vec<NewJob> = (0..jobs)
        .map(|_| NewJob::new(QUEUE, "noop", serde_json::json!({})))
        .collect();
    let started = Instant::now();
    let first = queue
        .enqueue_many(&batch)
        .await?
        .first()
        .map_or(0, |e| e.id);
    let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();
    let resumed_at: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(queue.pool())
        .await?;
    queue.set_paused(QUEUE, false, 0).await?;
    wait_until(
        Duration::from_secs(600),
        Duration::from_millis(20),
        || async {
            let busy: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = $1)")
                    .bind(QUEUE)
                    .fetch_one(queue.pool())
                    .await?;
            Ok(!busy)
        },
    )
    .await?;
    let drain_secs: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(finalized_at) - $2)::float8 FROM jobs_finished WHERE id >= $1",
    )
    .bind(first)
    .bind(resumed_at)
    .fetch_one(queue.pool())
    .await?;
    Ok((enqueue_rate, jobs as f64 / drain_secs))
}

/// Enqueue single jobs on the idle queue one at a time; time from insert to claim (database clock).
async fn pickup_latency(queue: &Queue, samples: usize) -> Result<(f64, f64)> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let id = queue
            .enqueue(NewJob::new(QUEUE, "noop", serde_json::json!({})))
            .await?
            .id;
        let latency = wait_for_value(Duration::from_secs(10), Duration::from_millis(1), || async {
            Ok(sqlx::query_scalar::<_, f64>(
                "SELECT extract(epoch FROM attempted_at - created_at)::float8 * 1000 FROM jobs_finished WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(queue.pool())
            .await?)
        })
        .await?;
        latencies.push(latency);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok((at(0.5), at(0.99)))
}

/// The worker child processes, each writing the ids it ran to its own run log.
pub(crate) struct Workers {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
}

impl Workers {
    fn spawn(database_url: &str, dir: &Path, args: &BenchQueueArgs) -> Result<Self> {
        Self::spawn_on(
            database_url,
            dir,
            QUEUE,
            args.workers,
            args.concurrency,
            &[],
        )
    }

    /// `count` worker processes for `queue`, each with `concurrency`, logging into `dir`.
    pub(crate) fn spawn_on(
        database_url: &str,
        dir: &Path,
        queue: &str,
        count: usize,
        concurrency: i32,
        env: &[(&str, String)],
    ) -> Result<Self> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut workers = Workers {
            children: Vec::new(),
            logs: Vec::new(),
        };
        for i in 0..count {
            let log = dir.join(format!("worker-{queue}-{i}.log"));
            let child = Command::new(&exe)
                .args([
                    "worker",
                    "--queues",
                    queue,
                    "--concurrency",
                    &concurrency.to_string(),
                ])
                .arg("--run-log")
                .arg(&log)
                .env("DATABASE_URL", database_url)
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .env(
                    "RUST_LOG",
                    std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .spawn()
                .context("starting a worker process")?;
            workers.children.push(child);
            workers.logs.push(log);
        }
        Ok(workers)
    }

    pub(crate) fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    pub(crate) fn peak_rss_kib(&self) -> Vec<u64> {
        self.children
            .iter()
            .filter_map(|c| std::fs::read_to_string(format!("/proc/{}/status", c.id())).ok())
            .filter_map(|status| {
                status.lines().find_map(|l| {
                    l.strip_prefix("VmHWM:")
                        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
                })
            })
            .collect()
    }

    /// SIGTERM every worker, wait for it, and return every job id any of them ran.
    pub(crate) fn stop_and_collect(&mut self) -> Result<Vec<i64>> {
        for child in &self.children {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
        }
        for child in &mut self.children {
            let status = child.wait()?;
            if !status.success() {
                bail!("a worker exited with {status}");
            }
        }
        let mut ids = Vec::new();
        for log in &self.logs {
            let text = std::fs::read_to_string(log)
                .with_context(|| format!("reading {}", log.display()))?;
            ids.extend(
                text.lines()
                    .map(|l| l.parse::<i64>())
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        Ok(ids)
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(crate) async fn wait_until<F, Fut>(
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    wait_for_value(timeout, interval, || {
        let fut = check();
        async move { Ok(fut.await?.then_some(())) }
    })
    .await
}

/// Poll `check` every `interval` (the drain check must not load the database it measures).
async fn wait_for_value<T, F, Fut>(timeout: Duration, interval: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?}");
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::database_name;

    #[test]
    fn a_benchmark_uses_its_own_database_unless_told_another() {
        assert_eq!(
            database_name(None, "wedsync_bench_bulk").unwrap(),
            "wedsync_bench_bulk"
        );
        assert_eq!(
            database_name(Some("wedsync_test_0a1b"), "wedsync_bench_bulk").unwrap(),
            "wedsync_test_0a1b"
        );
    }

    #[test]
    fn a_benchmark_refuses_to_replace_a_database_it_does_not_own() {
        for name in [
            "wedsync",
            "postgres",
            "wedsync_benchmark\"; DROP DATABASE wedsync; --",
            "wedsync_test_UPPER",
            &format!("wedsync_bench_{}", "x".repeat(60)),
        ] {
            let err = database_name(Some(name), "wedsync_bench").unwrap_err();
            assert!(err.to_string().contains("--database"), "{name}: {err}");
        }
    }
}
