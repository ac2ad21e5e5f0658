//! The [`FaceStore`] trait and its sled implementation, [`SledStore`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::error::{Error, Result, sled_err};
use crate::index::search_missing_set;
use crate::matrix::FaceMatrix;
use crate::record::{
    FORMAT_VERSION, FaceRecord, FaceSetInfo, FaceSummary, MAX_MODEL_ID_BYTES, Match, Upsert,
    decode, decode_summary, decode_with, encode, validate_name, validate_set_name, validate_vector,
};
use crate::token::FaceToken;

/// Durable named face sets with exact search.
///
/// Implemented by [`SledStore`] (embedded, one process) and by the
/// PostgreSQL store of `facerec-store-postgres` (shared by several servers);
/// [`conformance`](crate::conformance) is the one test suite both pass. A
/// store holds embeddings of one model (`model_id`, `dims`) only.
///
/// Face sets are made by the first [`add`](Self::add) to them. Reading a set
/// that does not exist ([`search`](Self::search), [`faces`](Self::faces),
/// [`len`](Self::len)) gives an empty result, not an error; every method
/// still rejects an invalid set name ([`Error::InvalidSetName`]).
pub trait FaceStore: Send + Sync {
    /// Id of the model whose embeddings this store holds.
    fn model_id(&self) -> &str;

    /// Values per embedding.
    fn dims(&self) -> usize;

    /// Adds a face to a set (making the set if needed), or replaces the
    /// record with the same token in that set. Returns once the change is
    /// durable.
    fn add(&self, set: &str, record: FaceRecord) -> Result<Upsert>;

    /// Adds many faces with one durable write at the end; returns how many
    /// tokens were new to the set. All records are checked before any is
    /// written.
    fn add_many(&self, set: &str, records: Vec<FaceRecord>) -> Result<usize>;

    /// Removes a face from a set and returns its record once the removal is
    /// durable; [`Error::NotFound`] if it is not there.
    fn remove(&self, set: &str, token: &FaceToken) -> Result<FaceRecord>;

    /// The record of a face, if present.
    fn get(&self, set: &str, token: &FaceToken) -> Result<Option<FaceRecord>>;

    /// Every face of the set whose Euclidean distance to `query` is strictly
    /// below `threshold`, nearest first (ties by token), at most `top_k`.
    fn search(
        &self,
        set: &str,
        query: &[f32],
        threshold: f32,
        top_k: Option<usize>,
    ) -> Result<Vec<Match>>;

    /// All face sets with their face counts, by name.
    fn sets(&self) -> Result<Vec<FaceSetInfo>>;

    /// A page of a set's faces, in token order (byte-wise), skipping
    /// `offset` faces and returning at most `limit`.
    fn faces(&self, set: &str, offset: usize, limit: usize) -> Result<Vec<FaceSummary>>;

    /// Whole records of a set in token order (byte-wise), those after token
    /// `after` (all when `None`), at most `limit`: the way to read a whole
    /// set page by page (for copies and checks), stable under concurrent
    /// writes to other tokens.
    fn records(
        &self,
        set: &str,
        after: Option<&FaceToken>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>>;

    /// Number of faces in a set (0 if the set does not exist).
    fn len(&self, set: &str) -> Result<usize>;

    /// Deletes a whole face set; returns whether it existed.
    fn delete_set(&self, set: &str) -> Result<bool>;

    /// Makes every change so far durable.
    fn flush(&self) -> Result<()>;

    /// Whether the store can serve requests now (for readiness checks): an
    /// embedded store always can; a database-backed one checks its database.
    fn ping(&self) -> Result<()>;
}

/// What [`SledStore::open`] needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Id of the model whose embeddings the store holds (1-255 bytes).
    pub model_id: String,
    /// Values per embedding (≥ 1).
    pub dims: usize,
    /// Size of sled's page cache in bytes. The search matrix is kept apart
    /// from it, so it need not hold the whole data set.
    pub cache_capacity_bytes: u64,
    /// How long [`SledStore::open`] waits for the data dir's lock before
    /// giving up with [`Error::Locked`].
    pub lock_wait: Duration,
}

