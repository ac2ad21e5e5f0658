//! Reader for dlib's binary serialization of a `dnn` network, limited to the layer kinds and
//! versions that `dlib_face_recognition_resnet_model_v1.dat` uses.
//!
//! dlib writes a network as nested templates: `add_loss_layer<LOSS, add_layer<DETAILS,
//! add_tag_layer<ID, add_layer<...>>>>`. Each wrapper writes its version number and then its
//! subnetwork *before* its own data, so the file holds, in order:
//!
//! 1. the loss layer (version 1 and its details),
//! 2. one version integer per wrapper, outermost first (`add_layer` = 2, `add_tag_layer` and
//!    `add_skip_layer` = 1, the innermost `add_layer` whose subnetwork is the input layer = 3),
//! 3. the input layer,
//! 4. the details and training state of every `add_layer`, innermost (input side) first.
//!
//! Tag and skip wrappers both write only `1` and their subnetwork: the file records neither
//! which of the two a wrapper is nor its tag ID. [`parse_network`] resolves them the way
//! dlib's `residual` and `residual_down` templates nest them
//! (`add_prev1<block<tag1<X>>>` and `add_prev2<avg_pool<skip1<tag2<block<tag1<X>>>>>>`):
//! - a wrapper directly around a tag is a skip; every other wrapper is a tag;
//! - a skip outputs the nearest tag below the tag it wraps (a skip to the tag it wraps
//!   would do nothing);
//! - `add_prev` adds the nearest tag below it, as dlib's lookup of `tagN` walks down the
//!   subnetwork chain.
//!
//! The resulting links are in [`Element::Skip`] and [`Layer::AddPrev`].

use thiserror::Error;

/// Version written by `add_loss_layer`.
const LOSS_LAYER_VERSION: i64 = 1;
/// Version written by `add_layer` whose subnetwork is another layer.
const ADD_LAYER_VERSION: i64 = 2;
/// Version written by `add_tag_layer` and `add_skip_layer`.
const TAG_OR_SKIP_VERSION: i64 = 1;
/// Version written by the innermost `add_layer`, whose subnetwork is the input layer.
const INPUT_ADD_LAYER_VERSION: i64 = 3;
/// Version written by `resizable_tensor`.
const TENSOR_VERSION: i64 = 2;
/// Version written by `alias_tensor`.
const ALIAS_TENSOR_VERSION: i64 = 1;

/// Exponent marking +infinity in dlib's float encoding.
const EXPONENT_INF: i64 = 32000;
/// Exponent marking -infinity in dlib's float encoding.
const EXPONENT_NEG_INF: i64 = 32001;
/// Exponent marking NaN in dlib's float encoding.
const EXPONENT_NAN: i64 = 32002;

/// Why a file could not be read as a dlib network of the supported kind.
#[derive(Debug, Error, PartialEq)]
pub enum ParseError {
    /// The data ended inside a value.
    #[error("unexpected end of data at byte {offset}: needed {needed} more byte(s) for {what}")]
    UnexpectedEof {
        /// Where the value started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
        /// What was being read.
        what: &'static str,
    },
    /// An integer control byte was malformed.
    #[error("bad integer control byte 0x{control:02x} at byte {offset}")]
    BadInteger {
        /// Where the integer started.
        offset: usize,
        /// The control byte.
        control: u8,
    },
    /// An integer does not fit the field it was read for.
    #[error("{what} at byte {offset} is out of range: {value}")]
    OutOfRange {
        /// Where the integer started.
        offset: usize,
        /// The field.
        what: &'static str,
        /// The value read, as text (it may not fit an `i64`).
        value: String,
    },
    /// A float uses dlib's old ASCII encoding, which this reader does not support.
    #[error("float at byte {offset} uses dlib's old ASCII encoding (unsupported)")]
    AsciiFloat {
        /// Where the float started.
        offset: usize,
    },
    /// A bool was neither `'0'` nor `'1'`.
    #[error("bad bool byte 0x{byte:02x} at byte {offset}")]
    BadBool {
        /// Where the bool is.
        offset: usize,
        /// The byte found.
        byte: u8,
    },
    /// A string is not UTF-8.
    #[error("string at byte {offset} is not UTF-8")]
    BadString {
        /// Where the string started.
        offset: usize,
    },
    /// A version number differs from the one this reader supports.
    #[error("{what} at byte {offset} has version {found}, expected {expected}")]
    UnexpectedVersion {
        /// Where the version integer is.
        offset: usize,
        /// What the version belongs to.
        what: &'static str,
        /// The version found.
        found: i64,
        /// The version(s) supported, as text.
        expected: &'static str,
    },
    /// A layer, loss or input name this reader does not support.
    #[error("unsupported {what} `{name}` at byte {offset} (supported: {supported})")]
    Unsupported {
        /// Where the name started.
        offset: usize,
        /// What kind of object is named.
        what: &'static str,
        /// The name found.
        name: String,
        /// The names supported.
        supported: &'static str,
    },
    /// A layer's stored sizes contradict each other or its parameter tensor.
    #[error("inconsistent {layer} layer at byte {offset}: {detail}")]
    Inconsistent {
        /// Where the layer's details started.
        offset: usize,
        /// The layer's serialized name.
        layer: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// Bytes remain after the network.
    #[error("{remaining} unexpected byte(s) after the network at byte {offset}")]
    TrailingBytes {
        /// Where the network ended.
        offset: usize,
        /// How many bytes follow.
        remaining: usize,
    },
    /// A tag/skip wrapper or `add_prev` layer has no tag to refer to.
    #[error("cannot resolve the {what} at layer index {index}: no tag layer below it")]
    Unresolved {
        /// `skip layer` or `add_prev layer`.
        what: &'static str,
        /// Index of the element (input side first).
        index: usize,
    },
}

/// A cursor over dlib-serialized bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    /// The offset of the next byte to read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ParseError> {
        if n > self.remaining() {
            return Err(ParseError::UnexpectedEof {
                offset: self.pos,
                needed: n - self.remaining(),
                what,
            });
        }
        let bytes = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    /// Reads an integer as sign and magnitude: a control byte (bit 7 = negative, low four
    /// bits = byte count 1..=8) and then the magnitude, little-endian.
    fn read_sign_magnitude(&mut self, what: &'static str) -> Result<(bool, u64), ParseError> {
        let offset = self.pos;
        let control = self.take(1, what)?[0];
        let len = usize::from(control & 0x0f);
        if control & 0x70 != 0 || len == 0 || len > 8 {
            return Err(ParseError::BadInteger { offset, control });
        }
        let magnitude = self
            .take(len, what)?
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        Ok((control & 0x80 != 0, magnitude))
    }

