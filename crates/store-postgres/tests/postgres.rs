#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The PostgreSQL store against a real PostgreSQL: the conformance suite every store passes,
//! then what only a shared store has (several stores on one database following each other,
//! a lost connection, a pruned change log, a database that is not there).
//!
//! Each test makes its own database (see `facerec_fixtures::postgres`); without a reachable
//! server the tests say so and skip, unless `FACEREC_REQUIRE_POSTGRES=1`.

use std::time::{Duration, Instant};

use facerec_fixtures::postgres::{TestDatabase, available, fresh_database};
use facerec_store::conformance::{DIMS, MODEL, StoreHarness, TokenHarness, rec, sparse, tok};
use facerec_store::{Error, FaceStore, StoreConfig, TokenCacheConfig, TokenStore};
use facerec_store_postgres::{PgConfig, PgStore, Postgres};

/// Each store in a database of its own.
struct Pg;

/// The harness, or `None` (the test returns, having said why) without PostgreSQL.
fn harness() -> Option<Pg> {
    available().then_some(Pg)
}

impl StoreHarness for Pg {
    type Place = TestDatabase;

    fn fresh(&self, tag: &str) -> TestDatabase {
        fresh_database(tag).expect("the server answered a moment ago")
    }

    fn open(
        &self,
        place: &TestDatabase,
        config: StoreConfig,
    ) -> facerec_store::Result<Box<dyn FaceStore>> {
        Ok(Box::new(
            Postgres::connect(PgConfig::new(&place.url))?.face_store(config)?,
        ))
    }
}

impl TokenHarness for Pg {
    type Place = TestDatabase;

    fn fresh(&self, tag: &str) -> TestDatabase {
        fresh_database(tag).expect("the server answered a moment ago")
    }

    fn open(&self, place: &TestDatabase, config: TokenCacheConfig) -> Box<dyn TokenStore> {
        Box::new(
            Postgres::connect(PgConfig::new(&place.url))
                .unwrap()
                .token_store(config),
        )
    }
}

mod conformance {
    use super::*;

    facerec_store::face_store_conformance!(match harness() {
        Some(h) => h,
        None => return,
    });
    facerec_store::token_store_conformance!(match harness() {
        Some(h) => h,
        None => return,
    });
}

#[test]
fn key_store_conformance() {
    let Some(db) = database("keys") else { return };
    let (a, b) = (
        Postgres::connect(PgConfig::new(&db.url)).unwrap(),
        Postgres::connect(PgConfig::new(&db.url)).unwrap(),
    );
    facerec_store::conformance::key_store(&a.key_store(), &b.key_store());
}

/// A fresh database, or `None` without PostgreSQL.
fn database(tag: &str) -> Option<TestDatabase> {
    if available() {
        fresh_database(tag)
    } else {
        None
    }
}

fn store(db: &TestDatabase) -> PgStore {
    store_with(db, PgConfig::new(&db.url))
}

fn store_with(db: &TestDatabase, config: PgConfig) -> PgStore {
    let _ = db;
    Postgres::connect(config)
        .unwrap()
        .face_store(StoreConfig::new(MODEL, DIMS))
        .unwrap()
}

/// Waits until `check` holds, at most `within`; returns how long it took.
fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    started.elapsed()
}

fn names(store: &dyn FaceStore, set: &str) -> Vec<String> {
    store
        .search(set, &sparse(&[]), f32::INFINITY, None)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect()
}

#[test]
fn stores_on_one_database_follow_each_other_within_a_second() {
    let Some(db) = database("follow") else { return };
    let (a, b) = (store(&db), store(&db));
    a.add("staff", rec("ann", "Ann", sparse(&[(0, 1.0)])))
        .unwrap();
    // the writer sees its own add at once; the other within a second
    assert_eq!(names(&a, "staff"), ["Ann"]);
    let lag = eventually(Duration::from_secs(1), "add on A seen by B", || {
        names(&b, "staff") == ["Ann"]
    });
    println!("add on A seen by B after {lag:?}");
    // a rename, a removal and a whole set, the other way round
    b.add("staff", rec("ann", "Anne", sparse(&[(0, 1.0)])))
        .unwrap();
    b.add("staff", rec("bob", "Bob", sparse(&[(0, 2.0)])))
        .unwrap();
    b.remove("staff", &tok("bob")).unwrap();
    b.add("other", rec("cy", "Cy", sparse(&[]))).unwrap();
    eventually(Duration::from_secs(1), "B's changes seen by A", || {
        names(&a, "staff") == ["Anne"] && a.len("other").unwrap() == 1
    });
    assert!(a.delete_set("other").unwrap());
    eventually(Duration::from_secs(1), "A's delete_set seen by B", || {
        b.sets().unwrap().len() == 1
    });
    assert_eq!(b.applied_change(), a.applied_change());
    // a third server starting now loads the same state
    let c = store(&db);
    assert_eq!(names(&c, "staff"), ["Anne"]);
    assert_eq!(c.sets().unwrap(), a.sets().unwrap());
}

