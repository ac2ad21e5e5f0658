//! A small, safe, bounds-checked reader for TensorFlow Lite model files, limited to the part
//! of the schema (`tensorflow/compiler/mlir/lite/schema/schema.fbs`, version 3) that
//! converting a float32 convolutional network needs.
//!
//! A `.tflite` file is a FlatBuffer: a `u32` offset to the root table, the file identifier
//! `TFL3`, then tables, vectors and strings that refer to each other by offsets. A table
//! starts with an `i32` that points (backwards, signed) to its *vtable*: two `u16` sizes (the
//! vtable's and the table's) followed by one `u16` per field, the field's offset inside the
//! table or 0 when it is absent (then its default applies). Offsets to vectors, strings and
//! tables are `u32`s relative to where they are stored; a vector is a `u32` length and its
//! elements. Every read here checks its range against the file and the table it belongs to,
//! so a truncated or corrupted file gives a [`ReadError`] that names the field, never a
//! panic. (The `flatbuffers` crate's table access is `unsafe`; this workspace denies that.)

use thiserror::Error;

/// The file identifier at bytes 4..8 of every TFLite model.
pub const FILE_IDENTIFIER: &[u8; 4] = b"TFL3";
/// The schema version this reader follows (`Model.version`).
pub const SCHEMA_VERSION: u32 = 3;

/// `TensorType.FLOAT32`.
pub const TENSOR_FLOAT32: i8 = 0;
/// `TensorType.INT32`.
pub const TENSOR_INT32: i8 = 2;

/// Codes of the `BuiltinOperator`s the converter knows by name.
pub mod builtin {
    /// `ADD`.
    pub const ADD: i32 = 0;
    /// `CONV_2D`.
    pub const CONV_2D: i32 = 3;
    /// `DEPTHWISE_CONV_2D`.
    pub const DEPTHWISE_CONV_2D: i32 = 4;
    /// `MUL`.
    pub const MUL: i32 = 18;
    /// `RELU`.
    pub const RELU: i32 = 19;
    /// `RESHAPE`.
    pub const RESHAPE: i32 = 22;
    /// `CUSTOM`: the operator is named by `OperatorCode.custom_code`.
    pub const CUSTOM: i32 = 32;
    /// `SUB`.
    pub const SUB: i32 = 41;
    /// `ABS`.
    pub const ABS: i32 = 101;
}

/// `BuiltinOperator` names, indexed by code (schema.fbs as of TensorFlow 2.18).
#[rustfmt::skip]
const BUILTIN_NAMES: &[&str] = &[
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE",
    "DEQUANTIZE", "EMBEDDING_LOOKUP", "FLOOR", "FULLY_CONNECTED", "HASHTABLE_LOOKUP",
    "L2_NORMALIZATION", "L2_POOL_2D", "LOCAL_RESPONSE_NORMALIZATION", "LOGISTIC",
    "LSH_PROJECTION", "LSTM", "MAX_POOL_2D", "MUL", "RELU", "RELU_N1_TO_1", "RELU6", "RESHAPE",
    "RESIZE_BILINEAR", "RNN", "SOFTMAX", "SPACE_TO_DEPTH", "SVDF", "TANH", "CONCAT_EMBEDDINGS",
    "SKIP_GRAM", "CALL", "CUSTOM", "EMBEDDING_LOOKUP_SPARSE", "PAD", "UNIDIRECTIONAL_SEQUENCE_RNN",
    "GATHER", "BATCH_TO_SPACE_ND", "SPACE_TO_BATCH_ND", "TRANSPOSE", "MEAN", "SUB", "DIV",
    "SQUEEZE", "UNIDIRECTIONAL_SEQUENCE_LSTM", "STRIDED_SLICE", "BIDIRECTIONAL_SEQUENCE_RNN",
    "EXP", "TOPK_V2", "SPLIT", "LOG_SOFTMAX", "DELEGATE", "BIDIRECTIONAL_SEQUENCE_LSTM", "CAST",
    "PRELU", "MAXIMUM", "ARG_MAX", "MINIMUM", "LESS", "NEG", "PADV2", "GREATER", "GREATER_EQUAL",
    "LESS_EQUAL", "SELECT", "SLICE", "SIN", "TRANSPOSE_CONV", "SPARSE_TO_DENSE", "TILE",
    "EXPAND_DIMS", "EQUAL", "NOT_EQUAL", "LOG", "SUM", "SQRT", "RSQRT", "SHAPE", "POW", "ARG_MIN",
    "FAKE_QUANT", "REDUCE_PROD", "REDUCE_MAX", "PACK", "LOGICAL_OR", "ONE_HOT", "LOGICAL_AND",
    "LOGICAL_NOT", "UNPACK", "REDUCE_MIN", "FLOOR_DIV", "REDUCE_ANY", "SQUARE", "ZEROS_LIKE",
    "FILL", "FLOOR_MOD", "RANGE", "RESIZE_NEAREST_NEIGHBOR", "LEAKY_RELU", "SQUARED_DIFFERENCE",
    "MIRROR_PAD", "ABS", "SPLIT_V", "UNIQUE", "CEIL", "REVERSE_V2", "ADD_N", "GATHER_ND", "COS",
    "WHERE", "RANK", "ELU", "REVERSE_SEQUENCE", "MATRIX_DIAG", "QUANTIZE", "MATRIX_SET_DIAG",
    "ROUND", "HARD_SWISH", "IF", "WHILE", "NON_MAX_SUPPRESSION_V4", "NON_MAX_SUPPRESSION_V5",
    "SCATTER_ND", "SELECT_V2", "DENSIFY", "SEGMENT_SUM", "BATCH_MATMUL", "PLACEHOLDER_FOR_GREATER_OP_CODES",
    "CUMSUM", "CALL_ONCE", "BROADCAST_TO", "RFFT2D", "CONV_3D", "IMAG", "REAL", "COMPLEX_ABS",
    "HASHTABLE", "HASHTABLE_FIND", "HASHTABLE_IMPORT", "HASHTABLE_SIZE", "REDUCE_ALL",
    "CONV_3D_TRANSPOSE", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "BROADCAST_ARGS",
    "RANDOM_STANDARD_NORMAL", "BUCKETIZE", "RANDOM_UNIFORM", "MULTINOMIAL", "GELU",
    "DYNAMIC_UPDATE_SLICE", "RELU_0_TO_1", "UNSORTED_SEGMENT_PROD", "UNSORTED_SEGMENT_MAX",
    "UNSORTED_SEGMENT_SUM", "ATAN2", "UNSORTED_SEGMENT_MIN", "SIGN", "BITCAST", "BITWISE_XOR",
    "RIGHT_SHIFT", "STABLEHLO_LOGISTIC", "STABLEHLO_ADD", "STABLEHLO_DIVIDE", "STABLEHLO_MULTIPLY",
    "STABLEHLO_MAXIMUM", "STABLEHLO_RESHAPE", "STABLEHLO_CLAMP", "STABLEHLO_CONCATENATE",
    "STABLEHLO_BROADCAST_IN_DIM", "STABLEHLO_CONVOLUTION", "STABLEHLO_SLICE",
    "STABLEHLO_CUSTOM_CALL", "STABLEHLO_REDUCE", "STABLEHLO_ABS", "STABLEHLO_AND",
    "STABLEHLO_COSINE", "STABLEHLO_EXPONENTIAL", "STABLEHLO_FLOOR", "STABLEHLO_LOG",
    "STABLEHLO_MINIMUM", "STABLEHLO_NEGATE", "STABLEHLO_OR", "STABLEHLO_POWER",
    "STABLEHLO_REMAINDER", "STABLEHLO_RSQRT", "STABLEHLO_SELECT", "STABLEHLO_SUBTRACT",
    "STABLEHLO_TANH", "STABLEHLO_SCATTER", "STABLEHLO_COMPARE", "STABLEHLO_CONVERT",
    "STABLEHLO_DYNAMIC_SLICE", "STABLEHLO_DYNAMIC_UPDATE_SLICE", "STABLEHLO_PAD", "STABLEHLO_IOTA",
    "STABLEHLO_DOT_GENERAL", "STABLEHLO_REDUCE_WINDOW", "STABLEHLO_SORT", "STABLEHLO_WHILE",
    "STABLEHLO_GATHER", "STABLEHLO_TRANSPOSE", "DILATE", "STABLEHLO_RNG_BIT_GENERATOR",
    "REDUCE_WINDOW", "STABLEHLO_COMPOSITE", "STABLEHLO_SHIFT_LEFT", "STABLEHLO_CBRT",
    "STABLEHLO_CASE",
];

