//! Two operators of the MTCNN networks, written for their shapes and run inside tract's plans
//! in place of tract's own: PReLU and 2-D max pooling.
//!
//! On R-Net's and O-Net's small maps, tract's versions of these cost as much as the
//! convolutions around them (docs/performance.md): PReLU runs as two chains of broadcast
//! binary ops, about 1 ns per value, and a 3×3 stride-2 max pool as a strided fold per kernel
//! tap, about 1 ns per tap. Here PReLU is one pass with one slope per channel (or none: the
//! detector's convolutions apply it as they write), and a pool takes the maximum of its
//! window's rows first (contiguous) and then of each output's columns (stride-2 windows as
//! pairs), in loops that vectorise, compiled for AVX2 too where the CPU has it. Both compute
//! exactly the same values as tract's (a maximum, and `x` or `slope · x`), which the tests
//! check against tract on random inputs.

use std::sync::Arc;

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::cnn::{MaxPool, PoolSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_hir::internal::*;

/// Makes `onnx` parse `PRelu` nodes into [`ChannelPRelu`] (see [`channel_prelu`]).
pub(crate) fn register(onnx: &mut tract_onnx::Onnx) {
    onnx.op_register.insert("PRelu", parse_prelu);
}

fn parse_prelu(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(PReluExpansion), vec![]))
}

/// ONNX `PRelu(x, slope)` for the typed model: a [`ChannelPRelu`] when the slope is a constant
/// that varies along at most one axis of `x` (every slope of the MTCNN networks does).
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct PReluExpansion;

impl Expansion for PReluExpansion {
    fn name(&self) -> StaticName {
        "ChannelPRelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (x, slope) = (inputs[0], inputs[1]);
        let fact = model.outlet_fact(x)?.clone();
        let Some(konst) = model.outlet_fact(slope)?.konst.clone() else {
            bail!("PRelu {name}: the slope is not a constant");
        };
        ensure!(
            fact.datum_type == f32::datum_type(),
            "PRelu {name}: {:?} input, f32 expected",
            fact.datum_type
        );
        let op = channel_prelu(fact.rank(), &konst)
            .with_context(|| format!("PRelu {name}: slope of shape {:?}", konst.shape()))?;
        model.wire_node(name, op, &[x])
    }
}

/// The [`ChannelPRelu`] for an input of `rank` axes and a constant `slope` that broadcasts to
/// it (numpy-style, aligned on the last axis) and varies along at most one axis.
pub(crate) fn channel_prelu(rank: usize, slope: &Tensor) -> TractResult<ChannelPRelu> {
    let shape = slope.shape();
    ensure!(
        shape.len() <= rank,
        "the slope has more axes than the input"
    );
    let varying: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] != 1).collect();
    ensure!(
        varying.len() <= 1,
        "the slope varies along more than one axis"
    );
    let values = slope.cast_to::<f32>()?;
    let values = values.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    Ok(ChannelPRelu {
        // Aligned on the input's last axis; a slope without a varying axis is one value.
        axis: varying.first().map(|&i| rank - shape.len() + i),
        slope: Arc::new(values),
    })
}

/// PReLU with one slope per channel: `y = x` where `x > 0`, else `slope[c] · x`, with `c` the
/// index along `axis` (or a single slope for every value when `axis` is `None`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelPRelu {
    axis: Option<usize>,
    slope: Arc<Vec<f32>>,
}

// `DynEq` needs `Eq`; slopes are finite model weights, never NaN.
impl Eq for ChannelPRelu {}

impl ChannelPRelu {
    /// One slope for each of `channels` channels of a rank-4 `[N, C, H, W]` input: the
    /// slopes along the channel axis, or the single slope repeated; `None` when this PReLU's
    /// slopes vary along another axis or do not match.
    pub(crate) fn channel_slopes(&self, channels: usize) -> Option<Vec<f32>> {
        match (self.axis, self.slope.len()) {
            (Some(1), n) if n == channels => Some(self.slope.to_vec()),
            (None, 1) => Some(vec![self.slope[0]; channels]),
            _ => None,
        }
    }
}