    /// Reads a signed integer (dlib's encoding for `char` through `long long`).
    pub fn read_i64(&mut self, what: &'static str) -> Result<i64, ParseError> {
        let offset = self.pos;
        let (negative, magnitude) = self.read_sign_magnitude(what)?;
        let value = if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        };
        value.ok_or_else(|| ParseError::OutOfRange {
            offset,
            what,
            value: format!("{}{magnitude}", if negative { "-" } else { "" }),
        })
    }

    /// Reads a non-negative integer that must fit a `usize` (sizes, strides, paddings).
    pub fn read_usize(&mut self, what: &'static str) -> Result<usize, ParseError> {
        let offset = self.pos;
        let (negative, magnitude) = self.read_sign_magnitude(what)?;
        match usize::try_from(magnitude) {
            Ok(value) if !negative || magnitude == 0 => Ok(value),
            _ => Err(ParseError::OutOfRange {
                offset,
                what,
                value: format!("{}{magnitude}", if negative { "-" } else { "" }),
            }),
        }
    }

    /// Reads a `float` written as an integer mantissa and an integer power-of-two exponent.
    pub fn read_f32(&mut self, what: &'static str) -> Result<f32, ParseError> {
        let offset = self.pos;
        let first = self.take(1, what)?[0];
        self.pos = offset;
        if first & 0x70 != 0 {
            return Err(ParseError::AsciiFloat { offset });
        }
        let mantissa = self.read_i64(what)?;
        let exponent = self.read_i64(what)?;
        Ok(match exponent {
            EXPONENT_INF => f32::INFINITY,
            EXPONENT_NEG_INF => f32::NEG_INFINITY,
            EXPONENT_NAN => f32::NAN,
            // dlib converts the mantissa to float first and then scales it, so round once to
            // f32 here; the scaling is exact in f64, and the final cast rounds only results
            // that are subnormal or out of range in f32.
            _ => ldexp(f64::from(mantissa as f32), exponent) as f32,
        })
    }

    /// Reads a bool, stored as the ASCII byte `'1'` or `'0'`.
    pub fn read_bool(&mut self, what: &'static str) -> Result<bool, ParseError> {
        let offset = self.pos;
        match self.take(1, what)?[0] {
            b'1' => Ok(true),
            b'0' => Ok(false),
            byte => Err(ParseError::BadBool { offset, byte }),
        }
    }

    /// Reads a string: its length as an integer, then its bytes.
    pub fn read_string(&mut self, what: &'static str) -> Result<String, ParseError> {
        let offset = self.pos;
        let len = self.read_usize(what)?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ParseError::BadString { offset })
    }

    fn expect_version(
        &mut self,
        what: &'static str,
        expected: i64,
        expected_text: &'static str,
    ) -> Result<(), ParseError> {
        let offset = self.pos;
        let found = self.read_i64(what)?;
        if found == expected {
            Ok(())
        } else {
            Err(ParseError::UnexpectedVersion {
                offset,
                what,
                found,
                expected: expected_text,
            })
        }
    }

    /// Reads a `resizable_tensor`: version 2, its shape `(n, k, nr, nc)` and then its
    /// elements as raw little-endian IEEE `float32`, row-major.
    pub fn read_tensor(&mut self, what: &'static str) -> Result<Tensor, ParseError> {
        self.expect_version(what, TENSOR_VERSION, "2")?;
        let offset = self.pos;
        let shape = self.read_shape(what)?;
        let len = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(4).map(|_| n))
            .ok_or_else(|| ParseError::OutOfRange {
                offset,
                what,
                value: format!("{shape:?}"),
            })?;
        let bytes = self.take(len * 4, what)?;
        let data = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Tensor { shape, data })
    }

    /// Reads an `alias_tensor`: version 1 and its shape `(n, k, nr, nc)`; it holds no data.
    pub fn read_alias(&mut self, what: &'static str) -> Result<[usize; 4], ParseError> {
        self.expect_version(what, ALIAS_TENSOR_VERSION, "1")?;
        self.read_shape(what)
    }

    fn read_shape(&mut self, what: &'static str) -> Result<[usize; 4], ParseError> {
        Ok([
            self.read_usize(what)?,
            self.read_usize(what)?,
            self.read_usize(what)?,
            self.read_usize(what)?,
        ])
    }
}

