//! The crate's typed errors.

use std::path::PathBuf;

/// Everything that can go wrong in this crate.
///
/// Messages name the operation and the values involved so that they can be
/// shown to an operator (or an API client) as they are.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A face set name is not 1-64 characters of `A-Z a-z 0-9 _ -`.
    #[error("face set name '{name}' is invalid: use 1-64 characters of A-Z a-z 0-9 _ -")]
    InvalidSetName {
        /// The rejected name.
        name: String,
    },

    /// A face token is empty or longer than 64 bytes.
    #[error("face token '{token}' is invalid: it is {len} bytes long; use 1-64 bytes")]
    InvalidToken {
        /// The rejected token (its first 65 characters).
        token: String,
        /// Its length in bytes.
        len: usize,
    },

    /// A face name is longer than 256 bytes of UTF-8.
    #[error("face name is {len} bytes long; at most {max} bytes of UTF-8 are allowed")]
    NameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// An embedding or query vector has the wrong number of values.
    #[error("{what} has {got} values; this store holds {expected}-d embeddings")]
    WrongDims {
        /// What was being checked ("embedding", "query").
        what: &'static str,
        /// Number of values given.
        got: usize,
        /// Number of values the store holds per face.
        expected: usize,
    },

    /// An embedding or query contains NaN or an infinity.
    #[error("{what} value #{index} is {value}; embeddings must be finite numbers")]
    NonFinite {
        /// What was being checked ("embedding", "query").
        what: &'static str,
        /// Index of the first bad value.
        index: usize,
        /// The bad value.
        value: f32,
    },

    /// A search threshold is NaN.
    #[error("search threshold {threshold} is invalid: use a number (distances below it match)")]
    InvalidThreshold {
        /// The rejected threshold.
        threshold: f32,
    },

    /// A record carries a model id other than the one this store holds.
    #[error(
        "face '{token}' was embedded with model '{record_model}'; this store holds \
         embeddings of model '{store_model}' only"
    )]
    RecordModelMismatch {
        /// Token of the rejected record.
        token: String,
        /// Model id in the record.
        record_model: String,
        /// Model id of the store.
        store_model: String,
    },

    /// The store (a data dir, a database) was made with another model or
    /// embedding size.
    #[error(
        "face sets in {place} were made with model {stored_model} ({stored_dims}-d); \
         this server runs model {model} ({dims}-d); refusing to mix embeddings — \
         run the model that made them (--model), use another store or re-enrol"
    )]
    ModelMismatch {
        /// The store: a data dir's path, a database (without its password).
        place: String,
        /// Model id recorded in the store.
        stored_model: String,
        /// Embedding size recorded in the store.
        stored_dims: usize,
        /// Model id the caller opened with.
        model: String,
        /// Embedding size the caller opened with.
        dims: usize,
    },

    /// The store was written by a newer version of this program.
    #[error(
        "{place} has storage format version {found}; this program knows versions up to \
         {supported}: refusing to open it (upgrade the program)"
    )]
    FormatTooNew {
        /// The store: a data dir's path, a database (without its password).
        place: String,
        /// Version found.
        found: u32,
        /// Newest version this code knows.
        supported: u32,
    },

    /// The data dir is held by another open store.
    #[error(
        "data dir {path} is in use by another process (or by a store in this process that \
         is still open); waited {waited_ms} ms for it",
        path = path.display()
    )]
    Locked {
        /// The data dir.
        path: PathBuf,
        /// How long `open` waited for the lock.
        waited_ms: u64,
    },

    /// The store configuration is unusable.
    #[error("store configuration is invalid: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },

    /// An API key's name, role or face sets are invalid.
    #[error("{reason}")]
    InvalidKey {
        /// What is wrong with the key's name, role or sets.
        reason: String,
    },
    /// A key with this name exists already.
    #[error("an API key named '{name}' exists already: revoke it first, or pick another name")]
    KeyExists {
        /// The name.
        name: String,
    },
    /// No key has this name.
    #[error("no API key is named '{name}'")]
    KeyNotFound {
        /// The name.
        name: String,
    },

    /// No face with this token in this set.
    #[error("face '{token}' is not in face set '{set}'")]
    NotFound {
        /// The face set.
        set: String,
        /// The token looked for.
        token: String,
    },

    /// Stored bytes could not be decoded.
    #[error("stored data is corrupt: {what}: {reason}")]
    Corrupt {
        /// What was being read.
        what: String,
        /// What is wrong with it.
        reason: String,
    },

    /// sled failed.
    #[error("storage error while {context}: {source}")]
    Sled {
        /// What was being done.
        context: String,
        /// The sled error.
        #[source]
        source: sled::Error,
    },

    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The backing service (a database server) cannot be reached or did not
    /// answer in time: nothing was changed that was not acknowledged, and the
    /// same request may succeed a moment later.
    #[error("the face store is unavailable while {context}: {source}")]
    Unavailable {
        /// What was being done.
        context: String,
        /// Why (the driver's or pool's error, or a timeout).
        #[source]
        source: BoxError,
    },

    /// The backing service answered with an error.
    #[error("the face store failed while {context}: {source}")]
    Backend {
        /// What was being done.
        context: String,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
}

/// Any error of a store implementation's driver, kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps a sled error with what was being done.
pub(crate) fn sled_err(context: impl Into<String>, source: sled::Error) -> Error {
    Error::Sled {
        context: context.into(),
        source,
    }
}
