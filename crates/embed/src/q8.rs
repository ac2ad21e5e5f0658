//! int8 convolutions for an embedding model, opted into with
//! [`EmbedderConfig::int8`](crate::EmbedderConfig::int8).
//!
//! Every 2-D convolution of the model with constant weights (one group, no dilation) becomes a
//! [`Q8Conv`]: its weights are quantized once, at load, to 8-bit integers with one scale per
//! output channel (symmetric, `round(w / s)`, `s = max |w| / 127`); its input is quantized on
//! every run, per image, to unsigned 8 bits over the range the image's values actually span
//! (asymmetric, zero included, so zero padding stays exact). The products are summed in 32-bit
//! integers, then scaled back to f32 and the bias added, so the rest of the network (ReLU,
//! residual additions, pools) runs in f32 as before. Ranges come from each input itself: no
//! calibration data is needed, and the model file is the same ONNX as for f32.
//!
//! On the dlib ResNet, `lfw-dev` gives 98.20 % ± 0.32 against 98.47 % ± 0.16 in f32 (the same
//! 98.37 % at the 0.6 threshold; docs/performance.md), and embeddings move by 0.014-0.020 from
//! their f32 values, about 1 % of their length.
//!
//! The integer sums run on AVX-512 VNNI (`vpdpbusd`: 64 byte products an instruction) or, on
//! CPUs without it, on AVX2 (`vpmaddwd`: 16 products of bytes widened to 16 bits), chosen at run
//! time; [`available`] says whether this CPU has either. Both give exactly the sums of the
//! portable loop beside them (the tests check it bit for bit), so the embeddings are the same on
//! either; the portable loop is far slower, and the embedder refuses int8 on CPUs with neither
//! rather than run it.
//!
//! Data layout: the quantized input is kept as height × width × channels (channels padded to a
//! multiple of 4, borders filled with the zero point), so the 4 bytes one `vpdpbusd` lane reads
//! are 4 channels of one pixel, and each kernel tap of a block of pixels is one load per pixel
//! and channel quad: no im2col buffer. Weights are packed per block of 16 output channels, per
//! tap, per quad of input channels: 64 bytes, one register. The AVX2 kernel reads the same map
//! widened to 16 bits, and a copy of the weights widened and regrouped into two pairs of input
//! channels for each half of the block (four registers; twice the bytes of the 8-bit weights,
//! about 10 MB for the dlib ResNet).

use std::sync::Arc;

use tract_onnx::tract_hir::internal::*;

use crate::conv::ConstConv;

/// Whether this CPU runs the int8 kernels fast: x86-64 with AVX-512 VNNI or with AVX2.
pub fn available() -> bool {
    Kernel::best().is_some()
}

/// The instructions the int8 kernels run on this CPU, `"AVX-512 VNNI"` or `"AVX2"`; `None`
/// where int8 is refused.
pub fn kernel_name() -> Option<&'static str> {
    Kernel::best().map(|kernel| match kernel {
        Kernel::Vnni => "AVX-512 VNNI",
        Kernel::Avx2 => "AVX2",
        Kernel::Portable => "portable",
    })
}

/// Which integer loop a [`Q8Conv`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernel {
    /// AVX-512 VNNI (`vpdpbusd`); only chosen where [`Kernel::vnni`] is true.
    Vnni,
    /// AVX2 (`vpmaddwd` on bytes widened to 16 bits); only chosen where [`Kernel::avx2`] is true.
    Avx2,
    /// Plain Rust: the same sums, slowly; the reference the tests check the fast ones against.
    #[cfg_attr(not(test), allow(dead_code))]
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU runs, if it runs one fast.
    pub(crate) fn best() -> Option<Self> {
        if Self::vnni() {
            Some(Self::Vnni)
        } else if Self::avx2() {
            Some(Self::Avx2)
        } else {
            None
        }
    }

    /// Whether this CPU has AVX-512 F and VNNI.
    fn vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Whether this CPU has AVX2.
    fn avx2() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }
}

/// Replaces every convolution of `model` that [`Q8Conv`] runs (f32, `[N, C, H, W]`, 2-D, one
/// group, no dilation, explicit or no padding, constant kernel and bias) by one using
/// `kernel`. Returns how many were replaced.
pub(crate) fn replace_convs(model: &mut TypedModel, kernel: Kernel) -> TractResult<usize> {
    crate::conv::replace_convs(model, |conv| Some(Q8Conv::new(conv, kernel)))
}

