//! `/v1/photos`: upload an original (multipart) and follow its processing (SPEC §3, §5.2).
//!
//! `POST /v1/photos` takes `multipart/form-data` with the parts `file` (the photo), `wedding_id`
//! and optionally `group` and `tag`. The file is streamed to storage while it is hashed (never
//! buffered whole), and what it is comes from its first bytes, not from its name or part header:
//! anything but JPEG, PNG or WebP is 415 `UNSUPPORTED_MEDIA_TYPE`; more than the configured size
//! is 413 `PAYLOAD_TOO_LARGE`. A new photo is `201 Created` with `"duplicate": false`; the same
//! bytes uploaded again to the same wedding create nothing and answer `200 OK` with the existing
//! photo and `"duplicate": true`.
//!
//! Planners upload to, and read, their own organisation's weddings only; another organisation's
//! wedding or photo is indistinguishable from one that does not exist.

use crate::ApiState;
use crate::auth::Principal;
use crate::error::{ApiError, FieldError};
use crate::extract::{Json, Path};
use crate::routes::Route;
use crate::state::PhotoUploads;
use axum::extract::multipart::{Field, MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use serde::Serialize;
use uuid::Uuid;
use wedsync_kinds::photos::ingest::{self, CreateError, NewPhoto, Stager};
use wedsync_kinds::photos::pipeline::sniff::{self, Sniffed};
use wedsync_kinds::photos::record::{self, Photo};

/// Longest accepted text part (`wedding_id`, `group`, `tag`).
const MAX_TEXT_PART: usize = 255;
/// Room for part headers and boundaries on top of the file itself.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

pub fn routes() -> Vec<Route> {
    vec![
        // The global 1 MiB limit does not fit photos; the handler enforces the configured one.
        (
            "/v1/photos",
            post(upload).layer(DefaultBodyLimit::disable()),
        ),
        ("/v1/photos/{id}", get(show)),
    ]
}

/// A photo as returned by `POST /v1/photos`.
#[derive(Debug, Serialize)]
pub struct Uploaded {
    #[serde(flatten)]
    pub photo: Photo,
    pub duplicate: bool,
}

async fn upload(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Uploaded>), ApiError> {
    let photos = state.photos.clone().ok_or_else(|| {
        ApiError::internal("photo uploads are not configured (no storage) in this process")
    })?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > photos.max_upload_bytes + MULTIPART_OVERHEAD) {
        return Err(too_large(&photos));
    }
    let multipart = multipart.map_err(|_| {
        ApiError::UnsupportedMediaType(
            "expected a `multipart/form-data` body with the parts file, wedding_id, group, tag"
                .to_owned(),
        )
    })?;
    let mut parts = Parts::default();
    if let Err(err) = read_parts(multipart, &photos, &mut parts).await {
        if let Some(stager) = parts.file.take() {
            stager.abort().await;
        }
        return Err(err);
    }
    let Parts {
        file,
        filename,
        wedding_id,
        group,
        tag,
    } = parts;
    let mut errors = Vec::new();
    if file.is_none() {
        errors.push(FieldError::new("file", "is required: the photo to upload"));
    }
    let wedding_id = match wedding_id.as_deref().map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            errors.push(FieldError::new("wedding_id", "must be a UUID"));
            None
        }
        None => {
            errors.push(FieldError::new("wedding_id", "is required"));
            None
        }
    };
    let (stager, wedding_id) = match (file, wedding_id) {
        (Some(stager), Some(id)) if errors.is_empty() => (stager, id),
        (file, _) => {
            if let Some(stager) = file {
                stager.abort().await;
            }
            return Err(ApiError::invalid(errors));
        }
    };
    let new = NewPhoto {
        wedding_id,
        org_scope: principal.org_scope().map(str::to_owned),
        group,
        tag,
        filename,
    };
    // Checked before the original is committed, so a refused upload leaves nothing behind.
    if !ingest::wedding_visible(&state.pool, wedding_id, new.org_scope.as_deref()).await? {
        stager.abort().await;
        return Err(unknown_wedding(wedding_id));
    }
    let staged = stager.finish().await.map_err(ApiError::internal)?;
    let created = match ingest::create_photo(&state.pool, &staged, &new).await {
        Ok(created) => created,
        Err(CreateError::UnknownWedding(id)) => return Err(unknown_wedding(id)),
        Err(other) => return Err(ApiError::internal(other)),
    };
    let photo = record::find(&state.pool, created.id, None)
        .await?
        .ok_or_else(|| ApiError::internal("the photo just created is gone"))?;
    tracing::info!(
        photo_id = %photo.id,
        wedding_id = %photo.wedding_id,
        bytes = photo.original_bytes,
        duplicate = created.duplicate,
        "photo uploaded"
    );
    let status = if created.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Uploaded {
            photo,
            duplicate: created.duplicate,
        }),
    ))
}

