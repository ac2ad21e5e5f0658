//! API keys: who may call the Face API, in which role, on which face sets.
//!
//! A key is a random secret shown once, when it is made ([`NewKey::generate`]); stores keep
//! only its SHA-256 ([`KeyHash`]), its name, its [`Role`] and the face sets it is limited to.
//! The secrets have about 238 bits of entropy, so a plain hash is enough: there is nothing
//! to brute-force that a slow password hash would protect.
//!
//! [`KeyStore`] is where keys live; [`FileKeys`] keeps them in one JSON file beside the face
//! store (so that `keys create` works while a server holds the sled data dir), and the
//! PostgreSQL store keeps them in a table shared by every server. Every request looks its
//! key up in the store, so a revoked key is refused from the next request on, in every
//! server.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{Error, Result, validate_set_name};

/// Longest key name, in bytes.
pub const MAX_KEY_NAME_BYTES: usize = 64;

/// Most keys one store holds.
pub const MAX_KEYS: usize = 10_000;

/// Text every key starts with, so that a leaked key is recognisable (secret scanners).
pub const KEY_PREFIX: &str = "frk_";

/// Random characters after the prefix (62 letters and digits: about 238 bits).
const SECRET_CHARS: usize = 40;

/// What a key may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Detect, search, compare and list.
    Read,
    /// Also add and remove faces (one by one or in batches).
    Write,
    /// Also manage keys over HTTP, and read the metrics.
    Admin,
}

impl Role {
    /// Every role, weakest first.
    pub const ALL: [Role; 3] = [Role::Read, Role::Write, Role::Admin];

    /// The role's name: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// Whether a key of this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| Error::InvalidKey {
                reason: format!(
                    "role '{}' is unknown: use read, write or admin",
                    text.escape_default()
                ),
            })
    }
}

/// SHA-256 of a key's secret: what stores keep instead of the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// The hash of a key as a client sends it.
    pub fn of(key: &str) -> Self {
        use sha2::Digest;
        Self(sha2::Sha256::digest(key.as_bytes()).into())
    }

    /// Compares in time that does not depend on where the hashes differ.
    pub fn ct_eq(&self, other: &KeyHash) -> bool {
        let diff = self
            .0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// From 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // enough to tell keys apart in logs, not enough to matter
        write!(f, "KeyHash({}..)", &self.to_hex()[..8])
    }
}

/// A key as stored: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Unique name (1-64 bytes of `A-Z a-z 0-9 _ - .`), used to list and revoke it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The face sets it may use; `None`: every set.
    pub sets: Option<Vec<String>>,
    /// SHA-256 of the secret.
    pub hash: KeyHash,
    /// When it was made (Unix milliseconds).
    pub created_unix_ms: u64,
}

impl KeyRecord {
    /// Whether this key may use face set `set`.
    pub fn allows_set(&self, set: &str) -> bool {
        self.sets
            .as_ref()
            .is_none_or(|sets| sets.iter().any(|s| s == set))
    }

    /// Checks the name and the sets.
    pub fn validate(&self) -> Result<()> {
        validate_key_name(&self.name)?;
        if let Some(sets) = &self.sets {
            if sets.is_empty() {
                return Err(Error::InvalidKey {
                    reason: "a key limited to face sets needs at least one".to_owned(),
                });
            }
            for set in sets {
                validate_set_name(set)?;
            }
        }
        Ok(())
    }
}

/// A key just made: the secret to hand to its user once, and the record to store.
#[derive(Debug)]
pub struct NewKey {
    /// The key as clients send it: `frk_` and 40 random letters and digits.
    pub secret: String,
    /// What stores keep.
    pub record: KeyRecord,
}

impl NewKey {
    /// A new random key (from the operating system's random source).
    pub fn generate(name: &str, role: Role, sets: Option<Vec<String>>) -> Result<Self> {
        const ALPHABET: [char; 62] = [
            '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F', 'G',
            'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X',
            'Y', 'Z', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
            'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
        ];
        let secret = format!("{KEY_PREFIX}{}", nanoid::nanoid!(SECRET_CHARS, &ALPHABET));
        let record = KeyRecord {
            name: name.to_owned(),
            role,
            sets,
            hash: KeyHash::of(&secret),
            created_unix_ms: crate::now_unix_ms(),
        };
        record.validate()?;
        Ok(Self { secret, record })
    }
}

/// Checks a key name: 1-64 bytes of `A-Z a-z 0-9 _ - .`.
pub fn validate_key_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidKey {
            reason: format!(
                "key name '{}' is invalid: use 1-{MAX_KEY_NAME_BYTES} characters of \
                 A-Z a-z 0-9 _ - .",
                name.escape_default()
            ),
        })
    }
}

/// Where API keys live. Every method may be called from many threads at once.
pub trait KeyStore: Send + Sync {
    /// Stores a new key; [`Error::KeyExists`] if its name is taken.
    fn create(&self, key: KeyRecord) -> Result<()>;

    /// Deletes a key by name and returns it; [`Error::KeyNotFound`] if there is none. The
    /// key is refused from the next lookup on.
    fn revoke(&self, name: &str) -> Result<KeyRecord>;

    /// Every key, by name.
    fn list(&self) -> Result<Vec<KeyRecord>>;

    /// Whether any key exists (called on every request that carries none).
    fn any(&self) -> Result<bool>;

    /// The key with this hash (called on every request that carries one).
    fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>>;
}

