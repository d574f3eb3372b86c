//! Pools applied live (SPEC §6): the minute evaluation against a real database with the time
//! injected (no test waits for a real Saturday), and a worker process following the result.

mod support;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::London;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{WorkerProcess, wait_for};
use wedsync_db::testing::TestDb;
use wedsync_queue::{NewJob, Queue};
use wedsync_scheduler::pools::Override;
use wedsync_scheduler::scaling::weddings::{self, NewWedding};
use wedsync_scheduler::scaling::{PoolChanges, configure, evaluate_pools};

/// An instant on the London wall clock.
fn london(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    London
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .single()
        .expect("an unambiguous London time")
        .with_timezone(&Utc)
}

/// A pool `photos` running `concurrency` now, with bounds [min, max] and base size.
async fn pool(db: &TestDb, concurrency: i32, min: i32, max: i32, base: i32) {
    sqlx::query(
        "INSERT INTO pools (queue, concurrency, min_size, max_size, base_size)
         VALUES ('photos', $1, $2, $3, $4)",
    )
    .bind(concurrency)
    .bind(min)
    .bind(max)
    .bind(base)
    .execute(&db.pool)
    .await
    .expect("insert the pool");
}

/// (concurrency, desired_replicas, desired) of `queue`.
async fn sizing(db: &TestDb, queue: &str) -> (i32, i32, Option<i32>) {
    sqlx::query_as("SELECT concurrency, desired_replicas, desired FROM pools WHERE queue = $1")
        .bind(queue)
        .fetch_one(&db.pool)
        .await
        .expect("read the pool")
}

