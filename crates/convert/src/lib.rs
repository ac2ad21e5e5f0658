//! Converts dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) to
//! an ONNX model, bit-for-bit reproducibly: the same input gives the same bytes on every run
//! (no timestamps, fixed names, fixed order).
//!
//! - [`dlib`] reads dlib's serialization into layer records;
//! - [`graph`] turns those into an ONNX graph;
//! - [`onnx`] holds the ONNX protobuf messages.
//!
//! [`convert_dlib_resnet`] does all three on the bytes of a `.dat` file; the
//! `facerec-convert` command (`bins/convert`) wraps it, and `models/README.md` says where the
//! `.dat` comes from. The graph builder also takes a network written in code:
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
//! # Ok::<(), ConvertError>(())
//! ```
#![deny(missing_docs)]

pub mod dlib;
pub mod graph;
pub mod onnx;

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
