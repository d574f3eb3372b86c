//! Metrics (SPEC §5.4): the hourly rollup against a direct computation over the raw events,
//! its idempotence, raw events written by workers, and their partitions and retention.

mod support;

use chrono::{DateTime, Days, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::time::Duration;
use support::kinds::{self, Behaviour, TestCtx};
use support::{db_now, start_worker, test_config, wait_for, wait_for_job_state};
use wedsync_db::testing::TestDb;
use wedsync_kinds::{AppContext, MetricsRollup, RetentionCleanup, register_all};
use wedsync_queue::{Job, JobRow, Queue};

const WAIT: Duration = Duration::from_secs(30);

/// A raw event to seed: `(occurred_at, key, duration in µs, error)`.
type Seeded = (DateTime<Utc>, Key, i64, bool);

/// A rollup key: `Job(queue, kind)` or `Api(method, route)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Job(&'static str, &'static str),
    Api(&'static str, &'static str),
}

async fn seed(db: &TestDb, events: &[Seeded]) {
    let mut source = Vec::new();
    let (mut queue, mut kind, mut method, mut route) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (_, key, _, _) in events {
        let (s, q, k, m, r) = match key {
            Key::Job(q, k) => ("job", Some(*q), Some(*k), None, None),
            Key::Api(m, r) => ("api", None, None, Some(*m), Some(*r)),
        };
        source.push(s);
        queue.push(q);
        kind.push(k);
        method.push(m);
        route.push(r);
    }
    let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.0).collect();
    let duration_us: Vec<i64> = events.iter().map(|e| e.2).collect();
    let error: Vec<bool> = events.iter().map(|e| e.3).collect();
    sqlx::query(
        "INSERT INTO metric_events (occurred_at, source, queue, kind, method, route, error, duration_us)
         SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::bool[], $8::int8[])",
    )
    .bind(&at)
    .bind(&source)
    .bind(&queue)
    .bind(&kind)
    .bind(&method)
    .bind(&route)
    .bind(&error)
    .bind(&duration_us)
    .execute(&db.pool)
    .await
    .expect("seed metric events");
}

/// `percentile_cont`: linear interpolation between the two values nearest `p × (n − 1)`.
fn percentile_cont(sorted: &[i64], p: f64) -> f64 {
    let pos = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    a + (pos - lo as f64) * (b - a)
}

/// What the rollup should hold for one hour and key, computed here from the seeded events.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    count: i64,
    errors: i64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

/// An hour and a key.
type HourKey = (DateTime<Utc>, Key);

fn expected(events: &[Seeded]) -> BTreeMap<HourKey, Expected> {
    let mut groups: BTreeMap<HourKey, Vec<(i64, bool)>> = BTreeMap::new();
    for (at, key, us, error) in events {
        let hour = wedsync_metrics::previous_hour(*at + TimeDelta::hours(1));
        groups
            .entry((hour, key.clone()))
            .or_default()
            .push((*us, *error));
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let mut durations: Vec<i64> = v.iter().map(|e| e.0).collect();
            durations.sort_unstable();
            let ms = |p| percentile_cont(&durations, p) / 1000.0;
            let e = Expected {
                count: v.len() as i64,
                errors: v.iter().filter(|e| e.1).count() as i64,
                p50_ms: ms(0.5),
                p95_ms: ms(0.95),
                p99_ms: ms(0.99),
            };
            (k, e)
        })
        .collect()
}

/// One row of `metric_hourly`.
#[derive(sqlx::FromRow)]
struct Row {
    source: String,
    queue: Option<String>,
    kind: Option<String>,
    method: Option<String>,
    route: Option<String>,
    count: i64,
    errors: i64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
}

