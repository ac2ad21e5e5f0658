//! Records, result types, validation and the on-disk record encoding.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::token::FaceToken;
/// Longest face name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest face set name, in characters (all ASCII).
pub const MAX_SET_NAME_CHARS: usize = 64;
/// Longest model id, in bytes of UTF-8.
pub const MAX_MODEL_ID_BYTES: usize = 255;

/// Version of the record and meta encoding this code writes (and the newest
/// it reads).
pub const FORMAT_VERSION: u8 = 1;

/// One enrolled face, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRecord {
    /// Key of the face.
    pub token: FaceToken,
    /// Name given to the face, at most 256 bytes of UTF-8 (may be empty).
    pub name: String,
    /// The embedding, in the model's own metric; length = the store's dims.
    pub embedding: Vec<f32>,
    /// Id of the model that made the embedding; must equal the store's.
    pub model_id: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

impl FaceRecord {
    /// A record created now.
    pub fn new(
        token: FaceToken,
        name: impl Into<String>,
        embedding: Vec<f32>,
        model_id: impl Into<String>,
    ) -> Self {
        Self {
            token,
            name: name.into(),
            embedding,
            model_id: model_id.into(),
            created_unix_ms: now_unix_ms(),
        }
    }
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Match {
    /// Token of the matching face.
    pub token: FaceToken,
    /// Name of the matching face.
    pub name: String,
    /// Euclidean distance between the query and the face's embedding.
    pub distance: f32,
}

/// A face set and how many faces it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceSetInfo {
    /// Name of the face set.
    pub name: String,
    /// Number of faces in it.
    pub count: usize,
}

/// A face as listed (without its embedding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceSummary {
    /// Token of the face.
    pub token: FaceToken,
    /// Name of the face.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
}

/// Whether an add made a new face or replaced one with the same token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    /// The token was not in the set.
    Inserted,
    /// The token was in the set; its record was replaced.
    Replaced,
}

/// Milliseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Checks a face set name: 1-64 characters of `A-Z a-z 0-9 _ -`.
pub fn validate_set_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SET_NAME_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSetName {
            name: name.to_owned(),
        })
    }
}

/// Checks a face name: at most 256 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_BYTES {
        Err(Error::NameTooLong {
            len: name.len(),
            max: MAX_NAME_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Checks a vector's length and that every value is finite.
pub fn validate_vector(what: &'static str, v: &[f32], dims: usize) -> Result<()> {
    if v.len() != dims {
        return Err(Error::WrongDims {
            what,
            got: v.len(),
            expected: dims,
        });
    }
    if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFinite { what, index, value });
    }
    Ok(())
}

