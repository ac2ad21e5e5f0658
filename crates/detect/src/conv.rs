//! The MTCNN networks' convolutions, run by the detector's own AVX2 + FMA kernels in place of
//! tract's, on x86-64 CPUs that have both (elsewhere tract's convolutions stay).
//!
//! P-Net's three convolutions and the first ones of R-Net and O-Net have few input channels
//! (3 to 16) and few output channels (10 to 32), where tract's general path (im2col columns
//! gathered for its matrix-product kernels) spends much of its time arranging data: on one
//! core it ran them at 11-22 G multiply-adds/s where these kernels reach 17-25
//! (`layout_timings` in the tests; docs/performance.md). The direct layouts keep a block of
//! outputs in AVX registers and read the input in place, with no im2col buffer:
//!
//! - **rows**: 5 or 6 output channels × 16 consecutive pixels of one output row; each kernel
//!   tap loads two vectors of input and broadcasts one weight per channel.
//! - **pixels**: 16 output channels × up to 6 output pixels anywhere in the map; each tap
//!   loads 16 weights and broadcasts one input value per pixel. For P-Net tiles too narrow
//!   for rows, and R-Net's and O-Net's later layers (3 to 21 pixel rows), where it was
//!   faster than tract on three machines of four and 5 % slower on the fourth
//!   (docs/performance.md).
//!
//! A PReLU that follows one of these convolutions is merged into it
//! ([`DirectConv::with_prelu`]): each output is activated as it is stored, with the same
//! bits as the PReLU op, and the PReLU's pass over the map is gone.
//!
//! A third layout, **Winograd**'s F(2x2, 3x3) ([`winograd`]), does 2.25 times fewer
//! multiply-adds on 3x3 kernels; [`Layout::choose`] takes it for the large ones with 8 or
//! more input channels (P-Net's second and third on its larger levels, O-Net's second and
//! third).
//!
//! In the direct layouts every output is its bias plus the products of its taps, added one at
//! a time with a fused multiply-add in the order (input channel, kernel row, kernel column),
//! so they all give the same bits (the tests check it). tract sums in another order and
//! Winograd transforms before it multiplies, so their outputs differ from these by float
//! rounding (the tests bound it; boxes on the fixture photos moved by at most 0.00012 px).
//!
//! Only the loads and stores of whole `[f32; 8]` arrays, the kernels' innermost reads of
//! their inputs (whose bounds follow from a slice or one check outside the loop; each says
//! why) and the call into the kernels (after the CPU was checked) are `unsafe`.

use std::sync::Arc;

mod winograd;

use crate::ops::ChannelPRelu;

use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_hir::internal::*;

/// Whether this CPU runs the detector's convolution kernels (x86-64 with AVX2 and FMA).
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

/// Replaces every convolution in `model` that [`DirectConv`] runs (f32, `[N, C, H, W]`, 2-D,
/// one group, stride 1, no dilation, no padding, constant kernel and bias) by one, when this
/// CPU has the kernels ([`available`]). Other convolutions, and all of them on other CPUs,
/// stay tract's.
pub(crate) fn replace_convs(model: &mut TypedModel) -> TractResult<()> {
    if !available() {
        return Ok(());
    }
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = DirectConv::for_conv(conv, &model.node_input_facts(id)?)? else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
        patch.apply(model)?;
    }
    // Each PReLU that is the only reader of a `DirectConv`'s output goes into it.
    let mut fused = false;
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let Some(conv) = node.op_as::<DirectConv>() else {
            continue;
        };
        let Some(next) = model.single_succ(id)? else {
            continue;
        };
        let slopes = next
            .op_as::<ChannelPRelu>()
            .and_then(|prelu| prelu.channel_slopes(conv.shape.outputs));
        if let Some(op) = slopes.and_then(|slopes| conv.with_prelu(&slopes))
            && !model.outputs.contains(&OutletId::new(id, 0))
        {
            let patch = TypedModelPatch::fuse_with_next(model, node, op)?;
            patch.apply(model)?;
            fused = true;
        }
    }
    if fused {
        // The replaced pairs are left unconnected.
        model.compact()?;
    }
    Ok(())
}

/// Vector lanes: eight f32 in an AVX register.
const LANES: usize = 8;
/// Output channels of one block of the pixels layout: two registers.
const PIXEL_CHANNELS: usize = 2 * LANES;
/// Output pixels of one full block of the pixels layout.
const PIXELS: usize = 6;

/// A stride-1, unpadded 2-D convolution over `[N, C, H, W]` f32 tensors with a constant
/// kernel and bias, run by the detector's kernels (see the [module](self) docs).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DirectConv {
    shape: ConvShape,
    weights: Arc<Packed>,
}

