//! `wedsync-jobs bench retention`: does a retention cleanup slow the queue down?
//!
//! Seeds N finished jobs 30 days old (past `completed_jobs`' 14 days), starts W drain worker
//! processes and one maintenance worker, then times R drains of D no-op jobs (the method of
//! `bench queue`) without a cleanup, and R more while a real `retention_cleanup` job deletes the
//! seeded rows. A sampler watches `pg_locks` throughout for the longest lock wait of any
//! session of the bench database. Prints both drain rates, their ratio and the cleanup's rows/s.

use super::bench::{QUEUE, Workers, one_run, wait_until};
use crate::cli::BenchRetentionArgs;
use anyhow::{Context, Result, bail};
use sqlx::{Connection, PgConnection, PgPool};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use wedsync_db::testing::TestDb;
use wedsync_kinds::RetentionCleanup;
use wedsync_queue::{Job, Queue};

/// Seeded rows per INSERT statement (progress is printed after each).
const SEED_CHUNK: u64 = 1_000_000;
/// How often the sampler reads `pg_locks`.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

pub async fn run(args: BenchRetentionArgs, database: &str) -> Result<()> {
    if args.runs == 0 || args.drain == 0 {
        bail!("--runs and --drain must be at least 1");
    }
    let db = TestDb::named(database)
        .await
        .context("creating the bench database")?;
    let queue = Queue::new(db.pool.clone());
    queue
        .set_concurrency(QUEUE, args.concurrency, Some("bench"))
        .await?;
    queue
        .set_concurrency(RetentionCleanup::QUEUE, 1, Some("bench"))
        .await?;
    println!(
        "bench retention: finished={} drain={} runs={} workers={} concurrency={} batch_size={} (database {})",
        args.finished,
        args.drain,
        args.runs,
        args.workers,
        args.concurrency,
        args.batch_size,
        db.name
    );
    seed(&db.pool, args.finished).await?;

    let dir = std::env::temp_dir().join(format!("wedsync-bench-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut drainers =
        Workers::spawn_on(&db.url, &dir, QUEUE, args.workers, args.concurrency, &[])?;
    let mut cleaner = Workers::spawn_on(&db.url, &dir, RetentionCleanup::QUEUE, 1, 1, &[])?;
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(20),
        || async {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM workers")
                .fetch_one(&db.pool)
                .await?;
            Ok(n as usize == args.workers + 1)
        },
    )
    .await
    .context("waiting for the worker processes to register")?;

    let stop = CancellationToken::new();
    let sampler = tokio::spawn(sample_lock_waits(db.url.clone(), stop.clone()));
    let mut without = Vec::new();
    for run in 1..=args.runs {
        let rate = one_run(&queue, args.drain).await?.1;
        println!("without_cleanup run={run} drain_jobs_per_s={rate:.0}");
        without.push(rate);
    }
    let without_waits = take_max(sampler, &stop).await?;

    let stop = CancellationToken::new();
    let sampler = tokio::spawn(sample_lock_waits(db.url.clone(), stop.clone()));
    let cleanup = RetentionCleanup {
        batch_size: Some(args.batch_size),
        // The longest budget the kind allows (25 min): the run should drain every seeded row.
        time_budget_secs: Some(1500.0),
        ..Default::default()
    };
    let id = queue.enqueue(cleanup.to_new_job()?).await?.id;
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(5),
        || async { began_deleting(&db.pool, id).await },
    )
    .await
    .context("waiting for the cleanup to start deleting")?;
    let mut with = Vec::new();
    let mut overlapped = true;
    for run in 1..=args.runs {
        let rate = one_run(&queue, args.drain).await?.1;
        let still = cleanup_running(&db.pool, id).await?;
        overlapped &= still;
        println!("with_cleanup run={run} drain_jobs_per_s={rate:.0} cleanup_still_running={still}");
        with.push(rate);
    }
    let job = wait_for_cleanup(&db.pool, id).await?;
    let with_waits = take_max(sampler, &stop).await?;

    drainers.stop_and_collect()?;
    cleaner.stop_and_collect()?;
    std::fs::remove_dir_all(&dir).ok();

    let (base, loaded) = (median(&mut without), median(&mut with));
    println!(
        "cleanup deleted={} complete={} secs={:.1} rows_per_s={:.0}",
        job.deleted,
        job.complete,
        job.secs,
        job.deleted as f64 / job.secs
    );
    println!(
        "longest_lock_wait_ms without_cleanup={:.1} with_cleanup={:.1} (sampled every {} ms; {} of {} samples saw a waiter)",
        without_waits.max_ms,
        with_waits.max_ms,
        SAMPLE_EVERY.as_millis(),
        with_waits.samples_waiting,
        with_waits.samples
    );
    if !overlapped {
        println!("note: the cleanup finished before the last timed drain; seed more rows");
    }
    println!(
        "drain_jobs_per_s without_cleanup={base:.0} with_cleanup={loaded:.0} ratio={:.3}",
        loaded / base
    );
    Ok(())
}