/// Encodes a record (already validated) in format version 1:
///
/// | bytes | field |
/// |---|---|
/// | 1 | format version (1) |
/// | 8 | created_unix_ms, u64 LE |
/// | 1 + n | token length (u8), token UTF-8 |
/// | 2 + n | name length (u16 LE), name UTF-8 |
/// | 1 + n | model id length (u8), model id UTF-8 |
/// | 4 + 4·d | dims (u32 LE), d × f32 LE |
pub(crate) fn encode(rec: &FaceRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        1 + 8
            + 1
            + rec.token.as_str().len()
            + 2
            + rec.name.len()
            + 1
            + rec.model_id.len()
            + 4
            + 4 * rec.embedding.len(),
    );
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&rec.created_unix_ms.to_le_bytes());
    // Lengths were validated (token <= 64, name <= 256, model id <= 255); the
    // fallbacks below are never taken.
    let token = rec.token.as_str();
    out.push(u8::try_from(token.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(token.as_bytes());
    out.extend_from_slice(
        &u16::try_from(rec.name.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(rec.name.as_bytes());
    out.push(u8::try_from(rec.model_id.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(rec.model_id.as_bytes());
    out.extend_from_slice(
        &u32::try_from(rec.embedding.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for x in &rec.embedding {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a dyn Fn() -> String,
}

impl<'a> Reader<'a> {
    fn corrupt(&self, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            what: (self.what)(),
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(self.corrupt(format!(
                "record is {} bytes long; it ends inside the {field}",
                self.buf.len()
            ))),
        }
    }

    fn array<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn str(&mut self, n: usize, field: &str) -> Result<&'a str> {
        let s = self.take(n, field)?;
        std::str::from_utf8(s).map_err(|e| self.corrupt(format!("{field} is not UTF-8: {e}")))
    }
}

/// The part of a record before its embedding.
pub(crate) struct Head<'a> {
    pub created_unix_ms: u64,
    pub token: &'a str,
    pub name: &'a str,
    pub model_id: &'a str,
}

impl Head<'_> {
    /// The record's token as a [`FaceToken`]; a stored token that is not one is corruption.
    pub(crate) fn face_token(&self, what: &dyn Fn() -> String) -> Result<FaceToken> {
        FaceToken::parse(self.token).map_err(|e| Error::Corrupt {
            what: what(),
            reason: e.to_string(),
        })
    }
}

fn decode_head<'a>(r: &mut Reader<'a>) -> Result<Head<'a>> {
    let [version] = r.array::<1>("format version")?;
    if version == 0 || version > FORMAT_VERSION {
        return Err(r.corrupt(format!(
            "record has format version {version}; this program knows 1 to {FORMAT_VERSION}"
        )));
    }
    let created_unix_ms = u64::from_le_bytes(r.array::<8>("creation time")?);
    let [tlen] = r.array::<1>("token length")?;
    let token = r.str(usize::from(tlen), "token")?;
    let nlen = u16::from_le_bytes(r.array::<2>("name length")?);
    let name = r.str(usize::from(nlen), "name")?;
    let [mlen] = r.array::<1>("model id length")?;
    let model_id = r.str(usize::from(mlen), "model id")?;
    Ok(Head {
        created_unix_ms,
        token,
        name,
        model_id,
    })
}

/// Decodes the head of a record and hands its embedding to `embedding`
/// (one call per value, in order), checking there are exactly `dims` values.
pub(crate) fn decode_with<'a>(
    bytes: &'a [u8],
    dims: usize,
    what: &'a dyn Fn() -> String,
    mut embedding: impl FnMut(f32),
) -> Result<Head<'a>> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        what,
    };
    let head = decode_head(&mut r)?;
    let d = u32::from_le_bytes(r.array::<4>("embedding length")?) as usize;
    if d != dims {
        return Err(r.corrupt(format!(
            "embedding has {d} values; this store holds {dims}-d embeddings"
        )));
    }
    let raw = r.take(d.saturating_mul(4), "embedding")?;
    if r.pos != bytes.len() {
        return Err(r.corrupt(format!(
            "{} unexpected bytes after the embedding",
            bytes.len() - r.pos
        )));
    }
    for c in raw.chunks_exact(4) {
        embedding(f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    Ok(head)
}

/// Decodes a whole record.
pub(crate) fn decode(bytes: &[u8], dims: usize, what: &dyn Fn() -> String) -> Result<FaceRecord> {
    let mut embedding = Vec::with_capacity(dims);
    let head = decode_with(bytes, dims, what, |x| embedding.push(x))?;
    Ok(FaceRecord {
        token: head.face_token(what)?,
        name: head.name.to_owned(),
        embedding,
        model_id: head.model_id.to_owned(),
        created_unix_ms: head.created_unix_ms,
    })
}

/// Decodes a record's token, name and creation time only.
pub(crate) fn decode_summary(bytes: &[u8], what: &dyn Fn() -> String) -> Result<FaceSummary> {
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        what,
    };
    let head = decode_head(&mut r)?;
    Ok(FaceSummary {
        token: head.face_token(what)?,
        name: head.name.to_owned(),
        created_unix_ms: head.created_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what() -> String {
        "test record".to_owned()
    }

    fn rec() -> FaceRecord {
        FaceRecord {
            token: FaceToken::parse("tok_0123456789abcdefghij").unwrap(),
            name: "Zoë O'Neil".into(),
            embedding: vec![1.5, -0.25, 3.0e-8, f32::MAX],
            model_id: "sface-2021dec".into(),
            created_unix_ms: 1_700_000_000_123,
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let r = rec();
        let bytes = encode(&r);
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(bytes.len(), 1 + 8 + 1 + 24 + 2 + 11 + 1 + 13 + 4 + 16);
        // embedding is little-endian f32 at the end
        assert_eq!(
            &bytes[bytes.len() - 16..bytes.len() - 12],
            &1.5f32.to_le_bytes()
        );
        assert_eq!(decode(&bytes, 4, &what).unwrap(), r);
        let s = decode_summary(&bytes, &what).unwrap();
        assert_eq!(s.token, r.token);
        assert_eq!(s.name, r.name);
        assert_eq!(s.created_unix_ms, r.created_unix_ms);
    }

    #[test]
    fn decode_rejects_damage() {
        let bytes = encode(&rec());
        for cut in 0..bytes.len() {
            assert!(
                matches!(decode(&bytes[..cut], 4, &what), Err(Error::Corrupt { .. })),
                "truncated at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, 4, &what),
            Err(Error::Corrupt { .. })
        ));
        let mut newer = bytes.clone();
        newer[0] = FORMAT_VERSION + 1;
        let err = decode(&newer, 4, &what).unwrap_err().to_string();
        assert!(err.contains("format version 2"), "{err}");
        assert!(matches!(
            decode(&bytes, 5, &what),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn set_names() {
        for ok in ["a", "A-z_09", &"x".repeat(64)] {
            validate_set_name(ok).unwrap();
        }
        for bad in ["", "a b", "é", "a/b", "a.b", &"x".repeat(65)] {
            assert!(matches!(
                validate_set_name(bad),
                Err(Error::InvalidSetName { .. })
            ));
        }
        assert_eq!(
            validate_set_name("a b").unwrap_err().to_string(),
            "face set name 'a b' is invalid: use 1-64 characters of A-Z a-z 0-9 _ -"
        );
    }

    #[test]
    fn names_vectors() {
        validate_name("").unwrap();
        validate_name(&"é".repeat(128)).unwrap();
        assert!(matches!(
            validate_name(&"é".repeat(129)),
            Err(Error::NameTooLong { len: 258, max: 256 })
        ));
        validate_vector("embedding", &[0.0; 8], 8).unwrap();
        assert_eq!(
            validate_vector("embedding", &[0.0; 64], 128)
                .unwrap_err()
                .to_string(),
            "embedding has 64 values; this store holds 128-d embeddings"
        );
        assert!(matches!(
            validate_vector("query", &[0.0, f32::NAN], 2),
            Err(Error::NonFinite { index: 1, .. })
        ));
    }
}
