#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two real `facerec-server` processes on 127.0.0.1 sharing one PostgreSQL database: what is
//! enrolled through one is found through the other, tokens and crops work on both, a slow
//! database answers 503 without holding the HTTP workers, and a server killed mid-adds loses
//! no acknowledged face. Each test makes its own database; without PostgreSQL they say so and
//! skip (unless `FACEREC_REQUIRE_POSTGRES=1`).

mod common;

use std::ffi::OsStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Answer, ServerProcess, env_number, multipart_file};
use facerec_fixtures::multipart_type;
use facerec_fixtures::postgres::{TestDatabase, fresh_database};
use serde_json::Value;

/// Starts `n` servers on `db` at once.
fn servers(db: &TestDatabase, n: usize) -> Vec<ServerProcess> {
    let flags = [OsStr::new("--store"), OsStr::new(&db.url)];
    std::thread::scope(|s| {
        let starting: Vec<_> = (0..n)
            .map(|_| s.spawn(|| ServerProcess::start_with(&flags)))
            .collect();
        starting.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// `/detect` on a photo; the token of its largest face.
fn detect_largest(server: &ServerProcess, photo: &str) -> String {
    let answer = server
        .post(
            "/detect",
            Some(&multipart_type()),
            &multipart_file("image_file", &facerec_fixtures::photo_bytes(photo)),
        )
        .unwrap();
    let v = answer.success().unwrap();
    let area = |f: &Value| {
        let (tl, br) = (&f["top_left"], &f["bottom_right"]);
        (br[0].as_f64().unwrap() - tl[0].as_f64().unwrap())
            * (br[1].as_f64().unwrap() - tl[1].as_f64().unwrap())
    };
    v["faces"]
        .as_array()
        .unwrap()
        .iter()
        .max_by(|a, b| area(a).total_cmp(&area(b)))
        .map(|f| f["face_token"].as_str().unwrap().to_owned())
        .expect("a face")
}

/// Tokens found by searching `set` with an enrolled (or detected) token.
fn found(server: &ServerProcess, token: &str, set: &str) -> Vec<String> {
    let v = server
        .get(&format!(
            "/search?face_token={token}&threshold=0.01&face_set={set}"
        ))
        .unwrap()
        .success()
        .unwrap();
    v["cmp_result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["face_token"].as_str().unwrap().to_owned())
        .collect()
}

fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

#[test]
fn two_servers_share_faces_tokens_and_crops() {
    let Some(db) = fresh_database("two") else {
        return;
    };
    let [a, b]: [ServerProcess; 2] = servers(&db, 2).try_into().ok().unwrap();

    // detect on A, enrol on B: the token and its crop are shared
    let obama = detect_largest(&a, "obama.jpg");
    let crop = b.get(&format!("/crops/{obama}.jpg")).unwrap();
    assert_eq!(crop.status, 200);
    assert!(crop.body.starts_with(&[0xFF, 0xD8]), "a JPEG");
    let added = b
        .get(&format!(
            "/addface?face_token={obama}&face_name=obama&face_set=staff"
        ))
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(added["face_name"], "obama");
    // the server that took the add finds it at once; the other within a second
    assert_eq!(found(&b, &obama, "staff"), std::slice::from_ref(&obama));
    let lag = eventually(Duration::from_secs(1), "B's add seen by A", || {
        found(&a, &obama, "staff") == [obama.clone()]
    });
    println!("an add on B was found by a search on A after {lag:?}");

    // search by photo on A: a new token, shared too
    let by_photo = a
        .post(
            "/search",
            Some(&multipart_type()),
            &facerec_fixtures::multipart(&[
                facerec_fixtures::Part::File(
                    "image_file",
                    &facerec_fixtures::photo_bytes("obama2.jpg"),
                ),
                facerec_fixtures::Part::Text("threshold", "0.6"),
                facerec_fixtures::Part::Text("face_set", "staff"),
            ]),
        )
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(by_photo["cmp_result"][0]["face_name"], "obama");
    let query = by_photo["face_token"].as_str().unwrap();
    assert_eq!(b.get(&format!("/crops/{query}.jpg")).unwrap().status, 200);

    // remove on B: gone on A
    b.get(&format!("/removeface?face_token={obama}&face_set=staff"))
        .unwrap()
        .success()
        .unwrap();
    eventually(Duration::from_secs(1), "B's remove seen by A", || {
        found(&a, &obama, "staff").is_empty()
    });
    let sets =
        |s: &ServerProcess| s.get("/facesets").unwrap().success().unwrap()["face_sets"].clone();
    assert_eq!(sets(&a), sets(&b));

    // compare on B with a token from A
    let biden = detect_largest(&a, "biden.jpg");
    let verdict = b
        .get(&format!(
            "/compare?face_token_a={obama}&face_token_b={biden}"
        ))
        .unwrap()
        .success()
        .unwrap();
    assert_eq!(verdict["same_person"], false);
}

#[test]
fn propagation_lag_over_many_adds() {
    let Some(db) = fresh_database("lag") else {
        return;
    };
    let [a, b]: [ServerProcess; 2] = servers(&db, 2).try_into().ok().unwrap();
    let adds = env_number("FACEREC_LAG_ADDS", 1000) as usize;
    let token = detect_largest(&a, "biden.jpg");
    let mut lags = Vec::with_capacity(adds);
    let started = Instant::now();
    // each add is a new face: the same token in a set of its own
    for i in 0..adds {
        let set = format!("lag{i}");
        a.get(&format!("/addface?face_token={token}&face_set={set}"))
            .unwrap()
            .success()
            .unwrap();
        lags.push(eventually(
            Duration::from_secs(1),
            "an add on A seen by B",
            || found(&b, &token, &set) == [token.clone()],
        ));
    }
    lags.sort();
    let pct = |p: f64| lags[((lags.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "propagation A -> B over {adds} adds ({:.1} s): p50 {:?}, p99 {:?}, max {:?} \
         (measured from A's answer to the first search on B that found the face)",
        started.elapsed().as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lags[lags.len() - 1]
    );
    assert!(pct(0.99) < Duration::from_secs(1));
}

#[test]
fn a_slow_database_answers_503_and_never_holds_the_http_workers() {
    let Some(db) = fresh_database("slow") else {
        return;
    };
    let [a]: [ServerProcess; 1] = servers(&db, 1).try_into().ok().unwrap();
    let token = detect_largest(&a, "obama.jpg");
    a.get(&format!("/addface?face_token={token}&face_set=s"))
        .unwrap()
        .success()
        .unwrap();
    // Another session holds the faces table: every write to it waits.
    let mut admin = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    let mut lock = admin.transaction().unwrap();
    lock.batch_execute("LOCK TABLE faces IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let answers: Arc<Mutex<Vec<(Answer, Duration)>>> = Arc::default();
    let health_worst = std::thread::scope(|s| {
        for i in 0..24 {
            let (a, token, answers) = (&a, &token, Arc::clone(&answers));
            s.spawn(move || {
                let started = Instant::now();
                let answer = a
                    .get(&format!("/addface?face_token={token}&face_set=w{i}"))
                    .unwrap();
                answers.lock().unwrap().push((answer, started.elapsed()));
            });
        }
        // meanwhile the HTTP workers answer at once
        let mut worst = Duration::ZERO;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            let started = Instant::now();
            assert_eq!(a.get("/health").unwrap().status, 200);
            worst = worst.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        worst
    });
    lock.rollback().unwrap();
    let answers = answers.lock().unwrap();
    for (answer, took) in answers.iter() {
        assert_eq!(answer.status, 503, "{}", answer.text());
        let v = answer.json().unwrap();
        assert_eq!(
            (v["success"].clone(), v["error_code"].clone()),
            (false.into(), 1003.into())
        );
        assert!(*took < Duration::from_millis(2500), "a 503 after {took:?}");
    }
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    println!(
        "with the faces table locked: 24 adds answered 503 within {slowest:?}; /health's \
         slowest answer meanwhile {health_worst:?}"
    );
    assert!(
        health_worst < Duration::from_millis(500),
        "{health_worst:?}"
    );
    // and writes work again
    a.get(&format!("/addface?face_token={token}&face_set=after"))
        .unwrap()
        .success()
        .unwrap();
}

#[test]
fn a_server_killed_mid_adds_loses_no_acknowledged_face() {
    let Some(db) = fresh_database("killmid") else {
        return;
    };
    let [a, b]: [ServerProcess; 2] = servers(&db, 2).try_into().ok().unwrap();
    let token = detect_largest(&a, "obama.jpg");
    let acknowledged = Mutex::new(Vec::new());
    let killed = AtomicBool::new(false);
    std::thread::scope(|s| {
        for w in 0..4 {
            let (a, token, acknowledged, killed) = (&a, &token, &acknowledged, &killed);
            s.spawn(move || {
                for i in 0.. {
                    let set = format!("k{w}x{i}");
                    match a.get(&format!("/addface?face_token={token}&face_set={set}")) {
                        Ok(answer) if answer.status == 200 => {
                            acknowledged.lock().unwrap().push(set)
                        }
                        Ok(answer) => panic!("{}", answer.text()),
                        Err(e) => {
                            assert!(killed.load(Ordering::SeqCst), "before the kill: {e}");
                            return;
                        }
                    }
                }
            });
        }
        while acknowledged.lock().unwrap().len() < 100 {
            std::thread::sleep(Duration::from_millis(1));
        }
        killed.store(true, Ordering::SeqCst);
        a.kill();
    });
    let acknowledged = acknowledged.into_inner().unwrap();
    // B has every acknowledged face
    eventually(
        Duration::from_secs(2),
        "B holds every acknowledged add",
        || {
            let v = b.get("/facesets").unwrap().success().unwrap();
            let sets = v["face_sets"].as_array().unwrap().len();
            sets >= acknowledged.len()
        },
    );
    for set in &acknowledged {
        assert_eq!(
            found(&b, &token, set),
            std::slice::from_ref(&token),
            "{set}"
        );
    }
    // and a restarted A loads them all
    let a = ServerProcess::start_with(&[OsStr::new("--store"), OsStr::new(&db.url)]);
    assert!(a.opened_faces() >= acknowledged.len() as u64);
    println!(
        "kill -9 of A after {} acknowledged adds: all found on B and on A restarted ({} faces)",
        acknowledged.len(),
        a.opened_faces()
    );
}

#[test]
fn store_copy_moves_a_sled_store_to_postgres_and_back() {
    use facerec_store::conformance::{random_vec, rec};
    use facerec_store::{FaceStore, SledStore, StoreConfig};

    let Some(db) = fresh_database("copy") else {
        return;
    };
    let base = common::fresh_dir("copy");
    let (from, back) = (base.join("from"), base.join("back"));
    {
        // records of the server's own model, so that a server can serve the copy
        let model = "dlib_face_recognition_resnet_model_v1";
        let store = SledStore::open(from.join("faces"), StoreConfig::new(model, 128)).unwrap();
        let mut seed = 11;
        for (set, n) in [("staff", 1200), ("visitors", 3)] {
            let records = (0..n)
                .map(|i| {
                    let mut r = rec(
                        &format!("{set}{i:05}"),
                        &format!("name {i} ñ"),
                        random_vec(&mut seed),
                    );
                    r.model_id = model.to_owned();
                    r
                })
                .collect();
            store.add_many(set, records).unwrap();
        }
    }
    let copy = |from: &str, to: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_facerec-server"))
            .args(["store", "copy", "--from", from, "--to", to])
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        (out.status.success(), stdout, stderr)
    };
    let sled_from = format!("sled:{}", from.display());
    let sled_back = format!("sled:{}", back.display());
    let (ok, stdout, stderr) = copy(&sled_from, &db.url);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("copied 1203 faces in 2 face sets") && stdout.contains("checksums agree"),
        "{stdout}"
    );
    println!("{}", stdout.trim());
    // into a store that already has faces: refused
    let (ok, _, stderr) = copy(&sled_from, &db.url);
    assert!(!ok);
    assert!(stderr.contains("already holds 1203 faces"), "{stderr}");
    // and back into a new sled store: the same faces, the same checksum
    let (ok, stdout_back, stderr) = copy(&db.url, &sled_back);
    assert!(ok, "{stdout_back}{stderr}");
    let checksum = |s: &str| s.rsplit("sha256 ").next().unwrap().trim().to_owned();
    assert_eq!(checksum(&stdout), checksum(&stdout_back));
    // a server on the copy serves the faces
    let server = ServerProcess::start_with(&[OsStr::new("--store"), OsStr::new(&db.url)]);
    assert_eq!(server.opened_faces(), 1203);
    drop(server);
    let _ = std::fs::remove_dir_all(&base);
}
