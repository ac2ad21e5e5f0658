//! facerec: find every face in a photo and turn each into an embedding whose distance to
//! another says whether they are the same person. Pure Rust on `tract`, no web layer.
//!
//! [`FaceEngine`] loads the models once (MTCNN detection from `facerec-detect`, alignment and
//! the 128-d dlib ResNet embedding from `facerec-embed`); [`decode_image`] turns uploaded bytes
//! into an upright image, refusing what is not a sane JPEG or PNG.
//!
//! ```
//! use facerec::{DecodeLimits, FaceEngine, decode_image};
//!
//! let engine = FaceEngine::from_dir(facerec_fixtures::models_dir())?;
//! let load = |name| decode_image(&facerec_fixtures::photo_bytes(name), &DecodeLimits::default());
//! let a = engine.analyze(&load("obama.jpg")?)?;
//! let b = engine.analyze(&load("obama2.jpg")?)?;
//! let distance = a[0].embedding.distance(&b[0].embedding);
//! assert!(distance < engine.model().threshold, "same person: {distance}");
//! # Ok::<(), facerec::Error>(())
//! ```
#![deny(missing_docs)]

mod decode;
mod engine;

pub use decode::{DecodeLimits, ImageFormat, decode_image, sniff_format};
pub use engine::{EngineConfig, Face, FaceEngine, central_face, largest_face};
pub use facerec_detect::{BoundingBox, Detection, Detector, DetectorConfig, LevelTimings, Timings};
pub use facerec_embed::{
    Embedder, EmbedderConfig, Embedding, Layout, MODEL_NAMES, Metric, ModelDescriptor,
    ModelEmbedder, ModelName, ModelSpec, Normalisation, Warp, int8_available, int8_kernel,
};

/// Errors of the pipeline: the image was refused, or a model failed.
///
/// `Detect` and `Embed` are transparent: their message is the detector's or embedder's, and
/// [`source`](std::error::Error::source) goes on to its cause (tract's error, for instance),
/// so walking the chain (`{:#}` through `anyhow`) shows every step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a JPEG or PNG.
    #[error("unsupported image format ({found}): only JPEG and PNG are accepted")]
    UnsupportedFormat {
        /// What the content looked like (`GIF`, `unknown`, `empty`, ...).
        found: &'static str,
    },
    /// The file is larger than allowed.
    #[error("image file is {bytes} bytes; the limit is {max}")]
    FileTooLarge {
        /// Size of the file.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The image is smaller than allowed.
    #[error("image is {width}x{height} px; each side must be at least {min} px")]
    TooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The minimum side.
        min: u32,
    },
    /// The image is larger than allowed.
    #[error("image is {width}x{height} px; each side must be at most {max} px")]
    TooLarge {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The maximum side.
        max: u32,
    },
    /// The file claims to be a JPEG or PNG but cannot be decoded: the `image` crate's error
    /// (or, for a JPEG without its end-of-image marker, an unexpected-end-of-file I/O error).
    // The message repeats the decoder's reason: facerec-api sends this message alone (not the
    // chain) to the client, who needs the reason.
    #[error("image cannot be decoded: {0}")]
    Corrupt(#[source] image::ImageError),
    /// Detection failed.
    #[error(transparent)]
    Detect(#[from] facerec_detect::Error),
    /// Alignment or embedding failed.
    #[error(transparent)]
    Embed(#[from] facerec_embed::Error),
}

/// Result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;
