//! Face alignment and embedding: turns a face, given its five landmarks, into a vector whose
//! distance to another face's vector says whether they are the same person.
//!
//! A network is an ONNX file run with `tract-onnx` by an [`Embedder`], described by a
//! [`ModelDescriptor`] (input size, layout, normalisation, landmark template, metric and
//! recommended threshold). Two ship in `models/`, both converted by `facerec-convert`:
//! dlib's face-recognition ResNet (the default: 150x150 chips, 128-d, raw Euclidean distance,
//! same person below 0.6) and MobileFaceNet (112x112 chips, 192-d, unit length).
//!
//! A [`ModelSpec`] is what a face engine embeds with: one network, or several fused (each
//! network's embedding divided by its own threshold, then concatenated, so one Euclidean
//! distance compares the fused embeddings). [`ModelSpec::named`] gives the models of
//! `models/` by the names `--model` takes; a [`ModelEmbedder`] runs one.
//!
//! In f32, on x86-64 CPUs with AVX2 and FMA, a model's padded 3x3 convolutions over larger maps
//! run by Winograd's F(2x2, 3x3) transform (2.25x fewer multiply-adds; values differ from
//! tract's by rounding only), the others on tract. [`EmbedderConfig::int8`] runs a model's
//! convolutions in 8-bit integers on x86-64 CPUs with AVX2 or AVX-512 VNNI
//! ([`int8_available`]): the same ONNX file, weights quantized at load, inputs per image.
//!
//! ```
//! use facerec_embed::{Embedder, EmbedderConfig, ModelDescriptor};
//!
//! let embedder = Embedder::from_dir(
//!     &facerec_fixtures::models_dir(),
//!     ModelDescriptor::dlib_resnet_v1(),
//!     EmbedderConfig::default(),
//! )?;
//! let photo = image::open(facerec_fixtures::photo("obama.jpg")).unwrap().to_rgb8();
//! // Five landmarks (eyes, nose tip, mouth corners) as a detector would report them.
//! let landmarks = [[442.4, 213.4], [548.7, 211.3], [495.2, 277.1], [436.9, 319.0], [552.5, 316.8]];
//! let a = embedder.embed(&photo, &landmarks)?;
//! assert_eq!(a.len(), 128);
//! assert_eq!(a.distance(&a), 0.0);
//!
//! // Both networks, fused: one 320-d embedding per face, compared the same way.
//! use facerec_embed::{ModelEmbedder, ModelSpec};
//! let fused = ModelEmbedder::from_dir(
//!     &facerec_fixtures::models_dir(),
//!     ModelSpec::named("dlib+mobilefacenet").unwrap(),
//!     EmbedderConfig::default(),
//! )?;
//! let f = fused.embed(&photo, &landmarks)?;
//! assert_eq!(f.len(), 320);
//! assert_eq!(fused.nets().len(), 2);
//! # Ok::<(), facerec_embed::Error>(())
//! ```
#![deny(missing_docs)]

mod align;
mod conv;
mod descriptor;
mod embedder;
mod model;
mod q8;
mod winograd;

use std::path::PathBuf;

use tract_onnx::prelude::TractError;

pub use align::{Similarity, chip_to_image, similarity_transform, warp_chip};
pub use descriptor::{Layout, Metric, ModelDescriptor, Normalisation, Warp};
pub use embedder::{Embedder, EmbedderConfig, StepTime};
pub use model::{MODEL_NAMES, ModelEmbedder, ModelName, ModelSpec};
pub use q8::{available as int8_available, kernel_name as int8_kernel};

/// A face embedding in its model's metric space: compare two with [`Embedding::distance`].
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Wraps raw values (already in the model's metric space).
    pub fn new(values: Vec<f32>) -> Self {
        Self(values)
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The values, by value.
    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Euclidean distance to `other`; smaller is more alike. Embeddings of different lengths
    /// are infinitely far apart.
    pub fn distance(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return f32::INFINITY;
        }
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f32>()
            .sqrt()
    }
}