impl StoreConfig {
    /// Config for `model_id` embeddings of `dims` values, with a 64 MiB
    /// sled cache and a 2 s wait for the data dir's lock.
    pub fn new(model_id: impl Into<String>, dims: usize) -> Self {
        Self {
            model_id: model_id.into(),
            dims,
            cache_capacity_bytes: 64 << 20,
            lock_wait: Duration::from_secs(2),
        }
    }

    /// Checks that a record may go into a store of this config: its name's length, its
    /// model, and its embedding's size and values.
    pub fn check_record(&self, record: &FaceRecord) -> Result<()> {
        validate_name(&record.name)?;
        if record.model_id != self.model_id {
            return Err(Error::RecordModelMismatch {
                token: record.token.to_string(),
                record_model: record.model_id.clone(),
                store_model: self.model_id.clone(),
            });
        }
        validate_vector("embedding", &record.embedding, self.dims)
    }

    /// Checks the model id (1-255 bytes) and the embedding size (at least 1).
    pub fn validate(&self) -> Result<()> {
        if self.model_id.is_empty() || self.model_id.len() > MAX_MODEL_ID_BYTES {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "model id '{}' is {} bytes long; use 1-{MAX_MODEL_ID_BYTES} bytes",
                    self.model_id,
                    self.model_id.len()
                ),
            });
        }
        if self.dims == 0 || u32::try_from(self.dims).is_err() {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "embedding size {} is invalid; use 1 to {}",
                    self.dims,
                    u32::MAX
                ),
            });
        }
        Ok(())
    }
}

const META_TREE: &[u8] = b"facerec/meta";
const SET_TREE_PREFIX: &str = "facerec/set/";
const META_FORMAT: &[u8] = b"format_version";
const META_MODEL: &[u8] = b"model_id";
const META_DIMS: &[u8] = b"dims";

fn tree_name(set: &str) -> String {
    format!("{SET_TREE_PREFIX}{set}")
}

struct SetSlot {
    tree: sled::Tree,
    state: RwLock<SetState>,
}

struct SetState {
    matrix: FaceMatrix,
    /// Set by `delete_set`; a writer that finds it retries on a fresh slot.
    dropped: bool,
}

/// A [`FaceStore`] on sled.
///
/// Layout in the data dir: a meta tree (`facerec/meta`: format version,
/// model id, dims) and one tree per face set (`facerec/set/<name>`) mapping
/// token → record (see the crate docs for the record encoding). At open every
/// set is loaded into a [`FaceMatrix`], which searches run on; writes go to
/// sled and the matrix together under the set's write lock, then
/// [`sled::Tree::flush`] (on the `Db`, which flushes every tree) before returning.
///
/// Concurrency: per set, many readers (search) or one writer at a time;
/// sets are independent. Flushing happens outside the lock, so concurrent
/// writers share fsyncs and searches do not wait on the disk; the price is
/// that a search may see a face a moment before its `add` has returned
/// (and, after a crash in that moment, the face may be gone: it was never
/// acknowledged).
pub struct SledStore {
    path: PathBuf,
    config: StoreConfig,
    db: sled::Db,
    sets: RwLock<BTreeMap<String, Arc<SetSlot>>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("sets", &self.sets.read().len())
            .finish()
    }
}

impl SledStore {
    /// Opens (or creates) the store in `path` for embeddings of
    /// `config.model_id` with `config.dims` values, and loads every face set
    /// into memory.
    ///
    /// Refuses ([`Error::ModelMismatch`]) a data dir made with another model
    /// id or embedding size, and ([`Error::FormatTooNew`]) one written by a
    /// newer storage format. Fails with [`Error::Locked`] if another open
    /// store holds the data dir for longer than `config.lock_wait`.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        config.validate()?;
        let started = Instant::now();
        let db = open_db(&path, &config)?;
        check_or_init_meta(&db, &path, &config)?;

