#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of the sled-backed face store.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use facerec_store::{
    Error, FaceRecord, FaceStore, FaceSummary, FaceToken, Match, SledStore, StoreConfig, Upsert,
};

const MODEL: &str = "sface-2021dec";
const D: usize = 128;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "facerec-store-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        Self(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn open(dir: &TempDir) -> SledStore {
    SledStore::open(dir.path(), StoreConfig::new(MODEL, D)).unwrap()
}

/// A 128-d vector with the given (index, value) entries, zero elsewhere.
fn sparse(entries: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![0.0; D];
    for &(i, x) in entries {
        v[i] = x;
    }
    v
}

fn tok(token: &str) -> FaceToken {
    FaceToken::parse(token).unwrap()
}

fn rec(token: &str, name: &str, embedding: Vec<f32>) -> FaceRecord {
    FaceRecord {
        token: tok(token),
        name: name.into(),
        embedding,
        model_id: MODEL.into(),
        created_unix_ms: 1_700_000_000_000,
    }
}

fn tokens(hits: &[Match]) -> Vec<&str> {
    hits.iter().map(|h| h.token.as_str()).collect()
}

/// Deterministic pseudo-random vectors (xorshift64*).
fn random_vec(seed: &mut u64) -> Vec<f32> {
    (0..D)
        .map(|_| {
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            let x = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect()
}

#[test]
fn add_search_remove_round_trip_with_exact_distances() {
    let dir = TempDir::new("roundtrip");
    let store = open(&dir);
    assert_eq!(store.model_id(), MODEL);
    assert_eq!(store.dims(), D);
    let five = sparse(&[(0, 3.0), (1, 4.0)]);
    let one = sparse(&[(127, -1.0)]);
    let halves = vec![0.5; D]; // distance sqrt(128 * 0.25) = sqrt(32)
    assert_eq!(
        store.add("s1", rec("five", "Five", five.clone())).unwrap(),
        Upsert::Inserted
    );
    assert_eq!(
        store.add("s1", rec("one", "One", one)).unwrap(),
        Upsert::Inserted
    );
    assert_eq!(
        store.add("s1", rec("halves", "Halves", halves)).unwrap(),
        Upsert::Inserted
    );

    let q = vec![0.0; D];
    let hits = store.search("s1", &q, 100.0, None).unwrap();
    assert_eq!(
        hits,
        vec![
            Match {
                token: tok("one"),
                name: "One".into(),
                distance: 1.0
            },
            Match {
                token: tok("five"),
                name: "Five".into(),
                distance: 5.0
            },
            Match {
                token: tok("halves"),
                name: "Halves".into(),
                distance: 32f32.sqrt()
            },
        ]
    );
    // from another point: distance to "five" is 0
    let hits = store.search("s1", &five, 5.0, None).unwrap();
    assert_eq!(hits[0].token, "five");
    assert_eq!(hits[0].distance, 0.0);

    let got = store.get("s1", &tok("five")).unwrap().unwrap();
    assert_eq!(got, rec("five", "Five", five));

    let removed = store.remove("s1", &tok("five")).unwrap();
    assert_eq!(removed.token, "five");
    assert_eq!(removed.name, "Five");
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
}

#[test]
fn ordering_threshold_strictly_below_and_top_k() {
    let dir = TempDir::new("order");
    let store = open(&dir);
    for d in [4u8, 1, 3, 2, 5] {
        let t = format!("d{d}");
        store
            .add("s", rec(&t, &t, sparse(&[(7, f32::from(d))])))
            .unwrap();
    }
    let q = vec![0.0; D];
    let all = store.search("s", &q, 10.0, None).unwrap();
    assert_eq!(tokens(&all), ["d1", "d2", "d3", "d4", "d5"]);
    assert_eq!(
        all.iter().map(|m| m.distance).collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0, 5.0]
    );
    // a face at exactly the threshold is not a match
    assert_eq!(
        tokens(&store.search("s", &q, 3.0, None).unwrap()),
        ["d1", "d2"]
    );
    assert_eq!(
        tokens(&store.search("s", &q, 3.0001, None).unwrap()),
        ["d1", "d2", "d3"]
    );
    assert_eq!(
        tokens(&store.search("s", &q, 10.0, Some(2)).unwrap()),
        ["d1", "d2"]
    );
    assert_eq!(
        tokens(&store.search("s", &q, 2.5, Some(4)).unwrap()),
        ["d1", "d2"]
    );
    assert!(store.search("s", &q, 10.0, Some(0)).unwrap().is_empty());
    assert!(store.search("s", &q, 1.0, None).unwrap().is_empty());
    // a set that does not exist: empty, not an error
    assert!(store.search("nope", &q, 10.0, None).unwrap().is_empty());
    assert!(store.faces("nope", 0, 10).unwrap().is_empty());
    assert_eq!(store.len("nope").unwrap(), 0);
}

#[test]
fn invalid_names_dims_and_models_are_typed_errors() {
    let dir = TempDir::new("invalid");
    let store = open(&dir);
    let v = vec![0.0; D];
    for bad in ["", "a b", "x/y", "é", &"n".repeat(65)] {
        let e = store.add(bad, rec("t", "", v.clone())).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidSetName { name } if name == bad),
            "{e}"
        );
        assert!(matches!(
            store.search(bad, &v, 1.0, None),
            Err(Error::InvalidSetName { .. })
        ));
        assert!(matches!(
            store.faces(bad, 0, 1),
            Err(Error::InvalidSetName { .. })
        ));
    }
    assert_eq!(
        store
            .add("a b", rec("t", "", v.clone()))
            .unwrap_err()
            .to_string(),
        "face set name 'a b' is invalid: use 1-64 characters of A-Z a-z 0-9 _ -"
    );
    store.add(&"n".repeat(64), rec("t", "", v.clone())).unwrap();

    let e = store.add("s", rec("t", "", vec![0.0; 64])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "embedding has 64 values; this store holds 128-d embeddings"
    );
    let e = store.search("s", &[0.0; 64], 1.0, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "query has 64 values; this store holds 128-d embeddings"
    );
    // also for a set that does not exist
    assert!(matches!(
        store.search("nope", &[0.0; 3], 1.0, None),
        Err(Error::WrongDims {
            got: 3,
            expected: 128,
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
        FaceToken::parse(""),
        Err(Error::InvalidToken { .. })
    ));
    assert!(matches!(
        FaceToken::parse(&"t".repeat(65)),
        Err(Error::InvalidToken { len: 65, .. })
    ));
    assert!(matches!(
        store.add("s", rec("t", &"n".repeat(257), v.clone())),
        Err(Error::NameTooLong { len: 257, .. })
    ));
    // nothing invalid made a set
    let names: Vec<String> = store.sets().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["n".repeat(64)]);

    assert!(matches!(
        SledStore::open(dir.path().join("x"), StoreConfig::new("", D)),
        Err(Error::InvalidConfig { .. })
    ));
    assert!(matches!(
        SledStore::open(dir.path().join("y"), StoreConfig::new(MODEL, 0)),
        Err(Error::InvalidConfig { .. })
    ));
}

