//! The one test suite every [`FaceStore`] and [`TokenStore`] implementation passes (feature
//! `conformance`).
//!
//! An implementation provides a [`StoreHarness`] (a fresh place to keep a store in, and a
//! way to open a store there) and invokes [`face_store_conformance!`](crate::face_store_conformance)
//! in its tests, which makes one `#[test]` per check; likewise [`TokenHarness`] and
//! [`token_store_conformance!`](crate::token_store_conformance). The checks panic (as tests
//! do) when the store misbehaves.
//!
//! ```
//! use facerec_store::conformance::StoreHarness;
//! use facerec_store::{FaceStore, SledStore, StoreConfig};
//!
//! /// Each place is a temp dir of its own.
//! struct Sled;
//! struct Dir(std::path::PathBuf);
//! impl Drop for Dir {
//!     fn drop(&mut self) { std::fs::remove_dir_all(&self.0).ok(); }
//! }
//! impl StoreHarness for Sled {
//!     type Place = Dir;
//!     fn fresh(&self, tag: &str) -> Dir {
//!         Dir(std::env::temp_dir().join(format!("facerec-doc-conformance-{tag}-{}", std::process::id())))
//!     }
//!     fn open(&self, place: &Dir, config: StoreConfig) -> facerec_store::Result<Box<dyn FaceStore>> {
//!         Ok(Box::new(SledStore::open(&place.0, config)?))
//!     }
//! }
//! facerec_store::conformance::paging_and_records(&Sled);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::{
    Error, FaceRecord, FaceStore, FaceSummary, FaceToken, Match, NewToken, Result, StoreConfig,
    TokenCacheConfig, TokenStore, Upsert,
};

/// Model id of the suite's records.
pub const MODEL: &str = "conformance-model";
/// Embedding size of the suite's records.
pub const DIMS: usize = 128;

/// What the face store checks need from an implementation.
pub trait StoreHarness {
    /// A place a store lives in (a data dir, a database), released on drop.
    type Place;

    /// A new, empty place; `tag` names the check (for temp names and messages).
    fn fresh(&self, tag: &str) -> Self::Place;

    /// Opens (or creates) the store kept in `place`. The suite drops a store before it
    /// opens the same place again.
    fn open(&self, place: &Self::Place, config: StoreConfig) -> Result<Box<dyn FaceStore>>;
}

/// What the token store checks need from an implementation.
pub trait TokenHarness {
    /// A place token stores live in (a crops folder, a database), released on drop.
    type Place;

    /// A new, empty place; `tag` names the check.
    fn fresh(&self, tag: &str) -> Self::Place;

    /// A token store in `place` with these bounds.
    fn open(&self, place: &Self::Place, config: TokenCacheConfig) -> Box<dyn TokenStore>;
}

/// One `#[test]` per face store check, each run with the harness `$harness` (an expression
/// evaluated in each test; it may `return` to skip, e.g. when a database is missing).
#[macro_export]
macro_rules! face_store_conformance {
    ($harness:expr) => {
        $crate::face_store_conformance!(@tests $harness;
            add_get_remove_with_exact_distances,
            order_threshold_and_top_k,
            ties_are_ordered_by_token,
            replace_keeps_one_face_per_token_and_set,
            invalid_input_is_refused_and_changes_nothing,
            names_and_tokens_at_their_limits,
            paging_and_records,
            sets_and_delete_set,
            reopen_keeps_every_face,
            other_model_or_dims_refused,
            add_many_is_all_or_nothing,
            concurrent_adds_and_searches,
        );
    };
    (@tests $harness:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let harness = $harness;
                $crate::conformance::$check(&harness);
            }
        )+
    };
}

/// One `#[test]` per token store check (see [`face_store_conformance!`]).
#[macro_export]
macro_rules! token_store_conformance {
    ($harness:expr) => {
        $crate::token_store_conformance!(@tests $harness;
            tokens_keep_embedding_and_crop,
            tokens_bounded_in_count_oldest_first,
            tokens_expire_with_their_crops,
        );
    };
    (@tests $harness:expr; $($check:ident),+ $(,)?) => {
        $(
            #[test]
            fn $check() {
                let harness = $harness;
                $crate::conformance::$check(&harness);
            }
        )+
    };
}

