//! What the embedder's own convolution ops ([`Q8Conv`](crate::q8), [`WinogradConv`](crate::winograd))
//! share: reading a tract convolution they can run, and putting them in its place in a model.

use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_hir::internal::*;

/// A convolution of a model that the embedder's own ops can run: f32 `[N, C, H, W]`, 2-D, one
/// group, no dilation, explicit or no padding, constant OIHW kernel and bias.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConstConv {
    /// Input channels.
    pub inputs: usize,
    /// Output channels.
    pub outputs: usize,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal strides.
    pub strides: [usize; 2],
    /// Zero rows above and columns left of the input.
    pub before: [usize; 2],
    /// Zero rows below and columns right of the input.
    pub after: [usize; 2],
    /// The input's height and width, where the model knows them.
    pub input_size: Option<[usize; 2]>,
    /// The kernel, `[outputs][inputs][kernel height][kernel width]`.
    pub oihw: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

impl ConstConv {
    /// `conv` with these input facts, or `None` when it is not such a convolution.
    pub(crate) fn read(conv: &Conv, facts: &[&TypedFact]) -> TractResult<Option<Self>> {
        let spec = &conv.pool_spec;
        let [input, weights, bias] = facts else {
            return Ok(None);
        };
        let (before, after) = match &spec.padding {
            PaddingSpec::Valid => (tvec![0, 0], tvec![0, 0]),
            PaddingSpec::Explicit(before, after) => (before.clone(), after.clone()),
            _ => return Ok(None),
        };
        if conv.q_params.is_some()
            || conv.group != 1
            || conv.kernel_fmt != KernelFormat::OIHW
            || spec.data_format != DataFormat::NCHW
            || spec.rank() != 2
            || spec.dilations().iter().any(|&d| d != 1)
            || input.datum_type != f32::datum_type()
            || input.shape.rank() != 4
        {
            return Ok(None);
        }
        let (Some(weights), Some(bias)) = (&weights.konst, &bias.konst) else {
            return Ok(None);
        };
        let &[outputs, inputs, kh, kw] = weights.shape() else {
            return Ok(None);
        };
        let oihw = weights.cast_to::<f32>()?;
        let oihw = oihw.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = bias.cast_to::<f32>()?;
        let bias = bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let bias = match bias.len() {
            n if n == outputs => bias,
            1 => vec![bias[0]; outputs],
            _ => return Ok(None),
        };
        let strides = spec.strides();
        let input_size = match (input.shape[2].to_usize(), input.shape[3].to_usize()) {
            (Ok(h), Ok(w)) => Some([h, w]),
            _ => None,
        };
        Ok(Some(Self {
            inputs,
            outputs,
            kernel: [kh, kw],
            strides: [strides[0], strides[1]],
            before: [before[0], before[1]],
            after: [after[0], after[1]],
            input_size,
            oihw,
            bias,
        }))
    }
}

/// Replaces every convolution of `model` that [`ConstConv::read`] reads and for which `op_for`
/// gives an op by that op. Returns how many were replaced.
pub(crate) fn replace_convs<O: TypedOp>(
    model: &mut TypedModel,
    mut op_for: impl FnMut(ConstConv) -> Option<O>,
) -> TractResult<usize> {
    let mut replaced = 0;
    for id in 0..model.nodes().len() {
        let node = &model.nodes()[id];
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = ConstConv::read(conv, &model.node_input_facts(id)?)?.and_then(&mut op_for)
        else {
            continue;
        };
        let patch = TypedModelPatch::replace_single_op(model, node, &node.inputs[..1], op)?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// Reproducible values in `lo..hi`, for the ops' tests.
#[cfg(test)]
pub(crate) fn values(n: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + (hi - lo) * ((state >> 40) as f32 / (1u64 << 24) as f32)
        })
        .collect()
}
