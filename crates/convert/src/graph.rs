//! Builds ONNX graphs. The parts both conversions share live here (a crate-internal builder
//! that adds nodes and initializers under fixed names, and the assembly of the model with its
//! IR and operator-set versions, producer, metadata and symbolic batch dimension), together
//! with the graph of a parsed dlib network ([`build_model`]); [`crate::mobilefacenet`] builds
//! the other.
//!
//! For dlib, the builder follows the network from the input outward, tracking every value's
//! shape so that `add_prev` can zero-pad the smaller operand the way dlib does. Each `con`
//! directly followed by an `affine` becomes one `Conv` with the affine folded into its
//! weights and bias (in `f32`, one multiply and one add per value, so the result is the same
//! on every machine). Names are fixed (`Conv_0`, `Conv_0.weight`, ...), so the same network
//! always gives the same bytes.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::dlib::{Affine, Conv, Element, Fc, Layer, Network, Pool};
use crate::onnx::{
    AttributeProto, AttributeType, DATA_TYPE_FLOAT, DATA_TYPE_INT64, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

/// The ONNX operator set the graph uses.
pub const OPSET_VERSION: i64 = 13;
/// The ONNX IR version matching [`OPSET_VERSION`].
pub const IR_VERSION: i64 = 7;
/// Name of the graph input.
pub const INPUT_NAME: &str = "input";
/// Name of the graph output.
pub const OUTPUT_NAME: &str = "embedding";
/// Name of the symbolic batch dimension.
pub const BATCH_DIM: &str = "N";
/// The `producer_name` written into the model.
pub const PRODUCER_NAME: &str = "facerec-convert";
/// Version of the graph this converter writes, recorded as `producer_version`. Bump it only
/// when the output bytes change, so the crate version can move without changing the model.
const OUTPUT_FORMAT_VERSION: &str = "2";

/// Why a parsed network cannot be expressed as an ONNX graph.
#[derive(Debug, Error, PartialEq)]
pub enum GraphError {
    /// A layer does not fit the shape of its input.
    #[error("layer {index} ({kind}): {detail}")]
    Shape {
        /// Index of the element, input side first.
        index: usize,
        /// The layer kind.
        kind: &'static str,
        /// What does not fit.
        detail: String,
    },
    /// A layer or configuration the converter does not translate.
    #[error("layer {index} ({kind}) is not supported: {detail}")]
    Unsupported {
        /// Index of the element, input side first.
        index: usize,
        /// The layer kind.
        kind: &'static str,
        /// Why.
        detail: String,
    },
    /// The network has no layers.
    #[error("the network has no layers")]
    Empty,
}

/// The shape of a value per sample (the batch dimension comes first in ONNX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `[N, channels, rows, cols]`.
    Image {
        /// Channels.
        channels: usize,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// `[N, len]`.
    Flat {
        /// Values per sample.
        len: usize,
    },
}

/// A value in the graph being built: its name and its per-sample shape.
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub(crate) name: String,
    pub(crate) shape: Shape,
}

/// Collects nodes and initializers under fixed names (`Conv_0`, `Conv_0.weight`, ...), in
/// the order they are added, so the same input always gives the same graph.
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    next_index: BTreeMap<&'static str, usize>,
}

/// Everything about a model besides its nodes and initializers.
pub(crate) struct ModelInfo<'a> {
    /// `GraphProto.name`.
    pub(crate) graph_name: &'a str,
    /// `GraphProto.doc_string`.
    pub(crate) doc_string: String,
    /// Shape of the graph input [`INPUT_NAME`].
    pub(crate) input_shape: Shape,
    /// The value that becomes the graph output [`OUTPUT_NAME`].
    pub(crate) output: &'a Value,
    /// `ModelProto.producer_version`: the version of this conversion's output format.
    pub(crate) producer_version: &'a str,
    /// `ModelProto.metadata_props`, in order.
    pub(crate) metadata: Vec<(&'static str, String)>,
}

pub(crate) fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Ints as i32,
        ints,
        ..Default::default()
    }
}

pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_owned(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

pub(crate) fn dims(values: &[usize]) -> Vec<i64> {
    values.iter().map(|&d| d as i64).collect()
}

impl Builder {
    /// Adds a node named `{op}_{n}` whose single output has the same name.
    pub(crate) fn node(
        &mut self,
        op: &'static str,
        inputs: Vec<String>,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let n = self.next_index.entry(op).or_insert(0);
        let name = format!("{op}_{n}");
        *n += 1;
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![name.clone()],
            name: name.clone(),
            op_type: op.to_owned(),
            attribute: attrs,
            ..Default::default()
        });
        name
    }

    /// The name the next node of kind `op` will get.
    pub(crate) fn peek_name(&self, op: &'static str) -> String {
        format!("{op}_{}", self.next_index.get(op).copied().unwrap_or(0))
    }

    pub(crate) fn f32_initializer(
        &mut self,
        name: String,
        shape: &[usize],
        data: &[f32],
    ) -> String {
        self.initializers.push(TensorProto {
            dims: dims(shape),
            data_type: DATA_TYPE_FLOAT,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    pub(crate) fn i64_initializer(
        &mut self,
        name: String,
        shape: &[usize],
        data: &[i64],
    ) -> String {
        self.initializers.push(TensorProto {
            dims: dims(shape),
            data_type: DATA_TYPE_INT64,
            name: name.clone(),
            raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        });
        name
    }

    /// Renames `info.output` to [`OUTPUT_NAME`] and assembles the model: IR
    /// [`IR_VERSION`], operator set [`OPSET_VERSION`], producer [`PRODUCER_NAME`], the
    /// symbolic batch dimension [`BATCH_DIM`] first in the input's and the output's shape.
    pub(crate) fn finish(mut self, info: ModelInfo<'_>) -> ModelProto {
        for node in &mut self.nodes {
            for value in node.input.iter_mut().chain(&mut node.output) {
                if *value == info.output.name {
                    OUTPUT_NAME.clone_into(value);
                }
            }
        }
        let graph = GraphProto {
            node: self.nodes,
            name: info.graph_name.to_owned(),
            initializer: self.initializers,
            doc_string: info.doc_string,
            input: vec![tensor_value_info(INPUT_NAME, shape_dims(info.input_shape))],
            output: vec![tensor_value_info(
                OUTPUT_NAME,
                shape_dims(info.output.shape),
            )],
            value_info: vec![],
        };
        ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET_VERSION,
            }],
            producer_name: PRODUCER_NAME.to_owned(),
            producer_version: info.producer_version.to_owned(),
            domain: String::new(),
            model_version: 1,
            doc_string: String::new(),
            graph: Some(graph),
            metadata_props: info
                .metadata
                .into_iter()
                .map(|(key, value)| StringStringEntryProto {
                    key: key.to_owned(),
                    value,
                })
                .collect(),
        }
    }

    fn input_normalization(&mut self, mean: [f32; 3]) -> String {
        let mean = self.f32_initializer("input_mean".to_owned(), &[1, 3, 1, 1], &mean);
        let centred = self.node("Sub", vec![INPUT_NAME.to_owned(), mean], vec![]);
        let scale = self.f32_initializer("input_scale".to_owned(), &[], &[1.0 / 256.0]);
        self.node("Mul", vec![centred, scale], vec![])
    }

    fn conv(
        &mut self,
        index: usize,
        input: &Value,
        conv: &Conv,
        affine: Option<&Affine>,
    ) -> Result<Value, GraphError> {
        let shape_err = |detail: String| GraphError::Shape {
            index,
            kind: "con",
            detail,
        };
        let Shape::Image {
            channels,
            rows,
            cols,
        } = input.shape
        else {
            return Err(shape_err(format!("input is {:?}", input.shape)));
        };
        if channels != conv.channels {
            return Err(shape_err(format!(
                "filters expect {} channels, input has {channels}",
                conv.channels
            )));
        }
        let out_rows = window_output(rows, conv.kernel[0], conv.stride[0], conv.pad[0])
            .ok_or_else(|| shape_err(format!("kernel {:?} > input {rows}x{cols}", conv.kernel)))?;
        let out_cols = window_output(cols, conv.kernel[1], conv.stride[1], conv.pad[1])
            .ok_or_else(|| shape_err(format!("kernel {:?} > input {rows}x{cols}", conv.kernel)))?;

        let (weights, biases) = match affine {
            Some(affine) => fold_affine(conv, affine),
            None => (conv.filters.clone(), conv.biases.clone()),
        };
        // A filter that maps a 1x1 input to a 1x1 output multiplies data only with its tap at
        // (pad, pad); every other tap meets zero padding. dlib's last residual block has such
        // a 3x3 filter. Keeping the live tap alone gives the same sums with a ninth of the
        // weights to stream through the cache on every run.
        let (weights, kernel, pad) = if (rows, cols, out_rows, out_cols) == (1, 1, 1, 1)
            && conv.pad[0] < conv.kernel[0]
            && conv.pad[1] < conv.kernel[1]
        {
            (live_tap(conv, &weights), [1, 1], [0, 0])
        } else {
            (weights, conv.kernel, conv.pad)
        };
        let name = self.peek_name("Conv");
        let w = self.f32_initializer(
            format!("{name}.weight"),
            &[conv.num_filters, conv.channels, kernel[0], kernel[1]],
            &weights,
        );
        let b = self.f32_initializer(format!("{name}.bias"), &[conv.num_filters], &biases);
        let out = self.node(
            "Conv",
            vec![input.name.clone(), w, b],
            vec![
                attr_ints("dilations", vec![1, 1]),
                attr_int("group", 1),
                attr_ints("kernel_shape", dims(&kernel)),
                attr_ints("pads", dims(&[pad[0], pad[1], pad[0], pad[1]])),
                attr_ints("strides", dims(&conv.stride)),
            ],
        );
        Ok(Value {
            name: out,
            shape: Shape::Image {
                channels: conv.num_filters,
                rows: out_rows,
                cols: out_cols,
            },
        })
    }

    fn affine(
        &mut self,
        index: usize,
        input: &Value,
        affine: &Affine,
    ) -> Result<Value, GraphError> {
        match input.shape {
            Shape::Image { channels, .. } if channels == affine.gamma.len() => {}
            shape => {
                return Err(GraphError::Shape {
                    index,
                    kind: "affine",
                    detail: format!("{} channels, input is {shape:?}", affine.gamma.len()),
                });
            }
        }
        let c = affine.gamma.len();
        let counter = self.next_index.entry("Affine").or_insert(0);
        let n = *counter;
        *counter += 1;
        let gamma = self.f32_initializer(format!("Affine_{n}.gamma"), &[1, c, 1, 1], &affine.gamma);
        let beta = self.f32_initializer(format!("Affine_{n}.beta"), &[1, c, 1, 1], &affine.beta);
        let scaled = self.node("Mul", vec![input.name.clone(), gamma], vec![]);
        let out = self.node("Add", vec![scaled, beta], vec![]);
        Ok(Value {
            name: out,
            shape: input.shape,
        })
    }

    fn pool(
        &mut self,
        index: usize,
        input: &Value,
        pool: &Pool,
        max: bool,
    ) -> Result<Value, GraphError> {
        let kind = if max { "max_pool" } else { "avg_pool" };
        let Shape::Image {
            channels,
            rows,
            cols,
        } = input.shape
        else {
            return Err(GraphError::Shape {
                index,
                kind,
                detail: format!("input is {:?}", input.shape),
            });
        };
        if !max && pool.pad != [0, 0] {
            return Err(GraphError::Unsupported {
                index,
                kind,
                detail: format!("average pooling with padding {:?}", pool.pad),
            });
        }
        // dlib: a window size of 0 means the whole input along that axis.
        let window = [
            if pool.window[0] == 0 {
                rows
            } else {
                pool.window[0]
            },
            if pool.window[1] == 0 {
                cols
            } else {
                pool.window[1]
            },
        ];
        if pool.stride.contains(&0) {
            return Err(GraphError::Shape {
                index,
                kind,
                detail: "stride 0".to_owned(),
            });
        }
        let out_rows = window_output(rows, window[0], pool.stride[0], pool.pad[0]);
        let out_cols = window_output(cols, window[1], pool.stride[1], pool.pad[1]);
        let (Some(out_rows), Some(out_cols)) = (out_rows, out_cols) else {
            return Err(GraphError::Shape {
                index,
                kind,
                detail: format!("window {window:?} > input {rows}x{cols}"),
            });
        };
        let out = if window == [rows, cols] && pool.pad == [0, 0] {
            let op = if max {
                "GlobalMaxPool"
            } else {
                "GlobalAveragePool"
            };
            self.node(op, vec![input.name.clone()], vec![])
        } else {
            let op = if max { "MaxPool" } else { "AveragePool" };
            self.node(
                op,
                vec![input.name.clone()],
                vec![
                    attr_ints("kernel_shape", dims(&window)),
                    attr_ints(
                        "pads",
                        dims(&[pool.pad[0], pool.pad[1], pool.pad[0], pool.pad[1]]),
                    ),
                    attr_ints("strides", dims(&pool.stride)),
                ],
            )
        };
        Ok(Value {
            name: out,
            shape: Shape::Image {
                channels,
                rows: out_rows,
                cols: out_cols,
            },
        })
    }

    /// dlib's `add_prev`: both operands zero-padded at the end of each axis to the larger
    /// size, then added.
    fn add_prev(&mut self, index: usize, a: &Value, b: &Value) -> Result<Value, GraphError> {
        let (
            Shape::Image {
                channels: ca,
                rows: ra,
                cols: wa,
            },
            Shape::Image {
                channels: cb,
                rows: rb,
                cols: wb,
            },
        ) = (a.shape, b.shape)
        else {
            return Err(GraphError::Shape {
                index,
                kind: "add_prev",
                detail: format!("operands are {:?} and {:?}", a.shape, b.shape),
            });
        };
        let target = [ca.max(cb), ra.max(rb), wa.max(wb)];
        let a = self.pad_to(a, [ca, ra, wa], target);
        let b = self.pad_to(b, [cb, rb, wb], target);
        let out = self.node("Add", vec![a, b], vec![]);
        Ok(Value {
            name: out,
            shape: Shape::Image {
                channels: target[0],
                rows: target[1],
                cols: target[2],
            },
        })
    }

    /// Zero-pads `value` (of per-sample shape `from`) at the end of each axis up to `to`.
    fn pad_to(&mut self, value: &Value, from: [usize; 3], to: [usize; 3]) -> String {
        if from == to {
            return value.name.clone();
        }
        let name = self.peek_name("Pad");
        let pads = [
            0,
            0,
            0,
            0,
            0,
            to[0] - from[0],
            to[1] - from[1],
            to[2] - from[2],
        ];
        let pads = pads.map(|p| p as i64);
        let pads = self.i64_initializer(format!("{name}.pads"), &[8], &pads);
        self.node(
            "Pad",
            vec![value.name.clone(), pads],
            vec![AttributeProto {
                name: "mode".to_owned(),
                r#type: AttributeType::String as i32,
                s: b"constant".to_vec(),
                ..Default::default()
            }],
        )
    }

    fn fc(&mut self, index: usize, input: &Value, fc: &Fc) -> Result<Value, GraphError> {
        let (flat, len) = match input.shape {
            Shape::Image {
                channels,
                rows,
                cols,
            } => {
                let flat = self.node(
                    "Flatten",
                    vec![input.name.clone()],
                    vec![attr_int("axis", 1)],
                );
                (flat, channels * rows * cols)
            }
            Shape::Flat { len } => (input.name.clone(), len),
        };
        if len != fc.num_inputs {
            return Err(GraphError::Shape {
                index,
                kind: "fc",
                detail: format!("{} inputs, input has {len} values", fc.num_inputs),
            });
        }
        let name = self.peek_name("MatMul");
        let w = self.f32_initializer(
            format!("{name}.weight"),
            &[fc.num_inputs, fc.num_outputs],
            &fc.weights,
        );
        let mut out = self.node("MatMul", vec![flat, w], vec![]);
        if let Some(biases) = &fc.biases {
            let b = self.f32_initializer(format!("{name}.bias"), &[fc.num_outputs], biases);
            out = self.node("Add", vec![out, b], vec![]);
        }
        Ok(Value {
            name: out,
            shape: Shape::Flat {
                len: fc.num_outputs,
            },
        })
    }
}

