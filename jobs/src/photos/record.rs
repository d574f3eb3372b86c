//! Photo rows: reading them for the API and recording what processing did.

use super::pipeline::Variant;
use super::sql;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

/// A photo as stored and as `GET /v1/photos/{id}` returns it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Photo {
    pub id: Uuid,
    pub org_id: String,
    pub wedding_id: Uuid,
    #[serde(rename = "group")]
    pub photo_group: Option<String>,
    pub tag: Option<String>,
    pub filename: Option<String>,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: String,
    /// SHA-256 of the original, hex.
    pub content_hash: String,
    pub original_key: String,
    pub original_bytes: i64,
    /// The original's format as sniffed from its content.
    pub format: String,
    pub width: Option<i32>,
    pub height: Option<i32>,
    #[sqlx(json)]
    pub variants: Vec<VariantRecord>,
    /// Why processing failed, in words for the photographer.
    pub error: Option<String>,
    pub priority: i16,
    pub job_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// One stored variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantRecord {
    /// Nominal long edge: 320, 1280 or 2560.
    pub size: u32,
    /// `jpeg` or `webp`.
    pub format: String,
    /// Storage key.
    pub key: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// The storage key of a variant: deterministic, so a re-run overwrites instead of adding.
pub fn variant_key(photo: Uuid, variant: &Variant) -> String {
    format!(
        "variants/{photo}/{}.{}",
        variant.size,
        variant.format.extension()
    )
}

/// The storage key of an original: its content hash, so equal bytes are stored once.
pub fn original_key(content_hash: &str) -> String {
    format!("originals/{content_hash}")
}

/// Photo `id`, limited to organisation `org` when given.
pub async fn find(
    pool: &PgPool,
    id: Uuid,
    org: Option<&str>,
) -> Result<Option<Photo>, sqlx::Error> {
    sqlx::query_as::<_, Photo>(sql::FIND_PHOTO)
        .bind(id)
        .bind(org)
        .fetch_optional(pool)
        .await
}

/// Mark `id` processing; its original's key and format, or `None` if the photo is gone.
pub async fn start_processing(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(sql::START_PROCESSING)
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn mark_ready(
    pool: &PgPool,
    id: Uuid,
    width: u32,
    height: u32,
    variants: &[VariantRecord],
) -> Result<(), sqlx::Error> {
    sqlx::query(sql::MARK_READY)
        .bind(id)
        .bind(width as i32)
        .bind(height as i32)
        .bind(sqlx::types::Json(variants))
        .execute(pool)
        .await
        .map(drop)
}

pub async fn mark_failed(pool: &PgPool, id: Uuid, reason: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sql::MARK_FAILED)
        .bind(id)
        .bind(reason)
        .execute(pool)
        .await
        .map(drop)
}
