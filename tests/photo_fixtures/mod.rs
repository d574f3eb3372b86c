//! Test photos made in the test: a picture with structure (four coloured quadrants over a
//! gradient) as a camera-style JPEG with an EXIF block (orientation + a GPS position), a PNG
//! with alpha, and the broken files the pipeline must refuse.
#![allow(dead_code)]

use image::{Rgb, RgbImage, Rgba, RgbaImage};

/// Quadrant colours of the upright picture: top-left, top-right, bottom-left, bottom-right.
pub const QUADRANTS: [[u8; 3]; 4] = [[220, 30, 30], [30, 200, 40], [30, 40, 220], [230, 220, 30]];

/// The upright picture, `width × height`, with `seed` varying a few pixels so that photos made
/// with different seeds have different bytes.
pub fn upright(width: u32, height: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let q = usize::from(x >= width / 2) + 2 * usize::from(y >= height / 2);
        let shade = ((x + y) % 16) as u8;
        let [r, g, b] = QUADRANTS[q];
        let mut px = [
            r.saturating_sub(shade),
            g.saturating_sub(shade),
            b.saturating_sub(shade),
        ];
        if x == seed % width && y == 0 {
            px = [(seed % 251) as u8, 0, 0];
        }
        Rgb(px)
    })
}

/// The pixels a camera stores for an upright scene shot with EXIF `orientation` (1, 3, 6, 8):
/// turning them as the tag says gives `upright` back.
pub fn stored_for(upright: &RgbImage, orientation: u16) -> RgbImage {
    match orientation {
        1 => upright.clone(),
        3 => image::imageops::rotate180(upright),
        // 6: the viewer turns 90° clockwise, so the sensor holds it turned 90° counter-clockwise.
        6 => image::imageops::rotate270(upright),
        8 => image::imageops::rotate90(upright),
        other => panic!("no fixture for orientation {other}"),
    }
}

/// An EXIF APP1 payload (little-endian TIFF) with an orientation and a GPS latitude.
pub fn exif_block(orientation: u16) -> Vec<u8> {
    let mut e = b"Exif\0\0II\x2a\0".to_vec();
    e.extend(8u32.to_le_bytes()); // IFD0 offset
    e.extend(2u16.to_le_bytes()); // two entries
    e.extend(0x0112u16.to_le_bytes()); // Orientation, SHORT, 1
    e.extend(3u16.to_le_bytes());
    e.extend(1u32.to_le_bytes());
    e.extend(orientation.to_le_bytes());
    e.extend([0, 0]);
    e.extend(0x8825u16.to_le_bytes()); // GPS IFD pointer, LONG, 1
    e.extend(4u16.to_le_bytes());
    e.extend(1u32.to_le_bytes());
    e.extend(38u32.to_le_bytes());
    e.extend(0u32.to_le_bytes()); // no next IFD
    e.extend(1u16.to_le_bytes()); // GPS IFD at 38: GPSLatitudeRef = "N"
    e.extend(0x0001u16.to_le_bytes());
    e.extend(2u16.to_le_bytes());
    e.extend(2u32.to_le_bytes());
    e.extend(*b"N\0\0\0");
    e.extend(0u32.to_le_bytes());
    e.extend(b"GPSMARKER-51.5N");
    e
}

/// A JPEG of `pixels` carrying [`exif_block`]`(orientation)`, like a camera writes it.
pub fn camera_jpeg(pixels: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut out, 92);
    encoder.add_app_segment(1, exif_block(orientation)).unwrap();
    encoder
        .encode(
            pixels.as_raw(),
            pixels.width() as u16,
            pixels.height() as u16,
            jpeg_encoder::ColorType::Rgb,
        )
        .unwrap();
    out
}

/// A JPEG of the upright picture with orientation 1 and `seed`.
pub fn plain_jpeg(width: u32, height: u32, seed: u32) -> Vec<u8> {
    camera_jpeg(&upright(width, height, seed), 1)
}

/// A PNG whose left half is fully transparent and right half opaque red.
pub fn half_transparent_png(width: u32, height: u32) -> Vec<u8> {
    let image = RgbaImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([255, 0, 0, 255])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A PNG whose header says `width × height` (8-bit grey) but carries only a sliver of data: a
/// decompression bomb as far as a decoder that trusts the header is concerned.
pub fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit greyscale, deflate, no filter, no interlace
    // zlib stream of a few zero bytes (stored block): the start of the first rows.
    let idat = [0x78, 0x01, 0x01, 0x04, 0x00, 0xfb, 0xff, 0, 0, 0, 0];
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &idat), (b"IEND", &[])] {
        png.extend((data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend(data);
        png.extend(&chunk);
        png.extend(crc32(&chunk).to_be_bytes());
    }
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The JPEG segments before the image data, as (marker, payload).
pub fn jpeg_segments(jpeg: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        let marker = jpeg[i + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
        out.push((marker, jpeg[i + 4..i + 2 + len].to_vec()));
        if marker == 0xDA {
            break;
        }
        i += 2 + len;
    }
    out
}

/// Whether `pixel` is within `tolerance` of `expected` on every channel.
pub fn close(pixel: [u8; 3], expected: [u8; 3], tolerance: u8) -> bool {
    pixel
        .iter()
        .zip(expected)
        .all(|(&a, b)| a.abs_diff(b) <= tolerance)
}
