//! Translates MobileFaceNet from TFLite (read by [`crate::tflite`]) into an ONNX graph.
//!
//! The translator takes a float32 TFLite subgraph built from the operators MobileFaceNet
//! uses and refuses anything else with a [`TranslateError`] naming the operator:
//!
//! - `CONV_2D` and `DEPTHWISE_CONV_2D` become `Conv` (depthwise: `group` = input channels),
//!   their weights transposed from TFLite's `[O, H, W, I]` and `[1, H, W, C·mult]` to ONNX's
//!   `[O, I, H, W]` and `[C·mult, 1, H, W]` (values copied, not recomputed). TensorFlow's
//!   `SAME` padding becomes explicit ONNX pads, possibly asymmetric: `before = total / 2`,
//!   `after` the rest, as TensorFlow pads. A fused activation becomes its own node.
//! - TOCO writes PReLU out as `relu(x) + m * (x - |x|)` (`RELU`, `ABS`, `SUB`, `MUL`, `ADD`,
//!   `m` a per-channel constant). That pattern, checked strictly by data flow (the same `x`
//!   into `RELU`, `ABS` and `SUB`, `x - |x|` in that order, `m` constant `[C]`, the `ADD` of
//!   the relu and the product, intermediate values used nowhere else, no fused activations),
//!   becomes one `PRelu` with slope `2·m`. That is exact: for `x < 0`, `x - |x| = 2x` exactly
//!   and `m · 2x` and `2m · x` are the same real product rounded once; for `x ≥ 0` both give
//!   `x`. `RELU`, `ABS`, `SUB` and `MUL` are translated only inside that pattern.
//! - Any other `ADD` (the residual connections) becomes `Add` of two values of the same shape.
//! - A `RESHAPE` of `[B, 1, 1, C]` to `[B, C]` becomes `Flatten` (the batch stays symbolic).
//!
//! Activations stay NCHW throughout, so the ONNX input is `[N, C, H, W]` where TFLite's is
//! `[B, H, W, C]`; TFLite's fixed batch `B` becomes the symbolic `N`. Nodes are named
//! `{Op}_{n}` and follow TFLite's operator order (a `PRelu` stands where its pattern's `ADD`
//! is), each with the TFLite operator and output tensor in its `doc_string`, so the same file
//! always gives the same bytes.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::graph::{Builder, ModelInfo, Provenance, Shape, Value, attr_int, attr_ints, dims};
use crate::onnx::ModelProto;
use crate::tflite::{
    self, Activation, BuiltinOptions, Model, Operator, Padding, SubGraph, Tensor, builtin,
};

/// Name of the ONNX graph.
pub const GRAPH_NAME: &str = "mobilefacenet";
/// Version of the graph this translation writes, recorded as `producer_version`. Bump it
/// only when the output bytes change.
const OUTPUT_FORMAT_VERSION: &str = "1";

/// Why a TFLite model cannot be translated.
#[derive(Debug, Error, PartialEq)]
pub enum TranslateError {
    /// The model as a whole is not of the supported form (schema version, number of
    /// subgraphs, inputs or outputs, the input's or the output's type or shape).
    #[error("{0}")]
    Model(String),
    /// An operator the converter does not translate.
    #[error("operator {index} ({op}) is not supported")]
    UnsupportedOp {
        /// Index of the operator in the subgraph.
        index: usize,
        /// The operator's name, e.g. `AVERAGE_POOL_2D`.
        op: String,
    },
    /// An operator the converter translates, with a type, option or configuration it does
    /// not.
    #[error("operator {index} ({op}): {detail} is not supported")]
    Unsupported {
        /// Index of the operator in the subgraph.
        index: usize,
        /// The operator's name.
        op: String,
        /// What is not supported.
        detail: String,
    },
    /// A `RELU`, `ABS`, `SUB` or `MUL` that is not part of the PReLU pattern
    /// `relu(x) + m * (x - |x|)`, the only place these operators are translated.
    #[error(
        "operator {index} ({op}) is not part of a PReLU pattern relu(x) + m * (x - |x|): {detail}"
    )]
    NotPRelu {
        /// Index of the operator in the subgraph.
        index: usize,
        /// The operator's name.
        op: String,
        /// Which check failed.
        detail: String,
    },
    /// An operator whose tensors are inconsistent: an index out of range, a shape that does
    /// not follow from its inputs, weights of the wrong size, a value used before it is
    /// computed, ...
    #[error("operator {index} ({op}): {detail}")]
    Invalid {
        /// Index of the operator in the subgraph.
        index: usize,
        /// The operator's name.
        op: String,
        /// What is wrong.
        detail: String,
    },
}

/// Counts the operators of the model's first subgraph by name, sorted by name.
pub fn op_counts(model: &Model) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for op in model.subgraphs.iter().take(1).flat_map(|g| &g.operators) {
        let name = usize::try_from(op.opcode_index)
            .ok()
            .and_then(|i| model.operator_codes.get(i))
            .map_or_else(|| format!("opcode {}", op.opcode_index), |c| c.name());
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// One recognised `relu(x) + m * (x - |x|)`: the operators it spans and what `PRelu` needs.
#[derive(Debug, Clone)]
struct PReluPattern {
    /// Indices of the `RELU`, `ABS`, `SUB` and `MUL` operators (the `ADD` is the key).
    members: [usize; 4],
    /// The input tensor `x`.
    input: usize,
    /// `2·m`.
    slope: Vec<f32>,
}

struct Translator<'m> {
    model: &'m Model,
    graph: &'m SubGraph,
    /// TFLite's fixed batch size (the input's first dimension).
    batch: i32,
    /// The graph's input and output tensors.
    input: usize,
    output: usize,
    /// Per tensor: the ONNX value holding it, once computed.
    values: Vec<Option<Value>>,
    /// Per tensor: the operator writing it.
    producer: Vec<Option<usize>>,
    /// Per tensor: the operators reading it.
    consumers: Vec<Vec<usize>>,
    /// Per tensor: whether it is a graph output.
    is_output: Vec<bool>,
    /// Recognised PReLU patterns by the index of their final `ADD`.
    prelus: BTreeMap<usize, PReluPattern>,
    /// Per operator: whether it belongs to a PReLU pattern (translated with its `ADD`).
    in_prelu: Vec<bool>,
    b: Builder,
}

fn op_error(index: usize, op: &str, detail: String) -> TranslateError {
    TranslateError::Invalid {
        index,
        op: op.to_owned(),
        detail,
    }
}