/// The history of `photos`, oldest first: (from, to, to_replicas, source, reasons).
async fn history(db: &TestDb) -> Vec<(i32, i32, i32, String, Value)> {
    sqlx::query_as(
        "SELECT from_size, to_size, to_replicas, source, reasons
           FROM pool_changes WHERE queue = 'photos' ORDER BY id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("read the history")
}

fn rules(reasons: &Value) -> Vec<&str> {
    reasons
        .as_array()
        .expect("reasons array")
        .iter()
        .map(|r| r["rule"].as_str().expect("rule"))
        .collect()
}

async fn evaluate(db: &TestDb, now: DateTime<Utc>) {
    evaluate_pools(&db.pool, London, now)
        .await
        .expect("evaluate the pools");
}

#[tokio::test]
async fn a_tuesday_in_february_is_the_base_size_and_one_history_row() {
    let db = TestDb::new().await.unwrap();
    pool(&db, 10, 1, 16, 4).await;
    let tuesday = london(2026, 2, 17, 14, 0);
    evaluate(&db, tuesday).await;
    assert_eq!(sizing(&db, "photos").await, (4, 1, Some(4)));
    let changes = history(&db).await;
    assert_eq!(changes.len(), 1);
    let (from, to, replicas, source, reasons) = &changes[0];
    assert_eq!(
        (*from, *to, *replicas, source.as_str()),
        (10, 4, 1, "rules")
    );
    assert_eq!(rules(reasons), ["base"]);

    // A minute later nothing changes, and nothing more is written.
    evaluate(&db, tuesday + TimeDelta::minutes(1)).await;
    assert_eq!(history(&db).await.len(), 1);
}

#[tokio::test]
async fn a_saturday_in_june_is_capped_at_max_and_published_as_replicas() {
    let db = TestDb::new().await.unwrap();
    pool(&db, 4, 1, 16, 4).await;
    evaluate(&db, london(2026, 6, 20, 12, 0)).await;
    // base 4 × 10 = 40 per process wanted; each process runs 16, so 3 replicas.
    assert_eq!(sizing(&db, "photos").await, (16, 3, Some(16)));
    let changes = history(&db).await;
    assert_eq!(changes.len(), 1);
    assert_eq!(rules(&changes[0].4), ["saturday_window", "maximum"]);
    let keda: i32 =
        sqlx::query_scalar("SELECT desired_replicas FROM wedsync_scaling WHERE queue = 'photos'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(keda, 3);
}

#[tokio::test]
async fn friday_2159_is_the_base_and_2200_is_the_saturday_window() {
    let db = TestDb::new().await.unwrap();
    pool(&db, 4, 1, 16, 4).await;
    evaluate(&db, london(2026, 2, 20, 21, 59)).await;
    assert_eq!(sizing(&db, "photos").await, (4, 1, Some(4)));
    assert!(history(&db).await.is_empty(), "no change, no history");
    let reasons: Value = sqlx::query_scalar("SELECT reasons FROM pools WHERE queue = 'photos'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        rules(&reasons),
        ["base"],
        "why the pool has its size, changed or not"
    );
    evaluate(&db, london(2026, 2, 20, 22, 0)).await;
    assert_eq!(sizing(&db, "photos").await, (16, 3, Some(16)));
    assert_eq!(
        rules(&history(&db).await[0].4),
        ["saturday_window", "maximum"]
    );
}

#[tokio::test]
async fn a_registered_wedding_is_pre_scaled_two_hours_ahead() {
    let db = TestDb::new().await.unwrap();
    pool(&db, 4, 1, 16, 4).await;
    let wedding = weddings::register(
        &db.pool,
        &NewWedding {
            org_id: "acme".into(),
            name: "Ada & Grace".into(),
            date: NaiveDate::from_ymd_opt(2026, 2, 17).unwrap(),
            start: NaiveTime::from_hms_opt(14, 0, 0).unwrap(),
            timezone: London,
            expected_guests: 120,
            expected_photos: 1_800,
        },
    )
    .await
    .unwrap();
    assert_eq!(wedding.starts_at, london(2026, 2, 17, 14, 0));

    evaluate(&db, london(2026, 2, 17, 11, 59)).await;
    assert_eq!(sizing(&db, "photos").await.0, 4, "2 h 1 min ahead: base");
    evaluate(&db, london(2026, 2, 17, 12, 0)).await;
    // base 4 + ceil(1800 photos / 600 per worker-hour) = 7.
    assert_eq!(sizing(&db, "photos").await, (7, 1, Some(7)));
    let changes = history(&db).await;
    assert_eq!(rules(&changes[0].4), ["wedding"]);
    assert_eq!(changes[0].4[0]["starts_at"], json!("2026-02-17T14:00:00Z"));
}

#[tokio::test]
async fn an_operator_override_wins_until_it_expires() {
    let db = TestDb::new().await.unwrap();
    pool(&db, 4, 1, 16, 4).await;
    let saturday = london(2026, 6, 20, 12, 0);
    evaluate(&db, saturday).await;
    assert_eq!(sizing(&db, "photos").await.0, 16);

    let until = saturday + TimeDelta::minutes(30);
    let changes = PoolChanges {
        override_: Some(Some(Override {
            size: 2,
            until,
            reason: "provider rate limit".into(),
        })),
        ..PoolChanges::default()
    };
    let view = configure(&db.pool, "photos", &changes, 10, London, saturday)
        .await
        .unwrap();
    // At once, though the last change was this minute; the replicas still follow the rules.
    assert_eq!((view.concurrency, view.desired_replicas), (2, 3));
    assert_eq!(view.override_.as_ref().map(|o| o.active), Some(true));

    evaluate(&db, until - TimeDelta::minutes(1)).await;
    assert_eq!(sizing(&db, "photos").await.0, 2, "the override still wins");
    evaluate(&db, until).await;
    assert_eq!(
        sizing(&db, "photos").await.0,
        16,
        "expired: the rules again"
    );
    let sources: Vec<String> = history(&db).await.into_iter().map(|c| c.3).collect();
    assert_eq!(sources, ["rules", "override", "rules"]);
    let cleared: Option<i32> =
        sqlx::query_scalar("SELECT override_size FROM pools WHERE queue = 'photos'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(cleared, None);
}

/// `n` jobs of `photos` completed in the minute before `at`, each having run 6 s: a measured
/// throughput of 10 jobs per worker-minute.
async fn completed_before(db: &TestDb, at: DateTime<Utc>, n: i32) {
    sqlx::query(
        "INSERT INTO jobs_finished (id, queue, kind, args, state, priority, attempt, max_attempts,
                                    scheduled_at, created_at, attempted_at, errors, finalized_at)
         SELECT -g, 'photos', 'noop', '{}', 'completed', 5, 1, 1, $1, $1,
                $1 - interval '6 seconds', '[]', $1
           FROM generate_series(1, $2) g",
    )
    .bind(at - TimeDelta::seconds(30))
    .bind(n)
    .execute(&db.pool)
    .await
    .expect("insert completed jobs");
}

async fn set_backlog(db: &TestDb, queue: &Queue, jobs: usize) {
    sqlx::query("DELETE FROM jobs WHERE queue = 'photos'")
        .execute(&db.pool)
        .await
        .unwrap();
    let backlog: Vec<NewJob> = (0..jobs)
        .map(|_| NewJob::new("photos", "noop", json!({})))
        .collect();
    queue.enqueue_many(&backlog).await.unwrap();
}

#[tokio::test]
async fn cooldowns_hold_when_the_backlog_flaps() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    pool(&db, 4, 1, 50, 4).await;
    let start = london(2026, 2, 17, 9, 0);
    // 1,000 available at 10 per worker-minute, cleared in 5 minutes: 20.
    let mut sizes = Vec::new();
    for (minute, backlog) in [
        (0, 1_000),
        (1, 0),
        (2, 1_000),
        (9, 0),
        (10, 0),
        (12, 1_000),
        (13, 1_000),
    ] {
        let now = start + TimeDelta::minutes(minute);
        completed_before(&db, now, 10).await;
        set_backlog(&db, &queue, backlog).await;
        evaluate(&db, now).await;
        sizes.push((minute, sizing(&db, "photos").await.0));
    }
    assert_eq!(
        sizes,
        [
            (0, 20),
            (1, 20),
            (2, 20),
            (9, 20),
            (10, 4),
            (12, 4),
            (13, 20)
        ],
        "down only 10 min after a change, up only 3 min after one"
    );
    let changes: Vec<(i32, i32)> = history(&db).await.iter().map(|c| (c.0, c.1)).collect();
    assert_eq!(changes, [(4, 20), (20, 4), (4, 20)]);
    // While held, the pool shows what the rules asked for.
    evaluate(&db, start + TimeDelta::minutes(14)).await;
    set_backlog(&db, &queue, 0).await;
    evaluate(&db, start + TimeDelta::minutes(15)).await;
    assert_eq!(sizing(&db, "photos").await, (20, 1, Some(4)));
}

/// Jobs of `default` running right now, across every worker process.
async fn running(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE queue = 'default' AND state = 'running'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_follows_an_evaluated_pool_change_within_seconds() {
    let db = TestDb::new().await.unwrap();
    sqlx::query(
        "INSERT INTO pools (queue, concurrency, min_size, max_size, base_size)
         VALUES ('default', 2, 1, 20, 2)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let jobs: Vec<NewJob> = (0..200)
        .map(|_| NewJob::new("default", "noop", json!({ "sleep_ms": 1_000 })))
        .collect();
    Queue::new(db.pool.clone())
        .enqueue_many(&jobs)
        .await
        .unwrap();
    let worker = WorkerProcess::spawn(&db, "default", &[]);
    wait_for("2 jobs running", Duration::from_secs(10), || async {
        (running(&db).await == 2).then_some(())
    })
    .await;

    // Saturday: base 2 × 10 = 20 per process.
    let saturday = london(2026, 6, 20, 12, 0);
    let raised = Instant::now();
    evaluate(&db, saturday).await;
    assert_eq!(sizing(&db, "default").await.0, 20);
    let peak = wait_for(
        "at least 15 jobs running",
        Duration::from_secs(5),
        || async {
            let n = running(&db).await;
            (n >= 15).then_some(n)
        },
    )
    .await;
    println!("2 → 20: {peak} running after {:?}", raised.elapsed());

    // An operator override down to 1: the jobs in flight finish, then one runs at a time.
    let changes = PoolChanges {
        override_: Some(Some(Override {
            size: 1,
            until: saturday + TimeDelta::hours(1),
            reason: "test".into(),
        })),
        ..PoolChanges::default()
    };
    configure(&db.pool, "default", &changes, 10, London, saturday)
        .await
        .unwrap();
    wait_for("at most 1 job running", Duration::from_secs(5), || async {
        (running(&db).await <= 1).then_some(())
    })
    .await;
    let ran = worker.terminate();
    assert!(
        ran.len() < 200,
        "the queue still held jobs: the test meant something"
    );
}

fn cli(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wedsync-jobs"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run wedsync-jobs")
}

#[tokio::test]
async fn pools_set_overrides_with_a_ttl_and_a_reason_or_pins_the_size() {
    let db = TestDb::new().await.unwrap();
    let set = cli(
        &db,
        &[
            "pools", "set", "photos", "30", "--ttl", "2h", "--reason", "fair", "--json",
        ],
    );
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let pool: Value = serde_json::from_slice(&set.stdout).unwrap();
    assert_eq!(pool[0]["concurrency"], 30);
    assert_eq!(pool[0]["override"]["reason"], "fair");
    assert_eq!(pool[0]["history"][0]["source"], "override");

    let without_reason = cli(&db, &["pools", "set", "photos", "3", "--ttl", "2h"]);
    assert_eq!(without_reason.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&without_reason.stderr).contains("--reason"));

    let cleared = cli(
        &db,
        &["pools", "set", "photos", "--clear-override", "--json"],
    );
    let pool: Value = serde_json::from_slice(&cleared.stdout).unwrap();
    assert_eq!(pool[0]["override"], Value::Null);

    let pinned = cli(&db, &["pools", "set", "photos", "7", "--json"]);
    let pool: Value = serde_json::from_slice(&pinned.stdout).unwrap();
    assert_eq!(
        (
            &pool[0]["min"],
            &pool[0]["base"],
            &pool[0]["max"],
            &pool[0]["concurrency"]
        ),
        (&json!(7), &json!(7), &json!(7), &json!(7))
    );
    let inverted = cli(&db, &["pools", "set", "photos", "--min", "9", "--max", "2"]);
    assert_eq!(inverted.status.code(), Some(2));
}

#[tokio::test]
async fn a_configured_pool_is_created_once_and_then_the_row_rules() {
    use wedsync_scheduler::pools::PoolConfig;
    use wedsync_scheduler::scaling::seed_pool;
    let db = TestDb::new().await.unwrap();
    let config = PoolConfig {
        min: 1,
        max: 16,
        base: 4,
    };
    assert!(seed_pool(&db.pool, "photos", config).await.unwrap());
    let row: (i32, i32, i32, i32) = sqlx::query_as(
        "SELECT concurrency, min_size, max_size, base_size FROM pools WHERE queue = 'photos'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row, (4, 1, 16, 4));
    let changes = PoolChanges {
        base: Some(6),
        ..PoolChanges::default()
    };
    configure(
        &db.pool,
        "photos",
        &changes,
        10,
        London,
        london(2026, 2, 17, 9, 0),
    )
    .await
    .unwrap();
    // A restart does not undo the operator's change.
    assert!(!seed_pool(&db.pool, "photos", config).await.unwrap());
    assert_eq!(sizing(&db, "photos").await.0, 6);
}