/// `TensorType` names, indexed by value.
#[rustfmt::skip]
const TENSOR_TYPE_NAMES: &[&str] = &[
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64",
    "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16", "INT4",
    "BFLOAT16",
];

/// The schema name of a `BuiltinOperator` code, e.g. `CONV_2D` for 3.
pub fn builtin_name(code: i32) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| BUILTIN_NAMES.get(i))
        .map_or_else(|| format!("builtin operator {code}"), |&n| n.to_owned())
}

/// The schema name of a `TensorType` value, e.g. `FLOAT32` for 0.
pub fn tensor_type_name(tensor_type: i8) -> String {
    usize::try_from(tensor_type)
        .ok()
        .and_then(|i| TENSOR_TYPE_NAMES.get(i))
        .map_or_else(|| format!("tensor type {tensor_type}"), |&n| n.to_owned())
}

/// Why bytes could not be read as a TFLite model.
#[derive(Debug, Error, PartialEq)]
pub enum ReadError {
    /// A value lies (partly) outside the file: the file is truncated or an offset is corrupt.
    #[error("{what}: needs bytes {start}..{end}, but the file has {size}")]
    OutOfBounds {
        /// The field or structure being read, e.g. `model.subgraphs[0].tensors[3].shape`.
        what: String,
        /// First byte needed.
        start: u64,
        /// One past the last byte needed.
        end: u64,
        /// Size of the file.
        size: usize,
    },
    /// Bytes 4..8 are not `TFL3`.
    #[error("not a TFLite model: the file identifier is {found:?}, not \"TFL3\"")]
    NotTflite {
        /// The four bytes found, escaped.
        found: String,
    },
    /// A structure is inconsistent (a vtable, a field outside its table, a bad enum value,
    /// a string that is not UTF-8, ...).
    #[error("{what}: {detail}")]
    Malformed {
        /// The field or structure being read.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A field that the schema requires here is absent.
    #[error("{what} is missing")]
    Missing {
        /// The field.
        what: String,
    },
}

fn malformed(what: &str, detail: impl Into<String>) -> ReadError {
    ReadError::Malformed {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// `Padding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TensorFlow `SAME`: output size `ceil(input / stride)`, the padding split with the odd
    /// pixel after.
    Same,
    /// TensorFlow `VALID`: no padding.
    Valid,
}

/// `ActivationFunctionType`: an activation fused into an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// No activation.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, -1, 1)`.
    ReluN1To1,
    /// `clamp(x, 0, 6)`.
    Relu6,
    /// `tanh(x)`.
    Tanh,
    /// `SIGN_BIT`.
    SignBit,
}

/// `Conv2DOptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2DOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Strides `[h, w]`.
    pub stride: [i32; 2],
    /// Dilation factors `[h, w]`.
    pub dilation: [i32; 2],
    /// Fused activation.
    pub activation: Activation,
}

/// `DepthwiseConv2DOptions`.
#[derive(Debug, Clone, PartialEq)]
pub struct DepthwiseConv2DOptions {
    /// Padding scheme.
    pub padding: Padding,
    /// Strides `[h, w]`.
    pub stride: [i32; 2],
    /// Dilation factors `[h, w]`.
    pub dilation: [i32; 2],
    /// Output channels per input channel.
    pub depth_multiplier: i32,
    /// Fused activation.
    pub activation: Activation,
}