/// `value * 2^exponent`, exact while the result is a normal `f64`.
fn ldexp(mut value: f64, mut exponent: i64) -> f64 {
    const STEP: i64 = 1000;
    let up = 2f64.powi(1000);
    let down = 2f64.powi(-1000);
    while exponent > STEP {
        value *= up;
        exponent -= STEP;
    }
    while exponent < -STEP {
        value *= down;
        exponent += STEP;
    }
    // |exponent| <= 1000, so the power of two is a normal f64 and `powi` is exact.
    value * 2f64.powi(exponent as i32)
}

/// A dense `float32` tensor with dlib's 4-d shape `(n, k, nr, nc)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// `(num_samples, k, nr, nc)`.
    pub shape: [usize; 4],
    /// Elements, row-major.
    pub data: Vec<f32>,
}

/// The `loss_metric_` layer: the network is trained so same-person embeddings are within
/// `dist_thresh - margin` and different people beyond `dist_thresh + margin`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLoss {
    /// Training margin around the threshold.
    pub margin: f32,
    /// The same-person distance threshold (0.6 for the face model).
    pub dist_thresh: f32,
}

/// The `input_rgb_image_sized` layer: an RGB image of a fixed size, mapped to
/// `(pixel - mean) / 256` per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct RgbInput {
    /// Per-channel means (red, green, blue) in 0..255 units.
    pub mean: [f32; 3],
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

/// A `con_` layer: 2-d cross-correlation with a bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Output channels.
    pub num_filters: usize,
    /// Input channels.
    pub channels: usize,
    /// Kernel size `(rows, cols)`.
    pub kernel: [usize; 2],
    /// Stride `(y, x)`.
    pub stride: [usize; 2],
    /// Zero padding `(y, x)`, applied on both sides.
    pub pad: [usize; 2],
    /// Weights `[num_filters][channels][rows][cols]` (ONNX's OIHW).
    pub filters: Vec<f32>,
    /// One bias per filter.
    pub biases: Vec<f32>,
}

/// An `affine_` layer in per-channel mode: `y = gamma[c] * x + beta[c]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// Per-channel scale.
    pub gamma: Vec<f32>,
    /// Per-channel shift.
    pub beta: Vec<f32>,
}

/// A `max_pool_` or `avg_pool_` layer.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Window `(rows, cols)`; 0 means the whole input along that axis.
    pub window: [usize; 2],
    /// Stride `(y, x)`.
    pub stride: [usize; 2],
    /// Padding `(y, x)`, applied on both sides.
    pub pad: [usize; 2],
}

/// An `fc_` layer: `y = x W (+ b)` with `x` flattened to `num_inputs` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Fc {
    /// Inputs per sample.
    pub num_inputs: usize,
    /// Outputs per sample.
    pub num_outputs: usize,
    /// Weights `[num_inputs][num_outputs]`.
    pub weights: Vec<f32>,
    /// Biases, if the layer has them.
    pub biases: Option<Vec<f32>>,
}

/// The computation of one `add_layer`.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// `con_4`.
    Conv(Conv),
    /// `affine_`.
    Affine(Affine),
    /// `relu_`.
    Relu,
    /// `max_pool_2`.
    MaxPool(Pool),
    /// `avg_pool_2`.
    AvgPool(Pool),
    /// `add_prev_`: adds the output of the tag layer at element index `tag` to this
    /// layer's input; each operand is zero-padded at the end of every axis to the larger size.
    AddPrev {
        /// Index into [`Network::elements`] of the tag layer whose output is added.
        tag: usize,
    },
    /// `fc_2`.
    Fc(Fc),
}

