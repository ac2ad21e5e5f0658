#![allow(clippy::unwrap_used, clippy::expect_used)]
//! PostgreSQL itself stopped and started again under two running servers: while it is down,
//! requests that need it answer a JSON 503 with Retry-After within 2 s and `/ready` says not
//! ready, the servers stay up; once it is back, everything works again and no acknowledged
//! face is lost.
//!
//! This test stops the machine's PostgreSQL cluster, so it runs only when asked to:
//! `FACEREC_TEST_PG_CLUSTER=15/main` (a cluster `pg_ctlcluster` knows, serving the test
//! server; `.ci/run` sets it). It is alone in its test binary, so that no other test of this
//! crate uses the database meanwhile.

mod common;

use std::ffi::OsStr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{ServerProcess, multipart_file};
use facerec_fixtures::multipart_type;
use facerec_fixtures::postgres::fresh_database;

const CLUSTER_ENV: &str = "FACEREC_TEST_PG_CLUSTER";

/// `pg_ctlcluster VERSION NAME ACTION`.
fn pg_ctlcluster(cluster: &str, action: &str) {
    let (version, name) = cluster
        .split_once('/')
        .unwrap_or_else(|| panic!("{CLUSTER_ENV}={cluster:?}: use VERSION/NAME, e.g. 15/main"));
    let mut command = Command::new("pg_ctlcluster");
    // Debian's wrapper would hand the action to systemd, which containers lack.
    command.arg("--skip-systemctl-redirect");
    command.args([version, name, action]);
    if action == "stop" {
        command.args(["--", "-m", "fast"]);
    }
    let status = command.status().expect("running pg_ctlcluster");
    assert!(
        status.success(),
        "pg_ctlcluster {cluster} {action}: {status}"
    );
}

/// Starts the cluster again however the test ends.
struct Restart<'a>(&'a str);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect"])
            .args(self.0.split('/'))
            .arg("start")
            .status();
    }
}

#[test]
fn postgres_stopped_and_started_under_running_servers() {
    let Ok(cluster) = std::env::var(CLUSTER_ENV) else {
        facerec_fixtures::skip(&format!(
            "it stops and starts a PostgreSQL cluster; set {CLUSTER_ENV} (e.g. 15/main) to let \
             it (CI does)"
        ));
        return;
    };
    let Some(db) = fresh_database("restart") else {
        return;
    };
    let flags = [OsStr::new("--store"), OsStr::new(&db.url)];
    let (a, b) = (
        ServerProcess::start_with(&flags),
        ServerProcess::start_with(&flags),
    );
    let detect = |server: &ServerProcess, photo: &str| -> String {
        let v = server
            .post(
                "/detect",
                Some(&multipart_type()),
                &multipart_file("image_file", &facerec_fixtures::photo_bytes(photo)),
            )
            .unwrap()
            .success()
            .unwrap();
        v["faces"][0]["face_token"].as_str().unwrap().to_owned()
    };
    let biden = detect(&a, "biden.jpg");
    let mut enrolled = Vec::new();
    for i in 0..20 {
        let set = format!("before{i}");
        a.get(&format!("/addface?face_token={biden}&face_set={set}"))
            .unwrap()
            .success()
            .unwrap();
        enrolled.push(set);
    }

    let restart = Restart(&cluster);
    pg_ctlcluster(&cluster, "stop");
    // Every request that needs the database: a JSON 503 with Retry-After, within 2 s.
    let needs_db = [
        format!("/addface?face_token={biden}&face_set=during"),
        format!("/removeface?face_token={biden}&face_set=before0"),
        format!("/search?face_token={biden}&threshold=0.6&face_set=before1"),
        format!("/crops/{biden}.jpg"),
        "/faceset?face_set=before2".to_owned(),
        "/ready".to_owned(),
    ];
    for server in [&a, &b] {
        for path in &needs_db {
            let started = Instant::now();
            let answer = server.get(path).unwrap();
            let took = started.elapsed();
            assert_eq!(answer.status, 503, "{path}: {}", answer.text());
            let v = answer.json().expect("a JSON body");
            assert_eq!(v["success"], false, "{path}");
            assert_eq!(v["error_code"], 1003, "{path}");
            assert!(
                took < Duration::from_secs(2),
                "{path} answered after {took:?}"
            );
        }
        // the server itself is fine
        assert_eq!(server.get("/health").unwrap().status, 200);
        let detect = server
            .post(
                "/detect",
                Some(&multipart_type()),
                &multipart_file("image_file", &facerec_fixtures::photo_bytes("obama.jpg")),
            )
            .unwrap();
        assert_eq!(detect.status, 503, "detect keeps its token in the database");
    }
    println!("PostgreSQL stopped: every request that needs it answered 503 within 2 s");

    pg_ctlcluster(&cluster, "start");
    std::mem::forget(restart); // started: nothing left to undo
    let back = Instant::now();
    for server in [&a, &b] {
        while server.get("/ready").unwrap().status != 200 {
            assert!(back.elapsed() < Duration::from_secs(30), "not ready again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("ready again {:?} after PostgreSQL started", back.elapsed());
    // writes work again, are seen by the other server, and nothing acknowledged was lost
    b.get(&format!("/addface?face_token={biden}&face_set=after"))
        .unwrap()
        .success()
        .unwrap();
    enrolled.push("after".to_owned());
    let fresh = detect(&b, "obama.jpg");
    a.get(&format!("/addface?face_token={fresh}&face_set=after"))
        .unwrap()
        .success()
        .unwrap();
    for set in &enrolled {
        for server in [&a, &b] {
            let deadline = Instant::now() + Duration::from_secs(2);
            loop {
                let v = server
                    .get(&format!(
                        "/search?face_token={biden}&threshold=0.01&face_set={set}"
                    ))
                    .unwrap()
                    .success()
                    .unwrap();
                if v["cmp_result"].as_array().unwrap().len() == 1 {
                    break;
                }
                assert!(Instant::now() < deadline, "{set} lost");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