// `DynEq` needs `Eq`; weights are finite model constants, never NaN.
impl Eq for DirectConv {}

/// Channels and kernel size of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ConvShape {
    inputs: usize,
    outputs: usize,
    kernel_h: usize,
    kernel_w: usize,
}

impl ConvShape {
    /// Taps per output: input channels × kernel rows × kernel columns.
    fn taps(&self) -> usize {
        self.inputs * self.kernel_h * self.kernel_w
    }
}

/// The kernel and bias, laid out for each kernel layout: blocks of output channels, each the
/// block's weights for every tap in order, zero for channels past the last.
#[derive(Clone, PartialEq)]
struct Packed {
    /// Pixels layout: per block of 16 channels, per tap, 16 weights.
    pixels: Vec<[[f32; LANES]; 2]>,
    /// Pixels layout: per block of 16 channels, their biases.
    pixels_bias: Vec<[[f32; LANES]; 2]>,
    rows5: RowWeights<5>,
    rows6: RowWeights<6>,
    /// Winograd layout: `None` where the shape has no such layout.
    winograd: Option<winograd::Weights>,
    /// The PReLU slope of each output channel, applied as outputs are written (1 where no
    /// PReLU follows: `1 · x` is `x`), padded with ones to whole blocks of 16 channels.
    slopes: Vec<f32>,
    /// Whether a PReLU was merged in ([`DirectConv::with_prelu`]).
    prelu: bool,
}

/// Rows layout with `O` channels a block: per block, per tap, `O` weights; and the biases.
#[derive(Clone, PartialEq)]
struct RowWeights<const O: usize> {
    taps: Vec<[f32; O]>,
    bias: Vec<[f32; O]>,
}

impl<const O: usize> RowWeights<O> {
    fn pack(shape: ConvShape, oihw: &[f32], bias: &[f32]) -> Self {
        let taps = shape.taps();
        let blocks = shape.outputs.div_ceil(O);
        let channel = |b: usize, o: usize| Some(b * O + o).filter(|&c| c < shape.outputs);
        Self {
            taps: (0..blocks * taps)
                .map(|i| {
                    let (b, t) = (i / taps, i % taps);
                    std::array::from_fn(|o| channel(b, o).map_or(0.0, |c| oihw[c * taps + t]))
                })
                .collect(),
            bias: (0..blocks)
                .map(|b| std::array::from_fn(|o| channel(b, o).map_or(0.0, |c| bias[c])))
                .collect(),
        }
    }
}

// tract prints ops in its errors and model dumps: the weights' count, not the weights.
impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} taps of 16 channels)", self.pixels.len())
    }
}

impl Packed {
    fn new(shape: ConvShape, oihw: &[f32], bias: &[f32]) -> Self {
        let taps = shape.taps();
        let blocks = shape.outputs.div_ceil(PIXEL_CHANNELS);
        let lanes = |b: usize, value: &dyn Fn(usize) -> f32| -> [[f32; LANES]; 2] {
            std::array::from_fn(|v| {
                std::array::from_fn(|l| {
                    let c = b * PIXEL_CHANNELS + v * LANES + l;
                    if c < shape.outputs { value(c) } else { 0.0 }
                })
            })
        };
        Self {
            pixels: (0..blocks * taps)
                .map(|i| lanes(i / taps, &|c| oihw[c * taps + i % taps]))
                .collect(),
            pixels_bias: (0..blocks).map(|b| lanes(b, &|c| bias[c])).collect(),
            rows5: RowWeights::pack(shape, oihw, bias),
            rows6: RowWeights::pack(shape, oihw, bias),
            winograd: winograd::Weights::new(shape, oihw, bias),
            slopes: vec![1.0; blocks * PIXEL_CHANNELS],
            prelu: false,
        }
    }
}

/// How a convolution's outputs are blocked (see the [module](self) docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Rows: 5 channels × 16 pixels (for 10 channels: no block half empty).
    Rows5x2,
    /// Rows: 6 channels × 16 pixels.
    Rows6x2,
    /// Pixels: 16 channels × 6 pixels.
    Pixels,
    /// Winograd's F(2x2, 3x3): 3x3 kernels with output channels a multiple of 4.
    Winograd,
}

impl Layout {
    #[cfg(test)]
    const ALL: [Layout; 4] = [Self::Rows5x2, Self::Rows6x2, Self::Pixels, Self::Winograd];

    /// Pixels of one output row a rows block covers (0 for the pixels layout).
    fn row_pixels(self) -> usize {
        match self {
            Self::Rows5x2 | Self::Rows6x2 => 2 * LANES,
            Self::Pixels | Self::Winograd => 0,
        }
    }

