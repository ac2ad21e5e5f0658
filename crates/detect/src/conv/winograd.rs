//! Winograd's minimal filtering F(2x2, 3x3) for the networks' large 3x3 convolutions with many
//! input channels (where [`Layout::choose`](super::Layout::choose) takes it: P-Net's second and
//! third on its larger levels, O-Net's second and third).
//!
//! Each 2x2 block of outputs (a *tile*) comes from the 4x4 input patch under it: the patch is
//! transformed (`Bᵀ d B`, additions only), multiplied position by position with the kernel's
//! transform (`G g Gᵀ`, made once when the model loads) and summed over the input channels,
//! then transformed back (`Aᵀ m A`, additions only). That is 16 multiply-adds per tile and
//! input channel where the direct convolution needs 36: 2.25 times fewer. The sums over input
//! channels are 16 matrix products (one per patch position), which run like the rows layout:
//! 4 output channels × 16 tiles in AVX registers.
//!
//! Tiles are taken a few tile rows at a time (at most 96 tiles), so the transformed inputs and
//! products stay in the core's caches. The transforms work on 8 neighbouring tiles of a row at
//! once, one in each vector lane. Patches past the input's last row or column (when the output
//! has an odd height or width) read zeros, and the outputs past its edge are not written.
//!
//! The values differ from the direct convolution's by float rounding only (the transforms add
//! and subtract inputs before multiplying; the tests bound the difference). The transformed
//! kernel is made in f64 and rounded once.
//!
//! On the 2-core Zen 1 machine of docs/performance.md, one thread, P-Net's third convolution on
//! a 128x192 tile took 1.3-1.5 ms against 2.0 ms in the rows layout; about half of that time
//! goes to the products, a fifth to a quarter to each transform.

use super::{ConvShape, LANES};

/// Positions of a transformed 4x4 patch.
const POSITIONS: usize = 16;
/// Output channels of one block of the products' kernel.
const BLOCK: usize = 4;
/// Tiles one block of the products' kernel covers: two registers.
const COLUMNS: usize = 2 * LANES;
/// At most this many tiles are transformed and multiplied at once.
const MAX_CHUNK: usize = 96;

/// Whether convolutions of `shape` have a Winograd layout: 3x3 kernels with output channels a
/// multiple of [`BLOCK`].
pub(super) fn fits(shape: ConvShape) -> bool {
    (shape.kernel_h, shape.kernel_w) == (3, 3) && shape.outputs.is_multiple_of(BLOCK)
}

/// A 3x3 kernel and its bias transformed for F(2x2, 3x3).
#[derive(Clone, PartialEq)]
pub(super) struct Weights {
    /// Per patch position, per block of [`BLOCK`] output channels, per input channel: the
    /// block's transformed weights.
    u: Vec<[f32; BLOCK]>,
    bias: Vec<f32>,
}

impl Weights {
    /// The transformed kernel (`oihw`) of a convolution that [`fits`]; `None` for others.
    pub(super) fn new(shape: ConvShape, oihw: &[f32], bias: &[f32]) -> Option<Self> {
        if !fits(shape) {
            return None;
        }
        /// The kernel transform's `G`.
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let (inputs, outputs) = (shape.inputs, shape.outputs);
        let blocks = outputs / BLOCK;
        let mut u = vec![[0f32; BLOCK]; POSITIONS * blocks * inputs];
        for o in 0..outputs {
            for i in 0..inputs {
                let g = &oihw[(o * inputs + i) * 9..][..9];
                for pos in 0..POSITIONS {
                    let (a, b) = (pos / 4, pos % 4);
                    let mut sum = 0f64;
                    for y in 0..3 {
                        for x in 0..3 {
                            sum += G[a][y] * f64::from(g[y * 3 + x]) * G[b][x];
                        }
                    }
                    u[(pos * blocks + o / BLOCK) * inputs + i][o % BLOCK] = sum as f32;
                }
            }
        }
        Some(Self {
            u,
            bias: bias.to_vec(),
        })
    }
}

