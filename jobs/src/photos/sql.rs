//! Every statement of the photo family.

/// Photo `$1` (as [`super::record::Photo`]), limited to organisation `$2` unless it is NULL.
pub const FIND_PHOTO: &str = "
SELECT id, org_id, wedding_id, photo_group, tag, filename, status, content_hash, original_key,
       original_bytes, format, width, height, variants, error, priority, job_id, created_at,
       updated_at, processed_at
  FROM photos
 WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)";

/// The wedding a photo is uploaded to, within the caller's organisation (`$2` NULL = any), and
/// the priority its photos get: 0 (first) when its local date, in its own time zone, is today.
pub const WEDDING_FOR_UPLOAD: &str = "
SELECT org_id,
       CASE WHEN (now() AT TIME ZONE timezone)::date = local_date THEN 0 ELSE 5 END::smallint
  FROM weddings
 WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)";

/// A new photo; nothing when the same content is already a photo of this wedding.
pub const INSERT_PHOTO: &str = "
INSERT INTO photos (id, org_id, wedding_id, photo_group, tag, filename, content_hash,
                    original_key, original_bytes, format, priority)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (wedding_id, content_hash) DO NOTHING
RETURNING id";

pub const EXISTING_PHOTO: &str =
    "SELECT id FROM photos WHERE wedding_id = $1 AND content_hash = $2";

pub const SET_JOB: &str = "UPDATE photos SET job_id = $2 WHERE id = $1";

/// Start of an attempt: the photo's original, marked processing.
pub const START_PROCESSING: &str = "
UPDATE photos SET status = 'processing', updated_at = now()
 WHERE id = $1
RETURNING original_key, format";

pub const MARK_READY: &str = "
UPDATE photos
   SET status = 'ready', width = $2, height = $3, variants = $4, error = NULL,
       processed_at = now(), updated_at = now()
 WHERE id = $1";

pub const MARK_FAILED: &str = "
UPDATE photos
   SET status = 'failed', error = $2, variants = '[]', width = NULL, height = NULL,
       processed_at = now(), updated_at = now()
 WHERE id = $1";

/// Failed photos past the grace period (`$1` days), at most `$2`, locked for this cleanup.
pub const LOCK_EXPIRED_FAILED: &str = "
SELECT id, original_key FROM photos
 WHERE status = 'failed' AND updated_at < now() - make_interval(days => $1::int)
 LIMIT $2::bigint
   FOR UPDATE SKIP LOCKED";

/// Which of the originals `$2` a photo other than `$1` still refers to.
pub const ORIGINALS_STILL_USED: &str = "
SELECT DISTINCT original_key FROM photos
 WHERE original_key = ANY($2::text[]) AND NOT (id = ANY($1::uuid[]))";

pub const DELETE_PHOTOS: &str = "DELETE FROM photos WHERE id = ANY($1::uuid[])";