fn unknown_wedding(id: Uuid) -> ApiError {
    ApiError::invalid_field("wedding_id", format!("wedding {id} does not exist"))
}

#[derive(Default)]
struct Parts {
    file: Option<Stager>,
    filename: Option<String>,
    wedding_id: Option<String>,
    group: Option<String>,
    tag: Option<String>,
}

async fn read_parts(
    mut multipart: Multipart,
    photos: &PhotoUploads,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(e, photos))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if parts.file.is_some() {
                    return Err(ApiError::invalid_field("file", "only one file per request"));
                }
                parts.filename = field
                    .file_name()
                    .map(|n| n.chars().take(MAX_TEXT_PART).collect());
                let stager = Stager::begin(&photos.storage)
                    .await
                    .map_err(ApiError::internal)?;
                parts.file = Some(stager);
                stream_file(field, photos, parts.file.as_mut().expect("just set")).await?;
            }
            "wedding_id" => parts.wedding_id = Some(text(field, &name, photos).await?),
            "group" => parts.group = Some(text(field, &name, photos).await?),
            "tag" => parts.tag = Some(text(field, &name, photos).await?),
            other => {
                return Err(ApiError::invalid_field(
                    other,
                    "unknown part; expected file, wedding_id, group, tag",
                ));
            }
        }
    }
    Ok(())
}

/// Stream the file part into `stager`, refusing it as soon as its first bytes show it is no
/// supported image or it grows past the limit.
async fn stream_file(
    mut field: Field<'_>,
    photos: &PhotoUploads,
    stager: &mut Stager,
) -> Result<(), ApiError> {
    let mut checked = false;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, photos))?
    {
        if stager.len() + chunk.len() as u64 > photos.max_upload_bytes {
            return Err(too_large(photos));
        }
        stager.write(chunk).await.map_err(ApiError::internal)?;
        if !checked && let Some(sniffed) = stager.sniffed() {
            refuse_unless_supported(sniffed)?;
            checked = true;
        }
    }
    if stager.is_empty() {
        return Err(ApiError::invalid_field("file", "is empty"));
    }
    if !checked {
        // Shorter than the sniffing window: no image is that small.
        refuse_unless_supported(Sniffed::NotAnImage)?;
    }
    Ok(())
}

fn refuse_unless_supported(sniffed: Sniffed) -> Result<(), ApiError> {
    match sniff::refusal(sniffed) {
        None => Ok(()),
        Some(reason) => Err(ApiError::UnsupportedMediaType(reason)),
    }
}

/// A short text part, trimmed; longer than [`MAX_TEXT_PART`] is a 422.
async fn text(mut field: Field<'_>, name: &str, photos: &PhotoUploads) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| multipart_error(e, photos))?
    {
        if bytes.len() + chunk.len() > MAX_TEXT_PART {
            return Err(ApiError::invalid_field(
                name,
                format!("must be at most {MAX_TEXT_PART} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| ApiError::invalid_field(name, "must be UTF-8 text"))?;
    Ok(text.trim().to_owned())
}

fn multipart_error(err: MultipartError, photos: &PhotoUploads) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(photos)
    } else {
        ApiError::BadRequest(format!(
            "the multipart body could not be read: {}",
            err.body_text()
        ))
    }
}

fn too_large(photos: &PhotoUploads) -> ApiError {
    ApiError::PayloadTooLarge {
        limit: usize::try_from(photos.max_upload_bytes).unwrap_or(usize::MAX),
    }
}

async fn show(
    State(state): State<ApiState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Photo>, ApiError> {
    let not_found = || ApiError::NotFound(format!("photo {id} not found"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    record::find(&state.pool, uuid, principal.org_scope())
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