/// Output channels in one block: sixteen 32-bit lanes of an AVX-512 register.
const BLOCK: usize = 16;
/// Bytes a lane sums per instruction: one quad of input channels.
const QUAD: usize = 4;
/// Output pixels of one full tile of 16 or 32 channels.
const PIXELS: usize = 8;
/// Output pixels of one full tile of 64 channels.
const WIDE_PIXELS: usize = 6;

/// Kernel size, strides and padding of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    inputs: usize,
    outputs: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    /// Zero rows above and columns left of the input.
    before: [usize; 2],
    /// Zero rows below and columns right of the input.
    after: [usize; 2],
}

impl Geometry {
    /// Input channels padded to whole quads.
    fn padded_inputs(&self) -> usize {
        self.inputs.div_ceil(QUAD) * QUAD
    }

    /// The padded input's height and width for an `h` × `w` input.
    fn padded(&self, h: usize, w: usize) -> [usize; 2] {
        [
            h + self.before[0] + self.after[0],
            w + self.before[1] + self.after[1],
        ]
    }

    /// The output's height and width for an `h` × `w` input, if the kernel fits.
    fn output(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let [hp, wp] = self.padded(h, w);
        let ho = hp.checked_sub(self.kernel[0])? / self.strides[0] + 1;
        let wo = wp.checked_sub(self.kernel[1])? / self.strides[1] + 1;
        Some([ho, wo])
    }
}

/// A convolution's weights quantized per output channel, packed for the kernels.
#[derive(PartialEq)]
struct Weights {
    /// Per block of 16 output channels, per tap, per quad of input channels: 16 × 4 weights
    /// (zero past the last channel).
    packed: Vec<[i8; BLOCK * QUAD]>,
    /// The same weights widened to 16 bits for the AVX2 kernel (empty for the others): per
    /// block, tap and quad as in `packed`, then per half of the block (8 channels), per pair of
    /// input channels: 8 × 2 weights, one register.
    wide: Vec<[i16; BLOCK * QUAD]>,
    /// Per output channel: the scale of its weights.
    scale: Vec<f32>,
    /// Per output channel: the sum of its quantized weights (for the input's zero point).
    sum: Vec<i32>,
    /// Per output channel: the bias.
    bias: Vec<f32>,
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Weights({} channels)", self.scale.len())
    }
}

impl Weights {
    /// Quantizes an OIHW kernel of `geometry` and packs it for `kernel`.
    fn new(geometry: Geometry, oihw: &[f32], bias: Vec<f32>, kernel: Kernel) -> Self {
        let Geometry {
            inputs, outputs, ..
        } = geometry;
        let [kh, kw] = geometry.kernel;
        let taps = kh * kw;
        let quads = geometry.padded_inputs() / QUAD;
        let per_output = inputs * taps;
        let mut scale = Vec::with_capacity(outputs);
        let mut quantized = vec![0i8; outputs * per_output];
        for (w, q) in oihw
            .chunks_exact(per_output)
            .zip(quantized.chunks_exact_mut(per_output))
        {
            let max = w.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            for (q, &v) in q.iter_mut().zip(w) {
                *q = (v / s).round().clamp(-127.0, 127.0) as i8;
            }
            scale.push(s);
        }
        let sum = quantized
            .chunks_exact(per_output)
            .map(|q| q.iter().map(|&v| i32::from(v)).sum())
            .collect();
        let blocks = outputs.div_ceil(BLOCK);
        let mut packed = vec![[0i8; BLOCK * QUAD]; blocks * taps * quads];
        for o in 0..outputs {
            for c in 0..inputs {
                for t in 0..taps {
                    let at = ((o / BLOCK) * taps + t) * quads + c / QUAD;
                    packed[at][(o % BLOCK) * QUAD + c % QUAD] =
                        quantized[(o * inputs + c) * taps + t];
                }
            }
        }
        let wide = match kernel {
            Kernel::Avx2 => packed.iter().map(widen).collect(),
            Kernel::Vnni | Kernel::Portable => Vec::new(),
        };
        Self {
            packed,
            wide,
            scale,
            sum,
            bias,
        }
    }
}

/// One block, tap and quad's weights (`[16 channels][4 inputs]`) as the AVX2 kernel reads
/// them: `[2 halves of 8 channels][2 pairs of inputs][8 channels][2 inputs]`, in 16 bits.
fn widen(packed: &[i8; BLOCK * QUAD]) -> [i16; BLOCK * QUAD] {
    const HALF: usize = BLOCK / 2;
    let mut wide = [0i16; BLOCK * QUAD];
    for (o, weights) in packed.chunks_exact(QUAD).enumerate() {
        for (c, &w) in weights.iter().enumerate() {
            wide[((o / HALF * 2 + c / 2) * HALF + o % HALF) * 2 + c % 2] = i16::from(w);
        }
    }
    wide
}