impl Op for ChannelPRelu {
    fn name(&self) -> StaticName {
        "ChannelPRelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPRelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let shape = input.shape().to_vec();
        // Computed in place when the plan hands over the only reference to the input.
        let mut output = input.into_tensor();
        let mut plain = output.try_as_plain_ram_mut()?;
        let values = plain.as_slice_mut::<f32>()?;
        let (channels, inner) = match self.axis {
            Some(axis) => (shape[axis], shape[axis + 1..].iter().product::<usize>()),
            None => (1, values.len().max(1)),
        };
        ensure!(
            channels == self.slope.len(),
            "{} slopes for {channels} channels",
            self.slope.len()
        );
        for (i, run) in values.chunks_mut(inner.max(1)).enumerate() {
            let a = self.slope[i % channels];
            for v in run {
                *v = if *v > 0.0 { *v } else { a * *v };
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for ChannelPRelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces every f32 `MaxPool` over `[N, C, H, W]` without dilation in `model` by a
/// [`PlaneMaxPool`] with the same pooling.
pub(crate) fn replace_max_pools(model: &mut TypedModel) -> TractResult<()> {
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let Some(pool) = node.op_as::<MaxPool>() else {
            continue;
        };
        let spec = &pool.pool_spec;
        let f32_in = model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type();
        if pool.with_index_outputs.is_none()
            && f32_in
            && spec.data_format == DataFormat::NCHW
            && spec.rank() == 2
            && spec.dilations().iter().all(|&d| d == 1)
        {
            let op = PlaneMaxPool {
                pool_spec: spec.clone(),
            };
            let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs, op)?;
            patch.apply(model)?;
        }
    }
    Ok(())
}

/// 2-D max pooling over `[N, C, H, W]` f32 tensors, one channel plane at a time: for each
/// output row, the maximum of the window's input rows (clipped to the plane, which for a
/// maximum is the same as padding with the lowest value), then of each output's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaneMaxPool {
    pool_spec: PoolSpec,
}

impl Op for PlaneMaxPool {
    fn name(&self) -> StaticName {
        "PlaneMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self.pool_spec.info())
    }

    op_as_typed_op!();
}

/// One axis of a pooling: the input and output sizes, the kernel, stride and padding before.
#[derive(Clone, Copy, Debug)]
struct PoolAxis {
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    pad_before: usize,
}

impl PoolAxis {
    /// The input range under output `o`'s window, clipped to the input.
    fn window(&self, o: usize) -> std::ops::Range<usize> {
        let start = (o * self.stride).saturating_sub(self.pad_before);
        let end = (o * self.stride + self.kernel)
            .saturating_sub(self.pad_before)
            .min(self.input);
        start..end.max(start)
    }
}

impl PlaneMaxPool {
    /// The pooling's rows and columns on planes of `h` × `w`.
    fn axes(&self, h: usize, w: usize) -> (PoolAxis, PoolAxis) {
        let padding = self.pool_spec.computed_padding(&[h, w]);
        let (kernel, strides) = (&self.pool_spec.kernel_shape, self.pool_spec.strides());
        let axis = |i: usize, size: usize| PoolAxis {
            input: size,
            output: padding[i].convoluted,
            kernel: kernel[i],
            stride: strides[i],
            pad_before: padding[i].pad_before,
        };
        (axis(0, h), axis(1, w))
    }
}

impl EvalOp for PlaneMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let &[n, c, h, w] = input.shape() else {
            bail!("PlaneMaxPool on a tensor of shape {:?}", input.shape());
        };
        let (rows, columns) = self.axes(h, w);
        let mut output = Tensor::zero::<f32>(&[n, c, rows.output, columns.output])?;
        let mut out_plain = output.try_as_plain_ram_mut()?;
        let out = out_plain.as_slice_mut::<f32>()?;
        let in_plain = input.try_as_plain_ram()?;
        let planes = in_plain.as_slice::<f32>()?;
        if out.is_empty() || planes.is_empty() {
            // No output, or windows over an empty plane: the lowest value, as tract gives.
            out.fill(f32::MIN);
            return Ok(tvec!(output.into_tvalue()));
        }
        // One output row: the maximum of the window's rows (contiguous), written into a row
        // padded with the lowest value on both sides, then of each output's columns. Both
        // start from the lowest value, so NaN inputs are skipped and a window wholly in the
        // padding gives the lowest value, as in tract.
        pool_planes(planes, out, (h, w), rows, columns);
        Ok(tvec!(output.into_tvalue()))
    }
}

