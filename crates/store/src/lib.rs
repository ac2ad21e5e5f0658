//! Durable named face sets on [sled] with exact search, plus a bounded
//! in-memory token cache.
//!
//! * [`SledStore`] (behind the [`FaceStore`] trait) keeps face sets in one
//!   data dir: one sled tree per set, a meta tree with the storage format
//!   version, model id and embedding size. Opening a data dir made with
//!   another model or size is refused ([`Error::ModelMismatch`]): embeddings
//!   of different models must never be compared. `add` and `remove` return
//!   only once the change is flushed to disk.
//! * Search is exact brute force over a contiguous in-memory matrix per set
//!   ([`FaceMatrix`]), Euclidean distance, strictly below a threshold,
//!   nearest first, on all cores for large sets.
//! * [`TokenStore`] is where the temporary face tokens handed out by
//!   detection live, with their crops, bounded in count and age;
//!   [`LocalTokens`] keeps them in a [`TokenCache`] and a crops folder.
//! * [`FaceToken`] is the key of a face, from generation to crop file name.
//! * [`FaceIndex`] is the in-memory search side of a store whose records
//!   live in a shared database.
//! * [`conformance`] is the test suite every [`FaceStore`] and
//!   [`TokenStore`] implementation passes.
//!
//! # Example
//!
//! ```
//! use facerec_store::{FaceRecord, FaceStore, FaceToken, SledStore, StoreConfig, Upsert};
//!
//! let dir = std::env::temp_dir().join(format!("facerec-store-doc-{}", std::process::id()));
//! let store = SledStore::open(&dir, StoreConfig::new("sface", 3))?;
//! let (ann, bob) = (FaceToken::parse("tok-ann")?, FaceToken::parse("tok-bob")?);
//!
//! store.add("staff", FaceRecord::new(ann.clone(), "Ann", vec![0.0, 0.0, 0.0], "sface"))?;
//! store.add("staff", FaceRecord::new(bob.clone(), "Bob", vec![3.0, 4.0, 0.0], "sface"))?;
//! // the same token again replaces the record
//! let again = FaceRecord::new(bob, "Robert", vec![3.0, 4.0, 0.0], "sface");
//! assert_eq!(store.add("staff", again)?, Upsert::Replaced);
//!
//! let hits = store.search("staff", &[0.0, 0.0, 1.0], 10.0, None)?;
//! assert_eq!(hits[0].name, "Ann");
//! assert_eq!(hits[0].distance, 1.0);
//! assert_eq!(hits[1].name, "Robert");
//! // a set that does not exist has no matches
//! assert!(store.search("nobody", &[0.0, 0.0, 1.0], 10.0, None)?.is_empty());
//!
//! let removed = store.remove("staff", &ann)?;
//! assert_eq!(removed.name, "Ann");
//! assert_eq!(store.len("staff")?, 1);
//!
//! drop(store);
//! std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), facerec_store::Error>(())
//! ```
//!
//! # Storage format (version 1)
//!
//! Meta tree `facerec/meta`: `format_version` → 1 byte, `model_id` → UTF-8,
//! `dims` → u32 LE. Set tree `facerec/set/<name>`: token → record:
//! version byte (1), created_unix_ms (u64 LE), token (u8 length + UTF-8),
//! name (u16 LE length + UTF-8), model id (u8 length + UTF-8), embedding
//! (u32 LE count + count × f32 LE). A store with a newer format version is
//! refused ([`Error::FormatTooNew`]).
//!
//! # Listing order
//!
//! [`FaceStore::faces`] pages through a set in token order (byte-wise),
//! which is stable under adds and removes of other faces.

#![deny(missing_docs)]

pub mod conformance;
mod error;
mod index;
mod keys;
mod matrix;
mod record;
mod store;
mod token;
mod token_cache;
mod tokens;

pub use error::{BoxError, Error, Result};
pub use index::FaceIndex;
pub use keys::{
    FileKeys, KEY_PREFIX, KeyHash, KeyRecord, KeyStore, MAX_KEY_NAME_BYTES, MAX_KEYS, NewKey, Role,
    validate_key_name,
};
pub use matrix::{FaceMatrix, PARALLEL_MIN_ROWS, squared_distance};
pub use record::{
    FORMAT_VERSION, FaceRecord, FaceSetInfo, FaceSummary, MAX_MODEL_ID_BYTES, MAX_NAME_BYTES,
    MAX_SET_NAME_CHARS, Match, Upsert, now_unix_ms, validate_name, validate_set_name,
};
pub use store::{FaceStore, SledStore, StoreConfig};
pub use token::{FaceToken, MAX_TOKEN_BYTES};
pub use token_cache::{TokenCache, TokenCacheConfig};
pub use tokens::{LocalTokens, NewToken, TokenStore};
