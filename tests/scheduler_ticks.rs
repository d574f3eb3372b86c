//! The scheduler's exactly-once ticks (SPEC §6) on a real PostgreSQL: concurrent schedulers,
//! leader failover, catch-up of missed ticks and daylight saving time. Ticks run on a fake clock
//! (`tick` with chosen `now` values) except in the failover test.

mod support;

use chrono::{DateTime, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Europe::London;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::wait_for;
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;
use wedsync_db::testing::TestDb;
use wedsync_scheduler::{Entry, Fired, ScheduleError, next_fires, tick};

fn entry(name: &str, cron: &str) -> Entry {
    Entry::parse(
        name,
        cron,
        London,
        "noop",
        serde_json::json!({"from": name}),
        "default",
    )
    .expect("valid entry")
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// The fire times of the jobs (finished or not) enqueued for entry `name`, one per job, sorted.
async fn fire_times(db: &TestDb, name: &str) -> Vec<DateTime<Utc>> {
    let prefix = format!("schedule:{name}:");
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT unique_key FROM all_jobs WHERE starts_with(unique_key, $1) ORDER BY unique_key",
    )
    .bind(&prefix)
    .fetch_all(&db.pool)
    .await
    .expect("read unique keys");
    let mut fires: Vec<DateTime<Utc>> = keys
        .iter()
        .map(|key| {
            DateTime::parse_from_rfc3339(&key[prefix.len()..])
                .expect("an RFC 3339 fire time")
                .with_timezone(&Utc)
        })
        .collect();
    fires.sort();
    fires
}

async fn last_fire_at(db: &TestDb, name: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT last_fire_at FROM schedule_state WHERE name = $1")
        .bind(name)
        .fetch_optional(&db.pool)
        .await
        .expect("read schedule_state")
}

async fn set_last_fire_at(db: &TestDb, name: &str, at: DateTime<Utc>) {
    sqlx::query("INSERT INTO schedule_state (name, last_fire_at) VALUES ($1, $2)")
        .bind(name)
        .bind(at)
        .execute(&db.pool)
        .await
        .expect("insert schedule_state");
}

/// The backend pid holding the scheduler's leader lock, if any.
async fn leader_pid(db: &TestDb) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(&db.pool)
    .await
    .expect("read pg_locks")
}

