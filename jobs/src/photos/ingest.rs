//! Taking in an original: stream it to storage while hashing it, then create the photo row and
//! its processing job in one transaction.
//!
//! The bytes go to a temporary key as they arrive (never held whole in memory) and are moved to
//! `originals/<sha256>` at the end, unless that key already holds them: the same content is
//! stored once, whichever wedding or organisation uploads it.

use super::PhotoProcess;
use super::pipeline::sniff::{self, SNIFF_LEN, Sniffed};
use super::record::original_key;
use super::sql;
use crate::storage::{Storage, StorageError, Upload};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;
use wedsync_queue::{Job, QueueError};

/// An upload in progress.
pub struct Stager {
    upload: Upload,
    storage: Storage,
    tmp_key: String,
    hasher: Sha256,
    bytes: u64,
    head: Vec<u8>,
}

/// An original safely in storage.
#[derive(Debug, Clone)]
pub struct Staged {
    pub content_hash: String,
    pub key: String,
    pub bytes: u64,
    pub sniffed: Sniffed,
}

impl Staged {
    /// The format name recorded with the photo (`unknown` for content that is no image we
    /// decode; processing then fails it with the reason).
    pub fn format_name(&self) -> &'static str {
        match self.sniffed {
            Sniffed::Supported(format) => format.as_str(),
            _ => "unknown",
        }
    }
}

impl Stager {
    pub async fn begin(storage: &Storage) -> Result<Stager, StorageError> {
        let tmp_key = format!("uploads/{}", Uuid::new_v4());
        Ok(Stager {
            upload: storage.upload(&tmp_key).await?,
            storage: storage.clone(),
            tmp_key,
            hasher: Sha256::new(),
            bytes: 0,
            head: Vec::with_capacity(SNIFF_LEN),
        })
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.bytes
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// What the content is, as far as the bytes so far tell (`None` until enough arrived).
    pub fn sniffed(&self) -> Option<Sniffed> {
        (self.head.len() >= SNIFF_LEN).then(|| sniff::sniff(&self.head))
    }

    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        if self.head.len() < SNIFF_LEN {
            let take = (SNIFF_LEN - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(&chunk);
        self.bytes += chunk.len() as u64;
        self.upload.write(chunk).await
    }

    /// Commit the upload and move it to its content-addressed key.
    pub async fn finish(self) -> Result<Staged, StorageError> {
        let Stager {
            upload,
            storage,
            tmp_key,
            hasher,
            bytes,
            head,
        } = self;
        upload.finish().await?;
        let content_hash = hex::encode(hasher.finalize());
        let key = original_key(&content_hash);
        if storage.exists(&key).await? {
            storage.delete(&tmp_key).await?;
        } else {
            storage.rename(&tmp_key, &key).await?;
        }
        Ok(Staged {
            content_hash,
            key,
            bytes,
            sniffed: sniff::sniff(&head),
        })
    }

    pub async fn abort(self) {
        self.upload.abort().await;
    }
}

/// Store `bytes` as an original in one go (tests, benchmarks, small files).
pub async fn stage_bytes(storage: &Storage, bytes: Bytes) -> Result<Staged, StorageError> {
    let mut stager = Stager::begin(storage).await?;
    if let Err(err) = stager.write(bytes).await {
        stager.abort().await;
        return Err(err);
    }
    stager.finish().await
}

/// What the photo belongs to and how it is labelled.
#[derive(Debug, Clone, Default)]
pub struct NewPhoto {
    pub wedding_id: Uuid,
    /// Only a wedding of this organisation is accepted (`None`: any, for operators).
    pub org_scope: Option<String>,
    pub group: Option<String>,
    pub tag: Option<String>,
    pub filename: Option<String>,
}

/// The photo an upload resulted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    pub id: Uuid,
    /// The same content was already a photo of this wedding; `id` is that photo.
    pub duplicate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("wedding {0} does not exist")]
    UnknownWedding(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("the job args do not serialise: {0}")]
    Args(#[from] serde_json::Error),
}

/// Whether wedding `id` exists (within organisation `org`, when given).
pub async fn wedding_visible(
    pool: &PgPool,
    id: Uuid,
    org: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let found: Option<(String, i16)> = sqlx::query_as(sql::WEDDING_FOR_UPLOAD)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

/// Record `staged` as a photo of `new.wedding_id` and enqueue its processing (first in line
/// when the wedding is today in its own time zone), or find the photo that already has it.
pub async fn create_photo(
    pool: &PgPool,
    staged: &Staged,
    new: &NewPhoto,
) -> Result<Created, CreateError> {
    let mut tx = pool.begin().await?;
    let wedding: Option<(String, i16)> = sqlx::query_as(sql::WEDDING_FOR_UPLOAD)
        .bind(new.wedding_id)
        .bind(new.org_scope.as_deref())
        .fetch_optional(&mut *tx)
        .await?;
    let (org_id, priority) = wedding.ok_or(CreateError::UnknownWedding(new.wedding_id))?;
    let id = Uuid::new_v4();
    let inserted: Option<Uuid> = sqlx::query_scalar(sql::INSERT_PHOTO)
        .bind(id)
        .bind(&org_id)
        .bind(new.wedding_id)
        .bind(new.group.as_deref())
        .bind(new.tag.as_deref())
        .bind(new.filename.as_deref())
        .bind(&staged.content_hash)
        .bind(&staged.key)
        .bind(staged.bytes as i64)
        .bind(staged.format_name())
        .bind(priority)
        .fetch_optional(&mut *tx)
        .await?;
    if inserted.is_none() {
        let existing: Uuid = sqlx::query_scalar(sql::EXISTING_PHOTO)
            .bind(new.wedding_id)
            .bind(&staged.content_hash)
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        return Ok(Created {
            id: existing,
            duplicate: true,
        });
    }
    let job = PhotoProcess { photo_id: id }
        .to_new_job()?
        .with_priority(priority)
        .with_org(org_id)
        .with_unique_key(format!("{}:{id}", PhotoProcess::KIND));
    let enqueued = wedsync_queue::enqueue(&mut tx, job).await?;
    sqlx::query(sql::SET_JOB)
        .bind(id)
        .bind(enqueued.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Created {
        id,
        duplicate: false,
    })
}
