//! The pipeline: image -> faces -> embeddings.

use std::borrow::Cow;
use std::path::Path;

use facerec_detect::{BoundingBox, Detection, Detector, DetectorConfig};
use facerec_embed::{EmbedderConfig, Embedding, ModelEmbedder, ModelSpec};
use image::{DynamicImage, RgbImage};
use rayon::prelude::*;

use crate::{DecodeLimits, Result, decode_image};

/// Everything that configures a [`FaceEngine`]; `Default` is the recommended setup.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    /// Detection options (minimum face size 30 px by default).
    pub detector: DetectorConfig,
    /// Embedding options (mirror-flip augmentation off by default).
    pub embedder: EmbedderConfig,
    /// The embedding model: one network or several fused (dlib ResNet v1 alone by default).
    pub model: ModelSpec,
}

/// One face found in an image: where it is, how sure the detector is, its five landmarks
/// (image-left eye, image-right eye, nose tip, image-left and image-right mouth corners) and
/// its embedding. Coordinates are pixels of the upright image.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// Bounding box.
    pub bbox: BoundingBox,
    /// Detector confidence in 0..=1.
    pub score: f32,
    /// Five landmarks, `[x, y]`.
    pub landmarks: [[f32; 2]; 5],
    /// The face's embedding in the model's metric.
    pub embedding: Embedding,
}

impl Face {
    /// Area of the bounding box in square pixels.
    pub fn area(&self) -> f32 {
        self.bbox.area()
    }
}

/// The models, loaded once: share one engine (it is `Send + Sync`) behind an `Arc`.
#[derive(Debug)]
pub struct FaceEngine {
    detector: Detector,
    embedder: ModelEmbedder,
}

impl FaceEngine {
    /// Loads the MTCNN nets and the default embedding model from `models_dir` with the
    /// default configuration.
    pub fn from_dir(models_dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_config(models_dir, EngineConfig::default())
    }

    /// Loads the models from `models_dir` with `config`.
    pub fn with_config(models_dir: impl AsRef<Path>, config: EngineConfig) -> Result<Self> {
        let dir = models_dir.as_ref();
        let detector = Detector::from_dir(dir, config.detector)?;
        let embedder = ModelEmbedder::from_dir(dir, config.model, config.embedder)?;
        Ok(Self { detector, embedder })
    }

    /// The embedding model (its id, dims, recommended threshold and networks).
    pub fn model(&self) -> &ModelSpec {
        self.embedder.spec()
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// The embedder.
    pub fn embedder(&self) -> &ModelEmbedder {
        &self.embedder
    }

    /// Finds every face in `image` and embeds each, most confident first.
    pub fn analyze(&self, image: &DynamicImage) -> Result<Vec<Face>> {
        let rgb = rgb_of(image);
        let detections = self.detector.detect(&rgb)?;
        self.embed_all(&rgb, detections)
    }

    /// [`analyze`](Self::analyze) for faces of at least `min_face_size` pixels only (at least
    /// 6; see [`Detector::detect_min_face`]): faster when only large faces matter.
    pub fn analyze_min_face(&self, image: &DynamicImage, min_face_size: f32) -> Result<Vec<Face>> {
        let rgb = rgb_of(image);
        let detections = self.detector.detect_min_face(&rgb, min_face_size)?;
        self.embed_all(&rgb, detections)
    }

    /// Finds every face in `image` (of at least `min_face_size` pixels, if given) and embeds
    /// only the largest ([`largest_face`]'s choice): what a query by photo needs, one
    /// embedding however many people the photo shows. Returns that face and how many faces
    /// were found, or `None` without a face.
    ///
    /// ```
    /// use facerec::{DecodeLimits, FaceEngine, decode_image};
    ///
    /// let engine = FaceEngine::from_dir(facerec_fixtures::models_dir())?;
    /// let bytes = facerec_fixtures::photo_bytes("group-sample1.jpg");
    /// let group = decode_image(&bytes, &DecodeLimits::default())?;
    /// let (face, found) = engine.analyze_largest(&group, None)?.expect("faces");
    /// let every = engine.analyze(&group)?;
    /// assert_eq!(found, every.len());
    /// assert_eq!(face, every[facerec::largest_face(&every).expect("faces")]);
    /// # Ok::<(), facerec::Error>(())
    /// ```
    pub fn analyze_largest(
        &self,
        image: &DynamicImage,
        min_face_size: Option<f32>,
    ) -> Result<Option<(Face, usize)>> {
        let rgb = rgb_of(image);
        let mut detections = match min_face_size {
            None => self.detector.detect(&rgb)?,
            Some(side) => self.detector.detect_min_face(&rgb, side)?,
        };
        let found = detections.len();
        let Some(largest) = largest_box(detections.iter().map(|d| &d.bbox)) else {
            return Ok(None);
        };
        let face = self.embed_all(&rgb, vec![detections.swap_remove(largest)])?;
        Ok(face.into_iter().next().map(|face| (face, found)))
    }

    /// Decodes `bytes` within `limits` (see [`decode_image`]) and analyses the result.
    pub fn analyze_bytes(&self, bytes: &[u8], limits: &DecodeLimits) -> Result<Vec<Face>> {
        self.analyze(&decode_image(bytes, limits)?)
    }

    /// Finds faces without embedding them.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.detector.detect(image)?)
    }

    /// Embeds the given detections of `image`, in parallel, keeping their order.
    pub fn embed_all(&self, image: &RgbImage, detections: Vec<Detection>) -> Result<Vec<Face>> {
        detections
            .into_par_iter()
            .map(|d| {
                let embedding = self.embedder.embed(image, &d.landmarks)?;
                Ok(Face {
                    bbox: d.bbox,
                    score: d.score,
                    landmarks: d.landmarks,
                    embedding,
                })
            })
            .collect()
    }

    /// Whether two embeddings are of the same person at the model's recommended threshold.
    pub fn same_person(&self, a: &Embedding, b: &Embedding) -> bool {
        a.distance(b) < self.model().threshold
    }
}

/// The index of the largest face, if any (ties: the first).
pub fn largest_face(faces: &[Face]) -> Option<usize> {
    largest_box(faces.iter().map(|f| &f.bbox))
}

/// The index of the box of largest area, if any (ties: the first).
fn largest_box<'a>(boxes: impl Iterator<Item = &'a BoundingBox>) -> Option<usize> {
    boxes
        .enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, b)| match best {
            Some((_, area)) if area >= b.area() => best,
            _ => Some((i, b.area())),
        })
        .map(|(i, _)| i)
}

/// `image`'s pixels as RGB: borrowed when they already are, converted otherwise.
fn rgb_of(image: &DynamicImage) -> Cow<'_, RgbImage> {
    match image.as_rgb8() {
        Some(rgb) => Cow::Borrowed(rgb),
        None => Cow::Owned(image.to_rgb8()),
    }
}

/// The index of the face a portrait is most likely about: large and near the centre
/// (`area - 2 * squared distance of its centre from the image centre`), as used for LFW.
pub fn central_face(boxes: &[BoundingBox], width: u32, height: u32) -> Option<usize> {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let score = |b: &BoundingBox| {
        let (bx, by) = ((b.x1 + b.x2) / 2.0, (b.y1 + b.y2) / 2.0);
        b.area() - 2.0 * ((bx - cx).powi(2) + (by - cy).powi(2))
    };
    boxes
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| score(a).total_cmp(&score(b)))
        .map(|(i, _)| i)
}
