//! Encoding variants from raw pixels: nothing of the original's metadata (EXIF, GPS, XMP, ICC)
//! can reach an output, because the encoders only ever see pixels.

use super::Rgb;
use jpeg_encoder::{ColorType, Encoder};

/// JPEG quality of the variants (libjpeg scale).
pub const JPEG_QUALITY: u8 = 82;
/// WebP quality of the variants (lossy, libwebp scale).
pub const WEBP_QUALITY: f32 = 80.0;
/// libwebp's effort (0 fastest … 6 smallest). Its default, 4, spends most of a photo's time
/// on the 2560 px WebP; 2 is much faster for files a few per cent larger.
pub const WEBP_METHOD: i32 = 2;

pub fn jpeg(image: &Rgb) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let mut out = Vec::with_capacity(image.data.len() / 8);
    let encoder = Encoder::new(&mut out, JPEG_QUALITY);
    encoder.encode(
        &image.data,
        image.width as u16,
        image.height as u16,
        ColorType::Rgb,
    )?;
    Ok(out)
}

pub fn webp(image: &Rgb) -> Result<Vec<u8>, String> {
    let mut config = webp::WebPConfig::new()
        .map_err(|()| "libwebp rejected its default configuration".to_owned())?;
    config.quality = WEBP_QUALITY;
    config.method = WEBP_METHOD;
    webp::Encoder::from_rgb(&image.data, image.width, image.height)
        .encode_advanced(&config)
        .map(|encoded| encoded.to_vec())
        .map_err(|e| format!("{e:?}"))
}