/// Output size of a sliding window, as dlib and ONNX (floor mode) compute it.
fn window_output(size: usize, window: usize, stride: usize, pad: usize) -> Option<usize> {
    let padded = size + 2 * pad;
    (window > 0 && stride > 0 && padded >= window).then(|| (padded - window) / stride + 1)
}

/// The weights of `conv`'s tap at `(pad[0], pad[1])`, laid out `[filters, channels, 1, 1]`.
fn live_tap(conv: &Conv, weights: &[f32]) -> Vec<f32> {
    let [rows, cols] = conv.kernel;
    let at = conv.pad[0] * cols + conv.pad[1];
    weights
        .chunks_exact(rows * cols)
        .map(|taps| taps[at])
        .collect()
}

/// Folds `y = gamma * conv(x) + beta` into the convolution:
/// `W'[o] = W[o] * gamma[o]` and `b'[o] = b[o] * gamma[o] + beta[o]`.
pub fn fold_affine(conv: &Conv, affine: &Affine) -> (Vec<f32>, Vec<f32>) {
    let per_filter = conv.filters.len() / conv.num_filters.max(1);
    let weights = conv
        .filters
        .chunks(per_filter.max(1))
        .zip(&affine.gamma)
        .flat_map(|(filter, &g)| filter.iter().map(move |&w| w * g))
        .collect();
    let biases = conv
        .biases
        .iter()
        .zip(affine.gamma.iter().zip(&affine.beta))
        .map(|(&b, (&g, &beta))| b * g + beta)
        .collect();
    (weights, biases)
}

