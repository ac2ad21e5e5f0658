//! `facerec enroll` end to end: the built binary on folders made of the committed photos,
//! into a data dir and through a real server on 127.0.0.1:0, with the real models; and a
//! run killed part way, then resumed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{facerec, scratch, write};
use facerec::FaceEngine;
use facerec_api::{ApiConfig, FaceService, RunningServer, ServerOptions};
use facerec_fixtures as fx;
use facerec_store::{FaceStore, SledStore, StoreConfig};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn engine() -> Arc<FaceEngine> {
    static ENGINE: OnceLock<Arc<FaceEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| Arc::new(FaceEngine::from_dir(fx::models_dir()).expect("loading models")))
        .clone()
}

fn grey_png() -> Vec<u8> {
    fx::encode_png(&image::RgbImage::from_pixel(
        200,
        200,
        image::Rgb([128, 128, 128]),
    ))
}

/// obama.jpg cut short: not a decodable JPEG.
fn corrupt_jpeg() -> Vec<u8> {
    fx::photo_bytes("obama.jpg")[..5000].to_vec()
}

/// The folder of the data-dir and server tests: four photos with faces (one of them a group),
/// a copy of one of them, a photo without a face, a corrupt one and a file to ignore.
fn people_dir(root: &Path) -> PathBuf {
    let dir = root.join("people");
    write(&dir, "Obama/obama.jpg", &fx::photo_bytes("obama.jpg"));
    write(&dir, "Obama/obama2.jpg", &fx::photo_bytes("obama2.jpg"));
    write(&dir, "Obama/zz-copy.JPG", &fx::photo_bytes("obama.jpg"));
    write(&dir, "Biden/biden.jpeg", &fx::photo_bytes("biden.jpg"));
    write(
        &dir,
        "Group/group.jpg",
        &fx::photo_bytes("group-sample1.jpg"),
    );
    write(&dir, "Nobody/grey.PNG", &grey_png());
    write(&dir, "Broken/broken.jpg", &corrupt_jpeg());
    write(&dir, "notes.txt", b"not a photo");
    dir
}