    /// The layout for `shape` with outputs of `height` × `width` pixels, chosen from the
    /// timings of every layout on the networks' layers (`layout_timings` in the tests).
    ///
    /// Winograd's F(2x2, 3x3) does 2.25 times fewer multiply-adds than the others, plus two
    /// transforms per input and output channel and some work on tiles that are not there
    /// (rows of tiles are rounded up to 8 and 16). It is the fastest on 3x3 kernels with at
    /// least 16 input channels and at least 2 M multiply-adds (direct), unless the map's odd
    /// height or width makes it compute more than 15 % of outputs that are not there (R-Net's
    /// 9x9 second convolution: 10x10). Below 2 M (P-Net's small levels) it was as slow as the
    /// direct layouts or slower, in the detector and alone. With 10 input channels (P-Net's
    /// second convolution) it won until the rows kernel read its inputs without bounds
    /// checks; since then rows are faster there (181 against 211 µs on a 128x192 tile).
    ///
    /// Otherwise rows blocks cover 16 pixels, so on a short row the last one mostly repeats
    /// the one before (21 pixels cost 32); the pixels layout wastes nothing along rows but
    /// stores its outputs one by one, which counts when there are few taps. So: rows for rows
    /// of at least 32 pixels, or of 16 to 31 with at most 64 taps; otherwise pixels.
    fn choose(shape: ConvShape, height: usize, width: usize) -> Self {
        let computed = height.next_multiple_of(2) * width.next_multiple_of(2);
        let macs = height * width * shape.taps() * shape.outputs;
        if winograd::fits(shape)
            && shape.inputs >= 16
            && macs >= 1 << 21
            && computed * 100 <= height * width * 115
        {
            return Self::Winograd;
        }
        let rows = width >= 4 * LANES || (width >= 2 * LANES && shape.taps() <= 64);
        match rows {
            true if shape.outputs.is_multiple_of(5) && !shape.outputs.is_multiple_of(6) => {
                Self::Rows5x2
            }
            true => Self::Rows6x2,
            false => Self::Pixels,
        }
    }
}

impl DirectConv {
    /// The op for `conv` with these input facts, or `None` when its kernels do not run it.
    fn for_conv(conv: &Conv, facts: &[&TypedFact]) -> TractResult<Option<Self>> {
        let spec = &conv.pool_spec;
        let unpadded = match &spec.padding {
            PaddingSpec::Valid => true,
            PaddingSpec::Explicit(before, after)
            | PaddingSpec::ExplicitOnnxPool(before, after, _) => {
                before.iter().chain(after.iter()).all(|&p| p == 0)
            }
            _ => false,
        };
        let [input, kernel, bias] = facts else {
            return Ok(None);
        };
        if conv.q_params.is_some()
            || conv.group != 1
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.data_format != DataFormat::NCHW
            || spec.rank() != 2
            || !unpadded
            || spec.strides().iter().any(|&s| s != 1)
            || spec.dilations().iter().any(|&d| d != 1)
            || input.datum_type != f32::datum_type()
        {
            return Ok(None);
        }
        let (Some(kernel), Some(bias)) = (&kernel.konst, &bias.konst) else {
            return Ok(None);
        };
        let &[outputs, inputs, kernel_h, kernel_w] = kernel.shape() else {
            return Ok(None);
        };
        let shape = ConvShape {
            inputs,
            outputs,
            kernel_h,
            kernel_w,
        };
        let oihw = kernel.cast_to::<f32>()?;
        let oihw = oihw.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = bias.cast_to::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = match bias.len() {
            n if n == outputs => bias,
            1 => vec![bias[0]; outputs],
            _ => return Ok(None),
        };
        Ok(Some(Self {
            shape,
            weights: Arc::new(Packed::new(shape, &oihw, &bias)),
        }))
    }

    /// This convolution followed by a PReLU with one slope for each output channel (`slopes`),
    /// in one op: each output is activated as it is written, so the PReLU's pass over the
    /// whole map goes (the same bits as the two ops one after the other).
    fn with_prelu(&self, slopes: &[f32]) -> Option<Self> {
        // A second PReLU after the first is not a PReLU: leave it to its own op.
        if slopes.len() != self.shape.outputs || self.weights.prelu {
            return None;
        }
        let mut weights = Packed::clone(&self.weights);
        weights.slopes[..slopes.len()].copy_from_slice(slopes);
        weights.prelu = true;
        Some(Self {
            shape: self.shape,
            weights: Arc::new(weights),
        })
    }