/// A token for the suite.
pub fn tok(text: &str) -> FaceToken {
    FaceToken::parse(text).unwrap()
}

/// A record of the suite's model.
pub fn rec(token: &str, name: &str, embedding: Vec<f32>) -> FaceRecord {
    FaceRecord {
        token: tok(token),
        name: name.into(),
        embedding,
        model_id: MODEL.into(),
        created_unix_ms: 1_700_000_000_000,
    }
}

/// A `DIMS`-d vector with the given (index, value) entries, zero elsewhere.
pub fn sparse(entries: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![0.0; DIMS];
    for &(i, x) in entries {
        v[i] = x;
    }
    v
}

/// Deterministic pseudo-random `DIMS`-d vectors (xorshift64*), values in ±0.1.
pub fn random_vec(seed: &mut u64) -> Vec<f32> {
    (0..DIMS)
        .map(|_| {
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            let x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

fn tokens(hits: &[Match]) -> Vec<&str> {
    hits.iter().map(|h| h.token.as_str()).collect()
}

fn open<H: StoreHarness>(h: &H, place: &H::Place) -> Box<dyn FaceStore> {
    h.open(place, StoreConfig::new(MODEL, DIMS))
        .expect("opening the store")
}

/// Add, search with exact distances, get, remove, and removing what is not there.
pub fn add_get_remove_with_exact_distances<H: StoreHarness>(h: &H) {
    let place = h.fresh("roundtrip");
    let store = open(h, &place);
    assert_eq!(store.model_id(), MODEL);
    assert_eq!(store.dims(), DIMS);
    let five = sparse(&[(0, 3.0), (1, 4.0)]);
    let one = sparse(&[(127, -1.0)]);
    let halves = vec![0.5; DIMS]; // distance sqrt(128 * 0.25) = sqrt(32)
    for (t, n, v) in [
        ("five", "Five", five.clone()),
        ("one", "One", one),
        ("halves", "Halves", halves),
    ] {
        assert_eq!(store.add("s1", rec(t, n, v)).unwrap(), Upsert::Inserted);
    }
    let q = vec![0.0; DIMS];
    let hits = store.search("s1", &q, 100.0, None).unwrap();
    let want = |t: &str, n: &str, distance: f32| Match {
        token: tok(t),
        name: n.into(),
        distance,
    };
    assert_eq!(
        hits,
        [
            want("one", "One", 1.0),
            want("five", "Five", 5.0),
            want("halves", "Halves", 32f32.sqrt())
        ]
    );
    let hits = store.search("s1", &five, 5.0, None).unwrap();
    assert_eq!((hits[0].token.as_str(), hits[0].distance), ("five", 0.0));

    assert_eq!(
        store.get("s1", &tok("five")).unwrap(),
        Some(rec("five", "Five", five))
    );
    assert_eq!(store.get("s1", &tok("nobody")).unwrap(), None);
    assert_eq!(store.get("nosuchset", &tok("five")).unwrap(), None);

    let removed = store.remove("s1", &tok("five")).unwrap();
    assert_eq!(
        (removed.token.as_str(), removed.name.as_str()),
        ("five", "Five")
    );
    assert_eq!(removed.created_unix_ms, 1_700_000_000_000);
    assert_eq!(store.len("s1").unwrap(), 2);
    assert_eq!(
        tokens(&store.search("s1", &q, 100.0, None).unwrap()),
        ["one", "halves"]
    );
    assert_eq!(store.get("s1", &tok("five")).unwrap(), None);
    assert!(matches!(
        store.remove("s1", &tok("five")),
        Err(Error::NotFound { set, token }) if set == "s1" && token == "five"
    ));
    assert!(matches!(
        store.remove("nosuchset", &tok("one")),
        Err(Error::NotFound { .. })
    ));
    store.ping().unwrap();
    store.flush().unwrap();
}

/// Nearest first, strictly below the threshold, at most `top_k`; an unknown set is empty.
pub fn order_threshold_and_top_k<H: StoreHarness>(h: &H) {
    let place = h.fresh("order");
    let store = open(h, &place);
    for d in [4u8, 1, 3, 2, 5] {
        let t = format!("d{d}");
        store
            .add("s", rec(&t, &t, sparse(&[(7, f32::from(d))])))
            .unwrap();
    }
    let q = vec![0.0; DIMS];
    let all = store.search("s", &q, 10.0, None).unwrap();
    assert_eq!(tokens(&all), ["d1", "d2", "d3", "d4", "d5"]);
    assert_eq!(
        all.iter().map(|m| m.distance).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0, 5.0]
    );
    // a face at exactly the threshold is not a match
    let at = |t: f32, k| tokens(&store.search("s", &q, t, k).unwrap()).join(",");
    assert_eq!(at(3.0, None), "d1,d2");
    assert_eq!(at(3.0001, None), "d1,d2,d3");
    assert_eq!(at(10.0, Some(2)), "d1,d2");
    assert_eq!(at(2.5, Some(4)), "d1,d2");
    assert_eq!(at(10.0, Some(0)), "");
    assert_eq!(at(1.0, None), "");
    assert_eq!(at(f32::INFINITY, None), "d1,d2,d3,d4,d5");
    assert!(store.search("nope", &q, 10.0, None).unwrap().is_empty());
    assert!(store.faces("nope", 0, 10).unwrap().is_empty());
    assert_eq!(store.len("nope").unwrap(), 0);
}

/// Equal distances come in token order (byte-wise), also under `top_k`.
pub fn ties_are_ordered_by_token<H: StoreHarness>(h: &H) {
    let place = h.fresh("ties");
    let store = open(h, &place);
    for t in ["c", "B", "a", "b", "A"] {
        store.add("s", rec(t, t, sparse(&[(0, 1.0)]))).unwrap();
    }
    let q = vec![0.0; DIMS];
    assert_eq!(
        tokens(&store.search("s", &q, 2.0, None).unwrap()),
        ["A", "B", "a", "b", "c"]
    );
    assert_eq!(
        tokens(&store.search("s", &q, 2.0, Some(2)).unwrap()),
        ["A", "B"]
    );
}

/// The same token again replaces the face in that set; in another set it is another face.
pub fn replace_keeps_one_face_per_token_and_set<H: StoreHarness>(h: &H) {
    let place = h.fresh("replace");
    {
        let store = open(h, &place);
        store
            .add("s", rec("tok", "Old", sparse(&[(0, 1.0)])))
            .unwrap();
        store
            .add("s", rec("other", "Other", sparse(&[(0, 9.0)])))
            .unwrap();
        let mut new = rec("tok", "New", sparse(&[(0, 1.5)]));
        new.created_unix_ms += 1;
        assert_eq!(store.add("s", new.clone()).unwrap(), Upsert::Replaced);
        assert_eq!(
            store
                .add("t", rec("tok", "Elsewhere", sparse(&[(0, 1.0)])))
                .unwrap(),
            Upsert::Inserted
        );
        assert_eq!(store.len("s").unwrap(), 2);
        let hits = store.search("s", &vec![0.0; DIMS], 2.0, None).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].name.as_str(), hits[0].distance), ("New", 1.5));
        assert_eq!(store.get("s", &tok("tok")).unwrap(), Some(new));
    }
    let store = open(h, &place);
    assert_eq!(store.len("s").unwrap(), 2);
    assert_eq!(store.get("s", &tok("tok")).unwrap().unwrap().name, "New");
    assert_eq!(
        store.get("t", &tok("tok")).unwrap().unwrap().name,
        "Elsewhere"
    );
}