/// Runs `facerec enroll ARGS --json`, expecting success, and returns the summary.
fn enroll(args: &[&str]) -> Value {
    let mut all = vec!["enroll"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = facerec(&all);
    assert!(
        out.status.success(),
        "facerec {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn count(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {key}: {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The summary of a first run on [`people_dir`].
fn check_people_summary(v: &Value) {
    assert_eq!(v["complete"], true, "{v}");
    let counts: Vec<u64> = [
        "files",
        "enrolled",
        "no_face",
        "errors",
        "duplicates",
        "skipped",
        "ignored",
    ]
    .iter()
    .map(|k| count(v, k))
    .collect();
    assert_eq!(counts, [7, 4, 1, 1, 1, 0, 1], "{v}");
    let by_file = &v["by_file"];
    let several: BTreeMap<String, u64> = by_file["several_faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["face_count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(count(v, "several_faces"), several.len() as u64, "{v}");
    assert!(several["Group/group.jpg"] >= 2, "{v}");
    assert!(!several.contains_key("Biden/biden.jpeg"), "{v}");
    assert_eq!(strings(&by_file["no_face"]), ["Nobody/grey.PNG"]);
    let errors = by_file["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    assert_eq!(errors[0]["file"], "Broken/broken.jpg");
    let error = errors[0]["error"].as_str().unwrap();
    assert!(error.contains("1004"), "{error}");
    let duplicates = by_file["duplicates"].as_array().unwrap();
    assert_eq!(duplicates.len(), 1, "{v}");
    assert_eq!(duplicates[0]["file"], "Obama/zz-copy.JPG");
    assert_eq!(duplicates[0]["same_as"], "Obama/obama.jpg");
    assert_eq!(strings(&by_file["ignored"]), ["notes.txt"]);
}

/// Names of the faces enrolled by a run on [`people_dir`], with their counts.
fn people_names() -> BTreeMap<String, usize> {
    BTreeMap::from([
        ("Biden".to_owned(), 1),
        ("Group".to_owned(), 1),
        ("Obama".to_owned(), 2),
    ])
}

fn name_counts<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for name in names {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    counts
}

/// Journal lines: (sha256, file, outcome, token).
fn journal(path: &Path) -> Vec<(String, String, String, Option<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let complete = text.rfind('\n').map_or(0, |i| i + 1);
    text[..complete]
        .lines()
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}"));
            (
                v["sha256"].as_str().unwrap().to_owned(),
                v["file"].as_str().unwrap().to_owned(),
                v["outcome"].as_str().unwrap().to_owned(),
                v["token"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

struct TestServer {
    server: RunningServer,
    agent: ureq::Agent,
    data: PathBuf,
}

impl TestServer {
    fn start(data: PathBuf) -> Self {
        Self::start_with(data, |_| {})
    }

    fn start_with(data: PathBuf, tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        let mut config = ApiConfig::new(&data);
        config.inference_threads = 2;
        tweak(&mut config);
        let service = FaceService::open(engine(), config).expect("opening the service");
        let options = ServerOptions {
            workers: 2,
            ..ServerOptions::default()
        };
        let server = facerec_api::spawn(service, "127.0.0.1:0", options).expect("starting");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            server,
            agent,
            data,
        }
    }

    fn url(&self) -> String {
        self.server.url("")
    }

    /// `GET /faceset`: the set's face count and (token, name) of its faces.
    fn face_set(&self, set: &str) -> (u64, Vec<(String, String)>) {
        let mut res = self
            .agent
            .get(
                self.server
                    .url(&format!("/faceset?face_set={set}&limit=1000")),
            )
            .call()
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = serde_json::from_slice(&res.body_mut().read_to_vec().unwrap()).unwrap();
        let faces = v["faces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                (
                    f["face_token"].as_str().unwrap().to_owned(),
                    f["face_name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        (v["face_num"].as_u64().unwrap(), faces)
    }
}

#[test]
fn enrols_a_folder_into_a_data_dir() {
    let root = scratch("data-dir");
    let dir = people_dir(&root);
    let data = root.join("data");
    let (dir_s, data_s) = (dir.to_str().unwrap(), data.to_str().unwrap());
    let v = enroll(&[dir_s, "--face-set", "staff", "--data-dir", data_s]);
    check_people_summary(&v);
    assert_eq!(v["mode"], "data_dir");

    // the journal: one line per finished file, each enrolled one with its token
    let path = data.join("enroll-staff.journal");
    assert_eq!(v["journal"], path.to_str().unwrap());
    let lines = journal(&path);
    let files: BTreeSet<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(files.len(), 7, "{lines:?}");
    let journal_tokens: BTreeSet<String> = lines
        .iter()
        .filter(|l| l.2 == "enrolled")
        .filter_map(|l| l.3.clone())
        .collect();

    // the face set holds exactly the enrolled faces
    let faces = data.join("faces");
    let (model, dims) = SledStore::recorded_model(&faces).unwrap().unwrap();
    let store = SledStore::open(&faces, StoreConfig::new(model, dims)).unwrap();
    let stored = store.faces("staff", 0, 100).unwrap();
    assert_eq!(
        name_counts(stored.iter().map(|f| f.name.as_str())),
        people_names()
    );
    let tokens: BTreeSet<String> = stored.iter().map(|f| f.token.to_string()).collect();
    assert_eq!(tokens, journal_tokens);
    drop(store);
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn enrols_a_folder_through_a_server() {
    let root = scratch("server");
    let dir = people_dir(&root);
    let server = TestServer::start(root.join("data"));
    let (dir_s, url) = (dir.to_str().unwrap(), server.url());
    let v = enroll(&[
        dir_s,
        "--face-set",
        "staff",
        "--server",
        &url,
        "--batch",
        "3",
    ]);
    check_people_summary(&v);
    assert_eq!(v["mode"], "server");
    assert!(dir.join(".facerec-enroll-staff.journal").is_file());
    let (n, faces) = server.face_set("staff");
    assert_eq!(n, 4);
    assert_eq!(
        name_counts(faces.iter().map(|f| f.1.as_str())),
        people_names()
    );

    // the same folder again replaces the faces instead of adding them a second time
    let again = enroll(&[dir_s, "--face-set", "staff", "--server", &url]);
    assert_eq!(count(&again, "enrolled"), 4, "{again}");
    let (n_again, faces_again) = server.face_set("staff");
    assert_eq!((n_again, &faces_again), (4, &faces));

    // the data dir of a running server is locked: the error says to go through the server
    let data = server.data.to_str().unwrap();
    let out = facerec(&["enroll", dir_s, "--face-set", "staff", "--data-dir", data]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains("--server"),
        "{stderr}"
    );
    server.server.stop().unwrap();
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_run_killed_part_way_resumes_without_duplicates() {
    let root = scratch("resume");
    let dir = root.join("people");
    // different bytes (the same photo with bytes after its end) make different faces
    let variant = |photo: &str, k: usize| {
        let mut bytes = fx::photo_bytes(photo);
        bytes.extend_from_slice(format!("variant {k}").as_bytes());
        bytes
    };
    let mut distinct_faces = 0;
    for k in 0..6 {
        write(
            &dir,
            &format!("Obama/obama-{k}.jpg"),
            &variant("obama2.jpg", k),
        );
        write(
            &dir,
            &format!("Biden/biden-{k}.jpg"),
            &variant("biden.jpg", k),
        );
        distinct_faces += 2;
    }
    write(&dir, "Biden/biden-3-copy.jpg", &variant("biden.jpg", 3));
    write(&dir, "Nobody/grey.png", &grey_png());
    write(&dir, "Broken/broken.jpg", &corrupt_jpeg());
    let files = 2 * 6 + 3;

    let server = TestServer::start(root.join("data"));
    let url = server.url();
    let journal_path = root.join("run.journal");
    let args = |resume: bool| {
        let mut args = vec![
            "enroll".to_owned(),
            dir.to_str().unwrap().to_owned(),
            "--face-set".to_owned(),
            "staff".to_owned(),
            "--server".to_owned(),
            url.clone(),
            "--batch".to_owned(),
            "1".to_owned(),
            "--journal".to_owned(),
            journal_path.to_str().unwrap().to_owned(),
            "--json".to_owned(),
        ];
        if resume {
            args.push("--resume".to_owned());
        }
        args
    };

    // the first run is killed (SIGKILL) once the journal holds a line
    let mut child = Command::new(env!("CARGO_BIN_EXE_facerec"))
        .args(args(false))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&journal_path).map_or(true, |t| !t.contains('\n')) {
        assert!(Instant::now() < deadline, "no journal line after 120 s");
        assert!(child.try_wait().unwrap().is_none(), "ended before a line");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the first run ended before it was killed"
    );
    let first = journal(&journal_path);
    assert!(!first.is_empty() && first.len() < files, "{first:?}");

    // what the journal holds as done is skipped, by content
    let done: HashSet<String> = first
        .iter()
        .filter(|l| l.2 == "enrolled" || l.2 == "no_face")
        .map(|l| l.0.clone())
        .collect();
    let mut expected_skipped = 0;
    for entry in walk(&dir) {
        let hash = hex(&Sha256::digest(std::fs::read(&entry).unwrap()));
        expected_skipped += usize::from(done.contains(&hash));
    }
    // a line torn by a kill while it was written is tolerated
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(&journal_path)
        .unwrap();
    torn.write_all(br#"{"sha256":"0123","file":"Obama/obam"#)
        .unwrap();
    drop(torn);

    let out = Command::new(env!("CARGO_BIN_EXE_facerec"))
        .args(args(true))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], true, "{v}");
    assert_eq!(count(&v, "files"), files as u64);
    assert_eq!(count(&v, "skipped"), expected_skipped as u64, "{v}");
    assert!(expected_skipped >= 1);
    let accounted: u64 = ["enrolled", "no_face", "errors", "duplicates", "skipped"]
        .iter()
        .map(|k| count(&v, k))
        .sum();
    assert_eq!(accounted, files as u64, "{v}");

    // every file is in the journal, whose lines all read back
    let lines = journal(&journal_path);
    let text = std::fs::read_to_string(&journal_path).unwrap();
    assert!(
        text.ends_with('\n') && !text.contains("Obama/obam\""),
        "{text}"
    );
    let in_journal: BTreeSet<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(in_journal.len(), files, "{in_journal:?}");
    // of two files with the same bytes, the first in name order is sent, the other is its
    // duplicate
    let outcome = |file: &str| lines.iter().find(|l| l.1 == file).unwrap().2.as_str();
    assert_eq!(outcome("Biden/biden-3-copy.jpg"), "enrolled");
    assert_eq!(outcome("Biden/biden-3.jpg"), "duplicate");

    // one face per distinct photo, none twice, each under its folder's name
    let (n, faces) = server.face_set("staff");
    assert_eq!(n, distinct_faces as u64, "{faces:?}");
    let tokens: BTreeSet<&str> = faces.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(tokens.len(), faces.len());
    let journal_tokens: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| (l.2 == "enrolled").then_some(l.3.as_deref()?))
        .collect();
    assert_eq!(tokens, journal_tokens);
    assert_eq!(
        name_counts(faces.iter().map(|f| f.1.as_str())),
        BTreeMap::from([("Biden".to_owned(), 6), ("Obama".to_owned(), 6)])
    );
    server.server.stop().unwrap();
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn run_failures_exit_non_zero_with_the_reason() {
    let root = scratch("failures");
    let dir = people_dir(&root);
    let dir_s = dir.to_str().unwrap();

    // nothing listens on a port just freed
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = facerec(&["enroll", dir_s, "--face-set", "staff", "--server", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot reach the server"), "{stderr}");

    // bad arguments are usage errors
    for args in [
        &["enroll", dir_s, "--face-set", "no spaces", "--server", &url][..],
        &["enroll", dir_s, "--face-set", "staff"],
        &[
            "enroll",
            dir_s,
            "--face-set",
            "staff",
            "--server",
            &url,
            "--data-dir",
            dir_s,
        ],
        &[
            "enroll",
            dir_s,
            "--face-set",
            "staff",
            "--server",
            &url,
            "--batch",
            "17",
        ],
    ] {
        let out = facerec(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn a_server_that_wants_a_key_says_so() {
    let root = scratch("key");
    let dir = people_dir(&root);
    let server = TestServer::start_with(root.join("data"), |c| c.auth.anonymous = false);
    let (dir_s, url) = (dir.to_str().unwrap(), server.url());
    for key in [None, Some("not-a-key")] {
        let mut args = vec!["enroll", dir_s, "--face-set", "staff", "--server", &url];
        args.extend(key.iter().flat_map(|k| ["--key", k]));
        let out = facerec(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("401") && stderr.contains("--key"),
            "{key:?}: {stderr}"
        );
    }
    assert_eq!(server.server.service().store().len("staff").unwrap(), 0);
    server.server.stop().unwrap();
    std::fs::remove_dir_all(&root).ok();
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
