//! What a file is, from its first bytes (never from its name or a `Content-Type` header).

use std::fmt;

/// How many leading bytes [`sniff`] needs to decide.
pub const SNIFF_LEN: usize = 12;

/// The formats the pipeline decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::Webp => "webp",
        }
    }

    pub fn parse(name: &str) -> Option<Format> {
        [Format::Jpeg, Format::Png, Format::Webp]
            .into_iter()
            .find(|f| f.as_str() == name)
    }

    /// The media type of an original in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the first bytes of a file say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Supported(Format),
    /// An image format we recognise but do not decode (named for the message).
    Unsupported(&'static str),
    NotAnImage,
}

/// Classify `head`, the first [`SNIFF_LEN`] bytes of a file (fewer if the file is shorter).
pub fn sniff(head: &[u8]) -> Sniffed {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if at(0, &[0xFF, 0xD8, 0xFF]) {
        Sniffed::Supported(Format::Jpeg)
    } else if at(0, b"\x89PNG\r\n\x1a\n") {
        Sniffed::Supported(Format::Png)
    } else if at(0, b"RIFF") && at(8, b"WEBP") {
        Sniffed::Supported(Format::Webp)
    } else if at(0, b"GIF87a") || at(0, b"GIF89a") {
        Sniffed::Unsupported("GIF")
    } else if at(0, b"BM") {
        Sniffed::Unsupported("BMP")
    } else if at(0, b"II*\0") || at(0, b"MM\0*") {
        Sniffed::Unsupported("TIFF (or a camera raw file)")
    } else if at(4, b"ftyp") {
        Sniffed::Unsupported("HEIC/AVIF")
    } else {
        Sniffed::NotAnImage
    }
}

/// The human-readable refusal for a sniff that is not a supported format.
pub fn refusal(sniffed: Sniffed) -> Option<String> {
    match sniffed {
        Sniffed::Supported(_) => None,
        Sniffed::Unsupported(name) => Some(format!(
            "unsupported image format: {name}; upload JPEG, PNG or WebP"
        )),
        Sniffed::NotAnImage => Some(
            "not an image: the content is not JPEG, PNG or WebP (whatever its name says)"
                .to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_decide() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE1]),
            Sniffed::Supported(Format::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\x0d"),
            Sniffed::Supported(Format::Png)
        );
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Sniffed::Supported(Format::Webp)
        );
        assert_eq!(sniff(b"GIF89a"), Sniffed::Unsupported("GIF"));
        assert_eq!(sniff(b"hello, world"), Sniffed::NotAnImage);
        assert_eq!(sniff(b""), Sniffed::NotAnImage);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), Sniffed::NotAnImage);
    }
}
