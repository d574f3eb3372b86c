//! Photo limits: the largest upload and the largest image (in pixels) accepted.

use super::SettingsError;
use super::source::Source;

/// `WEDSYNC_MAX_UPLOAD_BYTES` unless set: 50 MiB, more than any camera JPEG.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 50 * 1024 * 1024;
/// `WEDSYNC_MAX_PHOTO_PIXELS` unless set: 100 megapixels.
pub const DEFAULT_MAX_PHOTO_PIXELS: u64 = 100_000_000;
/// Upper bound of both settings: beyond it one photo could exhaust a worker's memory.
const MAX_LIMIT: u64 = 1 << 32;

/// Limits of the photo pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoSettings {
    /// `WEDSYNC_MAX_UPLOAD_BYTES`: larger uploads are refused with 413.
    pub max_upload_bytes: u64,
    /// `WEDSYNC_MAX_PHOTO_PIXELS`: images with more pixels fail before they are decoded.
    pub max_pixels: u64,
}

impl Default for PhotoSettings {
    fn default() -> Self {
        PhotoSettings {
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_pixels: DEFAULT_MAX_PHOTO_PIXELS,
        }
    }
}

impl PhotoSettings {
    pub(super) fn read(source: &Source<'_>) -> Result<PhotoSettings, SettingsError> {
        Ok(PhotoSettings {
            max_upload_bytes: positive(
                source,
                "WEDSYNC_MAX_UPLOAD_BYTES",
                DEFAULT_MAX_UPLOAD_BYTES,
            )?,
            max_pixels: positive(source, "WEDSYNC_MAX_PHOTO_PIXELS", DEFAULT_MAX_PHOTO_PIXELS)?,
        })
    }
}

fn positive(source: &Source<'_>, name: &'static str, default: u64) -> Result<u64, SettingsError> {
    match source.get(name, false)? {
        None => Ok(default),
        Some(v) => match v.raw.parse::<u64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(v.invalid(
                "is not a positive integer in range",
                &format!("an integer from 1 to {MAX_LIMIT}, e.g. {default}"),
            )),
        },
    }
}
