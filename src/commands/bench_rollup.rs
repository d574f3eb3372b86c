//! `wedsync-jobs bench rollup`: seed N raw metric events spread evenly over H hours (ending
//! with the last complete hour) in a fresh database, then time the rollup of each hour (the
//! same `rollup_hour` the `metrics_rollup` job runs) and print the median and max per hour.

use crate::cli::BenchRollupArgs;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use std::time::{Duration, Instant};
use wedsync_db::testing::TestDb;

/// Events inserted per statement while seeding.
const SEED_CHUNK: u64 = 1_000_000;

/// One event per row of `generate_series($3, $4)`: event g at `$1 + g × $2` seconds, key
/// `g % $5` (every fourth key an API route, the others job kinds over three queues), a
/// log-uniform duration from 0.1 ms to 40 ms, 2 % errors.
const SEED: &str = "
INSERT INTO metric_events
       (occurred_at, source, queue, kind, outcome, method, route, status, error, duration_us)
SELECT $1::timestamptz + make_interval(secs => g * $2::float8),
       CASE WHEN api THEN 'api' ELSE 'job' END,
       CASE WHEN api THEN NULL ELSE 'queue' || (k % 3) END,
       CASE WHEN api THEN NULL ELSE 'kind' || k END,
       CASE WHEN api THEN NULL ELSE 'completed' END,
       CASE WHEN api THEN 'GET' END,
       CASE WHEN api THEN '/v1/route' || k END,
       CASE WHEN api THEN 200 END,
       random() < 0.02,
       (exp(random() * 6) * 100)::bigint
  FROM generate_series($3::bigint, $4::bigint) g,
       LATERAL (SELECT (g % $5)::int AS k, g % $5 % 4 = 3 AS api) key";

pub async fn run(args: BenchRollupArgs, database: &str) -> Result<()> {
    if args.events == 0 || args.hours == 0 || args.keys == 0 {
        bail!("--events, --hours and --keys must be at least 1");
    }
    let db = TestDb::named(database)
        .await
        .context("creating the bench database")?;
    let last = wedsync_metrics::previous_hour(Utc::now());
    let first = last - TimeDelta::hours(i64::from(args.hours) - 1);
    let days = (last.date_naive() - first.date_naive()).num_days() as u64;
    wedsync_metrics::ensure_partitions(&db.pool, first.date_naive(), days).await?;
    println!(
        "bench rollup: events={} hours={} keys={} from={} (database {})",
        args.events,
        args.hours,
        args.keys,
        first.to_rfc3339(),
        db.name
    );

    let seeding = Instant::now();
    seed(&db, &args, first).await?;
    sqlx::query("VACUUM (ANALYZE) metric_events")
        .execute(&db.pool)
        .await?;
    let seed_secs = seeding.elapsed().as_secs_f64();
    let size: String =
        sqlx::query_scalar("SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'metric_events'::regclass")
            .fetch_one(&db.pool)
            .await?;
    println!(
        "seeded in {seed_secs:.1} s ({:.0} events/s, incl. VACUUM ANALYZE); raw events take {size}",
        args.events as f64 / seed_secs
    );

    let mut times = Vec::with_capacity(args.hours as usize);
    let mut events = 0;
    let mut rows = 0;
    for h in 0..args.hours {
        let hour = first + TimeDelta::hours(i64::from(h));
        let started = Instant::now();
        let report = wedsync_metrics::rollup_hour(&db.pool, hour).await?;
        times.push(started.elapsed());
        events += report.events;
        rows += report.rows;
    }
    if events != args.events as i64 {
        bail!("the rollups counted {events} events, not {}", args.events);
    }
    let again = Instant::now();
    let report = wedsync_metrics::rollup_hour(&db.pool, first).await?;
    let rerun = again.elapsed();
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let total: Duration = times.iter().sum();
    println!(
        "rollup_ms_per_hour median={:.1} max={:.1} min={:.1} total_s={:.1} (~{} events and {} keys per hour)",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[0]),
        total.as_secs_f64(),
        args.events / u64::from(args.hours),
        rows / u64::from(args.hours),
    );
    println!(
        "rerun of the first hour: {:.1} ms, replaced {} rows with {}",
        ms(rerun),
        report.replaced,
        report.rows
    );
    Ok(())
}

/// Insert the events in chunks, each its own statement, printing progress.
async fn seed(db: &TestDb, args: &BenchRollupArgs, first: DateTime<Utc>) -> Result<()> {
    let spacing = f64::from(args.hours) * 3600.0 / args.events as f64;
    let mut start = 0;
    while start < args.events {
        let end = (start + SEED_CHUNK).min(args.events) - 1;
        sqlx::query(SEED)
            .persistent(false)
            .bind(first)
            .bind(spacing)
            .bind(start as i64)
            .bind(end as i64)
            .bind(i64::from(args.keys))
            .execute(&db.pool)
            .await
            .context("seeding raw events")?;
        start = end + 1;
        println!("  seeded {start} events");
    }
    Ok(())
}
