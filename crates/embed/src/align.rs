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
/// as in dlib.
///
/// When one chip pixel spans more than two image pixels, the part of the image under the chip
/// is first shrunk by the whole factor `k = floor(scale)` (each pixel the mean of a `k` x `k`
/// block), and the chip is sampled bilinearly from that, one to two shrunk pixels apart. So
/// large faces are averaged, not aliased (dlib builds an image pyramid for the same reason),
/// at a cost proportional to the face's area: one pass over it, then one sample per chip pixel.
/// A strip narrower than `k` pixels along the image's right and bottom edges, where a block
/// would leave the image, counts as outside.
pub fn warp_chip(image: &RgbImage, map: &Similarity, size: u32) -> RgbImage {
    let scale = map.scale();
    if scale > 2.0 && scale.is_finite() {
        // Whole factors only: each shrunk pixel is then an exact block mean. At most 256, so
        // a block's sum fits in u32 (a 150-pixel chip spans 256 pixels of a 38,400-pixel face).
        let k = scale.floor().min(256.0) as u32;
        if let Some((shrunk, map)) = shrink_under_chip(image, map, size, k) {
            return warp_bilinear(&shrunk, &map, size);
        }
    }
    warp_bilinear(image, map, size)
}

/// One bilinear sample per chip pixel.
fn warp_bilinear(image: &RgbImage, map: &Similarity, size: u32) -> RgbImage {
    let source = Source::new(image);
    let width = size as usize;
    let mut chip = RgbImage::new(size, size);
    let mut acc = vec![0.0f32; width * 3];
    for (y, row) in chip.as_mut().chunks_exact_mut(width * 3).enumerate() {
        acc.fill(0.0);
        // Walk the row: each chip pixel to the right moves the image point by (a, b).
        let (x0, y0) = map.apply(0.0, y as f64);
        for (x, out) in acc.as_chunks_mut::<3>().0.iter_mut().enumerate() {
            let x = x as f64;
            source.add_bilinear(x0 + map.a * x, y0 + map.b * x, out);
        }
        for (o, a) in row.iter_mut().zip(&acc) {
            // Non-negative, so the saturating cast rounds half up and clamps at 255.
            *o = (a + 0.5) as u8;
        }
    }
    chip
}

/// The part of `image` under the chip (with a margin of `k` pixels), shrunk by `k` in both
/// directions, and `map` carried over to it. `None` when less than 2x2 shrunk pixels of it lie
/// inside the image: every sample would be black anyway.
fn shrink_under_chip(
    image: &RgbImage,
    map: &Similarity,
    size: u32,
    k: u32,
) -> Option<(RgbImage, Similarity)> {
    // The chip's footprint: the images of its corner pixels, one pixel out.
    let far = f64::from(size);
    let corners =
        [(-1.0, -1.0), (far, -1.0), (-1.0, far), (far, far)].map(|(x, y)| map.apply(x, y));
    let margin = f64::from(k);
    let clip = |v: f64, len: u32| v.clamp(0.0, f64::from(len)) as u32;
    let span = |pick: fn(&(f64, f64)) -> f64, len: u32| {
        let lo = corners.iter().map(pick).fold(f64::INFINITY, f64::min);
        let hi = corners.iter().map(pick).fold(f64::NEG_INFINITY, f64::max);
        (
            clip((lo - margin).floor(), len),
            clip((hi + margin).ceil(), len),
        )
    };
    let (x0, x1) = span(|c| c.0, image.width());
    let (y0, y1) = span(|c| c.1, image.height());
    // Whole blocks only.
    let (sw, sh) = ((x1 - x0) / k, (y1 - y0) / k);
    if sw < 2 || sh < 2 {
        return None;
    }
    let (k_us, sw_us) = (k as usize, sw as usize);
    let stride = image.width() as usize * 3;
    let pixels = image.as_raw();
    let inv_area = 1.0 / (k * k) as f32;
    let mut shrunk = RgbImage::new(sw, sh);
    // Column sums of one band of k rows, then each block's k columns.
    let mut columns = vec![0u16; sw_us * k_us * 3];
    for (j, out) in shrunk.as_mut().chunks_exact_mut(sw_us * 3).enumerate() {
        columns.fill(0);
        for r in 0..k_us {
            let at = (y0 as usize + j * k_us + r) * stride + x0 as usize * 3;
            let row = &pixels[at..at + columns.len()];
            for (sum, &v) in columns.iter_mut().zip(row) {
                // At most 256 * 255 fits u16; a wrapping add (it never wraps) vectorises.
                *sum = sum.wrapping_add(u16::from(v));
            }
        }
        for (block, px) in columns
            .chunks_exact(k_us * 3)
            .zip(out.as_chunks_mut::<3>().0)
        {
            let mut sum = [0u32; 3];
            for column in block.as_chunks::<3>().0 {
                for c in 0..3 {
                    // At most 256 * 256 * 255 < 2^32.
                    sum[c] = sum[c].wrapping_add(u32::from(column[c]));
                }
            }
            *px = sum.map(|s| (s as f32 * inv_area + 0.5) as u8);
        }
    }
    // Shrunk pixel (i, j) is centred on image point (x0 + k i + (k - 1) / 2, likewise y).
    let (kf, half) = (f64::from(k), (f64::from(k) - 1.0) / 2.0);
    let to_shrunk = Similarity {
        a: map.a / kf,
        b: map.b / kf,
        tx: (map.tx - f64::from(x0) - half) / kf,
        ty: (map.ty - f64::from(y0) - half) / kf,
    };
    Some((shrunk, to_shrunk))
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

    /// Every pixel of `img` repeated as an `n` x `n` block.
    fn blown_up(img: &RgbImage, n: u32) -> RgbImage {
        RgbImage::from_fn(img.width() * n, img.height() * n, |x, y| {
            *img.get_pixel(x / n, y / n)
        })
    }

    #[test]
    fn a_photo_blown_up_gives_nearly_the_same_chip() {
        // The same chip from a real photo and from the photo blown up n times: the shrink must
        // land on the same image points (pixel p's centre is n p + (n - 1) / 2 blown up). The
        // scales 2.7 and 4.2 leave whole factors 2 and 4 with bilinear steps between.
        let photo = image::open(facerec_fixtures::photo("obama.jpg"))
            .expect("fixture photo")
            .to_rgb8();
        let map = Similarity {
            a: 0.9,
            b: 0.12,
            tx: 330.0,
            ty: 250.0,
        };
        for (n, s) in [(3u32, 0.9), (6, 0.7)] {
            let big = blown_up(&photo, n);
            let nf = f64::from(n);
            let half = (nf - 1.0) / 2.0;
            let m = Similarity {
                a: map.a * s / 0.9 * nf,
                b: map.b * s / 0.9 * nf,
                tx: map.tx * nf + half,
                ty: map.ty * nf + half,
            };
            let reference = warp_bilinear(
                &photo,
                &Similarity {
                    a: m.a / nf,
                    b: m.b / nf,
                    ..map
                },
                150,
            );
            let chip = warp_chip(&big, &m, 150);
            let diff: f64 = chip
                .as_raw()
                .iter()
                .zip(reference.as_raw())
                .map(|(&a, &b)| f64::from(a.abs_diff(b)))
                .sum::<f64>()
                / chip.as_raw().len() as f64;
            println!("n {n}: scale {:.2}, mean |difference| {diff:.2}", m.scale());
            // 0.65 and 0.53 here; half a shrunk pixel off gives 1.02 and 1.27.
            assert!(diff < 0.85, "n {n}: mean |difference| {diff:.2}");
        }
    }
}
