//! Winograd's F(2x2, 3x3) for the 3x3, stride-1 convolutions of an embedding model in f32.
//!
//! Each 2x2 block of outputs ("tile") comes from the 4x4 patch of input around it: the patch
//! is transformed (additions only, `Bᵀ d B`), multiplied position by position with the
//! kernel's transform (`G g Gᵀ`, made once at load in f64) and summed over the input channels,
//! then transformed back (`Aᵀ m A`, additions only). That is 16 multiply-adds per tile and
//! input channel instead of 36 (2.25x fewer), at the price of the two transforms and of
//! rounding in another order: outputs differ from tract's by rounding only (the tests check
//! 1e-5 of each output's scale).
//!
//! The sums over input channels are 16 independent matrix products, one per patch position:
//! `[tiles × inputs] · [inputs × outputs]`. They run on AVX2 and FMA in register tiles of 6
//! tiles × 16 output channels. Around them the op works through the map a chunk of tiles at a
//! time (at most about 256 KB of transformed inputs and products), so what the products read
//! stays in the cache: the input is first laid out as height × width × channels with its
//! zero padding (and zeros past the last tile), then each chunk's patches are transformed 8
//! channels a vector, multiplied, and transformed back straight into the `[N, C, H, W]` output.
//! The buffers are a per-thread scratch reused between runs: for the dlib ResNet at most about
//! 600 KB a thread.
//!
//! [`replace_convs`] puts it where it pays: maps of at least 16 tiles whose tiles compute at
//! most a quarter more outputs than the map has (dlib's 35x35, 17x17 and 8x8 maps). On dlib's
//! 3x3 map (16 outputs computed for 9) the two took the same time. Its 4x4 maps, with 256
//! channels, ran in half tract's time when timed alone, but not inside the model: there each
//! one's transformed kernel (4 MB, 16/9 of the kernel) comes from memory for only 4 tiles, and
//! the embedding was no faster with them.

use std::cell::RefCell;
use std::sync::Arc;

use tract_onnx::tract_hir::internal::*;

use crate::conv::ConstConv;

/// Whether this CPU runs the Winograd kernels (x86-64 with AVX2 and FMA).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Replaces every convolution of `model` that [`WinogradConv`] runs and whose tiles waste
/// little (f32, `[N, C, H, W]` with known height and width, 3x3 kernel, stride 1, one group,
/// no dilation, explicit or no padding, input channels a multiple of 8 and output channels of
/// 16, constant kernel and bias) by one, when this CPU has the kernels ([`available`]).
/// Returns how many were replaced.
pub(crate) fn replace_convs(model: &mut TypedModel) -> TractResult<usize> {
    if !available() {
        return Ok(0);
    }
    crate::conv::replace_convs(model, WinogradConv::new)
}

/// The fewest tiles for which [`replace_convs`] uses Winograd: each transformed weight is
/// read once per image and used by every tile.
const MIN_TILES: usize = 16;

/// Vector lanes: eight f32 in an AVX register.
const LANES: usize = 8;
/// Output channels of one register tile: two vectors.
const BLOCK: usize = 2 * LANES;
/// Tiles of one register tile.
const ROWS: usize = 6;
/// Positions of a transformed 4x4 patch.
const POSITIONS: usize = 16;
/// About how many f32 a chunk's transformed inputs and products may hold (256 KB).
const CHUNK_FLOATS: usize = 64 * 1024;

/// Channels and padding of a 3x3, stride-1 convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    inputs: usize,
    outputs: usize,
    /// Zero rows above and columns left of the input.
    before: [usize; 2],
    /// Zero rows below and columns right of the input.
    after: [usize; 2],
}

impl Geometry {
    /// The output's height and width for an `h` × `w` input, if the kernel fits.
    fn output(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let ho = (h + self.before[0] + self.after[0]).checked_sub(2)?;
        let wo = (w + self.before[1] + self.after[1]).checked_sub(2)?;
        (ho > 0 && wo > 0).then_some([ho, wo])
    }

