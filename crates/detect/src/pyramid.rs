//! The image pyramid and the resampling that feeds the three networks.
//!
//! Resampling follows OpenCV's `INTER_AREA`, as the reference driver uses it:
//! when neither axis grows, each output pixel is the exact area-weighted mean of the
//! source pixels it covers; when an axis grows, OpenCV falls back to a two-tap linear
//! filter with "area" coefficients for both axes, reproduced here too (it matters for
//! face crops smaller than the 24 or 48 pixel network inputs). Output is written
//! straight into the networks' planar, transposed `[3, W, H]` input layout (see
//! [`crate::nets`]), already normalised to `(v - 127.5) / 128`.

use image::RgbImage;

/// Pixel normalisation shared by the three networks.
#[inline]
fn normalise(v: f32) -> f32 {
    (v - 127.5) * 0.0078125
}

/// The scales of the image pyramid: `m · factor^k` with `m = 12 / min_face`, for as long
/// as the shorter image side scaled by it stays at least 12 pixels.
///
/// Computed in `f64` exactly like the reference (`min_layer` is multiplied down step by
/// step), so level sizes agree with it. Bounded to 256 levels as a guard against
/// degenerate factors (callers validate `0 < factor < 1`).
pub(crate) fn scales(width: u32, height: u32, min_face: f64, factor: f64) -> Vec<f64> {
    let m = 12.0 / min_face;
    let mut min_layer = f64::from(width.min(height)) * m;
    let mut out = Vec::new();
    let mut k = 0i32;
    while min_layer >= 12.0 && out.len() < 256 {
        out.push(m * factor.powi(k));
        min_layer *= factor;
        k += 1;
    }
    out
}

/// The size `(width, height)` of the pyramid level at `scale`: both sides rounded up.
pub(crate) fn level_size(width: u32, height: u32, scale: f64) -> (usize, usize) {
    let w = (f64::from(width) * scale).ceil().max(1.0);
    let h = (f64::from(height) * scale).ceil().max(1.0);
    // Scales are at most 12 / min_face and images at most `max_side`, so these fit.
    (w as usize, h as usize)
}

/// Sparse per-axis resampling weights: output index `d` reads `idx[offs[d]..offs[d+1]]`
/// with weights `w[..]` (same range).
#[derive(Debug)]
struct Taps {
    offs: Vec<usize>,
    idx: Vec<usize>,
    w: Vec<f32>,
}

impl Taps {
    fn push(&mut self, idx: usize, w: f32) {
        self.idx.push(idx);
        self.w.push(w);
    }

    fn end_output(&mut self) {
        self.offs.push(self.idx.len());
    }

    fn get(&self, d: usize) -> (&[usize], &[f32]) {
        let r = self.offs[d]..self.offs[d + 1];
        (&self.idx[r.clone()], &self.w[r])
    }

    /// Room for `dst` outputs of at most `taps` taps each.
    #[inline(always)]
    fn with_capacity(dst: usize, taps: usize) -> Self {
        let mut offs = Vec::with_capacity(dst + 1);
        offs.push(0);
        Taps {
            offs,
            idx: Vec::with_capacity(dst * taps),
            w: Vec::with_capacity(dst * taps),
        }
    }