/// An operator's `builtin_options`, decoded for the operators the converter translates.
#[derive(Debug, Clone, PartialEq)]
pub enum BuiltinOptions {
    /// No options table.
    None,
    /// `Conv2DOptions`.
    Conv2D(Conv2DOptions),
    /// `DepthwiseConv2DOptions`.
    DepthwiseConv2D(DepthwiseConv2DOptions),
    /// `AddOptions` (only the fused activation).
    Add(Activation),
    /// `SubOptions` (only the fused activation).
    Sub(Activation),
    /// `MulOptions` (only the fused activation).
    Mul(Activation),
    /// `ReshapeOptions`: the target shape, when given there rather than as an input.
    Reshape(Vec<i32>),
    /// Any other options table, by its `BuiltinOptions` union tag (not decoded).
    Other(u8),
}

/// `OperatorCode`.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorCode {
    /// `deprecated_builtin_code` (codes below 127).
    pub deprecated_builtin_code: i8,
    /// `builtin_code`.
    pub builtin_code: i32,
    /// The name of a custom operator.
    pub custom_code: Option<String>,
    /// The operator's version.
    pub version: i32,
}

impl OperatorCode {
    /// The operator's `BuiltinOperator` code: the larger of the two code fields, as TFLite
    /// itself reads it (old files set only the deprecated one, new ones both).
    pub fn code(&self) -> i32 {
        i32::from(self.deprecated_builtin_code).max(self.builtin_code)
    }

    /// The operator's name: the schema name of a builtin, the custom code of a custom one.
    pub fn name(&self) -> String {
        match (&self.custom_code, self.code()) {
            (Some(custom), builtin::CUSTOM) => format!("CUSTOM {custom:?}"),
            (_, code) => builtin_name(code),
        }
    }
}

/// `Tensor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The tensor's name.
    pub name: String,
    /// Its shape (TFLite activations are NHWC).
    pub shape: Vec<i32>,
    /// Its element type, a `TensorType` value (see [`tensor_type_name`]).
    pub tensor_type: i8,
    /// Index of its buffer in [`Model::buffers`]; buffer 0 is the empty sentinel.
    pub buffer: u32,
    /// Whether it carries quantization parameters (a scale or a zero point).
    pub quantized: bool,
    /// Whether it is stored sparse.
    pub sparse: bool,
    /// Whether it is a variable.
    pub is_variable: bool,
}

/// `Operator`.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Index into [`Model::operator_codes`].
    pub opcode_index: u32,
    /// Input tensor indices; -1 marks an omitted optional input.
    pub inputs: Vec<i32>,
    /// Output tensor indices.
    pub outputs: Vec<i32>,
    /// The decoded `builtin_options`.
    pub options: BuiltinOptions,
    /// The `builtin_options_2` union tag (0 when absent).
    pub options_2_type: u8,
    /// Whether the operator has custom options.
    pub has_custom_options: bool,
    /// `intermediates` tensor indices.
    pub intermediates: Vec<i32>,
}

/// `SubGraph`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubGraph {
    /// The subgraph's name.
    pub name: String,
    /// Its tensors.
    pub tensors: Vec<Tensor>,
    /// Indices of its input tensors.
    pub inputs: Vec<i32>,
    /// Indices of its output tensors.
    pub outputs: Vec<i32>,
    /// Its operators, in execution order.
    pub operators: Vec<Operator>,
}

/// `Buffer`: raw little-endian data of a constant tensor (empty for activations).
#[derive(Debug, Clone, PartialEq)]
pub struct Buffer {
    /// The bytes.
    pub data: Vec<u8>,
}

/// `Model`.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Schema version ([`SCHEMA_VERSION`] for current files).
    pub version: u32,
    /// Free-text description, e.g. `TOCO Converted.`.
    pub description: String,
    /// The operator kinds the subgraphs use.
    pub operator_codes: Vec<OperatorCode>,
    /// The subgraphs; the first is the main one.
    pub subgraphs: Vec<SubGraph>,
    /// Constant data.
    pub buffers: Vec<Buffer>,
}

/// A fixed-size little-endian value in the file.
trait Scalar: Sized {
    const SIZE: usize;
    fn read(data: &[u8], pos: usize) -> Option<Self>;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn read(data: &[u8], pos: usize) -> Option<Self> {
                data.get(pos..)?.first_chunk().map(|b| <$t>::from_le_bytes(*b))
            }
        }
    )*};
}
scalar!(u8, i8, u16, i32, u32, u64);

/// The whole file.
#[derive(Clone, Copy)]
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn out_of_bounds(self, what: &str, start: usize, len: usize) -> ReadError {
        ReadError::OutOfBounds {
            what: what.to_owned(),
            start: start as u64,
            end: (start as u64).saturating_add(len as u64),
            size: self.0.len(),
        }
    }

    fn slice(self, start: usize, len: usize, what: &str) -> Result<&'a [u8], ReadError> {
        start
            .checked_add(len)
            .and_then(|end| self.0.get(start..end))
            .ok_or_else(|| self.out_of_bounds(what, start, len))
    }

    fn read<T: Scalar>(self, pos: usize, what: &str) -> Result<T, ReadError> {
        T::read(self.0, pos).ok_or_else(|| self.out_of_bounds(what, pos, T::SIZE))
    }

    /// The position that the `u32` offset stored at `pos` points to.
    fn follow(self, pos: usize, what: &str) -> Result<usize, ReadError> {
        let offset: u32 = self.read(pos, what)?;
        pos.checked_add(offset as usize)
            .filter(|&target| target < self.0.len())
            .ok_or_else(|| self.out_of_bounds(what, pos.saturating_add(offset as usize), 1))
    }
}

/// A table: its position and its vtable, both checked to lie inside the file.
#[derive(Clone, Copy)]
struct Table<'a> {
    bytes: Bytes<'a>,
    pos: usize,
    vtable: usize,
    vtable_size: usize,
    table_size: usize,
}

