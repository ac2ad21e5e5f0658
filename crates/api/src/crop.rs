//! A face's crop: the part of the photo inside its box, as the JPEG kept with its token.

use facerec::BoundingBox;
use image::DynamicImage;
use image::codecs::jpeg::JpegEncoder;

use crate::ApiError;

/// The part of `image` inside `bbox` (clamped to the image), as JPEG (quality 90).
pub(crate) fn encode_crop(image: &DynamicImage, bbox: &BoundingBox) -> Result<Vec<u8>, ApiError> {
    let (x1, y1, x2, y2) = clamp_box(bbox, image.width(), image.height());
    let crop = image.crop_imm(x1, y1, x2 - x1, y2 - y1).to_rgb8();
    let mut bytes = Vec::new();
    crop.write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 90))
        .map_err(|e| ApiError::Internal(format!("encoding a {}x{} crop: {e}", x2 - x1, y2 - y1)))?;
    Ok(bytes)
}

/// `bbox` rounded outwards and clamped to a `width` x `height` image, at least 1 px a side.
pub(crate) fn clamp_box(bbox: &BoundingBox, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let clamp = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let x1 = clamp(bbox.x1.floor(), width.saturating_sub(1));
    let y1 = clamp(bbox.y1.floor(), height.saturating_sub(1));
    let x2 = clamp(bbox.x2.ceil(), width).max(x1 + 1);
    let y2 = clamp(bbox.y2.ceil(), height).max(y1 + 1);
    (x1, y1, x2, y2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_clamped_to_the_image() {
        let b = BoundingBox {
            x1: -5.5,
            y1: 10.2,
            x2: 120.0,
            y2: 30.7,
        };
        assert_eq!(clamp_box(&b, 100, 100), (0, 10, 100, 31));
        let outside = BoundingBox {
            x1: 200.0,
            y1: 200.0,
            x2: 250.0,
            y2: 250.0,
        };
        assert_eq!(clamp_box(&outside, 100, 100), (99, 99, 100, 100));
    }
}