#[test]
fn a_lost_connection_is_caught_up_not_lost() {
    let Some(db) = database("reconnect") else {
        return;
    };
    let (a, b) = (store(&db), store(&db));
    a.add("s", rec("one", "One", sparse(&[]))).unwrap();
    eventually(Duration::from_secs(1), "first add", || {
        b.len("s").unwrap() == 1
    });
    // Every connection to the database is cut: A's, and B's pool and LISTEN connection.
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let cut = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .len();
    assert!(cut >= 3, "cut {cut} connections");
    // A reconnects for its next write; B reconnects and reads what it missed
    let mut added = 0;
    let started = Instant::now();
    while added < 20 {
        match a.add(
            "s",
            rec(&format!("t{added}"), "n", sparse(&[(1, added as f32)])),
        ) {
            Ok(_) => added += 1,
            Err(Error::Unavailable { .. }) if started.elapsed() < Duration::from_secs(5) => {}
            Err(e) => panic!("{e}"),
        }
    }
    eventually(
        Duration::from_secs(5),
        "adds after the cut seen by B",
        || b.len("s").unwrap() == 21,
    );
}

#[test]
fn a_pruned_change_log_means_a_full_reload() {
    let Some(db) = database("pruned") else { return };
    let b = store(&db);
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    // A face B never hears of, behind a log pruned past B's last change.
    admin
        .batch_execute(&format!(
            "INSERT INTO face_sets (name) VALUES ('s');
             INSERT INTO faces (set_name, token, name, embedding, model_id, created_unix_ms)
             VALUES ('s', 'ghost', 'Ghost', decode(repeat('00', {}), 'hex'), '{MODEL}', 0);
             UPDATE facerec_log SET pruned_through = {} + 5;",
            DIMS * 4,
            b.applied_change()
        ))
        .unwrap();
    b.catch_up().unwrap();
    assert_eq!(names(&b, "s"), ["Ghost"]);
    assert!(b.applied_change() >= 5);
}

#[test]
fn writes_commit_before_they_return_and_survive_a_new_pool() {
    let Some(db) = database("durable") else {
        return;
    };
    {
        let a = store(&db);
        a.add_many(
            "s",
            (0..500)
                .map(|i| rec(&format!("t{i:03}"), "n", sparse(&[(2, i as f32)])))
                .collect(),
        )
        .unwrap();
        a.remove("s", &tok("t007")).unwrap();
    }
    let again = store(&db);
    assert_eq!(again.len("s").unwrap(), 499);
    assert!(again.get("s", &tok("t007")).unwrap().is_none());
    assert_eq!(
        again.get("s", &tok("t499")).unwrap().unwrap().embedding[2],
        499.0
    );
}

#[test]
fn a_database_that_is_not_there_is_unavailable_quickly() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let started = Instant::now();
    let err = Postgres::connect(PgConfig::new(format!(
        "postgres://postgres@127.0.0.1:{port}/none"
    )))
    .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(db) = database("newer") else { return };
    drop(store(&db));
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    admin
        .batch_execute("INSERT INTO facerec_migrations (version, name) VALUES (99, 'future')")
        .unwrap();
    let err = Postgres::connect(PgConfig::new(&db.url)).unwrap_err();
    assert!(
        matches!(err, Error::FormatTooNew { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn servers_starting_together_migrate_once() {
    let Some(db) = database("together") else {
        return;
    };
    let stores: Vec<PgStore> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| store(&db))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let migrations: i64 = admin
        .query_one("SELECT count(*) FROM facerec_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(migrations, 3);
    stores[0].add("s", rec("x", "", sparse(&[]))).unwrap();
    for s in &stores {
        eventually(Duration::from_secs(1), "every store sees the add", || {
            s.len("s").unwrap() == 1
        });
    }
}

#[test]
fn tokens_are_shared_between_servers() {
    let Some(db) = database("tokens") else { return };
    let a = Postgres::connect(PgConfig::new(&db.url))
        .unwrap()
        .token_store(TokenCacheConfig::default());
    let b = Postgres::connect(PgConfig::new(&db.url))
        .unwrap()
        .token_store(TokenCacheConfig::default());
    let token = facerec_store::FaceToken::generate();
    a.insert(vec![facerec_store::NewToken {
        token: token.clone(),
        embedding: vec![0.25; DIMS],
        crop: b"\xFF\xD8 a jpeg".to_vec(),
    }])
    .unwrap();
    assert_eq!(b.embedding(&token).unwrap(), Some(vec![0.25; DIMS]));
    assert_eq!(
        b.crop(&token).unwrap().as_deref(),
        Some(&b"\xFF\xD8 a jpeg"[..])
    );
    // the table does not survive a PostgreSQL crash, by design
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let unlogged: bool = admin
        .query_one(
            "SELECT relpersistence = 'u' FROM pg_class WHERE relname = 'face_tokens'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(unlogged);
}