impl<'a> Table<'a> {
    fn at(bytes: Bytes<'a>, pos: usize, what: &str) -> Result<Self, ReadError> {
        let soffset: i32 = bytes.read(pos, what)?;
        let vtable = i64::try_from(pos)
            .ok()
            .and_then(|p| p.checked_sub(i64::from(soffset)))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                malformed(
                    what,
                    format!("vtable offset {soffset} points before the file"),
                )
            })?;
        let vtable_size = usize::from(bytes.read::<u16>(vtable, what)?);
        let table_size = usize::from(bytes.read::<u16>(vtable.saturating_add(2), what)?);
        if vtable_size < 4 || !vtable_size.is_multiple_of(2) {
            return Err(malformed(what, format!("vtable size {vtable_size}")));
        }
        if table_size < 4 {
            return Err(malformed(what, format!("table size {table_size}")));
        }
        bytes.slice(vtable, vtable_size, what)?;
        bytes.slice(pos, table_size, what)?;
        Ok(Self {
            bytes,
            pos,
            vtable,
            vtable_size,
            table_size,
        })
    }

    /// Where field `slot` (0 = the schema's first field) of `size` bytes is, if present.
    fn field(&self, slot: usize, size: usize, what: &str) -> Result<Option<usize>, ReadError> {
        let entry = 4 + 2 * slot;
        if entry + 2 > self.vtable_size {
            return Ok(None);
        }
        let offset = usize::from(self.bytes.read::<u16>(self.vtable + entry, what)?);
        if offset == 0 {
            return Ok(None);
        }
        if offset < 4 || offset + size > self.table_size {
            return Err(malformed(
                what,
                format!(
                    "field at offset {offset} ({size} bytes) lies outside its {}-byte table",
                    self.table_size
                ),
            ));
        }
        Ok(Some(self.pos + offset))
    }

    fn scalar<T: Scalar>(&self, slot: usize, default: T, what: &str) -> Result<T, ReadError> {
        match self.field(slot, T::SIZE, what)? {
            Some(pos) => self.bytes.read(pos, what),
            None => Ok(default),
        }
    }

    /// Where the object that offset field `slot` points to starts, if present.
    fn target(&self, slot: usize, what: &str) -> Result<Option<usize>, ReadError> {
        self.field(slot, 4, what)?
            .map(|pos| self.bytes.follow(pos, what))
            .transpose()
    }

    fn table(&self, slot: usize, what: &str) -> Result<Option<Table<'a>>, ReadError> {
        self.target(slot, what)?
            .map(|pos| Table::at(self.bytes, pos, what))
            .transpose()
    }

    /// The position of the first element and the length of vector field `slot`, whose
    /// elements are `size` bytes each; the whole vector is checked to lie inside the file.
    fn vector(
        &self,
        slot: usize,
        size: usize,
        what: &str,
    ) -> Result<Option<(usize, usize)>, ReadError> {
        let Some(pos) = self.target(slot, what)? else {
            return Ok(None);
        };
        let len = self.bytes.read::<u32>(pos, what)? as usize;
        let start = pos + 4;
        let bytes = len
            .checked_mul(size)
            .ok_or_else(|| self.bytes.out_of_bounds(what, start, usize::MAX))?;
        self.bytes.slice(start, bytes, what)?;
        Ok(Some((start, len)))
    }

    fn scalars<T: Scalar>(&self, slot: usize, what: &str) -> Result<Vec<T>, ReadError> {
        let Some((start, len)) = self.vector(slot, T::SIZE, what)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| self.bytes.read(start + i * T::SIZE, what))
            .collect()
    }

    fn byte_vector(&self, slot: usize, what: &str) -> Result<&'a [u8], ReadError> {
        match self.vector(slot, 1, what)? {
            Some((start, len)) => self.bytes.slice(start, len, what),
            None => Ok(&[]),
        }
    }

    fn string(&self, slot: usize, what: &str) -> Result<Option<String>, ReadError> {
        let Some((start, len)) = self.vector(slot, 1, what)? else {
            return Ok(None);
        };
        // A string is a byte vector followed by a NUL that its length does not count.
        if self.bytes.read::<u8>(start + len, what)? != 0 {
            return Err(malformed(what, "string is not NUL-terminated"));
        }
        let bytes = self.bytes.slice(start, len, what)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|e| malformed(what, format!("string is not UTF-8 ({e})")))
    }

    fn tables(&self, slot: usize, what: &str) -> Result<Vec<Table<'a>>, ReadError> {
        let Some((start, len)) = self.vector(slot, 4, what)? else {
            return Ok(Vec::new());
        };
        (0..len)
            .map(|i| {
                let what = format!("{what}[{i}]");
                let pos = self.bytes.follow(start + 4 * i, &what)?;
                Table::at(self.bytes, pos, &what)
            })
            .collect()
    }
}

fn padding(value: i8, what: &str) -> Result<Padding, ReadError> {
    match value {
        0 => Ok(Padding::Same),
        1 => Ok(Padding::Valid),
        v => Err(malformed(
            what,
            format!("padding {v} is neither SAME (0) nor VALID (1)"),
        )),
    }
}

fn activation(value: i8, what: &str) -> Result<Activation, ReadError> {
    Ok(match value {
        0 => Activation::None,
        1 => Activation::Relu,
        2 => Activation::ReluN1To1,
        3 => Activation::Relu6,
        4 => Activation::Tanh,
        5 => Activation::SignBit,
        v => return Err(malformed(what, format!("unknown fused activation {v}"))),
    })
}

/// Reads the `BuiltinOptions` union member tagged `tag` from `table`.
fn builtin_options(
    tag: u8,
    table: Option<Table<'_>>,
    what: &str,
) -> Result<BuiltinOptions, ReadError> {
    const CONV_2D: u8 = 1;
    const DEPTHWISE_CONV_2D: u8 = 2;
    const ADD: u8 = 11;
    const RESHAPE: u8 = 17;
    const MUL: u8 = 21;
    const SUB: u8 = 28;
    if tag == 0 {
        return Ok(BuiltinOptions::None);
    }
    if !matches!(tag, CONV_2D | DEPTHWISE_CONV_2D | ADD | RESHAPE | MUL | SUB) {
        return Ok(BuiltinOptions::Other(tag));
    }
    let t = table.ok_or_else(|| ReadError::Missing {
        what: what.to_owned(),
    })?;
    let act = |slot| activation(t.scalar(slot, 0i8, what)?, what);
    Ok(match tag {
        CONV_2D => BuiltinOptions::Conv2D(Conv2DOptions {
            padding: padding(t.scalar(0, 0i8, what)?, what)?,
            stride: [t.scalar(2, 0i32, what)?, t.scalar(1, 0i32, what)?],
            activation: act(3)?,
            dilation: [t.scalar(5, 1i32, what)?, t.scalar(4, 1i32, what)?],
        }),
        DEPTHWISE_CONV_2D => BuiltinOptions::DepthwiseConv2D(DepthwiseConv2DOptions {
            padding: padding(t.scalar(0, 0i8, what)?, what)?,
            stride: [t.scalar(2, 0i32, what)?, t.scalar(1, 0i32, what)?],
            depth_multiplier: t.scalar(3, 0i32, what)?,
            activation: act(4)?,
            dilation: [t.scalar(6, 1i32, what)?, t.scalar(5, 1i32, what)?],
        }),
        ADD => BuiltinOptions::Add(act(0)?),
        SUB => BuiltinOptions::Sub(act(0)?),
        MUL => BuiltinOptions::Mul(act(0)?),
        _ => BuiltinOptions::Reshape(t.scalars(0, what)?),
    })
}