/// A 2-D convolution over `[N, C, H, W]` f32 tensors with 8-bit weights and inputs and 32-bit
/// sums (see the [module](self) docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Q8Conv {
    geometry: Geometry,
    weights: Arc<Weights>,
    kernel: Kernel,
}

// `DynEq` needs `Eq`; weights are finite model constants, never NaN.
impl Eq for Q8Conv {}

/// One image's input quantized: `[H + padding][W + padding][C padded to quads]` bytes.
struct Quantized {
    data: Vec<u8>,
    /// Padded width.
    width: usize,
    /// The value 0.0 maps to.
    zero: u8,
    /// What one step of the bytes is worth.
    scale: f32,
}

impl Q8Conv {
    /// The op for `conv` on `kernel`.
    fn new(conv: ConstConv, kernel: Kernel) -> Self {
        let geometry = Geometry {
            inputs: conv.inputs,
            outputs: conv.outputs,
            kernel: conv.kernel,
            strides: conv.strides,
            before: conv.before,
            after: conv.after,
        };
        Self {
            geometry,
            weights: Arc::new(Weights::new(geometry, &conv.oihw, conv.bias, kernel)),
            kernel,
        }
    }

    /// Quantizes one image's `[C, H, W]` values with their own range.
    fn quantize(&self, image: &[f32], h: usize, w: usize) -> Quantized {
        let g = &self.geometry;
        let (lo, hi) = range(image);
        let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
        let zero = (-lo / scale).round().clamp(0.0, 255.0) as u8;
        let [hp, wp] = g.padded(h, w);
        let cp = g.padded_inputs();
        let mut data = vec![zero; hp * wp * cp];
        // Round half up, by truncation of a non-negative value: the same bits everywhere,
        // and a loop the compiler vectorises.
        let inverse = 1.0 / scale;
        let offset = f32::from(zero) + 0.5;
        let plane = h * w;
        // Four channels at a time, so each pixel's quad is one 4-byte store.
        let mut rows = vec![[0u8; QUAD]; w];
        for c0 in (0..g.inputs).step_by(QUAD) {
            for y in 0..h {
                for c in c0..g.inputs.min(c0 + QUAD) {
                    let row = &image[c * plane + y * w..][..w];
                    for (r, &v) in rows.iter_mut().zip(row) {
                        r[c - c0] = (v * inverse + offset).clamp(0.0, 255.0) as u8;
                    }
                }
                let start = ((y + g.before[0]) * wp + g.before[1]) * cp + c0;
                for (x, r) in rows.iter().enumerate() {
                    data[start + x * cp..][..QUAD].copy_from_slice(r);
                }
            }
        }
        Quantized {
            data,
            width: wp,
            zero,
            scale,
        }
    }

