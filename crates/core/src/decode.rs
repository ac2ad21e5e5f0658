//! Turning uploaded bytes into an upright image, refusing anything that is not a sane JPEG or
//! PNG before it can cost memory.

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::{DynamicImage, ImageDecoder};

use crate::{Error, Result};

/// Bounds on what [`decode_image`] accepts. The defaults are the original Face API's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted file, in bytes (default 2 MiB).
    pub max_bytes: usize,
    /// Smallest accepted width and height, in pixels (default 48).
    pub min_side: u32,
    /// Largest accepted width and height, in pixels (default 4096).
    pub max_side: u32,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_bytes: 2 * 1024 * 1024,
            min_side: 48,
            max_side: 4096,
        }
    }
}

/// The image formats accepted, recognised by their content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (`89 50 4E 47 0D 0A 1A 0A`).
    Png,
}

/// Names the format of `bytes` from its first bytes, whatever the file is called.
pub fn sniff_format(bytes: &[u8]) -> std::result::Result<ImageFormat, &'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"RIFF", "RIFF/WebP"),
        (b"II*\0", "TIFF"),
        (b"MM\0*", "TIFF"),
        (b"%PDF", "PDF"),
    ];
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageFormat::Jpeg);
    }
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Ok(ImageFormat::Png);
    }
    if bytes.is_empty() {
        return Err("empty");
    }
    Err(SIGNATURES
        .iter()
        .find(|(sig, _)| bytes.starts_with(sig))
        .map_or("unknown", |(_, name)| *name))
}

/// Decodes a JPEG or PNG (recognised by content, not name), checks its size against `limits`
/// before decoding any pixel, and applies the EXIF orientation so the result is upright.
///
/// ```
/// use facerec::{DecodeLimits, Error, decode_image};
///
/// let bytes = std::fs::read(facerec_fixtures::photo("obama.jpg")).unwrap();
/// let image = decode_image(&bytes, &DecodeLimits::default())?;
/// assert_eq!((image.width(), image.height()), (910, 1137));
/// assert!(matches!(decode_image(b"GIF89a...", &DecodeLimits::default()), Err(Error::UnsupportedFormat { .. })));
/// # Ok::<(), facerec::Error>(())
/// ```
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<DynamicImage> {
    if bytes.len() > limits.max_bytes {
        return Err(Error::FileTooLarge {
            bytes: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = sniff_format(bytes).map_err(|found| Error::UnsupportedFormat { found })?;
    match format {
        ImageFormat::Jpeg => {
            if !jpeg_is_complete(bytes) {
                return Err(Error::Corrupt(image::ImageError::IoError(
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the JPEG is truncated (no end-of-image marker)",
                    ),
                )));
            }
            let decoder = JpegDecoder::new(Cursor::new(bytes)).map_err(Error::Corrupt)?;
            finish(decoder, limits)
        }
        ImageFormat::Png => {
            let decoder = PngDecoder::new(Cursor::new(bytes)).map_err(Error::Corrupt)?;
            finish(decoder, limits)
        }
    }
}

fn finish(mut decoder: impl ImageDecoder, limits: &DecodeLimits) -> Result<DynamicImage> {
    let (width, height) = decoder.dimensions();
    if width > limits.max_side || height > limits.max_side {
        return Err(Error::TooLarge {
            width,
            height,
            max: limits.max_side,
        });
    }
    if width < limits.min_side || height < limits.min_side {
        return Err(Error::TooSmall {
            width,
            height,
            min: limits.min_side,
        });
    }
    let orientation = decoder.orientation().map_err(Error::Corrupt)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(Error::Corrupt)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// A JPEG ends with the EOI marker `FF D9`; cameras and editors may append a little after it,
/// so look near the end rather than only at the last two bytes. The decoder alone would pad a
/// truncated file with grey and call it a success.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_content() {
        assert_eq!(
            sniff_format(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Ok(ImageFormat::Jpeg)
        );
        assert_eq!(sniff_format(b"\x89PNG\r\n\x1a\n...."), Ok(ImageFormat::Png));
        assert_eq!(sniff_format(b"GIF89a...."), Err("GIF"));
        assert_eq!(sniff_format(b"hello"), Err("unknown"));
        assert_eq!(sniff_format(b""), Err("empty"));
    }

    #[test]
    fn corrupt_images_keep_the_decoder_error_as_source() {
        let err =
            decode_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0], &DecodeLimits::default()).unwrap_err();
        let Error::Corrupt(image::ImageError::IoError(io)) = &err else {
            panic!("{err}");
        };
        assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
        assert!(err.to_string().contains("truncated"), "{err}");

        let err =
            decode_image(b"\x89PNG\r\n\x1a\nnot a PNG", &DecodeLimits::default()).unwrap_err();
        assert!(matches!(err, Error::Corrupt(_)), "{err}");
        let source = std::error::Error::source(&err).unwrap();
        assert!(source.is::<image::ImageError>(), "{source}");
    }

    #[test]
    fn oversized_files_are_refused_before_decoding() {
        let limits = DecodeLimits {
            max_bytes: 10,
            ..DecodeLimits::default()
        };
        let err = decode_image(&[0u8; 11], &limits).unwrap_err();
        assert!(
            matches!(err, Error::FileTooLarge { bytes: 11, max: 10 }),
            "{err}"
        );
    }
}