    /// Rows and columns of 2x2 tiles covering the output of an `h` × `w` input.
    fn tiles(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        self.output(h, w)
            .map(|[ho, wo]| [ho.div_ceil(2), wo.div_ceil(2)])
    }

    /// Whether an `h` × `w` input has at least [`MIN_TILES`] tiles and they compute at most
    /// a quarter more outputs than the map has.
    fn pays(&self, h: usize, w: usize) -> bool {
        match (self.output(h, w), self.tiles(h, w)) {
            (Some([ho, wo]), Some([ty, tx])) => {
                ty * tx >= MIN_TILES && 4 * ty * tx * 4 <= 5 * ho * wo
            }
            _ => false,
        }
    }

    /// Tiles in one chunk: whole register tiles, at least one, and about [`CHUNK_FLOATS`] of
    /// transformed inputs and products.
    fn chunk(&self) -> usize {
        let per_tile = POSITIONS * (self.inputs + self.outputs);
        (CHUNK_FLOATS / per_tile / ROWS).max(1) * ROWS
    }
}

/// A 3x3 kernel transformed for Winograd's F(2x2, 3x3) and packed for the products.
#[derive(PartialEq)]
struct Weights {
    /// Per position of the 4x4 transform, per block of 16 output channels, per input channel:
    /// the block's 16 transformed weights.
    packed: Vec<f32>,
    /// Per output channel: the bias.
    bias: Vec<f32>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({} channels)", self.bias.len())
    }
}