#[test]
fn duplicate_token_replaces_and_persists() {
    let dir = TempDir::new("dup");
    {
        let store = open(&dir);
        store
            .add("s", rec("tok", "Old", sparse(&[(0, 1.0)])))
            .unwrap();
        store
            .add("s", rec("other", "Other", sparse(&[(0, 9.0)])))
            .unwrap();
        assert_eq!(
            store
                .add("s", rec("tok", "New", sparse(&[(0, 1.0)])))
                .unwrap(),
            Upsert::Replaced
        );
        // the same token in another set is another face
        assert_eq!(
            store
                .add("t", rec("tok", "Elsewhere", sparse(&[(0, 1.0)])))
                .unwrap(),
            Upsert::Inserted
        );
        assert_eq!(store.len("s").unwrap(), 2);
        let hits = store.search("s", &vec![0.0; D], 2.0, None).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].name, "New");
    }
    let store = open(&dir);
    assert_eq!(store.len("s").unwrap(), 2);
    assert_eq!(store.get("s", &tok("tok")).unwrap().unwrap().name, "New");
    assert_eq!(
        store.get("t", &tok("tok")).unwrap().unwrap().name,
        "Elsewhere"
    );
    let hits = store.search("s", &vec![0.0; D], 2.0, None).unwrap();
    assert_eq!(hits[0].name, "New");
}