impl Layer {
    /// A short name for the layer kind, as used in counts.
    pub fn kind(&self) -> &'static str {
        match self {
            Layer::Conv(_) => "con",
            Layer::Affine(_) => "affine",
            Layer::Relu => "relu",
            Layer::MaxPool(_) => "max_pool",
            Layer::AvgPool(_) => "avg_pool",
            Layer::AddPrev { .. } => "add_prev",
            Layer::Fc(_) => "fc",
        }
    }

    /// Number of learned parameters dlib stores for this layer.
    pub fn parameter_count(&self) -> usize {
        match self {
            Layer::Conv(c) => c.filters.len() + c.biases.len(),
            Layer::Affine(a) => a.gamma.len() + a.beta.len(),
            Layer::Fc(f) => f.weights.len() + f.biases.as_ref().map_or(0, Vec::len),
            Layer::Relu | Layer::MaxPool(_) | Layer::AvgPool(_) | Layer::AddPrev { .. } => 0,
        }
    }
}

/// One wrapper in the network, input side first.
#[derive(Debug, Clone, PartialEq)]
pub enum Element {
    /// An `add_layer`.
    Layer(Layer),
    /// An `add_tag_layer`: passes its input through and marks it for later reference.
    Tag,
    /// An `add_skip_layer`: discards its input and outputs the output of the tag layer at
    /// element index `tag`.
    Skip {
        /// Index into [`Network::elements`] of the tag layer.
        tag: usize,
    },
}

/// A parsed dlib network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The loss layer.
    pub loss: MetricLoss,
    /// The input layer.
    pub input: RgbInput,
    /// The layers and tag/skip wrappers, input side first.
    pub elements: Vec<Element>,
}

impl Network {
    /// Total number of learned parameters, as stored by dlib.
    pub fn parameter_count(&self) -> usize {
        self.layers().map(Layer::parameter_count).sum()
    }

    /// The layers, input side first, without the tag and skip wrappers.
    pub fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.elements.iter().filter_map(|e| match e {
            Element::Layer(l) => Some(l),
            Element::Tag | Element::Skip { .. } => None,
        })
    }

    /// Counts of layer kinds and wrappers, in a fixed order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = [
            "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip",
        ]
        .iter()
        .map(|&k| (k, 0))
        .collect();
        for element in &self.elements {
            let kind = match element {
                Element::Layer(l) => l.kind(),
                Element::Tag => "tag",
                Element::Skip { .. } => "skip",
            };
            if let Some(entry) = counts.iter_mut().find(|(k, _)| *k == kind) {
                entry.1 += 1;
            }
        }
        counts
    }
}

/// A wrapper as read from the file, before tags and skips are told apart.
#[derive(Debug)]
enum RawElement {
    Layer(RawLayer),
    TagOrSkip,
}

/// A layer as read from the file, before `add_prev` is linked to its tag.
#[derive(Debug)]
enum RawLayer {
    Layer(Layer),
    AddPrev,
}

/// Parses a whole `.dat` file holding a `loss_metric` network over `input_rgb_image_sized`.
/// Every byte must be consumed.
pub fn parse_network(data: &[u8]) -> Result<Network, ParseError> {
    let mut r = Reader::new(data);
    r.expect_version("add_loss_layer", LOSS_LAYER_VERSION, "1")?;
    let loss = read_loss(&mut r)?;

    // Version integers, outermost wrapper first, down to the layer over the input.
    let mut wrappers = Vec::new();
    loop {
        let offset = r.position();
        match r.read_i64("layer version")? {
            ADD_LAYER_VERSION => wrappers.push(true),
            TAG_OR_SKIP_VERSION => wrappers.push(false),
            INPUT_ADD_LAYER_VERSION => break,
            found => {
                return Err(ParseError::UnexpectedVersion {
                    offset,
                    what: "add_layer/add_tag_layer/add_skip_layer",
                    found,
                    expected: "1, 2 or 3",
                });
            }
        }
    }
    let input = read_input(&mut r)?;

    // Details, innermost first: the layer over the input, then each wrapper outward.
    let mut raw = Vec::with_capacity(wrappers.len() + 1);
    raw.push(RawElement::Layer(read_layer(&mut r)?));
    read_training_state(&mut r, true)?;
    for &is_layer in wrappers.iter().rev() {
        if is_layer {
            raw.push(RawElement::Layer(read_layer(&mut r)?));
            read_training_state(&mut r, false)?;
        } else {
            raw.push(RawElement::TagOrSkip);
        }
    }
    if r.remaining() != 0 {
        return Err(ParseError::TrailingBytes {
            offset: r.position(),
            remaining: r.remaining(),
        });
    }
    Ok(Network {
        loss,
        input,
        elements: resolve(raw)?,
    })
}