impl Weights {
    /// Transforms an OIHW 3x3 kernel (`G g Gᵀ`, in f64) and packs it.
    fn new(g: Geometry, oihw: &[f32], bias: Vec<f32>) -> Self {
        const G: [[f64; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let blocks = g.outputs / BLOCK;
        let mut packed = vec![0f32; POSITIONS * g.outputs * g.inputs];
        for o in 0..g.outputs {
            for c in 0..g.inputs {
                let k = &oihw[(o * g.inputs + c) * 9..][..9];
                for (i, gi) in G.iter().enumerate() {
                    for (j, gj) in G.iter().enumerate() {
                        let mut u = 0f64;
                        for (row, &ga) in k.chunks_exact(3).zip(gi) {
                            for (&v, &gb) in row.iter().zip(gj) {
                                u += ga * f64::from(v) * gb;
                            }
                        }
                        let at = (((i * 4 + j) * blocks + o / BLOCK) * g.inputs + c) * BLOCK;
                        packed[at + o % BLOCK] = u as f32;
                    }
                }
            }
        }
        Self { packed, bias }
    }
}

/// A 3x3, stride-1 convolution over `[N, C, H, W]` f32 tensors by Winograd's F(2x2, 3x3)
/// (see the [module](self) docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WinogradConv {
    geometry: Geometry,
    weights: Arc<Weights>,
}

// `DynEq` needs `Eq`; weights are finite model constants, never NaN.
impl Eq for WinogradConv {}

thread_local! {
    /// The padded input, transformed inputs and products of the last run on this thread.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

impl WinogradConv {
    /// The op for `conv`, or `None` when it is not 3x3 with stride 1, its channels do not fill
    /// the vectors, its input size is unknown or its tiles would waste too much
    /// (`Geometry::pays`).
    fn new(conv: ConstConv) -> Option<Self> {
        if conv.kernel != [3, 3]
            || conv.strides != [1, 1]
            || !conv.inputs.is_multiple_of(LANES)
            || !conv.outputs.is_multiple_of(BLOCK)
        {
            return None;
        }
        let geometry = Geometry {
            inputs: conv.inputs,
            outputs: conv.outputs,
            before: conv.before,
            after: conv.after,
        };
        let [h, w] = conv.input_size?;
        if !geometry.pays(h, w) {
            return None;
        }
        Some(Self {
            geometry,
            weights: Arc::new(Weights::new(geometry, &conv.oihw, conv.bias)),
        })
    }

    /// Runs the convolution on `input` (`[N, C, H, W]`).
    fn convolve(&self, input: &Tensor) -> TractResult<Tensor> {
        let g = self.geometry;
        let &[n, c, h, w] = input.shape() else {
            bail!("WinogradConv on a tensor of shape {:?}", input.shape());
        };
        ensure!(
            c == g.inputs,
            "WinogradConv: {c} input channels, {} expected",
            g.inputs
        );
        let (Some([ho, wo]), Some(tiles)) = (g.output(h, w), g.tiles(h, w)) else {
            bail!("WinogradConv: a {h}x{w} input is smaller than the kernel");
        };
        let mut output = Tensor::zero::<f32>(&[n, g.outputs, ho, wo])?;
        let mut out_plain = output.try_as_plain_ram_mut()?;
        let out = out_plain.as_slice_mut::<f32>()?;
        let in_plain = input.try_as_plain_ram()?;
        let images = in_plain.as_slice::<f32>()?;
        let map = Map {
            tiles,
            output: [ho, wo],
        };
        SCRATCH.with_borrow_mut(|scratch| {
            for (image, out) in images
                .chunks_exact(c * h * w)
                .zip(out.chunks_exact_mut(g.outputs * ho * wo))
            {
                let padded = pad(g, image, [h, w], map, scratch);
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: `replace_convs` puts this op in a model only where
                    // `available()` found AVX2 and FMA on this CPU (the tests check too).
                    #[allow(unsafe_code)]
                    unsafe {
                        avx2::convolve(g, &self.weights, map, padded, out)
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = (padded, out);
                    bail!("WinogradConv needs an x86-64 CPU");
                }
            }
            TractResult::Ok(())
        })?;
        Ok(output)
    }
}

/// Tiles and output size of one image's convolution.
#[derive(Debug, Clone, Copy)]
struct Map {
    /// Rows and columns of tiles.
    tiles: [usize; 2],
    /// Output height and width (the last tile row or column may reach one past them).
    output: [usize; 2],
}

impl Map {
    /// Width of the padded input: every tile's 4 columns.
    fn padded_width(&self) -> usize {
        2 * self.tiles[1] + 2
    }
}

/// Lays `image` (`[C, H, W]`) out in `scratch` as `[2·tile rows + 2][2·tile columns + 2][C]`
/// with its zero padding, and returns that part of `scratch`, followed by room for one
/// chunk's transformed inputs and products.
fn pad<'a>(
    g: Geometry,
    image: &[f32],
    [h, w]: [usize; 2],
    map: Map,
    scratch: &'a mut Vec<f32>,
) -> &'a mut [f32] {
    let c = g.inputs;
    let hp = 2 * map.tiles[0] + 2;
    let wp = map.padded_width();
    let len = hp * wp * c + g.chunk() * POSITIONS * (g.inputs + g.outputs);
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    // Zeros where no input value goes; the chunks' buffers are written before they are read.
    scratch[..hp * wp * c].fill(0.0);
    // Only the rows and columns the tiles read; a `Valid` input may have more.
    let rows = h.min(hp - g.before[0]);
    let cols = w.min(wp - g.before[1]);
    for (ch, plane) in image.chunks_exact(h * w).enumerate() {
        for (y, row) in plane.chunks_exact(w).take(rows).enumerate() {
            let start = ((y + g.before[0]) * wp + g.before[1]) * c + ch;
            for (x, &v) in row[..cols].iter().enumerate() {
                scratch[start + x * c] = v;
            }
        }
    }
    scratch
}