/// Bad set names, sizes, values and models are typed errors, and none of them writes.
pub fn invalid_input_is_refused_and_changes_nothing<H: StoreHarness>(h: &H) {
    let place = h.fresh("invalid");
    let store = open(h, &place);
    let v = vec![0.0; DIMS];
    for bad in ["", "a b", "x/y", "é", &"n".repeat(65)] {
        let e = store.add(bad, rec("t", "", v.clone())).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidSetName { name } if name == bad),
            "{e}"
        );
        for e in [
            store.search(bad, &v, 1.0, None).map(|_| ()),
            store.faces(bad, 0, 1).map(|_| ()),
            store.records(bad, None, 1).map(|_| ()),
            store.len(bad).map(|_| ()),
            store.get(bad, &tok("t")).map(|_| ()),
            store.remove(bad, &tok("t")).map(|_| ()),
            store.delete_set(bad).map(|_| ()),
        ] {
            assert!(matches!(e, Err(Error::InvalidSetName { .. })), "{e:?}");
        }
    }
    assert_eq!(
        store
            .add("a b", rec("t", "", v.clone()))
            .unwrap_err()
            .to_string(),
        "face set name 'a b' is invalid: use 1-64 characters of A-Z a-z 0-9 _ -"
    );
    let e = store.add("s", rec("t", "", vec![0.0; 64])).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("embedding has 64 values; this store holds {DIMS}-d embeddings")
    );
    let e = store.search("s", &[0.0; 64], 1.0, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("query has 64 values; this store holds {DIMS}-d embeddings")
    );
    assert!(matches!(
        store.search("nope", &[0.0; 3], 1.0, None),
        Err(Error::WrongDims {
            got: 3,
            expected: DIMS,
            ..
        })
    ));
    let mut nan = v.clone();
    nan[5] = f32::NAN;
    assert!(matches!(
        store.add("s", rec("t", "", nan.clone())),
        Err(Error::NonFinite { index: 5, .. })
    ));
    assert!(matches!(
        store.search("s", &nan, 1.0, None),
        Err(Error::NonFinite { .. })
    ));
    assert!(matches!(
        store.search("s", &v, f32::NAN, None),
        Err(Error::InvalidThreshold { .. })
    ));
    let mut other = rec("t", "", v.clone());
    other.model_id = "arcface".into();
    let e = store.add("s", other).unwrap_err();
    assert!(matches!(e, Error::RecordModelMismatch { .. }));
    assert!(e.to_string().contains("arcface") && e.to_string().contains(MODEL));
    assert!(matches!(
        store.add("s", rec("t", &"n".repeat(257), v.clone())),
        Err(Error::NameTooLong { len: 257, .. })
    ));
    // nothing invalid made a set or a face
    assert!(store.sets().unwrap().is_empty());
    assert_eq!(store.len("s").unwrap(), 0);
}

