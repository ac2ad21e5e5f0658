//! Five-point face alignment: a similarity transform from the model's template to the
//! detected landmarks, then a bilinear warp into a square chip.

use image::RgbImage;

use crate::descriptor::Warp;

/// A 2-D similarity transform `p' = [a -b; b a] p + t` (rotation, uniform scale, translation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f64,
    /// `scale * sin(angle)`.
    pub b: f64,
    /// Translation along x.
    pub tx: f64,
    /// Translation along y.
    pub ty: f64,
}

impl Similarity {
    /// Applies the transform to a point.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    /// The uniform scale factor.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }
}

/// Least-squares similarity transform mapping `src[i]` onto `dst[i]` (Umeyama's method,
/// which for 2-D similarities without reflection has this closed form).
///
/// Returns `None` when the source points all coincide.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Similarity> {
    let n = src.len().min(dst.len());
    if n == 0 {
        return None;
    }
    let mean = |pts: &[[f32; 2]]| {
        let (sx, sy) = pts[..n].iter().fold((0.0, 0.0), |(x, y), p| {
            (x + f64::from(p[0]), y + f64::from(p[1]))
        });
        (sx / n as f64, sy / n as f64)
    };
    let (msx, msy) = mean(src);
    let (mdx, mdy) = mean(dst);
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (s, d) in src[..n].iter().zip(&dst[..n]) {
        let (sx, sy) = (f64::from(s[0]) - msx, f64::from(s[1]) - msy);
        let (dx, dy) = (f64::from(d[0]) - mdx, f64::from(d[1]) - mdy);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        norm += sx * sx + sy * sy;
    }
    if norm <= f64::EPSILON {
        return None;
    }
    let (a, b) = (dot / norm, cross / norm);
    Some(Similarity {
        a,
        b,
        tx: mdx - (a * msx - b * msy),
        ty: mdy - (b * msx + a * msy),
    })
}

/// The transform from chip pixels to image pixels for a face with `landmarks`, aligned onto
/// `template` in a `size` x `size` chip with the given warp geometry.
///
/// Returns `None` when the landmarks are degenerate (all equal or not finite).
pub fn chip_to_image(
    landmarks: &[[f32; 2]; 5],
    template: &[[f32; 2]; 5],
    size: u32,
    warp: Warp,
) -> Option<Similarity> {
    if landmarks.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let t = similarity_transform(template, landmarks)?;
    if t.scale() < 1e-6 {
        // All landmarks on one point: there is no face to align.
        return None;
    }
    match warp {
        Warp::Similarity => Some(t),
        Warp::DlibChip => {
            // dlib maps the chip's corner pixels 0 and size-1 onto a centred rectangle whose
            // width was decremented by one (`centered_drect`), hence k and the half-pixel shift.
            let n = f64::from(size);
            let s = t.scale();
            let k = (n * s - 1.0) / (n - 1.0);
            let (cx, cy) = t.apply(n / 2.0, n / 2.0);
            let (a, b) = (t.a * k / s, t.b * k / s);
            let h = (n - 1.0) / 2.0;
            Some(Similarity {
                a,
                b,
                tx: cx - (a * h - b * h),
                ty: cy - (b * h + a * h),
            })
        }
    }
}

/// Warps the face into a `size` x `size` chip, sampling `image` bilinearly through `map`
/// (chip pixel -> image point). Points whose 2x2 neighbourhood leaves the image are black,
/// as in dlib. When one chip pixel spans more than two image pixels, each chip pixel averages
/// a grid of bilinear samples about one image pixel apart (at most 8x8), so large faces are
/// not aliased (dlib builds an image pyramid for the same reason).
pub fn warp_chip(image: &RgbImage, map: &Similarity, size: u32) -> RgbImage {
    let per_chip_pixel = map.scale();
    let grid = if per_chip_pixel > 2.0 {
        per_chip_pixel.ceil().min(8.0) as u32
    } else {
        1
    };
    let g = f64::from(grid);
    // Sub-sample offsets centred on the chip pixel.
    let offsets: Vec<(f64, f64)> = (0..grid)
        .flat_map(|j| (0..grid).map(move |k| (k, j)))
        .map(|(k, j)| {
            (
                (f64::from(k) + 0.5) / g - 0.5,
                (f64::from(j) + 0.5) / g - 0.5,
            )
        })
        .collect();
    let inv_samples = 1.0 / (g * g) as f32;
    let source = Source::new(image);
    let width = size as usize;
    let mut chip = RgbImage::new(size, size);
    let mut acc = vec![0.0f32; width * 3];
    for (y, row) in chip.as_mut().chunks_exact_mut(width * 3).enumerate() {
        acc.fill(0.0);
        for &(ox, oy) in &offsets {
            // Walk the row: each chip pixel to the right moves the image point by (a, b).
            let (x0, y0) = map.apply(ox, y as f64 + oy);
            for (x, out) in acc.as_chunks_mut::<3>().0.iter_mut().enumerate() {
                let x = x as f64;
                source.add_bilinear(x0 + map.a * x, y0 + map.b * x, out);
            }
        }
        for (o, a) in row.iter_mut().zip(&acc) {
            // Non-negative, so the saturating cast rounds half up and clamps at 255.
            *o = (a * inv_samples + 0.5) as u8;
        }
    }
    chip
}

/// Row-major RGB pixels with bilinear sampling.
struct Source<'a> {
    pixels: &'a [u8],
    width: usize,
    /// `width - 1` and `height - 1`: a sample's left and top pixels must be below them.
    last_x: f64,
    last_y: f64,
}

