//! A face's crop: the part of the photo inside its box, as the JPEG kept with its token.

use facerec::BoundingBox;
use image::DynamicImage;
use jpeg_encoder::{ColorType, Encoder};

use crate::ApiError;

/// The part of `image` inside `bbox` (clamped to the image), as JPEG (quality 90).
pub(crate) fn encode_crop(image: &DynamicImage, bbox: &BoundingBox) -> Result<Vec<u8>, ApiError> {
    let (x1, y1, x2, y2) = clamp_box(bbox, image.width(), image.height());
    let (w, h) = (x2 - x1, y2 - y1);
    let failed =
        |e: &dyn std::fmt::Display| ApiError::Internal(format!("encoding a {w}x{h} crop: {e}"));
    let side = |v: u32| u16::try_from(v).map_err(|e| failed(&e));
    let (jw, jh) = (side(w)?, side(h)?);
    let crop = image.crop_imm(x1, y1, w, h).to_rgb8();
    let mut bytes = Vec::new();
    Encoder::new(&mut bytes, 90)
        .encode(crop.as_raw(), jw, jh, ColorType::Rgb)
        .map_err(|e| failed(&e))?;
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
    fn crops_decode_to_the_box_with_the_photo_inside() {
        // Left half red, right half blue; the box straddles the edge and the image's border.
        let photo = image::RgbImage::from_fn(64, 48, |x, _| {
            if x < 32 {
                image::Rgb([220, 20, 20])
            } else {
                image::Rgb([20, 20, 220])
            }
        });
        let bbox = BoundingBox {
            x1: 16.4,
            y1: -3.0,
            x2: 47.2,
            y2: 30.0,
        };
        let bytes = encode_crop(&DynamicImage::ImageRgb8(photo), &bbox).unwrap();
        let crop = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        assert_eq!(crop.dimensions(), (32, 30));
        let near =
            |p: &image::Rgb<u8>, q: [u8; 3]| p.0.iter().zip(q).all(|(a, b)| a.abs_diff(b) <= 8);
        assert!(
            near(crop.get_pixel(4, 15), [220, 20, 20]),
            "{:?}",
            crop.get_pixel(4, 15)
        );
        assert!(
            near(crop.get_pixel(27, 15), [20, 20, 220]),
            "{:?}",
            crop.get_pixel(27, 15)
        );
    }

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
