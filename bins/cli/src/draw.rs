//! Drawing detections onto a photo, for people who would rather look than read.

use facerec::Face;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

/// The photo with each face's box (green, thicker on larger photos) and its five landmarks
/// (red eyes, yellow nose, blue mouth corners).
pub fn faces(image: &RgbImage, faces: &[Face]) -> RgbImage {
    let mut out = image.clone();
    let thickness = (image.width().max(image.height()) / 500).max(1) as i32;
    for face in faces {
        let b = face.bbox;
        for t in 0..thickness {
            let (x, y) = (b.x1.round() as i32 - t, b.y1.round() as i32 - t);
            let (w, h) = (
                b.width().round() as i32 + 2 * t,
                b.height().round() as i32 + 2 * t,
            );
            if w > 0 && h > 0 {
                draw_hollow_rect_mut(
                    &mut out,
                    Rect::at(x, y).of_size(w as u32, h as u32),
                    Rgb([0, 230, 0]),
                );
            }
        }
        let colours = [
            [230, 0, 0],
            [230, 0, 0],
            [240, 220, 0],
            [0, 90, 255],
            [0, 90, 255],
        ];
        for (p, c) in face.landmarks.iter().zip(colours) {
            draw_filled_circle_mut(
                &mut out,
                (p[0].round() as i32, p[1].round() as i32),
                thickness + 1,
                Rgb(c),
            );
        }
    }
    out
}
