//! [`FaceIndex`]: named face sets held in memory for exact search, for stores whose records
//! live elsewhere (a database shared by several servers).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{Error, Result};
use crate::matrix::FaceMatrix;
use crate::record::{FaceSetInfo, Match, Upsert, validate_vector};
use crate::token::FaceToken;

/// Face sets by name, each a [`FaceMatrix`] behind its own lock: searches of a set run in
/// parallel with each other and with changes to other sets.
///
/// A set exists once [`ensure`](Self::ensure)d or upserted into, also when all its faces
/// have been removed since, until [`drop_set`](Self::drop_set).
///
/// ```
/// use facerec_store::{FaceIndex, FaceToken};
/// let index = FaceIndex::new(2);
/// index.upsert("staff", &FaceToken::parse("a")?, "Ann", &[0.0, 0.0])?;
/// index.upsert("staff", &FaceToken::parse("b")?, "Bob", &[3.0, 4.0])?;
/// let hits = index.search("staff", &[0.0, 1.0], 10.0, Some(1))?;
/// assert_eq!((hits[0].name.as_str(), hits[0].distance), ("Ann", 1.0));
/// assert_eq!(index.len("staff"), 2);
/// assert!(index.remove("staff", "a"));
/// assert!(index.drop_set("staff"));
/// assert!(index.sets().is_empty());
/// # Ok::<(), facerec_store::Error>(())
/// ```
#[derive(Debug)]
pub struct FaceIndex {
    dims: usize,
    sets: RwLock<BTreeMap<String, Arc<RwLock<FaceMatrix>>>>,
}

impl FaceIndex {
    /// An index of `dims`-d embeddings without sets.
    pub fn new(dims: usize) -> Self {
        Self {
            dims,
            sets: RwLock::new(BTreeMap::new()),
        }
    }

    /// An index holding `sets` (each matrix must be `dims`-d).
    pub fn from_sets(dims: usize, sets: BTreeMap<String, FaceMatrix>) -> Result<Self> {
        if let Some((name, m)) = sets.iter().find(|(_, m)| m.dims() != dims) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "face set '{name}' holds {}-d embeddings, the index {dims}-d",
                    m.dims()
                ),
            });
        }
        Ok(Self {
            dims,
            sets: RwLock::new(
                sets.into_iter()
                    .map(|(name, m)| (name, Arc::new(RwLock::new(m))))
                    .collect(),
            ),
        })
    }

    /// Values per embedding.
    pub fn dims(&self) -> usize {
        self.dims
    }

    fn set(&self, name: &str) -> Option<Arc<RwLock<FaceMatrix>>> {
        self.sets.read().get(name).cloned()
    }

    fn set_or_create(&self, name: &str) -> Arc<RwLock<FaceMatrix>> {
        if let Some(set) = self.set(name) {
            return set;
        }
        Arc::clone(
            self.sets
                .write()
                .entry(name.to_owned())
                .or_insert_with(|| Arc::new(RwLock::new(FaceMatrix::new(self.dims)))),
        )
    }

    /// Makes set `name` exist (empty if new).
    pub fn ensure(&self, name: &str) {
        self.set_or_create(name);
    }

    /// Adds or replaces a face of set `set` (making the set if needed).
    pub fn upsert(
        &self,
        set: &str,
        token: &FaceToken,
        name: &str,
        embedding: &[f32],
    ) -> Result<Upsert> {
        validate_vector("embedding", embedding, self.dims)?;
        self.set_or_create(set)
            .write()
            .upsert(token, name, embedding)
    }

    /// Removes a face; returns whether it was there.
    pub fn remove(&self, set: &str, token: &str) -> bool {
        self.set(set).is_some_and(|m| m.write().remove(token))
    }

    /// Forgets a whole set; returns whether it existed.
    pub fn drop_set(&self, set: &str) -> bool {
        self.sets.write().remove(set).is_some()
    }

    /// Every face of `set` nearer to `query` than `threshold`, nearest first (ties by token),
    /// at most `top_k` (see [`FaceMatrix::search`]). A set that does not exist has no
    /// matches; the query and threshold are checked all the same.
    pub fn search(
        &self,
        set: &str,
        query: &[f32],
        threshold: f32,
        top_k: Option<usize>,
    ) -> Result<Vec<Match>> {
        match self.set(set) {
            Some(m) => m.read().search(query, threshold, top_k),
            None => search_missing_set(query, threshold, self.dims),
        }
    }

    /// The name and embedding of a face.
    pub fn get(&self, set: &str, token: &str) -> Option<(String, Vec<f32>)> {
        let m = self.set(set)?;
        let m = m.read();
        m.get(token).map(|(name, e)| (name.to_owned(), e.to_vec()))
    }

    /// Every set with its face count, by name.
    pub fn sets(&self) -> Vec<FaceSetInfo> {
        self.sets
            .read()
            .iter()
            .map(|(name, m)| FaceSetInfo {
                name: name.clone(),
                count: m.read().len(),
            })
            .collect()
    }

    /// Faces in set `set` (0 if it does not exist).
    pub fn len(&self, set: &str) -> usize {
        self.set(set).map_or(0, |m| m.read().len())
    }

    /// Faces in all sets.
    pub fn faces(&self) -> usize {
        self.sets.read().values().map(|m| m.read().len()).sum()
    }

    /// Heap bytes of all matrices (see [`FaceMatrix::heap_bytes`]).
    pub fn heap_bytes(&self) -> usize {
        self.sets
            .read()
            .values()
            .map(|m| m.read().heap_bytes())
            .sum()
    }

    /// Replaces every set at once (after a full reload).
    pub fn replace(&self, other: FaceIndex) {
        *self.sets.write() = other.sets.into_inner();
    }
}