    /// OpenCV's area table (`computeResizeAreaTab`) for shrinking `src` to `dst <= src`.
    ///
    /// Inlined (like [`Self::linear_area`]) so that the AVX2 build of [`resample_into`] rounds
    /// with its own instructions instead of calling `floor` and `ceil`: a crop's tables took
    /// a sixth of its resampling.
    #[inline(always)]
    fn area(src: usize, dst: usize) -> Self {
        // An output covers `src / dst` sources, plus one partly at each end.
        let mut t = Taps::with_capacity(dst, src.div_ceil(dst.max(1)) + 2);
        let scale = 1.0 / (dst as f64 / src as f64);
        let last = src as i64 - 1;
        for d in 0..dst {
            let f1 = d as f64 * scale;
            let f2 = f1 + scale;
            let cell = scale.min(src as f64 - f1);
            let s2 = (f2.floor() as i64).min(last);
            let s1 = (f1.ceil() as i64).min(s2);
            if s1 as f64 - f1 > 1e-3 && s1 >= 1 {
                t.push((s1 - 1) as usize, ((s1 as f64 - f1) / cell) as f32);
            }
            for s in s1.max(0)..s2 {
                t.push(s as usize, (1.0 / cell) as f32);
            }
            if f2 - s2 as f64 > 1e-3 && s2 >= 0 {
                t.push(
                    s2 as usize,
                    ((f2 - s2 as f64).min(1.0).min(cell) / cell) as f32,
                );
            }
            t.end_output();
        }
        t
    }

    /// OpenCV's `INTER_AREA` coefficients on the bilinear path, used when an axis grows.
    #[inline(always)]
    fn linear_area(src: usize, dst: usize) -> Self {
        let mut t = Taps::with_capacity(dst, 2);
        let inv_scale = dst as f64 / src as f64;
        let scale = 1.0 / inv_scale;
        for d in 0..dst {
            let s = ((d as f64 * scale).floor() as i64).max(0) as usize;
            let f = (d + 1) as f64 - (s + 1) as f64 * inv_scale;
            let f = if f <= 0.0 { 0.0 } else { f - f.floor() } as f32;
            if s + 1 >= src {
                t.push(src - 1, 1.0);
            } else {
                t.push(s, 1.0 - f);
                t.push(s + 1, f);
            }
            t.end_output();
        }
        t
    }
}

/// A `w × h` window of an image whose top-left pixel is `(x0, y0)`; it may stick out of
/// the image, where it reads as black (zero), like the reference's zero-padded crops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub x0: i64,
    pub y0: i64,
    pub w: usize,
    pub h: usize,
}

avx2_or_baseline! {
    /// Resamples `window` of `img` to `dw × dh` and writes it normalised into `out` in the
    /// networks' planar, transposed layout: `out[(c * dw + x) * dh + y]`.
    ///
    /// `round` rounds each resampled value to an integer first, as OpenCV does when it
    /// resizes a `u8` image (the pyramid); crops are resized in floating point (no rounding).
    pub(crate) fn resample_into / resample_avx2(
        img: &RgbImage,
        window: Window,
        dw: usize,
        dh: usize,
        round: bool,
        out: &mut [f32],
    ) = resample_with
}

/// [`resample_into`] as compiled for any x86-64 CPU (or the target's baseline).
#[inline(always)]
fn resample_with(
    img: &RgbImage,
    window: Window,
    dw: usize,
    dh: usize,
    round: bool,
    out: &mut [f32],
) {
    if round {
        resample_planar(img, window, dw, dh, out, |v| normalise(round_u8(v)));
    } else {
        resample_planar(img, window, dw, dh, out, normalise);
    }
}

/// Rounds a resampled value as OpenCV does when it writes a `u8` image.
#[inline]
fn round_u8(v: f32) -> f32 {
    // Round half up via a truncating cast (a plain SSE2 instruction, unlike `round`, which is
    // a libm call on baseline x86-64); `v` is a convex combination of 0..=255 values, and the
    // cast saturates anyway.
    f32::from((v + 0.5) as u8)
}

/// Output rows resampled together: the horizontal pass runs on eight rows at once, one per
/// vector lane, so that it reads and writes whole vectors (the output is column-major).
const BLOCK: usize = 8;

