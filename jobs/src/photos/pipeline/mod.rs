//! The image pipeline of `photo_process`: sniff → decode once (pixel limit checked from the
//! header first) → resize chain 2560 → 1280 → 320 → turn each variant upright (EXIF
//! orientation) → encode JPEG and WebP from raw pixels (so no metadata survives).
//!
//! Everything here is synchronous CPU work; [`process_blocking`] runs it on tokio's blocking
//! pool behind a semaphore sized to the CPU cores, so the async worker stays responsive and at
//! most one full-size image per core is in memory at a time, whatever the queue concurrency.

pub mod decode;
pub mod encode;
pub mod resize;
pub mod sniff;

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use sniff::{Format, SNIFF_LEN, Sniffed};
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// The largest original accepted by default, in pixels (100 MP: larger than any camera).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// Limits applied before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Originals with more pixels than this are refused from their header.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// Why an original cannot be processed, in words for the photographer; never worth a retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// An 8-bit RGB image, rows top to bottom, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct Rgb {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl Rgb {
    /// `None` unless `data` holds exactly `width × height` RGB pixels.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Option<Rgb> {
        (data.len() as u64 == u64::from(width) * u64::from(height) * 3).then_some(Rgb {
            width,
            height,
            data,
        })
    }

    /// This image turned as `orientation` says, so it displays upright without metadata.
    fn upright(self, orientation: Orientation) -> Rgb {
        if orientation == Orientation::NoTransforms {
            return self;
        }
        let buffer = RgbImage::from_raw(self.width, self.height, self.data).expect("RGB layout");
        let mut image = DynamicImage::ImageRgb8(buffer);
        image.apply_orientation(orientation);
        let buffer = image.into_rgb8();
        let (width, height) = buffer.dimensions();
        Rgb {
            width,
            height,
            data: buffer.into_raw(),
        }
    }
}

/// One encoded variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The nominal long-edge size (320, 1280, 2560).
    pub size: u32,
    pub format: VariantFormat,
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantFormat {
    Jpeg,
    Webp,
}

impl VariantFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VariantFormat::Jpeg => "jpeg",
            VariantFormat::Webp => "webp",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            VariantFormat::Jpeg => "jpg",
            VariantFormat::Webp => "webp",
        }
    }
}

/// Which encodings to produce (the benchmark compares JPEG alone with libvips).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs {
    pub jpeg: bool,
    pub webp: bool,
}

impl Outputs {
    pub const ALL: Outputs = Outputs {
        jpeg: true,
        webp: true,
    };
}

/// The result of processing one original.
#[derive(Debug, Clone)]
pub struct Processed {
    pub format: Format,
    /// The original's upright dimensions.
    pub width: u32,
    pub height: u32,
    /// Largest first; JPEG before WebP for each size.
    pub variants: Vec<Variant>,
}

/// Process `original` completely, synchronously.
pub fn process(original: &[u8], limits: &Limits, outputs: Outputs) -> Result<Processed, Rejected> {
    let head = &original[..original.len().min(SNIFF_LEN)];
    let format = match sniff::sniff(head) {
        Sniffed::Supported(format) => format,
        other => return Err(Rejected(sniff::refusal(other).unwrap_or_default())),
    };
    let decoded = decode::decode(original, format, limits)?;
    let turned = matches!(
        decoded.orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (stored_w, stored_h) = (decoded.pixels.width, decoded.pixels.height);
    let (width, height) = if turned {
        (stored_h, stored_w)
    } else {
        (stored_w, stored_h)
    };
    // Resize in stored orientation and turn only the (much smaller) variants upright.
    let steps = resize::plan(stored_w, stored_h);
    let mut variants = Vec::with_capacity(steps.len() * 2);
    for (step, pixels) in resize::chain(decoded.pixels, &steps) {
        let upright = pixels.upright(decoded.orientation);
        let mut push = |format, bytes: Vec<u8>| {
            variants.push(Variant {
                size: step.size,
                format,
                width: upright.width,
                height: upright.height,
                bytes,
            })
        };
        if outputs.jpeg {
            let bytes = encode::jpeg(&upright)
                .map_err(|e| Rejected(format!("encoding a JPEG variant failed: {e}")))?;
            push(VariantFormat::Jpeg, bytes);
        }
        if outputs.webp {
            let bytes = encode::webp(&upright)
                .map_err(|e| Rejected(format!("encoding a WebP variant failed: {e}")))?;
            push(VariantFormat::Webp, bytes);
        }
    }
    Ok(Processed {
        format,
        width,
        height,
        variants,
    })
}

/// Permits for CPU-heavy pipelines: one per core.
static CPU_SLOTS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// How running the pipeline off the async runtime can end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The pipeline panicked (a decoder bug on a hostile file); retrying would do the same.
    #[error("the image could not be processed (the decoder failed unexpectedly)")]
    Crashed,
}

/// [`process`] on the blocking pool, at most one per core at a time.
pub async fn process_blocking(
    original: bytes::Bytes,
    limits: Limits,
    outputs: Outputs,
) -> Result<Processed, PipelineError> {
    let _permit = CPU_SLOTS
        .acquire()
        .await
        .expect("the semaphore is never closed");
    match tokio::task::spawn_blocking(move || process(&original, &limits, outputs)).await {
        Ok(result) => Ok(result?),
        Err(join) => {
            tracing::error!(error = %join, "photo pipeline panicked");
            Err(PipelineError::Crashed)
        }
    }
}