/// The rollup rows of `hour`, by key.
async fn rolled_up(db: &TestDb, hour: DateTime<Utc>) -> BTreeMap<Key, Expected> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT source, queue, kind, method, route, count, errors, p50_ms, p95_ms, p99_ms
           FROM metric_hourly WHERE hour = $1",
    )
    .bind(hour)
    .fetch_all(&db.pool)
    .await
    .expect("read metric_hourly");
    // Keys name static strings in the tests; the few leaked here live as long as the test.
    let leak =
        |s: Option<String>| -> &'static str { Box::leak(s.expect("key column").into_boxed_str()) };
    rows.into_iter()
        .map(|r| {
            let key = match r.source.as_str() {
                "job" => Key::Job(leak(r.queue), leak(r.kind)),
                _ => Key::Api(leak(r.method), leak(r.route)),
            };
            let figures = Expected {
                count: r.count,
                errors: r.errors,
                p50_ms: r.p50_ms,
                p95_ms: r.p95_ms,
                p99_ms: r.p99_ms,
            };
            (key, figures)
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

/// Run one `metrics_rollup` job for `hour` through a real worker and return its finished row.
async fn run_rollup(db: &TestDb, hour: DateTime<Utc>) -> JobRow {
    let queue = Queue::new(db.pool.clone());
    let job = MetricsRollup { hour: Some(hour) }.to_new_job().unwrap();
    let id = queue.enqueue(job).await.unwrap().id;
    let worker = start_worker(
        db,
        register_all(),
        AppContext::new(db.pool.clone()),
        test_config(&["maintenance"]),
    );
    let row = wait_for_job_state(&queue, id, "completed", WAIT).await;
    worker.stop().await;
    row
}

/// Durations with a spread (a small LCG, so the test is deterministic).
fn durations(seed: u64, n: usize) -> Vec<i64> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) % 250_000) as i64 + 50
        })
        .collect()
}

/// Three whole hours that ended before now (their days' partitions exist from the migration).
async fn recent_hours(db: &TestDb) -> [DateTime<Utc>; 3] {
    let last = wedsync_metrics::previous_hour(db_now(db).await);
    [last - TimeDelta::hours(2), last - TimeDelta::hours(1), last]
}

fn events_for(hours: &[DateTime<Utc>]) -> Vec<Seeded> {
    let keys = [
        (Key::Job("email", "send_email"), 101),
        (Key::Job("photos", "resize"), 7),
        (Key::Job("photos", "thumbnail"), 1),
        (Key::Api("GET", "/v1/jobs/{id}"), 40),
    ];
    let mut events = Vec::new();
    for (h, hour) in hours.iter().enumerate() {
        for (k, (key, n)) in keys.iter().enumerate() {
            let n = n + h * 3;
            for (i, us) in durations((h * 10 + k) as u64 + 1, n)
                .into_iter()
                .enumerate()
            {
                // Spread over the hour, first one exactly on it, last one in its final second.
                let offset = TimeDelta::microseconds((3_599_999_999 * i as i64) / n.max(2) as i64);
                events.push((*hour + offset, key.clone(), us, i % 5 == 4));
            }
        }
    }
    events
}

#[tokio::test]
async fn rollup_percentiles_match_a_direct_computation_over_the_raw_events() {
    let db = TestDb::new().await.unwrap();
    let hours = recent_hours(&db).await;
    let events = events_for(&hours);
    seed(&db, &events).await;
    // An event of the next hour (exactly on its start) counts there, not in the last hour.
    seed(
        &db,
        &[(
            hours[2] + TimeDelta::hours(1),
            Key::Job("email", "send_email"),
            9,
            true,
        )],
    )
    .await;

    for hour in hours {
        let job = run_rollup(&db, hour).await;
        assert_eq!(job.result.as_ref().unwrap()["rows"], 4, "{:?}", job.result);
    }
    let want = expected(&events);
    for hour in hours {
        let got = rolled_up(&db, hour).await;
        assert_eq!(got.len(), 4);
        for (key, row) in got {
            let exp = &want[&(hour, key.clone())];
            assert_eq!(
                (row.count, row.errors),
                (exp.count, exp.errors),
                "{hour} {key:?}"
            );
            for (name, a, b) in [
                ("p50", row.p50_ms, exp.p50_ms),
                ("p95", row.p95_ms, exp.p95_ms),
                ("p99", row.p99_ms, exp.p99_ms),
            ] {
                assert!(
                    close(a, b),
                    "{hour} {key:?} {name}: rollup {a} ≠ direct {b}"
                );
            }
        }
    }
}