        let mut sets = BTreeMap::new();
        let mut faces = 0usize;
        for name in db.tree_names() {
            let Some(set) = name.strip_prefix(SET_TREE_PREFIX.as_bytes()) else {
                continue;
            };
            let set = std::str::from_utf8(set)
                .ok()
                .filter(|s| validate_set_name(s).is_ok())
                .ok_or_else(|| Error::Corrupt {
                    what: format!("data dir {}", path.display()),
                    reason: format!(
                        "tree '{}' has an invalid face set name",
                        String::from_utf8_lossy(&name)
                    ),
                })?
                .to_owned();
            let tree = db
                .open_tree(&name)
                .map_err(|e| sled_err(format!("opening face set '{set}'"), e))?;
            let matrix = load_matrix(&tree, &set, &config)?;
            faces += matrix.len();
            tracing::debug!(set = %set, faces = matrix.len(), "loaded face set");
            sets.insert(
                set,
                Arc::new(SetSlot {
                    tree,
                    state: RwLock::new(SetState {
                        matrix,
                        dropped: false,
                    }),
                }),
            );
        }
        tracing::info!(
            path = %path.display(),
            model_id = %config.model_id,
            dims = config.dims,
            sets = sets.len(),
            faces,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened face store"
        );
        Ok(Self {
            path,
            config,
            db,
            sets: RwLock::new(sets),
        })
    }

    /// The model id and embedding size recorded in the data dir at `path`, or `None` when
    /// it holds no store yet (for tools that copy a store whatever its model).
    pub fn recorded_model(path: impl AsRef<Path>) -> Result<Option<(String, usize)>> {
        let path = path.as_ref();
        if !path.exists() {
            return Ok(None);
        }
        let db = open_db(path, &StoreConfig::new("any", 1))?;
        let meta = db
            .open_tree(META_TREE)
            .map_err(|e| sled_err(format!("opening meta tree in {}", path.display()), e))?;
        let read = |key: &[u8]| {
            meta.get(key)
                .map_err(|e| sled_err(format!("reading meta of {}", path.display()), e))
        };
        let (Some(model), Some(dims)) = (read(META_MODEL)?, read(META_DIMS)?) else {
            return Ok(None);
        };
        let corrupt = |reason: &str| Error::Corrupt {
            what: format!("meta tree of data dir {}", path.display()),
            reason: reason.to_owned(),
        };
        let model =
            String::from_utf8(model.to_vec()).map_err(|_| corrupt("model id is not UTF-8"))?;
        let dims = <[u8; 4]>::try_from(&*dims)
            .map(|d| u32::from_le_bytes(d) as usize)
            .map_err(|_| corrupt("dims are not 4 bytes"))?;
        Ok(Some((model, dims)))
    }

    /// The data dir.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The config the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Heap bytes held by the in-memory search matrices (see
    /// [`FaceMatrix::heap_bytes`]); sled's own cache is not included.
    pub fn matrix_bytes(&self) -> usize {
        self.sets
            .read()
            .values()
            .map(|s| s.state.read().matrix.heap_bytes())
            .sum()
    }

    fn slot(&self, set: &str) -> Option<Arc<SetSlot>> {
        self.sets.read().get(set).cloned()
    }

    fn slot_or_create(&self, set: &str) -> Result<Arc<SetSlot>> {
        if let Some(slot) = self.slot(set) {
            return Ok(slot);
        }
        let mut sets = self.sets.write();
        if let Some(slot) = sets.get(set) {
            return Ok(Arc::clone(slot));
        }
        let tree = self
            .db
            .open_tree(tree_name(set))
            .map_err(|e| sled_err(format!("creating face set '{set}'"), e))?;
        let slot = Arc::new(SetSlot {
            tree,
            state: RwLock::new(SetState {
                matrix: FaceMatrix::new(self.config.dims),
                dropped: false,
            }),
        });
        sets.insert(set.to_owned(), Arc::clone(&slot));
        tracing::info!(set, "created face set");
        Ok(slot)
    }

    fn check_record(&self, record: &FaceRecord) -> Result<()> {
        self.config.check_record(record)
    }

    fn durable(&self, what: impl FnOnce() -> String) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| sled_err(format!("flushing to disk after {}", what()), e))
    }

    /// Names a record in corruption errors; formats only when called.
    fn decode_what<'a>(set: &'a str, key: &'a [u8]) -> impl Fn() -> String + 'a {
        move || format!("face set '{set}' record '{}'", String::from_utf8_lossy(key))
    }
}

