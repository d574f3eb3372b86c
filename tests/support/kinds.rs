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