/// The longest set name, token and face name are stored and read back exactly.
pub fn names_and_tokens_at_their_limits<H: StoreHarness>(h: &H) {
    let place = h.fresh("limits");
    let set = "n".repeat(crate::MAX_SET_NAME_CHARS);
    let token = "é".repeat(crate::MAX_TOKEN_BYTES / 2);
    let name = "ü".repeat(crate::MAX_NAME_BYTES / 2);
    {
        let store = open(h, &place);
        store
            .add(&set, rec(&token, &name, sparse(&[(1, 1.0)])))
            .unwrap();
        store.add(&set, rec("x", "", sparse(&[]))).unwrap();
        let hits = store.search(&set, &sparse(&[]), 1.5, None).unwrap();
        assert_eq!(tokens(&hits), ["x", token.as_str()]);
        assert_eq!(hits[1].name, name);
    }
    let store = open(h, &place);
    let got = store.get(&set, &tok(&token)).unwrap().unwrap();
    assert_eq!(
        (got.token.as_str(), got.name.as_str()),
        (token.as_str(), name.as_str())
    );
    assert_eq!(got.name.len(), crate::MAX_NAME_BYTES);
    let empty = store.get(&set, &tok("x")).unwrap().unwrap();
    assert_eq!(empty.name, "");
    assert_eq!(store.sets().unwrap()[0].name, set);
}

