//! `wedsync-jobs jobs …`: enqueue, list, show, retry, cancel over the same database as the API.

use crate::Failure;
use crate::cli::JobsCommand;
use crate::commands::output::{print_one, print_rows};
use crate::settings::Settings;
use crate::startup;
use anyhow::{Context, anyhow};
use wedsync_queue::{JobFilter, JobRow, JobState, NewJob, Queue, QueueError};

const COLUMNS: [&str; 8] = [
    "id",
    "queue",
    "kind",
    "state",
    "attempt",
    "max_attempts",
    "priority",
    "scheduled_at",
];

pub async fn run(settings: Settings, command: JobsCommand) -> Result<(), Failure> {
    let queue = Queue::new(startup::connect(&settings, 2, true).await?);
    match command {
        JobsCommand::Enqueue {
            kind,
            args,
            queue: queue_name,
            count,
            priority,
            output,
        } => {
            let registry = wedsync_kinds::register_all();
            let info = registry.kind(&kind).ok_or_else(|| {
                let known: Vec<_> = registry.kinds().map(|k| k.kind).collect();
                Failure::Usage(anyhow!(
                    "unknown kind `{kind}` (known kinds: {})",
                    known.join(", ")
                ))
            })?;
            let args: serde_json::Value = serde_json::from_str(&args)
                .map_err(|e| Failure::Usage(anyhow!("ARGS_JSON is not valid JSON: {e}")))?;
            let job = NewJob::new(
                queue_name.as_deref().unwrap_or(info.queue),
                kind.as_str(),
                args,
            )
            .with_priority(priority.unwrap_or(info.priority))
            .with_max_attempts(info.max_attempts);
            let jobs = vec![job; count];
            let enqueued = queue.enqueue_many(&jobs).await.context("enqueueing")?;
            print_rows(&enqueued, &["id", "duplicate"], output.json)?;
        }
        JobsCommand::List {
            queue: queue_name,
            state,
            kind,
            limit,
            output,
        } => {
            let state = state
                .map(|s| s.parse::<JobState>())
                .transpose()
                .map_err(|e| Failure::Usage(anyhow!("--state: {e}")))?;
            let filter = JobFilter {
                queue: queue_name,
                state,
                kind,
                limit,
                ..JobFilter::default()
            };
            let jobs = queue.list_jobs(&filter).await.context("listing jobs")?;
            print_rows(&jobs, &COLUMNS, output.json)?;
        }
        JobsCommand::Show { id, output } => show(queue.job(id, None).await, output.json)?,
        JobsCommand::Retry { id, output } => show(queue.retry(id, None).await, output.json)?,
        JobsCommand::Cancel { id, output } => show(queue.cancel(id, None).await, output.json)?,
    }
    Ok(())
}

fn show(job: Result<JobRow, QueueError>, json: bool) -> Result<(), Failure> {
    let job = job.map_err(anyhow::Error::new)?;
    if json {
        print_rows(&[job], &[], true)?;
    } else {
        print_one(&job)?;
    }
    Ok(())
}
