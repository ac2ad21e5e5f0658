//! [`FaceToken`]: the opaque key of a face, from generation to its crop's file name.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest face token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 64;

/// The key of a face: handed out by detection, kept by the token cache and
/// the face sets, and the stem of the face's crop file.
///
/// Cheap to clone (an `Arc<str>` inside). A `FaceToken` is always 1-[`MAX_TOKEN_BYTES`] bytes of UTF-8, so anything
/// that holds one need not check it again. Tokens made here
/// ([`generate`](Self::generate)) are [`GENERATED_LEN`](Self::GENERATED_LEN)
/// ASCII letters and digits; tokens [`parse`](Self::parse)d from clients or
/// other stores may be any 1-64 bytes, but only generated-form tokens have a
/// crop file name, so no client-chosen text ever becomes a path.
///
/// ```
/// use facerec_store::FaceToken;
///
/// let token = FaceToken::generate();
/// assert_eq!(token.as_str().len(), FaceToken::GENERATED_LEN);
/// let crop = token.crop_file_name().expect("generated tokens have crops");
/// assert_eq!(FaceToken::from_crop_file_name(&crop), Some(token.clone()));
///
/// assert!(FaceToken::parse("enrolled-by-hand").is_ok());
/// assert!(FaceToken::parse("").is_err());
/// assert!(FaceToken::parse(&"x".repeat(65)).is_err());
/// assert_eq!(FaceToken::parse("../etc/passwd")?.crop_file_name(), None);
/// # Ok::<(), facerec_store::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FaceToken(Arc<str>);

impl FaceToken {
    /// Length of the tokens [`generate`](Self::generate) makes.
    pub const GENERATED_LEN: usize = 24;

    /// The characters of generated tokens: `0-9 A-Z a-z`.
    pub const ALPHABET: [char; 62] = [
        '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H',
        'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z',
        'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 'p', 'q', 'r',
        's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
    ];

    /// Extension of crop files.
    const CROP_SUFFIX: &'static str = ".jpg";

    /// A new random token: 24 letters and digits (62^24, about 143 bits, so a
    /// collision is not a practical concern; callers that must rule it out
    /// check their own map).
    pub fn generate() -> Self {
        Self(nanoid::nanoid!(Self::GENERATED_LEN, &Self::ALPHABET).into())
    }

    /// A token from client or stored text: 1-64 bytes, else
    /// [`Error::InvalidToken`].
    pub fn parse(text: &str) -> Result<Self> {
        if text.is_empty() || text.len() > MAX_TOKEN_BYTES {
            return Err(Error::InvalidToken {
                token: text.chars().take(MAX_TOKEN_BYTES + 1).collect(),
                len: text.len(),
            });
        }
        Ok(Self(text.into()))
    }

    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the token has the form of a generated one (24 ASCII letters or
    /// digits).
    pub fn is_generated_form(&self) -> bool {
        is_generated_form(&self.0)
    }

    /// `<token>.jpg` for a generated-form token; `None` for any other, which
    /// has no crop.
    pub fn crop_file_name(&self) -> Option<String> {
        self.is_generated_form()
            .then(|| format!("{}{}", self.0, Self::CROP_SUFFIX))
    }

    /// The token whose crop file is `name` (`<24 letters or digits>.jpg`), or
    /// `None` when `name` is not a crop file name.
    pub fn from_crop_file_name(name: &str) -> Option<Self> {
        name.strip_suffix(Self::CROP_SUFFIX)
            .filter(|stem| is_generated_form(stem))
            .map(|stem| Self(stem.into()))
    }
}

fn is_generated_form(text: &str) -> bool {
    text.len() == FaceToken::GENERATED_LEN && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl fmt::Display for FaceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FaceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for FaceToken {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for FaceToken {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for FaceToken {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::parse(text)
    }
}

impl TryFrom<String> for FaceToken {
    type Error = Error;

    fn try_from(text: String) -> Result<Self> {
        Self::parse(&text)
    }
}

impl From<FaceToken> for String {
    fn from(token: FaceToken) -> Self {
        token.0.to_string()
    }
}

impl PartialEq<str> for FaceToken {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for FaceToken {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_24_alphanumerics_and_differ() {
        let a = FaceToken::generate();
        let b = FaceToken::generate();
        assert_ne!(a, b);
        assert!(a.is_generated_form());
        assert_eq!(a.as_str().len(), 24);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn parsing_keeps_1_to_64_bytes() {
        assert_eq!(FaceToken::parse("t").unwrap().as_str(), "t");
        FaceToken::parse(&"t".repeat(64)).unwrap();
        FaceToken::parse(&"é".repeat(32)).unwrap();
        for bad in [String::new(), "t".repeat(65), "é".repeat(33)] {
            let err = FaceToken::parse(&bad).unwrap_err();
            assert!(matches!(err, Error::InvalidToken { .. }), "{bad}");
        }
        let err = FaceToken::parse(&"t".repeat(65)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "face token '{}' is invalid: it is 65 bytes long; use 1-64 bytes",
                "t".repeat(65)
            )
        );
    }

    #[test]
    fn only_generated_form_tokens_name_crops() {
        let t = FaceToken::parse("abcdefghijklmnopqrstuvwx").unwrap();
        assert_eq!(
            t.crop_file_name().as_deref(),
            Some("abcdefghijklmnopqrstuvwx.jpg")
        );
        assert_eq!(
            FaceToken::from_crop_file_name("ABCDEFGHIJKLMNOPQRSTUVW9.jpg").map(String::from),
            Some("ABCDEFGHIJKLMNOPQRSTUVW9".to_owned())
        );
        for bad in [
            "",
            ".jpg",
            "abc.jpg",
            "abcdefghijklmnopqrstuvwx.png",
            "../../../../etc/passwd",
            "..%2F..%2Fetcpasswdxxxxxxxx.jpg",
            "abcdefghijklmnopqrstuv/x.jpg",
            "abcdefghijklmnopqrstuvwxy.jpg",
        ] {
            assert_eq!(FaceToken::from_crop_file_name(bad), None, "{bad}");
        }
        for no_crop in [
            "short",
            "abcdefghijklmnopqrstuv.x",
            "abcdefghijklmnopqrstuv/x",
        ] {
            assert_eq!(FaceToken::parse(no_crop).unwrap().crop_file_name(), None);
        }
    }

    #[test]
    fn serde_refuses_invalid_tokens() {
        let t: FaceToken = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(t, "abc");
        assert!(serde_json::from_str::<FaceToken>("\"\"").is_err());
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"abc\"");
    }
}