/// Tells tags from skips and links skips and `add_prev` layers to their tags, by the rules
/// in the module documentation.
fn resolve(raw: Vec<RawElement>) -> Result<Vec<Element>, ParseError> {
    let mut elements: Vec<Element> = Vec::with_capacity(raw.len());
    let nearest_tag = |elements: &[Element], below: usize| {
        elements[..below]
            .iter()
            .rposition(|e| matches!(e, Element::Tag))
    };
    for (index, item) in raw.into_iter().enumerate() {
        let element = match item {
            RawElement::Layer(RawLayer::Layer(layer)) => Element::Layer(layer),
            RawElement::Layer(RawLayer::AddPrev) => {
                let tag = nearest_tag(&elements, index).ok_or(ParseError::Unresolved {
                    what: "add_prev layer",
                    index,
                })?;
                Element::Layer(Layer::AddPrev { tag })
            }
            RawElement::TagOrSkip => {
                if matches!(elements.last(), Some(Element::Tag)) {
                    let tag = nearest_tag(&elements, index - 1).ok_or(ParseError::Unresolved {
                        what: "skip layer",
                        index,
                    })?;
                    Element::Skip { tag }
                } else {
                    Element::Tag
                }
            }
        };
        elements.push(element);
    }
    Ok(elements)
}

fn read_loss(r: &mut Reader<'_>) -> Result<MetricLoss, ParseError> {
    let offset = r.position();
    let name = r.read_string("loss layer name")?;
    if name != "loss_metric_2" {
        return Err(ParseError::Unsupported {
            offset,
            what: "loss layer",
            name,
            supported: "loss_metric_2",
        });
    }
    Ok(MetricLoss {
        margin: r.read_f32("loss margin")?,
        dist_thresh: r.read_f32("loss dist_thresh")?,
    })
}

fn read_input(r: &mut Reader<'_>) -> Result<RgbInput, ParseError> {
    let offset = r.position();
    let name = r.read_string("input layer name")?;
    if name != "input_rgb_image_sized" {
        return Err(ParseError::Unsupported {
            offset,
            what: "input layer",
            name,
            supported: "input_rgb_image_sized",
        });
    }
    Ok(RgbInput {
        mean: [
            r.read_f32("input avg_red")?,
            r.read_f32("input avg_green")?,
            r.read_f32("input avg_blue")?,
        ],
        rows: r.read_usize("input nr")?,
        cols: r.read_usize("input nc")?,
    })
}

/// Reads the state `add_layer` keeps for training after a layer's details: three flags and
/// gradient/output buffers (all empty in a saved model) and, for the layer over the input,
/// the sample expansion factor.
fn read_training_state(r: &mut Reader<'_>, over_input: bool) -> Result<(), ParseError> {
    r.read_bool("this_layer_setup_called")?;
    r.read_bool("gradient_input_is_stale")?;
    r.read_bool("get_output_and_gradient_input_disabled")?;
    r.read_tensor("x_grad")?;
    r.read_tensor("cached_output")?;
    if over_input {
        r.read_tensor("grad_final")?;
        r.read_i64("sample_expansion_factor")?;
    } else {
        r.read_tensor("params_grad")?;
    }
    Ok(())
}

const SUPPORTED_LAYERS: &str = "con_4, affine_, relu_, max_pool_2, avg_pool_2, add_prev_, fc_2";

fn read_layer(r: &mut Reader<'_>) -> Result<RawLayer, ParseError> {
    let offset = r.position();
    let name = r.read_string("layer name")?;
    let layer = match name.as_str() {
        "con_4" => Layer::Conv(read_conv(r, offset)?),
        "affine_" => Layer::Affine(read_affine(r, offset)?),
        "relu_" => Layer::Relu,
        "max_pool_2" => Layer::MaxPool(read_pool(r)?),
        "avg_pool_2" => Layer::AvgPool(read_pool(r)?),
        "add_prev_" => return Ok(RawLayer::AddPrev),
        "fc_2" => Layer::Fc(read_fc(r, offset)?),
        _ => {
            return Err(ParseError::Unsupported {
                offset,
                what: "layer",
                name,
                supported: SUPPORTED_LAYERS,
            });
        }
    };
    Ok(RawLayer::Layer(layer))
}

fn inconsistent(offset: usize, layer: &'static str, detail: String) -> ParseError {
    ParseError::Inconsistent {
        offset,
        layer,
        detail,
    }
}

fn read_conv(r: &mut Reader<'_>, offset: usize) -> Result<Conv, ParseError> {
    let params = r.read_tensor("con params")?;
    let num_filters = r.read_usize("con num_filters")?;
    let kernel = [r.read_usize("con nr")?, r.read_usize("con nc")?];
    let stride = [r.read_usize("con stride_y")?, r.read_usize("con stride_x")?];
    let pad = [
        r.read_usize("con padding_y")?,
        r.read_usize("con padding_x")?,
    ];
    let filters_shape = r.read_alias("con filters")?;
    let biases_shape = r.read_alias("con biases")?;
    for what in [
        "con learning_rate_multiplier",
        "con weight_decay_multiplier",
        "con bias_learning_rate_multiplier",
        "con bias_weight_decay_multiplier",
    ] {
        r.read_f32(what)?;
    }
    let channels = filters_shape[1];
    if filters_shape != [num_filters, channels, kernel[0], kernel[1]]
        || biases_shape != [1, num_filters, 1, 1]
        || stride.contains(&0)
    {
        return Err(inconsistent(
            offset,
            "con_4",
            format!(
                "{num_filters} filters of {kernel:?}, stride {stride:?}, but filters alias \
                 {filters_shape:?} and biases alias {biases_shape:?}"
            ),
        ));
    }
    let filter_len = num_filters * channels * kernel[0] * kernel[1];
    let (filters, biases) = split_params(params, &[filter_len, num_filters], offset, "con_4")?;
    Ok(Conv {
        num_filters,
        channels,
        kernel,
        stride,
        pad,
        filters,
        biases,
    })
}