#[tokio::test]
async fn rerunning_an_hour_replaces_its_rows_and_never_adds_to_them() {
    let db = TestDb::new().await.unwrap();
    let [hour, ..] = recent_hours(&db).await;
    seed(&db, &events_for(&[hour])).await;

    let first_run = run_rollup(&db, hour).await;
    let first = rolled_up(&db, hour).await;
    let second_run = run_rollup(&db, hour).await;
    assert_eq!(
        rolled_up(&db, hour).await,
        first,
        "a re-run changed the rows"
    );
    assert_eq!(first_run.result.as_ref().unwrap()["replaced"], 0);
    assert_eq!(second_run.result.as_ref().unwrap()["replaced"], 4);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM metric_hourly")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 4);

    // A late event of that hour is in the next re-run's figures.
    let key = Key::Job("photos", "thumbnail");
    seed(
        &db,
        &[(hour + TimeDelta::minutes(30), key.clone(), 1_000_000, true)],
    )
    .await;
    run_rollup(&db, hour).await;
    let after = rolled_up(&db, hour).await;
    assert_eq!(after[&key].count, first[&key].count + 1);
    assert_eq!(after[&key].errors, first[&key].errors + 1);
}

#[tokio::test]
async fn an_hour_not_on_the_hour_is_discarded_with_a_reason() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    let hour = wedsync_metrics::previous_hour(Utc::now()) + TimeDelta::minutes(30);
    let id = queue
        .enqueue(MetricsRollup { hour: Some(hour) }.to_new_job().unwrap())
        .await
        .unwrap()
        .id;
    let worker = start_worker(
        &db,
        register_all(),
        AppContext::new(db.pool.clone()),
        test_config(&["maintenance"]),
    );
    let job = wait_for_job_state(&queue, id, "discarded", WAIT).await;
    worker.stop().await;
    assert!(
        job.errors.to_string().contains("start of an hour"),
        "{}",
        job.errors
    );
}

/// `(queue, kind, outcome, error)` of the job events written so far.
async fn job_events(db: &TestDb) -> Vec<(String, String, String, bool)> {
    sqlx::query_as(
        "SELECT queue, kind, outcome, error FROM metric_events WHERE source = 'job' ORDER BY outcome",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_job_execution_leaves_a_raw_event() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    let ctx = TestCtx::new(db.pool.clone()).await;
    for behaviour in [Behaviour::Succeed, Behaviour::Succeed, Behaviour::Permanent] {
        queue.enqueue(kinds::scripted(behaviour)).await.unwrap();
    }
    let worker = start_worker(&db, kinds::registry(), ctx, test_config(&["test"]));
    let events = wait_for("three job events", WAIT, || async {
        let events = job_events(&db).await;
        (events.len() == 3).then_some(events)
    })
    .await;
    worker.stop().await;
    let row = |outcome: &str, error| {
        (
            "test".to_owned(),
            "scripted".to_owned(),
            outcome.to_owned(),
            error,
        )
    };
    assert_eq!(
        events,
        [
            row("completed", false),
            row("completed", false),
            row("failed", true)
        ]
    );
}

#[tokio::test]
async fn buffered_job_events_are_written_on_graceful_shutdown() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    let ctx = TestCtx::new(db.pool.clone()).await;
    let mut config = test_config(&["test"]);
    // A batch that would wait an hour: only the shutdown can write it.
    config.metric_events = Some(wedsync_metrics::EventWriterConfig {
        flush_interval: Duration::from_secs(3600),
        ..Default::default()
    });
    let ids: Vec<i64> = {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(
                queue
                    .enqueue(kinds::scripted(Behaviour::Succeed))
                    .await
                    .unwrap()
                    .id,
            );
        }
        ids
    };
    let worker = start_worker(&db, kinds::registry(), ctx, config);
    for id in ids {
        wait_for_job_state(&queue, id, "completed", WAIT).await;
    }
    assert!(
        job_events(&db).await.is_empty(),
        "events were written before the batch was due"
    );
    worker.stop().await;
    assert_eq!(job_events(&db).await.len(), 5);
}

