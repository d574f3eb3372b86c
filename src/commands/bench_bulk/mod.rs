//! `wedsync-jobs bench bulk-send`: N recipients (every 20th suppressed) against a suppression
//! list of S entries, sent by W worker processes to a local SMTP sink, compared with a bare
//! lettre loop sending the same pre-rendered messages to the same sink (the ceiling), in a
//! process of its own as the worker is (`ceiling_process`), run before and after the system
//! with the higher reading counted; the same loop in the sink's own process is printed too.
//!
//! Prints messages per second from the sends' creation to the last message accepted, the time
//! from creation to acceptance per delivery (p50, p99), the workers' peak RSS, the context
//! switches per message of the workers and the sink, the database rows written per message,
//! duplicates and messages missing, then the ratios to the ceilings; `--timeline` adds the
//! messages accepted per 100 ms.

mod ceiling;
mod ceiling_process;
mod sink;
mod switches;

use super::bench::{Workers, wait_until};
use crate::cli::BenchLoopClient::{Lettre, Transport};
use crate::cli::{BenchBareLoopArgs, BenchBulkSendArgs};
use anyhow::{Context, Result, bail};
use ceiling::LoopRun;
use serde_json::json;
use sink::Sink;
use sqlx::{Connection, PgConnection};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use switches::Switches;
use wedsync_db::testing::TestDb;
use wedsync_kinds::messages::template::TemplateSource;
use wedsync_kinds::messages::validate::{self, MAX_RECIPIENTS, Recipient, ValidRecipient};
use wedsync_kinds::messages::{Category, NewSend, Sender, create_send};
use wedsync_kinds::suppression::Channel;

pub(crate) const PUBLIC_URL: &str = "http://localhost:8080";
const ORG: &str = "bench";

/// What every bench send looks like: a marketing email with HTML, a footer and unsubscribe
/// headers, as planners send them.
pub(crate) struct SendShape {
    pub template: TemplateSource,
    pub sender: Sender,
}

fn shape() -> SendShape {
    SendShape {
        template: TemplateSource {
            subject: "The ceremony moved to 3 pm, {{ name }}".into(),
            text: "Dear {{ name }},\n\nThe ceremony now starts at 3 pm. You are at table \
                   {{ table }}.\n\nSee you there!"
                .into(),
            html: Some(
                "<p>Dear {{ name }},</p><p>The ceremony now starts at <b>3 pm</b>. You are at \
                 table {{ table }}.</p><p>See you there!</p>"
                    .into(),
            ),
        },
        sender: Sender {
            name: "Ann and Bob".into(),
            email: "hello@ann-and-bob.example".into(),
            postal_address: "1 Chapel Lane, York YO1 7HH".into(),
        },
    }
}

fn recipients(n: usize) -> Vec<Recipient> {
    (0..n)
        .map(|i| Recipient {
            address: format!("guest{i}@example.com"),
            variables: json!({"name": format!("Guest {i}"), "table": i % 40}),
        })
        .collect()
}

fn is_suppressed(i: usize) -> bool {
    i.is_multiple_of(20)
}

/// The recipients that get a message: the ceilings send only these.
fn unsuppressed(all: &[Recipient]) -> Vec<ValidRecipient> {
    all.iter()
        .enumerate()
        .filter(|(i, _)| !is_suppressed(*i))
        .map(|(_, r)| ValidRecipient {
            address: r.address.clone(),
            variables: r.variables.clone(),
        })
        .collect()
}

/// `bench bare-loop`: the ceiling's child process (`ceiling_process`).
pub async fn run_bare_loop_child(args: BenchBareLoopArgs) -> Result<()> {
    ceiling_process::child(args).await
}