/// `count` completed jobs finalised 30 days ago (a 100 µs apart, in physical order as real
/// ones would be, which is what the BRIN index on `finalized_at` relies on). Negative ids keep
/// them apart from the drains' jobs.
async fn seed(pool: &PgPool, count: u64) -> Result<()> {
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let n = SEED_CHUNK.min(count - done);
        sqlx::query(
            "INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts,
                                        scheduled_at, created_at, attempted_at, errors, finalized_at)
             SELECT -g, 'archive', 'noop', jsonb_build_object('n', g), 'completed', 5, 1, 20,
                    t, t, t, '[]', t
               FROM generate_series($1::bigint + 1, $1::bigint + $2::bigint) g,
                    LATERAL (SELECT now() - interval '30 days' + g * interval '100 microseconds' AS t) x",
        )
        .bind(done as i64)
        .bind(n as i64)
        .execute(pool)
        .await
        .context("seeding finished jobs")?;
        done += n;
        println!(
            "seeded {done} finished jobs ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    sqlx::query("VACUUM (ANALYZE) jobs_finished")
        .execute(pool)
        .await?;
    println!(
        "seed_rows_per_s={:.0} (with VACUUM ANALYZE, {:.0} s)",
        count as f64 / started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A cleanup batch is executing on some session, or the cleanup `id` already finished. A small
/// seed can be deleted whole between two looks at `pg_stat_activity`; waiting for a batch that
/// will never come again would fail the bench (the drains then report no overlap instead).
async fn began_deleting(pool: &PgPool, id: i64) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE datname = current_database() AND state = 'active'
                           AND query LIKE '%DELETE FROM jobs_finished%' AND pid <> pg_backend_pid())
             OR EXISTS (SELECT 1 FROM jobs_finished WHERE id = $1)",
    )
    .bind(id)
    .fetch_one(pool)
    .await?)
}

async fn cleanup_running(pool: &PgPool, id: i64) -> Result<bool> {
    Ok(
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND state = 'running')",
        )
        .bind(id)
        .fetch_one(pool)
        .await?,
    )
}

struct CleanupDone {
    deleted: u64,
    complete: bool,
    secs: f64,
}

async fn wait_for_cleanup(pool: &PgPool, id: i64) -> Result<CleanupDone> {
    wait_until(
        Duration::from_secs(30 * 60),
        Duration::from_millis(200),
        || async {
            let finished: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM jobs_finished WHERE id = $1)")
                    .bind(id)
                    .fetch_one(pool)
                    .await?;
            Ok(finished)
        },
    )
    .await
    .context("waiting for the cleanup to finish")?;
    let (state, result, secs): (String, Option<serde_json::Value>, f64) = sqlx::query_as(
        "SELECT state, result, extract(epoch FROM finalized_at - attempted_at)::float8
           FROM jobs_finished WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await?;
    let result = result.unwrap_or_default();
    if state != "completed" {
        bail!("the cleanup ended {state}: {result}");
    }
    Ok(CleanupDone {
        deleted: result["deleted"]["completed_jobs"].as_u64().unwrap_or(0),
        complete: result["complete"].as_bool().unwrap_or(false),
        secs,
    })
}

#[derive(Debug, Default)]
struct LockWaits {
    max_ms: f64,
    samples: u64,
    samples_waiting: u64,
}

/// Stop the sampler and return what it saw.
async fn take_max(
    sampler: tokio::task::JoinHandle<Result<LockWaits>>,
    stop: &CancellationToken,
) -> Result<LockWaits> {
    stop.cancel();
    sampler.await.context("the lock sampler panicked")?
}

/// Read `pg_locks` every [`SAMPLE_EVERY`] on a connection of its own until `stop`: the longest
/// time any session of this database had been waiting for a heavyweight lock (`waitstart`).
async fn sample_lock_waits(url: String, stop: CancellationToken) -> Result<LockWaits> {
    let mut conn = PgConnection::connect(&url).await?;
    let mut waits = LockWaits::default();
    while !stop.is_cancelled() {
        let (max_ms, waiting): (f64, i64) = sqlx::query_as(
            "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - l.waitstart)) * 1000, 0)::float8,
                    count(*)
               FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
              WHERE NOT l.granted AND a.datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        waits.samples += 1;
        waits.samples_waiting += u64::from(waiting > 0);
        waits.max_ms = waits.max_ms.max(max_ms);
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
    conn.close().await.ok();
    Ok(waits)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}
