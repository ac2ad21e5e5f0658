//! Batch enrolment: many photos, each with a name, enrolled in one face set by one request
//! (`POST /faceset/{set}/faces`) or one call ([`FaceService::enroll`](crate::FaceService::enroll)).
//!
//! Each photo's largest face is enrolled; a photo that cannot be read or has no face gets its
//! own error and does not stop the others. Every face found is written in one store write
//! once the whole request has been read, so a request cut short writes nothing. The token of
//! an enrolled face is derived from the face set and the photo's bytes
//! ([`enrolment_token`]): enrolling the same file again replaces its record rather than
//! adding a second one, which makes an interrupted batch safe to send again.

use actix_multipart::Multipart;
use actix_web::HttpRequest;
use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use facerec_store::FaceToken;

use crate::input::{LimitedBody, decode_base64, drain, multipart_error, read_body, read_field};
use crate::{ApiError, ErrorCode, Limits};

/// One photo of a batch enrolment.
#[derive(Debug, Clone)]
pub struct EnrollImage {
    /// The name its face is enrolled under.
    pub name: String,
    /// What the caller calls the photo (a file name), echoed in its result.
    pub file_name: String,
    /// The JPEG or PNG bytes.
    pub bytes: Bytes,
}

/// What became of one photo of a batch, in the order they were given.
#[derive(Debug, Clone)]
pub struct EnrollResult {
    /// Its place in the batch, from 0.
    pub index: usize,
    /// Its file name, as given.
    pub file_name: String,
    /// Its face name, as given.
    pub name: String,
    /// The enrolled face, or why none was.
    pub outcome: Result<EnrolledFace, EnrollError>,
}

/// A face enrolled by a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledFace {
    /// Its token in the face set (see [`enrolment_token`]).
    pub token: FaceToken,
    /// Faces found in the photo; when more than one, the largest was enrolled.
    pub face_count: usize,
}

/// Why a photo of a batch was not enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollError {
    /// The API error code (1004 for an unreadable image, 1007 for no face).
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub detail: String,
}

/// The token a batch enrolment gives the face of `bytes` in face set `set`: 24 letters and
/// digits taken from SHA-256 of the set name and the bytes, so that the same file enrolled
/// in the same set again keeps its token (and replaces its record).
///
/// ```
/// let a = facerec_api::enrolment_token("staff", b"photo");
/// assert_eq!(a, facerec_api::enrolment_token("staff", b"photo"));
/// assert_ne!(a, facerec_api::enrolment_token("guests", b"photo"));
/// assert!(a.is_generated_form());
/// ```
pub fn enrolment_token(set: &str, bytes: &[u8]) -> FaceToken {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut hash = Sha256::new();
    hash.update((set.len() as u64).to_le_bytes());
    hash.update(set.as_bytes());
    hash.update(bytes);
    let digest = hash.finalize();
    // 32 bytes as a big number in base 62: 24 digits take about 143 of its 256 bits
    let mut number = digest.to_vec();
    let mut text = Vec::with_capacity(FaceToken::GENERATED_LEN);
    for _ in 0..FaceToken::GENERATED_LEN {
        let mut rest = 0u32;
        for byte in &mut number {
            let value = (rest << 8) | u32::from(*byte);
            *byte = (value / 62) as u8;
            rest = value % 62;
        }
        text.push(ALPHABET[rest as usize]);
    }
    let text = String::from_utf8(text).unwrap_or_default();
    FaceToken::parse(&text).unwrap_or_else(|_| FaceToken::generate())
}

/// The body of `POST /faceset/{set}/faces`, read and checked: the photos, each with its name.
#[derive(Debug)]
pub(crate) struct BatchInput {
    pub(crate) images: Vec<EnrollImage>,
}

impl BatchInput {
    /// The largest body of a batch under `limits`.
    pub(crate) fn max_body(limits: &Limits) -> usize {
        limits.max_body(limits.max_batch_images.max(1))
    }
}

/// Reads a multipart batch: a text part `name`, then the photo it names as a file part
/// `image_file` (or base64 text `image_base64`), again for each photo.
pub(crate) async fn read_batch(
    req: &HttpRequest,
    payload: Payload,
    limits: &Limits,
) -> Result<BatchInput, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).to_ascii_lowercase())
        .unwrap_or_default();
    if !content_type.trim_start().starts_with("multipart/form-data") {
        return Err(ApiError::Upload {
            reason: format!(
                "a batch enrolment is a multipart/form-data body (a `name` part, then its \
                 `image_file` part, for each photo), not '{}'",
                if content_type.is_empty() {
                    "no Content-Type"
                } else {
                    content_type.as_str()
                }
            ),
        });
    }
    let max_body = BatchInput::max_body(limits);
    let too_large = ApiError::BodyTooLarge {
        limit: max_body,
        uploads: true,
    };
    let images = read_body(req, payload, max_body, too_large, limits, |body| {
        read_parts(req, body, limits)
    })
    .await?;
    if images.is_empty() {
        return Err(ApiError::MissingArgument {
            name: "name and image_file",
        });
    }
    Ok(BatchInput { images })
}

