//! The [`TokenStore`] trait (where temporary face tokens and their crops live) and its
//! single-server implementation, [`LocalTokens`]: a [`TokenCache`] in memory plus one JPEG
//! file per token.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::token::FaceToken;
use crate::token_cache::{TokenCache, TokenCacheConfig};

/// A token handed out by detection, with what it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    /// The token (generated form, so that it has a crop file name).
    pub token: FaceToken,
    /// The face's embedding.
    pub embedding: Vec<f32>,
    /// The face's crop, JPEG bytes.
    pub crop: Vec<u8>,
}

/// Temporary face tokens: what `/detect` hands out, kept until they are evicted (the oldest
/// beyond [`TokenCacheConfig::max_entries`]) or expire ([`TokenCacheConfig::ttl`]), each with
/// its embedding and its crop, which live exactly as long as the token.
///
/// Implemented by [`LocalTokens`] (one server: memory and a crops folder) and by a shared
/// database table in `facerec-store-postgres` (several servers).
pub trait TokenStore: Send + Sync {
    /// The bounds in force.
    fn config(&self) -> TokenCacheConfig;

    /// Keeps new tokens; evicts the oldest (with their crops) beyond the bounds. Returns how
    /// many were evicted.
    fn insert(&self, tokens: Vec<NewToken>) -> Result<usize>;

    /// The embedding of a live (not expired) token.
    fn embedding(&self, token: &FaceToken) -> Result<Option<Vec<f32>>>;

    /// The crop (JPEG bytes) of a live token.
    fn crop(&self, token: &FaceToken) -> Result<Option<Vec<u8>>>;

    /// Tokens held now (expired ones not yet purged may be counted).
    fn len(&self) -> Result<usize>;

    /// Whether no token is held.
    fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// Drops expired tokens and their crops; returns how many.
    fn purge_expired(&self) -> Result<usize>;

    /// Whether the backing storage answers now (for readiness checks).
    fn ping(&self) -> Result<()>;
}

/// A [`TokenStore`] for one server: embeddings in a [`TokenCache`], crops as
/// `<token>.jpg` files in a folder that is emptied at start (tokens do not survive a
/// restart).
///
/// ```
/// use facerec_store::{FaceToken, LocalTokens, NewToken, TokenCacheConfig, TokenStore};
///
/// let dir = std::env::temp_dir().join(format!("facerec-tokens-doc-{}", std::process::id()));
/// let tokens = LocalTokens::open(&dir, TokenCacheConfig { max_entries: 1, ..Default::default() })?;
/// let (a, b) = (FaceToken::generate(), FaceToken::generate());
/// let new = |token: &FaceToken| NewToken { token: token.clone(), embedding: vec![0.5; 4], crop: b"jpeg".to_vec() };
/// tokens.insert(vec![new(&a)])?;
/// assert_eq!(tokens.crop(&a)?.as_deref(), Some(&b"jpeg"[..]));
/// assert_eq!(tokens.insert(vec![new(&b)])?, 1); // the oldest goes, with its crop
/// assert_eq!(tokens.embedding(&a)?, None);
/// assert_eq!(tokens.crop(&a)?, None);
/// assert_eq!(tokens.embedding(&b)?, Some(vec![0.5; 4]));
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), facerec_store::Error>(())
/// ```
#[derive(Debug)]
pub struct LocalTokens {
    cache: TokenCache<Arc<[f32]>>,
    crops: PathBuf,
}

impl LocalTokens {
    /// Makes the crops folder `crops` if needed and deletes every file in it.
    pub fn open(crops: impl AsRef<Path>, config: TokenCacheConfig) -> Result<Self> {
        let dir = crops.as_ref().to_path_buf();
        let io_err = |what: &str, source: io::Error| Error::Io {
            context: format!("{what} crops folder {}", dir.display()),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io_err("making", e))?;
        let mut removed = 0usize;
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err("listing", e))? {
            let entry = entry.map_err(|e| io_err("listing", e))?;
            if entry
                .file_type()
                .map_err(|e| io_err("listing", e))?
                .is_file()
            {
                std::fs::remove_file(entry.path()).map_err(|e| io_err("emptying", e))?;
                removed += 1;
            }
        }
        tracing::info!(dir = %dir.display(), removed, "emptied the crops folder");
        Ok(Self {
            cache: TokenCache::new(config),
            crops: dir,
        })
    }

    /// Number of crop files now (for tests and diagnostics).
    pub fn crop_files(&self) -> usize {
        std::fs::read_dir(&self.crops).map_or(0, |entries| entries.flatten().count())
    }

    fn crop_path(&self, token: &FaceToken) -> Option<PathBuf> {
        token.crop_file_name().map(|name| self.crops.join(name))
    }

    /// Deletes the crops of evicted tokens; a crop already gone is fine.
    fn forget(&self, evicted: &[FaceToken]) {
        for path in evicted.iter().filter_map(|t| self.crop_path(t)) {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot delete crop: {e}"),
            }
        }
        if !evicted.is_empty() {
            tracing::debug!(count = evicted.len(), "deleted crops of evicted tokens");
        }
    }
}

impl TokenStore for LocalTokens {
    fn config(&self) -> TokenCacheConfig {
        self.cache.config()
    }

    fn insert(&self, tokens: Vec<NewToken>) -> Result<usize> {
        // Crops are written before their tokens go in, so that an evicted token's crop
        // always exists to be deleted.
        let mut entries = Vec::with_capacity(tokens.len());
        for new in tokens {
            let path = self
                .crop_path(&new.token)
                .ok_or_else(|| Error::InvalidToken {
                    token: new.token.to_string(),
                    len: new.token.as_str().len(),
                })?;
            std::fs::write(&path, &new.crop).map_err(|source| Error::Io {
                context: format!("writing crop {}", path.display()),
                source,
            })?;
            entries.push((new.token, Arc::<[f32]>::from(new.embedding)));
        }
        let mut evicted = 0;
        for (token, embedding) in entries {
            let gone = self.cache.insert(token, embedding);
            evicted += gone.len();
            self.forget(&gone);
        }
        Ok(evicted)
    }

    fn embedding(&self, token: &FaceToken) -> Result<Option<Vec<f32>>> {
        Ok(self.cache.get(token.as_str()).map(|e| e.to_vec()))
    }

    fn crop(&self, token: &FaceToken) -> Result<Option<Vec<u8>>> {
        if !self.cache.contains(token.as_str()) {
            return Ok(None);
        }
        let Some(path) = self.crop_path(token) else {
            return Ok(None);
        };
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            // evicted between the check and the read
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                context: format!("reading crop {}", path.display()),
                source,
            }),
        }
    }

    fn len(&self) -> Result<usize> {
        Ok(self.cache.len())
    }

    fn purge_expired(&self) -> Result<usize> {
        let evicted = self.cache.purge_expired(Instant::now());
        self.forget(&evicted);
        Ok(evicted.len())
    }

    fn ping(&self) -> Result<()> {
        Ok(())
    }
}
