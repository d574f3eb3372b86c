//! The typed job trait, what a run returns, and the registry that maps kinds to handlers.

use crate::lease::Lease;
use crate::model::{JobRow, NewJob};
use crate::retry::exponential_backoff;
use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A kind of background job: its args are the struct itself, serialised as JSON.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind name stored in each row; must be unique in a registry.
    const KIND: &'static str;
    const QUEUE: &'static str = "default";
    /// 0 runs first, 9 last.
    const PRIORITY: i16 = 5;
    const MAX_ATTEMPTS: i32 = 20;

    /// Shared resources the handler needs (pools, clients); cloned per run.
    type Context: Clone + Send + Sync + 'static;

    /// How long one attempt may take before it is failed and retried.
    fn timeout(&self) -> Duration {
        Duration::from_secs(300)
    }

    /// Delay before the retry that follows failed attempt number `attempt`.
    fn backoff(attempt: i32) -> Duration {
        exponential_backoff(attempt)
    }

    fn run(self, ctx: JobContext<Self::Context>) -> impl Future<Output = JobResult> + Send;

    /// This job as a row to enqueue with the kind's defaults.
    fn to_new_job(&self) -> Result<NewJob, serde_json::Error> {
        Ok(
            NewJob::new(Self::QUEUE, Self::KIND, serde_json::to_value(self)?)
                .with_priority(Self::PRIORITY)
                .with_max_attempts(Self::MAX_ATTEMPTS),
        )
    }
}

/// What a handler gets besides its args: the shared context and facts about this attempt.
#[derive(Clone)]
pub struct JobContext<C> {
    pub app: C,
    pub job_id: i64,
    pub attempt: i32,
    pub max_attempts: i32,
    pub org_id: Option<String>,
    /// Whether the worker still holds this job (see [`Lease`]); ask it before doing what must
    /// not happen twice.
    pub lease: Lease,
}

pub type JobResult = Result<Outcome, JobError>;

/// A successful run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; the optional value is kept as the job's result.
    Completed(Option<serde_json::Value>),
    /// The handler decided the job should not go on (not an error); it is finalised as cancelled.
    Cancelled(String),
    /// Not now, and not a failure: run again after this delay without counting this attempt
    /// (Oban's and River's snooze). For waiting on something outside the job — an open circuit
    /// breaker, a paused send — where a retry would use up attempts while nothing is wrong.
    Snooze(Duration),
}

impl Outcome {
    pub fn done() -> Self {
        Outcome::Completed(None)
    }
}

/// A failed attempt and what should happen next.
#[derive(Debug)]
pub enum JobError {
    /// Retry with the kind's backoff, or discard once attempts are used up.
    Retry(String),
    /// Retry after exactly this delay (still counts as an attempt).
    RetryAfter { after: Duration, message: String },
    /// Never retry: discard now.
    Permanent(String),
}

impl JobError {
    pub fn retry(err: impl fmt::Display) -> Self {
        JobError::Retry(err.to_string())
    }
    pub fn retry_after(after: Duration, err: impl fmt::Display) -> Self {
        JobError::RetryAfter {
            after,
            message: err.to_string(),
        }
    }
    pub fn permanent(err: impl fmt::Display) -> Self {
        JobError::Permanent(err.to_string())
    }
    pub fn message(&self) -> &str {
        match self {
            JobError::Retry(m) | JobError::Permanent(m) => m,
            JobError::RetryAfter { message, .. } => message,
        }
    }
    /// A short name stored with the error in the job's history.
    pub fn class(&self) -> &'static str {
        match self {
            JobError::Retry(_) => "error",
            JobError::RetryAfter { .. } => "retry_after",
            JobError::Permanent(_) => "permanent",
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Any error turned into a retryable failure with its whole cause chain, so `?` works in handlers.
impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(err: E) -> Self {
        JobError::Retry(error_chain(&err))
    }
}

/// `err: cause: cause…`, so one message or log line carries the whole story.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// A decoded job ready to run, with the limits its kind sets.
pub struct PreparedRun {
    pub timeout: Duration,
    pub future: BoxFuture<'static, JobResult>,
}

type PrepareFn<C> = fn(&JobRow, C, Lease) -> Result<PreparedRun, JobError>;

/// Defaults of a registered kind, for enqueuers that only have its name (API, CLI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KindInfo {
    pub kind: &'static str,
    pub queue: &'static str,
    pub priority: i16,
    pub max_attempts: i32,
}

struct Handler<C> {
    info: KindInfo,
    prepare: PrepareFn<C>,
    backoff: fn(i32) -> Duration,
}

/// Maps kind names to handlers sharing one context type.
pub struct Registry<C> {
    handlers: BTreeMap<&'static str, Handler<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            handlers: BTreeMap::new(),
        }
    }
}

impl<C> Registry<C> {
    pub fn kind(&self, kind: &str) -> Option<&KindInfo> {
        self.handlers.get(kind).map(|h| &h.info)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &KindInfo> {
        self.handlers.values().map(|h| &h.info)
    }

    /// The queues the registered kinds run on by default, deduplicated.
    pub fn queues(&self) -> Vec<&'static str> {
        let mut queues: Vec<_> = self.handlers.values().map(|h| h.info.queue).collect();
        queues.sort_unstable();
        queues.dedup();
        queues
    }

    /// The backoff of `kind` for failed attempt `attempt`, or the default one.
    pub fn backoff(&self, kind: &str, attempt: i32) -> Duration {
        self.handlers
            .get(kind)
            .map_or_else(|| exponential_backoff(attempt), |h| (h.backoff)(attempt))
    }
}

impl<C: Clone + Send + Sync + 'static> Registry<C> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `J`; a second registration of the same kind replaces the first.
    pub fn register<J: Job<Context = C>>(&mut self) -> &mut Self {
        let info = KindInfo {
            kind: J::KIND,
            queue: J::QUEUE,
            priority: J::PRIORITY,
            max_attempts: J::MAX_ATTEMPTS,
        };
        self.handlers.insert(
            J::KIND,
            Handler {
                info,
                prepare: prepare::<J>,
                backoff: J::backoff,
            },
        );
        self
    }

    /// Decode `row`'s args and build the future that runs it. An unknown kind is retried (a
    /// deploy may bring its handler); args that do not decode are a permanent failure.
    pub fn prepare(&self, row: &JobRow, app: C, lease: Lease) -> Result<PreparedRun, JobError> {
        let handler = self.handlers.get(row.kind.as_str()).ok_or_else(|| {
            JobError::Retry(format!("no handler registered for kind `{}`", row.kind))
        })?;
        (handler.prepare)(row, app, lease)
    }
}

fn prepare<J: Job>(row: &JobRow, app: J::Context, lease: Lease) -> Result<PreparedRun, JobError> {
    let job: J = serde_json::from_value(row.args.clone())
        .map_err(|e| JobError::Permanent(format!("args of `{}` do not decode: {e}", J::KIND)))?;
    let timeout = job.timeout();
    let ctx = JobContext {
        app,
        job_id: row.id,
        attempt: row.attempt,
        max_attempts: row.max_attempts,
        org_id: row.org_id.clone(),
        lease,
    };
    Ok(PreparedRun {
        timeout,
        future: Box::pin(job.run(ctx)),
    })
}

/// Shared handle to a registry.
pub type SharedRegistry<C> = Arc<Registry<C>>;