pub async fn run(args: BenchBulkSendArgs, database: &str) -> Result<()> {
    if args.recipients == 0 || args.workers == 0 {
        bail!("--recipients and --workers must be at least 1");
    }
    let db = TestDb::named(database)
        .await
        .context("creating the bench database")?;
    let seeded = Instant::now();
    seed_suppressions(&db, args.suppressed, args.recipients).await?;
    println!(
        "bench bulk-send: recipients={} suppression_list={} workers={} concurrency={} \
         batch_size={} chunk={} pool={} sink_delay_ms={} (seeded in {:.1} s)",
        args.recipients,
        args.suppressed.max((args.recipients / 20) as u64),
        args.workers,
        args.concurrency,
        args.batch_size,
        args.chunk,
        args.pool,
        args.sink_delay_ms,
        seeded.elapsed().as_secs_f64()
    );
    let shape = shape();
    let all = recipients(args.recipients);
    let expected = (0..args.recipients).filter(|i| !is_suppressed(*i)).count();
    let sink = Sink::start(Duration::from_millis(args.sink_delay_ms)).await?;

    let loops = run_loops(&sink, &args, &all, expected).await?;

    let dir = std::env::temp_dir().join(format!("wedsync-bench-bulk-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let env = [
        ("WEDSYNC_SMTP_URL", sink.url()),
        ("WEDSYNC_SMTP_POOL_SIZE", args.pool.to_string()),
        ("WEDSYNC_MESSAGE_CHUNK", args.chunk.to_string()),
        ("WEDSYNC_PUBLIC_URL", PUBLIC_URL.to_owned()),
        ("WEDSYNC_UNRECORDED_LIMIT", args.unrecorded.to_string()),
    ];
    let mut workers = Workers::spawn_on(
        &db.url,
        &dir,
        wedsync_kinds::messages::QUEUE,
        args.workers,
        args.concurrency,
        &env,
    )?;
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
    .context("waiting for the worker processes")?;

    let switches_before = system_switches(&workers);
    let started = Instant::now();
    let mut sends = Vec::new();
    for part in all.chunks(MAX_RECIPIENTS) {
        let valid = validate::validate(Channel::Email, &shape.template, part.to_vec())
            .map_err(|invalid| anyhow::anyhow!("invalid bench send: {:?}", invalid.problems))?;
        let send = NewSend {
            id: uuid::Uuid::new_v4().to_string(),
            org_id: ORG.to_owned(),
            channel: Channel::Email,
            category: Category::Marketing,
            sender: shape.sender.clone(),
            template: shape.template.clone(),
            send_at: None,
            recipients: valid,
            batch_size: args.batch_size,
        };
        let mut tx = db.pool.begin().await?;
        create_send(&mut tx, &send).await?;
        tx.commit().await?;
        sends.push(send.id);
    }
    let created_in = started.elapsed();
    wait_until(
        Duration::from_secs(3600),
        Duration::from_millis(20),
        || async { Ok(sink.count() >= expected) },
    )
    .await
    .context("waiting for every message")?;
    let switches = switches_since(&system_switches(&workers), &switches_before);
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM bulk_sends WHERE state = 'done'")
                    .fetch_one(&db.pool)
                    .await?;
            Ok(done as usize == sends.len())
        },
    )
    .await
    .context("waiting for the sends to be done")?;
    let arrivals = sink.take();
    let rss = workers.peak_rss_kib();
    workers.stop_and_collect()?;
    std::fs::remove_dir_all(&dir).ok();
    // The ceiling again, now that the system is done: the machine's speed drifts within a run.
    let again = ceiling_process::run(
        &sink,
        Lettre,
        args.recipients,
        (args.pool, args.workers),
        expected,
    )
    .await?;
    print_loop("ceiling again, after the system", &again);
    let ceiling = if again.messages_per_s > loops.ceiling.messages_per_s {
        &again
    } else {
        &loops.ceiling
    };

    let last = arrivals.iter().map(|(at, _)| *at).max().unwrap_or(started);
    if args.timeline {
        println!("accepted per 100 ms: {:?}", per_100ms(&arrivals, started));
    }
    let rate = expected as f64 / last.duration_since(started).as_secs_f64();
    let mut latencies: Vec<f64> = arrivals
        .iter()
        .map(|(at, _)| at.duration_since(started).as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let distinct: HashSet<i64> = arrivals.iter().map(|(_, id)| *id).collect();
    let dup = arrivals.len() - distinct.len();
    let missing = expected.saturating_sub(distinct.len());
    let (written, hot_share) = rows_written(&db).await?;
    let rows = written as f64 / expected as f64;
    println!(
        "system: created_in_ms={:.0} messages_per_s={rate:.0} time_to_send_ms first={:.0} \
         p50={:.0} p99={:.0} \
         worker_peak_rss_mib={} context_switches_per_message={:.2} \
         db_rows_written_per_message={rows:.2} \
         delivery_updates_in_place={hot_share:.2}",
        created_in.as_secs_f64() * 1000.0,
        pct(0.0),
        pct(0.5),
        pct(0.99),
        rss.iter()
            .map(|k| format!("{:.1}", *k as f64 / 1024.0))
            .collect::<Vec<_>>()
            .join(","),
        switches as f64 / expected as f64,
    );
    println!(
        "messages_per_s={rate:.0} ceiling_per_s={:.0} ratio={:.2} \
         ceiling_in_sink_process_per_s={:.0} ratio_in_sink_process={:.2} \
         transport_loop_per_s={:.0} ratio_to_transport_loop={:.2} dup={dup} missing={missing}",
        ceiling.messages_per_s,
        rate / ceiling.messages_per_s,
        loops.in_sink.messages_per_s,
        rate / loops.in_sink.messages_per_s,
        loops.transport.messages_per_s,
        rate / loops.transport.messages_per_s,
    );
    if missing > 0 {
        bail!("{missing} messages never arrived");
    }
    Ok(())
}

/// The bare loops run before the system.
struct Loops {
    /// lettre's loop in the sink's process (the reading before 2026-12-07).
    in_sink: LoopRun,
    /// lettre's loop in a process of its own.
    ceiling: LoopRun,
    /// Our transport's loop in a process of its own.
    transport: LoopRun,
}