    /// The output's height and width for an input plane of `h` × `w`.
    fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let ho = (h + 1).checked_sub(self.shape.kernel_h)?;
        let wo = (w + 1).checked_sub(self.shape.kernel_w)?;
        Some((ho, wo)).filter(|&(ho, wo)| ho > 0 && wo > 0)
    }

    /// Runs the convolution on `input` (`[N, C, H, W]`) with the given layout, or the chosen
    /// one.
    fn convolve(&self, input: &Tensor, layout: Option<Layout>) -> TractResult<Tensor> {
        let &[n, c, h, w] = input.shape() else {
            bail!("DirectConv on a tensor of shape {:?}", input.shape());
        };
        ensure!(
            c == self.shape.inputs,
            "DirectConv: {c} input channels, {} expected",
            self.shape.inputs
        );
        let Some((ho, wo)) = self.output_size(h, w) else {
            bail!("DirectConv: a {h}x{w} input is smaller than the kernel");
        };
        let layout = layout.unwrap_or_else(|| Layout::choose(self.shape, ho, wo));
        ensure!(
            layout.row_pixels() <= wo,
            "{layout:?} on rows of {wo} pixels"
        );
        ensure!(
            layout != Layout::Winograd || self.weights.winograd.is_some(),
            "no Winograd layout for {:?}",
            self.shape
        );
        let mut output = Tensor::zero::<f32>(&[n, self.shape.outputs, ho, wo])?;
        let mut out_plain = output.try_as_plain_ram_mut()?;
        let out = out_plain.as_slice_mut::<f32>()?;
        let in_plain = input.try_as_plain_ram()?;
        let images = in_plain.as_slice::<f32>()?;
        for (image, out) in images
            .chunks_exact(c * h * w)
            .zip(out.chunks_exact_mut(self.shape.outputs * ho * wo))
        {
            let plane = Plane { data: image, h, w };
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a `DirectConv` is only made by `replace_convs`, after `available()`
            // found AVX2 and FMA on this CPU (and by the tests, which check it too).
            #[allow(unsafe_code)]
            unsafe {
                avx2::convolve(self.shape, &self.weights, layout, plane, out);
            }
            #[cfg(not(target_arch = "x86_64"))]
            {
                let _ = (plane, out, layout);
                bail!("DirectConv needs an x86-64 CPU");
            }
        }
        Ok(output)
    }
}

/// One image's input channels, each `h` × `w`, one after the other.
#[derive(Clone, Copy)]
struct Plane<'a> {
    data: &'a [f32],
    h: usize,
    w: usize,
}