fn read_affine(r: &mut Reader<'_>, offset: usize) -> Result<Affine, ParseError> {
    let params = r.read_tensor("affine params")?;
    let gamma_shape = r.read_alias("affine gamma")?;
    let beta_shape = r.read_alias("affine beta")?;
    let mode_offset = r.position();
    let mode = r.read_i64("affine mode")?;
    if mode != 0 {
        return Err(ParseError::Unsupported {
            offset: mode_offset,
            what: "affine mode",
            name: mode.to_string(),
            supported: "0 (CONV_MODE)",
        });
    }
    let k = gamma_shape[1];
    if gamma_shape != [1, k, 1, 1] || beta_shape != gamma_shape {
        return Err(inconsistent(
            offset,
            "affine_",
            format!("gamma alias {gamma_shape:?}, beta alias {beta_shape:?}"),
        ));
    }
    let (gamma, beta) = split_params(params, &[k, k], offset, "affine_")?;
    Ok(Affine { gamma, beta })
}

fn read_pool(r: &mut Reader<'_>) -> Result<Pool, ParseError> {
    Ok(Pool {
        window: [r.read_usize("pool nr")?, r.read_usize("pool nc")?],
        stride: [
            r.read_usize("pool stride_y")?,
            r.read_usize("pool stride_x")?,
        ],
        pad: [
            r.read_usize("pool padding_y")?,
            r.read_usize("pool padding_x")?,
        ],
    })
}

fn read_fc(r: &mut Reader<'_>, offset: usize) -> Result<Fc, ParseError> {
    let num_outputs = r.read_usize("fc num_outputs")?;
    let num_inputs = r.read_usize("fc num_inputs")?;
    let params = r.read_tensor("fc params")?;
    let weights_shape = r.read_alias("fc weights")?;
    let biases_shape = r.read_alias("fc biases")?;
    let mode_offset = r.position();
    let has_bias = match r.read_i64("fc bias_mode")? {
        0 => true,
        1 => false,
        mode => {
            return Err(ParseError::Unsupported {
                offset: mode_offset,
                what: "fc bias_mode",
                name: mode.to_string(),
                supported: "0 (FC_HAS_BIAS), 1 (FC_NO_BIAS)",
            });
        }
    };
    for what in [
        "fc learning_rate_multiplier",
        "fc weight_decay_multiplier",
        "fc bias_learning_rate_multiplier",
        "fc bias_weight_decay_multiplier",
    ] {
        r.read_f32(what)?;
    }
    // Without a bias, dlib leaves the bias alias default-constructed (all zeros).
    let expected_biases = if has_bias {
        [1, num_outputs, 1, 1]
    } else {
        [0; 4]
    };
    if weights_shape != [num_inputs, num_outputs, 1, 1] || biases_shape != expected_biases {
        return Err(inconsistent(
            offset,
            "fc_2",
            format!(
                "{num_inputs} -> {num_outputs}, but weights alias {weights_shape:?} and \
                 biases alias {biases_shape:?}"
            ),
        ));
    }
    let weight_len = num_inputs * num_outputs;
    let (weights, biases) = if has_bias {
        let (w, b) = split_params(params, &[weight_len, num_outputs], offset, "fc_2")?;
        (w, Some(b))
    } else {
        let (w, _) = split_params(params, &[weight_len, 0], offset, "fc_2")?;
        (w, None)
    };
    Ok(Fc {
        num_inputs,
        num_outputs,
        weights,
        biases,
    })
}

