//! The crops folder: one JPEG per live face token, `<token>.jpg`, deleted with its token.

use std::io;
use std::path::{Path, PathBuf};

use facerec::BoundingBox;
use facerec_store::FaceToken;
use image::DynamicImage;
use image::codecs::jpeg::JpegEncoder;

use crate::ApiError;

/// The folder of face crops. Its files live exactly as long as their tokens: it is emptied at
/// start (tokens do not survive a restart) and a file is deleted when its token is evicted.
#[derive(Debug)]
pub(crate) struct CropDir {
    dir: PathBuf,
}

impl CropDir {
    /// Makes `dir` if needed and deletes every file in it.
    pub(crate) fn open_empty(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut removed = 0usize;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        tracing::info!(dir = %dir.display(), removed, "emptied the crops folder");
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Saves the part of `image` inside `bbox` (clamped to the image) as `<token>.jpg`;
    /// returns the file name.
    pub(crate) fn save(
        &self,
        token: &FaceToken,
        image: &DynamicImage,
        bbox: &BoundingBox,
    ) -> Result<String, ApiError> {
        let name = token.crop_file_name().ok_or_else(|| {
            ApiError::Internal(format!("token '{token}' is not generated and has no crop"))
        })?;
        let (x1, y1, x2, y2) = clamp_box(bbox, image.width(), image.height());
        let crop = image.crop_imm(x1, y1, x2 - x1, y2 - y1).to_rgb8();
        let path = self.dir.join(&name);
        let mut bytes = Vec::new();
        crop.write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, 90))
            .map_err(|e| ApiError::Internal(format!("encoding crop {name}: {e}")))?;
        std::fs::write(&path, bytes)
            .map_err(|e| ApiError::Internal(format!("writing crop {}: {e}", path.display())))?;
        Ok(name)
    }

    /// Deletes the crops of `tokens`; a crop already gone is fine.
    pub(crate) fn remove(&self, tokens: &[FaceToken]) {
        for name in tokens.iter().filter_map(FaceToken::crop_file_name) {
            let path = self.dir.join(name);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot delete crop: {e}"),
            }
        }
        if !tokens.is_empty() {
            tracing::debug!(count = tokens.len(), "deleted crops of evicted tokens");
        }
    }

    /// The bytes of a crop, by file name. Only names this crate makes are accepted, so no
    /// path can leave the folder.
    pub(crate) fn read(&self, name: &str) -> Result<Vec<u8>, ApiError> {
        if FaceToken::from_crop_file_name(name).is_none() {
            return Err(ApiError::BadArgument {
                name: "face_name",
                reason: format!(
                    "'{}' is not a crop name: crops are named <{} letters or digits>.jpg",
                    name.escape_default(),
                    FaceToken::GENERATED_LEN
                ),
            });
        }
        std::fs::read(self.dir.join(name)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ApiError::CropNotFound {
                name: name.to_owned(),
            },
            _ => ApiError::Internal(format!("reading crop {name}: {e}")),
        })
    }

    /// Number of crop files now (for tests and diagnostics).
    pub(crate) fn count(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |entries| entries.flatten().count())
    }
}

/// `bbox` rounded outwards and clamped to a `width` x `height` image, at least 1 px a side.
pub(crate) fn clamp_box(bbox: &BoundingBox, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let clamp = |v: f32, max: u32| (v.max(0.0) as u32).min(max);
    let x1 = clamp(bbox.x1.floor(), width.saturating_sub(1));
    let y1 = clamp(bbox.y1.floor(), height.saturating_sub(1));
    let x2 = clamp(bbox.x2.ceil(), width).max(x1 + 1);
    let y2 = clamp(bbox.y2.ceil(), height).max(y1 + 1);
    (x1, y1, x2, y2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_are_clamped_to_the_image() {
        let b = BoundingBox {
            x1: -5.5,
            y1: 10.2,
            x2: 120.0,
            y2: 30.7,
        };
        assert_eq!(clamp_box(&b, 100, 100), (0, 10, 100, 31));
        let outside = BoundingBox {
            x1: 200.0,
            y1: 200.0,
            x2: 250.0,
            y2: 250.0,
        };
        assert_eq!(clamp_box(&outside, 100, 100), (99, 99, 100, 100));
    }
}
