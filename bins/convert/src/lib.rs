//! Converts dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) to
//! an ONNX model, bit-for-bit reproducibly.
//!
//! - [`dlib`] reads dlib's serialization into layer records;
//! - [`graph`] turns those into an ONNX graph;
//! - [`onnx`] holds the ONNX protobuf messages.
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