/// `faces` pages by offset and `records` by token, both in byte-wise token order.
pub fn paging_and_records<H: StoreHarness>(h: &H) {
    let place = h.fresh("paging");
    let store = open(h, &place);
    for t in ["c", "a", "e", "b", "d", "B", "é"] {
        let mut r = rec(t, &t.to_uppercase(), sparse(&[(0, 1.0)]));
        r.created_unix_ms = u64::from(t.as_bytes()[0]);
        store.add("s", r).unwrap();
    }
    let page = |o, l| -> Vec<String> {
        store
            .faces("s", o, l)
            .unwrap()
            .into_iter()
            .map(|f| f.token.to_string())
            .collect()
    };
    assert_eq!(page(0, 3), ["B", "a", "b"]);
    assert_eq!(page(3, 3), ["c", "d", "e"]);
    assert_eq!(page(6, 3), ["é"]);
    assert!(page(7, 3).is_empty());
    assert_eq!(page(0, usize::MAX).len(), 7);
    assert_eq!(
        store.faces("s", 1, 1).unwrap(),
        [FaceSummary {
            token: tok("a"),
            name: "A".into(),
            created_unix_ms: 97
        }]
    );
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let batch = store.records("s", after.as_ref(), 2).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 2);
        after = batch.last().map(|r| r.token.clone());
        seen.extend(batch);
    }
    assert_eq!(
        seen.iter().map(|r| r.token.as_str()).collect::<Vec<_>>(),
        ["B", "a", "b", "c", "d", "e", "é"]
    );
    assert_eq!(seen[1], {
        let mut r = rec("a", "A", sparse(&[(0, 1.0)]));
        r.created_unix_ms = 97;
        r
    });
    assert!(store.records("nope", None, 10).unwrap().is_empty());
    assert_eq!(
        store.records("s", Some(&tok("d")), 10).unwrap().len(),
        2,
        "strictly after the token"
    );
}

/// Sets are listed by name with counts, outlive their last face, and go with `delete_set`.
pub fn sets_and_delete_set<H: StoreHarness>(h: &H) {
    let place = h.fresh("sets");
    {
        let store = open(h, &place);
        for (set, t) in [("s", "a"), ("s", "b"), ("t", "x"), ("r", "y")] {
            store.add(set, rec(t, "", sparse(&[]))).unwrap();
        }
        let sets = |s: &dyn FaceStore| -> Vec<(String, usize)> {
            s.sets()
                .unwrap()
                .into_iter()
                .map(|i| (i.name, i.count))
                .collect()
        };
        assert_eq!(
            sets(&*store),
            [("r".into(), 1), ("s".into(), 2), ("t".into(), 1)]
        );
        store.remove("r", &tok("y")).unwrap();
        assert_eq!(sets(&*store)[0], ("r".into(), 0), "an emptied set stays");
        assert!(store.delete_set("s").unwrap());
        assert!(!store.delete_set("s").unwrap());
        assert!(!store.delete_set("never").unwrap());
        assert_eq!(store.len("s").unwrap(), 0);
        assert!(
            store
                .search("s", &sparse(&[]), 1.0, None)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.get("s", &tok("a")).unwrap(), None);
        // re-creating works and starts empty
        store.add("s", rec("z", "", sparse(&[]))).unwrap();
        assert_eq!(
            store
                .faces("s", 0, 10)
                .unwrap()
                .into_iter()
                .map(|f| f.token.to_string())
                .collect::<Vec<_>>(),
            ["z"]
        );
        assert_eq!(
            sets(&*store),
            [("r".into(), 0), ("s".into(), 1), ("t".into(), 1)]
        );
    }
    let store = open(h, &place);
    let sets: Vec<(String, usize)> = store
        .sets()
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.count))
        .collect();
    assert_eq!(sets, [("r".into(), 0), ("s".into(), 1), ("t".into(), 1)]);
}