fn operator_code(t: Table<'_>, what: &str) -> Result<OperatorCode, ReadError> {
    Ok(OperatorCode {
        deprecated_builtin_code: t.scalar(0, 0i8, &format!("{what}.deprecated_builtin_code"))?,
        custom_code: t.string(1, &format!("{what}.custom_code"))?,
        version: t.scalar(2, 1i32, &format!("{what}.version"))?,
        builtin_code: t.scalar(3, 0i32, &format!("{what}.builtin_code"))?,
    })
}

fn tensor(t: Table<'_>, what: &str) -> Result<Tensor, ReadError> {
    let quantization = t.table(4, &format!("{what}.quantization"))?;
    let quantized = match quantization {
        Some(q) => {
            let w = format!("{what}.quantization");
            q.vector(2, 4, &w)?.is_some_and(|(_, n)| n > 0)
                || q.vector(3, 8, &w)?.is_some_and(|(_, n)| n > 0)
        }
        None => false,
    };
    Ok(Tensor {
        shape: t.scalars(0, &format!("{what}.shape"))?,
        tensor_type: t.scalar(1, 0i8, &format!("{what}.type"))?,
        buffer: t.scalar(2, 0u32, &format!("{what}.buffer"))?,
        name: t.string(3, &format!("{what}.name"))?.unwrap_or_default(),
        quantized,
        is_variable: t.scalar(5, 0u8, &format!("{what}.is_variable"))? != 0,
        sparse: t.target(6, &format!("{what}.sparsity"))?.is_some(),
    })
}

fn operator(t: Table<'_>, what: &str) -> Result<Operator, ReadError> {
    let options_what = format!("{what}.builtin_options");
    let tag: u8 = t.scalar(3, 0, &format!("{what}.builtin_options_type"))?;
    Ok(Operator {
        opcode_index: t.scalar(0, 0u32, &format!("{what}.opcode_index"))?,
        inputs: t.scalars(1, &format!("{what}.inputs"))?,
        outputs: t.scalars(2, &format!("{what}.outputs"))?,
        options: builtin_options(tag, t.table(4, &options_what)?, &options_what)?,
        has_custom_options: !t
            .byte_vector(5, &format!("{what}.custom_options"))?
            .is_empty()
            || t.scalar(10, 0u64, &format!("{what}.large_custom_options_size"))? != 0,
        intermediates: t.scalars(8, &format!("{what}.intermediates"))?,
        options_2_type: t.scalar(11, 0u8, &format!("{what}.builtin_options_2_type"))?,
    })
}

fn subgraph(t: Table<'_>, what: &str) -> Result<SubGraph, ReadError> {
    let tensors_what = format!("{what}.tensors");
    let operators_what = format!("{what}.operators");
    Ok(SubGraph {
        tensors: t
            .tables(0, &tensors_what)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| tensor(t, &format!("{tensors_what}[{i}]")))
            .collect::<Result<_, _>>()?,
        inputs: t.scalars(1, &format!("{what}.inputs"))?,
        outputs: t.scalars(2, &format!("{what}.outputs"))?,
        operators: t
            .tables(3, &operators_what)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| operator(t, &format!("{operators_what}[{i}]")))
            .collect::<Result<_, _>>()?,
        name: t.string(4, &format!("{what}.name"))?.unwrap_or_default(),
    })
}

fn buffer(bytes: Bytes<'_>, t: Table<'_>, what: &str) -> Result<Buffer, ReadError> {
    let inline = t.byte_vector(0, &format!("{what}.data"))?;
    // Files over 2 GB keep buffer data after the FlatBuffer: `offset` (> 1) and `size`.
    let offset: u64 = t.scalar(1, 0, &format!("{what}.offset"))?;
    let size: u64 = t.scalar(2, 0, &format!("{what}.size"))?;
    if offset <= 1 {
        return Ok(Buffer {
            data: inline.to_vec(),
        });
    }
    if !inline.is_empty() {
        return Err(malformed(
            what,
            "has both inline data and an external offset",
        ));
    }
    let (Ok(start), Ok(len)) = (usize::try_from(offset), usize::try_from(size)) else {
        return Err(bytes.out_of_bounds(what, usize::MAX, 0));
    };
    Ok(Buffer {
        data: bytes
            .slice(start, len, &format!("{what} (external data)"))?
            .to_vec(),
    })
}

/// Reads a TFLite model from the bytes of a `.tflite` file.
pub fn parse_model(data: &[u8]) -> Result<Model, ReadError> {
    let bytes = Bytes(data);
    let identifier = bytes.slice(4, 4, "file header")?;
    if identifier != FILE_IDENTIFIER {
        return Err(ReadError::NotTflite {
            found: identifier.escape_ascii().to_string(),
        });
    }
    let root = bytes.follow(0, "root table offset")?;
    let model = Table::at(bytes, root, "model")?;
    let codes_what = "model.operator_codes";
    let subgraphs_what = "model.subgraphs";
    let buffers_what = "model.buffers";
    Ok(Model {
        version: model.scalar(0, 0u32, "model.version")?,
        operator_codes: model
            .tables(1, codes_what)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| operator_code(t, &format!("{codes_what}[{i}]")))
            .collect::<Result<_, _>>()?,
        subgraphs: model
            .tables(2, subgraphs_what)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| subgraph(t, &format!("{subgraphs_what}[{i}]")))
            .collect::<Result<_, _>>()?,
        description: model.string(3, "model.description")?.unwrap_or_default(),
        buffers: model
            .tables(4, buffers_what)?
            .into_iter()
            .enumerate()
            .map(|(i, t)| buffer(bytes, t, &format!("{buffers_what}[{i}]")))
            .collect::<Result<_, _>>()?,
    })
}

