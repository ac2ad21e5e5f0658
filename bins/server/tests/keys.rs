#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `facerec-server keys` on the store of running servers, and the refusal to serve a
//! non-loopback address without keys.

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ServerProcess, fresh_dir};
use facerec_fixtures::postgres::fresh_database;
use serde_json::Value;

/// Runs `facerec-server keys ARGS` on a store; its stdout (the new key for `create`).
fn keys(store: &[&OsStr], args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
        .arg("keys")
        .args(store)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keys {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn status(server: &ServerProcess, key: Option<&str>) -> u16 {
    match key {
        Some(key) => server.get_with_key("/facesets", key).unwrap().status,
        None => server.get("/facesets").unwrap().status,
    }
}

#[test]
fn keys_are_made_listed_and_revoked_while_the_server_runs() {
    let dir = fresh_dir("keys-cli");
    let server = ServerProcess::start(&dir);
    let store = [OsStr::new("--data-dir"), dir.as_os_str()];
    // no key yet, on loopback: open as the original API
    assert_eq!(status(&server, None), 200);

    let admin = keys(&store, &["create", "--name", "ops", "--role", "admin"]);
    let reader = keys(
        &store,
        &[
            "create", "--name", "viewer", "--role", "read", "--sets", "a,b",
        ],
    );
    assert!(admin.starts_with("frk_") && admin.len() == 44, "{admin}");
    // from the next request on, a key is needed
    assert_eq!(status(&server, None), 401);
    assert_eq!(status(&server, Some(&admin)), 200);
    assert_eq!(status(&server, Some(&reader)), 200);
    assert_eq!(
        server.get_with_key("/metrics", &reader).unwrap().status,
        403
    );

    let listed: Vec<Value> = keys(&store, &["list", "--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["name"], "viewer");
    assert_eq!(listed[1]["role"], "read");
    assert_eq!(listed[1]["face_sets"], serde_json::json!(["a", "b"]));
    let file = std::fs::read_to_string(dir.join("keys.json")).unwrap();
    assert!(!file.contains(&admin) && !file.contains(&reader));

    keys(&store, &["revoke", "viewer"]);
    assert_eq!(status(&server, Some(&reader)), 401);
    assert_eq!(status(&server, Some(&admin)), 200);

    // a name taken, an unknown key: clear failures
    let out = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
        .args(["keys", "--data-dir"])
        .arg(&dir)
        .args(["revoke", "nosuch"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API key is named 'nosuch'"));
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the binary on `bind`; its exit status and output if it exits within 60 s, or
/// `None` (killed) once it logs that it listens.
fn try_start(data_dir: &Path, bind: &str, extra: &[&str]) -> Option<(bool, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
        .args(["--bind", bind, "--log-format", "json", "--data-dir"])
        .arg(data_dir)
        .arg("--models-dir")
        .arg(facerec_fixtures::models_dir())
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        if line.contains("\"listening\"") {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        assert!(Instant::now() < deadline, "no start within 60 s");
    }
    let out = child.wait_with_output().unwrap();
    Some((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_public_address_needs_a_key_or_allow_anonymous() {
    let dir = fresh_dir("keys-bind");
    let (ok, stderr) = try_start(&dir, "0.0.0.0:0", &[]).expect("it must refuse");
    assert!(!ok);
    for says in ["without API keys", "keys create", "--allow-anonymous"] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    // told it is fine, it serves
    assert!(try_start(&dir, "0.0.0.0:0", &["--allow-anonymous"]).is_none());
    // with a key, it serves too
    keys(
        &[OsStr::new("--data-dir"), dir.as_os_str()],
        &["create", "--name", "first", "--role", "admin"],
    );
    assert!(try_start(&dir, "0.0.0.0:0", &[]).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keys_in_postgres_count_on_every_server_at_once() {
    let Some(db) = fresh_database("keys") else {
        return;
    };
    let flags = [OsStr::new("--store"), OsStr::new(&db.url)];
    let a = ServerProcess::start_with(&flags);
    let b = ServerProcess::start_with(&flags);
    let key = keys(&flags, &["create", "--name", "shared", "--role", "write"]);
    let other = keys(&flags, &["create", "--name", "other", "--role", "read"]);
    for server in [&a, &b] {
        assert_eq!(status(server, None), 401);
        assert_eq!(status(server, Some(&key)), 200);
    }
    keys(&flags, &["revoke", "shared"]);
    for server in [&a, &b] {
        assert_eq!(status(server, Some(&key)), 401);
        assert_eq!(status(server, Some(&other)), 200);
    }
}
