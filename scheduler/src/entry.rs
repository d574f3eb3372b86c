//! Cron entries: a parsed schedule in a timezone, and the job it enqueues at each fire time.

use crate::ScheduleError;
use chrono::offset::LocalResult;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::str::FromStr;

/// One cron entry (SPEC §6): enqueue `kind` with `args` on `queue` at every fire time of
/// `schedule` in `timezone`.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Unique among the entries; names the entry's `schedule_state` row and unique keys.
    pub name: String,
    pub schedule: cron::Schedule,
    pub timezone: Tz,
    pub kind: String,
    pub args: serde_json::Value,
    pub queue: String,
    pub priority: i16,
    pub max_attempts: i32,
    /// After fire times were missed (no scheduler ran), enqueue the most recent one once (true)
    /// or none of them (false).
    pub catch_up: bool,
}

impl Entry {
    /// An entry from its config fields; `cron` uses the `cron` crate's syntax, seconds first.
    /// Priority 5, 20 attempts and catch-up on by default (see the `with_*` setters).
    pub fn parse(
        name: impl Into<String>,
        cron: &str,
        timezone: Tz,
        kind: impl Into<String>,
        args: serde_json::Value,
        queue: impl Into<String>,
    ) -> Result<Entry, ScheduleError> {
        let name = name.into();
        let schedule =
            cron::Schedule::from_str(cron.trim()).map_err(|source| ScheduleError::Cron {
                name: name.clone(),
                expression: cron.to_owned(),
                source,
            })?;
        Ok(Entry {
            name,
            schedule,
            timezone,
            kind: kind.into(),
            args,
            queue: queue.into(),
            priority: 5,
            max_attempts: 20,
            catch_up: true,
        })
    }

    pub fn with_priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    pub fn with_catch_up(mut self, catch_up: bool) -> Self {
        self.catch_up = catch_up;
        self
    }

    /// The fire times strictly after `after`, in order, in UTC.
    ///
    /// Daylight saving time, as the `cron` crate and this function handle it:
    /// - a local time that does not exist (spring forward, e.g. 01:30 in Europe/London on
    ///   2026-03-29) is skipped by the `cron` crate: the entry does not fire that day;
    /// - a local time that occurs twice (autumn, e.g. 01:30 on 2026-10-25) is returned twice by
    ///   the `cron` crate's iterator (both offsets, and not always in order); this function
    ///   keeps only its first occurrence, so the entry fires once.
    pub fn fires_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let tz = self.timezone;
        self.schedule
            .after(&after.with_timezone(&tz))
            .filter(move |fire| {
                // The second occurrence of a repeated local time is not a fire time.
                !matches!(
                    tz.from_local_datetime(&fire.naive_local()),
                    LocalResult::Ambiguous(_, later) if later == *fire
                )
            })
            .map(|fire| fire.with_timezone(&Utc))
            // The crate's iterator may step back inside a repeated hour; those were handled.
            .filter(move |fire| *fire > after)
    }
}

/// The next `n` fire times of `entry` strictly after `after` (for `GET /v1/schedules`).
pub fn next_fires(entry: &Entry, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    entry.fires_after(after).take(n).collect()
}