/// A search of a set that does not exist: no matches, once the query and threshold have
/// passed the checks a search of an existing set makes.
pub(crate) fn search_missing_set(query: &[f32], threshold: f32, dims: usize) -> Result<Vec<Match>> {
    validate_vector("query", query, dims)?;
    if threshold.is_nan() {
        return Err(Error::InvalidThreshold { threshold });
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> FaceToken {
        FaceToken::parse(text).unwrap()
    }

    #[test]
    fn sets_live_until_dropped_even_when_empty() {
        let index = FaceIndex::new(1);
        index.upsert("s", &t("a"), "A", &[1.0]).unwrap();
        assert!(index.remove("s", "a"));
        assert!(!index.remove("s", "a"));
        assert_eq!(
            index.sets(),
            [FaceSetInfo {
                name: "s".into(),
                count: 0
            }]
        );
        index.ensure("e");
        assert_eq!(index.sets().len(), 2);
        assert!(index.drop_set("s"));
        assert!(!index.drop_set("s"));
        assert_eq!(index.len("s"), 0);
    }

    #[test]
    fn searches_check_their_query_even_without_a_set() {
        let index = FaceIndex::new(2);
        assert!(matches!(
            index.search("none", &[0.0], 1.0, None),
            Err(Error::WrongDims { .. })
        ));
        assert!(matches!(
            index.search("none", &[0.0, 0.0], f32::NAN, None),
            Err(Error::InvalidThreshold { .. })
        ));
        assert!(matches!(
            index.upsert("s", &t("a"), "", &[0.0]),
            Err(Error::WrongDims { .. })
        ));
        assert!(index.sets().is_empty(), "a refused upsert made no set");
    }

    #[test]
    fn replace_swaps_everything() {
        let index = FaceIndex::new(1);
        index.upsert("old", &t("a"), "", &[0.0]).unwrap();
        let mut m = FaceMatrix::new(1);
        m.upsert(&t("b"), "B", &[2.0]).unwrap();
        let fresh = FaceIndex::from_sets(1, BTreeMap::from([("new".to_owned(), m)])).unwrap();
        index.replace(fresh);
        assert_eq!(index.len("old"), 0);
        assert_eq!(index.get("new", "b"), Some(("B".to_owned(), vec![2.0])));
        assert_eq!(index.faces(), 1);
        let bad = FaceIndex::from_sets(2, BTreeMap::from([("x".to_owned(), FaceMatrix::new(1))]));
        assert!(bad.is_err());
    }
}