/// TensorFlow's output size and `(before, after)` padding of one spatial axis.
fn window(
    size: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Option<(usize, usize, usize)> {
    let effective = kernel.checked_sub(1)?.checked_mul(dilation)? + 1;
    if stride == 0 {
        return None;
    }
    match padding {
        Padding::Valid => {
            let out = size.checked_sub(effective)? / stride + 1;
            Some((out, 0, 0))
        }
        Padding::Same => {
            let out = size.div_ceil(stride);
            let total = ((out - 1) * stride + effective).saturating_sub(size);
            Some((out, total / 2, total - total / 2))
        }
    }
}

impl<'m> Translator<'m> {
    fn new(model: &'m Model) -> Result<Self, TranslateError> {
        let err = |detail: String| Err(TranslateError::Model(detail));
        if model.version != tflite::SCHEMA_VERSION {
            return err(format!(
                "TFLite schema version {} (expected {})",
                model.version,
                tflite::SCHEMA_VERSION
            ));
        }
        let [graph] = model.subgraphs.as_slice() else {
            return err(format!(
                "{} subgraphs (expected one)",
                model.subgraphs.len()
            ));
        };
        let n = graph.tensors.len();
        let mut t = Self {
            model,
            graph,
            batch: 0,
            input: 0,
            output: 0,
            values: vec![None; n],
            producer: vec![None; n],
            consumers: vec![Vec::new(); n],
            is_output: vec![false; n],
            prelus: BTreeMap::new(),
            in_prelu: vec![false; graph.operators.len()],
            b: Builder::default(),
        };
        for (index, op) in graph.operators.iter().enumerate() {
            let name = t.op_name(index, op)?;
            for &i in &op.inputs {
                if i != -1 {
                    let i = t.tensor_index(i, index, &name)?;
                    t.consumers[i].push(index);
                }
            }
            for &i in &op.outputs {
                let i = t.tensor_index(i, index, &name)?;
                if let Some(other) = t.producer[i] {
                    return Err(op_error(
                        index,
                        &name,
                        format!("tensor {i} is also written by operator {other}"),
                    ));
                }
                t.producer[i] = Some(index);
            }
        }
        let (&[input], &[output]) = (graph.inputs.as_slice(), graph.outputs.as_slice()) else {
            return err(format!(
                "{} inputs and {} outputs (expected one of each)",
                graph.inputs.len(),
                graph.outputs.len()
            ));
        };
        let (Some(input), Some(output)) = (
            usize::try_from(input).ok().filter(|&i| i < n),
            usize::try_from(output).ok().filter(|&i| i < n),
        ) else {
            return err(format!(
                "input tensor {input} or output tensor {output} is not one of the {n} tensors"
            ));
        };
        t.is_output[output] = true;
        (t.input, t.output) = (input, output);
        let tensor = &graph.tensors[input];
        let shape = positive_dims(&tensor.shape);
        match (tensor.tensor_type, shape.as_deref()) {
            (tflite::TENSOR_FLOAT32, Some(&[b, h, w, c]))
                if !tensor.quantized && t.constant_data(tensor).is_none() =>
            {
                t.batch = i32::try_from(b).unwrap_or(0);
                t.values[input] = Some(Value {
                    name: crate::graph::INPUT_NAME.to_owned(),
                    shape: Shape::Image {
                        channels: c,
                        rows: h,
                        cols: w,
                    },
                });
            }
            _ => {
                return err(format!(
                    "input {:?} is {} {:?}: expected float32 NHWC [batch, height, width, \
                     channels]",
                    tensor.name,
                    tflite::tensor_type_name(tensor.tensor_type),
                    tensor.shape
                ));
            }
        }
        if t.producer[input].is_some() {
            return err(format!("input {:?} is written by an operator", tensor.name));
        }
        Ok(t)
    }

    fn op_name(&self, index: usize, op: &Operator) -> Result<String, TranslateError> {
        usize::try_from(op.opcode_index)
            .ok()
            .and_then(|i| self.model.operator_codes.get(i))
            .map(tflite::OperatorCode::name)
            .ok_or_else(|| {
                op_error(
                    index,
                    "?",
                    format!(
                        "opcode index {} is not one of the {} operator codes",
                        op.opcode_index,
                        self.model.operator_codes.len()
                    ),
                )
            })
    }

    fn op_code(&self, op: &Operator) -> i32 {
        usize::try_from(op.opcode_index)
            .ok()
            .and_then(|i| self.model.operator_codes.get(i))
            .map_or(-1, tflite::OperatorCode::code)
    }

    fn tensor_index(&self, i: i32, index: usize, op: &str) -> Result<usize, TranslateError> {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < self.graph.tensors.len())
            .ok_or_else(|| {
                op_error(
                    index,
                    op,
                    format!(
                        "tensor index {i} is not one of the {} tensors",
                        self.graph.tensors.len()
                    ),
                )
            })
    }

    fn tensor(&self, i: usize) -> &'m Tensor {
        &self.graph.tensors[i]
    }

    /// The data of a constant tensor, `None` for an activation.
    fn constant_data(&self, tensor: &Tensor) -> Option<&'m [u8]> {
        usize::try_from(tensor.buffer)
            .ok()
            .and_then(|b| self.model.buffers.get(b))
            .map(|b| b.data.as_slice())
            .filter(|d| !d.is_empty())
    }

    /// Refuses quantized, sparse, variable and non-float32 tensors.
    fn check_float(&self, i: usize, index: usize, op: &str) -> Result<(), TranslateError> {
        let t = self.tensor(i);
        let detail = if t.tensor_type != tflite::TENSOR_FLOAT32 {
            format!("tensor type {}", tflite::tensor_type_name(t.tensor_type))
        } else if t.quantized {
            "a quantized tensor".to_owned()
        } else if t.sparse {
            "a sparse tensor".to_owned()
        } else if t.is_variable {
            "a variable tensor".to_owned()
        } else {
            return Ok(());
        };
        Err(TranslateError::Unsupported {
            index,
            op: op.to_owned(),
            detail: format!("{detail} ({:?})", t.name),
        })
    }

    /// A float32 constant of exactly `shape`.
    fn constant_f32(
        &self,
        i: i32,
        shape: Option<&[usize]>,
        index: usize,
        op: &str,
        role: &str,
    ) -> Result<(Vec<usize>, Vec<f32>), TranslateError> {
        let i = self.tensor_index(i, index, op)?;
        self.check_float(i, index, op)?;
        let t = self.tensor(i);
        let err = |detail: String| op_error(index, op, format!("{role} {:?}: {detail}", t.name));
        let data = self
            .constant_data(t)
            .ok_or_else(|| err("is not a constant".to_owned()))?;
        let dims = positive_dims(&t.shape).ok_or_else(|| err(format!("shape {:?}", t.shape)))?;
        if let Some(expected) = shape
            && dims != expected
        {
            return Err(err(format!("shape {dims:?}, expected {expected:?}")));
        }
        let count: usize = dims.iter().product();
        if data.len() != count * 4 {
            return Err(err(format!(
                "{} bytes of data for shape {dims:?} ({} expected)",
                data.len(),
                count * 4
            )));
        }
        let values = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        Ok((dims, values))
    }

    /// The computed value of activation tensor `i`.
    fn value(&self, i: i32, index: usize, op: &str) -> Result<Value, TranslateError> {
        let i = self.tensor_index(i, index, op)?;
        self.check_float(i, index, op)?;
        self.values[i].clone().ok_or_else(|| {
            let t = self.tensor(i);
            let what = if self.constant_data(t).is_some() {
                "a constant where an activation is expected"
            } else {
                "not computed before this operator"
            };
            op_error(index, op, format!("tensor {:?} is {what}", t.name))
        })
    }

    /// Checks that output tensor `i` is a float32 activation of `shape` and records `value`
    /// as its value.
    fn set_output(
        &mut self,
        i: i32,
        value: Value,
        index: usize,
        op: &str,
    ) -> Result<(), TranslateError> {
        let i = self.tensor_index(i, index, op)?;
        self.check_float(i, index, op)?;
        let t = self.tensor(i);
        if self.constant_data(t).is_some() {
            return Err(op_error(
                index,
                op,
                format!("output {:?} has constant data", t.name),
            ));
        }
        let expected = self.tflite_shape(value.shape);
        if t.shape != expected {
            return Err(op_error(
                index,
                op,
                format!(
                    "output {:?} is declared {:?}, but the operator gives {expected:?}",
                    t.name, t.shape
                ),
            ));
        }
        self.values[i] = Some(value);
        Ok(())
    }

    /// The TFLite (NHWC) shape of a value of per-sample `shape`.
    fn tflite_shape(&self, shape: Shape) -> Vec<i32> {
        let dims = match shape {
            Shape::Image {
                channels,
                rows,
                cols,
            } => vec![rows, cols, channels],
            Shape::Flat { len } => vec![len],
        };
        std::iter::once(self.batch)
            .chain(dims.into_iter().map(|d| i32::try_from(d).unwrap_or(-1)))
            .collect()
    }

    /// Refuses what no translated operator has: custom options, `builtin_options_2`,
    /// intermediates, a number of inputs or outputs outside the given ranges.
    fn check_operator(
        &self,
        index: usize,
        op: &Operator,
        name: &str,
        inputs: std::ops::RangeInclusive<usize>,
    ) -> Result<(), TranslateError> {
        let unsupported = |detail: &str| TranslateError::Unsupported {
            index,
            op: name.to_owned(),
            detail: detail.to_owned(),
        };
        if op.has_custom_options {
            return Err(unsupported("custom options"));
        }
        if op.options_2_type != 0 {
            return Err(unsupported("builtin_options_2"));
        }
        if !op.intermediates.is_empty() {
            return Err(unsupported("intermediate tensors"));
        }
        if !inputs.contains(&op.inputs.len()) || op.outputs.len() != 1 {
            return Err(op_error(
                index,
                name,
                format!(
                    "{} inputs and {} outputs (expected {inputs:?} and 1)",
                    op.inputs.len(),
                    op.outputs.len()
                ),
            ));
        }
        Ok(())
    }

    /// Finds every PReLU pattern, keyed by its `ADD`; a `RELU` that starts none is an error.
    fn find_prelus(&mut self) -> Result<(), TranslateError> {
        let graph = self.graph;
        for (index, op) in graph.operators.iter().enumerate() {
            if self.op_code(op) == builtin::RELU {
                let pattern = self.match_prelu(index, op)?;
                let add = pattern.1;
                for m in pattern.0.members {
                    self.in_prelu[m] = true;
                }
                self.in_prelu[add] = true;
                self.prelus.insert(add, pattern.0);
            }
        }
        Ok(())
    }

    /// The only operator reading tensor `t`, with its code; `what` names `t` in errors.
    fn sole_consumer(&self, t: usize, what: &str) -> Result<(usize, &'m Operator), String> {
        if self.is_output[t] {
            return Err(format!("{what} is a graph output"));
        }
        match self.consumers[t].as_slice() {
            &[c] => Ok((c, &self.graph.operators[c])),
            others => Err(format!(
                "{what} is read by operators {others:?}, not by one"
            )),
        }
    }

    /// The operator writing tensor `t`, which must be `code` and read only by `reader`.
    fn producer_of(
        &self,
        t: i32,
        code: i32,
        reader: usize,
        what: &str,
    ) -> Result<(usize, &'m Operator), String> {
        let t = usize::try_from(t)
            .ok()
            .filter(|&t| t < self.graph.tensors.len())
            .ok_or_else(|| format!("{what} is tensor {t}, out of range"))?;
        let p = self.producer[t].ok_or_else(|| format!("{what} is not written by an operator"))?;
        let op = &self.graph.operators[p];
        if self.op_code(op) != code {
            return Err(format!(
                "{what} is written by operator {p} ({}), not {}",
                self.op_name(p, op).unwrap_or_default(),
                tflite::builtin_name(code)
            ));
        }
        let (c, _) = self.sole_consumer(t, what)?;
        if c != reader {
            return Err(format!("{what} is read by operator {c}"));
        }
        Ok((p, op))
    }

    /// Checks the PReLU pattern that the `RELU` at `index` must start; returns it and the
    /// index of its `ADD`.
    fn match_prelu(
        &self,
        index: usize,
        relu: &Operator,
    ) -> Result<(PReluPattern, usize), TranslateError> {
        let fail = |detail: String| TranslateError::NotPRelu {
            index,
            op: "RELU".to_owned(),
            detail,
        };
        let only_none = |op: &Operator, what: &str| match &op.options {
            BuiltinOptions::None
            | BuiltinOptions::Add(Activation::None)
            | BuiltinOptions::Sub(Activation::None)
            | BuiltinOptions::Mul(Activation::None) => Ok(()),
            other => Err(format!("{what} has options {other:?}")),
        };
        let (&[x], &[r]) = (relu.inputs.as_slice(), relu.outputs.as_slice()) else {
            return Err(fail(
                "RELU does not have one input and one output".to_owned(),
            ));
        };
        only_none(relu, "the RELU").map_err(fail)?;
        let r_index = usize::try_from(r).unwrap_or(usize::MAX);
        let (add_index, add) = self
            .sole_consumer(r_index, "the RELU output")
            .map_err(fail)?;
        if self.op_code(add) != builtin::ADD {
            return Err(fail(format!(
                "the RELU output is read by operator {add_index} ({}), not an ADD",
                self.op_name(add_index, add).unwrap_or_default()
            )));
        }
        only_none(add, "the ADD").map_err(fail)?;
        let p = match add.inputs.as_slice() {
            &[a, p] if a == r => p,
            &[p, a] if a == r => p,
            other => return Err(fail(format!("the ADD reads tensors {other:?}"))),
        };
        let (mul_index, mul) = self
            .producer_of(p, builtin::MUL, add_index, "the ADD's other operand")
            .map_err(fail)?;
        only_none(mul, "the MUL").map_err(fail)?;
        let is_constant = |t: i32| {
            usize::try_from(t)
                .ok()
                .and_then(|t| self.graph.tensors.get(t))
                .is_some_and(|t| self.constant_data(t).is_some())
        };
        let (m, s) = match mul.inputs.as_slice() {
            &[m, s] if is_constant(m) && !is_constant(s) => (m, s),
            &[s, m] if is_constant(m) && !is_constant(s) => (m, s),
            other => {
                return Err(fail(format!(
                    "the MUL reads tensors {other:?}, not one constant and one activation"
                )));
            }
        };
        let (sub_index, sub) = self
            .producer_of(s, builtin::SUB, mul_index, "the MUL's activation operand")
            .map_err(fail)?;
        only_none(sub, "the SUB").map_err(fail)?;
        let &[sub_x, a] = sub.inputs.as_slice() else {
            return Err(fail("the SUB does not have two inputs".to_owned()));
        };
        if sub_x != x {
            return Err(fail(format!(
                "the SUB computes tensor {sub_x} - tensor {a}, not x - |x| with x = tensor {x}"
            )));
        }
        let (abs_index, abs) = self
            .producer_of(a, builtin::ABS, sub_index, "the SUB's second operand")
            .map_err(fail)?;
        only_none(abs, "the ABS").map_err(fail)?;
        if abs.inputs.as_slice() != [x] || abs.outputs.len() != 1 {
            return Err(fail(format!(
                "the ABS reads tensors {:?}, not x = tensor {x}",
                abs.inputs
            )));
        }
        for (i, op) in [(index, relu), (abs_index, abs), (sub_index, sub)] {
            let name = self.op_name(i, op)?;
            self.check_operator(i, op, &name, 1..=2)?;
        }
        for (i, op) in [(mul_index, mul), (add_index, add)] {
            let name = self.op_name(i, op)?;
            self.check_operator(i, op, &name, 2..=2)?;
        }
        // Every value in the pattern has x's shape; m has one value per channel.
        let x_index = self.tensor_index(x, index, "RELU")?;
        let x_shape = &self.tensor(x_index).shape;
        for t in [r, a, s, p, add.outputs[0]] {
            let i = self.tensor_index(t, index, "RELU")?;
            self.check_float(i, index, "RELU")?;
            let tensor = self.tensor(i);
            if &tensor.shape != x_shape {
                return Err(fail(format!(
                    "{:?} is {:?}, x is {x_shape:?}",
                    tensor.name, tensor.shape
                )));
            }
        }
        let channels = x_shape
            .last()
            .and_then(|&c| usize::try_from(c).ok())
            .filter(|_| x_shape.len() == 4)
            .ok_or_else(|| fail(format!("x is {x_shape:?}, not NHWC")))?;
        let (_, m) = self
            .constant_f32(m, Some(&[channels]), mul_index, "MUL", "the slope m")
            .map_err(|e| fail(format!("the MUL's constant is not per-channel: {e}")))?;
        let slope: Vec<f32> = m.iter().map(|&m| 2.0 * m).collect();
        if let Some(bad) = slope.iter().find(|s| !s.is_finite()) {
            return Err(fail(format!("2·m is not finite ({bad})")));
        }
        Ok((
            PReluPattern {
                members: [index, abs_index, sub_index, mul_index],
                input: x_index,
                slope,
            },
            add_index,
        ))
    }

    /// Adds the node for a fused activation after `value`.
    fn fused(
        &mut self,
        value: Value,
        activation: Activation,
        index: usize,
        op: &str,
    ) -> Result<Value, TranslateError> {
        let name = match activation {
            Activation::None => return Ok(value),
            Activation::Relu => self.b.node("Relu", vec![value.name], vec![]),
            Activation::Tanh => self.b.node("Tanh", vec![value.name], vec![]),
            Activation::Relu6 | Activation::ReluN1To1 => {
                let (lo, hi) = if activation == Activation::Relu6 {
                    (0.0, 6.0)
                } else {
                    (-1.0, 1.0)
                };
                let clip = self.b.peek_name("Clip");
                let lo = self.b.f32_initializer(format!("{clip}.min"), &[], &[lo]);
                let hi = self.b.f32_initializer(format!("{clip}.max"), &[], &[hi]);
                self.b.node("Clip", vec![value.name, lo, hi], vec![])
            }
            Activation::SignBit => {
                return Err(TranslateError::Unsupported {
                    index,
                    op: op.to_owned(),
                    detail: "fused activation SIGN_BIT".to_owned(),
                });
            }
        };
        self.annotate(index, op);
        Ok(Value {
            name,
            shape: value.shape,
        })
    }

    /// Records the TFLite operator in the last node's `doc_string`.
    fn annotate(&mut self, index: usize, op: &str) {
        let output = self.graph.operators[index]
            .outputs
            .first()
            .and_then(|&t| usize::try_from(t).ok())
            .and_then(|t| self.graph.tensors.get(t))
            .map_or("", |t| t.name.as_str());
        if let Some(node) = self.b.nodes.last_mut() {
            node.doc_string = format!("TFLite operator {index} {op} -> {output}");
        }
    }

    fn conv(&mut self, index: usize, op: &Operator, name: &str) -> Result<(), TranslateError> {
        self.check_operator(index, op, name, 2..=3)?;
        let invalid = |detail: String| op_error(index, name, detail);
        let (padding, stride, dilation, activation, multiplier) = match &op.options {
            BuiltinOptions::Conv2D(o) if name == "CONV_2D" => {
                (o.padding, o.stride, o.dilation, o.activation, None)
            }
            BuiltinOptions::DepthwiseConv2D(o) if name == "DEPTHWISE_CONV_2D" => (
                o.padding,
                o.stride,
                o.dilation,
                o.activation,
                Some(o.depth_multiplier),
            ),
            other => return Err(invalid(format!("options {other:?}"))),
        };
        let x = self.value(op.inputs[0], index, name)?;
        let Shape::Image {
            channels,
            rows,
            cols,
        } = x.shape
        else {
            return Err(invalid(format!("input is {:?}", x.shape)));
        };
        let (shape, filter) = self.constant_f32(op.inputs[1], None, index, name, "filter")?;
        let &[o, kh, kw, i] = shape.as_slice() else {
            return Err(invalid(format!("filter shape {shape:?} is not 4-d")));
        };
        let (weights, group) = match multiplier {
            None => {
                if i != channels {
                    return Err(TranslateError::Unsupported {
                        index,
                        op: name.to_owned(),
                        detail: format!(
                            "a grouped convolution (filters of {i} channels, input of \
                             {channels})"
                        ),
                    });
                }
                // [O, H, W, I] -> [O, I, H, W]
                let w: Vec<f32> = (0..o)
                    .flat_map(|o| {
                        let filter = &filter;
                        (0..i).flat_map(move |c| {
                            (0..kh * kw).map(move |hw| filter[(o * kh * kw + hw) * i + c])
                        })
                    })
                    .collect();
                (w, 1)
            }
            Some(multiplier) => {
                let expected = usize::try_from(multiplier)
                    .ok()
                    .filter(|&m| m > 0)
                    .and_then(|m| m.checked_mul(channels));
                if o != 1 || expected != Some(i) {
                    return Err(invalid(format!(
                        "depthwise filter {shape:?} for {channels} channels with depth \
                         multiplier {multiplier}"
                    )));
                }
                // [1, H, W, C·mult] -> [C·mult, 1, H, W]
                let w: Vec<f32> = (0..i)
                    .flat_map(|c| (0..kh * kw).map(move |hw| (c, hw)))
                    .map(|(c, hw)| filter[hw * i + c])
                    .collect();
                (w, channels)
            }
        };
        let out_channels = if multiplier.is_some() { i } else { o };
        let bias = match op.inputs.get(2) {
            Some(&b) if b != -1 => Some(
                self.constant_f32(b, Some(&[out_channels]), index, name, "bias")?
                    .1,
            ),
            _ => None,
        };
        let positive = |v: i32, what: &str| {
            usize::try_from(v)
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| invalid(format!("{what} {v}")))
        };
        let [sh, sw] = [
            positive(stride[0], "stride")?,
            positive(stride[1], "stride")?,
        ];
        let [dh, dw] = [
            positive(dilation[0], "dilation")?,
            positive(dilation[1], "dilation")?,
        ];
        let too_small = || invalid(format!("kernel {kh}x{kw} > input {rows}x{cols}"));
        let (out_rows, top, bottom) = window(rows, kh, sh, dh, padding).ok_or_else(too_small)?;
        let (out_cols, left, right) = window(cols, kw, sw, dw, padding).ok_or_else(too_small)?;

        let conv = self.b.peek_name("Conv");
        let w = self.b.f32_initializer(
            format!("{conv}.weight"),
            &[out_channels, channels / group, kh, kw],
            &weights,
        );
        let mut inputs = vec![x.name.clone(), w];
        if let Some(bias) = bias {
            inputs.push(
                self.b
                    .f32_initializer(format!("{conv}.bias"), &[out_channels], &bias),
            );
        }
        let out = self.b.node(
            "Conv",
            inputs,
            vec![
                attr_ints("dilations", dims(&[dh, dw])),
                attr_int("group", group as i64),
                attr_ints("kernel_shape", dims(&[kh, kw])),
                attr_ints("pads", dims(&[top, left, bottom, right])),
                attr_ints("strides", dims(&[sh, sw])),
            ],
        );
        self.annotate(index, name);
        let value = Value {
            name: out,
            shape: Shape::Image {
                channels: out_channels,
                rows: out_rows,
                cols: out_cols,
            },
        };
        let value = self.fused(value, activation, index, name)?;
        self.set_output(op.outputs[0], value, index, name)
    }

    /// The `PRelu` of the pattern whose `ADD` is at `index`.
    fn prelu(&mut self, index: usize, pattern: &PReluPattern) -> Result<(), TranslateError> {
        let op = &self.graph.operators[index];
        let x = self.values[pattern.input].clone().ok_or_else(|| {
            op_error(
                index,
                "ADD",
                format!(
                    "the PReLU input {:?} is not computed before this operator",
                    self.tensor(pattern.input).name
                ),
            )
        })?;
        let channels = match x.shape {
            Shape::Image { channels, .. } => channels,
            Shape::Flat { .. } => 0,
        };
        if channels != pattern.slope.len() {
            return Err(op_error(
                index,
                "ADD",
                format!(
                    "PReLU input is {:?}, slope has {} channels",
                    x.shape,
                    pattern.slope.len()
                ),
            ));
        }
        let name = self.b.peek_name("PRelu");
        let slope =
            self.b
                .f32_initializer(format!("{name}.slope"), &[channels, 1, 1], &pattern.slope);
        let out = self.b.node("PRelu", vec![x.name, slope], vec![]);
        self.annotate(index, "PReLU pattern ending in ADD");
        let value = Value {
            name: out,
            shape: x.shape,
        };
        self.set_output(op.outputs[0], value, index, "ADD")
    }

    /// An `ADD` of two activations of the same shape (a residual connection).
    fn add(&mut self, index: usize, op: &Operator) -> Result<(), TranslateError> {
        let name = "ADD";
        self.check_operator(index, op, name, 2..=2)?;
        let activation = match &op.options {
            BuiltinOptions::None => Activation::None,
            BuiltinOptions::Add(a) => *a,
            other => return Err(op_error(index, name, format!("options {other:?}"))),
        };
        let a = self.value(op.inputs[0], index, name)?;
        let b = self.value(op.inputs[1], index, name)?;
        if a.shape != b.shape {
            return Err(TranslateError::Unsupported {
                index,
                op: name.to_owned(),
                detail: format!("broadcasting {:?} and {:?}", a.shape, b.shape),
            });
        }
        let out = self.b.node("Add", vec![a.name, b.name], vec![]);
        self.annotate(index, name);
        let value = Value {
            name: out,
            shape: a.shape,
        };
        let value = self.fused(value, activation, index, name)?;
        self.set_output(op.outputs[0], value, index, name)
    }

    /// A `RESHAPE` of `[B, H, W, C]` with `H·W = 1` or `C = 1` to `[B, H·W·C]`: the same
    /// order in NHWC and NCHW, so an ONNX `Flatten`.
    fn reshape(&mut self, index: usize, op: &Operator) -> Result<(), TranslateError> {
        let name = "RESHAPE";
        self.check_operator(index, op, name, 1..=2)?;
        let invalid = |detail: String| op_error(index, name, detail);
        let x = self.value(op.inputs[0], index, name)?;
        let target: Vec<i32> = match (op.inputs.get(1), &op.options) {
            (Some(&t), _) if t != -1 => {
                let i = self.tensor_index(t, index, name)?;
                let tensor = self.tensor(i);
                let data = self
                    .constant_data(tensor)
                    .filter(|_| tensor.tensor_type == tflite::TENSOR_INT32)
                    .ok_or_else(|| {
                        invalid(format!(
                            "new shape {:?} is not an int32 constant",
                            tensor.name
                        ))
                    })?;
                data.chunks_exact(4)
                    .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            }
            (_, BuiltinOptions::Reshape(shape)) => shape.clone(),
            _ => return Err(invalid("no new shape".to_owned())),
        };
        let Shape::Image {
            channels,
            rows,
            cols,
        } = x.shape
        else {
            return Err(TranslateError::Unsupported {
                index,
                op: name.to_owned(),
                detail: format!("reshaping {:?}", x.shape),
            });
        };
        let len = channels * rows * cols;
        let len_i32 = i32::try_from(len).unwrap_or(-1);
        let flat = matches!(target.as_slice(), &[b, l]
            if (b == self.batch || b == -1) && (l == len_i32 || (l == -1 && b != -1)));
        if !flat {
            return Err(TranslateError::Unsupported {
                index,
                op: name.to_owned(),
                detail: format!(
                    "reshaping {:?} to {target:?} (only [batch, {len}] is)",
                    self.tflite_shape(x.shape)
                ),
            });
        }
        if channels > 1 && rows * cols > 1 {
            return Err(TranslateError::Unsupported {
                index,
                op: name.to_owned(),
                detail: format!(
                    "flattening {:?}: NHWC and NCHW order differ",
                    self.tflite_shape(x.shape)
                ),
            });
        }
        let out = self
            .b
            .node("Flatten", vec![x.name], vec![attr_int("axis", 1)]);
        self.annotate(index, name);
        let value = Value {
            name: out,
            shape: Shape::Flat { len },
        };
        self.set_output(op.outputs[0], value, index, name)
    }

    fn translate(&mut self) -> Result<(), TranslateError> {
        self.find_prelus()?;
        let graph = self.graph;
        for (index, op) in graph.operators.iter().enumerate() {
            let name = self.op_name(index, op)?;
            if let Some(pattern) = self.prelus.get(&index).cloned() {
                self.prelu(index, &pattern)?;
                continue;
            }
            if self.in_prelu[index] {
                continue;
            }
            match self.op_code(op) {
                builtin::CONV_2D | builtin::DEPTHWISE_CONV_2D => self.conv(index, op, &name)?,
                builtin::ADD => self.add(index, op)?,
                builtin::RESHAPE => self.reshape(index, op)?,
                builtin::ABS | builtin::SUB | builtin::MUL => {
                    return Err(TranslateError::NotPRelu {
                        index,
                        op: name,
                        detail: "no RELU starts a pattern that includes it".to_owned(),
                    });
                }
                _ => return Err(TranslateError::UnsupportedOp { index, op: name }),
            }
        }
        Ok(())
    }
}