/// [`resample_into`] with `finish` applied to each resampled value.
///
/// Each output row is the taps' weighted sum of source rows (the vertical pass, over the
/// window's whole width), then each output pixel the weighted sum of that row's columns (the
/// horizontal pass). Eight output rows go through the vertical pass one by one and are then
/// interleaved (`block[value · 8 + row]`), so that the horizontal pass adds the same
/// products in the same order for the eight rows at once.
#[inline(always)]
fn resample_planar(
    img: &RgbImage,
    window: Window,
    dw: usize,
    dh: usize,
    out: &mut [f32],
    finish: impl Fn(f32) -> f32,
) {
    assert_eq!(out.len(), dw * dh * 3);
    if window.w == 0 || window.h == 0 || dw == 0 || dh == 0 {
        out.fill(finish(0.0));
        return;
    }
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    let shrink = window.w >= dw && window.h >= dh;
    let (xt, yt) = if shrink {
        (Taps::area(window.w, dw), Taps::area(window.h, dh))
    } else {
        (
            Taps::linear_area(window.w, dw),
            Taps::linear_area(window.h, dh),
        )
    };
    // Columns of the window that lie inside the image.
    let cx0 = (-window.x0).clamp(0, window.w as i64) as usize;
    let cx1 = (iw - window.x0).clamp(cx0 as i64, window.w as i64) as usize;
    let raw = img.as_raw();
    let stride = iw as usize * 3;
    let values = window.w * 3;
    // Each lane's rows; window columns outside the image stay zero throughout.
    let mut acc = vec![0f32; BLOCK * values];
    let mut block = vec![[0f32; BLOCK]; values.next_multiple_of(BLOCK)];
    let most = yt.offs.windows(2).map(|o| o[1] - o[0]).max().unwrap_or(0);
    let mut rows: Vec<(&[u8], f32)> = Vec::with_capacity(most);
    let mut sums: Vec<u16> = Vec::new();
    for dy0 in (0..dh).step_by(BLOCK) {
        let height = BLOCK.min(dh - dy0);
        for (lane, acc) in acc.chunks_exact_mut(values).take(height).enumerate() {
            vertical(
                raw,
                (stride, ih),
                window,
                (cx0, cx1),
                yt.get(dy0 + lane),
                (&mut rows, &mut sums),
                acc,
            );
        }
        interleave(&acc, values, &mut block);
        // Horizontal pass, eight rows at a time.
        for dx in 0..dw {
            let (cols, wxs) = xt.get(dx);
            let (mut r, mut g, mut b) = ([0f32; BLOCK], [0f32; BLOCK], [0f32; BLOCK]);
            for (&sx, &wx) in cols.iter().zip(wxs) {
                let [vr, vg, vb] = &block[sx * 3..][..3] else {
                    unreachable!("three values")
                };
                for l in 0..BLOCK {
                    r[l] += wx * vr[l];
                    g[l] += wx * vg[l];
                    b[l] += wx * vb[l];
                }
            }
            for (c, px) in [r, g, b].iter().enumerate() {
                let dst = &mut out[c * dw * dh + dx * dh + dy0..][..height];
                for (d, &p) in dst.iter_mut().zip(px) {
                    *d = finish(p);
                }
            }
        }
    }
}

/// `block[i][lane] = acc[lane · values + i]`: eight rows of `values` interleaved, eight by
/// eight.
#[inline(always)]
fn interleave(acc: &[f32], values: usize, block: &mut [[f32; BLOCK]]) {
    let rows: [&[f32]; BLOCK] = std::array::from_fn(|l| &acc[l * values..][..values]);
    let whole = values - values % BLOCK;
    for (i0, out) in (0..whole).step_by(BLOCK).zip(block.chunks_exact_mut(BLOCK)) {
        let mut square = [[0f32; BLOCK]; BLOCK];
        for (s, row) in square.iter_mut().zip(rows) {
            s.copy_from_slice(&row[i0..i0 + BLOCK]);
        }
        for (j, out) in out.iter_mut().enumerate() {
            for (l, s) in square.iter().enumerate() {
                out[l] = s[j];
            }
        }
    }
    for i in whole..values {
        for (l, row) in rows.iter().enumerate() {
            block[i][l] = row[i];
        }
    }
}

