//! Converts the face-embedding models facerec uses to ONNX, bit-for-bit reproducibly: the same
//! input gives the same bytes on every run (no timestamps, fixed names, fixed order).
//!
//! Two conversions:
//!
//! - dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`):
//!   [`dlib`] reads dlib's serialization into layer records and [`graph`] turns those into an
//!   ONNX graph; [`convert_dlib_resnet`] does both on the bytes of a `.dat` file.
//! - MobileFaceNet from TFLite (`MobileFaceNet.tflite`): [`tflite`] reads the FlatBuffers
//!   file (a small safe reader of the schema subset needed) and [`mobilefacenet`] translates
//!   its graph (weights transposed to ONNX layout, TensorFlow `SAME` padding made explicit,
//!   TOCO's written-out PReLU recognised as one `PRelu`); [`convert_mobilefacenet`] does both.
//!
//! Both build their graphs with [`graph`]'s shared node, initializer and model-assembly parts
//! and write them with the protobuf messages in [`onnx`]. The `facerec-convert` command
//! (`bins/convert`) wraps the two functions, and `models/README.md` says where the source
//! files come from. The dlib graph builder also takes a network written in code:
//!
//! ```
//! use facerec_convert::dlib::{Element, Fc, Layer, MetricLoss, Network, RgbInput};
//! use facerec_convert::graph::{self, Provenance};
//! use facerec_convert::{ConvertError, convert_dlib_resnet};
//!
//! // A 2x2 RGB input and one fully connected layer with 4 outputs.
//! let network = Network {
//!     loss: MetricLoss { margin: 0.04, dist_thresh: 0.6 },
//!     input: RgbInput { mean: [122.782, 117.001, 104.298], rows: 2, cols: 2 },
//!     elements: vec![Element::Layer(Layer::Fc(Fc {
//!         num_inputs: 12,
//!         num_outputs: 4,
//!         weights: vec![0.5; 12 * 4],
//!         biases: None,
//!     }))],
//! };
//! let model = graph::build_model(&network, &Provenance::default())?;
//! assert_eq!(model.producer_name, "facerec-convert");
//! assert_eq!(graph::op_counts(&model)["MatMul"], 1);
//!
//! // Bytes that are not a dlib network are refused with a typed error.
//! let err = convert_dlib_resnet(b"not a dlib network", "x.dat").unwrap_err();
//! assert!(matches!(err, ConvertError::Parse(_)), "{err}");
//!
//! // Likewise bytes that are not a TFLite model.
//! let err = facerec_convert::convert_mobilefacenet(b"not a TFLite model", "x.tflite")
//!     .unwrap_err();
//! assert!(matches!(err, ConvertError::Tflite(_)), "{err}");
//! # Ok::<(), ConvertError>(())
//! ```
#![deny(missing_docs)]

pub mod dlib;
pub mod graph;
pub mod mobilefacenet;
pub mod onnx;
pub mod tflite;

use prost::Message;
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Why a conversion failed.
#[derive(Debug, Error)]
pub enum ConvertError {
    /// The input is not a dlib network of the supported kind.
    #[error("not a supported dlib face-recognition network")]
    Parse(#[from] dlib::ParseError),
    /// The network cannot be expressed in ONNX by this converter.
    #[error("cannot build the ONNX graph")]
    Graph(#[from] graph::GraphError),
    /// The input is not a readable TFLite model.
    #[error("not a readable TFLite model")]
    Tflite(#[from] tflite::ReadError),
    /// The TFLite graph uses something the MobileFaceNet translation does not translate.
    #[error("cannot translate the TFLite graph to ONNX")]
    Translate(#[from] mobilefacenet::TranslateError),
}

/// The result of converting a dlib network.
#[derive(Debug)]
pub struct Conversion {
    /// The parsed dlib network.
    pub network: dlib::Network,
    /// The ONNX model.
    pub model: onnx::ModelProto,
    /// The serialized ONNX model.
    pub bytes: Vec<u8>,
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Converts the bytes of a dlib face-recognition ResNet `.dat` file; `source_name` is
/// recorded in the model's metadata together with the input's sha256.
pub fn convert_dlib_resnet(dat: &[u8], source_name: &str) -> Result<Conversion, ConvertError> {
    let network = dlib::parse_network(dat)?;
    let provenance = graph::Provenance {
        source_name: source_name.to_owned(),
        source_sha256: sha256_hex(dat),
    };
    let model = graph::build_model(&network, &provenance)?;
    let bytes = model.encode_to_vec();
    Ok(Conversion {
        network,
        model,
        bytes,
    })
}

/// The result of converting a TFLite MobileFaceNet.
#[derive(Debug)]
pub struct MobileFaceNetConversion {
    /// The parsed TFLite model.
    pub source: tflite::Model,
    /// The ONNX model.
    pub model: onnx::ModelProto,
    /// The serialized ONNX model.
    pub bytes: Vec<u8>,
}

/// Converts the bytes of a MobileFaceNet `.tflite` file (float32, as TOCO writes it); the
/// model's input is `input` `float32 [N, 3, 112, 112]` (NCHW, RGB, normalised by the caller
/// as `(pixel - 127.5) / 128`) and its output `embedding` `float32 [N, 192]` (not
/// normalised). `source_name` is recorded in the model's metadata together with the input's
/// sha256.
pub fn convert_mobilefacenet(
    tflite: &[u8],
    source_name: &str,
) -> Result<MobileFaceNetConversion, ConvertError> {
    let source = tflite::parse_model(tflite)?;
    let provenance = graph::Provenance {
        source_name: source_name.to_owned(),
        source_sha256: sha256_hex(tflite),
    };
    let model = mobilefacenet::build_model(&source, &provenance)?;
    let bytes = model.encode_to_vec();
    Ok(MobileFaceNetConversion {
        source,
        model,
        bytes,
    })
}