/// `shape` as sizes, if every dimension is positive.
fn positive_dims(shape: &[i32]) -> Option<Vec<usize>> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).ok().filter(|&d| d > 0))
        .collect()
}

/// Builds the ONNX model for a MobileFaceNet TFLite `model`: input `input` (`float32
/// [N, 3, 112, 112]` NCHW, RGB, already normalised as `(pixel - 127.5) / 128`) and output
/// `embedding` (`float32 [N, 192]`, not normalised).
pub fn build_model(model: &Model, provenance: &Provenance) -> Result<ModelProto, TranslateError> {
    let mut t = Translator::new(model)?;
    t.translate()?;
    let output_tensor = t.tensor(t.output);
    let Some(output) = t.values[t.output].clone() else {
        return Err(TranslateError::Model(format!(
            "output {:?} is not computed by any operator",
            output_tensor.name
        )));
    };
    let Shape::Flat { len } = output.shape else {
        return Err(TranslateError::Model(format!(
            "output {:?} is {:?}, not [batch, features]",
            output_tensor.name, output_tensor.shape
        )));
    };
    // The input's shape as `new` recorded it (its value is never replaced).
    let input_shape = t.values[t.input].as_ref().map(|v| v.shape);
    let Some(
        input_shape @ Shape::Image {
            channels,
            rows,
            cols,
        },
    ) = input_shape
    else {
        return Err(TranslateError::Model(format!("input is {input_shape:?}")));
    };
    let doc_string = format!(
        "MobileFaceNet (sirius-ai/MobileFaceNet_TF), translated from TFLite. Input: face chip \
         aligned to the ArcFace 112x112 five-point template, float32 [N, {channels}, {rows}, \
         {cols}] NCHW, RGB, normalised as (pixel - 127.5) / 128 by the caller. Output: the \
         raw (not normalised) {len}-d embedding; compare L2-normalised embeddings by \
         Euclidean distance."
    );
    Ok(t.b.finish(ModelInfo {
        graph_name: GRAPH_NAME,
        doc_string,
        input_shape,
        output: &output,
        producer_version: OUTPUT_FORMAT_VERSION,
        metadata: vec![
            ("source", provenance.source_name.clone()),
            ("source_sha256", provenance.source_sha256.clone()),
        ],
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::graph::op_counts;
    use crate::tflite::parse_model;
    use crate::tflite::write::{self, Op};

    fn ramp(n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 - n as f32 / 2.0) * scale)
            .collect()
    }

    /// The tensors and operators of a small network with every translated construct:
    /// CONV_2D (SAME, stride 2, odd padding), a PReLU pattern, DEPTHWISE_CONV_2D, a residual
    /// ADD, CONV_2D (VALID) to a 1x1 output and the final RESHAPE; input tensor 0, output 18.
    fn parts() -> (Vec<write::Tensor>, Vec<Op>) {
        let a = write::activation;
        let tensors = vec![
            a("input", &[1, 6, 6, 2]),
            write::constant("conv_w", &[4, 3, 3, 2], &ramp(72, 0.01)),
            write::constant("conv_b", &[4], &[0.1, -0.2, 0.3, -0.4]),
            a("conv", &[1, 3, 3, 4]),
            a("relu", &[1, 3, 3, 4]),
            a("abs", &[1, 3, 3, 4]),
            a("sub", &[1, 3, 3, 4]),
            write::constant("m", &[4], &[0.125, -0.25, 0.5, 1.5]),
            a("mul", &[1, 3, 3, 4]),
            a("prelu", &[1, 3, 3, 4]),
            write::constant("dw_w", &[1, 3, 3, 4], &ramp(36, 0.02)),
            write::constant("dw_b", &[4], &[0.0, 0.5, 0.0, -0.5]),
            a("dw", &[1, 3, 3, 4]),
            a("residual", &[1, 3, 3, 4]),
            write::constant("conv2_w", &[8, 3, 3, 4], &ramp(288, 0.003)),
            write::constant("conv2_b", &[8], &[0.0; 8]),
            a("conv2", &[1, 1, 1, 8]),
            write::int_constant("shape", &[1, 8]),
            a("out", &[1, 8]),
        ];
        let op = |code, inputs: &[i32], outputs: &[i32], options| Op {
            code,
            inputs: inputs.to_vec(),
            outputs: outputs.to_vec(),
            options,
        };
        let ops = vec![
            op(
                builtin::CONV_2D,
                &[0, 1, 2],
                &[3],
                Some(write::conv_options(0, 2, 0)),
            ),
            op(builtin::RELU, &[3], &[4], None),
            op(builtin::ABS, &[3], &[5], None),
            op(
                builtin::SUB,
                &[3, 5],
                &[6],
                Some(write::elementwise_options(builtin::SUB, 0)),
            ),
            op(
                builtin::MUL,
                &[7, 6],
                &[8],
                Some(write::elementwise_options(builtin::MUL, 0)),
            ),
            op(
                builtin::ADD,
                &[4, 8],
                &[9],
                Some(write::elementwise_options(builtin::ADD, 0)),
            ),
            op(
                builtin::DEPTHWISE_CONV_2D,
                &[9, 10, 11],
                &[12],
                Some(write::depthwise_options(0, 1, 1)),
            ),
            op(builtin::ADD, &[9, 12], &[13], None),
            op(
                builtin::CONV_2D,
                &[13, 14, 15],
                &[16],
                Some(write::conv_options(1, 1, 0)),
            ),
            op(builtin::RESHAPE, &[16, 17], &[18], None),
        ];
        (tensors, ops)
    }

    /// The network of [`parts`], changed by `edit`, as a file.
    fn network(edit: impl FnOnce(&mut Vec<write::Tensor>, &mut Vec<Op>)) -> Vec<u8> {
        let (mut tensors, mut ops) = parts();
        edit(&mut tensors, &mut ops);
        write::model(tensors, ops, &[0], &[18])
    }

    fn translate(file: &[u8]) -> Result<ModelProto, TranslateError> {
        build_model(&parse_model(file).unwrap(), &Provenance::default())
    }

    fn initializer(model: &ModelProto, name: &str) -> (Vec<i64>, Vec<f32>) {
        let t = model
            .graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no initializer {name}"));
        let values = t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (t.dims.clone(), values)
    }

    fn ints(model: &ModelProto, node: &str, attr: &str) -> Vec<i64> {
        let g = model.graph.as_ref().unwrap();
        let node = g.node.iter().find(|n| n.name == node).unwrap();
        let a = node.attribute.iter().find(|a| a.name == attr).unwrap();
        if a.ints.is_empty() {
            vec![a.i]
        } else {
            a.ints.clone()
        }
    }

    #[test]
    fn tensorflow_padding() {
        // (size, kernel, stride, dilation) -> (output, before, after)
        assert_eq!(window(112, 3, 2, 1, Padding::Same), Some((56, 0, 1)));
        assert_eq!(window(56, 3, 1, 1, Padding::Same), Some((56, 1, 1)));
        assert_eq!(window(6, 3, 2, 1, Padding::Same), Some((3, 0, 1)));
        assert_eq!(window(5, 3, 2, 1, Padding::Same), Some((3, 1, 1)));
        assert_eq!(window(6, 1, 2, 1, Padding::Same), Some((3, 0, 0)));
        assert_eq!(window(7, 3, 1, 2, Padding::Same), Some((7, 2, 2)));
        assert_eq!(window(7, 7, 1, 1, Padding::Valid), Some((1, 0, 0)));
        assert_eq!(window(8, 3, 2, 1, Padding::Valid), Some((3, 0, 0)));
        assert_eq!(window(2, 3, 1, 1, Padding::Valid), None);
        assert_eq!(window(2, 3, 0, 1, Padding::Same), None);
    }

    #[test]
    fn translates_a_small_network() {
        let model = translate(&network(|_, _| {})).unwrap();
        let counts: Vec<(String, usize)> = op_counts(&model).into_iter().collect();
        let expected = [("Add", 1), ("Conv", 3), ("Flatten", 1), ("PRelu", 1)]
            .map(|(op, n)| (op.to_owned(), n));
        assert_eq!(counts, expected);
        let g = model.graph.as_ref().unwrap();
        let order: Vec<&str> = g.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            order,
            [
                "Conv_0",
                "PRelu_0",
                "Conv_1",
                "Add_0",
                "Conv_2",
                "Flatten_0"
            ]
        );
        assert_eq!(g.node[5].output, [crate::graph::OUTPUT_NAME]);
        assert_eq!(g.node[1].input, ["Conv_0", "PRelu_0.slope"]);
        assert_eq!(g.node[3].input, ["PRelu_0", "Conv_1"]);

        // SAME on 6 pixels with a 3x3 stride-2 kernel: 0 before, 1 after.
        assert_eq!(ints(&model, "Conv_0", "pads"), [0, 0, 1, 1]);
        assert_eq!(ints(&model, "Conv_0", "group"), [1]);
        assert_eq!(ints(&model, "Conv_1", "pads"), [1, 1, 1, 1]);
        assert_eq!(ints(&model, "Conv_1", "group"), [4]);
        assert_eq!(ints(&model, "Conv_2", "pads"), [0, 0, 0, 0]);

        // CONV_2D [O, H, W, I] -> [O, I, H, W]: element (o, i, h, w) was (o, h, w, i).
        let tflite = ramp(72, 0.01);
        let (dims, w) = initializer(&model, "Conv_0.weight");
        assert_eq!(dims, [4, 2, 3, 3]);
        for (o, i, h, x) in [(0, 0, 0, 0), (1, 1, 2, 0), (3, 1, 1, 2), (2, 0, 2, 2)] {
            assert_eq!(
                w[((o * 2 + i) * 3 + h) * 3 + x],
                tflite[((o * 3 + h) * 3 + x) * 2 + i]
            );
        }
        // DEPTHWISE [1, H, W, C] -> [C, 1, H, W].
        let tflite = ramp(36, 0.02);
        let (dims, w) = initializer(&model, "Conv_1.weight");
        assert_eq!(dims, [4, 1, 3, 3]);
        for (c, h, x) in [(0, 0, 0), (1, 2, 1), (3, 1, 2)] {
            assert_eq!(w[(c * 3 + h) * 3 + x], tflite[(h * 3 + x) * 4 + c]);
        }
        assert_eq!(
            initializer(&model, "PRelu_0.slope"),
            (vec![4, 1, 1], vec![0.25, -0.5, 1.0, 3.0])
        );
        assert_eq!(initializer(&model, "Conv_0.bias").1, [0.1, -0.2, 0.3, -0.4]);

        // The same input gives the same bytes.
        let again = translate(&network(|_, _| {})).unwrap();
        assert!(prost::Message::encode_to_vec(&model) == prost::Message::encode_to_vec(&again));
    }

    fn not_prelu(
        edit: impl FnOnce(&mut Vec<write::Tensor>, &mut Vec<Op>),
    ) -> (usize, String, String) {
        match translate(&network(edit)) {
            Err(TranslateError::NotPRelu { index, op, detail }) => (index, op, detail),
            other => panic!("expected NotPRelu, got {other:?}"),
        }
    }

    #[test]
    fn the_prelu_pattern_is_checked_strictly() {
        // |x| - x instead of x - |x|.
        let (index, op, detail) = not_prelu(|_, ops| ops[3].inputs = vec![5, 3]);
        assert_eq!((index, op.as_str()), (1, "RELU"));
        assert!(detail.contains("not x - |x|"), "{detail}");
        // A per-tensor constant instead of one per channel.
        let (_, _, detail) = not_prelu(|t, _| t[7] = write::constant("m", &[1], &[0.25]));
        assert!(detail.contains("per-channel"), "{detail}");
        // The constant on both sides, or none.
        let (_, _, detail) = not_prelu(|_, ops| ops[4].inputs = vec![7, 7]);
        assert!(
            detail.contains("one constant and one activation"),
            "{detail}"
        );
        // The relu output read a second time.
        let (_, _, detail) = not_prelu(|_, ops| ops[7].inputs = vec![4, 12]);
        assert!(detail.contains("not by one"), "{detail}");
        // ABS of another tensor.
        let (_, _, detail) = not_prelu(|_, ops| ops[2].inputs = vec![0]);
        assert!(detail.contains("ABS"), "{detail}");
        // A fused activation on the final ADD.
        let (_, _, detail) = not_prelu(|_, ops| {
            ops[5].options = Some(write::elementwise_options(builtin::ADD, 1));
        });
        assert!(detail.contains("the ADD has options"), "{detail}");
        // The RELU output added to something else.
        let (_, _, detail) = not_prelu(|_, ops| ops[5].inputs = vec![4, 3]);
        assert!(detail.contains("not MUL"), "{detail}");
        // An ABS, SUB or MUL on its own (no RELU): named at its own index.
        let (index, op, _) = not_prelu(|_, ops| {
            ops[1].code = builtin::ABS;
            ops[1].options = None;
        });
        assert_eq!((index, op.as_str()), (1, "ABS"));
    }

    #[test]
    fn unsupported_operators_types_and_options_are_named() {
        let err = translate(&network(|_, ops| ops[6].code = 1)).unwrap_err();
        assert_eq!(
            err,
            TranslateError::UnsupportedOp {
                index: 6,
                op: "AVERAGE_POOL_2D".to_owned()
            }
        );
        assert_eq!(
            err.to_string(),
            "operator 6 (AVERAGE_POOL_2D) is not supported"
        );
        // A fused activation that has no ONNX counterpart here.
        let err = translate(&network(|_, ops| {
            ops[8].options = Some(write::conv_options(1, 1, 5));
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { index: 8, detail, .. }
                if detail.contains("SIGN_BIT")),
            "{err}"
        );
        // Supported fused activations become nodes of their own.
        let model = translate(&network(|_, ops| {
            ops[0].options = Some(write::conv_options(0, 2, 3));
            ops[8].options = Some(write::conv_options(1, 1, 1));
        }))
        .unwrap();
        let counts = op_counts(&model);
        assert_eq!((counts["Clip"], counts["Relu"]), (1, 1));
        // An int8 input.
        let err = translate(&network(|t, _| t[0].tensor_type = 9)).unwrap_err();
        assert!(
            matches!(&err, TranslateError::Model(m) if m.contains("INT8")),
            "{err}"
        );
        // A grouped (not depthwise) convolution.
        let err = translate(&network(|t, _| {
            t[14] = write::constant("conv2_w", &[8, 3, 3, 2], &ramp(144, 0.003));
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { index: 8, detail, .. }
                if detail.contains("grouped")),
            "{err}"
        );
        // A reshape that is not a flatten of [B, 1, 1, C].
        let err = translate(&network(|t, ops| {
            t[17] = write::int_constant("shape", &[1, 2, 4]);
            t[18] = write::activation("out", &[1, 2, 4]);
            ops[9].inputs = vec![16, 17];
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { index: 9, op, .. } if op == "RESHAPE"),
            "{err}"
        );
        // A float16 constant.
        let err = translate(&network(|t, _| t[2].tensor_type = 1)).unwrap_err();
        assert!(
            matches!(&err, TranslateError::Unsupported { index: 0, detail, .. }
                if detail.contains("FLOAT16")),
            "{err}"
        );
    }

    #[test]
    fn inconsistent_graphs_are_invalid() {
        // A declared output shape that the operator does not produce.
        let err = translate(&network(|t, _| {
            t[3] = write::activation("conv", &[1, 2, 2, 4]);
        }))
        .unwrap_err();
        assert!(
            matches!(
                &err,
                TranslateError::NotPRelu { .. } | TranslateError::Invalid { .. }
            ),
            "{err}"
        );
        let err = translate(&network(|t, _| {
            t[12] = write::activation("dw", &[1, 3, 3, 5])
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Invalid { index: 6, detail, .. }
                if detail.contains("declared")),
            "{err}"
        );
        // Weights of the wrong size.
        let err = translate(&network(|t, _| {
            t[15].data.as_mut().unwrap().truncate(12);
        }))
        .unwrap_err();
        assert!(
            matches!(&err, TranslateError::Invalid { index: 8, detail, .. }
                if detail.contains("bytes of data")),
            "{err}"
        );
        // A tensor index out of range.
        let err = translate(&network(|_, ops| ops[7].inputs = vec![9, 99])).unwrap_err();
        assert!(
            matches!(&err, TranslateError::Invalid { index: 7, detail, .. }
                if detail.contains("tensor index 99")),
            "{err}"
        );
        // A value read before it is computed (operators out of order).
        let err = translate(&network(|_, ops| ops.swap(6, 7))).unwrap_err();
        assert!(
            matches!(&err, TranslateError::Invalid { index: 6, detail, .. }
                if detail.contains("not computed")),
            "{err}"
        );
        // Two outputs.
        let (tensors, ops) = parts();
        let file = write::model(tensors, ops, &[0], &[18, 16]);
        assert!(matches!(translate(&file), Err(TranslateError::Model(_))));
    }
}