/// Splits a layer's parameter tensor into two consecutive parts of the given lengths.
fn split_params(
    params: Tensor,
    lens: &[usize; 2],
    offset: usize,
    layer: &'static str,
) -> Result<(Vec<f32>, Vec<f32>), ParseError> {
    if params.data.len() != lens[0] + lens[1] {
        return Err(inconsistent(
            offset,
            layer,
            format!(
                "parameter tensor {:?} holds {} values, expected {} + {}",
                params.shape,
                params.data.len(),
                lens[0],
                lens[1]
            ),
        ));
    }
    let mut first = params.data;
    let second = first.split_off(lens[0]);
    Ok((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(bytes: &[u8]) -> Result<i64, ParseError> {
        let mut r = Reader::new(bytes);
        let v = r.read_i64("test")?;
        assert_eq!(r.remaining(), 0);
        Ok(v)
    }

    fn float(bytes: &[u8]) -> Result<f32, ParseError> {
        let mut r = Reader::new(bytes);
        let v = r.read_f32("test")?;
        assert_eq!(r.remaining(), 0);
        Ok(v)
    }

    #[test]
    fn integers() {
        assert_eq!(int(&[0x01, 0x00]), Ok(0));
        assert_eq!(int(&[0x01, 0x02]), Ok(2));
        assert_eq!(int(&[0x81, 0x1c]), Ok(-28));
        assert_eq!(int(&[0x01, 0x96]), Ok(150));
        assert_eq!(int(&[0x02, 0x34, 0x12]), Ok(0x1234));
        assert_eq!(
            int(&[0x88, 0, 0, 0, 0, 0, 0, 0, 0x80]),
            Ok(i64::MIN),
            "-2^63 fits"
        );
        assert!(matches!(
            int(&[0x08, 0, 0, 0, 0, 0, 0, 0, 0x80]),
            Err(ParseError::OutOfRange { .. })
        ));
    }

    #[test]
    fn bad_integers() {
        for control in [0x00, 0x09, 0x11, 0x41] {
            assert_eq!(
                int(&[control, 0, 0, 0, 0, 0, 0, 0, 0, 0]).err(),
                Some(ParseError::BadInteger { offset: 0, control })
            );
        }
        assert_eq!(
            int(&[0x02, 0x01]).err(),
            Some(ParseError::UnexpectedEof {
                offset: 1,
                needed: 1,
                what: "test"
            })
        );
        let mut r = Reader::new(&[0x81, 0x01]);
        assert!(matches!(
            r.read_usize("size"),
            Err(ParseError::OutOfRange { .. })
        ));
    }

    #[test]
    fn floats() {
        // 0.04 = 10737418 * 2^-28 and 0.6 = 10066330 * 2^-24, from the face model's loss.
        assert_eq!(float(&[0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c]), Ok(0.04));
        assert_eq!(float(&[0x03, 0x9a, 0x99, 0x99, 0x81, 0x18]), Ok(0.6));
        assert_eq!(float(&[0x01, 0x00, 0x01, 0x00]), Ok(0.0));
        assert_eq!(float(&[0x81, 0x03, 0x01, 0x02]), Ok(-12.0));
        assert_eq!(float(&[0x01, 0x00, 0x02, 0x00, 0x7d]), Ok(f32::INFINITY));
        assert_eq!(
            float(&[0x01, 0x00, 0x02, 0x01, 0x7d]),
            Ok(f32::NEG_INFINITY)
        );
        assert!(float(&[0x01, 0x00, 0x02, 0x02, 0x7d]).is_ok_and(f32::is_nan));
        assert_eq!(
            float(b"0.04 "),
            Err(ParseError::AsciiFloat { offset: 0 }),
            "old ASCII format"
        );
    }

    #[test]
    fn bools_and_strings() {
        let mut r = Reader::new(b"10\x01\x03abc2");
        assert_eq!(r.read_bool("b"), Ok(true));
        assert_eq!(r.read_bool("b"), Ok(false));
        assert_eq!(r.read_string("s"), Ok("abc".to_owned()));
        assert_eq!(
            r.read_bool("b"),
            Err(ParseError::BadBool {
                offset: 7,
                byte: b'2'
            })
        );
    }

    #[test]
    fn tensors() {
        let mut bytes = vec![0x01, 0x02, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01];
        bytes.extend_from_slice(&1.5f32.to_le_bytes());
        bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
        bytes.extend_from_slice(&[0x01, 0x01, 0x01, 0x01, 0x01, 0x07, 0x01, 0x03, 0x01, 0x03]);
        let mut r = Reader::new(&bytes);
        assert_eq!(
            r.read_tensor("t"),
            Ok(Tensor {
                shape: [1, 2, 1, 1],
                data: vec![1.5, -2.0]
            })
        );
        assert_eq!(r.read_alias("a"), Ok([1, 7, 3, 3]));
        assert_eq!(r.remaining(), 0);
        // A tensor whose declared size exceeds the data is an error, not an allocation.
        let mut r = Reader::new(&[
            0x01, 0x02, 0x04, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01,
        ]);
        assert!(matches!(
            r.read_tensor("t"),
            Err(ParseError::UnexpectedEof { .. }) | Err(ParseError::OutOfRange { .. })
        ));
    }

    /// A minimal dlib serializer, enough to build small networks for the tests.
    #[derive(Default)]
    struct Writer(Vec<u8>);

    impl Writer {
        fn int(&mut self, v: i64) -> &mut Self {
            let mag = v.unsigned_abs();
            let len = (8 - mag.leading_zeros() as usize / 8).max(1);
            self.0.push(len as u8 | if v < 0 { 0x80 } else { 0 });
            self.0.extend_from_slice(&mag.to_le_bytes()[..len]);
            self
        }
        fn float(&mut self, v: f32) -> &mut Self {
            // Exact for the small dyadic values used here.
            let (mut m, mut e) = (f64::from(v), 0i64);
            while m.fract() != 0.0 {
                m *= 2.0;
                e -= 1;
            }
            self.int(m as i64).int(e)
        }
        fn string(&mut self, s: &str) -> &mut Self {
            self.int(s.len() as i64);
            self.0.extend_from_slice(s.as_bytes());
            self
        }
        fn tensor(&mut self, shape: [i64; 4], data: &[f32]) -> &mut Self {
            self.int(2);
            for d in shape {
                self.int(d);
            }
            for v in data {
                self.0.extend_from_slice(&v.to_le_bytes());
            }
            self
        }
        fn alias(&mut self, shape: [i64; 4]) -> &mut Self {
            self.int(1);
            for d in shape {
                self.int(d);
            }
            self
        }
        fn tail(&mut self, over_input: bool) -> &mut Self {
            self.0.extend_from_slice(b"100");
            self.tensor([0; 4], &[]).tensor([0; 4], &[]);
            if over_input {
                self.tensor([0; 4], &[]).int(1)
            } else {
                self.tensor([0; 4], &[])
            }
        }
    }

    /// `loss_metric<fc_no_bias<1, avg_pool_everything<add_prev2<avg_pool<1,1,1,1,
    /// skip1<tag2<relu<tag1<con<2,1,1,1,1, input_rgb_image_sized<2>>>>>>>>>>>`
    fn small_network() -> Vec<u8> {
        let mut w = Writer::default();
        w.int(1).string("loss_metric_2").float(0.04).float(0.5);
        // fc, avg_pool_everything, add_prev, avg_pool, skip, tag, relu, tag, con
        for v in [2, 2, 2, 2, 1, 1, 2, 1, 3] {
            w.int(v);
        }
        w.string("input_rgb_image_sized")
            .float(122.5)
            .float(117.0)
            .float(104.25)
            .int(2)
            .int(2);
        w.string("con_4")
            .tensor([8, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.5, -0.5])
            .int(2)
            .int(1)
            .int(1)
            .int(1)
            .int(1)
            .int(0)
            .int(0)
            .alias([2, 3, 1, 1])
            .alias([1, 2, 1, 1])
            .float(1.0)
            .float(1.0)
            .float(1.0)
            .float(0.0)
            .tail(true);
        w.string("relu_").tail(false);
        w.string("avg_pool_2");
        for v in [1, 1, 1, 1, 0, 0] {
            w.int(v);
        }
        w.tail(false);
        w.string("add_prev_").tail(false);
        w.string("avg_pool_2");
        for v in [0, 0, 1, 1, 0, 0] {
            w.int(v);
        }
        w.tail(false);
        w.string("fc_2")
            .int(1)
            .int(2)
            .tensor([2, 1, 1, 1], &[0.25, -1.0])
            .alias([2, 1, 1, 1])
            .alias([0, 0, 0, 0])
            .int(1)
            .float(1.0)
            .float(1.0)
            .float(1.0)
            .float(0.0)
            .tail(false);
        w.0
    }

    #[test]
    fn parses_a_small_network() {
        let bytes = small_network();
        let net = parse_network(&bytes);
        let Ok(net) = net else {
            panic!("{net:?}");
        };
        assert_eq!(net.loss.margin, 0.04);
        assert_eq!(net.input.mean, [122.5, 117.0, 104.25]);
        assert_eq!((net.input.rows, net.input.cols), (2, 2));
        let kinds: Vec<&str> = net
            .elements
            .iter()
            .map(|e| match e {
                Element::Layer(l) => l.kind(),
                Element::Tag => "tag",
                Element::Skip { .. } => "skip",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "con", "tag", "relu", "tag", "skip", "avg_pool", "add_prev", "avg_pool", "fc"
            ]
        );
        assert_eq!(net.elements[4], Element::Skip { tag: 1 });
        assert_eq!(net.elements[6], Element::Layer(Layer::AddPrev { tag: 3 }));
        let Element::Layer(Layer::Conv(conv)) = &net.elements[0] else {
            panic!("not a conv: {:?}", net.elements[0]);
        };
        assert_eq!(conv.channels, 3);
        assert_eq!(conv.filters, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(conv.biases, [0.5, -0.5]);
        assert_eq!(net.parameter_count(), 10);
    }

    #[test]
    fn rejects_trailing_and_truncated_data() {
        let mut bytes = small_network();
        bytes.push(0);
        assert!(matches!(
            parse_network(&bytes),
            Err(ParseError::TrailingBytes { remaining: 1, .. })
        ));
        bytes.truncate(bytes.len() - 2);
        assert!(matches!(
            parse_network(&bytes),
            Err(ParseError::UnexpectedEof { .. })
        ));
    }

    #[test]
    fn rejects_other_files() {
        assert!(matches!(
            parse_network(b"\x89PNG\r\n\x1a\n"),
            Err(ParseError::BadInteger { .. })
        ));
        let mut w = Writer::default();
        w.int(1).string("loss_multiclass_log_");
        assert!(matches!(
            parse_network(&w.0),
            Err(ParseError::Unsupported {
                what: "loss layer",
                ..
            })
        ));
    }
}