/// Opens sled, waiting up to `config.lock_wait` for the data dir's lock:
/// sled releases it from background threads a little after a `Db` is
/// dropped, so a store closed and reopened in one process may find it held.
fn open_db(path: &Path, config: &StoreConfig) -> Result<sled::Db> {
    let started = Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_capacity_bytes)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if started.elapsed() >= config.lock_wait {
                    tracing::error!(path = %path.display(), "data dir is locked");
                    return Err(Error::Locked {
                        path: path.to_path_buf(),
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(sled_err(format!("opening data dir {}", path.display()), e));
            }
        }
    }
}

fn check_or_init_meta(db: &sled::Db, path: &Path, config: &StoreConfig) -> Result<()> {
    let meta = db
        .open_tree(META_TREE)
        .map_err(|e| sled_err(format!("opening meta tree in {}", path.display()), e))?;
    let corrupt = |reason: String| Error::Corrupt {
        what: format!("meta tree of data dir {}", path.display()),
        reason,
    };
    let get = |key: &[u8]| {
        meta.get(key).map_err(|e| {
            sled_err(
                format!(
                    "reading {} from {}",
                    String::from_utf8_lossy(key),
                    path.display()
                ),
                e,
            )
        })
    };
    let Some(version) = get(META_FORMAT)? else {
        let existing = db
            .tree_names()
            .iter()
            .filter(|n| n.starts_with(SET_TREE_PREFIX.as_bytes()))
            .count();
        if existing > 0 {
            return Err(corrupt(format!(
                "{existing} face sets exist but the format version, model id and dims are missing"
            )));
        }
        let mut batch = sled::Batch::default();
        batch.insert(META_FORMAT, &[FORMAT_VERSION][..]);
        batch.insert(META_MODEL, config.model_id.as_bytes());
        batch.insert(META_DIMS, &(config.dims as u32).to_le_bytes()[..]);
        meta.apply_batch(batch)
            .map_err(|e| sled_err(format!("writing meta to {}", path.display()), e))?;
        db.flush()
            .map_err(|e| sled_err(format!("flushing new data dir {}", path.display()), e))?;
        tracing::info!(path = %path.display(), model_id = %config.model_id, dims = config.dims, "initialised new face store");
        return Ok(());
    };
    let version = match *version {
        [v] if v > 0 => v,
        _ => return Err(corrupt(format!("format version is {:?}", &*version))),
    };
    if version > FORMAT_VERSION {
        tracing::error!(path = %path.display(), found = version, supported = FORMAT_VERSION, "data dir format is too new");
        return Err(Error::FormatTooNew {
            place: format!("data dir {}", path.display()),
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    let stored_model = get(META_MODEL)?
        .ok_or_else(|| corrupt("model id is missing".into()))
        .and_then(|m| {
            String::from_utf8(m.to_vec()).map_err(|_| corrupt("model id is not UTF-8".into()))
        })?;
    let stored_dims = get(META_DIMS)?
        .and_then(|d| <[u8; 4]>::try_from(&*d).ok())
        .map(|d| u32::from_le_bytes(d) as usize)
        .ok_or_else(|| corrupt("dims are missing or not 4 bytes".into()))?;
    if stored_model != config.model_id || stored_dims != config.dims {
        let err = Error::ModelMismatch {
            place: format!("data dir {}", path.display()),
            stored_model,
            stored_dims,
            model: config.model_id.clone(),
            dims: config.dims,
        };
        tracing::error!("{err}");
        return Err(err);
    }
    Ok(())
}

fn load_matrix(tree: &sled::Tree, set: &str, config: &StoreConfig) -> Result<FaceMatrix> {
    let mut matrix = FaceMatrix::new(config.dims);
    let mut embedding = Vec::with_capacity(config.dims);
    for item in tree.iter() {
        let (key, value) = item.map_err(|e| sled_err(format!("loading face set '{set}'"), e))?;
        let what = SledStore::decode_what(set, &key);
        embedding.clear();
        let head = decode_with(&value, config.dims, &what, |x| embedding.push(x))?;
        let corrupt = |reason: String| Error::Corrupt {
            what: what(),
            reason,
        };
        if head.token.as_bytes() != &*key {
            return Err(corrupt(format!("record holds token '{}'", head.token)));
        }
        let token = head.face_token(&what)?;
        if head.model_id != config.model_id {
            return Err(corrupt(format!(
                "record was embedded with model '{}', the store holds '{}'",
                head.model_id, config.model_id
            )));
        }
        matrix
            .upsert(&token, head.name, &embedding)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    matrix.shrink_to_fit();
    Ok(matrix)
}

impl FaceStore for SledStore {
    fn model_id(&self) -> &str {
        &self.config.model_id
    }

    fn dims(&self) -> usize {
        self.config.dims
    }

    fn add(&self, set: &str, record: FaceRecord) -> Result<Upsert> {
        validate_set_name(set)?;
        self.check_record(&record)?;
        let bytes = sled::IVec::from(encode(&record));
        let outcome = loop {
            let slot = self.slot_or_create(set)?;
            let mut state = slot.state.write();
            if state.dropped {
                continue;
            }
            let old = slot
                .tree
                .insert(record.token.as_str().as_bytes(), bytes.clone())
                .map_err(|e| {
                    sled_err(format!("adding face '{}' to set '{set}'", record.token), e)
                })?;
            state
                .matrix
                .upsert(&record.token, &record.name, &record.embedding)?;
            break if old.is_some() {
                Upsert::Replaced
            } else {
                Upsert::Inserted
            };
        };
        self.durable(|| format!("adding face '{}' to set '{set}'", record.token))?;
        tracing::debug!(set, token = %record.token, ?outcome, "added face");
        Ok(outcome)
    }

    fn add_many(&self, set: &str, records: Vec<FaceRecord>) -> Result<usize> {
        validate_set_name(set)?;
        for r in &records {
            self.check_record(r)?;
        }
        if records.is_empty() {
            return Ok(0);
        }
        let inserted = loop {
            let slot = self.slot_or_create(set)?;
            let mut state = slot.state.write();
            if state.dropped {
                continue;
            }
            let mut batch = sled::Batch::default();
            for r in &records {
                batch.insert(r.token.as_str().as_bytes(), encode(r));
            }
            slot.tree.apply_batch(batch).map_err(|e| {
                sled_err(format!("adding {} faces to set '{set}'", records.len()), e)
            })?;
            let mut inserted = 0;
            for r in &records {
                if state.matrix.upsert(&r.token, &r.name, &r.embedding)? == Upsert::Inserted {
                    inserted += 1;
                }
            }
            break inserted;
        };
        self.durable(|| format!("adding {} faces to set '{set}'", records.len()))?;
        tracing::debug!(set, count = records.len(), inserted, "added faces");
        Ok(inserted)
    }

    fn remove(&self, set: &str, token: &FaceToken) -> Result<FaceRecord> {
        validate_set_name(set)?;
        let not_found = || Error::NotFound {
            set: set.to_owned(),
            token: token.to_string(),
        };
        let slot = self.slot(set).ok_or_else(not_found)?;
        let old = {
            let mut state = slot.state.write();
            if state.dropped {
                return Err(not_found());
            }
            let old = slot
                .tree
                .remove(token.as_str().as_bytes())
                .map_err(|e| sled_err(format!("removing face '{token}' from set '{set}'"), e))?;
            let old = old.ok_or_else(not_found)?;
            state.matrix.remove(token.as_str());
            old
        };
        self.durable(|| format!("removing face '{token}' from set '{set}'"))?;
        tracing::debug!(set, %token, "removed face");
        decode(
            &old,
            self.config.dims,
            &Self::decode_what(set, token.as_str().as_bytes()),
        )
    }

    fn get(&self, set: &str, token: &FaceToken) -> Result<Option<FaceRecord>> {
        validate_set_name(set)?;
        let Some(slot) = self.slot(set) else {
            return Ok(None);
        };
        let value = slot
            .tree
            .get(token.as_str().as_bytes())
            .map_err(|e| sled_err(format!("reading face '{token}' of set '{set}'"), e))?;
        value
            .map(|v| {
                decode(
                    &v,
                    self.config.dims,
                    &Self::decode_what(set, token.as_str().as_bytes()),
                )
            })
            .transpose()
    }

    fn search(
        &self,
        set: &str,
        query: &[f32],
        threshold: f32,
        top_k: Option<usize>,
    ) -> Result<Vec<Match>> {
        validate_set_name(set)?;
        let Some(slot) = self.slot(set) else {
            return search_missing_set(query, threshold, self.config.dims);
        };
        let started = Instant::now();
        let state = slot.state.read();
        let hits = state.matrix.search(query, threshold, top_k)?;
        tracing::trace!(
            set,
            faces = state.matrix.len(),
            hits = hits.len(),
            micros = started.elapsed().as_micros() as u64,
            "searched face set"
        );
        Ok(hits)
    }

    fn sets(&self) -> Result<Vec<FaceSetInfo>> {
        Ok(self
            .sets
            .read()
            .iter()
            .map(|(name, slot)| FaceSetInfo {
                name: name.clone(),
                count: slot.state.read().matrix.len(),
            })
            .collect())
    }

    fn faces(&self, set: &str, offset: usize, limit: usize) -> Result<Vec<FaceSummary>> {
        validate_set_name(set)?;
        let Some(slot) = self.slot(set) else {
            return Ok(Vec::new());
        };
        slot.tree
            .iter()
            .skip(offset)
            .take(limit)
            .map(|item| {
                let (key, value) =
                    item.map_err(|e| sled_err(format!("listing faces of set '{set}'"), e))?;
                decode_summary(&value, &Self::decode_what(set, &key))
            })
            .collect()
    }

    fn records(
        &self,
        set: &str,
        after: Option<&FaceToken>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>> {
        validate_set_name(set)?;
        let Some(slot) = self.slot(set) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(token) => Bound::Excluded(token.as_str().as_bytes()),
            None => Bound::Unbounded,
        };
        slot.tree
            .range::<&[u8], _>((start, Bound::Unbounded))
            .take(limit)
            .map(|item| {
                let (key, value) =
                    item.map_err(|e| sled_err(format!("reading faces of set '{set}'"), e))?;
                decode(&value, self.config.dims, &Self::decode_what(set, &key))
            })
            .collect()
    }

    fn len(&self, set: &str) -> Result<usize> {
        validate_set_name(set)?;
        Ok(self
            .slot(set)
            .map_or(0, |slot| slot.state.read().matrix.len()))
    }

    fn delete_set(&self, set: &str) -> Result<bool> {
        validate_set_name(set)?;
        {
            // Hold the map's write lock until the tree is gone so that a
            // concurrent add cannot reopen the tree being dropped.
            let mut sets = self.sets.write();
            let Some(slot) = sets.remove(set) else {
                return Ok(false);
            };
            let mut state = slot.state.write();
            if let Err(e) = self.db.drop_tree(tree_name(set)) {
                drop(state);
                sets.insert(set.to_owned(), slot);
                return Err(sled_err(format!("deleting face set '{set}'"), e));
            }
            state.dropped = true;
            state.matrix = FaceMatrix::new(self.config.dims);
        }
        self.durable(|| format!("deleting face set '{set}'"))?;
        tracing::info!(set, "deleted face set");
        Ok(true)
    }

    fn flush(&self) -> Result<()> {
        self.durable(|| "an explicit flush request".to_owned())
    }

    fn ping(&self) -> Result<()> {
        Ok(())
    }
}