/// The vertical pass for one output row: `acc`'s columns inside the image (`cx0 .. cx1` of
/// the window) become the taps' (`ys`, `wys`) weighted sum of the window's source rows;
/// columns outside stay as they are (zero). `rows` and `sums` are scratch.
#[inline(always)]
fn vertical<'a>(
    raw: &'a [u8],
    (stride, ih): (usize, i64),
    window: Window,
    (cx0, cx1): (usize, usize),
    (ys, wys): (&[usize], &[f32]),
    (rows, sums): (&mut Vec<(&'a [u8], f32)>, &mut Vec<u16>),
    acc: &mut [f32],
) {
    rows.clear();
    for (&sy, &wy) in ys.iter().zip(wys) {
        let y = window.y0 + sy as i64;
        if (0..ih).contains(&y) && cx0 < cx1 {
            let start = y as usize * stride + (window.x0 + cx0 as i64) as usize * 3;
            rows.push((&raw[start..start + (cx1 - cx0) * 3], wy));
        }
    }
    let inside = &mut acc[cx0 * 3..cx1 * 3];
    if rows.is_empty() {
        inside.fill(0.0);
    }
    // A run of rows with one weight (the rows an area cell covers whole) is summed
    // exactly in integers first, then weighted once: a large photo's small levels read
    // hundreds of rows per output row.
    let run = equal_weight_run(rows);
    if run.len() >= 3 {
        let (first, last) = (&rows[..run.start], &rows[run.end..]);
        let run = &rows[run];
        let w = run[0].1;
        let mut overwrite = true;
        for group in first.chunks(4).chain(last.chunks(4)) {
            accumulate_rows(inside, group, overwrite);
            overwrite = false;
        }
        for chunk in run.chunks(U16_ROWS) {
            sum_rows_u16(sums, chunk, inside.len());
            for (d, &s) in inside.iter_mut().zip(sums.iter()) {
                let v = w * f32::from(s);
                *d = if overwrite { v } else { *d + v };
            }
            overwrite = false;
        }
    } else {
        for (i, group) in rows.chunks(4).enumerate() {
            accumulate_rows(inside, group, i == 0);
        }
    }
}

/// The longest run of consecutive rows in `rows` with the same weight.
fn equal_weight_run(rows: &[(&[u8], f32)]) -> std::ops::Range<usize> {
    let (mut best, mut start) = (0..0, 0);
    for i in 1..=rows.len() {
        if i == rows.len() || rows[i].1 != rows[start].1 {
            if i - start > best.len() {
                best = start..i;
            }
            start = i;
        }
    }
    best
}

/// How many rows of `u8` a `u16` sum holds: 257 * 255 = 65535.
const U16_ROWS: usize = 257;

/// `sums[i] = Σ row[i]` over at most [`U16_ROWS`] `rows` (their first `n` values), exactly.
#[inline(always)]
fn sum_rows_u16(sums: &mut Vec<u16>, rows: &[(&[u8], f32)], n: usize) {
    assert!(rows.len() <= U16_ROWS);
    sums.clear();
    sums.resize(n, 0);
    // Four rows a sweep, so that `sums` is read and written once for four rows.
    let mut quads = rows.chunks_exact(4);
    for quad in &mut quads {
        let [a, b, c, d] = [0, 1, 2, 3].map(|k| &quad[k].0[..n]);
        for ((((s, &a), &b), &c), &d) in sums.iter_mut().zip(a).zip(b).zip(c).zip(d) {
            // The sum never exceeds 65535 (see `U16_ROWS`); wrapping adds vectorise.
            let four = u16::from(a) + u16::from(b) + u16::from(c) + u16::from(d);
            *s = s.wrapping_add(four);
        }
    }
    for (row, _) in quads.remainder() {
        for (s, &v) in sums.iter_mut().zip(&row[..n]) {
            *s = s.wrapping_add(u16::from(v));
        }
    }
}

/// `dst[i] (=|+=) Σ w · row[i]` over up to four `(row, w)` pairs, in one sweep.
#[inline(always)]
fn accumulate_rows(dst: &mut [f32], rows: &[(&[u8], f32)], overwrite: bool) {
    #[inline(always)]
    fn sweep<const N: usize>(dst: &mut [f32], rows: [&[u8]; N], w: [f32; N], overwrite: bool) {
        let n = dst.len();
        let rows = rows.map(|r| &r[..n]);
        for (i, d) in dst.iter_mut().enumerate() {
            let mut sum = if overwrite { 0.0 } else { *d };
            for k in 0..N {
                sum += w[k] * f32::from(rows[k][i]);
            }
            *d = sum;
        }
    }
    match *rows {
        [(a, wa)] => sweep(dst, [a], [wa], overwrite),
        [(a, wa), (b, wb)] => sweep(dst, [a, b], [wa, wb], overwrite),
        [(a, wa), (b, wb), (c, wc)] => sweep(dst, [a, b, c], [wa, wb, wc], overwrite),
        [(a, wa), (b, wb), (c, wc), (d, wd)] => {
            sweep(dst, [a, b, c, d], [wa, wb, wc, wd], overwrite)
        }
        _ => {
            for (i, &(row, w)) in rows.iter().enumerate() {
                sweep(dst, [row], [w], overwrite && i == 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_scales_match_reference() {
        // 640x480, min face 30: m = 0.4; levels while 480 * 0.4 * 0.709^k >= 12.
        let s = scales(640, 480, 30.0, 0.709);
        assert_eq!(s.len(), 9);
        assert!((s[0] - 0.4).abs() < 1e-12);
        assert!((s[1] - 0.2836).abs() < 1e-12);
        assert!((s[8] - 0.4 * 0.709f64.powi(8)).abs() < 1e-12);
        assert!(480.0 * s[8] >= 12.0 && 480.0 * s[8] * 0.709 < 12.0);
        assert_eq!(level_size(640, 480, s[0]), (256, 192));
        assert_eq!(level_size(640, 480, s[1]), (182, 137));
        // 250x250, min face 20: m = 0.6 -> 150, 106.35, ... (as in the reference).
        let s = scales(250, 250, 20.0, 0.709);
        assert_eq!(s.len(), 8);
        assert_eq!(level_size(250, 250, s[0]), (150, 150));
        // Exactly 12 px at scale 1 gives one level, less gives none.
        assert_eq!(scales(12, 40, 12.0, 0.709), vec![1.0]);
        assert!(scales(11, 40, 12.0, 0.709).is_empty());
    }

    fn sum_of(t: &Taps, d: usize) -> f32 {
        t.get(d).1.iter().sum()
    }

    #[test]
    fn area_taps_are_normalised_and_exact() {
        let t = Taps::area(10, 4); // scale 2.5
        for d in 0..4 {
            assert!((sum_of(&t, d) - 1.0).abs() < 1e-6);
        }
        assert_eq!(t.get(0).0, &[0, 1, 2]);
        assert_eq!(t.get(0).1, &[0.4, 0.4, 0.2]);
        assert_eq!(t.get(1).0, &[2, 3, 4]);
        let t = Taps::area(8, 4);
        assert_eq!(t.get(3), (&[6usize, 7][..], &[0.5f32, 0.5][..]));
    }

    #[test]
    fn linear_area_taps_follow_opencv() {
        // Doubling replicates pixels (OpenCV's INTER_AREA upscaling by an integer factor).
        let t = Taps::linear_area(2, 4);
        assert_eq!(t.get(0), (&[0usize, 1][..], &[1.0f32, 0.0][..]));
        assert_eq!(t.get(1), (&[0usize, 1][..], &[1.0f32, 0.0][..]));
        assert_eq!(t.get(2), (&[1usize][..], &[1.0f32][..]));
        assert_eq!(t.get(3), (&[1usize][..], &[1.0f32][..]));
        // 3 -> 4 blends at the cell boundaries.
        let t = Taps::linear_area(3, 4);
        assert_eq!(t.get(1).0, &[0, 1]);
        assert!((t.get(1).1[1] - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(t.get(2).0, &[1, 2]);
        assert!((t.get(2).1[1] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(t.get(3), (&[2usize][..], &[1.0f32][..]));
        for d in 0..4 {
            assert!((sum_of(&t, d) - 1.0).abs() < 1e-6);
        }
    }

    /// An image of pseudo-random pixels.
    fn noisy(w: u32, h: u32, seed: u64) -> RgbImage {
        let values = crate::nets::tests::noise((w * h * 3) as usize, seed);
        let bytes = values.iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        RgbImage::from_raw(w, h, bytes).expect("w * h * 3 values")
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_resampling_gives_the_portable_bits() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            println!("SKIPPED the AVX2 resampling: this CPU lacks AVX2, so it never runs");
            return;
        }
        let img = noisy(301, 197, 3);
        let window = |x0, y0, w, h| Window { x0, y0, w, h };
        let cases = [
            // Pyramid levels (rounded): a photo's whole area to smaller sizes, from hundreds
            // of rows per output row (the integer sums) down to two or three.
            (window(0, 0, 301, 197), 121, 80, true),
            (window(0, 0, 301, 197), 17, 12, true),
            (window(0, 0, 301, 197), 3, 2, true),
            // Crops: inside, sticking out on every side, and growing (the bilinear path).
            (window(40, 30, 130, 120), 24, 24, false),
            (window(-20, -15, 60, 70), 24, 24, false),
            (window(280, 180, 48, 40), 48, 48, false),
            (window(100, 100, 13, 9), 24, 24, false),
            (window(-50, -50, 500, 400), 48, 48, false),
        ];
        for (i, (window, dw, dh, round)) in cases.into_iter().enumerate() {
            let mut portable = vec![0.0; dw * dh * 3];
            let mut avx2 = vec![0.0; dw * dh * 3];
            resample_with(&img, window, dw, dh, round, &mut portable);
            // SAFETY: this CPU has AVX2 (checked above).
            #[allow(unsafe_code)]
            unsafe {
                resample_avx2(&img, window, dw, dh, round, &mut avx2);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&avx2),
                bits(&portable),
                "case {i}: {window:?} to {dw}x{dh}"
            );
        }
    }

    #[test]
    fn resample_averages_and_pads_with_black() {
        let mut img = RgbImage::new(4, 2);
        for (x, _, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([if x < 2 { 0 } else { 200 }, 100, 255]);
        }
        // 4x2 -> 2x1: left half black red channel, right half 200.
        let mut out = vec![0.0; 2 * 3];
        resample_into(
            &img,
            Window {
                x0: 0,
                y0: 0,
                w: 4,
                h: 2,
            },
            2,
            1,
            true,
            &mut out,
        );
        let back: Vec<f32> = out.iter().map(|v| v / 0.0078125 + 127.5).collect();
        // Planar: the red plane (x = 0, 1), then green, then blue.
        assert_eq!(back, vec![0.0, 200.0, 100.0, 100.0, 255.0, 255.0]);
        // A window half outside the image on the left: averages with black padding.
        let mut out = vec![0.0; 3];
        resample_into(
            &img,
            Window {
                x0: -2,
                y0: 0,
                w: 4,
                h: 2,
            },
            1,
            1,
            false,
            &mut out,
        );
        let back: Vec<f32> = out.iter().map(|v| v / 0.0078125 + 127.5).collect();
        assert_eq!(back, vec![0.0, 50.0, 127.5]);
    }

    #[test]
    fn resample_sums_many_rows_exactly() {
        // 10 rows -> 1 (groups of 4 + 4 + 2 rows), 5 columns -> 1.
        let img = RgbImage::from_fn(5, 10, |x, y| {
            image::Rgb([(10 * y) as u8, (x * 50) as u8, 7])
        });
        let mut out = vec![0.0; 3];
        resample_into(
            &img,
            Window {
                x0: 0,
                y0: 0,
                w: 5,
                h: 10,
            },
            1,
            1,
            false,
            &mut out,
        );
        let back: Vec<f32> = out.iter().map(|v| v / 0.0078125 + 127.5).collect();
        for (got, want) in back.iter().zip([45.0, 100.0, 7.0]) {
            assert!((got - want).abs() < 1e-3, "{back:?}");
        }
        // A window entirely above the image is black.
        resample_into(
            &img,
            Window {
                x0: 0,
                y0: -20,
                w: 5,
                h: 10,
            },
            1,
            1,
            false,
            &mut out,
        );
        assert_eq!(out, vec![-127.5 * 0.0078125; 3]);
    }

    #[test]
    fn resample_of_hundreds_of_rows_per_cell_is_the_area_mean() {
        // 1300 rows -> 3: 433 1/3 rows a cell, more than one 16-bit sum holds (257 rows of
        // 255), with fractional rows at the cells' edges; 7 columns -> 2.
        let (w, h) = (7u32, 1300u32);
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([255, ((x * 37 + y * 101) % 256) as u8, (y % 3 * 100) as u8])
        });
        let (dw, dh) = (2usize, 3usize);
        let mut out = vec![0.0; dw * dh * 3];
        let whole = Window {
            x0: 0,
            y0: 0,
            w: w as usize,
            h: h as usize,
        };
        resample_into(&img, whole, dw, dh, false, &mut out);
        // The exact area mean, in f64: each source pixel weighted by its overlap with the cell.
        let overlap =
            |i: u32, lo: f64, hi: f64| (f64::from(i + 1).min(hi) - f64::from(i).max(lo)).max(0.0);
        let (cw, ch) = (f64::from(w) / dw as f64, f64::from(h) / dh as f64);
        for dy in 0..dh {
            for dx in 0..dw {
                for c in 0..3 {
                    let mut sum = 0.0;
                    for y in 0..h {
                        let wy = overlap(y, dy as f64 * ch, (dy + 1) as f64 * ch);
                        for x in 0..w {
                            let wx = overlap(x, dx as f64 * cw, (dx + 1) as f64 * cw);
                            sum += wx * wy * f64::from(img.get_pixel(x, y)[c]);
                        }
                    }
                    let want = sum / (cw * ch);
                    let got = f64::from(out[(c * dw + dx) * dh + dy]) / 0.0078125 + 127.5;
                    assert!(
                        (got - want).abs() < 1e-3,
                        "cell ({dx}, {dy}) channel {c}: {got} against {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn resample_writes_planar_transposed_layout() {
        // 2 wide, 3 tall, identity size: out[(c * 2 + x) * 3 + y] is pixel (x, y).
        let mut img = RgbImage::new(2, 3);
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Rgb([(10 * x + y) as u8, 0, 100 + (10 * x + y) as u8]);
        }
        let mut out = vec![0.0; 2 * 3 * 3];
        resample_into(
            &img,
            Window {
                x0: 0,
                y0: 0,
                w: 2,
                h: 3,
            },
            2,
            3,
            true,
            &mut out,
        );
        for x in 0..2 {
            for y in 0..3 {
                let red = out[x * 3 + y] / 0.0078125 + 127.5;
                assert_eq!(red, (10 * x + y) as f32);
                let blue = out[(2 * 2 + x) * 3 + y] / 0.0078125 + 127.5;
                assert_eq!(blue, (100 + 10 * x + y) as f32);
            }
        }
    }
}