/// Tile rows `first..first + rows` of a map `tiles_x` tiles wide; each buffer row (one patch
/// position and channel) holds `stride` tiles.
#[derive(Clone, Copy)]
struct Chunk {
    first: usize,
    rows: usize,
    tiles_x: usize,
    stride: usize,
}

impl Chunk {
    /// Tiles the products' kernel runs over: the chunk's tiles rounded up to its width.
    fn columns(self) -> usize {
        (self.rows * self.tiles_x).next_multiple_of(COLUMNS)
    }
}

/// Tile rows per chunk for a map of `tiles_y` × `tiles_x` tiles: the fewest columns wasted by
/// rounding up to the products' kernel, within [`MAX_CHUNK`] tiles.
fn chunk_rows(tiles_y: usize, tiles_x: usize) -> usize {
    let most = (MAX_CHUNK / tiles_x).clamp(1, tiles_y);
    (1..=most)
        .min_by_key(|&rows| {
            let n = rows * tiles_x;
            (n.next_multiple_of(COLUMNS) - n) * 1000 / n
        })
        .unwrap_or(1)
}

/// The AVX2 + FMA kernels.
#[cfg(target_arch = "x86_64")]
pub(super) mod avx2 {
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    use super::super::Plane;
    use super::super::avx2::{eight, load, prelu, store};
    use super::*;

    thread_local! {
        /// The transformed inputs and the products, kept between calls on each thread.
        static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    }

    /// Convolves one image (`plane`) into `out` (`[outputs, ho, wo]`).
    #[target_feature(enable = "avx2,fma")]
    pub(in crate::conv) fn convolve(
        shape: ConvShape,
        weights: &Weights,
        slopes: &[f32],
        plane: Plane,
        out: &mut [f32],
    ) {
        let (ho, wo) = (plane.h - 2, plane.w - 2);
        let (tiles_y, tiles_x) = (ho.div_ceil(2), wo.div_ceil(2));
        let rows = chunk_rows(tiles_y, tiles_x);
        // A row's last 8 tiles are transformed together even when fewer remain, so each buffer
        // row has room for 8 past the last column.
        let stride = (rows * tiles_x).next_multiple_of(COLUMNS) + LANES;
        let (inputs, outputs) = (shape.inputs, shape.outputs);
        let mut scratch = SCRATCH.take();
        let len = POSITIONS * (inputs + outputs) * stride;
        if scratch.len() < len {
            scratch.resize(len, 0.0);
        }
        let (v, m) = scratch[..len].split_at_mut(POSITIONS * inputs * stride);
        for first in (0..tiles_y).step_by(rows) {
            let chunk = Chunk {
                first,
                rows: rows.min(tiles_y - first),
                tiles_x,
                stride,
            };
            transform_input(inputs, chunk, plane, v);
            products(inputs, outputs, weights, chunk, v, m);
            transform_output(outputs, weights, slopes, chunk, m, (ho, wo), out);
        }
        SCRATCH.set(scratch);
    }

