//! Job kinds that exist only in tests: each records its runs in `test_runs` and then behaves
//! as its args say (succeed, fail, panic, hang, ask for a retry later, give up).

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::time::Duration;
use wedsync_queue::{Job, JobContext, JobError, JobResult, Outcome, Registry};

pub const CREATE_RUNS_TABLE: &str = "CREATE TABLE IF NOT EXISTS test_runs (
    job_id bigint NOT NULL, attempt int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())";

#[derive(Clone)]
pub struct TestCtx {
    pub pool: PgPool,
}

impl TestCtx {
    pub async fn new(pool: PgPool) -> Self {
        sqlx::query(CREATE_RUNS_TABLE)
            .execute(&pool)
            .await
            .expect("create test_runs");
        TestCtx { pool }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    Succeed,
    Fail,
    FailUntilAttempt(i32),
    Panic,
    Hang,
    RetryAfterSecs(u64),
    Permanent,
    Sleep(u64),
    /// Snooze for this many milliseconds on each of the first `times` runs, then succeed.
    SnoozeMs {
        ms: u64,
        times: i64,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scripted {
    pub behaviour: Behaviour,
}

impl Job for Scripted {
    const KIND: &'static str = "scripted";
    const QUEUE: &'static str = "test";
    const MAX_ATTEMPTS: i32 = 3;
    type Context = TestCtx;

    fn timeout(&self) -> Duration {
        Duration::from_millis(300)
    }

    fn backoff(attempt: i32) -> Duration {
        // Short and without jitter so tests can bound it tightly.
        Duration::from_millis(200 * attempt as u64)
    }

    async fn run(self, ctx: JobContext<TestCtx>) -> JobResult {
        sqlx::query("INSERT INTO test_runs (job_id, attempt) VALUES ($1, $2)")
            .bind(ctx.job_id)
            .bind(ctx.attempt)
            .execute(&ctx.app.pool)
            .await?;
        match self.behaviour {
            Behaviour::Succeed => Ok(Outcome::Completed(Some(serde_json::json!({"ok": true})))),
            Behaviour::Fail => Err(JobError::retry("scripted failure")),
            Behaviour::FailUntilAttempt(n) if ctx.attempt < n => Err(JobError::retry("not yet")),
            Behaviour::FailUntilAttempt(_) => Ok(Outcome::done()),
            Behaviour::Panic => panic!("scripted panic"),
            Behaviour::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Behaviour::RetryAfterSecs(s) => Err(JobError::retry_after(
                Duration::from_secs(s),
                "come back later",
            )),
            Behaviour::Permanent => Err(JobError::permanent("this can never work")),
            Behaviour::SnoozeMs { ms, times } => {
                let runs: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM test_runs WHERE job_id = $1")
                        .bind(ctx.job_id)
                        .fetch_one(&ctx.app.pool)
                        .await?;
                if runs <= times {
                    Ok(Outcome::Snooze(Duration::from_millis(ms)))
                } else {
                    Ok(Outcome::done())
                }
            }
            Behaviour::Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(Outcome::done())
            }
        }
    }
}

pub fn registry() -> Registry<TestCtx> {
    let mut registry = Registry::new();
    registry.register::<Scripted>();
    registry
}

pub fn scripted(behaviour: Behaviour) -> wedsync_queue::NewJob {
    Scripted { behaviour }.to_new_job().expect("encode args")
}

/// `test_spans`: one row per run of [`Sleeper`], with when its handler started and ended.
pub const CREATE_SPANS_TABLE: &str = "CREATE TABLE IF NOT EXISTS test_spans (
    job_id bigint NOT NULL, attempt int NOT NULL,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)";

impl TestCtx {
    /// Like [`TestCtx::new`], also creating `test_spans` for [`Sleeper`].
    pub async fn with_spans(pool: PgPool) -> Self {
        let ctx = TestCtx::new(pool).await;
        sqlx::query(CREATE_SPANS_TABLE)
            .execute(&ctx.pool)
            .await
            .expect("create test_spans");
        ctx
    }
}

/// Sleeps `ms` under a 60 s timeout (so it can hold a slot far longer than [`Scripted`], and
/// a slow database under load never fails it), recording the start and end of its handler in
/// `test_spans`: an aborted run has no end. With `permanent_failure` it then fails permanently.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sleeper {
    pub ms: u64,
    #[serde(default)]
    pub permanent_failure: bool,
}

impl Job for Sleeper {
    const KIND: &'static str = "sleeper";
    const QUEUE: &'static str = "test";
    const MAX_ATTEMPTS: i32 = 3;
    type Context = TestCtx;

    fn timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    async fn run(self, ctx: JobContext<TestCtx>) -> JobResult {
        sqlx::query("INSERT INTO test_spans (job_id, attempt) VALUES ($1, $2)")
            .bind(ctx.job_id)
            .bind(ctx.attempt)
            .execute(&ctx.app.pool)
            .await?;
        tokio::time::sleep(Duration::from_millis(self.ms)).await;
        sqlx::query(
            "UPDATE test_spans SET ended_at = clock_timestamp() WHERE job_id = $1 AND attempt = $2",
        )
        .bind(ctx.job_id)
        .bind(ctx.attempt)
        .execute(&ctx.app.pool)
        .await?;
        if self.permanent_failure {
            return Err(JobError::permanent("this can never work"));
        }
        Ok(Outcome::done())
    }
}

/// [`registry`] plus [`Sleeper`]; its context must come from [`TestCtx::with_spans`].
pub fn registry_with_sleeper() -> Registry<TestCtx> {
    let mut registry = registry();
    registry.register::<Sleeper>();
    registry
}

pub fn sleeper(ms: u64) -> wedsync_queue::NewJob {
    Sleeper {
        ms,
        permanent_failure: false,
    }
    .to_new_job()
    .expect("encode args")
}

/// A [`Sleeper`] that fails permanently once it has slept.
pub fn sleeper_failing_permanently(ms: u64) -> wedsync_queue::NewJob {
    Sleeper {
        ms,
        permanent_failure: true,
    }
    .to_new_job()
    .expect("encode args")
}
