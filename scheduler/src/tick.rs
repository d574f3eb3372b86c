//! One scheduler pass: enqueue each entry's due fire times exactly once.

use crate::{Entry, ScheduleError};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use sqlx::{Connection, PgConnection, PgPool};
use wedsync_queue::NewJob;

/// Fire times examined per entry before a pass skips ahead over missed ones, so that a scheduler
/// that was down for long neither walks every missed fire time nor floods the queue.
pub const MAX_FIRES_PER_PASS: usize = 1_000;

/// A fire time at most this old when a pass handles it is on time and is enqueued; older ones
/// were missed (no scheduler ran) and are caught up once, or skipped (see [`Entry::catch_up`]).
pub const ON_TIME_GRACE: TimeDelta = TimeDelta::seconds(10);

/// Skips ahead within one pass before it gives up walking and treats everything up to `now`
/// as handled (only irregular schedules with huge gaps get there).
const MAX_SKIPS: usize = 8;

/// One job a pass enqueued for one fire time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fired {
    pub name: String,
    pub fire_at: DateTime<Utc>,
    pub job_id: i64,
    /// True when a job with the same unique key already existed (`job_id` is that job).
    pub duplicate: bool,
}

/// The unique key of `entry`'s job for the fire time `fire_at`.
pub fn unique_key(name: &str, fire_at: DateTime<Utc>) -> String {
    format!(
        "schedule:{name}:{}",
        fire_at.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Run one pass over `entries` at the instant `now` (injected, so tests can use a fake clock).
///
/// Each entry is handled in a transaction of its own: its `schedule_state` row is locked (and
/// created at `now` for a new entry, which therefore does not fire for the past), the fire times
/// in (last_fire_at, now] are enqueued with a unique key per fire time, and last_fire_at moves to
/// the last fire time handled. Concurrent passes therefore enqueue each fire time once.
///
/// Fire times more than [`ON_TIME_GRACE`] before `now` were missed: when no fire time is on time,
/// the most recent missed one is enqueued if the entry catches up, none otherwise.
pub async fn tick(
    pool: &PgPool,
    entries: &[Entry],
    now: DateTime<Utc>,
) -> Result<Vec<Fired>, ScheduleError> {
    let mut conn = pool.acquire().await?;
    tick_on(&mut conn, entries, now).await
}

/// [`tick`] on a given connection (the scheduler leader ticks on the connection that holds its
/// leader lock, so a leader whose connection died cannot tick).
///
/// An entry that fails (its args refused by the database, say) does not hold back the ones
/// after it, such as the built-in nightly retention: each failure is logged with the entry's
/// name, every entry is ticked, and the first error is returned.
pub async fn tick_on(
    conn: &mut PgConnection,
    entries: &[Entry],
    now: DateTime<Utc>,
) -> Result<Vec<Fired>, ScheduleError> {
    let mut fired = Vec::new();
    let mut first_error = None;
    for entry in entries {
        match tick_entry(conn, entry, now).await {
            Ok(entry_fired) => fired.extend(entry_fired),
            Err(err) => {
                tracing::warn!(entry = %entry.name, error = %err, "schedule entry failed to tick");
                first_error.get_or_insert(err);
            }
        }
    }
    match first_error {
        Some(err) => Err(err),
        None => Ok(fired),
    }
}

async fn tick_entry(
    conn: &mut PgConnection,
    entry: &Entry,
    now: DateTime<Utc>,
) -> Result<Vec<Fired>, ScheduleError> {
    let mut tx = conn.begin().await?;
    sqlx::query(
        "INSERT INTO schedule_state (name, last_fire_at) VALUES ($1, $2)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(&entry.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let last: DateTime<Utc> =
        sqlx::query_scalar("SELECT last_fire_at FROM schedule_state WHERE name = $1 FOR UPDATE")
            .bind(&entry.name)
            .fetch_one(&mut *tx)
            .await?;
    let due = due_fires(entry, last, now);
    let Some(handled_until) = due.handled_until else {
        // Nothing due; keep the row a new entry just got.
        tx.commit().await?;
        return Ok(Vec::new());
    };
    let mut fire_times = due.on_time;
    if fire_times.is_empty() && entry.catch_up {
        fire_times.extend(due.latest_missed);
    }
    let mut fired = Vec::with_capacity(fire_times.len());
    for fire_at in fire_times {
        let job = NewJob::new(&entry.queue, &entry.kind, entry.args.clone())
            .with_priority(entry.priority)
            .with_max_attempts(entry.max_attempts)
            .with_unique_key(unique_key(&entry.name, fire_at));
        let enqueued = wedsync_queue::enqueue(&mut tx, job).await?;
        fired.push(Fired {
            name: entry.name.clone(),
            fire_at,
            job_id: enqueued.id,
            duplicate: enqueued.duplicate,
        });
    }
    sqlx::query("UPDATE schedule_state SET last_fire_at = $2, updated_at = now() WHERE name = $1")
        .bind(&entry.name)
        .bind(handled_until)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if due.skipped > 0 {
        tracing::info!(
            entry = %entry.name,
            missed = due.skipped,
            caught_up = entry.catch_up,
            "scheduler caught up on missed fire times"
        );
    }
    Ok(fired)
}

/// The fire times of one entry in (last, now], sorted out.
#[derive(Debug, Default)]
struct Due {
    /// Fire times within [`ON_TIME_GRACE`] of now.
    on_time: Vec<DateTime<Utc>>,
    /// The most recent older (missed) fire time.
    latest_missed: Option<DateTime<Utc>>,
    /// Missed fire times seen (a lower bound when the pass skipped ahead).
    skipped: usize,
    /// The new last_fire_at: the last fire time handled, or None when none was due.
    handled_until: Option<DateTime<Utc>>,
}

fn due_fires(entry: &Entry, last: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let on_time_from = now - ON_TIME_GRACE;
    let mut due = Due::default();
    let mut cursor = last;
    let mut skips = 0;
    'walk: loop {
        let mut first: Option<DateTime<Utc>> = None;
        for (seen, fire) in entry.fires_after(cursor).enumerate() {
            if fire > now {
                break 'walk;
            }
            due.handled_until = Some(fire);
            if fire >= on_time_from {
                due.on_time.push(fire);
            } else {
                due.latest_missed = Some(fire);
                due.skipped += 1;
            }
            let first = *first.get_or_insert(fire);
            if seen + 1 == MAX_FIRES_PER_PASS {
                skips += 1;
                if skips > MAX_SKIPS {
                    due.handled_until = Some(now);
                    break 'walk;
                }
                // Long down: jump to where the last stretch of as many fire times would start
                // before the on-time window; everything skipped over was missed anyway.
                cursor = fire.max(on_time_from - (fire - first));
                continue 'walk;
            }
        }
        break;
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn every(cron: &str) -> Entry {
        Entry::parse(
            "e",
            cron,
            chrono_tz::Europe::London,
            "noop",
            serde_json::json!({}),
            "default",
        )
        .unwrap()
    }

    #[test]
    fn a_long_outage_is_one_missed_fire_without_walking_it_all() {
        let entry = every("* * * * * *");
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let due = due_fires(&entry, now - TimeDelta::days(30), now);
        assert_eq!(due.on_time.len(), 11, "{:?}", due.on_time);
        assert_eq!(due.latest_missed, Some(now - TimeDelta::seconds(11)));
        assert_eq!(due.handled_until, Some(now));
    }

    #[test]
    fn nothing_due_leaves_the_state_alone() {
        let entry = every("0 0 3 * * *");
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap();
        let due = due_fires(&entry, now - TimeDelta::hours(1), now);
        assert!(due.handled_until.is_none());
    }
}