#[tokio::test]
async fn a_worker_with_events_off_writes_none() {
    let db = TestDb::new().await.unwrap();
    let queue = Queue::new(db.pool.clone());
    let ctx = TestCtx::new(db.pool.clone()).await;
    let mut config = test_config(&["test"]);
    config.metric_events = None;
    let id = queue
        .enqueue(kinds::scripted(Behaviour::Succeed))
        .await
        .unwrap()
        .id;
    let worker = start_worker(&db, kinds::registry(), ctx, config);
    wait_for_job_state(&queue, id, "completed", WAIT).await;
    worker.stop().await;
    assert!(job_events(&db).await.is_empty());
}

async fn partition_exists(db: &TestDb, day: chrono::NaiveDate) -> bool {
    let name = format!("metric_events_p{}", day.format("%Y%m%d"));
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(name)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test]
async fn a_new_partition_takes_over_its_days_events_from_the_default_partition() {
    let db = TestDb::new().await.unwrap();
    let day = db_now(&db).await.date_naive() + Days::new(10);
    let noon = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    let key = Key::Api("GET", "/v1/queues");
    seed(&db, &[(noon, key.clone(), 5, false), (noon, key, 6, false)]).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM metric_events_default").await,
        2
    );

    assert_eq!(
        wedsync_metrics::ensure_partitions(&db.pool, day, 0)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        wedsync_metrics::ensure_partitions(&db.pool, day, 0)
            .await
            .unwrap(),
        0
    );
    assert!(partition_exists(&db, day).await);
    assert_eq!(
        count(&db, "SELECT count(*) FROM metric_events_default").await,
        0
    );
    assert_eq!(count(&db, "SELECT count(*) FROM metric_events").await, 2);
}

#[tokio::test]
async fn retention_drops_expired_partitions_and_expired_strays() {
    let db = TestDb::new().await.unwrap();
    let now = db_now(&db).await;
    let old_day = now.date_naive() - Days::new(20);
    wedsync_metrics::ensure_partitions(&db.pool, old_day, 0)
        .await
        .unwrap();
    let key = Key::Job("email", "send_email");
    let at = |t: DateTime<Utc>| (t, key.clone(), 10, false);
    let old_noon = old_day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    // 3 in the old day's partition, 2 strays in the default partition (a day with no
    // partition), 4 recent ones that stay.
    seed(&db, &[at(old_noon), at(old_noon), at(old_noon)]).await;
    seed(
        &db,
        &[at(now - TimeDelta::days(40)), at(now - TimeDelta::days(41))],
    )
    .await;
    seed(
        &db,
        &[at(now), at(now), at(now), at(now - TimeDelta::days(2))],
    )
    .await;

    let queue = Queue::new(db.pool.clone());
    let id = queue
        .enqueue(RetentionCleanup::default().to_new_job().unwrap())
        .await
        .unwrap()
        .id;
    let worker = start_worker(
        &db,
        register_all(),
        AppContext::new(db.pool.clone()),
        test_config(&["maintenance"]),
    );
    let job = wait_for_job_state(&queue, id, "completed", WAIT).await;
    worker.stop().await;
    assert_eq!(
        job.result.as_ref().unwrap()["deleted"]["metric_events"],
        5,
        "{:?}",
        job.result
    );
    assert!(!partition_exists(&db, old_day).await);
    let left = "SELECT count(*) FROM metric_events WHERE kind = 'send_email'";
    assert_eq!(count(&db, left).await, 4);
}