/// A reopened store holds exactly what was acknowledged and searches it the same way.
pub fn reopen_keeps_every_face<H: StoreHarness>(h: &H) {
    let place = h.fresh("reopen");
    let mut seed = 0x1234_5678_9abc_def0;
    let mut expected: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let queries: Vec<Vec<f32>> = (0..5).map(|_| random_vec(&mut seed)).collect();
    let before: Vec<Vec<Match>>;
    {
        let store = open(h, &place);
        let mut batch = Vec::new();
        for i in 0..300 {
            let v = random_vec(&mut seed);
            let t = format!("tok{i:04}");
            expected.insert(t.clone(), v.clone());
            batch.push(rec(&t, &format!("name {i}"), v));
        }
        assert_eq!(store.add_many("big", batch).unwrap(), 300);
        // removals move rows around in memory; the reopened store must still agree
        for i in (0..300).step_by(7) {
            let t = format!("tok{i:04}");
            store.remove("big", &tok(&t)).unwrap();
            expected.remove(&t);
        }
        store
            .add("small", rec("only", "Only", sparse(&[(3, 1.0)])))
            .unwrap();
        before = queries
            .iter()
            .map(|q| store.search("big", q, 0.88, None).unwrap())
            .collect();
        assert!(
            before.iter().any(|h| h.len() > 3),
            "threshold too tight for the test"
        );
    }
    let store = open(h, &place);
    let sets = store.sets().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(
        (sets[0].name.as_str(), sets[0].count),
        ("big", expected.len())
    );
    assert_eq!((sets[1].name.as_str(), sets[1].count), ("small", 1));
    for (t, v) in &expected {
        let r = store.get("big", &tok(t)).unwrap().unwrap();
        assert_eq!(&r.embedding, v, "{t}");
        assert_eq!(r.model_id, MODEL);
    }
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&store.search("big", q, 0.88, None).unwrap(), want);
        let mut naive: Vec<(f32, String)> = expected
            .iter()
            .map(|(t, v)| {
                let d2: f32 = v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum();
                (d2.sqrt(), t.clone())
            })
            .filter(|(d, _)| *d < 0.88)
            .collect();
        naive.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert_eq!(
            tokens(want),
            naive.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>()
        );
    }
}

/// A store made for one model (or embedding size) refuses to open for another.
pub fn other_model_or_dims_refused<H: StoreHarness>(h: &H) {
    let place = h.fresh("model");
    {
        let store = h
            .open(&place, StoreConfig::new("modelX", DIMS))
            .expect("opening the store");
        store
            .add(
                "s",
                FaceRecord::new(tok("t"), "n", vec![0.0; DIMS], "modelX"),
            )
            .unwrap();
    }
    let refused = |model: &str, dims: usize| match h.open(&place, StoreConfig::new(model, dims)) {
        Ok(_) => panic!("a store of modelX ({DIMS}-d) opened as {model} ({dims}-d)"),
        Err(e) => e,
    };
    let e = refused("modelY", 512);
    assert!(
        matches!(&e, Error::ModelMismatch { stored_model, stored_dims, model, dims: 512, .. }
            if stored_model == "modelX" && model == "modelY" && *stored_dims == DIMS),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!(
            "were made with model modelX ({DIMS}-d); this server runs model modelY (512-d); \
             refusing to mix embeddings"
        )),
        "{msg}"
    );
    assert!(matches!(
        refused("modelX", 64),
        Error::ModelMismatch { dims: 64, .. }
    ));
    assert!(matches!(
        refused("modelY", DIMS),
        Error::ModelMismatch { .. }
    ));
    // the right model still opens and finds its face
    let store = h
        .open(&place, StoreConfig::new("modelX", DIMS))
        .expect("reopening with the right model");
    assert_eq!(store.len("s").unwrap(), 1);
    for config in [StoreConfig::new("", DIMS), StoreConfig::new(MODEL, 0)] {
        let place = h.fresh("config");
        assert!(matches!(
            h.open(&place, config),
            Err(Error::InvalidConfig { .. })
        ));
    }
}

/// `add_many` counts new tokens, and a batch with one bad record writes nothing.
pub fn add_many_is_all_or_nothing<H: StoreHarness>(h: &H) {
    let place = h.fresh("many");
    let store = open(h, &place);
    store.add("s", rec("a", "A", sparse(&[]))).unwrap();
    let batch = vec![
        rec("a", "A2", sparse(&[(0, 1.0)])),
        rec("b", "B", sparse(&[(0, 2.0)])),
        rec("c", "C", sparse(&[(0, 3.0)])),
    ];
    assert_eq!(store.add_many("s", batch).unwrap(), 2);
    assert_eq!(store.get("s", &tok("a")).unwrap().unwrap().name, "A2");
    assert_eq!(store.add_many("s", Vec::new()).unwrap(), 0);
    let bad = vec![rec("d", "D", sparse(&[])), rec("e", "E", vec![0.0; 3])];
    assert!(matches!(
        store.add_many("s", bad),
        Err(Error::WrongDims { .. })
    ));
    assert_eq!(store.len("s").unwrap(), 3);
    assert_eq!(store.get("s", &tok("d")).unwrap(), None);
    assert!(store.add_many("new set", Vec::new()).is_err());
}