fn tensor_value_info(
    name: &str,
    dims: Vec<tensor_shape_proto::dimension::Value>,
) -> ValueInfoProto {
    ValueInfoProto {
        name: name.to_owned(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DATA_TYPE_FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .into_iter()
                        .map(|value| tensor_shape_proto::Dimension {
                            value: Some(value),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn shape_dims(shape: Shape) -> Vec<tensor_shape_proto::dimension::Value> {
    use tensor_shape_proto::dimension::Value::{DimParam, DimValue};
    let mut dims = vec![DimParam(BATCH_DIM.to_owned())];
    match shape {
        Shape::Image {
            channels,
            rows,
            cols,
        } => dims.extend([channels, rows, cols].map(|d| DimValue(d as i64))),
        Shape::Flat { len } => dims.push(DimValue(len as i64)),
    }
    dims
}

/// Metadata describing where a model came from, written into `metadata_props`.
#[derive(Debug, Clone, Default)]
pub struct Provenance {
    /// Name of the source file.
    pub source_name: String,
    /// Hex sha256 of the source file.
    pub source_sha256: String,
}

/// Builds the ONNX model for `network`: input `input` (`float32 [N, 3, rows, cols]`, RGB,
/// raw 0..255 pixel values, NCHW) and output `embedding` (`float32 [N, outputs]`).
pub fn build_model(network: &Network, provenance: &Provenance) -> Result<ModelProto, GraphError> {
    let mut b = Builder::default();
    let input_shape = Shape::Image {
        channels: 3,
        rows: network.input.rows,
        cols: network.input.cols,
    };
    let mut current = Value {
        name: b.input_normalization(network.input.mean),
        shape: input_shape,
    };
    // The output of every element, by index, for tags to refer to.
    let mut outputs: Vec<Value> = Vec::with_capacity(network.elements.len());
    let mut elements = network.elements.iter().enumerate().peekable();
    while let Some((index, element)) = elements.next() {
        match element {
            Element::Tag => {}
            Element::Skip { tag } => current = outputs[*tag].clone(),
            Element::Layer(layer) => {
                if matches!(current.shape, Shape::Flat { .. }) && !matches!(layer, Layer::Fc(_)) {
                    return Err(GraphError::Unsupported {
                        index,
                        kind: layer.kind(),
                        detail: "layer after an fc layer".to_owned(),
                    });
                }
                current = match layer {
                    Layer::Conv(conv) => {
                        let affine = match elements.peek() {
                            Some((_, Element::Layer(Layer::Affine(a))))
                                if a.gamma.len() == conv.num_filters =>
                            {
                                Some(a)
                            }
                            _ => None,
                        };
                        let out = b.conv(index, &current, conv, affine)?;
                        if affine.is_some() {
                            // The folded affine's output is the conv's.
                            outputs.push(out.clone());
                            elements.next();
                        }
                        out
                    }
                    Layer::Affine(affine) => b.affine(index, &current, affine)?,
                    Layer::Relu => Value {
                        name: b.node("Relu", vec![current.name.clone()], vec![]),
                        shape: current.shape,
                    },
                    Layer::MaxPool(pool) => b.pool(index, &current, pool, true)?,
                    Layer::AvgPool(pool) => b.pool(index, &current, pool, false)?,
                    Layer::AddPrev { tag } => {
                        let tagged = outputs[*tag].clone();
                        b.add_prev(index, &current, &tagged)?
                    }
                    Layer::Fc(fc) => b.fc(index, &current, fc)?,
                };
            }
        }
        outputs.push(current.clone());
    }
    if b.nodes.len() <= 2 {
        return Err(GraphError::Empty);
    }
    // A network that does not end in `fc` still gets a flat `[N, len]` output.
    if let Shape::Image {
        channels,
        rows,
        cols,
    } = current.shape
    {
        current = Value {
            name: b.node(
                "Flatten",
                vec![current.name.clone()],
                vec![attr_int("axis", 1)],
            ),
            shape: Shape::Flat {
                len: channels * rows * cols,
            },
        };
    }
    let doc_string = format!(
        "dlib face-recognition ResNet. Input: RGB face chip, float32 [N, 3, {rows}, {cols}] \
         NCHW, raw 0..255 pixel values (normalised inside the graph as (x - mean) / 256). \
         Output: the raw (not normalised) embedding; two faces are the same person when \
         the Euclidean distance is below {thresh}.",
        rows = network.input.rows,
        cols = network.input.cols,
        thresh = network.loss.dist_thresh,
    );
    Ok(b.finish(ModelInfo {
        graph_name: "dlib_face_recognition_resnet_model_v1",
        doc_string,
        input_shape,
        output: &current,
        producer_version: OUTPUT_FORMAT_VERSION,
        metadata: vec![
            ("source", provenance.source_name.clone()),
            ("source_sha256", provenance.source_sha256.clone()),
            ("dist_thresh", network.loss.dist_thresh.to_string()),
        ],
    }))
}

/// Counts the graph's nodes by operator, sorted by operator name.
pub fn op_counts(model: &ModelProto) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for node in model.graph.iter().flat_map(|g| &g.node) {
        *counts.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    counts
}

/// Number of float weights in the model's initializers.
pub fn weight_count(model: &ModelProto) -> usize {
    model
        .graph
        .iter()
        .flat_map(|g| &g.initializer)
        .filter(|t| t.data_type == DATA_TYPE_FLOAT)
        .map(|t| t.raw_data.len() / 4)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_match_the_face_model() {
        assert_eq!(window_output(150, 7, 2, 0), Some(72));
        assert_eq!(window_output(72, 3, 2, 0), Some(35));
        assert_eq!(window_output(35, 3, 1, 1), Some(35));
        assert_eq!(window_output(35, 3, 2, 0), Some(17));
        assert_eq!(window_output(8, 3, 2, 0), Some(3));
        assert_eq!(window_output(8, 2, 2, 0), Some(4));
        assert_eq!(window_output(2, 3, 1, 0), None);
    }

    #[test]
    fn folds_affine_per_filter() {
        let conv = Conv {
            num_filters: 2,
            channels: 1,
            kernel: [1, 2],
            stride: [1, 1],
            pad: [0, 0],
            filters: vec![1.0, 2.0, 3.0, 4.0],
            biases: vec![0.5, -1.0],
        };
        let affine = Affine {
            gamma: vec![2.0, -0.5],
            beta: vec![0.25, 1.0],
        };
        let (w, b) = fold_affine(&conv, &affine);
        assert_eq!(w, [2.0, 4.0, -1.5, -2.0]);
        assert_eq!(b, [1.25, 1.5]);
    }

    #[test]
    fn keeps_only_the_tap_that_meets_data() {
        // Two 3x3 filters over two channels, padding 1: on a 1x1 input only the centre
        // tap (index 4 of each 3x3) multiplies data.
        let conv = Conv {
            num_filters: 2,
            channels: 2,
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            filters: (0..36).map(|v| v as f32).collect(),
            biases: vec![0.0, 0.0],
        };
        assert_eq!(live_tap(&conv, &conv.filters), [4.0, 13.0, 22.0, 31.0]);
        let corner = Conv {
            pad: [0, 2],
            ..conv.clone()
        };
        assert_eq!(live_tap(&corner, &corner.filters), [2.0, 11.0, 20.0, 29.0]);
    }
}
