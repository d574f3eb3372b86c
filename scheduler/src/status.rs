//! What operators see of the schedule, and running an entry by hand.

use crate::{Entry, ScheduleError, next_fires};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::HashMap;
use wedsync_queue::{Enqueued, NewJob, Queue};

/// One entry as `GET /v1/schedules` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryStatus {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    pub kind: String,
    pub queue: String,
    pub args: serde_json::Value,
    pub catch_up: bool,
    /// The last fire time a scheduler handled, if any.
    pub last_fire_at: Option<DateTime<Utc>>,
    pub next_fire_times: Vec<DateTime<Utc>>,
}

/// Every entry with its last handled and next five fire times.
pub async fn statuses(
    pool: &PgPool,
    entries: &[Entry],
    now: DateTime<Utc>,
) -> Result<Vec<EntryStatus>, ScheduleError> {
    let last: HashMap<String, DateTime<Utc>> = sqlx::query_as::<_, (String, DateTime<Utc>)>(
        "SELECT name, last_fire_at FROM schedule_state",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    Ok(entries
        .iter()
        .map(|entry| EntryStatus {
            name: entry.name.clone(),
            cron: entry.schedule.to_string(),
            timezone: entry.timezone.name().to_owned(),
            kind: entry.kind.clone(),
            queue: entry.queue.clone(),
            args: entry.args.clone(),
            catch_up: entry.catch_up,
            last_fire_at: last.get(&entry.name).copied(),
            next_fire_times: next_fires(entry, now, 5),
        })
        .collect())
}

/// Enqueue `entry`'s job now, outside its schedule (it does not move the schedule).
pub async fn run_now(queue: &Queue, entry: &Entry) -> Result<Enqueued, ScheduleError> {
    let job = NewJob::new(&entry.queue, &entry.kind, entry.args.clone())
        .with_priority(entry.priority)
        .with_max_attempts(entry.max_attempts);
    Ok(queue.enqueue(job).await?)
}
