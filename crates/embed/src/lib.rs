//! Face alignment and embedding: turns a face, given its five landmarks, into a vector whose
//! distance to another face's vector says whether they are the same person.
//!
//! The model is an ONNX file run with `tract-onnx`, described by a [`ModelDescriptor`] (input
//! size, layout, normalisation, landmark template, metric and recommended threshold). The
//! default is dlib's face-recognition ResNet converted by `facerec-convert`: 150x150 chips,
//! 128-d embeddings, raw Euclidean distance, same person below 0.6.
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
//! # Ok::<(), facerec_embed::Error>(())
//! ```
#![deny(missing_docs)]

mod align;
mod descriptor;
mod embedder;

use std::path::PathBuf;

pub use align::{Similarity, chip_to_image, similarity_transform, warp_chip};
pub use descriptor::{Layout, Metric, ModelDescriptor, Normalisation, Warp};
pub use embedder::{Embedder, EmbedderConfig, StepTime};

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
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model or descriptor file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The model file is not a usable ONNX model for this descriptor.
    #[error("loading embedding model {path}: {message}")]
    Model {
        /// The file.
        path: PathBuf,
        /// What tract or the check said.
        message: String,
    },
    /// The descriptor is inconsistent.
    #[error("invalid model descriptor: {0}")]
    Descriptor(String),
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
    /// Running the model failed.
    #[error("running the embedding model: {0}")]
    Inference(String),
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
