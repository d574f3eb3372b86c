//! Decoding an original to 8-bit RGB, with its EXIF orientation, under a pixel limit that is
//! checked from the header before any pixel buffer is allocated.
//!
//! JPEG goes through `zune-jpeg` directly (SIMD, and strict mode so a truncated file is an
//! error instead of a half-grey picture); PNG and WebP through the `image` crate with its
//! allocation limits set. Alpha is flattened onto white, since JPEG has none and a gallery shows
//! photos on white.

use super::sniff::Format;
use super::{Limits, Rejected, Rgb};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use std::io::Cursor;
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// A decoded original: pixels as stored (not yet rotated) and how to turn them upright.
pub struct Decoded {
    pub pixels: Rgb,
    pub orientation: Orientation,
}

pub fn decode(bytes: &[u8], format: Format, limits: &Limits) -> Result<Decoded, Rejected> {
    match format {
        Format::Jpeg => decode_jpeg(bytes, limits),
        Format::Png => decode_with_image(bytes, ImageFormat::Png, limits),
        Format::Webp => decode_with_image(bytes, ImageFormat::WebP, limits),
    }
}

/// Refuse `width × height` above the limit (decompression bombs) or empty.
fn check_pixels(width: usize, height: usize, limits: &Limits) -> Result<(), Rejected> {
    let pixels = width as u64 * height as u64;
    if pixels == 0 {
        return Err(Rejected(format!("the image is empty ({width}×{height})")));
    }
    if pixels > limits.max_pixels {
        return Err(Rejected(format!(
            "the image is {width}×{height} = {:.1} megapixels, above the limit of {:.1} \
             megapixels",
            pixels as f64 / 1e6,
            limits.max_pixels as f64 / 1e6
        )));
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<Decoded, Rejected> {
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| {
        Rejected(format!("the JPEG is truncated or corrupt: {e}"))
    };
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX))
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| Rejected("the JPEG has no frame header".to_owned()))?;
    check_pixels(width, height, limits)?;
    let orientation = decoder
        .exif()
        .and_then(|exif| Orientation::from_exif_chunk(exif))
        .unwrap_or(Orientation::NoTransforms);
    let out = decoder.output_colorspace();
    let data = decoder.decode().map_err(corrupt)?;
    let data = match out {
        Some(ColorSpace::Luma) => data.iter().flat_map(|&l| [l, l, l]).collect(),
        _ => data,
    };
    let pixels = Rgb::new(width as u32, height as u32, data)
        .ok_or_else(|| Rejected("the JPEG decoded to an unexpected pixel layout".to_owned()))?;
    Ok(Decoded {
        pixels,
        orientation,
    })
}

fn decode_with_image(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<Decoded, Rejected> {
    let name = format.extensions_str().first().copied().unwrap_or("image");
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(e) => Rejected(format!("the image exceeds a decoder limit: {e}")),
        e => Rejected(format!(
            "the {} is truncated or corrupt: {e}",
            name.to_ascii_uppercase()
        )),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(decoder_limits(limits));
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_pixels(width as usize, height as usize, limits)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    Ok(Decoded {
        pixels: flatten_on_white(image),
        orientation,
    })
}

/// The `image` crate's own limits, as a second line behind [`check_pixels`]: no allocation
/// larger than the biggest allowed image at 16-bit RGBA.
fn decoder_limits(limits: &Limits) -> image::Limits {
    let mut out = image::Limits::default();
    out.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    out
}

/// 8-bit RGB; transparent pixels are composited over white.
fn flatten_on_white(image: DynamicImage) -> Rgb {
    let (width, height) = (image.width(), image.height());
    if !image.color().has_alpha() {
        return Rgb::new(width, height, image.into_rgb8().into_raw()).expect("RGB layout");
    }
    let rgba = image.into_rgba8().into_raw();
    let mut data = Vec::with_capacity(rgba.len() / 4 * 3);
    for px in rgba.chunks_exact(4) {
        let alpha = u32::from(px[3]);
        for &c in &px[..3] {
            data.push(((u32::from(c) * alpha + 255 * (255 - alpha) + 127) / 255) as u8);
        }
    }
    Rgb::new(width, height, data).expect("RGB layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_transparent_red_becomes_pink() {
        let image = image::RgbaImage::from_pixel(2, 1, image::Rgba([255, 0, 0, 128]));
        let rgb = flatten_on_white(DynamicImage::ImageRgba8(image));
        assert_eq!(&rgb.data[..3], &[255, 127, 127]);
    }

    #[test]
    fn pixel_limit_is_checked_before_decoding() {
        let limits = Limits { max_pixels: 100 };
        assert!(check_pixels(10, 10, &limits).is_ok());
        let err = check_pixels(20_000, 20_000, &limits).unwrap_err();
        assert!(err.0.contains("20000×20000"), "{}", err.0);
        assert!(check_pixels(0, 10, &limits).is_err());
    }
}