impl Op for WinogradConv {
    fn name(&self) -> StaticName {
        "WinogradConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = self.geometry;
        Ok(vec![format!(
            "{} -> {} channels, 3x3 kernel, Winograd F(2x2, 3x3)",
            g.inputs, g.outputs
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for WinogradConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.convolve(&input)?.into_tvalue()))
    }
}

impl TypedOp for WinogradConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "WinogradConv on a rank {} input",
            shape.rank()
        );
        let (Ok(h), Ok(w)) = (shape[2].to_usize(), shape[3].to_usize()) else {
            bail!("WinogradConv needs a known input height and width, not {shape:?}");
        };
        let Some([ho, wo]) = self.geometry.output(h, w) else {
            bail!("WinogradConv: a {h}x{w} input is smaller than the kernel");
        };
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.geometry.outputs.to_dim(),
            ho.to_dim(),
            wo.to_dim(),
        ])))
    }

    /// The multiply-adds of the direct convolution this op computes (it does 16/36 of them,
    /// plus the transforms' additions), so that profiles compare it with tract's.
    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let shape = &inputs[0].shape;
        let g = self.geometry;
        let (Ok(h), Ok(w)) = (shape[2].to_usize(), shape[3].to_usize()) else {
            bail!("WinogradConv needs a known input height and width, not {shape:?}");
        };
        let Some([ho, wo]) = g.output(h, w) else {
            bail!("WinogradConv: a {h}x{w} input is smaller than the kernel");
        };
        let per_image = g.inputs * 9 * g.outputs * ho * wo;
        Ok(tvec!((
            Cost::FMA(f32::datum_type()),
            shape[0].clone() * per_image
        )))
    }

    as_op!();
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Eight lanes from `s` at `at`.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn load(s: &[f32], at: usize) -> __m256 {
        let v: &[f32; LANES] = s[at..]
            .first_chunk()
            .unwrap_or_else(|| panic!("8 values from {at} of {}", s.len()));
        // SAFETY: `v` is eight readable f32; the load has no alignment requirement.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    /// Stores eight lanes into `s` at `at`.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn store(s: &mut [f32], at: usize, x: __m256) {
        let len = s.len();
        let v: &mut [f32; LANES] = s[at..]
            .first_chunk_mut()
            .unwrap_or_else(|| panic!("8 values from {at} of {len}"));
        // SAFETY: `v` is eight writable f32; the store has no alignment requirement.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), x) }
    }

    /// Convolves one padded image (`scratch` from [`pad`](super::pad)) into `out`
    /// (`[outputs, Ho, Wo]`), a chunk of tiles at a time.
    ///
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn convolve(
        g: Geometry,
        weights: &Weights,
        map: Map,
        scratch: &mut [f32],
        out: &mut [f32],
    ) {
        let hp = 2 * map.tiles[0] + 2;
        let wp = map.padded_width();
        let (padded, rest) = scratch.split_at_mut(hp * wp * g.inputs);
        let chunk = g.chunk();
        let (transformed, products) = rest.split_at_mut(chunk * POSITIONS * g.inputs);
        let total = map.tiles[0] * map.tiles[1];
        for first in (0..total).step_by(chunk) {
            let tiles = chunk.min(total - first);
            transform_input(g, map, padded, first, tiles, chunk, transformed);
            for p in 0..POSITIONS {
                multiply(g, weights, p, tiles, chunk, transformed, products);
            }
            transform_output(g, map, weights, first, tiles, chunk, products, out);
        }
    }

    /// Transforms the patches of tiles `first..first + tiles` (`Bᵀ d B`) into `transformed`:
    /// `[16 positions][chunk tiles][inputs]`.
    #[target_feature(enable = "avx2,fma")]
    fn transform_input(
        g: Geometry,
        map: Map,
        padded: &[f32],
        first: usize,
        tiles: usize,
        chunk: usize,
        transformed: &mut [f32],
    ) {
        let c = g.inputs;
        let wp = map.padded_width();
        let position = chunk * c;
        for t in 0..tiles {
            let (ty, tx) = ((first + t) / map.tiles[1], (first + t) % map.tiles[1]);
            let corner = (2 * ty * wp + 2 * tx) * c;
            for c0 in (0..c).step_by(LANES) {
                let mut d = [[_mm256_setzero_ps(); 4]; 4];
                for (i, row) in d.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = load(padded, corner + (i * wp + j) * c + c0);
                    }
                }
                // Bᵀ d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3.
                let mut s = [[_mm256_setzero_ps(); 4]; 4];
                for j in 0..4 {
                    s[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                    s[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                    s[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                    s[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
                }
                // (Bᵀ d) B: the same on each row's columns.
                for (i, row) in s.iter().enumerate() {
                    let v = [
                        _mm256_sub_ps(row[0], row[2]),
                        _mm256_add_ps(row[1], row[2]),
                        _mm256_sub_ps(row[2], row[1]),
                        _mm256_sub_ps(row[1], row[3]),
                    ];
                    for (j, &v) in v.iter().enumerate() {
                        store(transformed, (i * 4 + j) * position + t * c + c0, v);
                    }
                }
            }
        }
        // Tiles past the last one up to a whole register tile: zeros, whose products are
        // computed and never read.
        let padded_tiles = tiles.next_multiple_of(ROWS);
        for p in 0..POSITIONS {
            transformed[p * position + tiles * c..p * position + padded_tiles * c].fill(0.0);
        }
    }

    /// One position's products for the chunk's tiles: `products[p] = transformed[p] ·
    /// packed[p]`, `[chunk tiles][outputs]`, in register tiles of 6 tiles × 16 channels.
    #[target_feature(enable = "avx2,fma")]
    fn multiply(
        g: Geometry,
        weights: &Weights,
        p: usize,
        tiles: usize,
        chunk: usize,
        transformed: &[f32],
        products: &mut [f32],
    ) {
        let (c, k) = (g.inputs, g.outputs);
        let inputs = &transformed[p * chunk * c..][..chunk * c];
        let products = &mut products[p * chunk * k..][..chunk * k];
        let packed = &weights.packed[p * k * c..][..k * c];
        for (block, u) in packed.chunks_exact(BLOCK * c).enumerate() {
            for first in (0..tiles).step_by(ROWS) {
                let v = &inputs[first * c..][..ROWS * c];
                let rows: [&[f32]; ROWS] = [
                    &v[..c],
                    &v[c..2 * c],
                    &v[2 * c..3 * c],
                    &v[3 * c..4 * c],
                    &v[4 * c..5 * c],
                    &v[5 * c..6 * c],
                ];
                let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
                for (i, u) in u.chunks_exact(BLOCK).enumerate() {
                    let u0 = load(u, 0);
                    let u1 = load(u, LANES);
                    for r in 0..ROWS {
                        let b = _mm256_set1_ps(rows[r][i]);
                        acc[r][0] = _mm256_fmadd_ps(b, u0, acc[r][0]);
                        acc[r][1] = _mm256_fmadd_ps(b, u1, acc[r][1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    let at = (first + r) * k + block * BLOCK;
                    store(products, at, acc[0]);
                    store(products, at + LANES, acc[1]);
                }
            }
        }
    }

    /// Transforms the chunk's products back (`Aᵀ m A`), adds the bias and writes each tile's
    /// 2x2 outputs that lie inside the output into `out` (`[outputs, Ho, Wo]`).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    fn transform_output(
        g: Geometry,
        map: Map,
        weights: &Weights,
        first: usize,
        tiles: usize,
        chunk: usize,
        products: &[f32],
        out: &mut [f32],
    ) {
        let k = g.outputs;
        let [ho, wo] = map.output;
        let plane = ho * wo;
        let position = chunk * k;
        let mut lanes = [[0f32; LANES]; 4];
        for t in 0..tiles {
            let (ty, tx) = ((first + t) / map.tiles[1], (first + t) % map.tiles[1]);
            let (y, x) = (2 * ty, 2 * tx);
            let height = (ho - y).min(2);
            let width = (wo - x).min(2);
            for k0 in (0..k).step_by(LANES) {
                let mut m = [[_mm256_setzero_ps(); 4]; 4];
                for (i, row) in m.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = load(products, (i * 4 + j) * position + t * k + k0);
                    }
                }
                // Aᵀ m: rows m0 + m1 + m2 and m1 - m2 - m3.
                let mut s = [[_mm256_setzero_ps(); 4]; 2];
                for j in 0..4 {
                    s[0][j] = _mm256_add_ps(_mm256_add_ps(m[0][j], m[1][j]), m[2][j]);
                    s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m[1][j], m[2][j]), m[3][j]);
                }
                let bias = load(&weights.bias, k0);
                for (i, row) in s.iter().enumerate() {
                    let left = _mm256_add_ps(_mm256_add_ps(row[0], row[1]), row[2]);
                    let right = _mm256_sub_ps(_mm256_sub_ps(row[1], row[2]), row[3]);
                    store(&mut lanes[2 * i], 0, _mm256_add_ps(left, bias));
                    store(&mut lanes[2 * i + 1], 0, _mm256_add_ps(right, bias));
                }
                for dy in 0..height {
                    for dx in 0..width {
                        let at = k0 * plane + (y + dy) * wo + x + dx;
                        for (channel, &v) in lanes[2 * dy + dx].iter().enumerate() {
                            out[at + channel * plane] = v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::values;

    /// The convolution summed in f64, `[N, K, Ho, Wo]`.
    fn reference(
        g: Geometry,
        oihw: &[f32],
        bias: &[f32],
        input: &[f32],
        shape: [usize; 4],
    ) -> Vec<f64> {
        let [n, c, h, w] = shape;
        let [ho, wo] = g.output(h, w).unwrap();
        let mut out = vec![0f64; n * g.outputs * ho * wo];
        for b in 0..n {
            for o in 0..g.outputs {
                for y in 0..ho {
                    for x in 0..wo {
                        let mut sum = f64::from(bias[o]);
                        for ci in 0..c {
                            for ky in 0..3 {
                                for kx in 0..3 {
                                    let (iy, ix) = (y + ky, x + kx);
                                    if iy < g.before[0] || ix < g.before[1] {
                                        continue;
                                    }
                                    let (iy, ix) = (iy - g.before[0], ix - g.before[1]);
                                    if iy >= h || ix >= w {
                                        continue;
                                    }
                                    sum += f64::from(oihw[((o * c + ci) * 3 + ky) * 3 + kx])
                                        * f64::from(input[((b * c + ci) * h + iy) * w + ix]);
                                }
                            }
                        }
                        out[((b * g.outputs + o) * ho + y) * wo + x] = sum;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn winograd_gives_the_convolution_on_every_map_size_and_padding() {
        if !available() {
            facerec_fixtures::skip("this CPU lacks AVX2 or FMA, so WinogradConv is never used");
            return;
        }
        // (inputs, outputs, [n, h, w], before, after): dlib's padded maps, odd and even sizes,
        // a 1x1 output, asymmetric and no padding, several chunks, a batch of two.
        let cases = [
            (32, 32, [1, 35, 35], [1, 1], [1, 1]),
            (64, 64, [1, 17, 17], [1, 1], [1, 1]),
            (128, 128, [1, 8, 8], [1, 1], [1, 1]),
            (8, 16, [2, 5, 7], [1, 1], [1, 1]),
            (8, 16, [1, 1, 1], [1, 1], [1, 1]),
            (16, 32, [1, 6, 9], [0, 2], [1, 0]),
            (8, 48, [1, 12, 10], [0, 0], [0, 0]),
            (24, 16, [1, 40, 3], [1, 1], [1, 1]),
        ];
        for (seed, (inputs, outputs, [n, h, w], before, after)) in cases.into_iter().enumerate() {
            let g = Geometry {
                inputs,
                outputs,
                before,
                after,
            };
            let seed = seed as u64;
            let oihw = values(outputs * inputs * 9, seed, -0.5, 0.5);
            let bias = values(outputs, seed + 100, -1.0, 1.0);
            let shape = [n, inputs, h, w];
            let input = values(n * inputs * h * w, seed + 200, -1.0, 2.0);
            let op = WinogradConv {
                geometry: g,
                weights: Arc::new(Weights::new(g, &oihw, bias.clone())),
            };
            let tensor = Tensor::from_shape(&shape, &input).unwrap();
            let got = op.convolve(&tensor).unwrap();
            let [ho, wo] = g.output(h, w).unwrap();
            assert_eq!(got.shape(), &[n, outputs, ho, wo]);
            let got = got
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            let want = reference(g, &oihw, &bias, &input, shape);
            // Each output's scale: the sum of its terms' magnitudes is at most this.
            let scale = (inputs * 9) as f64 * 0.5 * 2.0;
            for (i, (&got, &want)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= 1e-5 * scale,
                    "{g:?} on {shape:?}: output {i} is {got}, {want} expected"
                );
            }
        }
    }

    /// Times tract's convolution and `WinogradConv` on the dlib ResNet's padded 3x3 layers, one
    /// image, one thread:
    /// `cargo test --release -p facerec-embed winograd::tests::timings -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings; run by hand"]
    fn timings() {
        use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
        use tract_onnx::tract_core::ops::nn::DataFormat;
        assert!(available());
        for (channels, side) in [(32, 35), (64, 17), (128, 8), (256, 4), (256, 3)] {
            let g = Geometry {
                inputs: channels,
                outputs: channels,
                before: [1, 1],
                after: [1, 1],
            };
            let oihw = values(channels * channels * 9, 1, -0.5, 0.5);
            let bias = values(channels, 2, -1.0, 1.0);
            let shape = [1, channels, side, side];
            let input =
                Tensor::from_shape(&shape, &values(channels * side * side, 3, -1.0, 2.0)).unwrap();
            let conv = Conv {
                pool_spec: PoolSpec {
                    data_format: DataFormat::NCHW,
                    kernel_shape: tvec![3, 3],
                    padding: PaddingSpec::Explicit(tvec![1, 1], tvec![1, 1]),
                    dilations: None,
                    strides: None,
                    input_channels: channels,
                    output_channels: channels,
                },
                kernel_fmt: KernelFormat::OIHW,
                group: 1,
                q_params: None,
            };
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(shape)).unwrap();
            let k = model
                .add_const(
                    "k",
                    Tensor::from_shape(&[channels, channels, 3, 3], &oihw).unwrap(),
                )
                .unwrap();
            let b = model
                .add_const("b", Tensor::from_shape(&[channels], &bias).unwrap())
                .unwrap();
            let out = model.wire_node("conv", conv, &[x, k, b]).unwrap();
            model.select_output_outlets(&out).unwrap();
            let tract = model.into_optimized().unwrap().into_runnable().unwrap();
            let ours = WinogradConv {
                geometry: g,
                weights: Arc::new(Weights::new(g, &oihw, bias)),
            };
            let macs = (channels * channels * 9 * side * side) as f64;
            let reps = (2e8 / macs) as usize + 5;
            let time = |run: &dyn Fn()| {
                (0..5)
                    .map(|_| {
                        let t = std::time::Instant::now();
                        for _ in 0..reps {
                            run();
                        }
                        t.elapsed().as_secs_f64() / reps as f64
                    })
                    .fold(f64::MAX, f64::min)
            };
            let tracts = time(&|| {
                tract.run(tvec![input.clone().into_tvalue()]).unwrap();
            });
            let winograd = time(&|| {
                ours.convolve(&input).unwrap();
            });
            println!(
                "{channels} channels, {side}x{side}: tract {:.1} us ({:.1} G/s), Winograd {:.1} us \
                 ({:.1} G/s direct-equivalent)",
                tracts * 1e6,
                macs / tracts / 1e9,
                winograd * 1e6,
                macs / winograd / 1e9
            );
        }
    }

    #[test]
    fn winograd_runs_where_its_tiles_fit_the_map() {
        let g = Geometry {
            inputs: 256,
            outputs: 256,
            before: [1, 1],
            after: [1, 1],
        };
        // dlib's maps: 2x2 tiles cover 35x35, 17x17 and 8x8 with at most 12 % more outputs;
        // 4x4 has only 4 tiles; 3x3 would compute 78 % more; 1x1 4 outputs for 1.
        assert!([35, 17, 8].iter().all(|&side| g.pays(side, side)));
        assert!(!g.pays(4, 4) && !g.pays(3, 3));
        assert!(!g.pays(1, 1));
        assert!(g.pays(35, 36) && !g.pays(7, 7) && g.pays(7, 8));
        assert_eq!(g.output(1, 1), Some([1, 1]));
        let valid = Geometry {
            before: [0, 0],
            after: [0, 0],
            ..g
        };
        assert_eq!(valid.output(2, 5), None);
        assert_eq!(valid.output(3, 5), Some([1, 3]));
    }
}
