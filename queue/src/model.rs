//! Rows and values the queue stores and returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// The lifecycle of a job (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Available,
    Scheduled,
    Running,
    Retryable,
    Completed,
    Discarded,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Available,
        JobState::Scheduled,
        JobState::Running,
        JobState::Retryable,
        JobState::Completed,
        JobState::Discarded,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Scheduled => "scheduled",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Completed => "completed",
            JobState::Discarded => "discarded",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Finished jobs no longer run and live in the archive until retention removes them.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Discarded | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`JobState::ALL`].
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown job state `{0}` (expected one of available, scheduled, running, retryable, completed, discarded, cancelled)"
)]
pub struct UnknownState(pub String);

impl FromStr for JobState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// One job as stored, finished or not.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: i64,
    pub queue: String,
    pub kind: String,
    pub args: Value,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub scheduled_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub attempted_at: Option<DateTime<Utc>>,
    pub attempted_by: Option<String>,
    pub errors: Value,
    pub unique_key: Option<String>,
    pub org_id: Option<String>,
    #[sqlx(default)]
    pub finalized_at: Option<DateTime<Utc>>,
    #[sqlx(default)]
    pub result: Option<Value>,
}

impl TryFrom<String> for JobState {
    type Error = UnknownState;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// A job to enqueue. Built with [`NewJob::new`] and the `with_*` setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub queue: String,
    pub kind: String,
    pub args: Value,
    pub priority: i16,
    pub max_attempts: i32,
    /// `None` means now.
    pub scheduled_at: Option<DateTime<Utc>>,
    pub unique_key: Option<String>,
    pub org_id: Option<String>,
}

impl NewJob {
    pub fn new(queue: impl Into<String>, kind: impl Into<String>, args: Value) -> Self {
        NewJob {
            queue: queue.into(),
            kind: kind.into(),
            args,
            priority: 5,
            max_attempts: 20,
            scheduled_at: None,
            unique_key: None,
            org_id: None,
        }
    }
    pub fn with_priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }
    pub fn with_max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }
    pub fn scheduled_at(mut self, at: DateTime<Utc>) -> Self {
        self.scheduled_at = Some(at);
        self
    }
    pub fn with_unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }
    pub fn with_org(mut self, org: impl Into<String>) -> Self {
        self.org_id = Some(org.into());
        self
    }
}

/// What an enqueue did with one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: i64,
    /// True when an unfinished job with the same unique key already existed; `id` is that job's.
    pub duplicate: bool,
}

/// A queue's pool row: its per-process concurrency and pause flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Pool {
    pub queue: String,
    pub concurrency: i32,
    pub paused: bool,
    pub reason: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// Depth and activity of one queue.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct QueueStats {
    pub queue: String,
    pub available: i64,
    pub scheduled: i64,
    pub running: i64,
    pub retryable: i64,
    pub completed_last_minute: i64,
    pub discarded_last_minute: i64,
    /// Age of the oldest available job, in seconds.
    pub lag_seconds: Option<f64>,
    pub concurrency: Option<i32>,
    pub paused: bool,
}

/// Filters for listing jobs; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub queue: Option<String>,
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub org_id: Option<String>,
    /// Only jobs with an id below this one (keyset paging, newest first).
    pub before_id: Option<i64>,
    pub limit: i64,
}