/// Run and print the bare loops for the `expected` messages of `all`.
async fn run_loops(
    sink: &Sink,
    args: &BenchBulkSendArgs,
    all: &[Recipient],
    expected: usize,
) -> Result<Loops> {
    let messages = ceiling::render_all(&shape(), &unsuppressed(all))?;
    if args.stock_lettre {
        let sample: Vec<_> = messages.iter().take(2_000).cloned().collect();
        let stock = ceiling::run_stock_lettre(sink, sample, args.pool, args.workers).await?;
        println!("stock lettre pooled transport (2,000 messages): messages_per_s={stock:.0}");
    }
    let in_sink = ceiling::run_lettre_loop(sink, messages, args.pool, args.workers).await?;
    print_loop("bare lettre loop in the sink's process", &in_sink);
    let connections = (args.pool, args.workers);
    let ceiling =
        ceiling_process::run(sink, Lettre, args.recipients, connections, expected).await?;
    print_loop(
        "ceiling (bare lettre loop in a process of its own)",
        &ceiling,
    );
    let transport =
        ceiling_process::run(sink, Transport, args.recipients, connections, expected).await?;
    print_loop(
        "bare loop over our SMTP transport in a process of its own",
        &transport,
    );
    Ok(Loops {
        in_sink,
        ceiling,
        transport,
    })
}

fn print_loop(what: &str, run: &LoopRun) {
    println!(
        "{what}, pre-rendered: messages_per_s={:.0} context_switches_per_message={:.2}",
        run.messages_per_s, run.switches_per_message
    );
}

/// The context switches of the worker processes and of this one, whose sink they send to.
fn system_switches(workers: &Workers) -> Vec<Switches> {
    let mut all: Vec<Switches> = workers
        .pids()
        .iter()
        .map(|pid| Switches::of(&pid.to_string()))
        .collect();
    all.push(Switches::now());
    all
}

fn switches_since(now: &[Switches], before: &[Switches]) -> u64 {
    now.iter().zip(before).map(|(n, b)| n.since(b)).sum()
}

/// How many of `arrivals` fell in each 100 ms from `started`.
fn per_100ms(arrivals: &[(Instant, i64)], started: Instant) -> Vec<usize> {
    let bucket = |at: Instant| (at.saturating_duration_since(started).as_millis() / 100) as usize;
    let mut counts = vec![
        0;
        arrivals
            .iter()
            .map(|(at, _)| bucket(*at) + 1)
            .max()
            .unwrap_or(0)
    ];
    for (at, _) in arrivals {
        counts[bucket(*at)] += 1;
    }
    counts
}

/// `suppressed` entries (half the organisation's, half global), among them every 20th
/// recipient, hashed as `Address::hash` does: SHA-256 of `email:<address>`.
async fn seed_suppressions(db: &TestDb, suppressed: u64, recipients: usize) -> Result<()> {
    sqlx::query(
        "INSERT INTO suppressions (org_id, channel, address_hash, reason)
         SELECT CASE WHEN i % 2 = 0 THEN $3 END, 'email',
                encode(sha256(convert_to('email:guest' || i || '@example.com', 'UTF8')), 'hex'),
                'unsubscribed'
           FROM generate_series(0, $1 - 1, 20) i
         UNION ALL
         SELECT CASE WHEN i % 2 = 0 THEN $3 END, 'email',
                encode(sha256(convert_to('email:other' || i || '@example.org', 'UTF8')), 'hex'),
                'unsubscribed'
           FROM generate_series(1, greatest($2 - (($1 + 19) / 20), 0)) i",
    )
    .bind(recipients as i64)
    .bind(suppressed as i64)
    .bind(ORG)
    .execute(&db.pool)
    .await
    .context("seeding the suppression list")?;
    let probe = wedsync_kinds::suppression::Address::parse(Channel::Email, "guest0@example.com")?;
    let found: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM suppressions WHERE address_hash = $1)")
            .bind(probe.hash())
            .fetch_one(&db.pool)
            .await?;
    if !found {
        bail!("the seeded hashes do not match Address::hash");
    }
    // A list this size is long vacuumed in production; done now, the autovacuum its insert
    // triggers and the checkpoint of its WAL do not land inside the measured run.
    for statement in ["VACUUM (ANALYZE) suppressions", "CHECKPOINT"] {
        sqlx::query(statement).execute(&db.pool).await?;
    }
    Ok(())
}

/// Rows inserted, updated and deleted in the bench database since it was created, and the
/// share of the deliveries' updates made in place (HOT: no new index entries), read on a fresh
/// connection once the workers are gone (their statistics are flushed when they exit).
async fn rows_written(db: &TestDb) -> Result<(i64, f64)> {
    db.pool.close().await;
    let mut conn = PgConnection::connect(&db.url).await?;
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM suppressions")
        .fetch_one(&mut conn)
        .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT (tup_inserted + tup_updated + tup_deleted)::bigint
           FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    let hot_share: f64 = sqlx::query_scalar(
        "SELECT coalesce(n_tup_hot_upd::float8 / nullif(n_tup_upd, 0), 0)
           FROM pg_stat_user_tables WHERE relname = 'deliveries'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await.ok();
    Ok((total - seeded, hot_share))
}
