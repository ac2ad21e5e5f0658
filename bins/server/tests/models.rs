#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `--model`: the server on the fused model over real sockets, and a data dir that keeps the
//! model that made it.

mod common;

use std::ffi::OsStr;
use std::process::{Command, Stdio};

use common::{ServerProcess, fresh_dir, multipart_file};
use facerec_fixtures::{multipart_type, photo_bytes};
use serde_json::Value;

fn detect_token(server: &ServerProcess, photo: &str) -> String {
    let v = server
        .post(
            "/detect",
            Some(&multipart_type()),
            &multipart_file("image_file", &photo_bytes(photo)),
        )
        .expect("POST /detect")
        .success()
        .unwrap();
    v["faces"][0]["face_token"].as_str().unwrap().to_owned()
}

fn get(server: &ServerProcess, path: &str) -> Value {
    server.get(path).expect(path).success().unwrap()
}

#[test]
fn the_fused_model_serves_and_its_data_dir_keeps_it() {
    let dir = fresh_dir("models-fused");
    let server = ServerProcess::start_with(&[
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--model"),
        OsStr::new("dlib+mobilefacenet"),
    ]);
    let ready = get(&server, "/ready");
    assert_eq!(ready["model"], "dlib+mobilefacenet", "{ready}");
    assert_eq!(ready["dims"], 320, "{ready}");
    let threshold = ready["threshold"].as_f64().unwrap();

    let obama = detect_token(&server, "obama.jpg");
    let obama2 = detect_token(&server, "obama2.jpg");
    let biden = detect_token(&server, "biden.jpg");
    get(
        &server,
        &format!("/addface?face_token={obama}&face_set=m&face_name=obama"),
    );
    get(
        &server,
        &format!("/addface?face_token={biden}&face_set=m&face_name=biden"),
    );
    let found = get(
        &server,
        &format!("/search?face_token={obama2}&face_set=m&threshold={threshold}"),
    );
    let results = found["cmp_result"].as_array().unwrap();
    assert_eq!(results.len(), 1, "only obama is near obama2: {found}");
    assert_eq!(results[0]["face_name"], "obama");
    let same = get(
        &server,
        &format!("/compare?face_token_a={obama}&face_token_b={biden}"),
    );
    assert_eq!(same["same_person"], false, "{same}");
    assert_eq!(same["threshold"].as_f64().unwrap(), threshold);
    drop(server);

    // The same data dir with the default model: refused at start, naming both models.
    let out = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
        .args(["--bind", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .arg("--models-dir")
        .arg(facerec_fixtures::models_dir())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("dlib+mobilefacenet (320-d)"), "{said}");
    assert!(
        said.contains("dlib_face_recognition_resnet_model_v1 (128-d)"),
        "{said}"
    );
    assert!(said.contains("--model"), "{said}");

    // With its model again, the enrolled faces are all there.
    let server = ServerProcess::start_with(&[
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--model"),
        OsStr::new("dlib+mobilefacenet"),
    ]);
    let set = get(&server, "/faceset?face_set=m");
    assert_eq!(set["faces"].as_array().unwrap().len(), 2, "{set}");
}

#[test]
fn an_unknown_model_is_refused_with_the_list() {
    let out = Command::new(env!("CARGO_BIN_EXE_facerec-server"))
        .args(["--model", "arcface"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the models are dlib, mobilefacenet, dlib+mobilefacenet"),
        "{said}"
    );
}
