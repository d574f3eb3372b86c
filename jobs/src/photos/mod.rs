//! `photo_process` (SPEC §5.2, issue #4): turns an uploaded original into the gallery's
//! variants.
//!
//! Args: `{"photo_id": "<uuid>"}`. Queue `photos`. The upload (API) stores the original under
//! `originals/<sha256>` and enqueues this job, with priority 0 (first) when the photo's wedding
//! takes place today in its own time zone, else 5.
//!
//! A run: mark the photo `processing` → read the original → [`pipeline`] off the async runtime
//! → store each variant under `variants/<photo>/<size>.<jpg|webp>` → mark it `ready` with its
//! upright dimensions and variants. Keys and row updates are deterministic, so running the job
//! again (a retry after a crash, an operator's retry) overwrites the same objects and ends in the
//! same row.
//!
//! Content that is no image, is truncated or corrupt, is of an unsupported format, or has more
//! pixels than the configured limit marks the photo `failed` with a reason in words and
//! discards the job: no retry would change it. Storage and database errors are retried.

pub mod ingest;
pub mod pipeline;
pub mod record;
pub mod retention;
mod sql;

use crate::context::AppContext;
use futures::future::try_join_all;
use pipeline::{Outputs, PipelineError};
use record::VariantRecord;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;
use wedsync_queue::{Job, JobContext, JobError, JobResult, Outcome};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhotoProcess {
    pub photo_id: Uuid,
}

impl Job for PhotoProcess {
    const KIND: &'static str = "photo_process";
    const QUEUE: &'static str = "photos";
    /// Priority of a photo of a wedding that is not today; today's get 0 at upload.
    const PRIORITY: i16 = 5;
    const MAX_ATTEMPTS: i32 = 5;
    type Context = AppContext;

    fn timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    async fn run(self, ctx: JobContext<AppContext>) -> JobResult {
        let app = &ctx.app;
        let id = self.photo_id;
        let Some((original_key, _format)) = record::start_processing(&app.pool, id).await? else {
            return Err(JobError::permanent(format!("photo {id} does not exist")));
        };
        let original = match app.storage.get(&original_key).await {
            Ok(bytes) => bytes,
            Err(crate::storage::StorageError::NotFound { .. }) => {
                return fail(app, id, "the original is missing from storage").await;
            }
            Err(err) => return Err(err.into()),
        };
        let started = std::time::Instant::now();
        let processed =
            match pipeline::process_blocking(original, app.photo_limits, Outputs::ALL).await {
                Ok(processed) => processed,
                Err(PipelineError::Rejected(rejected)) => return fail(app, id, &rejected.0).await,
                Err(crashed @ PipelineError::Crashed) => {
                    return fail(app, id, &crashed.to_string()).await;
                }
            };
        let cpu = started.elapsed();
        let records: Vec<VariantRecord> = processed
            .variants
            .iter()
            .map(|v| VariantRecord {
                size: v.size,
                format: v.format.as_str().to_owned(),
                key: record::variant_key(id, v),
                width: v.width,
                height: v.height,
                bytes: v.bytes.len() as u64,
            })
            .collect();
        try_join_all(
            processed
                .variants
                .into_iter()
                .zip(&records)
                .map(|(v, r)| app.storage.put(&r.key, v.bytes.into())),
        )
        .await?;
        record::mark_ready(&app.pool, id, processed.width, processed.height, &records).await?;
        tracing::info!(
            job_id = ctx.job_id,
            photo_id = %id,
            width = processed.width,
            height = processed.height,
            variants = records.len(),
            pipeline_ms = cpu.as_millis() as u64,
            "photo ready"
        );
        Ok(Outcome::Completed(Some(json!({
            "photo_id": id,
            "width": processed.width,
            "height": processed.height,
            "variants": records.len(),
        }))))
    }
}

/// Mark the photo failed with `reason` and discard the job.
async fn fail(app: &AppContext, id: Uuid, reason: &str) -> JobResult {
    record::mark_failed(&app.pool, id, reason).await?;
    tracing::info!(photo_id = %id, reason, "photo failed");
    Err(JobError::permanent(reason))
}