/// Eight threads adding (to a shared set and their own) while searching: every acknowledged
/// face is there, also after reopening.
pub fn concurrent_adds_and_searches<H: StoreHarness>(h: &H) {
    let place = h.fresh("concurrent");
    let per_thread = 40;
    let set_of = |t: usize, i: usize| {
        if i.is_multiple_of(2) {
            "shared".to_owned()
        } else {
            format!("own{t}")
        }
    };
    {
        let store: Arc<dyn FaceStore> = Arc::from(open(h, &place));
        std::thread::scope(|scope| {
            for t in 0..8 {
                let store = Arc::clone(&store);
                scope.spawn(move || {
                    let mut seed = 99 + t as u64;
                    for i in 0..per_thread {
                        let r = rec(&format!("t{t}-{i}"), "n", random_vec(&mut seed));
                        store.add(&set_of(t, i), r).unwrap();
                        store
                            .search("shared", &random_vec(&mut seed), 1.0, Some(3))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.len("shared").unwrap(), 8 * per_thread / 2);
    }
    let store = open(h, &place);
    assert_eq!(store.len("shared").unwrap(), 8 * per_thread / 2);
    let mut all = BTreeSet::new();
    for t in 0..8 {
        assert_eq!(store.len(&format!("own{t}")).unwrap(), per_thread / 2);
        for i in 0..per_thread {
            let (set, token) = (set_of(t, i), format!("t{t}-{i}"));
            let r = store
                .get(&set, &tok(&token))
                .unwrap()
                .expect("an acknowledged face is stored");
            let hits = store.search(&set, &r.embedding, 1e-3, Some(1)).unwrap();
            assert_eq!(hits[0].token.as_str(), token);
            all.insert(token);
        }
    }
    assert_eq!(all.len(), 8 * per_thread);
}

fn new_token(embedding: f32) -> NewToken {
    NewToken {
        token: FaceToken::generate(),
        embedding: vec![embedding; 4],
        crop: format!("jpeg {embedding}").into_bytes(),
    }
}

/// A token's embedding and crop come back; unknown tokens have neither.
pub fn tokens_keep_embedding_and_crop<H: TokenHarness>(h: &H) {
    let place = h.fresh("keep");
    let store = h.open(&place, TokenCacheConfig::default());
    store.ping().unwrap();
    assert!(store.is_empty().unwrap());
    let (a, b) = (new_token(1.0), new_token(2.0));
    assert_eq!(store.insert(vec![a.clone(), b.clone()]).unwrap(), 0);
    assert_eq!(store.len().unwrap(), 2);
    for t in [&a, &b] {
        assert_eq!(
            store.embedding(&t.token).unwrap(),
            Some(t.embedding.clone())
        );
        assert_eq!(store.crop(&t.token).unwrap(), Some(t.crop.clone()));
    }
    let unknown = FaceToken::generate();
    assert_eq!(store.embedding(&unknown).unwrap(), None);
    assert_eq!(store.crop(&unknown).unwrap(), None);
    assert_eq!(store.embedding(&tok("not-generated")).unwrap(), None);
    assert_eq!(store.config(), TokenCacheConfig::default());
}

/// Beyond `max_entries`, the oldest tokens go first, with their crops.
pub fn tokens_bounded_in_count_oldest_first<H: TokenHarness>(h: &H) {
    let config = TokenCacheConfig {
        max_entries: 3,
        ..TokenCacheConfig::default()
    };
    let place = h.fresh("bounded");
    let store = h.open(&place, config);
    let made: Vec<NewToken> = (0..5).map(|i| new_token(i as f32)).collect();
    let mut evicted = 0;
    for t in &made {
        evicted += store.insert(vec![t.clone()]).unwrap();
    }
    assert_eq!(evicted, 2);
    assert_eq!(store.len().unwrap(), 3);
    for (i, t) in made.iter().enumerate() {
        let kept = i >= 2;
        assert_eq!(
            store.embedding(&t.token).unwrap().is_some(),
            kept,
            "token {i}"
        );
        assert_eq!(store.crop(&t.token).unwrap().is_some(), kept, "crop {i}");
    }
    // a batch larger than the bound keeps its newest
    let batch: Vec<NewToken> = (0..4).map(|i| new_token(10.0 + i as f32)).collect();
    assert_eq!(store.insert(batch.clone()).unwrap(), 4);
    assert_eq!(store.len().unwrap(), 3);
    assert!(store.embedding(&batch[0].token).unwrap().is_none());
    assert!(store.embedding(&batch[3].token).unwrap().is_some());
}

/// Tokens expire at their age limit, crops with them, and a purge drops them.
pub fn tokens_expire_with_their_crops<H: TokenHarness>(h: &H) {
    let config = TokenCacheConfig {
        max_entries: 100,
        ttl: Duration::from_secs(1),
    };
    let place = h.fresh("expiry");
    let store = h.open(&place, config);
    let old = new_token(1.0);
    store.insert(vec![old.clone()]).unwrap();
    assert!(store.embedding(&old.token).unwrap().is_some());
    std::thread::sleep(Duration::from_millis(1100));
    let young = new_token(2.0);
    store.insert(vec![young.clone()]).unwrap();
    assert_eq!(store.embedding(&old.token).unwrap(), None);
    assert_eq!(store.crop(&old.token).unwrap(), None);
    store.purge_expired().unwrap();
    assert_eq!(store.len().unwrap(), 1);
    assert_eq!(
        store.embedding(&young.token).unwrap(),
        Some(young.embedding)
    );
}

/// The key store checks, on two handles to one place (two processes sharing keys: a server
/// and the `keys` command, or two servers): what one changes, the other sees at its next
/// call.
pub fn key_store(first: &dyn crate::KeyStore, second: &dyn crate::KeyStore) {
    use crate::{KeyHash, NewKey, Role};
    assert!(!first.any().unwrap());
    assert!(first.list().unwrap().is_empty());
    assert_eq!(first.find(&KeyHash::of("frk_nothing")).unwrap(), None);

    let reader = NewKey::generate("reader", Role::Read, None).unwrap();
    let sets = Some(vec!["staff".to_owned(), "guests".to_owned()]);
    let writer = NewKey::generate("writer-1.b", Role::Write, sets.clone()).unwrap();
    first.create(writer.record.clone()).unwrap();
    first.create(reader.record.clone()).unwrap();
    assert!(second.any().unwrap());
    let found = second.find(&KeyHash::of(&writer.secret)).unwrap().unwrap();
    assert_eq!(found, writer.record);
    assert_eq!(found.sets, sets);
    assert!(found.allows_set("staff") && !found.allows_set("other"));
    assert_eq!(second.find(&KeyHash::of("frk_wrong")).unwrap(), None);
    // names are unique, listed in order, secrets never kept
    assert!(matches!(
        second.create(
            NewKey::generate("reader", Role::Admin, None)
                .unwrap()
                .record
        ),
        Err(Error::KeyExists { .. })
    ));
    let names: Vec<String> = second.list().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["reader", "writer-1.b"]);
    // invalid keys are refused before anything is written
    for (name, sets) in [
        ("", None),
        ("has space", None),
        (&*"n".repeat(crate::MAX_KEY_NAME_BYTES + 1), None),
        ("nosets", Some(vec![])),
        ("badset", Some(vec!["no spaces".to_owned()])),
    ] {
        let record = crate::KeyRecord {
            name: name.to_owned(),
            role: Role::Read,
            sets,
            hash: KeyHash::of(name),
            created_unix_ms: 0,
        };
        assert!(first.create(record).is_err(), "{name}");
    }
    assert_eq!(first.list().unwrap().len(), 2);
    // revoked on one handle: gone on the other at once
    assert_eq!(first.revoke("reader").unwrap().name, "reader");
    assert_eq!(second.find(&KeyHash::of(&reader.secret)).unwrap(), None);
    assert!(matches!(
        second.revoke("reader"),
        Err(Error::KeyNotFound { .. })
    ));
    second.revoke("writer-1.b").unwrap();
    assert!(!first.any().unwrap());
}