impl Op for DirectConv {
    fn name(&self) -> StaticName {
        "DirectConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let s = self.shape;
        Ok(vec![format!(
            "{} -> {} channels, {}x{} kernel",
            s.inputs, s.outputs, s.kernel_h, s.kernel_w
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DirectConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        Ok(tvec!(self.convolve(&input, None)?.into_tvalue()))
    }
}

impl TypedOp for DirectConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(
            shape.rank() == 4,
            "DirectConv on a rank {} input",
            shape.rank()
        );
        let out = |i: usize, k: usize| shape[i].clone() - (k as i64 - 1);
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            self.shape.outputs.to_dim(),
            out(2, self.shape.kernel_h),
            out(3, self.shape.kernel_w),
        ])))
    }

    as_op!();
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// Eight lanes from an array of eight.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn load(v: &[f32; LANES]) -> __m256 {
        // SAFETY: `v` is eight readable f32; the load has no alignment requirement.
        unsafe { _mm256_loadu_ps(v.as_ptr()) }
    }

    /// Eight lanes into an array of eight.
    #[allow(unsafe_code)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn store(v: &mut [f32; LANES], x: __m256) {
        // SAFETY: `v` is eight writable f32; the store has no alignment requirement.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), x) }
    }

    /// PReLU on eight values with their eight slopes: `x` where `x > 0`, else `a · x`, as
    /// [`ChannelPRelu`](crate::ops::ChannelPRelu) computes it (the same bits).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn prelu(x: __m256, a: __m256) -> __m256 {
        let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_setzero_ps());
        _mm256_blendv_ps(_mm256_mul_ps(a, x), x, positive)
    }

    /// The eight values of `s` from `at`.
    #[inline(always)]
    pub(super) fn eight(s: &[f32], at: usize) -> &[f32; LANES] {
        s[at..]
            .first_chunk()
            .unwrap_or_else(|| panic!("8 values from {at} of {}", s.len()))
    }

    /// Convolves one image (`plane`) into `out` (`[outputs, ho, wo]`) with `layout`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn convolve(
        shape: ConvShape,
        weights: &Packed,
        layout: Layout,
        plane: Plane,
        out: &mut [f32],
    ) {
        match layout {
            Layout::Rows5x2 => rows::<5, 2>(shape, &weights.rows5, &weights.slopes, plane, out),
            Layout::Rows6x2 => rows::<6, 2>(shape, &weights.rows6, &weights.slopes, plane, out),
            Layout::Pixels => pixels(shape, weights, plane, out),
            Layout::Winograd => match &weights.winograd {
                Some(w) => winograd::avx2::convolve(shape, w, &weights.slopes, plane, out),
                None => unreachable!("checked by DirectConv::convolve"),
            },
        }
    }

    /// The rows layout: blocks of `O` channels × `V` vectors of one output row. A row's last
    /// block ends at the row's end (overlapping the one before when the width is not a
    /// multiple), so no block reads or writes past the row.
    #[target_feature(enable = "avx2,fma")]
    fn rows<const O: usize, const V: usize>(
        shape: ConvShape,
        weights: &RowWeights<O>,
        slopes: &[f32],
        plane: Plane,
        out: &mut [f32],
    ) {
        let (kh, kw) = (shape.kernel_h, shape.kernel_w);
        let (ho, wo) = (plane.h + 1 - kh, plane.w + 1 - kw);
        let span = V * LANES;
        let taps = shape.taps();
        for (b, (block, bias)) in weights
            .taps
            .chunks_exact(taps)
            .zip(&weights.bias)
            .enumerate()
        {
            let channels = (shape.outputs - b * O).min(O);
            for oy in 0..ho {
                let mut ox = 0;
                while ox < wo {
                    let x0 = ox.min(wo - span);
                    let mut acc: [[__m256; V]; O] =
                        std::array::from_fn(|o| [_mm256_set1_ps(bias[o]); V]);
                    // Tap rows in the order (input channel, kernel row); `line` is the
                    // input row under the block's first output row (counted without a
                    // division: one per tap row cost a fifth of the time).
                    let (mut line, mut ky) = (oy, 0);
                    for tap_row in block.chunks_exact(kw) {
                        let start = line * plane.w + x0;
                        let row = &plane.data[start..start + span + kw - 1];
                        (line, ky) = match ky + 1 == kh {
                            true => (line + 1 + plane.h - kh, 0),
                            false => (line + 1, ky + 1),
                        };
                        for (kx, w) in tap_row.iter().enumerate() {
                            let mut x = [_mm256_setzero_ps(); V];
                            for (v, x) in x.iter_mut().enumerate() {
                                // Unchecked: a bounds check here cost a sixth of the time.
                                // SAFETY: `kx < kw` (`tap_row` has `kw` taps) and `v < V`, so
                                // the eight values from `kx + 8v` end by `kw - 1 + span`,
                                // `row`'s length.
                                #[allow(unsafe_code)]
                                unsafe {
                                    *x = _mm256_loadu_ps(row.as_ptr().add(kx + v * LANES));
                                }
                            }
                            for (acc, &w) in acc.iter_mut().zip(w) {
                                let w = _mm256_set1_ps(w);
                                for (acc, &x) in acc.iter_mut().zip(&x) {
                                    *acc = _mm256_fmadd_ps(w, x, *acc);
                                }
                            }
                        }
                    }
                    for (o, acc) in acc.iter().enumerate().take(channels) {
                        let c = b * O + o;
                        let slope = _mm256_set1_ps(slopes[c]);
                        let dst = &mut out[(c * ho + oy) * wo + x0..][..span];
                        for (v, chunk) in dst.chunks_exact_mut(LANES).enumerate() {
                            if let Ok(chunk) = chunk.try_into() {
                                store(chunk, prelu(acc[v], slope));
                            }
                        }
                    }
                    ox = x0 + span;
                }
            }
        }
    }

    /// The pixels layout: blocks of 16 channels × 6 output pixels taken in row-major order
    /// across rows, the last block of a map with the remaining 1 to 5.
    #[target_feature(enable = "avx2,fma")]
    fn pixels(shape: ConvShape, weights: &Packed, plane: Plane, out: &mut [f32]) {
        let (ho, wo) = (plane.h + 1 - shape.kernel_h, plane.w + 1 - shape.kernel_w);
        let count = ho * wo;
        for b in 0..weights.pixels_bias.len() {
            let mut p = 0;
            while p + PIXELS <= count {
                pixel_block::<PIXELS>(shape, weights, b, plane, p, out);
                p += PIXELS;
            }
            match count - p {
                0 => {}
                1 => pixel_block::<1>(shape, weights, b, plane, p, out),
                2 => pixel_block::<2>(shape, weights, b, plane, p, out),
                3 => pixel_block::<3>(shape, weights, b, plane, p, out),
                4 => pixel_block::<4>(shape, weights, b, plane, p, out),
                _ => pixel_block::<5>(shape, weights, b, plane, p, out),
            }
        }
    }

    /// 16 channels (block `b`) of the `N` output pixels from `p0` in row-major order.
    #[target_feature(enable = "avx2,fma")]
    fn pixel_block<const N: usize>(
        shape: ConvShape,
        weights: &Packed,
        b: usize,
        plane: Plane,
        p0: usize,
        out: &mut [f32],
    ) {
        let taps = shape.taps();
        let block = &weights.pixels[b * taps..][..taps];
        let bias = &weights.pixels_bias[b];
        let slopes = &weights.slopes;
        let (kh, kw) = (shape.kernel_h, shape.kernel_w);
        let (ho, wo) = (plane.h + 1 - kh, plane.w + 1 - kw);
        let (b0, b1) = (load(&bias[0]), load(&bias[1]));
        let mut acc = [[b0, b1]; N];
        // Where each pixel's window starts in an input channel.
        let origin: [usize; N] = std::array::from_fn(|j| {
            let p = p0 + j;
            (p / wo) * plane.w + p % wo
        });
        let channel_len = plane.h * plane.w;
        // Every input read below is at `origin + offset`, at most the last pixel's origin (the
        // origins grow with the pixel) plus the kernel's last tap.
        let last = origin[N - 1] + (kh - 1) * plane.w + kw - 1;
        assert!(
            last < channel_len,
            "a {kh}x{kw} kernel at {last} of {channel_len}"
        );
        // Tap rows in the order (input channel, kernel row), counted without a division.
        let (mut channel_start, mut ky) = (0, 0);
        for tap_row in block.chunks_exact(kw) {
            let channel = &plane.data[channel_start..][..channel_len];
            let row_offset = ky * plane.w;
            (channel_start, ky) = match ky + 1 == kh {
                true => (channel_start + channel_len, 0),
                false => (channel_start, ky + 1),
            };
            for (kx, w) in tap_row.iter().enumerate() {
                let (w0, w1) = (load(&w[0]), load(&w[1]));
                let offset = row_offset + kx;
                for (acc, &origin) in acc.iter_mut().zip(&origin) {
                    // Unchecked, and wrapping: in this innermost loop a bounds check cost a
                    // fifth of the time and an overflow check a quarter (measured).
                    // SAFETY: `origin + offset <= last < channel.len()` (asserted above), so
                    // the sum neither wraps nor leaves `channel`.
                    #[allow(unsafe_code)]
                    let x = unsafe { channel.get_unchecked(origin.wrapping_add(offset)) };
                    let x = _mm256_broadcast_ss(x);
                    acc[0] = _mm256_fmadd_ps(x, w0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(x, w1, acc[1]);
                }
            }
        }
        let a0 = load(eight(slopes, b * PIXEL_CHANNELS));
        let a1 = load(eight(slopes, b * PIXEL_CHANNELS + LANES));
        let mut lanes = [[[0f32; LANES]; 2]; N];
        for (lanes, acc) in lanes.iter_mut().zip(&acc) {
            store(&mut lanes[0], prelu(acc[0], a0));
            store(&mut lanes[1], prelu(acc[1], a1));
        }
        let plane_len = ho * wo;
        let channels = (shape.outputs - b * PIXEL_CHANNELS).min(PIXEL_CHANNELS);
        for k in 0..channels {
            let c = b * PIXEL_CHANNELS + k;
            let dst = &mut out[c * plane_len + p0..][..N];
            for (d, lanes) in dst.iter_mut().zip(&lanes) {
                *d = lanes[k / LANES][k % LANES];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::nets::tests::noise;
    use tract_onnx::tract_core::ops::cnn::PoolSpec;

    /// The networks' convolutions: (name, input channels, output channels, kernel, input h,
    /// w). P-Net's 1x1 heads become a matrix product in the loaded network, but stay here as
    /// the one 1x1 kernel.
    const LAYERS: [(&str, usize, usize, usize, usize, usize); 11] = [
        ("P-Net conv1 (a 128x192 tile)", 3, 10, 3, 128, 192),
        ("P-Net conv2", 10, 16, 3, 63, 95),
        ("P-Net conv3", 16, 32, 3, 61, 93),
        ("P-Net heads", 32, 6, 1, 59, 91),
        ("R-Net conv1", 3, 28, 3, 24, 24),
        ("R-Net conv2", 28, 48, 3, 11, 11),
        ("R-Net conv3", 48, 64, 2, 4, 4),
        ("O-Net conv1", 3, 32, 3, 48, 48),
        ("O-Net conv2", 32, 64, 3, 23, 23),
        ("O-Net conv3", 64, 64, 3, 10, 10),
        ("O-Net conv4", 64, 128, 2, 4, 4),
    ];

    /// tract's unpadded, stride-1 convolution op from `ci` to `co` channels, `k`×`k` kernel.
    fn tracts_conv(ci: usize, co: usize, k: usize) -> Conv {
        Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![k, k],
                padding: PaddingSpec::Valid,
                dilations: None,
                strides: None,
                input_channels: ci,
                output_channels: co,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        }
    }

    /// tract's own convolution of `input` with `kernel` (OIHW) and `bias`, unpadded.
    fn tracts(input: &Tensor, kernel: &Tensor, bias: &Tensor) -> Tensor {
        tracts_plan(input, kernel, bias)
            .run(tvec![input.clone().into_tvalue()])
            .unwrap()
            .remove(0)
            .into_tensor()
    }

    /// The optimised plan of tract's convolution for [`tracts`].
    fn tracts_plan(input: &Tensor, kernel: &Tensor, bias: &Tensor) -> Arc<TypedRunnableModel> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(input.shape())).unwrap();
        let k = model.add_const("k", kernel.clone()).unwrap();
        let b = model.add_const("b", bias.clone()).unwrap();
        let ks = kernel.shape();
        let conv = tracts_conv(ks[1], ks[0], ks[2]);
        let out = model.wire_node("conv", conv, &[x, k, b]).unwrap();
        model.select_output_outlets(&out).unwrap();
        model.into_optimized().unwrap().into_runnable().unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// A layer's random kernel, bias and (batch of two) input, and its `DirectConv`.
    fn layer(i: usize) -> (Tensor, Tensor, Tensor, DirectConv) {
        let (_, ci, co, k, h, w) = LAYERS[i];
        let seed = 10 * i as u64;
        let kernel = Tensor::from_shape(&[co, ci, k, k], &noise(co * ci * k * k, seed)).unwrap();
        let bias = Tensor::from_shape(&[co], &noise(co, seed + 1)).unwrap();
        let input = Tensor::from_shape(&[2, ci, h, w], &noise(2 * ci * h * w, seed + 2)).unwrap();
        let scope = SymbolScope::default();
        let op = DirectConv::for_conv(
            &tracts_conv(ci, co, k),
            &[
                // Height and width unknown, as P-Net's: the op is made whatever the layout.
                &f32::fact([
                    2.to_dim(),
                    ci.to_dim(),
                    scope.sym("h").into(),
                    scope.sym("w").into(),
                ]),
                &TypedFact::try_from(kernel.clone()).unwrap(),
                &TypedFact::try_from(bias.clone()).unwrap(),
            ],
        )
        .unwrap()
        .unwrap();
        (input, kernel, bias, op)
    }

    #[test]
    fn every_layout_gives_tracts_values_and_the_same_bits() {
        if !available() {
            println!("SKIPPED DirectConv: this CPU lacks AVX2 or FMA, so tract's convolutions run");
            return;
        }
        for (i, &(name, _, _, k, h, w)) in LAYERS.iter().enumerate() {
            let (input, kernel, bias, op) = layer(i);
            let want = values(&tracts(&input, &kernel, &bias));
            let (ho, wo) = (h - k + 1, w - k + 1);
            let chosen = Layout::choose(op.shape, ho, wo);
            let by_default = values(&op.convolve(&input, None).unwrap());
            // The direct layouts all give the pixels layout's bits.
            let direct = values(&op.convolve(&input, Some(Layout::Pixels)).unwrap());
            for layout in Layout::ALL {
                if layout.row_pixels() > wo
                    || (layout == Layout::Winograd && op.weights.winograd.is_none())
                {
                    assert!(op.convolve(&input, Some(layout)).is_err());
                    continue;
                }
                let got = values(&op.convolve(&input, Some(layout)).unwrap());
                assert_eq!(got.len(), want.len());
                let worst = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
                    .fold(0.0, f32::max);
                assert!(
                    worst < 1e-4,
                    "{name}: {layout:?} differs from tract by {worst}"
                );
                let same_bits =
                    |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits());
                if layout != Layout::Winograd {
                    assert!(
                        same_bits(&got, &direct),
                        "{name}: {layout:?} differs from Pixels"
                    );
                }
                if layout == chosen {
                    assert!(
                        same_bits(&got, &by_default),
                        "{name}: {layout:?} is not the default"
                    );
                }
            }
        }
    }

    /// A PReLU merged into the convolution gives, in every layout, the bits of the
    /// convolution followed by the PReLU op; a second one is not merged.
    #[test]
    fn merged_prelu_gives_the_bits_of_the_prelu_op() {
        if !available() {
            println!("SKIPPED DirectConv: this CPU lacks AVX2 or FMA, so tract's convolutions run");
            return;
        }
        for (i, &(name, _, co, k, _, w)) in LAYERS.iter().enumerate() {
            let (input, _, _, op) = layer(i);
            // Slopes of both signs and zero, as the networks' (P-Net's first down to -1.28).
            let slopes: Vec<f32> = noise(co, 50 + i as u64).iter().map(|a| 1.5 * a).collect();
            let prelu =
                crate::ops::channel_prelu(4, &Tensor::from_shape(&[1, co, 1, 1], &slopes).unwrap())
                    .unwrap();
            let merged = op.with_prelu(&slopes).unwrap();
            assert!(merged.with_prelu(&slopes).is_none(), "{name}: merged twice");
            assert!(
                op.with_prelu(&slopes[1..]).is_none(),
                "{name}: too few slopes"
            );
            for layout in Layout::ALL {
                if layout.row_pixels() > w + 1 - k
                    || (layout == Layout::Winograd && op.weights.winograd.is_none())
                {
                    continue;
                }
                let conv = op.convolve(&input, Some(layout)).unwrap();
                let mut model = TypedModel::default();
                let x = model.add_source("x", f32::fact(conv.shape())).unwrap();
                let out = model.wire_node("prelu", prelu.clone(), &[x]).unwrap();
                model.select_output_outlets(&out).unwrap();
                let plan = model.into_runnable().unwrap();
                let want = plan.run(tvec![conv.into_tvalue()]).unwrap().remove(0);
                let got = merged.convolve(&input, Some(layout)).unwrap();
                let (want, got) = (values(&want), values(&got));
                assert!(want.iter().any(|&v| v < 0.0), "{name}: no negative output");
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(g, w)| g.to_bits() == w.to_bits()),
                    "{name}: {layout:?} with the PReLU merged differs"
                );
            }
        }
    }

    /// Winograd's tiles on maps of every parity, narrower than a row of 8 tiles and spread
    /// over several chunks, against the direct convolution.
    #[test]
    fn winograd_covers_every_output_once() {
        if !available() {
            println!("SKIPPED Winograd: this CPU lacks AVX2 or FMA, so tract's convolutions run");
            return;
        }
        let (ci, co) = (8, 12);
        let kernel = noise(co * ci * 9, 7);
        let bias = noise(co, 8);
        let shape = ConvShape {
            inputs: ci,
            outputs: co,
            kernel_h: 3,
            kernel_w: 3,
        };
        let op = DirectConv {
            shape,
            weights: Arc::new(Packed::new(shape, &kernel, &bias)),
        };
        for (h, w) in [
            (3, 3),
            (4, 4),
            (3, 20),
            (20, 3),
            (5, 37),
            (36, 35),
            (70, 18),
            (41, 200),
        ] {
            let input = Tensor::from_shape(&[2, ci, h, w], &noise(2 * ci * h * w, 9)).unwrap();
            let want = values(&op.convolve(&input, Some(Layout::Pixels)).unwrap());
            let got = values(&op.convolve(&input, Some(Layout::Winograd)).unwrap());
            assert_eq!(got.len(), want.len());
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w).abs() < 1e-4 * w.abs().max(1.0),
                    "{h}x{w}: output {j}: {g} against {w}"
                );
            }
        }
    }

    /// Times every layout on every layer, one thread:
    /// `cargo test --release -p facerec-detect conv::tests::layout_timings -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings; run by hand"]
    fn layout_timings() {
        assert!(available());
        for (i, &(name, ci, co, k, h, w)) in LAYERS.iter().enumerate() {
            let (input, kernel, bias, op) = layer(i);
            let (ho, wo) = (h - k + 1, w - k + 1);
            let macs = (2 * co * ho * wo * ci * k * k) as f64;
            let reps = (4e8 / macs).max(5.0) as usize;
            let tract_plan = tracts_plan(&input, &kernel, &bias);
            let mut best = f64::MAX;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                for _ in 0..reps {
                    tract_plan.run(tvec![input.clone().into_tvalue()]).unwrap();
                }
                best = best.min(t.elapsed().as_secs_f64() / reps as f64 / 2.0);
            }
            let mut line = format!(
                "{name:30} | tract {:.1} us {:.1} G/s",
                best * 1e6,
                macs / 2.0 / best / 1e9
            );
            for layout in Layout::ALL {
                if layout.row_pixels() > wo
                    || (layout == Layout::Winograd && op.weights.winograd.is_none())
                {
                    line += &format!(" | {layout:?} -");
                    continue;
                }
                let mut best = f64::MAX;
                for _ in 0..5 {
                    let t = std::time::Instant::now();
                    for _ in 0..reps {
                        op.convolve(&input, Some(layout)).unwrap();
                    }
                    best = best.min(t.elapsed().as_secs_f64() / reps as f64 / 2.0);
                }
                line += &format!(
                    " | {layout:?} {:.1} us {:.1} G/s",
                    best * 1e6,
                    macs / 2.0 / best / 1e9
                );
            }
            println!(
                "{line} | chosen {:?}",
                Layout::choose(op.shape, h - k + 1, wo)
            );
        }
    }
}