    /// Runs the convolution on `input` (`[N, C, H, W]`).
    fn convolve(&self, input: &Tensor) -> TractResult<Tensor> {
        let g = self.geometry;
        let &[n, c, h, w] = input.shape() else {
            bail!("Q8Conv on a tensor of shape {:?}", input.shape());
        };
        ensure!(
            c == g.inputs,
            "Q8Conv: {c} input channels, {} expected",
            g.inputs
        );
        let Some([ho, wo]) = g.output(h, w) else {
            bail!("Q8Conv: a {h}x{w} input is smaller than the kernel");
        };
        let mut output = Tensor::zero::<f32>(&[n, g.outputs, ho, wo])?;
        let mut out_plain = output.try_as_plain_ram_mut()?;
        let out = out_plain.as_slice_mut::<f32>()?;
        let in_plain = input.try_as_plain_ram()?;
        let images = in_plain.as_slice::<f32>()?;
        let cp = g.padded_inputs();
        for (image, out) in images
            .chunks_exact(c * h * w)
            .zip(out.chunks_exact_mut(g.outputs * ho * wo))
        {
            let q = self.quantize(image, h, w);
            // Byte offset of each kernel tap from its output pixel's first tap.
            let taps: Vec<usize> = (0..g.kernel[0])
                .flat_map(|ky| (0..g.kernel[1]).map(move |kx| (ky, kx)))
                .map(|(ky, kx)| (ky * q.width + kx) * cp)
                .collect();
            // Byte offset of each output pixel's first tap.
            let bases: Vec<usize> = (0..ho)
                .flat_map(|y| (0..wo).map(move |x| (y, x)))
                .map(|(y, x)| (y * g.strides[0] * q.width + x * g.strides[1]) * cp)
                .collect();
            let pixels = ho * wo;
            let weights = &self.weights;
            let mut finish = |first_pixel: usize, first: usize, sums: &[[i32; BLOCK]]| {
                for (lane, o) in (first..g.outputs.min(first + BLOCK)).enumerate() {
                    let zero = i32::from(q.zero) * weights.sum[o];
                    let scale = q.scale * weights.scale[o];
                    let bias = weights.bias[o];
                    let at = o * pixels + first_pixel;
                    for (y, s) in out[at..at + sums.len()].iter_mut().zip(sums) {
                        *y = (s[lane] - zero) as f32 * scale + bias;
                    }
                }
            };
            match self.kernel {
                #[cfg(target_arch = "x86_64")]
                Kernel::Vnni => {
                    // SAFETY: `Kernel::Vnni` is only chosen where `Kernel::vnni()` found AVX-512
                    // F and VNNI on this CPU (by `Kernel::best`, and by the tests, which check).
                    #[allow(unsafe_code)]
                    unsafe {
                        vnni::sums(&self.weights.packed, g, &q.data, &taps, &bases, &mut finish)
                    }
                }
                #[cfg(target_arch = "x86_64")]
                Kernel::Avx2 => {
                    // The AVX2 kernel multiplies 16-bit values: widen the map once.
                    let wide: Vec<u16> = q.data.iter().map(|&b| u16::from(b)).collect();
                    // SAFETY: `Kernel::Avx2` is only chosen where `Kernel::avx2()` found AVX2
                    // on this CPU (by `Kernel::best`, and by the tests, which check).
                    #[allow(unsafe_code)]
                    unsafe {
                        avx2::sums(&self.weights.wide, g, &wide, &taps, &bases, &mut finish)
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                Kernel::Vnni | Kernel::Avx2 => {
                    bail!("Q8Conv's {:?} kernel needs an x86-64 CPU", self.kernel)
                }
                Kernel::Portable => {
                    portable_sums(&self.weights.packed, g, &q.data, &taps, &bases, &mut finish)
                }
            }
        }
        Ok(output)
    }
}

/// The smallest and largest of `values` and 0 (NaN is ignored).
fn range(values: &[f32]) -> (f32, f32) {
    let mut lo = [0f32; 16];
    let mut hi = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        for ((l, h), &v) in lo.iter_mut().zip(&mut hi).zip(chunk) {
            *l = if v < *l { v } else { *l };
            *h = if v > *h { v } else { *h };
        }
    }
    let tail = chunks.remainder().iter();
    let lo = lo
        .iter()
        .chain(tail.clone())
        .fold(0f32, |m, &v| if v < m { v } else { m });
    let hi = hi
        .iter()
        .chain(tail)
        .fold(0f32, |m, &v| if v > m { v } else { m });
    (lo, hi)
}

/// The integer sums of every output channel at every output pixel, in plain Rust: for each
/// pixel and block of 16 channels, `finish(pixel, first channel, [sums])`; the fast kernel
/// gives `finish` a tile of consecutive pixels at once.
fn portable_sums(
    packed: &[[i8; BLOCK * QUAD]],
    g: Geometry,
    q: &[u8],
    taps: &[usize],
    bases: &[usize],
    finish: &mut impl FnMut(usize, usize, &[[i32; BLOCK]]),
) {
    let quads = g.padded_inputs() / QUAD;
    for (pixel, &base) in bases.iter().enumerate() {
        for (block, weights) in packed.chunks_exact(taps.len() * quads).enumerate() {
            let mut sums = [0i32; BLOCK];
            for (&tap, weights) in taps.iter().zip(weights.chunks_exact(quads)) {
                for (quad, w) in weights.iter().enumerate() {
                    let at = base + tap + quad * QUAD;
                    let x = &q[at..at + QUAD];
                    for (lane, sum) in sums.iter_mut().enumerate() {
                        for (i, &x) in x.iter().enumerate() {
                            *sum += i32::from(x) * i32::from(w[lane * QUAD + i]);
                        }
                    }
                }
            }
            finish(pixel, block * BLOCK, &[sums]);
        }
    }
}

/// Checks, once for a whole input map of `len` values, what the fast kernels rely on: every
/// value a tile reads is below the last pixel's base plus the last tap's offset plus the padded
/// channels, so it lies in the map.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn assert_reads_inside(g: Geometry, taps: &[usize], bases: &[usize], len: usize) {
    let last = bases.last().copied().unwrap_or(0) + taps.last().copied().unwrap_or(0);
    assert!(
        last + g.padded_inputs() <= len,
        "Q8Conv: a tap reads past the input"
    );
}

