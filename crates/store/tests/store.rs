#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The sled store: the conformance suite every store passes, then what only an embedded
//! store has (its data dir's lock, its on-disk format, a kill -9 of the writing process).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use facerec_store::conformance::{
    DIMS as D, MODEL, StoreHarness, TokenHarness, random_vec, rec, tok,
};
use facerec_store::{
    Error, FaceRecord, FaceStore, LocalTokens, SledStore, StoreConfig, TokenCacheConfig, TokenStore,
};

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

/// Each store in a temp dir of its own.
struct Sled;

impl StoreHarness for Sled {
    type Place = TempDir;

    fn fresh(&self, tag: &str) -> TempDir {
        TempDir::new(tag)
    }

    fn open(
        &self,
        place: &TempDir,
        config: StoreConfig,
    ) -> facerec_store::Result<Box<dyn FaceStore>> {
        Ok(Box::new(SledStore::open(place.path(), config)?))
    }
}

/// Each token store with a crops folder of its own.
struct Local;

impl TokenHarness for Local {
    type Place = TempDir;

    fn fresh(&self, tag: &str) -> TempDir {
        TempDir::new(tag)
    }

    fn open(&self, place: &TempDir, config: TokenCacheConfig) -> Box<dyn TokenStore> {
        Box::new(LocalTokens::open(place.path().join("crops"), config).unwrap())
    }
}

mod conformance {
    use super::*;

    facerec_store::face_store_conformance!(Sled);
    facerec_store::token_store_conformance!(Local);
}

fn open(dir: &TempDir) -> SledStore {
    SledStore::open(dir.path(), StoreConfig::new(MODEL, D)).unwrap()
}

#[test]
fn a_newer_format_version_is_refused() {
    let dir = TempDir::new("format");
    {
        let store = open(&dir);
        store.add("s", rec("t", "n", vec![0.0; D])).unwrap();
    }
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
    let e = SledStore::open(dir.path(), StoreConfig::new(MODEL, D)).unwrap_err();
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
fn records_of_another_model_in_the_data_dir_are_corruption() {
    let dir = TempDir::new("foreign");
    let store = open(&dir);
    let e = store
        .add("s", FaceRecord::new(tok("t"), "n", vec![0.0; D], "modelX"))
        .unwrap_err();
    assert!(matches!(e, Error::RecordModelMismatch { .. }), "{e}");
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
    let mut seed = 7u64;
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

#[test]
fn file_keys_conformance() {
    let dir = TempDir::new("keys");
    std::fs::create_dir_all(dir.path()).unwrap();
    let (a, b) = (
        facerec_store::FileKeys::in_dir(dir.path()),
        facerec_store::FileKeys::in_dir(dir.path()),
    );
    facerec_store::conformance::key_store(&a, &b);
}

#[test]
fn a_corrupt_key_file_is_an_error_not_an_open_door() {
    use facerec_store::KeyStore;
    let dir = TempDir::new("keys-corrupt");
    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(dir.path().join("keys.json"), b"{not json").unwrap();
    let keys = facerec_store::FileKeys::in_dir(dir.path());
    assert!(matches!(
        keys.any(),
        Err(facerec_store::Error::Corrupt { .. })
    ));
}