/// Writes small TFLite models for the unit tests: a forward FlatBuffers writer (children
/// after their parents, so every `u32` offset is positive) and a builder of whole models.
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod write {
    use super::builtin;

    /// A field value.
    pub enum F {
        I8(i8),
        I32(i32),
        U32(u32),
        U64(u64),
        Str(String),
        Bytes(Vec<u8>),
        Ints(Vec<i32>),
        Table(T),
        Tables(Vec<T>),
    }

    /// A table: `(slot, value)` pairs.
    pub struct T(pub Vec<(usize, F)>);

    fn align(out: &mut Vec<u8>, n: usize) {
        while !out.len().is_multiple_of(n) {
            out.push(0);
        }
    }

    fn patch(out: &mut [u8], at: usize, target: usize) {
        let offset = u32::try_from(target - at).unwrap();
        out[at..at + 4].copy_from_slice(&offset.to_le_bytes());
    }

    fn write_table(out: &mut Vec<u8>, t: &T) -> usize {
        let slots = t.0.iter().map(|(s, _)| s + 1).max().unwrap_or(0);
        let mut offsets = vec![0u16; slots];
        let mut size = 4;
        for (slot, f) in &t.0 {
            offsets[*slot] = u16::try_from(size).unwrap();
            size += if matches!(f, F::U64(_)) { 8 } else { 4 };
        }
        align(out, 2);
        let vtable = out.len();
        out.extend(u16::try_from(4 + 2 * slots).unwrap().to_le_bytes());
        out.extend(u16::try_from(size).unwrap().to_le_bytes());
        for o in offsets {
            out.extend(o.to_le_bytes());
        }
        align(out, 4);
        let pos = out.len();
        out.extend(i32::try_from(pos - vtable).unwrap().to_le_bytes());
        out.resize(pos + size, 0);
        let mut children = Vec::new();
        let mut at = pos + 4;
        for (_, f) in &t.0 {
            let bytes: Vec<u8> = match f {
                F::I8(v) => v.to_le_bytes().to_vec(),
                F::I32(v) => v.to_le_bytes().to_vec(),
                F::U32(v) => v.to_le_bytes().to_vec(),
                F::U64(v) => v.to_le_bytes().to_vec(),
                _ => {
                    children.push((at, f));
                    vec![]
                }
            };
            out[at..at + bytes.len()].copy_from_slice(&bytes);
            at += if matches!(f, F::U64(_)) { 8 } else { 4 };
        }
        for (at, f) in children {
            let child = write_child(out, f);
            patch(out, at, child);
        }
        pos
    }

    fn write_child(out: &mut Vec<u8>, f: &F) -> usize {
        align(out, 4);
        let pos = out.len();
        let len = |n: usize| u32::try_from(n).unwrap().to_le_bytes();
        match f {
            F::Str(s) => {
                out.extend(len(s.len()));
                out.extend(s.as_bytes());
                out.push(0);
            }
            F::Bytes(b) => {
                out.extend(len(b.len()));
                out.extend(b);
            }
            F::Ints(v) => {
                out.extend(len(v.len()));
                v.iter().for_each(|i| out.extend(i.to_le_bytes()));
            }
            F::Table(t) => return write_table(out, t),
            F::Tables(ts) => {
                out.extend(len(ts.len()));
                out.resize(pos + 4 + 4 * ts.len(), 0);
                for (i, t) in ts.iter().enumerate() {
                    let child = write_table(out, t);
                    patch(out, pos + 4 + 4 * i, child);
                }
            }
            F::I8(_) | F::I32(_) | F::U32(_) | F::U64(_) => unreachable!("scalars are inline"),
        }
        pos
    }

    /// A whole file with `root` as the root table.
    pub fn file(root: &T) -> Vec<u8> {
        let mut out = vec![0u8; 8];
        out[4..8].copy_from_slice(super::FILE_IDENTIFIER);
        let pos = write_table(&mut out, root);
        patch(&mut out, 0, pos);
        out
    }

    /// A tensor of a test model.
    pub struct Tensor {
        pub name: String,
        pub shape: Vec<i32>,
        pub tensor_type: i8,
        pub data: Option<Vec<u8>>,
    }

    /// An activation tensor (float32, no data).
    pub fn activation(name: &str, shape: &[i32]) -> Tensor {
        Tensor {
            name: name.to_owned(),
            shape: shape.to_vec(),
            tensor_type: super::TENSOR_FLOAT32,
            data: None,
        }
    }

    /// A float32 constant.
    pub fn constant(name: &str, shape: &[i32], values: &[f32]) -> Tensor {
        Tensor {
            name: name.to_owned(),
            shape: shape.to_vec(),
            tensor_type: super::TENSOR_FLOAT32,
            data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    /// An int32 constant.
    pub fn int_constant(name: &str, values: &[i32]) -> Tensor {
        Tensor {
            name: name.to_owned(),
            shape: vec![i32::try_from(values.len()).unwrap()],
            tensor_type: super::TENSOR_INT32,
            data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        }
    }

    /// An operator of a test model: builtin code, inputs, outputs, options (union tag and
    /// table).
    pub struct Op {
        pub code: i32,
        pub inputs: Vec<i32>,
        pub outputs: Vec<i32>,
        pub options: Option<(u8, T)>,
    }

    /// `Conv2DOptions` (tag 1).
    pub fn conv_options(padding: i8, stride: i32, activation: i8) -> (u8, T) {
        (
            1,
            T(vec![
                (0, F::I8(padding)),
                (1, F::I32(stride)),
                (2, F::I32(stride)),
                (3, F::I8(activation)),
            ]),
        )
    }

    /// `DepthwiseConv2DOptions` (tag 2).
    pub fn depthwise_options(padding: i8, stride: i32, multiplier: i32) -> (u8, T) {
        (
            2,
            T(vec![
                (0, F::I8(padding)),
                (1, F::I32(stride)),
                (2, F::I32(stride)),
                (3, F::I32(multiplier)),
            ]),
        )
    }

    /// The options of ADD (11), MUL (21) or SUB (28) with a fused activation.
    pub fn elementwise_options(code: i32, activation: i8) -> (u8, T) {
        let tag = match code {
            builtin::ADD => 11,
            builtin::MUL => 21,
            builtin::SUB => 28,
            _ => panic!("no elementwise options for {code}"),
        };
        (tag, T(vec![(0, F::I8(activation))]))
    }

    /// A model with one subgraph.
    pub fn model(tensors: Vec<Tensor>, ops: Vec<Op>, inputs: &[i32], outputs: &[i32]) -> Vec<u8> {
        let mut codes: Vec<i32> = Vec::new();
        let mut buffers = vec![T(vec![])];
        let tensors = tensors
            .into_iter()
            .map(|t| {
                let mut fields = vec![
                    (0, F::Ints(t.shape)),
                    (1, F::I8(t.tensor_type)),
                    (3, F::Str(t.name)),
                ];
                if let Some(data) = t.data {
                    fields.push((2, F::U32(u32::try_from(buffers.len()).unwrap())));
                    buffers.push(T(vec![(0, F::Bytes(data))]));
                }
                T(fields)
            })
            .collect();
        let operators = ops
            .into_iter()
            .map(|op| {
                let index = codes.iter().position(|&c| c == op.code).unwrap_or_else(|| {
                    codes.push(op.code);
                    codes.len() - 1
                });
                let mut fields = vec![
                    (0, F::U32(u32::try_from(index).unwrap())),
                    (1, F::Ints(op.inputs)),
                    (2, F::Ints(op.outputs)),
                ];
                if let Some((tag, table)) = op.options {
                    fields.push((3, F::I8(i8::try_from(tag).unwrap())));
                    fields.push((4, F::Table(table)));
                }
                T(fields)
            })
            .collect();
        let codes = codes
            .into_iter()
            .map(|c| {
                T(vec![
                    (0, F::I8(i8::try_from(c.min(127)).unwrap())),
                    (3, F::I32(c)),
                ])
            })
            .collect();
        file(&T(vec![
            (0, F::U32(super::SCHEMA_VERSION)),
            (1, F::Tables(codes)),
            (
                2,
                F::Tables(vec![T(vec![
                    (0, F::Tables(tensors)),
                    (1, F::Ints(inputs.to_vec())),
                    (2, F::Ints(outputs.to_vec())),
                    (3, F::Tables(operators)),
                ])]),
            ),
            (3, F::Str("test model".to_owned())),
            (4, F::Tables(buffers)),
        ]))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::write::{self, F, T};
    use super::*;

    /// A conv followed by a reshape: every decoded kind of field.
    fn sample() -> Vec<u8> {
        write::model(
            vec![
                write::activation("in", &[1, 4, 4, 2]),
                write::constant("w", &[3, 1, 1, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                write::constant("b", &[3], &[0.5, -0.5, 0.0]),
                write::activation("conv", &[1, 4, 4, 3]),
                write::int_constant("shape", &[1, 48]),
                write::activation("out", &[1, 48]),
            ],
            vec![
                write::Op {
                    code: builtin::CONV_2D,
                    inputs: vec![0, 1, 2],
                    outputs: vec![3],
                    options: Some(write::conv_options(0, 1, 1)),
                },
                write::Op {
                    code: builtin::RESHAPE,
                    inputs: vec![3, 4],
                    outputs: vec![5],
                    options: Some((17, T(vec![(0, F::Ints(vec![1, 48]))]))),
                },
            ],
            &[0],
            &[5],
        )
    }

    #[test]
    fn reads_what_was_written() {
        let model = parse_model(&sample()).unwrap();
        assert_eq!(model.version, SCHEMA_VERSION);
        assert_eq!(model.description, "test model");
        let names: Vec<String> = model
            .operator_codes
            .iter()
            .map(OperatorCode::name)
            .collect();
        assert_eq!(names, ["CONV_2D", "RESHAPE"]);
        let g = &model.subgraphs[0];
        assert_eq!(
            (g.inputs.as_slice(), g.outputs.as_slice()),
            (&[0][..], &[5][..])
        );
        assert_eq!(g.tensors[1].name, "w");
        assert_eq!(g.tensors[1].shape, [3, 1, 1, 2]);
        assert_eq!(g.tensors[4].tensor_type, TENSOR_INT32);
        assert_eq!(g.tensors[0].buffer, 0);
        let w = &model.buffers[g.tensors[1].buffer as usize].data;
        assert_eq!(w[..4], 1f32.to_le_bytes());
        assert_eq!(
            g.operators[0].options,
            BuiltinOptions::Conv2D(Conv2DOptions {
                padding: Padding::Same,
                stride: [1, 1],
                dilation: [1, 1],
                activation: Activation::Relu,
            })
        );
        assert_eq!(g.operators[1].options, BuiltinOptions::Reshape(vec![1, 48]));
        assert_eq!(g.operators[1].inputs, [3, 4]);
    }

    #[test]
    fn names_operators_and_types() {
        assert_eq!(builtin_name(builtin::ABS), "ABS");
        assert_eq!(
            builtin_name(builtin::DEPTHWISE_CONV_2D),
            "DEPTHWISE_CONV_2D"
        );
        assert_eq!(builtin_name(1), "AVERAGE_POOL_2D");
        assert_eq!(builtin_name(9999), "builtin operator 9999");
        assert_eq!(tensor_type_name(TENSOR_FLOAT32), "FLOAT32");
        assert_eq!(tensor_type_name(9), "INT8");
        assert_eq!(tensor_type_name(-3), "tensor type -3");
        // Old files set only the deprecated code; codes above 127 only the new field.
        let code = |deprecated, new| OperatorCode {
            deprecated_builtin_code: deprecated,
            builtin_code: new,
            custom_code: None,
            version: 1,
        };
        assert_eq!(code(4, 0).code(), builtin::DEPTHWISE_CONV_2D);
        assert_eq!(code(127, builtin::ABS).code(), 127);
        assert_eq!(code(0, builtin::ABS).code(), builtin::ABS);
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let file = sample();
        for len in 0..file.len() {
            let err = parse_model(&file[..len]);
            assert!(err.is_err(), "{len} of {} bytes parsed", file.len());
        }
        assert!(matches!(
            parse_model(&file[..20]),
            Err(ReadError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn every_corrupted_byte_is_an_error_or_a_value_never_a_panic() {
        let file = sample();
        for i in 0..file.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = file.clone();
                bad[i] = value;
                let _ = parse_model(&bad);
            }
        }
    }

    #[test]
    fn refuses_other_files() {
        let err = parse_model(b"not a tflite model").unwrap_err();
        assert_eq!(
            err,
            ReadError::NotTflite {
                found: "a tf".to_owned()
            }
        );
        assert!(err.to_string().contains("not a TFLite model"), "{err}");
        let err = parse_model(b"abc").unwrap_err();
        assert!(
            matches!(&err, ReadError::OutOfBounds { what, .. } if what == "file header"),
            "{err}"
        );
    }

    #[test]
    fn a_root_offset_past_the_end_is_named() {
        let mut file = sample();
        let len = u32::try_from(file.len()).unwrap();
        file[..4].copy_from_slice(&len.to_le_bytes());
        let err = parse_model(&file).unwrap_err();
        assert!(
            matches!(&err, ReadError::OutOfBounds { what, .. } if what == "root table offset"),
            "{err}"
        );
    }

    #[test]
    fn a_huge_vector_length_is_out_of_bounds() {
        // A tensor whose shape vector claims 2^30 elements.
        let file = write::file(&T(vec![(
            2,
            F::Tables(vec![T(vec![(
                0,
                F::Tables(vec![T(vec![(0, F::Ints(vec![1, 2]))])]),
            )])]),
        )]));
        let mut bad = file.clone();
        let at = file
            .windows(12)
            .position(|w| w == [2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0])
            .unwrap();
        bad[at..at + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        let err = parse_model(&bad).unwrap_err();
        assert!(
            matches!(&err, ReadError::OutOfBounds { what, .. }
                if what == "model.subgraphs[0].tensors[0].shape"),
            "{err}"
        );
        assert!(err.to_string().contains("needs bytes"), "{err}");
    }

    #[test]
    fn bad_enum_values_and_strings_are_malformed() {
        let conv = |padding| {
            write::file(&T(vec![(
                2,
                F::Tables(vec![T(vec![(
                    3,
                    F::Tables(vec![T(vec![
                        (3, F::I8(1)),
                        (4, F::Table(T(vec![(0, F::I8(padding))]))),
                    ])]),
                )])]),
            )]))
        };
        assert!(parse_model(&conv(1)).is_ok());
        let err = parse_model(&conv(7)).unwrap_err();
        assert_eq!(
            err,
            ReadError::Malformed {
                what: "model.subgraphs[0].operators[0].builtin_options".to_owned(),
                detail: "padding 7 is neither SAME (0) nor VALID (1)".to_owned(),
            }
        );
        // Conv2D options announced but absent.
        let missing = write::file(&T(vec![(
            2,
            F::Tables(vec![T(vec![(3, F::Tables(vec![T(vec![(3, F::I8(1))])]))])]),
        )]));
        assert!(matches!(
            parse_model(&missing).unwrap_err(),
            ReadError::Missing { what } if what == "model.subgraphs[0].operators[0].builtin_options"
        ));
        // Invalid UTF-8 (the buffers written after it supply the NUL terminator).
        let bad_name = write::file(&T(vec![
            (3, F::Bytes(vec![0xff, 0xfe])),
            (4, F::Tables(vec![T(vec![])])),
        ]));
        let err = parse_model(&bad_name).unwrap_err();
        assert!(
            matches!(&err, ReadError::Malformed { what, .. } if what == "model.description"),
            "{err}"
        );
    }

    #[test]
    fn a_field_outside_its_table_is_malformed() {
        let mut file = write::file(&T(vec![(0, F::U32(3))]));
        // The root vtable is at byte 8: sizes (6, 8), then field 0 at offset 4. Point the
        // field at offset 6, whose four bytes would end past the eight-byte table.
        assert_eq!(file[8..14], [6, 0, 8, 0, 4, 0]);
        file[12] = 6;
        let err = parse_model(&file).unwrap_err();
        assert!(
            matches!(&err, ReadError::Malformed { what, detail }
                if what == "model.version" && detail.contains("outside")),
            "{err}"
        );
        // A vtable offset that points before the start of the file.
        let mut file = write::file(&T(vec![(0, F::U32(3))]));
        let root = usize::try_from(u32::from_le_bytes(file[..4].try_into().unwrap())).unwrap();
        file[root..root + 4].copy_from_slice(&1000i32.to_le_bytes());
        let err = parse_model(&file).unwrap_err();
        assert!(
            matches!(&err, ReadError::Malformed { what, .. } if what == "model"),
            "{err}"
        );
    }

    #[test]
    fn external_buffer_data_is_read_and_checked() {
        let mut payload = write::file(&T(vec![(
            4,
            F::Tables(vec![T(vec![]), T(vec![(1, F::U64(0)), (2, F::U64(4))])]),
        )]));
        let at = payload.len() as u64;
        payload.extend([1, 2, 3, 4]);
        // Patch the offset (the 8 bytes before the size 4) now that the data's place is known.
        let size_at = payload
            .windows(8)
            .rposition(|w| w == 4u64.to_le_bytes())
            .unwrap();
        payload[size_at - 8..size_at].copy_from_slice(&at.to_le_bytes());
        let model = parse_model(&payload).unwrap();
        assert_eq!(model.buffers[1].data, [1, 2, 3, 4]);
        payload.truncate(payload.len() - 1);
        let err = parse_model(&payload).unwrap_err();
        assert!(
            matches!(&err, ReadError::OutOfBounds { what, .. }
                if what == "model.buffers[1] (external data)"),
            "{err}"
        );
    }
}