impl Op for Q8Conv {
    fn name(&self) -> StaticName {
        "Q8Conv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let g = self.geometry;
        Ok(vec![format!(
            "{} -> {} channels, {}x{} kernel, stride {}x{}, {:?} int8 kernel",
            g.inputs, g.outputs, g.kernel[0], g.kernel[1], g.strides[0], g.strides[1], self.kernel
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Q8Conv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.convolve(&input)?.into_tvalue()))
    }
}

impl TypedOp for Q8Conv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4, "Q8Conv on a rank {} input", shape.rank());
        let (Ok(h), Ok(w)) = (shape[2].to_usize(), shape[3].to_usize()) else {
            bail!("Q8Conv needs a known input height and width, not {shape:?}");
        };
        let Some([ho, wo]) = self.geometry.output(h, w) else {
            bail!("Q8Conv: a {h}x{w} input is smaller than the kernel");
        };
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.geometry.outputs.to_dim(),
            ho.to_dim(),
            wo.to_dim(),
        ])))
    }

    as_op!();
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::*;
    use std::arch::x86_64::*;

    /// The integer sums of every output channel at every output pixel on AVX-512 VNNI, the
    /// same values as [`portable_sums`](super::portable_sums): tiles of 64 channels × 6 pixels,
    /// or 32 or 16 channels × 8 pixels, stay in registers over every tap and quad of input channels.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and VNNI.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn sums(
        packed: &[[i8; BLOCK * QUAD]],
        g: Geometry,
        q: &[u8],
        taps: &[usize],
        bases: &[usize],
        finish: &mut impl FnMut(usize, usize, &[[i32; BLOCK]]),
    ) {
        assert_reads_inside(g, taps, bases, q.len());
        let quads = g.padded_inputs() / QUAD;
        let per_block = taps.len() * quads;
        let blocks = packed.len() / per_block;
        let mut block = 0;
        while block < blocks {
            // 64 channels x 6 pixels where the channels allow, else 32 or 16 x 8 pixels.
            let step = match blocks - block {
                4.. => 4,
                2 | 3 => 2,
                _ => 1,
            };
            let pixels = if step == 4 { WIDE_PIXELS } else { PIXELS };
            let mut start = 0;
            while start < bases.len() {
                let tile = &bases[start..(start + pixels).min(bases.len())];
                let w = &packed[block * per_block..];
                macro_rules! run {
                    ($p:literal) => {
                        match step {
                            4 => tile_sums::<$p, 4>(
                                w, per_block, q, taps, quads, tile, start, block, finish,
                            ),
                            2 => tile_sums::<$p, 2>(
                                w, per_block, q, taps, quads, tile, start, block, finish,
                            ),
                            _ => tile_sums::<$p, 1>(
                                w, per_block, q, taps, quads, tile, start, block, finish,
                            ),
                        }
                    };
                }
                match tile.len() {
                    8 => run!(8),
                    7 => run!(7),
                    6 => run!(6),
                    5 => run!(5),
                    4 => run!(4),
                    3 => run!(3),
                    2 => run!(2),
                    _ => run!(1),
                }
                start += pixels;
            }
            block += step;
        }
    }

    /// One tile: `P` pixels (`tile`, their bases) × `B` blocks of 16 channels from `block`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    fn tile_sums<const P: usize, const B: usize>(
        w: &[[i8; BLOCK * QUAD]],
        per_block: usize,
        q: &[u8],
        taps: &[usize],
        quads: usize,
        tile: &[usize],
        first_pixel: usize,
        block: usize,
        finish: &mut impl FnMut(usize, usize, &[[i32; BLOCK]]),
    ) {
        let mut acc = [[_mm512_setzero_si512(); P]; B];
        let mut bases = [0usize; P];
        bases.copy_from_slice(&tile[..P]);
        let qp = q.as_ptr();
        for (t, &tap) in taps.iter().enumerate() {
            for quad in 0..quads {
                let at = t * quads + quad;
                let mut weights = [_mm512_setzero_si512(); B];
                for (b, v) in weights.iter_mut().enumerate() {
                    *v = load(&w[b * per_block + at]);
                }
                let offset = tap + quad * QUAD;
                for p in 0..P {
                    // SAFETY: `sums` checked that the last pixel's last tap and quad lie in
                    // `q`; every pixel's base is at most the last's, every tap's offset at
                    // most the last tap's.
                    #[allow(unsafe_code)]
                    let x = unsafe {
                        _mm512_set1_epi32(std::ptr::read_unaligned(
                            qp.add(bases[p] + offset) as *const i32
                        ))
                    };
                    for b in 0..B {
                        acc[b][p] = _mm512_dpbusd_epi32(acc[b][p], x, weights[b]);
                    }
                }
            }
        }
        let mut sums = [[0i32; BLOCK]; P];
        for (b, acc) in acc.iter().enumerate() {
            for (sums, &acc) in sums.iter_mut().zip(acc) {
                store(sums, acc);
            }
            finish(first_pixel, (block + b) * BLOCK, &sums);
        }
    }

    /// 64 weights into a register.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    fn load(v: &[i8; BLOCK * QUAD]) -> __m512i {
        // SAFETY: `v` is 64 readable bytes; the load has no alignment requirement.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    }

    /// Sixteen sums out of a register.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx512f,avx512vnni")]
    #[inline]
    fn store(v: &mut [i32; BLOCK], x: __m512i) {
        // SAFETY: `v` is 64 writable bytes; the store has no alignment requirement.
        unsafe { _mm512_storeu_si512(v.as_mut_ptr().cast(), x) }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Output pixels of one full tile: 16 channels × 6 pixels are 12 registers of sums.
    const PIXELS: usize = 6;

    /// The integer sums of every output channel at every output pixel on AVX2, the same values
    /// as [`portable_sums`](super::portable_sums): `vpmaddwd` multiplies pairs of 16-bit inputs
    /// by pairs of 16-bit weights and adds each pair (bytes times bytes never overflow it, where
    /// `vpmaddubsw`'s 16-bit sums would saturate); tiles of 16 channels × 6 pixels stay in
    /// registers over every tap and quad of input channels.
    ///
    /// `q` is the quantized input widened to 16 bits, `taps` and `bases` offsets in its values.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums(
        wide: &[[i16; BLOCK * QUAD]],
        g: Geometry,
        q: &[u16],
        taps: &[usize],
        bases: &[usize],
        finish: &mut impl FnMut(usize, usize, &[[i32; BLOCK]]),
    ) {
        assert_reads_inside(g, taps, bases, q.len());
        let quads = g.padded_inputs() / QUAD;
        let per_block = taps.len() * quads;
        for (block, w) in wide.chunks_exact(per_block).enumerate() {
            for (i, tile) in bases.chunks(PIXELS).enumerate() {
                let args = (w, q, taps, quads, tile, i * PIXELS, block * BLOCK);
                match tile.len() {
                    6 => tile_sums::<6>(args, finish),
                    5 => tile_sums::<5>(args, finish),
                    4 => tile_sums::<4>(args, finish),
                    3 => tile_sums::<3>(args, finish),
                    2 => tile_sums::<2>(args, finish),
                    _ => tile_sums::<1>(args, finish),
                }
            }
        }
    }

    /// What one tile reads: a block's weights, the input, the taps, the quads per pixel, the
    /// tile's bases, its first pixel and its first channel.
    type Tile<'a> = (
        &'a [[i16; BLOCK * QUAD]],
        &'a [u16],
        &'a [usize],
        usize,
        &'a [usize],
        usize,
        usize,
    );

    /// One tile: `P` pixels × one block of 16 channels (two registers of 8 sums per pixel).
    #[target_feature(enable = "avx2")]
    fn tile_sums<const P: usize>(
        (w, q, taps, quads, tile, first_pixel, first): Tile<'_>,
        finish: &mut impl FnMut(usize, usize, &[[i32; BLOCK]]),
    ) {
        let mut acc = [[_mm256_setzero_si256(); P]; 2];
        let mut pixels = [q.as_ptr(); P];
        for (pixel, &base) in pixels.iter_mut().zip(tile) {
            // SAFETY: `sums` checked that the last pixel's last tap and quad lie in `q`, and
            // every pixel's base is at most the last's.
            #[allow(unsafe_code)]
            let at = unsafe { pixel.add(base) };
            *pixel = at;
        }
        for (&tap, w) in taps.iter().zip(w.chunks_exact(quads)) {
            for (quad, weights) in w.iter().enumerate() {
                let offset = tap + quad * QUAD;
                let [low0, low1, high0, high1] = load(weights);
                for (p, &pixel) in pixels.iter().enumerate() {
                    // SAFETY: the quad at `offset` from a pixel is in `q` (see above: every
                    // tap's offset is at most the last tap's), and so both its pairs.
                    #[allow(unsafe_code)]
                    let (x0, x1) = unsafe {
                        let at = pixel.add(offset);
                        (
                            _mm256_set1_epi32(std::ptr::read_unaligned(at as *const i32)),
                            _mm256_set1_epi32(std::ptr::read_unaligned(at.add(2) as *const i32)),
                        )
                    };
                    let low = _mm256_madd_epi16(x0, low0);
                    let low = _mm256_add_epi32(low, _mm256_madd_epi16(x1, low1));
                    acc[0][p] = _mm256_add_epi32(acc[0][p], low);
                    let high = _mm256_madd_epi16(x0, high0);
                    let high = _mm256_add_epi32(high, _mm256_madd_epi16(x1, high1));
                    acc[1][p] = _mm256_add_epi32(acc[1][p], high);
                }
            }
        }
        let mut sums = [[0i32; BLOCK]; P];
        for (p, sums) in sums.iter_mut().enumerate() {
            let (low, high) = sums.split_at_mut(BLOCK / 2);
            store(low, acc[0][p]);
            store(high, acc[1][p]);
        }
        finish(first_pixel, first, &sums);
    }

    /// The four registers of a block, tap and quad's weights: the low 8 channels' first and
    /// second pairs of inputs, then the high 8 channels'.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    #[inline]
    fn load(v: &[i16; BLOCK * QUAD]) -> [__m256i; 4] {
        let v = v.as_ptr().cast::<__m256i>();
        // SAFETY: `v` is 128 readable bytes, four registers; the loads have no alignment
        // requirement.
        unsafe {
            [
                _mm256_loadu_si256(v),
                _mm256_loadu_si256(v.add(1)),
                _mm256_loadu_si256(v.add(2)),
                _mm256_loadu_si256(v.add(3)),
            ]
        }
    }

    /// Eight sums out of a register.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2")]
    #[inline]
    fn store(v: &mut [i32], x: __m256i) {
        let v = &mut v[..8];
        // SAFETY: `v` is 32 writable bytes; the store has no alignment requirement.
        unsafe { _mm256_storeu_si256(v.as_mut_ptr().cast(), x) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::values;

    /// A convolution of `geometry` with random weights and biases, on `kernel`.
    fn conv(geometry: Geometry, seed: u64, kernel: Kernel) -> (Q8Conv, Vec<f32>) {
        let [kh, kw] = geometry.kernel;
        let oihw = values(
            geometry.outputs * geometry.inputs * kh * kw,
            seed,
            -0.2,
            0.2,
        );
        let bias = values(geometry.outputs, seed + 1, -1.0, 1.0);
        let op = Q8Conv {
            geometry,
            weights: Arc::new(Weights::new(geometry, &oihw, bias, kernel)),
            kernel,
        };
        (op, oihw)
    }

    /// The exact convolution in f32 (f64 sums), `[N, O, HO, WO]`.
    fn reference(g: Geometry, oihw: &[f32], bias: &[f32], input: &Tensor) -> Vec<f32> {
        let &[n, c, h, w] = input.shape() else {
            unreachable!()
        };
        let x = input.try_as_plain_ram().unwrap();
        let x = x.as_slice::<f32>().unwrap();
        let [ho, wo] = g.output(h, w).unwrap();
        let [kh, kw] = g.kernel;
        let mut out = Vec::new();
        for i in 0..n {
            for o in 0..g.outputs {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut sum = f64::from(bias[o]);
                        for ci in 0..c {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * g.strides[0] + ky).checked_sub(g.before[0]);
                                    let ix = (ox * g.strides[1] + kx).checked_sub(g.before[1]);
                                    let (Some(iy), Some(ix)) = (iy, ix) else {
                                        continue;
                                    };
                                    if iy >= h || ix >= w {
                                        continue;
                                    }
                                    let v = x[((i * c + ci) * h + iy) * w + ix];
                                    let k = oihw[((o * c + ci) * kh + ky) * kw + kx];
                                    sum += f64::from(v) * f64::from(k);
                                }
                            }
                        }
                        out.push(sum as f32);
                    }
                }
            }
        }
        out
    }

    /// The shapes of the dlib ResNet's convolutions (first, plain, strided) and odd ones:
    /// channels that are no multiple of 4 or 16, uneven padding, non-square kernels, and
    /// negative inputs (a zero point above 0).
    fn cases() -> Vec<(Geometry, [usize; 4], f32)> {
        let g = |inputs, outputs, kernel, strides, before, after| Geometry {
            inputs,
            outputs,
            kernel,
            strides,
            before,
            after,
        };
        vec![
            (
                g(3, 32, [7, 7], [2, 2], [0, 0], [0, 0]),
                [1, 3, 31, 29],
                -1.0,
            ),
            (
                g(32, 32, [3, 3], [1, 1], [1, 1], [1, 1]),
                [1, 32, 11, 13],
                0.0,
            ),
            (
                g(32, 64, [3, 3], [2, 2], [0, 0], [1, 1]),
                [2, 32, 9, 9],
                0.0,
            ),
            (
                g(20, 40, [2, 3], [1, 2], [2, 0], [0, 1]),
                [2, 20, 7, 10],
                -0.5,
            ),
            (
                g(256, 256, [3, 3], [1, 1], [1, 1], [1, 1]),
                [1, 256, 4, 4],
                0.0,
            ),
            (g(5, 3, [1, 1], [1, 1], [0, 0], [0, 0]), [1, 5, 3, 2], -2.0),
        ]
    }

    fn tensor(shape: [usize; 4], seed: u64, lo: f32) -> Tensor {
        let n = shape.iter().product();
        tract_ndarray::Array::from_shape_vec(shape, values(n, seed, lo, 3.0))
            .unwrap()
            .into()
    }

    fn plain(t: &Tensor) -> Vec<f32> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn int8_convolutions_are_close_to_f32() {
        for (i, (g, shape, lo)) in cases().into_iter().enumerate() {
            let (op, oihw) = conv(g, i as u64, Kernel::Portable);
            let input = tensor(shape, 100 + i as u64, lo);
            let got = plain(&op.convolve(&input).unwrap());
            let want = reference(g, &oihw, &op.weights.bias, &input);
            assert_eq!(got.len(), want.len(), "case {i}");
            let range = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let worst = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            // 8-bit inputs and weights: each product is off by up to about 1/254 of its
            // factors' ranges; summed over a few hundred taps the errors mostly cancel.
            assert!(
                worst <= 0.02 * range,
                "case {i} {g:?}: worst error {worst} against outputs up to {range}"
            );
            assert!(
                worst > 0.0,
                "case {i}: exactly f32's values, not quantized?"
            );
        }
    }

    #[test]
    fn fast_and_portable_sums_are_the_same() {
        for (kernel, runs) in [
            (Kernel::Vnni, Kernel::vnni()),
            (Kernel::Avx2, Kernel::avx2()),
        ] {
            if !runs {
                println!("SKIPPED: this CPU cannot run the {kernel:?} kernel; not compared");
                continue;
            }
            for (i, (g, shape, lo)) in cases().into_iter().enumerate() {
                let (fast, _) = conv(g, i as u64, kernel);
                let portable = Q8Conv {
                    kernel: Kernel::Portable,
                    ..fast.clone()
                };
                let input = tensor(shape, 200 + i as u64, lo);
                let a = plain(&portable.convolve(&input).unwrap());
                let b = plain(&fast.convolve(&input).unwrap());
                assert!(
                    a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "case {i} {g:?}: the {kernel:?} and portable kernels disagree"
                );
            }
        }
    }

    #[test]
    fn each_image_of_a_batch_has_its_own_range() {
        let (g, _, _) = cases()[1];
        let (op, _) = conv(g, 7, Kernel::best().unwrap_or(Kernel::Portable));
        let one = tensor([1, 32, 11, 13], 300, 0.0);
        let mut two = tract_ndarray::Array4::<f32>::zeros((2, 32, 11, 13));
        let one_view = one.to_plain_array_view::<f32>().unwrap();
        two.slice_mut(tract_ndarray::s![0..1, .., .., ..])
            .assign(&one_view);
        two.slice_mut(tract_ndarray::s![1..2, .., .., ..])
            .assign(&one_view.mapv(|v| v * 50.0));
        let alone = plain(&op.convolve(&one).unwrap());
        let batched = plain(&op.convolve(&two.into()).unwrap());
        assert_eq!(
            &batched[..alone.len()],
            &alone[..],
            "the first image's outputs"
        );
    }
}