    /// Patch columns 0 to 3 of 8 tiles side by side, from the 18 inputs under them.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn patch_columns(row: &[f32; 18]) -> [__m256; 4] {
        let (c0, c1) = split(load(eight(row, 0)), load(eight(row, 8)));
        let (c2, c3) = split(load(eight(row, 2)), load(eight(row, 10)));
        [c0, c1, c2, c3]
    }

    /// The even and the odd lanes of `a` then `b`, in order.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn split(a: __m256, b: __m256) -> (__m256, __m256) {
        let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
        let odd = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
        // Lanes 0-1, 4-5, 2-3, 6-7 of each, as pairs.
        let even = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(even));
        let odd = _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(odd));
        (_mm256_castpd_ps(even), _mm256_castpd_ps(odd))
    }

    /// `Bᵀ` on four patch rows or columns.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn input_transform(d: [__m256; 4]) -> [__m256; 4] {
        [
            _mm256_sub_ps(d[0], d[2]),
            _mm256_add_ps(d[1], d[2]),
            _mm256_sub_ps(d[2], d[1]),
            _mm256_sub_ps(d[1], d[3]),
        ]
    }

    /// Transforms the patches of `chunk`'s tiles into `v` (`[position, channel, tile]`).
    #[target_feature(enable = "avx2,fma")]
    fn transform_input(inputs: usize, chunk: Chunk, plane: Plane, v: &mut [f32]) {
        let channel_len = plane.h * plane.w;
        let mut padded;
        for c in 0..inputs {
            let channel = &plane.data[c * channel_len..][..channel_len];
            // The channel's transformed patches at each position.
            let mut rows = v.chunks_exact_mut(chunk.stride).skip(c).step_by(inputs);
            let mut planes: [&mut [f32]; POSITIONS] =
                std::array::from_fn(|_| rows.next().unwrap_or_default());
            for ty in 0..chunk.rows {
                let y0 = 2 * (chunk.first + ty);
                for tx0 in (0..chunk.tiles_x).step_by(LANES) {
                    let x0 = 2 * tx0;
                    // Each patch row's columns, transformed: t[i][j] is row i, combination j.
                    let mut t = [[_mm256_setzero_ps(); 4]; 4];
                    for (i, t) in t.iter_mut().enumerate() {
                        let y = y0 + i;
                        let inside = (y < plane.h && x0 + 18 <= plane.w)
                            .then(|| channel[y * plane.w + x0..].first_chunk::<18>())
                            .flatten();
                        let row = match inside {
                            Some(row) => row,
                            None => {
                                padded = [0.0; 18];
                                if y < plane.h {
                                    let have = &channel[y * plane.w..][x0..plane.w];
                                    padded[..have.len()].copy_from_slice(have);
                                }
                                &padded
                            }
                        };
                        *t = input_transform(patch_columns(row));
                    }
                    let n0 = ty * chunk.tiles_x + tx0;
                    for j in 0..4 {
                        let column = input_transform([t[0][j], t[1][j], t[2][j], t[3][j]]);
                        for (i, x) in column.into_iter().enumerate() {
                            let plane = &mut planes[i * 4 + j];
                            let len = plane.len();
                            let dst = plane[n0..].first_chunk_mut().unwrap_or_else(|| {
                                panic!("8 values from {n0} of {len}");
                            });
                            store(dst, x);
                        }
                    }
                }
            }
        }
    }

    /// The products summed over input channels, per patch position: `m` (`[position, output
    /// channel, tile]`) from `v` and the transformed kernel.
    #[target_feature(enable = "avx2,fma")]
    fn products(
        inputs: usize,
        outputs: usize,
        weights: &Weights,
        chunk: Chunk,
        v: &[f32],
        m: &mut [f32],
    ) {
        let blocks = outputs / BLOCK;
        let stride = chunk.stride;
        // Every row read below is `stride` long and read from `n + COLUMNS <= columns`.
        assert!(
            chunk.columns() <= stride,
            "{} columns in rows of {stride}",
            chunk.columns()
        );
        for pos in 0..POSITIONS {
            let vp = &v[pos * inputs * stride..][..inputs * stride];
            for b in 0..blocks {
                let u = &weights.u[(pos * blocks + b) * inputs..][..inputs];
                for n in (0..chunk.columns()).step_by(COLUMNS) {
                    let mut acc = [[_mm256_setzero_ps(); 2]; BLOCK];
                    for (row, w) in vp.chunks_exact(stride).zip(u) {
                        // SAFETY: `n + COLUMNS <= columns <= stride = row.len()` (asserted
                        // above): both reads are inside `row`.
                        #[allow(unsafe_code)]
                        let x = unsafe {
                            [
                                _mm256_loadu_ps(row.as_ptr().add(n)),
                                _mm256_loadu_ps(row.as_ptr().add(n + LANES)),
                            ]
                        };
                        for (acc, &w) in acc.iter_mut().zip(w) {
                            let w = _mm256_set1_ps(w);
                            acc[0] = _mm256_fmadd_ps(w, x[0], acc[0]);
                            acc[1] = _mm256_fmadd_ps(w, x[1], acc[1]);
                        }
                    }
                    for (o, acc) in acc.iter().enumerate() {
                        let at = (pos * outputs + b * BLOCK + o) * stride + n;
                        let dst = &mut m[at..][..COLUMNS];
                        let (lo, hi) = dst.split_at_mut(LANES);
                        if let (Ok(lo), Ok(hi)) = (lo.try_into(), hi.try_into()) {
                            store(lo, acc[0]);
                            store(hi, acc[1]);
                        }
                    }
                }
            }
        }
    }

    /// `Aᵀ` on four rows or columns of products.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn output_transform(m: [__m256; 4]) -> [__m256; 2] {
        [
            _mm256_add_ps(_mm256_add_ps(m[0], m[1]), m[2]),
            _mm256_sub_ps(_mm256_sub_ps(m[1], m[2]), m[3]),
        ]
    }

    /// Transforms `chunk`'s products back into outputs, adds the bias, applies each channel's
    /// PReLU slope and writes them into `out` (`[outputs, ho, wo]`).
    #[target_feature(enable = "avx2,fma")]
    fn transform_output(
        outputs: usize,
        weights: &Weights,
        slopes: &[f32],
        chunk: Chunk,
        m: &[f32],
        (ho, wo): (usize, usize),
        out: &mut [f32],
    ) {
        for (o, (&bias, &slope)) in weights.bias.iter().zip(slopes).enumerate().take(outputs) {
            let (bias, slope) = (_mm256_set1_ps(bias), _mm256_set1_ps(slope));
            let map = &mut out[o * ho * wo..][..ho * wo];
            // The channel's products at each patch position.
            let planes: [&[f32]; POSITIONS] =
                std::array::from_fn(|pos| &m[(pos * outputs + o) * chunk.stride..][..chunk.stride]);
            for ty in 0..chunk.rows {
                let y = 2 * (chunk.first + ty);
                for tx0 in (0..chunk.tiles_x).step_by(LANES) {
                    let n0 = ty * chunk.tiles_x + tx0;
                    // (Loops, not closures: a closure passed to `array::map` or `from_fn` is
                    // not inlined here, and its vectors go through memory.)
                    let mut mm = [_mm256_setzero_ps(); POSITIONS];
                    for (x, plane) in mm.iter_mut().zip(&planes) {
                        *x = load(eight(plane, n0));
                    }
                    // Columns first: c[j] is patch column j for output rows 0 and 1.
                    let c0 = output_transform([mm[0], mm[4], mm[8], mm[12]]);
                    let c1 = output_transform([mm[1], mm[5], mm[9], mm[13]]);
                    let c2 = output_transform([mm[2], mm[6], mm[10], mm[14]]);
                    let c3 = output_transform([mm[3], mm[7], mm[11], mm[15]]);
                    let r = [[c0[0], c1[0], c2[0], c3[0]], [c0[1], c1[1], c2[1], c3[1]]];
                    for (i, r) in r.into_iter().enumerate() {
                        if y + i >= ho {
                            break;
                        }
                        let [left, right] = output_transform(r);
                        let row = &mut map[(y + i) * wo..][..wo];
                        write_pairs(
                            row,
                            2 * tx0,
                            prelu(_mm256_add_ps(left, bias), slope),
                            prelu(_mm256_add_ps(right, bias), slope),
                        );
                    }
                }
            }
        }
    }

    /// Writes 8 tiles' left (`a`) and right (`b`) outputs interleaved into `row` from `x0`, as far
    /// as the row goes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn write_pairs(row: &mut [f32], x0: usize, a: __m256, b: __m256) {
        let lo = _mm256_unpacklo_ps(a, b);
        let hi = _mm256_unpackhi_ps(a, b);
        let first = _mm256_permute2f128_ps::<0x20>(lo, hi);
        let second = _mm256_permute2f128_ps::<0x31>(lo, hi);
        let dst = &mut row[x0..];
        if let Some(dst) = dst.first_chunk_mut::<COLUMNS>() {
            let (lo, hi) = dst.split_at_mut(LANES);
            if let (Ok(lo), Ok(hi)) = (lo.try_into(), hi.try_into()) {
                store(lo, first);
                store(hi, second);
            }
        } else {
            let mut values = [[0f32; LANES]; 2];
            store(&mut values[0], first);
            store(&mut values[1], second);
            let count = dst.len();
            dst.copy_from_slice(&values.as_flattened()[..count]);
        }
    }
}