async fn read_parts(
    req: &HttpRequest,
    body: LimitedBody,
    limits: &Limits,
) -> Result<Vec<EnrollImage>, ApiError> {
    let mut multipart = Multipart::new(req.headers(), body);
    let mut images = Vec::new();
    let mut name: Option<String> = None;
    let mut parts = 0usize;
    // a name and an image per photo, and a few parts more for clients that add their own
    let max_parts = limits.max_batch_images * 2 + limits.max_fields;
    while let Some(field) = multipart.next().await {
        let mut field = field.map_err(multipart_error)?;
        parts += 1;
        if parts > max_parts {
            return Err(ApiError::Upload {
                reason: format!("more than {max_parts} multipart parts"),
            });
        }
        let field_name = field.name().unwrap_or_default().to_owned();
        let is_image = matches!(field_name.as_str(), "image_file" | "image_base64");
        if is_image && images.len() == limits.max_batch_images {
            return Err(ApiError::BadArgument {
                name: "image_file",
                reason: format!(
                    "more than {} photos in one batch; send the rest in another request",
                    limits.max_batch_images
                ),
            });
        }
        match field_name.as_str() {
            "name" => {
                let limit = limits.max_text_bytes;
                let bytes =
                    read_field(&mut field, limit)
                        .await?
                        .ok_or_else(|| ApiError::BadArgument {
                            name: "name",
                            reason: format!("longer than {limit} bytes"),
                        })?;
                let text =
                    String::from_utf8(bytes.to_vec()).map_err(|_| ApiError::BadArgument {
                        name: "name",
                        reason: "not UTF-8".to_owned(),
                    })?;
                facerec_store::validate_name(&text).map_err(|e| ApiError::BadArgument {
                    name: "name",
                    reason: format!("photo {}: {e}", images.len() + 1),
                })?;
                if name.replace(text).is_some() {
                    return Err(ApiError::MissingArgument {
                        name: "image_file (two `name` parts follow each other)",
                    });
                }
            }
            "image_file" | "image_base64" => {
                let index = images.len();
                let Some(face_name) = name.take() else {
                    return Err(ApiError::MissingArgument {
                        name: "name (each photo's part must follow a `name` part)",
                    });
                };
                let limit = limits.decode.max_bytes;
                let (file_name, bytes) = if field_name == "image_file" {
                    let file_name = field
                        .content_disposition()
                        .and_then(|cd| cd.get_filename())
                        .map(str::to_owned);
                    let bytes = read_field(&mut field, limit).await?.ok_or_else(|| {
                        ApiError::FileTooLarge {
                            field: format!("image_file (photo {})", index + 1),
                            limit,
                        }
                    })?;
                    (file_name, bytes)
                } else {
                    let text_limit = limits.max_base64_bytes();
                    let text = read_field(&mut field, text_limit).await?.ok_or_else(|| {
                        ApiError::FileTooLarge {
                            field: format!("image_base64 (photo {})", index + 1),
                            limit,
                        }
                    })?;
                    let text = std::str::from_utf8(&text).map_err(|_| ApiError::BadArgument {
                        name: "image_base64",
                        reason: format!("photo {}: not UTF-8", index + 1),
                    })?;
                    (None, decode_base64("image_base64", text, limit)?)
                };
                images.push(EnrollImage {
                    name: face_name,
                    file_name: file_name.unwrap_or_else(|| format!("photo {}", index + 1)),
                    bytes,
                });
            }
            _ => drain(&mut field).await?,
        }
    }
    if name.is_some() {
        return Err(ApiError::MissingArgument {
            name: "image_file (the last `name` part has no photo after it)",
        });
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stable_distinct_and_well_formed() {
        let a = enrolment_token("default", &[1, 2, 3]);
        assert_eq!(a, enrolment_token("default", &[1, 2, 3]));
        assert_ne!(a, enrolment_token("default", &[1, 2, 4]));
        assert_ne!(a, enrolment_token("defaul", &[b't', 1, 2, 3]));
        assert!(a.is_generated_form());
        assert_eq!(a.as_str().len(), FaceToken::GENERATED_LEN);
    }
}