fn assert_no_duplicates(fires: &[DateTime<Utc>]) {
    let distinct: HashSet<_> = fires.iter().collect();
    assert_eq!(distinct.len(), fires.len(), "a fire time enqueued twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_schedulers_fire_each_tick_once() {
    let db = TestDb::new().await.expect("test database");
    let entries = Arc::new(vec![entry("every-second", "* * * * * *")]);
    let start = utc(2026, 1, 1, 0, 0, 0);
    // The entry is new at `start`: nothing fires for the past.
    assert!(tick(&db.pool, &entries, start).await.unwrap().is_empty());

    // Three schedulers step through the same 120 fake seconds, in lock step (a barrier before
    // every tick) so that each fire time is contended by all three.
    let barrier = Arc::new(Barrier::new(3));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (pool, entries, barrier) = (db.pool.clone(), entries.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let mut fired: Vec<Fired> = Vec::new();
            for second in 1..=120 {
                barrier.wait().await;
                let now = start + TimeDelta::seconds(second);
                fired.extend(tick(&pool, &entries, now).await.expect("tick"));
            }
            fired
        }));
    }
    let mut fired = Vec::new();
    for task in tasks {
        let mine = task.await.expect("scheduler task");
        println!("one scheduler enqueued {} jobs", mine.len());
        fired.extend(mine);
    }

    assert_eq!(fired.len(), 120, "jobs reported enqueued by the three");
    assert!(fired.iter().all(|f| !f.duplicate), "a pass hit a duplicate");
    let expected: Vec<DateTime<Utc>> = (1..=120).map(|s| start + TimeDelta::seconds(s)).collect();
    let fires = fire_times(&db, "every-second").await;
    assert_eq!(fires, expected, "one job per fire time");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM all_jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let keys: i64 = sqlx::query_scalar("SELECT count(DISTINCT unique_key) FROM all_jobs")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!((jobs, keys), (120, 120));
    assert_eq!(
        last_fire_at(&db, "every-second").await,
        Some(start + TimeDelta::seconds(120))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_failover() {
    let db = TestDb::new().await.expect("test database");
    let entries = vec![entry("heartbeat", "* * * * * *")];
    let interval = Duration::from_millis(200);
    let start_loop = |stop: CancellationToken| {
        tokio::spawn(wedsync_scheduler::run_with_entries(
            db.pool.clone(),
            entries.clone(),
            interval,
            stop,
        ))
    };

    // A starts alone and leads: it takes the lock and ticks.
    let a = start_loop(CancellationToken::new());
    let a_pid = wait_for("A to lead", Duration::from_secs(5), || leader_pid(&db)).await;
    wait_for("A's first tick", Duration::from_secs(5), || async {
        (!fire_times(&db, "heartbeat").await.is_empty()).then_some(())
    })
    .await;
    let stop_b = CancellationToken::new();
    let b = start_loop(stop_b.clone());
    // Let B try (and fail) to lead at least once.
    tokio::time::sleep(interval * 2).await;
    assert_eq!(leader_pid(&db).await, Some(a_pid), "A still leads");

    // A crashes: its task (and with it its leader connection) is dropped mid-flight.
    a.abort();
    let killed_at = Utc::now();
    let killed = Instant::now();
    let b_pid = wait_for("B to lead", Duration::from_secs(5), || async {
        leader_pid(&db).await.filter(|pid| *pid != a_pid)
    })
    .await;
    wait_for(
        "a fire time after A's crash",
        Duration::from_secs(5),
        || async {
            let last = *fire_times(&db, "heartbeat").await.last()?;
            (last > killed_at).then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    println!("B ticked a fire time after A's crash {took:?} later");
    // Typically ~1 s (B's next try, then the next whole second); the margin is for a loaded
    // machine. The gap check below holds the real guarantee.
    assert!(took < Duration::from_secs(4), "failover took {took:?}");

    // B's connection dies (terminated by the server): B loses the lock, takes it again on a new
    // connection and ticks on.
    sqlx::query("SELECT pg_terminate_backend($1)")
        .bind(b_pid)
        .execute(&db.pool)
        .await
        .unwrap();
    let terminated_at = Utc::now();
    wait_for("B to lead again", Duration::from_secs(5), || async {
        leader_pid(&db).await.filter(|pid| *pid != b_pid)
    })
    .await;
    wait_for(
        "a fire time after B's connection died",
        Duration::from_secs(5),
        || async {
            let last = *fire_times(&db, "heartbeat").await.last()?;
            (last > terminated_at).then_some(())
        },
    )
    .await;
    stop_b.cancel();
    b.await.expect("B stops");

    let fires = fire_times(&db, "heartbeat").await;
    assert_no_duplicates(&fires);
    // Each outage was shorter than the on-time grace: no second was lost either.
    for pair in fires.windows(2) {
        assert_eq!(pair[1] - pair[0], TimeDelta::seconds(1), "gap in {fires:?}");
    }
    println!(
        "{} fire times from {} to {}",
        fires.len(),
        fires[0],
        fires[fires.len() - 1]
    );
}

/// A leader that stops answering without its connection closing (its host gone, its process
/// frozen) loses the lock once its session has sat idle for `leader_timeout`, and another
/// scheduler leads and ticks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_loses_the_lock_to_another_scheduler() {
    let db = TestDb::new().await.expect("test database");
    let interval = Duration::from_millis(100);
    // A takes the lock, then never uses its connection again: frozen.
    let frozen = wedsync_scheduler::try_lead(&db.pool, interval)
        .await
        .unwrap()
        .expect("A leads");
    let a_pid = leader_pid(&db).await.expect("A holds the lock");
    let stop = CancellationToken::new();
    let b = tokio::spawn(wedsync_scheduler::run_with_entries(
        db.pool.clone(),
        vec![entry("heartbeat", "* * * * * *")],
        interval,
        stop.clone(),
    ));
    let frozen_at = Instant::now();
    wait_for("B to lead", Duration::from_secs(20), || async {
        leader_pid(&db).await.filter(|pid| *pid != a_pid)
    })
    .await;
    let took = frozen_at.elapsed();
    println!("B led {took:?} after A froze");
    assert!(
        took >= wedsync_scheduler::leader_timeout(interval) / 2,
        "{took:?}"
    );
    wait_for("B's first tick", Duration::from_secs(5), || async {
        (!fire_times(&db, "heartbeat").await.is_empty()).then_some(())
    })
    .await;
    stop.cancel();
    b.await.expect("B stops");
    drop(frozen);
}

#[tokio::test]
async fn an_entry_that_fails_does_not_hold_back_the_ones_after_it() {
    let db = TestDb::new().await.expect("test database");
    // PostgreSQL's jsonb refuses a NUL character: this entry's enqueue fails at every pass.
    let refused = Entry::parse(
        "refused",
        "* * * * * *",
        London,
        "noop",
        serde_json::json!({"note": "a\u{0}b"}),
        "default",
    )
    .expect("valid entry");
    let entries = vec![refused, entry("after-it", "* * * * * *")];
    let start = utc(2026, 1, 1, 0, 0, 0);
    tick(&db.pool, &entries, start).await.unwrap();
    let err = tick(&db.pool, &entries, start + TimeDelta::seconds(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ScheduleError::Queue(_) | ScheduleError::Database(_)),
        "{err}"
    );
    assert_eq!(
        fire_times(&db, "after-it").await,
        [start + TimeDelta::seconds(1)]
    );
    assert!(fire_times(&db, "refused").await.is_empty());
}

#[tokio::test]
async fn missed_ticks_are_caught_up_once() {
    let db = TestDb::new().await.expect("test database");
    let down_since = utc(2026, 6, 1, 12, 0, 0);
    let back_at = utc(2026, 6, 1, 12, 10, 30);

    // Ten fire times (12:01 … 12:10) were missed: one job, for the most recent.
    let catch_up = vec![entry("every-minute", "0 * * * * *")];
    set_last_fire_at(&db, "every-minute", down_since).await;
    let fired = tick(&db.pool, &catch_up, back_at).await.unwrap();
    let most_recent = utc(2026, 6, 1, 12, 10, 0);
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].fire_at, most_recent);
    assert!(!fired[0].duplicate);
    assert_eq!(fire_times(&db, "every-minute").await, vec![most_recent]);
    assert_eq!(last_fire_at(&db, "every-minute").await, Some(most_recent));
    // Caught up once: the next passes enqueue nothing more until the next fire time, then it.
    assert!(
        tick(&db.pool, &catch_up, back_at + TimeDelta::seconds(10))
            .await
            .unwrap()
            .is_empty()
    );
    let next = utc(2026, 6, 1, 12, 11, 0);
    let fired = tick(&db.pool, &catch_up, next + TimeDelta::milliseconds(300))
        .await
        .unwrap();
    assert_eq!(
        fired.iter().map(|f| f.fire_at).collect::<Vec<_>>(),
        vec![next]
    );

    // Without catch-up, the missed fire times are skipped; the next one fires on time.
    let no_catch_up = vec![entry("no-catch-up", "0 * * * * *").with_catch_up(false)];
    set_last_fire_at(&db, "no-catch-up", down_since).await;
    assert!(
        tick(&db.pool, &no_catch_up, back_at)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(fire_times(&db, "no-catch-up").await.is_empty());
    assert_eq!(last_fire_at(&db, "no-catch-up").await, Some(most_recent));
    let fired = tick(&db.pool, &no_catch_up, next).await.unwrap();
    assert_eq!(
        fired.iter().map(|f| f.fire_at).collect::<Vec<_>>(),
        vec![next]
    );

    // A new entry starts now: it does not fire for the past.
    let fresh = vec![entry("fresh", "0 * * * * *")];
    assert!(tick(&db.pool, &fresh, back_at).await.unwrap().is_empty());
    assert_eq!(last_fire_at(&db, "fresh").await, Some(back_at));
}

/// Step a fake clock in 5-minute steps over `[from, to]` for `entry` (new at `from`) and count
/// the jobs per London calendar day.
async fn fires_per_local_day(
    db: &TestDb,
    entry: Entry,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<NaiveDate, usize> {
    let name = entry.name.clone();
    let entries = vec![entry];
    let mut now = from;
    let mut reported = 0;
    while now <= to {
        reported += tick(&db.pool, &entries, now).await.unwrap().len();
        now += TimeDelta::minutes(5);
    }
    let fires = fire_times(db, &name).await;
    assert_eq!(reported, fires.len());
    assert_no_duplicates(&fires);
    for fire in &fires {
        println!("{name}: fired at {fire} = {}", fire.with_timezone(&London));
    }
    let mut per_day = BTreeMap::new();
    for fire in fires {
        *per_day
            .entry(fire.with_timezone(&London).date_naive())
            .or_default() += 1;
    }
    per_day
}

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap()
}

#[tokio::test]
async fn dst_daily_0130_fires_once_on_both_change_days() {
    let db = TestDb::new().await.expect("test database");

    // Spring forward, 2026-03-29: London goes from 01:00 GMT to 02:00 BST, so 01:30 does not
    // exist. The cron crate skips a local time that does not exist: no job that day (at most
    // once, as required), and exactly one on the days around it.
    let spring = fires_per_local_day(
        &db,
        entry("daily-0130-spring", "0 30 1 * * *"),
        utc(2026, 3, 27, 12, 0, 0),
        utc(2026, 3, 31, 12, 0, 0),
    )
    .await;
    assert_eq!(
        spring,
        BTreeMap::from([(day(3, 28), 1), (day(3, 30), 1), (day(3, 31), 1)])
    );
    assert!(spring.get(&day(3, 29)).copied().unwrap_or(0) <= 1);

    // Autumn, 2026-10-25: London goes from 02:00 BST back to 01:00 GMT, so 01:30 occurs twice
    // (00:30 and 01:30 UTC). The cron crate's iterator yields both; the scheduler fires at the
    // first only.
    let autumn = fires_per_local_day(
        &db,
        entry("daily-0130-autumn", "0 30 1 * * *"),
        utc(2026, 10, 23, 12, 0, 0),
        utc(2026, 10, 27, 12, 0, 0),
    )
    .await;
    assert_eq!(
        autumn,
        BTreeMap::from([
            (day(10, 24), 1),
            (day(10, 25), 1),
            (day(10, 26), 1),
            (day(10, 27), 1)
        ])
    );
    let autumn_fires = fire_times(&db, "daily-0130-autumn").await;
    assert!(
        autumn_fires.contains(&utc(2026, 10, 25, 0, 30, 0)),
        "01:30 BST"
    );
    assert!(
        !autumn_fires.contains(&utc(2026, 10, 25, 1, 30, 0)),
        "01:30 GMT"
    );

    // next_fires agrees with what the ticks did.
    let daily = entry("daily", "0 30 1 * * *");
    assert_eq!(
        next_fires(&daily, utc(2026, 3, 28, 12, 0, 0), 2),
        vec![utc(2026, 3, 30, 0, 30, 0), utc(2026, 3, 31, 0, 30, 0)]
    );
    assert_eq!(
        next_fires(&daily, utc(2026, 10, 24, 12, 0, 0), 3),
        vec![
            utc(2026, 10, 25, 0, 30, 0),
            utc(2026, 10, 26, 1, 30, 0),
            utc(2026, 10, 27, 1, 30, 0)
        ]
    );
    // Inside the repeated hour, an every-15-minutes entry keeps going forward and fires each
    // local time once.
    let quarterly = entry("quarter-hour", "0 */15 * * * *");
    assert_eq!(
        next_fires(&quarterly, utc(2026, 10, 25, 0, 0, 0), 5),
        vec![
            utc(2026, 10, 25, 0, 15, 0),
            utc(2026, 10, 25, 0, 30, 0),
            utc(2026, 10, 25, 0, 45, 0),
            utc(2026, 10, 25, 2, 0, 0),
            utc(2026, 10, 25, 2, 15, 0)
        ]
    );
}

#[test]
fn bad_cron_expression_names_the_entry() {
    let err = Entry::parse(
        "nightly-cleanup",
        "0 61 * * * *",
        London,
        "noop",
        serde_json::json!({}),
        "default",
    )
    .unwrap_err();
    assert!(matches!(&err, ScheduleError::Cron { name, .. } if name == "nightly-cleanup"));
    let message = err.to_string();
    assert!(
        message.contains("nightly-cleanup") && message.contains("0 61 * * * *"),
        "{message}"
    );
}

#[tokio::test]
async fn a_replayed_fire_time_is_a_duplicate_not_a_second_job() {
    let db = TestDb::new().await.expect("test database");
    let entries = vec![entry("every-minute", "0 * * * * *")];
    let fire = utc(2026, 6, 1, 12, 1, 0);
    set_last_fire_at(&db, "every-minute", utc(2026, 6, 1, 12, 0, 0)).await;
    let first = tick(&db.pool, &entries, fire).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(!first[0].duplicate);

    // The state is rolled back (say, restored from an old backup): the unique key still holds
    // while the job is unfinished.
    sqlx::query("UPDATE schedule_state SET last_fire_at = $1")
        .bind(utc(2026, 6, 1, 12, 0, 0))
        .execute(&db.pool)
        .await
        .unwrap();
    let again = tick(&db.pool, &entries, fire).await.unwrap();
    assert_eq!(again.len(), 1);
    assert!(again[0].duplicate, "{again:?}");
    assert_eq!(again[0].job_id, first[0].job_id);
    assert_eq!(fire_times(&db, "every-minute").await, vec![fire]);
}