#[test]
fn persistence_rebuilds_the_same_matrix() {
    let dir = TempDir::new("persist");
    let mut seed = 0x1234_5678_9abc_def0;
    let mut expected: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let queries: Vec<Vec<f32>> = (0..5).map(|_| random_vec(&mut seed)).collect();
    let before: Vec<Vec<Match>>;
    {
        let store = open(&dir);
        let mut batch = Vec::new();
        for i in 0..300 {
            let v = random_vec(&mut seed);
            let t = format!("tok{i:04}");
            expected.insert(t.clone(), v.clone());
            batch.push(rec(&t, &format!("name {i}"), v));
        }
        assert_eq!(store.add_many("big", batch).unwrap(), 300);
        // removals swap rows around; the reopened matrix must still agree
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
    let store = open(&dir);
    let sets = store.sets().unwrap();
    assert_eq!(sets.len(), 2);
    assert_eq!(
        (sets[0].name.as_str(), sets[0].count),
        ("big", expected.len())
    );
    assert_eq!((sets[1].name.as_str(), sets[1].count), ("small", 1));
    for (t, v) in &expected {
        let r = store.get("big", &tok(t)).unwrap().unwrap();
        assert_eq!(&r.embedding, v);
        assert_eq!(r.model_id, MODEL);
    }
    for (q, want) in queries.iter().zip(&before) {
        assert_eq!(&store.search("big", q, 0.88, None).unwrap(), want);
        // and the matrix agrees with a search over the stored records
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

#[test]
fn listing_pages_in_token_order_and_delete_set() {
    let dir = TempDir::new("list");
    let store = open(&dir);
    for t in ["c", "a", "e", "b", "d"] {
        let mut r = rec(t, &t.to_uppercase(), sparse(&[]));
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
    assert_eq!(page(0, 2), ["a", "b"]);
    assert_eq!(page(2, 2), ["c", "d"]);
    assert_eq!(page(4, 2), ["e"]);
    assert!(page(5, 2).is_empty());
    assert_eq!(
        store.faces("s", 0, 1).unwrap(),
        [FaceSummary {
            token: tok("a"),
            name: "A".into(),
            created_unix_ms: 97
        }]
    );
    store.add("t", rec("x", "", sparse(&[]))).unwrap();
    assert!(store.delete_set("s").unwrap());
    assert!(!store.delete_set("s").unwrap());
    assert_eq!(store.len("s").unwrap(), 0);
    assert!(
        store
            .search("s", &sparse(&[]), 1.0, None)
            .unwrap()
            .is_empty()
    );
    // re-creating works and starts empty
    store.add("s", rec("z", "", sparse(&[]))).unwrap();
    assert_eq!(page(0, 10), ["z"]);
    drop(store);
    let store = open(&dir);
    let sets: Vec<(String, usize)> = store
        .sets()
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.count))
        .collect();
    assert_eq!(sets, [("s".to_owned(), 1), ("t".to_owned(), 1)]);
}

#[test]
fn refuses_other_model_or_dims_and_newer_format() {
    let dir = TempDir::new("model");
    {
        let store = SledStore::open(dir.path(), StoreConfig::new("modelX", D)).unwrap();
        store
            .add("s", FaceRecord::new(tok("t"), "n", vec![0.0; D], "modelX"))
            .unwrap();
    }
    let e = SledStore::open(dir.path(), StoreConfig::new("modelY", 512)).unwrap_err();
    assert!(
        matches!(&e, Error::ModelMismatch { stored_model, stored_dims: 128, model, dims: 512, .. }
            if stored_model == "modelX" && model == "modelY"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("were made with model modelX (128-d); this server runs model modelY (512-d); refusing to mix embeddings"),
        "{msg}"
    );
    assert!(matches!(
        SledStore::open(dir.path(), StoreConfig::new("modelX", 64)),
        Err(Error::ModelMismatch {
            stored_dims: 128,
            dims: 64,
            ..
        })
    ));
    assert!(matches!(
        SledStore::open(dir.path(), StoreConfig::new("modelY", 128)),
        Err(Error::ModelMismatch { .. })
    ));
    // the right model still opens and finds its face
    {
        let store = SledStore::open(dir.path(), StoreConfig::new("modelX", D)).unwrap();
        assert_eq!(store.len("s").unwrap(), 1);
    }
    // a format version from the future is refused
    {
        // sled lets go of the lock from background threads shortly after a
        // drop; wait for it as SledStore::open does
        let started = std::time::Instant::now();
        let db = loop {
            match sled::open(dir.path()) {
                Ok(db) => break db,
                Err(e) if started.elapsed().as_secs() < 5 => {
                    eprintln!("waiting for the lock: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        db.open_tree("facerec/meta")
            .unwrap()
            .insert("format_version", &[2u8][..])
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledStore::open(dir.path(), StoreConfig::new("modelX", D)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::FormatTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn concurrent_adds_from_8_threads_all_visible_after_reopen() {
    let dir = TempDir::new("concurrent");
    let per_thread = 40;
    {
        let store = Arc::new(open(&dir));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut seed = 99 + t as u64;
                    for i in 0..per_thread {
                        // threads share "shared" and each has its own set
                        let set = if i % 2 == 0 {
                            "shared".to_owned()
                        } else {
                            format!("own{t}")
                        };
                        let r = rec(&format!("t{t}-{i}"), "n", random_vec(&mut seed));
                        store.add(&set, r).unwrap();
                        // searches run alongside
                        store
                            .search("shared", &random_vec(&mut seed), 1.0, Some(3))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(store.len("shared").unwrap(), 8 * per_thread / 2);
    }
    let store = open(&dir);
    assert_eq!(store.len("shared").unwrap(), 8 * per_thread / 2);
    for t in 0..8 {
        assert_eq!(store.len(&format!("own{t}")).unwrap(), per_thread / 2);
        for i in 0..per_thread {
            let set = if i % 2 == 0 {
                "shared".to_owned()
            } else {
                format!("own{t}")
            };
            let token = format!("t{t}-{i}");
            let r = store
                .get(&set, &tok(&token))
                .unwrap()
                .expect("acknowledged face is stored");
            // the face is found by searching for its own embedding
            let hits = store.search(&set, &r.embedding, 1e-3, Some(1)).unwrap();
            assert_eq!(hits[0].token.as_str(), token);
        }
    }
}

const CRASH_DIR_ENV: &str = "FACEREC_STORE_CRASH_DIR";
const CRASH_ROUND_ENV: &str = "FACEREC_STORE_CRASH_ROUND";

/// Child side of `kill_9_loses_no_acknowledged_change`: adds and removes
/// faces forever, printing each acknowledged change. Does nothing unless
/// started by that test.
#[test]
#[ignore = "run as a child process by kill_9_loses_no_acknowledged_change"]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_DIR_ENV) else {
        return;
    };
    let round = std::env::var(CRASH_ROUND_ENV).unwrap();
    let store = SledStore::open(&dir, StoreConfig::new(MODEL, D)).unwrap();
    let mut seed = 7;
    for i in 0.. {
        let token = format!("r{round}-{i}");
        store
            .add("crash", rec(&token, "n", random_vec(&mut seed)))
            .unwrap();
        println!("ADD {token}");
        if i % 3 == 2 {
            let victim = format!("r{round}-{}", i - 1);
            // from here until "DEL", the victim may or may not be there
            println!("DELETING {victim}");
            store.remove("crash", &tok(&victim)).unwrap();
            println!("DEL {victim}");
        }
    }
}

#[test]
fn kill_9_loses_no_acknowledged_change() {
    let dir = TempDir::new("crash");
    let exe = std::env::current_exe().unwrap();
    let mut present = BTreeSet::new();
    let mut absent = BTreeSet::new();
    for (round, kill_after) in [(0, 40), (1, 97), (2, 150)] {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_DIR_ENV, dir.path())
            .env(CRASH_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut acks = 0;
        let mut killed = false;
        // Every line the child wrote before it died is an acknowledgement:
        // after the kill, read on to the end of the pipe.
        for line in out.lines() {
            let line = line.unwrap();
            if let Some(t) = line.strip_prefix("ADD ") {
                present.insert(t.to_owned());
                acks += 1;
            } else if let Some(t) = line.strip_prefix("DELETING ") {
                present.remove(t); // may or may not be removed from now on
            } else if let Some(t) = line.strip_prefix("DEL ") {
                absent.insert(t.to_owned());
                acks += 1;
            }
            if acks >= kill_after && !killed {
                child.kill().unwrap(); // SIGKILL on Unix
                killed = true;
            }
        }
        assert!(killed, "child stopped early after {acks} changes");
        child.wait().unwrap();

        let store = open(&dir);
        for t in &present {
            assert!(
                store.get("crash", &tok(t)).unwrap().is_some(),
                "acknowledged add of {t} lost"
            );
        }
        for t in &absent {
            assert!(
                store.get("crash", &tok(t)).unwrap().is_none(),
                "acknowledged remove of {t} lost"
            );
        }
        // the matrix agrees with sled
        let listed = store.faces("crash", 0, usize::MAX).unwrap().len();
        assert_eq!(store.len("crash").unwrap(), listed);
    }
}

#[test]
fn a_second_open_of_the_same_dir_is_refused_as_locked() {
    let dir = TempDir::new("locked");
    let _first = open(&dir);
    let mut config = StoreConfig::new(MODEL, D);
    config.lock_wait = std::time::Duration::from_millis(100);
    let e = SledStore::open(dir.path(), config).unwrap_err();
    assert!(
        matches!(e, Error::Locked { waited_ms, .. } if waited_ms >= 100),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("is in use by another process"),
        "{e}"
    );
}