avx2_or_baseline! {
    /// Pools every `h` × `w` plane (`dims`) of `planes` into `out`, one output row at a time:
    /// the maximum of the window's rows first (whole rows), then of each window's columns.
    fn pool_planes / pool_planes_avx2(
        planes: &[f32],
        out: &mut [f32],
        dims: (usize, usize),
        rows: PoolAxis,
        columns: PoolAxis,
    ) = pool_planes_with
}

/// [`pool_planes`] as compiled for the target's baseline.
#[inline(always)]
fn pool_planes_with(
    planes: &[f32],
    out: &mut [f32],
    (h, w): (usize, usize),
    rows: PoolAxis,
    columns: PoolAxis,
) {
    let (k, stride, pad) = (columns.kernel, columns.stride, columns.pad_before);
    let span = (columns.output - 1) * stride + k;
    // Two more than any window reads: the stride-2 kernels read pairs.
    let mut padded = vec![f32::MIN; span.max(pad + w) + 2];
    for (plane, out) in planes
        .chunks_exact(h * w)
        .zip(out.chunks_exact_mut(rows.output * columns.output))
    {
        for (oy, out) in out.chunks_exact_mut(columns.output).enumerate() {
            let row = &mut padded[pad..pad + w];
            let window = rows.window(oy);
            let line = |i: usize| &plane[(window.start + i) * w..][..w];
            // Each value is written once, from a fold over the window's rows: `*m = max(*m,
            // v)` row after row became masked stores, which are slow on AMD CPUs.
            match window.len() {
                2 => {
                    for ((m, &a), &b) in row.iter_mut().zip(line(0)).zip(line(1)) {
                        *m = max(max(f32::MIN, a), b);
                    }
                }
                3 => {
                    let (a, b, c) = (line(0), line(1), line(2));
                    for (((m, &a), &b), &c) in row.iter_mut().zip(a).zip(b).zip(c) {
                        *m = max(max(max(f32::MIN, a), b), c);
                    }
                }
                _ => {
                    row.fill(f32::MIN);
                    for iy in window {
                        for (m, &v) in row.iter_mut().zip(&plane[iy * w..][..w]) {
                            *m = max(*m, v);
                        }
                    }
                }
            }
            match (k, stride) {
                (2, 2) => pool_pairs::<2>(&padded, out),
                (3, 2) => pool_pairs::<3>(&padded, out),
                _ => {
                    for (o, out) in out.iter_mut().enumerate() {
                        *out = padded[o * stride..][..k]
                            .iter()
                            .fold(f32::MIN, |m, &v| max(m, v));
                    }
                }
            }
        }
    }
}

/// `out[o]` = the maximum of `padded[2o .. 2o + K]` (`K` of 2 or 3) folded from the left, as
/// pairs `(2o, 2o + 1)` and `(2o + 2, _)` so that the loop vectorises; `padded` holds at
/// least `2 · out.len() + 2` values.
#[inline(always)]
fn pool_pairs<const K: usize>(padded: &[f32], out: &mut [f32]) {
    let n = out.len();
    let pairs = padded[..2 * n].chunks_exact(2);
    let next = padded[2..2 * n + 2].chunks_exact(2);
    for ((out, a), b) in out.iter_mut().zip(pairs).zip(next) {
        let m = max(max(f32::MIN, a[0]), a[1]);
        *out = if K == 3 { max(m, b[0]) } else { m };
    }
}