/// Errors of alignment and embedding.
///
/// Where tract, the file system or the JSON parser failed, its error is the
/// [`source`](std::error::Error::source) of this one: print the whole chain (e.g. `{:#}`
/// through `anyhow`) to see their own messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model or descriptor file could not be read.
    #[error("reading {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// tract could not load, type or optimise the model file.
    #[error("loading embedding model {path}")]
    Model {
        /// The file.
        path: PathBuf,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The model's output has another size than the descriptor's `dims`.
    #[error(
        "loading embedding model {path}: model outputs {found} values; descriptor says {expected}"
    )]
    OutputSize {
        /// The file.
        path: PathBuf,
        /// Values the model outputs for one chip.
        found: usize,
        /// The descriptor's `dims`.
        expected: usize,
    },
    /// A descriptor file is not the JSON form of a [`ModelDescriptor`].
    #[error("parsing model descriptor {path}")]
    DescriptorJson {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
    /// The descriptor's `input_size` is out of range.
    #[error("invalid model descriptor: input_size {input_size} is outside 8..=1024")]
    InvalidInputSize {
        /// The value given.
        input_size: u32,
    },
    /// A [`ModelSpec`] has no networks.
    #[error("invalid model {model}: it has no networks")]
    NoParts {
        /// The spec's id.
        model: String,
    },
    /// A [`ModelSpec`]'s id is empty or longer than 255 bytes.
    #[error("invalid model id {id:?}: it must be 1 to 255 bytes")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// The descriptor's `dims` is 0.
    #[error("invalid model descriptor: dims is 0; it must be at least 1")]
    InvalidDims,
    /// The descriptor's `threshold` is not a positive number.
    #[error("invalid model descriptor: threshold {threshold} must be a positive number")]
    InvalidThreshold {
        /// The value given.
        threshold: f32,
    },
    /// A standard deviation of the descriptor's `MeanStd` normalisation is not positive.
    #[error("invalid model descriptor: normalisation std {std:?} must be positive")]
    InvalidStd {
        /// The values given (R, G, B).
        std: [f32; 3],
    },
    /// A point of the descriptor's `template` is not finite.
    #[error("invalid model descriptor: template point {index} is {point:?}; it must be finite")]
    InvalidTemplate {
        /// Which of the five points (0 = image-left eye).
        index: usize,
        /// Its value.
        point: [f32; 2],
    },
    /// [`EmbedderConfig::int8`] was asked for on a CPU with neither AVX2 nor AVX-512 VNNI.
    #[error(
        "int8 embeddings need an x86-64 CPU with AVX2 or AVX-512 VNNI; this one has neither: run in f32 (without --int8)"
    )]
    Int8Unsupported,
    /// The landmarks cannot define an alignment (coincident or not finite).
    #[error("cannot align a face with landmarks {0:?}")]
    Landmarks([[f32; 2]; 5]),
    /// A chip of the wrong size was given to [`Embedder::embed_chip`].
    #[error("chip is {width}x{height}; the model takes {expected}x{expected}")]
    ChipSize {
        /// The model's input side.
        expected: u32,
        /// Given width.
        width: u32,
        /// Given height.
        height: u32,
    },
    /// tract failed to run the model or to hand back its output.
    #[error("running embedding model {model} on a {size}x{size} chip")]
    Inference {
        /// The descriptor's `id`.
        model: String,
        /// The chip side.
        size: u32,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The model ran but returned no output tensor.
    #[error("embedding model {model} returned no output")]
    NoOutput {
        /// The descriptor's `id`.
        model: String,
    },
    /// The model produced a NaN or infinite value.
    #[error("embedding model {model} produced a non-finite value")]
    NonFinite {
        /// The descriptor's `id`.
        model: String,
    },
    /// tract failed to time or describe a step of the model in [`Embedder::profile`].
    #[error("profiling embedding model {model}")]
    Profile {
        /// The descriptor's `id`.
        model: String,
        /// tract's error.
        #[source]
        source: TractError,
    },
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_euclidean() {
        let a = Embedding::new(vec![0.0, 3.0]);
        let b = Embedding::new(vec![4.0, 0.0]);
        assert_eq!(a.distance(&b), 5.0);
        assert_eq!(a.distance(&Embedding::new(vec![1.0])), f32::INFINITY);
    }
}