/// Keys in one JSON file (`keys.json` in the data dir), replaced atomically on every change
/// under an exclusive lock on a lock file beside it, so that the `keys` command and a running
/// server can both use it. Lookups re-read the file only when it has changed (one `stat`
/// per lookup otherwise).
pub struct FileKeys {
    path: PathBuf,
    lock_path: PathBuf,
    cache: Mutex<Option<(FileStamp, Arc<Vec<KeyRecord>>)>>,
}

/// What tells that the file changed: it is replaced by a rename on every change, so its
/// inode changes; size and mtime as well, for filesystems without stable inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    name: String,
    role: Role,
    sets: Option<Vec<String>>,
    sha256: String,
    created_unix_ms: u64,
}

impl FileKeys {
    /// The file's name in a data dir.
    pub const FILE_NAME: &'static str = "keys.json";

    /// Keys in `<dir>/keys.json` (made on the first key; the dir must exist by then).
    pub fn in_dir(dir: impl AsRef<Path>) -> Self {
        let dir = dir.as_ref();
        Self {
            path: dir.join(Self::FILE_NAME),
            lock_path: dir.join("keys.lock"),
            cache: Mutex::new(None),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
        let context = format!("{what} {}", self.path.display());
        move |source| Error::Io { context, source }
    }

    fn stamp(&self) -> Result<Option<FileStamp>> {
        match fs::metadata(&self.path) {
            Ok(meta) => {
                #[cfg(unix)]
                let ino = std::os::unix::fs::MetadataExt::ino(&meta);
                #[cfg(not(unix))]
                let ino = 0;
                Ok(Some(FileStamp {
                    ino,
                    len: meta.len(),
                    modified: meta.modified().ok(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io("reading")(e)),
        }
    }

    /// The keys as the file holds them now.
    fn current(&self) -> Result<Arc<Vec<KeyRecord>>> {
        let Some(stamp) = self.stamp()? else {
            return Ok(Arc::new(Vec::new()));
        };
        let mut cache = self.cache.lock();
        if let Some((seen, keys)) = cache.as_ref()
            && *seen == stamp
        {
            return Ok(Arc::clone(keys));
        }
        let keys = Arc::new(self.read()?);
        // stamped before reading: a change while reading shows as a new stamp next time
        *cache = Some((stamp, Arc::clone(&keys)));
        Ok(keys)
    }

    fn read(&self) -> Result<Vec<KeyRecord>> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("reading")(e)),
        };
        let corrupt = |reason: String| Error::Corrupt {
            what: self.path.display().to_string(),
            reason,
        };
        let file: KeyFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not a key file: {e}")))?;
        if file.version != 1 {
            return Err(corrupt(format!(
                "key file version {} is unknown",
                file.version
            )));
        }
        file.keys
            .into_iter()
            .map(|k| {
                let hash = KeyHash::from_hex(&k.sha256)
                    .ok_or_else(|| corrupt(format!("key '{}' has a bad hash", k.name)))?;
                Ok(KeyRecord {
                    name: k.name,
                    role: k.role,
                    sets: k.sets,
                    hash,
                    created_unix_ms: k.created_unix_ms,
                })
            })
            .collect()
    }

    /// Applies `change` to the keys under the file lock, then replaces the file: written to
    /// a temporary file, synced, renamed over the old one, and the dir synced.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T>) -> Result<T> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(self.io("locking"))?;
        lock.lock().map_err(self.io("locking"))?;
        let mut keys = self.read()?;
        let out = change(&mut keys)?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        let file = KeyFile {
            version: 1,
            keys: keys
                .iter()
                .map(|k| StoredKey {
                    name: k.name.clone(),
                    role: k.role,
                    sets: k.sets.clone(),
                    sha256: k.hash.to_hex(),
                    created_unix_ms: k.created_unix_ms,
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&file).map_err(|e| Error::Io {
            context: "encoding the keys".to_owned(),
            source: std::io::Error::other(e),
        })?;
        text.push(b'\n');
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut out = File::create(&tmp).map_err(self.io("writing"))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                // hashes only, but no one else needs to read them
                let _ = out.set_permissions(fs::Permissions::from_mode(0o600));
            }
            out.write_all(&text).map_err(self.io("writing"))?;
            out.sync_all().map_err(self.io("writing"))?;
        }
        fs::rename(&tmp, &self.path).map_err(self.io("replacing"))?;
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        drop(lock);
        Ok(out)
    }
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileKeys")
            .field("path", &self.path)
            .finish()
    }
}

impl KeyStore for FileKeys {
    fn create(&self, key: KeyRecord) -> Result<()> {
        key.validate()?;
        self.update(|keys| {
            if keys.iter().any(|k| k.name == key.name) {
                return Err(Error::KeyExists { name: key.name });
            }
            if keys.len() >= MAX_KEYS {
                return Err(Error::InvalidKey {
                    reason: format!("a store holds at most {MAX_KEYS} keys"),
                });
            }
            keys.push(key);
            Ok(())
        })
    }

    fn revoke(&self, name: &str) -> Result<KeyRecord> {
        self.update(|keys| {
            let at =
                keys.iter()
                    .position(|k| k.name == name)
                    .ok_or_else(|| Error::KeyNotFound {
                        name: name.to_owned(),
                    })?;
            Ok(keys.remove(at))
        })
    }

    fn list(&self) -> Result<Vec<KeyRecord>> {
        Ok(self.current()?.as_ref().clone())
    }

    fn any(&self) -> Result<bool> {
        Ok(!self.current()?.is_empty())
    }

    fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        // every key is compared, in constant time each: how long this takes says nothing
        // about which key (if any) is near the one given
        let keys = self.current()?;
        let mut found = None;
        for key in keys.iter() {
            if key.hash.ct_eq(hash) {
                found = Some(key);
            }
        }
        Ok(found.cloned())
    }
}