/// The larger of `m` and `v` (`m` when they compare equal or `v` is NaN), in the form that
/// compiles to one `maxps` per lane group.
#[inline]
fn max(m: f32, v: f32) -> f32 {
    if v > m { v } else { m }
}

impl TypedOp for PlaneMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        self.pool_spec.output_facts(inputs)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::nets::tests::noise;
    use tract_onnx::tract_core::ops::cnn::PaddingSpec;

    /// Runs `op` alone on `input` in an optimised plan.
    fn run(op: impl Into<Box<dyn TypedOp>>, input: &Tensor) -> Tensor {
        let mut model = TypedModel::default();
        let source = model.add_source("x", f32::fact(input.shape())).unwrap();
        let out = model.wire_node("op", op.into(), &[source]).unwrap();
        model.select_output_outlets(&out).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let mut out = plan.run(tvec![input.clone().into_tvalue()]).unwrap();
        out.remove(0).into_tensor()
    }

    #[test]
    fn plane_max_pool_matches_tracts_max_pool() {
        let cases = [
            // R-Net's and O-Net's pools, P-Net's, and odd sizes, strides and paddings.
            ([2, 3, 22, 22], [3, 3], [2, 2], PaddingSpec::SameUpper),
            ([1, 4, 9, 9], [3, 3], [2, 2], PaddingSpec::Valid),
            ([1, 2, 8, 8], [2, 2], [2, 2], PaddingSpec::SameUpper),
            ([1, 10, 15, 12], [2, 2], [2, 2], PaddingSpec::SameUpper),
            // Rows long enough for whole vectors of outputs, of both parities.
            ([1, 2, 9, 71], [2, 2], [2, 2], PaddingSpec::SameUpper),
            ([1, 2, 7, 70], [3, 3], [2, 2], PaddingSpec::SameUpper),
            ([1, 3, 13, 7], [3, 2], [2, 1], PaddingSpec::SameLower),
            ([1, 2, 11, 10], [3, 3], [1, 3], PaddingSpec::SameUpper),
            (
                [1, 2, 10, 9],
                [3, 3],
                [2, 2],
                PaddingSpec::ExplicitOnnxPool(tvec![1, 2], tvec![2, 1], true),
            ),
        ];
        for (i, (shape, kernel, strides, padding)) in cases.into_iter().enumerate() {
            let spec = PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: kernel.iter().copied().collect(),
                padding,
                dilations: None,
                strides: Some(strides.iter().copied().collect()),
                input_channels: shape[1],
                output_channels: shape[1],
            };
            let len = shape.iter().product();
            let input = Tensor::from_shape(&shape, &noise(len, i as u64)).unwrap();
            let tract = run(MaxPool::new(spec.clone(), None), &input);
            let op = PlaneMaxPool { pool_spec: spec };
            let ours = run(op.clone(), &input);
            assert_eq!(ours, tract, "case {i}: {shape:?} kernel {kernel:?}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // The portable build gives the AVX2 build's bits.
                let (rows, columns) = op.axes(shape[2], shape[3]);
                let planes = input.try_as_plain_ram().unwrap();
                let planes = planes.as_slice::<f32>().unwrap();
                let mut portable = vec![0f32; ours.len()];
                let mut avx2 = vec![0f32; ours.len()];
                let dims = (shape[2], shape[3]);
                pool_planes_with(planes, &mut portable, dims, rows, columns);
                // SAFETY: this CPU has AVX2 (checked just above).
                #[allow(unsafe_code)]
                unsafe {
                    pool_planes_avx2(planes, &mut avx2, dims, rows, columns);
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&portable), bits(&avx2), "case {i}: {shape:?}");
            }
        }
    }

    /// Times the max pool on the networks' shapes, one thread:
    /// `cargo test --release -p facerec-detect ops::tests::pool_timings -- --ignored --nocapture`.
    #[test]
    #[ignore = "prints timings; run by hand"]
    fn pool_timings() {
        for (name, shape, k, padding) in [
            (
                "P-Net (a 128x192 tile)",
                [1, 10, 126, 190],
                2,
                PaddingSpec::SameUpper,
            ),
            ("R-Net pool1", [1, 28, 22, 22], 3, PaddingSpec::SameUpper),
            ("R-Net pool2", [1, 48, 9, 9], 3, PaddingSpec::Valid),
            ("O-Net pool1", [1, 32, 46, 46], 3, PaddingSpec::SameUpper),
            ("O-Net pool2", [1, 64, 21, 21], 3, PaddingSpec::Valid),
            ("O-Net pool3", [1, 64, 8, 8], 2, PaddingSpec::SameUpper),
        ] {
            let spec = PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![k, k],
                padding,
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: shape[1],
                output_channels: shape[1],
            };
            let input = Tensor::from_shape(&shape, &noise(shape.iter().product(), 1)).unwrap();
            let mut model = TypedModel::default();
            let source = model.add_source("x", f32::fact(shape)).unwrap();
            let out = model
                .wire_node("op", PlaneMaxPool { pool_spec: spec }, &[source])
                .unwrap();
            model.select_output_outlets(&out).unwrap();
            let plan = model.into_optimized().unwrap().into_runnable().unwrap();
            let input = input.into_tvalue();
            let runs = 2000;
            let mut best = f64::MAX;
            for _ in 0..5 {
                let start = std::time::Instant::now();
                for _ in 0..runs {
                    std::hint::black_box(plan.run(tvec![input.clone()]).unwrap());
                }
                best = best.min(start.elapsed().as_secs_f64() / runs as f64);
            }
            println!("{name:24} {shape:?}: {:.2} us", best * 1e6);
        }
    }

    #[test]
    fn channel_prelu_scales_negatives_by_their_channels_slope() {
        let slope = Tensor::from_shape(&[3, 1, 1], &[0.5f32, -0.25, 2.0]).unwrap();
        let op = channel_prelu(4, &slope).unwrap();
        let input = Tensor::from_shape(&[2, 3, 2, 2], &noise(24, 5)).unwrap();
        let got = run(op, &input);
        let x = input
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec();
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let a = [0.5, -0.25, 2.0][(i / 4) % 3];
                // The graph form the detector used before: Relu(x) + a · Min(x, 0).
                v.max(0.0) + a * v.min(0.0)
            })
            .collect();
        assert_eq!(got, Tensor::from_shape(&[2, 3, 2, 2], &want).unwrap());
        // Per unit of a dense layer's output, and a single slope.
        let dense = channel_prelu(2, &Tensor::from_shape(&[3], &[1f32, 2., 3.]).unwrap()).unwrap();
        let got = run(
            dense,
            &Tensor::from_shape(&[1, 3], &[-1f32, -1., 1.]).unwrap(),
        );
        assert_eq!(got, Tensor::from_shape(&[1, 3], &[-1f32, -2., 1.]).unwrap());
        let one = channel_prelu(2, &Tensor::from_shape(&[1, 1], &[0.5f32]).unwrap()).unwrap();
        let got = run(one, &Tensor::from_shape(&[1, 2], &[-4f32, 4.]).unwrap());
        assert_eq!(got, Tensor::from_shape(&[1, 2], &[-2f32, 4.]).unwrap());
        // A slope varying along two axes is refused.
        let two = Tensor::from_shape(&[2, 2], &[1f32, 2., 3., 4.]).unwrap();
        assert!(channel_prelu(2, &two).is_err());
    }
}