impl<'a> Source<'a> {
    fn new(image: &'a RgbImage) -> Self {
        Self {
            pixels: image.as_raw(),
            width: image.width() as usize,
            last_x: f64::from(image.width()) - 1.0,
            last_y: f64::from(image.height()) - 1.0,
        }
    }

    /// Adds the bilinear sample at (x, y) to `acc` (one RGB pixel); adds nothing (black) when
    /// the 2x2 neighbourhood leaves the image, as dlib does.
    #[inline]
    fn add_bilinear(&self, x: f64, y: f64, acc: &mut [f32; 3]) {
        // Inside means floor(x) + 1 < width; NaN fails every comparison. For non-negative
        // values, truncation is the floor.
        if !(x >= 0.0 && y >= 0.0 && x < self.last_x && y < self.last_y) {
            return;
        }
        let (l, t) = (x as usize, y as usize);
        let (fx, fy) = ((x - l as f64) as f32, (y - t as f64) as f32);
        let row = self.width * 3;
        let at = t * row + l * 3;
        let (Some(top), Some(bottom)) = (
            self.pixels.get(at..at + 6),
            self.pixels.get(at + row..at + row + 6),
        ) else {
            return;
        };
        for (c, acc) in acc.iter_mut().enumerate() {
            let (tl, tr) = (f32::from(top[c]), f32::from(top[c + 3]));
            let (bl, br) = (f32::from(bottom[c]), f32::from(bottom[c + 3]));
            let top_row = tl + (tr - tl) * fx;
            let bottom_row = bl + (br - bl) * fx;
            *acc += top_row + (bottom_row - top_row) * fy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ModelDescriptor;
    use image::Rgb;

    #[test]
    fn similarity_recovers_a_known_transform() {
        let truth = Similarity {
            a: 1.2,
            b: -0.4,
            tx: 30.0,
            ty: -7.5,
        };
        let src = [
            [0.0f32, 0.0],
            [10.0, 0.0],
            [0.0, 20.0],
            [7.0, 3.0],
            [-4.0, 9.0],
        ];
        let dst: Vec<[f32; 2]> = src
            .iter()
            .map(|p| {
                let (x, y) = truth.apply(f64::from(p[0]), f64::from(p[1]));
                [x as f32, y as f32]
            })
            .collect();
        let fit = similarity_transform(&src, &dst).unwrap();
        assert!((fit.a - truth.a).abs() < 1e-5, "{fit:?}");
        assert!((fit.b - truth.b).abs() < 1e-5, "{fit:?}");
        assert!((fit.tx - truth.tx).abs() < 1e-4, "{fit:?}");
        assert!((fit.ty - truth.ty).abs() < 1e-4, "{fit:?}");
    }

    #[test]
    fn degenerate_points_have_no_transform() {
        assert!(similarity_transform(&[[1.0, 1.0]; 5], &[[3.0, 4.0]; 5]).is_none());
        let d = ModelDescriptor::dlib_resnet_v1();
        let mut bad = d.template;
        bad[2][0] = f32::NAN;
        assert!(chip_to_image(&bad, &d.template, 150, Warp::DlibChip).is_none());
    }

    #[test]
    fn dlib_chip_of_the_template_itself_is_nearly_identity() {
        // Landmarks exactly on the template: the similarity is the identity, and dlib's
        // centred rectangle shrinks it by (150 - 1/1)/149 around the centre.
        let d = ModelDescriptor::dlib_resnet_v1();
        let m = chip_to_image(&d.template, &d.template, 150, Warp::DlibChip).unwrap();
        assert!((m.scale() - 1.0).abs() < 1e-9, "{m:?}");
        let (x0, y0) = m.apply(74.5, 74.5);
        assert!(
            (x0 - 75.0).abs() < 1e-6 && (y0 - 75.0).abs() < 1e-6,
            "{x0} {y0}"
        );
        let direct = chip_to_image(&d.template, &d.template, 150, Warp::Similarity).unwrap();
        let (x1, y1) = direct.apply(10.0, 20.0);
        assert!((x1 - 10.0).abs() < 1e-6 && (y1 - 20.0).abs() < 1e-6);
    }

    #[test]
    fn warp_copies_pixels_under_identity_and_blacks_out_outside() {
        let img = RgbImage::from_fn(40, 30, |x, y| Rgb([x as u8 * 5, y as u8 * 7, 100]));
        let id = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        let chip = warp_chip(&img, &id, 20);
        assert_eq!(chip.get_pixel(3, 4), img.get_pixel(3, 4));
        let shifted = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 35.0,
            ty: 0.0,
        };
        let chip = warp_chip(&img, &shifted, 10);
        assert_eq!(
            chip.get_pixel(9, 0).0,
            [0, 0, 0],
            "x = 44 is outside a 40-wide image"
        );
        assert_eq!(chip.get_pixel(0, 0), img.get_pixel(35, 0));
    }

    #[test]
    fn large_faces_are_averaged_not_aliased() {
        // A one-pixel checkerboard seen at 4x reduction: plain bilinear picks near-black or
        // near-white pixels; averaging gives mid grey.
        let img = RgbImage::from_fn(400, 400, |x, y| {
            if (x + y) % 2 == 0 {
                Rgb([255; 3])
            } else {
                Rgb([0; 3])
            }
        });
        let down = Similarity {
            a: 4.0,
            b: 0.0,
            tx: 2.0,
            ty: 2.0,
        };
        let chip = warp_chip(&img, &down, 50);
        let v = chip.get_pixel(25, 25).0[0];
        assert!((100..=155).contains(&v), "got {v}");
    }
}
