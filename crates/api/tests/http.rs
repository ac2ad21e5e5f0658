#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Face API against a real server on 127.0.0.1:0, with the real models and photos.
//!
//! Every test starts its own server (cheap: the models are loaded once and shared) on its
//! own data dir, so tests run in parallel without seeing each other's face sets or tokens.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use std::num::NonZeroU32;

use common::{engine, fresh_dir};
use facerec_api::{ApiConfig, FaceService, RateLimit, RunningServer, ServerOptions};
use facerec_fixtures::{BOUNDARY, Part, form, multipart, multipart_type, url_encode as enc};
use facerec_store::{FileKeys, KeyStore, NewKey, Role};
use serde_json::Value;

// ---- harness ------------------------------------------------------------------------------

struct TestServer {
    server: Option<RunningServer>,
    dir: PathBuf,
    agent: ureq::Agent,
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a 200 with both success flags and returns the body.
    fn ok(&self) -> Value {
        let v = self.json();
        assert_eq!(self.status, 200, "{v}");
        assert_eq!(v["sucess"], true, "{v}");
        assert_eq!(v["success"], true, "{v}");
        v
    }

    /// Asserts the one error shape with this status and code.
    fn error(&self, status: u16, code: u64) -> Value {
        let v = self.json();
        assert_eq!(
            (self.status, v["error_code"].as_u64()),
            (status, Some(code)),
            "{v}"
        );
        assert_eq!(v["sucess"], false, "{v}");
        assert_eq!(v["success"], false, "{v}");
        let name = v["error_message"].as_str().unwrap();
        let expected = match code {
            1001 => "BAD_ARGUMENTS",
            1002 => "MISSING_ARGUMENTS",
            1003 => "INTERNAL_ERROR",
            1004 => "FILE_ERROR",
            1005 => "UPLOAD_ERROR",
            1006 => "FACE_TOKEN_ERROR",
            1007 => "FACE_INFO_ERROR",
            1008 => "NOT_FOUND",
            1009 => "METHOD_NOT_ALLOWED",
            1010 => "UNAUTHORIZED",
            1011 => "FORBIDDEN",
            1012 => "RATE_LIMITED",
            _ => panic!("unexpected code {code}"),
        };
        assert_eq!(name, expected);
        assert!(!v["detail"].as_str().unwrap().is_empty(), "{v}");
        assert!(self.header("x-request-id").is_some(), "no request id");
        v
    }
}

impl TestServer {
    fn start(name: &str, tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        Self::start_in(fresh_dir(name), tweak)
    }

    fn start_in(dir: PathBuf, tweak: impl FnOnce(&mut ApiConfig)) -> Self {
        let mut config = ApiConfig::new(&dir);
        config.inference_threads = 2;
        tweak(&mut config);
        let service = FaceService::open(engine(), config).expect("opening the service");
        let options = ServerOptions {
            workers: 2,
            ..ServerOptions::default()
        };
        let server = facerec_api::spawn(service, "127.0.0.1:0", options).expect("starting");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Self {
            server: Some(server),
            dir,
            agent,
        }
    }

    fn running(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.running().addr()
    }

    fn service(&self) -> &FaceService {
        self.running().service()
    }

    fn url(&self, path: &str) -> String {
        self.running().url(path)
    }

    /// Files in the crops folder of the data dir.
    fn crop_files(&self) -> usize {
        std::fs::read_dir(self.dir.join("crops")).unwrap().count()
    }

    fn read(res: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
        let mut res = res.expect("HTTP exchange");
        let status = res.status().as_u16();
        let headers = res
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = res
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .expect("reading the body");
        Resp {
            status,
            headers,
            body,
        }
    }

    fn get(&self, path: &str) -> Resp {
        Self::read(self.agent.get(self.url(path)).call())
    }

    fn get_with(&self, path: &str, header: (&str, &str)) -> Resp {
        Self::read(
            self.agent
                .get(self.url(path))
                .header(header.0, header.1)
                .call(),
        )
    }

    fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Resp {
        let mut req = self.agent.post(self.url(path));
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        Self::read(req.send(body))
    }

    /// Any request, with extra headers.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> Resp {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(self.url(path));
        let request = headers.iter().fold(request, |r, (k, v)| r.header(*k, *v));
        let request = match body {
            Some((content_type, bytes)) => request
                .header("Content-Type", content_type)
                .body(bytes.to_vec()),
            None => request.body(Vec::new()),
        };
        Self::read(self.agent.run(request.unwrap()))
    }

    fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post_raw(
            path,
            Some("application/x-www-form-urlencoded"),
            form(fields).as_bytes(),
        )
    }

    fn post_multipart(&self, path: &str, parts: &[Part]) -> Resp {
        self.post_raw(path, Some(&multipart_type()), &multipart(parts))
    }

    fn detect(&self, photo: &[u8]) -> Vec<Value> {
        let v = self
            .post_multipart("/detect", &[Part::File("image_file", photo)])
            .ok();
        let faces = v["faces"].as_array().unwrap().clone();
        assert_eq!(v["face_num"].as_u64(), Some(faces.len() as u64));
        faces
    }

    /// The token of the largest face (the detector may also report small faces elsewhere).
    fn detect_one(&self, photo: &[u8]) -> String {
        let faces = self.detect(photo);
        largest(&faces)["face_token"].as_str().unwrap().to_owned()
    }

    /// Stops gracefully and keeps the data dir; returns it.
    fn stop_keeping_data(mut self) -> PathBuf {
        let service = self.server.take().unwrap().stop().expect("stopping");
        assert_eq!(service.handles(), 1, "a worker still holds the service");
        drop(service);
        std::mem::take(&mut self.dir)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn photo(name: &str) -> Vec<u8> {
    facerec_fixtures::photo_bytes(name)
}

fn is_token(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| t.len() == 24 && t.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The face with the largest box.
fn largest(faces: &[Value]) -> &Value {
    let area = |f: &Value| {
        let (tl, br) = (point(&f["top_left"]), point(&f["bottom_right"]));
        (br[0] - tl[0]) * (br[1] - tl[1])
    };
    faces
        .iter()
        .max_by(|a, b| area(a).total_cmp(&area(b)))
        .expect("at least one face")
}

fn point(v: &Value) -> [f64; 2] {
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 2, "{v}");
    [a[0].as_f64().unwrap(), a[1].as_f64().unwrap()]
}

/// Writes an HTTP request head and a body (written by `body`, whose write errors are
/// tolerated: the server may stop reading), then reads the response.
fn raw_exchange(
    addr: SocketAddr,
    head: &str,
    body: impl FnOnce(&mut TcpStream) -> std::io::Result<()>,
) -> Resp {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    if let Err(e) = body(&mut stream) {
        eprintln!("(body write stopped: {e})");
    }
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> Resp {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("reading the response head");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .expect("content-length");
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).expect("reading the response body");
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Resp {
        status,
        headers,
        body,
    }
}

fn png(width: u32, height: u32) -> Vec<u8> {
    facerec_fixtures::encode_png(&facerec_fixtures::gradient(width, height))
}

/// Deterministic noise.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

// ---- the original contract ----------------------------------------------------------------

#[test]
fn detect_add_search_remove() {
    let srv = TestServer::start("contract", |_| {});

    // detect
    let obama = srv.detect(&photo("obama.jpg"));
    let face = largest(&obama);
    assert!(is_token(&face["face_token"]), "{face}");
    let token = face["face_token"].as_str().unwrap().to_owned();
    assert_eq!(face["face_name"], format!("{token}.jpg"));
    let (tl, br) = (point(&face["top_left"]), point(&face["bottom_right"]));
    // The face is in the top middle of the 910x1137 portrait, about 230 px wide.
    assert!(
        tl[0] > 300.0 && br[0] < 700.0 && tl[1] > 20.0 && br[1] < 500.0,
        "{face}"
    );
    assert!(br[0] - tl[0] > 150.0 && br[1] - tl[1] > 150.0, "{face}");
    let score = face["score"].as_f64().unwrap();
    assert!(score > 0.9 && score <= 1.0, "{face}");
    let landmarks: Vec<[f64; 2]> = face["landmarks"]
        .as_array()
        .unwrap()
        .iter()
        .map(point)
        .collect();
    assert_eq!(landmarks.len(), 5);
    let inside = |p: [f64; 2]| p[0] > tl[0] && p[0] < br[0] && p[1] > tl[1] && p[1] < br[1];
    assert!(landmarks.iter().all(|&p| inside(p)), "{face}");
    // image-left eye left of the image-right eye, both above the nose, above the mouth
    assert!(landmarks[0][0] < landmarks[1][0], "{face}");
    assert!(
        landmarks[0][1] < landmarks[2][1] && landmarks[2][1] < landmarks[3][1],
        "{face}"
    );

    // the crop is served
    let crop = srv.get(&format!("/crops/{token}.jpg"));
    assert_eq!(crop.status, 200);
    assert_eq!(crop.header("content-type"), Some("image/jpeg"));
    assert!(crop.body.starts_with(&[0xFF, 0xD8, 0xFF]));

    // addface (GET), then biden (POST urlencoded, default name)
    let added = srv
        .get(&format!("/addface?face_token={token}&face_name=obama"))
        .ok();
    assert_eq!(added["face_token"], token.as_str());
    assert_eq!(added["face_neme"], "obama");
    assert_eq!(added["face_name"], "obama");
    assert_eq!(added["face_set"], "default");
    let biden = srv.detect_one(&photo("biden.jpg"));
    let added = srv.post_form("/addface", &[("face_token", &biden)]).ok();
    assert_eq!(
        (added["face_name"].as_str(), added["face_neme"].as_str()),
        (Some("unknown"), Some("unknown"))
    );
    srv.get(&format!("/addface?face_token={biden}&face_name=biden"))
        .ok();

    // search by token: obama2 finds obama, not biden
    let obama2 = srv.detect_one(&photo("obama2.jpg"));
    let found = srv
        .get(&format!("/search?face_token={obama2}&threshold=0.6"))
        .ok();
    assert_eq!(found["face_token"], obama2.as_str());
    assert_eq!(found["threshold"], "0.6");
    assert_eq!(found["face_set"], "default");
    let hits = found["cmp_result"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(hits[0]["face_token"], token.as_str());
    assert_eq!(hits[0]["face_name"], "obama");
    let distance = hits[0]["distance"].as_f64().unwrap();
    assert!(distance < 0.6, "{found}");
    assert_eq!(hits[0]["distant"], hits[0]["distance"]);

    // with a threshold that takes everyone, nearest first: obama then biden (>= 0.6)
    let all = srv
        .get(&format!("/search?face_token={obama2}&threshold=4"))
        .ok();
    let hits = all["cmp_result"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{all}");
    assert_eq!(hits[0]["face_name"], "obama");
    assert_eq!(hits[1]["face_name"], "biden");
    assert!(hits[1]["distance"].as_f64().unwrap() >= 0.6, "{all}");

    // top_k
    let top = srv
        .get(&format!("/search?face_token={obama2}&threshold=4&top_k=1"))
        .ok();
    assert_eq!(top["cmp_result"].as_array().unwrap().len(), 1);

    // search by image (the original reference threshold 0.65): a new token for the query
    let by_image = srv
        .post_multipart(
            "/search",
            &[
                Part::File("image_file", &photo("obama2.jpg")),
                Part::Text("threshold", "0.65"),
            ],
        )
        .ok();
    assert!(is_token(&by_image["face_token"]));
    assert_ne!(by_image["face_token"], obama2.as_str());
    assert_eq!(by_image["threshold"], "0.65");
    let hits = by_image["cmp_result"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{by_image}");
    assert_eq!(hits[0]["face_name"], "obama");
    // its crop exists too
    let query_token = by_image["face_token"].as_str().unwrap();
    assert_eq!(srv.get(&format!("/crops/{query_token}.jpg")).status, 200);

    let biden_query = srv
        .post_multipart(
            "/search",
            &[
                Part::File("image_file", &photo("biden.jpg")),
                Part::Text("threshold", "0.6"),
            ],
        )
        .ok();
    let hits = biden_query["cmp_result"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{biden_query}");
    assert_eq!(hits[0]["face_name"], "biden");

    // removeface: gone from searches; removing again is a token error
    let removed = srv
        .post_multipart("/removeface", &[Part::Text("face_token", &token)])
        .ok();
    assert_eq!(removed["face_token"], token.as_str());
    let after = srv
        .get(&format!("/search?face_token={obama2}&threshold=0.6"))
        .ok();
    assert_eq!(after["cmp_result"], serde_json::json!([]));
    srv.get(&format!("/removeface?face_token={token}"))
        .error(404, 1006);
}

#[test]
fn get_urlencoded_and_multipart_are_equivalent() {
    let srv = TestServer::start("variants", |_| {});
    let token = srv.detect_one(&photo("obama.jpg"));
    let set = "variants";

    // add: urlencoded with a non-ASCII name
    let added = srv
        .post_form(
            "/addface",
            &[
                ("face_token", &token),
                ("face_name", "奥巴马 B."),
                ("face_set", set),
            ],
        )
        .ok();
    assert_eq!(added["face_name"], "奥巴马 B.");
    assert_eq!(added["face_set"], set);

    // search: GET, POST urlencoded, POST multipart, POST with query parameters only
    let get = srv
        .get(&format!(
            "/search?face_token={token}&threshold=0.6&face_set={set}"
        ))
        .ok();
    let urlencoded = srv
        .post_form(
            "/search",
            &[
                ("face_token", &token),
                ("threshold", "0.6"),
                ("face_set", set),
            ],
        )
        .ok();
    let multipart = srv
        .post_multipart(
            "/search",
            &[
                Part::Text("face_token", &token),
                Part::Text("threshold", "0.6"),
                Part::Text("face_set", set),
            ],
        )
        .ok();
    let query_post = srv
        .post_raw(
            &format!("/search?face_token={token}&threshold=0.6&face_set={set}"),
            None,
            b"",
        )
        .ok();
    for v in [&get, &urlencoded, &multipart, &query_post] {
        assert_eq!(v["cmp_result"][0]["face_token"], token.as_str(), "{v}");
        assert_eq!(v["cmp_result"][0]["face_name"], "奥巴马 B.", "{v}");
        assert!(
            v["cmp_result"][0]["distance"].as_f64().unwrap() < 1e-4,
            "{v}"
        );
    }
    // the default set does not have it
    let other = srv
        .get(&format!("/search?face_token={token}&threshold=0.6"))
        .ok();
    assert_eq!(other["cmp_result"], serde_json::json!([]));

    // remove: urlencoded; then GET and multipart say it is gone
    srv.post_form("/removeface", &[("face_token", &token), ("face_set", set)])
        .ok();
    srv.get(&format!("/removeface?face_token={token}&face_set={set}"))
        .error(404, 1006);
    srv.post_multipart(
        "/removeface",
        &[
            Part::Text("face_token", &token),
            Part::Text("face_set", set),
        ],
    )
    .error(404, 1006);

    // add: multipart; remove: GET
    srv.post_multipart(
        "/addface",
        &[
            Part::Text("face_token", &token),
            Part::Text("face_name", "obama"),
            Part::Text("face_set", set),
        ],
    )
    .ok();
    let removed = srv
        .get(&format!("/removeface?face_token={token}&face_set={set}"))
        .ok();
    assert_eq!(removed["face_name"], "obama");

    // unknown multipart fields are drained and ignored
    let padding = vec![b'x'; 100_000];
    let faces = srv
        .post_multipart(
            "/detect",
            &[
                Part::Text("comment", "ignored"),
                Part::File("thumbnail", &padding),
                Part::File("image_file", &photo("obama.jpg")),
            ],
        )
        .ok();
    assert!(faces["face_num"].as_u64().unwrap() >= 1, "{faces}");
}

/// `image_base64` where `image_file` goes, in multipart, urlencoded and JSON bodies; bad
/// base64, both forms at once and too many decoded bytes are refused with their own errors.
#[test]
fn base64_images_in_every_body() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let srv = TestServer::start("base64", |_| {});
    let obama = photo("obama.jpg");
    let b64 = STANDARD.encode(&obama);
    let by_file = srv.detect(&obama);
    let score = |faces: &[Value]| largest(faces)["score"].as_f64().unwrap();
    let json = |fields: Value| {
        srv.post_raw(
            "/detect",
            Some("application/json"),
            fields.to_string().as_bytes(),
        )
    };

    let multipart = srv
        .post_multipart("/detect", &[Part::Text("image_base64", &b64)])
        .ok();
    let urlencoded = srv
        .post_form("/detect", &[("image_base64", b64.as_str())])
        .ok();
    let as_json = json(serde_json::json!({ "image_base64": b64 })).ok();
    // a data: URL with line breaks, and the URL-safe alphabet without padding
    let wrapped: String = b64
        .as_bytes()
        .chunks(76)
        .map(|line| std::str::from_utf8(line).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n");
    let data_url = json(serde_json::json!({
        "image_base64": format!("data:image/jpeg;base64,{wrapped}")
    }))
    .ok();
    let url_safe = json(serde_json::json!({ "image_base64": URL_SAFE_NO_PAD.encode(&obama) })).ok();
    for v in [&multipart, &urlencoded, &as_json, &data_url, &url_safe] {
        let faces = v["faces"].as_array().unwrap();
        assert_eq!(faces.len(), by_file.len(), "{v}");
        assert!((score(faces) - score(&by_file)).abs() < 1e-6, "{v}");
    }

    // search and compare take it too: obama2 finds the enrolled obama, biden is not him
    let token = srv.detect_one(&obama);
    srv.get(&format!(
        "/addface?face_token={token}&face_name=obama&face_set=b64"
    ))
    .ok();
    let obama2 = STANDARD.encode(photo("obama2.jpg"));
    let found = srv
        .post_raw(
            "/search",
            Some("application/json"),
            serde_json::json!({ "image_base64": obama2, "threshold": 0.6, "face_set": "b64" })
                .to_string()
                .as_bytes(),
        )
        .ok();
    assert_eq!(found["cmp_result"][0]["face_name"], "obama", "{found}");
    let biden = STANDARD.encode(photo("biden.jpg"));
    let compared = srv
        .post_form(
            "/compare",
            &[
                ("image_base64_a", obama2.as_str()),
                ("image_base64_b", biden.as_str()),
            ],
        )
        .ok();
    assert!(compared["distance"].as_f64().unwrap() > 0.6, "{compared}");

    // refusals, each with its own words
    let bad = json(serde_json::json!({ "image_base64": "not base64!" })).error(400, 1001);
    assert!(
        bad["detail"].as_str().unwrap().contains("image_base64"),
        "{bad}"
    );
    let both = srv
        .post_multipart(
            "/detect",
            &[
                Part::File("image_file", &obama),
                Part::Text("image_base64", &b64),
            ],
        )
        .error(400, 1001);
    assert!(
        both["detail"].as_str().unwrap().contains("not both"),
        "{both}"
    );
    let not_a_photo = json(serde_json::json!({ "image_base64": STANDARD.encode(b"hello, world") }))
        .error(400, 1004);
    assert!(not_a_photo["detail"].as_str().is_some(), "{not_a_photo}");
    // 2 MiB + 1 decoded bytes: refused although the text fits the body limit
    let too_big = STANDARD.encode(vec![0u8; 2 * 1024 * 1024 + 1]);
    json(serde_json::json!({ "image_base64": too_big })).error(413, 1004);
    let not_an_object = srv
        .post_raw("/detect", Some("application/json"), b"[1, 2]")
        .error(400, 1005);
    assert!(
        not_an_object["detail"].as_str().unwrap().contains("object"),
        "{not_an_object}"
    );
    let wrong_type = json(serde_json::json!({ "image_base64": true })).error(400, 1001);
    assert!(
        wrong_type["detail"].as_str().unwrap().contains("boolean"),
        "{wrong_type}"
    );
    // nothing at all: the missing parameter names both ways to send it
    let missing = json(serde_json::json!({})).error(400, 1002);
    assert!(
        missing["detail"].as_str().unwrap().contains("image_base64"),
        "{missing}"
    );
}

/// `group_by=name`: the nearest face of each name, so three photos of one person take one
/// place in the answer, and top_k counts names.
#[test]
fn search_grouped_by_name() {
    let srv = TestServer::start("group-by", |_| {});
    let set = "people";
    let enrol = |file: &str, name: &str| {
        let token = srv.detect_one(&photo(file));
        srv.get(&format!(
            "/addface?face_token={token}&face_name={name}&face_set={set}"
        ))
        .ok();
    };
    enrol("obama.jpg", "obama");
    enrol("obama2.jpg", "obama");
    enrol("obama.jpg", "obama");
    enrol("biden.jpg", "biden");
    let query = srv.detect_one(&photo("obama2.jpg"));
    let names = |extra: &str| -> Vec<String> {
        let v = srv
            .get(&format!(
                "/search?face_token={query}&threshold=4&face_set={set}{extra}"
            ))
            .ok();
        v["cmp_result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["face_name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(""), ["obama", "obama", "obama", "biden"]);
    assert_eq!(names("&group_by=name"), ["obama", "biden"]);
    assert_eq!(names("&group_by=name&top_k=1"), ["obama"]);
    assert_eq!(names("&top_k=2"), ["obama", "obama"]);
    let bad = srv
        .get(&format!(
            "/search?face_token={query}&threshold=0.6&face_set={set}&group_by=person"
        ))
        .error(400, 1001);
    assert!(
        bad["detail"].as_str().unwrap().contains("group_by"),
        "{bad}"
    );
}

#[test]
fn compare_images_and_tokens() {
    let srv = TestServer::start("compare", |_| {});
    let same = srv
        .post_multipart(
            "/compare",
            &[
                Part::File("image_file_a", &photo("obama.jpg")),
                Part::File("image_file_b", &photo("obama2.jpg")),
            ],
        )
        .ok();
    assert_eq!(same["same_person"], true, "{same}");
    assert!(same["distance"].as_f64().unwrap() < 0.6, "{same}");
    assert!(
        (same["threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6,
        "{same}"
    );
    assert!(
        is_token(&same["face_token_a"]) && is_token(&same["face_token_b"]),
        "{same}"
    );

    let biden = srv.detect_one(&photo("biden.jpg"));
    let different = srv
        .post_multipart(
            "/compare",
            &[
                Part::Text("face_token_a", &biden),
                Part::File("image_file_b", &photo("obama.jpg")),
            ],
        )
        .ok();
    assert_eq!(different["same_person"], false, "{different}");
    assert!(
        different["distance"].as_f64().unwrap() >= 0.6,
        "{different}"
    );
    assert_eq!(different["face_token_a"], biden.as_str());

    // two tokens (the image tokens of the first comparison are live too)
    let a = same["face_token_a"].as_str().unwrap();
    let b = same["face_token_b"].as_str().unwrap();
    let tokens = srv
        .get(&format!("/compare?face_token_a={a}&face_token_b={b}"))
        .ok();
    assert!(
        (tokens["distance"].as_f64().unwrap() - same["distance"].as_f64().unwrap()).abs() < 1e-5
    );
    let itself = srv
        .get(&format!(
            "/compare?face_token_a={biden}&face_token_b={biden}"
        ))
        .ok();
    assert_eq!(itself["distance"].as_f64(), Some(0.0));

    // a photo of three people as the query: its largest face, and none of the others
    let group = photo("group-sample1.jpg");
    let faces = srv.detect(&group);
    assert_eq!(faces.len(), 3, "{faces:?}");
    let by_photo = srv
        .post_multipart(
            "/compare",
            &[
                Part::File("image_file_a", &group),
                Part::Text("face_token_b", &biden),
            ],
        )
        .ok();
    let query = by_photo["face_token_a"].as_str().unwrap();
    for face in &faces {
        let token = face["face_token"].as_str().unwrap();
        let distance = srv
            .get(&format!(
                "/compare?face_token_a={query}&face_token_b={token}"
            ))
            .ok()["distance"]
            .as_f64()
            .unwrap();
        if face == largest(&faces) {
            assert!(distance < 1e-6, "the largest face: {distance}");
        } else {
            assert!(distance > 0.3, "another face: {distance}");
        }
    }

    // errors
    srv.get(&format!("/compare?face_token_a={biden}"))
        .error(400, 1002);
    srv.post_multipart(
        "/compare",
        &[
            Part::File("image_file_a", &png(200, 200)),
            Part::Text("face_token_b", &biden),
        ],
    )
    .error(400, 1007);
    srv.get(&format!(
        "/compare?face_token_a={biden}&face_token_b=nosuchtoken"
    ))
    .error(404, 1006);
}

#[test]
fn face_sets_are_listed_and_paged() {
    let srv = TestServer::start("paging", |_| {});
    let faces = srv.detect(&photo("group-sample1.jpg"));
    assert_eq!(faces.len(), 3, "{faces:?}");
    let mut tokens = BTreeSet::new();
    for (i, face) in faces.iter().enumerate() {
        let token = face["face_token"].as_str().unwrap();
        tokens.insert(token.to_owned());
        srv.get(&format!(
            "/addface?face_token={token}&face_name=p{i}&face_set=paging"
        ))
        .ok();
    }
    srv.get(&format!(
        "/addface?face_token={}&face_set=other",
        faces[0]["face_token"].as_str().unwrap()
    ))
    .ok();

    let sets = srv.get("/facesets").ok();
    assert_eq!(
        sets["face_sets"],
        serde_json::json!([{"face_set": "other", "face_num": 1}, {"face_set": "paging", "face_num": 3}])
    );

    let first = srv.get("/faceset?face_set=paging&limit=2").ok();
    assert_eq!(
        (
            first["face_num"].as_u64(),
            first["offset"].as_u64(),
            first["limit"].as_u64()
        ),
        (Some(3), Some(0), Some(2))
    );
    let second = srv.get("/faceset?face_set=paging&offset=2&limit=2").ok();
    let mut seen = BTreeSet::new();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    for page in [&first, &second] {
        for f in page["faces"].as_array().unwrap() {
            seen.insert(f["face_token"].as_str().unwrap().to_owned());
            assert!(f["face_name"].as_str().unwrap().starts_with('p'));
            let created = f["created_unix_ms"].as_u64().unwrap();
            assert!(now_ms.abs_diff(created) < 600_000, "{f}");
            let at = f["created_at"].as_str().unwrap();
            assert!(
                at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
                "{at}"
            );
        }
    }
    assert_eq!(first["faces"].as_array().unwrap().len(), 2);
    assert_eq!(second["faces"].as_array().unwrap().len(), 1);
    assert_eq!(seen, tokens);

    let empty = srv.get("/faceset?face_set=nosuchset").ok();
    assert_eq!(
        (empty["face_num"].as_u64(), empty["faces"].clone()),
        (Some(0), serde_json::json!([]))
    );
    srv.get("/faceset?face_set=bad%20name").error(400, 1001);
    srv.get("/faceset?limit=0").error(400, 1001);
    srv.get("/faceset?offset=-1").error(400, 1001);
}

// ---- errors -------------------------------------------------------------------------------

#[test]
fn every_error_code_with_its_status() {
    let srv = TestServer::start("errors", |_| {});
    let token = srv.detect_one(&photo("obama.jpg"));

    // 1001 BAD_ARGUMENTS
    for threshold in ["abc", "-1", "nan", "inf", "0", "4.5", "0.6.1"] {
        let v = srv
            .get(&format!(
                "/search?face_token={token}&threshold={}",
                enc(threshold)
            ))
            .error(400, 1001);
        assert!(v["detail"].as_str().unwrap().contains("threshold"), "{v}");
    }
    srv.get(&format!("/search?face_token={token}&threshold=0.6&top_k=0"))
        .error(400, 1001);
    srv.get(&format!(
        "/search?face_token={token}&threshold=0.6&top_k=many"
    ))
    .error(400, 1001);
    let long_name = "a".repeat(257);
    srv.get(&format!(
        "/addface?face_token={token}&face_name={long_name}"
    ))
    .error(400, 1001);
    srv.get(&format!(
        "/addface?face_token={token}&face_name={}",
        "a".repeat(256)
    ))
    .ok();
    srv.get(&format!("/addface?face_token={token}&face_set=bad%20name"))
        .error(400, 1001);
    srv.get(&format!(
        "/addface?face_token={token}&face_set={}",
        "s".repeat(65)
    ))
    .error(400, 1001);
    srv.get(&format!(
        "/search?face_token={}&threshold=0.6",
        "t".repeat(65)
    ))
    .error(400, 1001);
    srv.post_multipart(
        "/search",
        &[
            Part::Text("face_token", &token),
            Part::File("image_file", &photo("obama.jpg")),
            Part::Text("threshold", "0.6"),
        ],
    )
    .error(400, 1001);
    srv.post_multipart(
        "/addface",
        &[
            Part::Text("face_token", &token),
            Part::Text("face_name", &"n".repeat(5000)),
        ],
    )
    .error(400, 1001);
    srv.get("/crops/abc.jpg").error(400, 1001);
    srv.get("/crops/..%2F..%2F..%2Fetc%2Fpasswd")
        .error(400, 1001);

    // 1002 MISSING_ARGUMENTS
    srv.get("/addface").error(400, 1002);
    srv.get("/addface?face_token=").error(400, 1002);
    srv.get("/removeface").error(400, 1002);
    srv.get("/search?threshold=0.6").error(400, 1002);
    let v = srv
        .get(&format!("/search?face_token={token}"))
        .error(400, 1002);
    assert!(v["detail"].as_str().unwrap().contains("threshold"), "{v}");
    srv.post_multipart("/detect", &[Part::Text("threshold", "0.6")])
        .error(400, 1002);
    srv.post_raw("/detect", None, b"").error(400, 1002);

    // 1004 FILE_ERROR
    srv.post_multipart(
        "/detect",
        &[Part::File("image_file", b"GIF89a\x01\x00\x01\x00")],
    )
    .error(400, 1004);
    srv.post_multipart(
        "/detect",
        &[Part::File("image_file", b"hello, I am a text file")],
    )
    .error(400, 1004);
    srv.post_multipart("/detect", &[Part::File("image_file", b"")])
        .error(400, 1004);
    let jpeg = photo("obama.jpg");
    let v = srv
        .post_multipart(
            "/detect",
            &[Part::File("image_file", &jpeg[..jpeg.len() / 2])],
        )
        .error(400, 1004);
    assert!(v["detail"].as_str().unwrap().contains("truncated"), "{v}");
    srv.post_multipart("/detect", &[Part::File("image_file", &png(20, 20))])
        .error(400, 1004);
    srv.post_multipart("/detect", &[Part::File("image_file", &png(4097, 48))])
        .error(400, 1004);
    // a PNG header claiming 100000 x 100000 px is refused before any allocation
    let mut huge = png(64, 64);
    huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    srv.post_multipart("/detect", &[Part::File("image_file", &huge)])
        .error(400, 1004);
    // a file over 2 MiB in a body under the body limit: cut while streaming
    let mut big = vec![0u8; 2 * 1024 * 1024 + 1];
    big[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
    let v = srv
        .post_multipart("/detect", &[Part::File("image_file", &big)])
        .error(413, 1004);
    assert!(v["detail"].as_str().unwrap().contains("2097152"), "{v}");
    // a body over the limit, refused from its Content-Length
    let big = vec![0u8; 3 * 1024 * 1024];
    srv.post_multipart("/search", &[Part::File("image_file", &big)])
        .error(413, 1004);

    // 1005 UPLOAD_ERROR
    srv.post_raw("/detect", Some("application/octet-stream"), &jpeg)
        .error(400, 1005);
    srv.post_raw("/detect", Some("image/jpeg"), &jpeg)
        .error(400, 1005);
    srv.post_raw(
        "/detect",
        Some("multipart/form-data"),
        &multipart(&[Part::File("image_file", &jpeg)]),
    )
    .error(400, 1005);
    srv.post_raw("/addface", Some("text/plain"), b"face_token=x")
        .error(400, 1005);
    let many: Vec<Part> = (0..9).map(|_| Part::Text("x", "y")).collect();
    srv.post_multipart("/detect", &many).error(400, 1005);
    let long_form = format!("face_token={token}&face_name={}", "n".repeat(20_000));
    srv.post_raw(
        "/addface",
        Some("application/x-www-form-urlencoded"),
        long_form.as_bytes(),
    )
    .error(413, 1005);

    // 1006 FACE_TOKEN_ERROR
    srv.get("/addface?face_token=nosuchtoken").error(404, 1006);
    srv.get("/search?face_token=nosuchtoken&threshold=0.6")
        .error(404, 1006);
    srv.get("/removeface?face_token=nosuchtoken")
        .error(404, 1006);
    srv.get(&format!("/crops/{}.jpg", "A".repeat(24)))
        .error(404, 1006);

    // 1007 FACE_INFO_ERROR
    srv.post_multipart(
        "/search",
        &[
            Part::File("image_file", &png(300, 200)),
            Part::Text("threshold", "0.6"),
        ],
    )
    .error(400, 1007);

    // 1008 NOT_FOUND, 1009 METHOD_NOT_ALLOWED
    srv.get("/nope").error(404, 1008);
    srv.get("/nope/").error(404, 1008);
    // the console page answers GET only
    srv.post_raw("/", None, b"").error(405, 1009);
    let r = srv.get("/detect");
    r.error(405, 1009);
    assert_eq!(r.header("allow"), Some("POST"));
    let r = TestServer::read(srv.agent.delete(srv.url("/search")).call());
    r.error(405, 1009);
    assert_eq!(r.header("allow"), Some("GET, POST"));

    // still healthy after all that
    srv.get("/health").ok();
    assert_eq!(srv.detect_one(&photo("biden.jpg")).len(), 24);
}

#[test]
fn huge_uploads_get_a_413_answer_not_a_reset() {
    let srv = TestServer::start("huge", |_| {});
    const TOTAL: usize = 50 * 1024 * 1024;
    let preamble = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image_file\"; filename=\"big.jpg\"\r\n\r\n\u{0}"
    );
    let chunk = vec![0u8; 64 * 1024];

    // declared with Content-Length: refused at once, the rest read and discarded
    let head = format!(
        "POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: {}\r\nContent-Length: {TOTAL}\r\n\r\n",
        multipart_type()
    );
    let started = Instant::now();
    let r = raw_exchange(srv.addr(), &head, |s| {
        s.write_all(preamble.as_bytes())?;
        let mut sent = preamble.len();
        while sent < TOTAL {
            let n = chunk.len().min(TOTAL - sent);
            s.write_all(&chunk[..n])?;
            sent += n;
        }
        Ok(())
    });
    r.error(413, 1004);
    eprintln!(
        "50 MB with Content-Length answered in {:?}",
        started.elapsed()
    );

    // chunked, no length: cut while streaming at the limit
    let head = format!(
        "POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        multipart_type()
    );
    let r = raw_exchange(srv.addr(), &head, |s| {
        write!(s, "{:x}\r\n{preamble}\r\n", preamble.len())?;
        let mut sent = preamble.len();
        while sent < TOTAL {
            write!(s, "{:x}\r\n", chunk.len())?;
            s.write_all(&chunk)?;
            s.write_all(b"\r\n")?;
            sent += chunk.len();
        }
        s.write_all(b"0\r\n\r\n")
    });
    let v = r.error(413, 1004);
    assert!(v["detail"].as_str().unwrap().contains("larger than"), "{v}");

    srv.get("/health").ok();
    srv.detect_one(&photo("obama.jpg"));
}

#[test]
fn truncated_and_garbage_bodies_get_json_errors() {
    let srv = TestServer::start("garbage", |_| {});
    let body = multipart(&[Part::File("image_file", &photo("obama.jpg"))]);

    // a complete request whose multipart body stops halfway (no closing boundary)
    let cut = &body[..body.len() / 2];
    let head = format!(
        "POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        multipart_type(),
        cut.len()
    );
    raw_exchange(srv.addr(), &head, |s| s.write_all(cut)).error(400, 1005);

    // a body shorter than its Content-Length, then the client stops sending
    let head = format!(
        "POST /detect HTTP/1.1\r\nHost: test\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        multipart_type(),
        body.len()
    );
    raw_exchange(srv.addr(), &head, |s| {
        s.write_all(cut)?;
        s.shutdown(Shutdown::Write)
    })
    .error(400, 1005);

    // random bytes as a multipart body, as an unknown type, with no type at all
    let junk = noise(50_000);
    srv.post_raw("/detect", Some(&multipart_type()), &junk)
        .error(400, 1005);
    srv.post_raw("/search", Some("application/x-random"), &junk)
        .error(400, 1005);
    srv.post_raw("/detect", None, &junk).error(400, 1005);
    srv.post_raw(
        "/addface",
        Some("application/x-www-form-urlencoded"),
        &junk[..4000],
    )
    .error(400, 1005);
    srv.post_raw("/addface", Some("application/x-www-form-urlencoded"), &junk)
        .error(413, 1005);
    // random bytes as the image
    srv.post_multipart("/detect", &[Part::File("image_file", &junk)])
        .error(400, 1004);

    srv.get("/health").ok();
    srv.detect_one(&photo("obama.jpg"));
}

// ---- tokens, crops, restart ---------------------------------------------------------------

#[test]
fn crops_live_as_long_as_their_tokens() {
    let dir = fresh_dir("crops");
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    std::fs::write(dir.join("crops/stale.jpg"), b"left over").unwrap();
    let srv = TestServer::start_in(dir.clone(), |c| c.tokens.max_entries = 2);
    assert!(
        !dir.join("crops/stale.jpg").exists(),
        "the crops folder is emptied at start"
    );

    let faces = srv.detect(&photo("group-sample1.jpg"));
    assert!(faces.len() >= 3, "{faces:?}");
    let tokens: Vec<String> = faces
        .iter()
        .map(|f| f["face_token"].as_str().unwrap().to_owned())
        .collect();
    // more faces than room for two tokens: all but the last two are evicted with their crops
    let (evicted, live) = tokens.split_at(tokens.len() - 2);
    for t in evicted {
        srv.get(&format!("/crops/{t}.jpg")).error(404, 1006);
        srv.get(&format!("/addface?face_token={t}"))
            .error(404, 1006);
    }
    for t in live {
        assert_eq!(srv.get(&format!("/crops/{t}.jpg")).status, 200);
    }
    assert_eq!(
        (srv.service().token_count().unwrap(), srv.crop_files()),
        (2, 2)
    );

    let biden = srv.detect(&photo("biden.jpg"));
    assert_eq!(biden.len(), 1, "{biden:?}");
    let biden = biden[0]["face_token"].as_str().unwrap().to_owned();
    srv.get(&format!("/crops/{}.jpg", live[0])).error(404, 1006);
    assert_eq!(srv.get(&format!("/crops/{}.jpg", live[1])).status, 200);
    assert_eq!(srv.get(&format!("/crops/{biden}.jpg")).status, 200);
    assert_eq!(
        (srv.service().token_count().unwrap(), srv.crop_files()),
        (2, 2)
    );
    srv.get(&format!("/addface?face_token={biden}")).ok();
}

#[test]
fn restart_keeps_face_sets_and_forgets_tokens() {
    let srv = TestServer::start("restart", |_| {});
    let obama = srv.detect_one(&photo("obama.jpg"));
    srv.get(&format!(
        "/addface?face_token={obama}&face_name=obama&face_set=staff"
    ))
    .ok();
    let biden = srv.detect_one(&photo("biden.jpg"));
    let dir = srv.stop_keeping_data();

    let srv = TestServer::start_in(dir, |_| {});
    // the enrolled face is still there, and its token still works as a query (from the set)
    let found = srv
        .get(&format!(
            "/search?face_token={obama}&threshold=0.6&face_set=staff"
        ))
        .ok();
    assert_eq!(found["cmp_result"][0]["face_token"], obama.as_str());
    assert_eq!(found["cmp_result"][0]["face_name"], "obama");
    let page = srv.get("/faceset?face_set=staff").ok();
    assert_eq!(page["face_num"], 1);
    // the token that was only detected is forgotten, and so is its crop
    srv.get(&format!("/addface?face_token={biden}&face_set=staff"))
        .error(404, 1006);
    srv.get(&format!("/crops/{biden}.jpg")).error(404, 1006);
    assert_eq!(srv.crop_files(), 0);
    // an enrolled token can be renamed without the cache
    let renamed = srv
        .get(&format!(
            "/addface?face_token={obama}&face_name=barack&face_set=staff"
        ))
        .ok();
    assert_eq!(renamed["face_name"], "barack");
    assert_eq!(
        srv.get("/faceset?face_set=staff").ok()["faces"][0]["face_name"],
        "barack"
    );
}

// ---- load ---------------------------------------------------------------------------------

fn concurrent_detects(srv: &TestServer, n: usize, photo: &[u8]) -> Vec<Resp> {
    let barrier = Arc::new(Barrier::new(n));
    let body = Arc::new(multipart(&[Part::File("image_file", photo)]));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let (barrier, body) = (Arc::clone(&barrier), Arc::clone(&body));
            let (agent, url) = (srv.agent.clone(), srv.url("/detect"));
            std::thread::spawn(move || {
                barrier.wait();
                TestServer::read(
                    agent
                        .post(url)
                        .header("Content-Type", &multipart_type())
                        .send(&body[..]),
                )
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn thirty_two_concurrent_detects_all_succeed() {
    let srv = TestServer::start("concurrent", |c| c.queue = 64);
    let photo = facerec_fixtures::encode_jpeg(&facerec_fixtures::obama_640x480());
    let started = Instant::now();
    let answers = concurrent_detects(&srv, 32, &photo);
    let elapsed = started.elapsed();
    let mut tokens = BTreeSet::new();
    for r in &answers {
        let v = r.ok();
        let faces = v["faces"].as_array().unwrap();
        assert!(!faces.is_empty(), "{v}");
        tokens.insert(largest(faces)["face_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 32, "every token is unique");
    eprintln!("32 concurrent 640x480 detects in {elapsed:?}");
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let srv = TestServer::start("overload", |c| {
        c.inference_threads = 1;
        c.queue = 0;
    });
    let answers = concurrent_detects(&srv, 8, &photo("obama.jpg"));
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 503).collect();
    let served = answers.iter().filter(|r| r.status == 200).count();
    assert!(!refused.is_empty(), "no request was refused");
    assert!(served >= 1, "no request was served");
    assert_eq!(refused.len() + served, 8);
    for r in refused {
        r.error(503, 1003);
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    // the pool recovers
    srv.detect_one(&photo("obama.jpg"));
    let metrics = String::from_utf8(srv.get("/metrics").body).unwrap();
    let rejected = metrics
        .lines()
        .find_map(|l| l.strip_prefix("facerec_inference_rejected_total "))
        .unwrap();
    assert_ne!(rejected, "0");
}

// ---- ops ----------------------------------------------------------------------------------

#[test]
fn health_ready_metrics_and_request_ids() {
    let srv = TestServer::start("ops", |_| {});
    let health = srv.get("/health").ok();
    assert_eq!(health["status"], "ok");
    let ready = srv.get("/ready").ok();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dims"], 128);
    assert!((ready["threshold"].as_f64().unwrap() - 0.6).abs() < 1e-6);

    let faces = srv.detect(&photo("obama.jpg"));
    let token = largest(&faces)["face_token"].as_str().unwrap();
    srv.get(&format!("/addface?face_token={token}&face_set=metrics"))
        .ok();
    srv.get("/addface?face_token=nosuchtoken").error(404, 1006);
    let r = srv.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(r.body).unwrap();
    let tokens = format!("facerec_token_cache_tokens {}", faces.len());
    let detected = format!("facerec_faces_detected_total {}", faces.len());
    for expected in [
        tokens.as_str(),
        detected.as_str(),
        "facerec_http_requests_total{endpoint=\"/detect\",method=\"POST\",status=\"200\"} 1",
        "facerec_http_requests_total{endpoint=\"/addface\",method=\"GET\",status=\"200\"} 1",
        "facerec_http_requests_total{endpoint=\"/addface\",method=\"GET\",status=\"404\"} 1",
        "facerec_http_requests_total{endpoint=\"/health\",method=\"GET\",status=\"200\"} 1",
        "facerec_http_errors_total{error_code=\"1006\"} 1",
        "facerec_stage_duration_seconds_count{stage=\"decode\"} 1",
        "facerec_stage_duration_seconds_count{stage=\"detect_embed\"} 1",
        "facerec_face_set_faces{face_set=\"metrics\"} 1",
        "facerec_inference_in_flight 0",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "missing {expected:?} in\n{text}"
        );
    }
    for prefix in [
        "facerec_http_request_duration_seconds_bucket{endpoint=\"/detect\",le=\"+Inf\"} 1",
        "facerec_stage_duration_seconds_count{stage=\"store\"} ",
        "facerec_stage_duration_seconds_bucket{stage=\"detect_embed\",le=",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(prefix)),
            "missing {prefix:?} in\n{text}"
        );
    }
    // unknown paths are counted under one label
    srv.get("/no/such/path/123").error(404, 1008);
    let text = String::from_utf8(srv.get("/metrics").body).unwrap();
    assert!(
        text.contains("endpoint=\"unmatched\",method=\"GET\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(!text.contains("/no/such/path"));

    // request ids: a sane one is echoed, others replaced, none missing
    let r = srv.get_with("/health", ("X-Request-Id", "client-id-42"));
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    let r = srv.get_with("/health", ("X-Request-Id", "not sane!"));
    let id = r.header("x-request-id").unwrap();
    assert!(id != "not sane!" && !id.is_empty());
    assert_ne!(
        srv.get("/health").header("x-request-id"),
        srv.get("/health").header("x-request-id")
    );
}

#[test]
fn openapi_document_matches_the_routes() {
    let srv = TestServer::start("openapi", |_| {});
    let doc = srv.get("/openapi.json").json();
    assert_eq!(
        doc,
        serde_json::from_str::<Value>(facerec_api::openapi_json()).unwrap()
    );
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((path.clone(), method.to_ascii_uppercase()));
        }
    }
    let served: BTreeSet<(String, String)> = facerec_api::routes()
        .into_iter()
        .map(|(p, m)| (p.to_owned(), m.to_owned()))
        .collect();
    assert_eq!(documented, served, "the document and the router disagree");

    // every documented operation is answered by a route (whatever it says about the input)
    for (path, method) in &documented {
        let concrete = path
            .replace("{face_name}", &format!("{}.jpg", "A".repeat(24)))
            .replace("{face_set}", "default")
            .replace("{name}", "nosuch");
        let r = match method.as_str() {
            "GET" => srv.get(&concrete),
            "POST" => srv.post_raw(&concrete, None, b""),
            "DELETE" => srv.call("DELETE", &concrete, &[], None),
            other => panic!("undocumented method {other}"),
        };
        let routed = match r.status {
            405 => false,
            404 => r.json()["error_code"] != 1008,
            _ => true,
        };
        assert!(
            routed,
            "{method} {path} is documented but not routed ({})",
            r.status
        );
        // every error the document can describe is in the one shape
        if r.status >= 400 {
            let v = r.json();
            assert_eq!(v["success"], false, "{method} {path}: {v}");
        }
    }
    // and a path that is not documented is not routed
    srv.get("/undocumented").error(404, 1008);

    // every success a client gets has exactly the fields its operation documents
    let documented = |operation_id: &str| -> BTreeSet<String> {
        let operation = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .find(|op| op["operationId"] == operation_id)
            .unwrap_or_else(|| panic!("no operation {operation_id}"));
        let reply = &operation["responses"]["200"]["content"]["application/json"]["schema"];
        let name = reply["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
        let properties = doc["components"]["schemas"][name]["properties"].as_object();
        properties.unwrap().keys().cloned().collect()
    };
    let obama = photo("obama.jpg");
    let (a, b) = (srv.detect_one(&obama), srv.detect_one(&obama));
    let (a, b) = (a.as_str(), b.as_str());
    let answers = [
        (
            "detect",
            srv.post_multipart("/detect", &[Part::File("image_file", &obama)]),
        ),
        ("addFaceGet", srv.get(&format!("/addface?face_token={a}"))),
        (
            "addFacePost",
            srv.post_form("/addface", &[("face_token", b)]),
        ),
        (
            "searchGet",
            srv.get(&format!("/search?face_token={a}&threshold=0.6")),
        ),
        (
            "searchPost",
            srv.post_form("/search", &[("face_token", a), ("threshold", "1")]),
        ),
        (
            "compareGet",
            srv.get(&format!("/compare?face_token_a={a}&face_token_b={b}")),
        ),
        (
            "comparePost",
            srv.post_form("/compare", &[("face_token_a", b), ("face_token_b", a)]),
        ),
        ("faceSets", srv.get("/facesets")),
        ("faceSet", srv.get("/faceset")),
        ("health", srv.get("/health")),
        ("ready", srv.get("/ready")),
        (
            "removeFaceGet",
            srv.get(&format!("/removeface?face_token={a}")),
        ),
        (
            "removeFacePost",
            srv.post_form("/removeface", &[("face_token", b)]),
        ),
    ];
    for (operation_id, answer) in answers {
        let sent: BTreeSet<String> = answer.ok().as_object().unwrap().keys().cloned().collect();
        assert_eq!(sent, documented(operation_id), "{operation_id}");
    }
}

// ---- API keys -------------------------------------------------------------------------------

/// Makes a key straight in the service's key store (as `facerec-server keys create` does).
fn make_key(srv: &TestServer, name: &str, role: Role, sets: Option<&[&str]>) -> String {
    let sets = sets.map(|s| s.iter().map(|s| (*s).to_owned()).collect());
    let key = NewKey::generate(name, role, sets).unwrap();
    srv.service().keys().create(key.record).unwrap();
    key.secret
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn each_role_against_each_endpoint() {
    let srv = TestServer::start("roles", |_| {});
    // no key yet: the original API, open (but key management needs an admin key)
    srv.get("/facesets").ok();
    srv.get("/keys").error(401, 1010);

    let keys: Vec<(Role, String)> = [Role::Read, Role::Write, Role::Admin]
        .into_iter()
        .map(|role| (role, make_key(&srv, role.as_str(), role, None)))
        .collect();
    let obama = photo("obama.jpg");
    let detect = multipart(&[Part::File("image_file", &obama)]);
    let batch = multipart(&[
        Part::Text("name", "Obama"),
        Part::File("image_file", &obama),
    ]);
    let mp = multipart_type();
    // every route and method, with what it needs (None: open)
    // method, path, body, the role needed (None: open)
    type Check<'a> = (&'a str, &'a str, Option<(&'a str, &'a [u8])>, Option<Role>);
    let routes: Vec<Check> = vec![
        (
            "POST",
            "/detect",
            Some((mp.as_str(), detect.as_slice())),
            Some(Role::Read),
        ),
        ("GET", "/addface?face_token=nosuch", None, Some(Role::Write)),
        (
            "POST",
            "/addface?face_token=nosuch",
            None,
            Some(Role::Write),
        ),
        (
            "GET",
            "/removeface?face_token=nosuch",
            None,
            Some(Role::Write),
        ),
        (
            "POST",
            "/removeface?face_token=nosuch",
            None,
            Some(Role::Write),
        ),
        (
            "GET",
            "/search?face_token=nosuch&threshold=0.6",
            None,
            Some(Role::Read),
        ),
        (
            "POST",
            "/search?face_token=nosuch&threshold=0.6",
            None,
            Some(Role::Read),
        ),
        (
            "GET",
            "/compare?face_token_a=x&face_token_b=y",
            None,
            Some(Role::Read),
        ),
        (
            "POST",
            "/compare?face_token_a=x&face_token_b=y",
            None,
            Some(Role::Read),
        ),
        ("GET", "/facesets", None, Some(Role::Read)),
        ("GET", "/faceset", None, Some(Role::Read)),
        (
            "POST",
            "/faceset/roles/faces",
            Some((mp.as_str(), batch.as_slice())),
            Some(Role::Write),
        ),
        (
            "GET",
            "/crops/AAAAAAAAAAAAAAAAAAAAAAAA.jpg",
            None,
            Some(Role::Read),
        ),
        ("GET", "/health", None, None),
        ("GET", "/ready", None, None),
        ("GET", "/metrics", None, Some(Role::Admin)),
        ("GET", "/openapi.json", None, Some(Role::Read)),
        ("GET", "/keys", None, Some(Role::Admin)),
        (
            "POST",
            "/keys",
            Some(("application/json", b"{}".as_slice())),
            Some(Role::Admin),
        ),
        ("DELETE", "/keys/nosuch", None, Some(Role::Admin)),
    ];
    // the table covers every route of the server
    let covered: BTreeSet<(String, String)> = routes
        .iter()
        .map(|(m, p, ..)| {
            let path = p.split('?').next().unwrap();
            let path = match path {
                "/faceset/roles/faces" => "/faceset/{face_set}/faces",
                "/keys/nosuch" => "/keys/{name}",
                p if p.starts_with("/crops/") => "/crops/{face_name}",
                p => p,
            };
            ((*m).to_owned(), path.to_owned())
        })
        .collect();
    let all: BTreeSet<(String, String)> = facerec_api::routes()
        .into_iter()
        .map(|(p, m)| (m.to_owned(), p.to_owned()))
        .collect();
    assert_eq!(covered, all);

    for (method, path, body, needs) in &routes {
        let without = srv.call(method, path, &[], *body);
        match needs {
            None => assert_eq!(without.status, 200, "{method} {path}"),
            Some(_) => {
                let v = without.error(401, 1010);
                assert!(v["detail"].as_str().unwrap().contains("API key"), "{v}");
                assert_eq!(without.header("www-authenticate"), Some("Bearer"));
            }
        }
        for (role, key) in &keys {
            // both headers work
            let header = if *role == Role::Write {
                ("X-API-Key", key.clone())
            } else {
                ("Authorization", bearer(key))
            };
            let r = srv.call(method, path, &[(header.0, &header.1)], *body);
            let allowed = needs.is_none_or(|needed| role.allows(needed));
            if allowed {
                assert!(
                    ![401, 403].contains(&r.status),
                    "{role} key on {method} {path}: {}",
                    String::from_utf8_lossy(&r.body)
                );
            } else {
                let v = r.error(403, 1011);
                let detail = v["detail"].as_str().unwrap();
                assert!(detail.contains(&format!("has role {role}")), "{v}");
            }
        }
    }
    // a key the server never made, and a malformed header
    srv.get_with("/facesets", ("Authorization", "Bearer frk_nosuchkey"))
        .error(401, 1010);
    srv.get_with("/facesets", ("Authorization", "Basic dXNlcjpwdw=="))
        .error(401, 1010);
}

#[test]
fn keys_limited_to_face_sets() {
    let srv = TestServer::start("key-sets", |_| {});
    let admin = bearer(&make_key(&srv, "root", Role::Admin, None));
    let staff = bearer(&make_key(
        &srv,
        "staff-writer",
        Role::Write,
        Some(&["staff"]),
    ));
    let auth = |key: &str| [("Authorization", key.to_owned())];
    let with = |key: &str, method: &str, path: &str| {
        let h = auth(key);
        srv.call(method, path, &[(h[0].0, &h[0].1)], None)
    };

    // the admin enrols a face in each of two sets
    let obama = photo("obama.jpg");
    for set in ["staff", "guests"] {
        let body = multipart(&[
            Part::Text("name", "Obama"),
            Part::File("image_file", &obama),
        ]);
        let h = auth(&admin);
        srv.call(
            "POST",
            &format!("/faceset/{set}/faces"),
            &[(h[0].0, &h[0].1)],
            Some((&multipart_type(), &body)),
        )
        .ok();
    }
    let token = with(&staff, "POST", "/faceset/staff/faces");
    token.error(400, 1005); // no body: the set was allowed, the body is what is wrong

    // the limited key sees and touches its set only
    let sets = with(&staff, "GET", "/facesets").ok();
    let names: Vec<&str> = sets["face_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["face_set"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["staff"], "{sets}");
    with(&staff, "GET", "/faceset?face_set=staff").ok();
    let v = with(&staff, "GET", "/faceset?face_set=guests").error(403, 1011);
    assert!(v["detail"].as_str().unwrap().contains("'guests'"), "{v}");
    let enrolled = with(&admin, "GET", "/faceset?face_set=guests").ok();
    let guest_token = enrolled["faces"][0]["face_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for (method, path) in [
        (
            "GET",
            format!("/search?face_set=guests&face_token={guest_token}&threshold=0.6"),
        ),
        (
            "GET",
            format!("/removeface?face_set=guests&face_token={guest_token}"),
        ),
        (
            "GET",
            format!(
                "/compare?face_set=guests&face_token_a={guest_token}&face_token_b={guest_token}"
            ),
        ),
        (
            "GET",
            format!("/addface?face_set=guests&face_token={guest_token}"),
        ),
        ("POST", "/faceset/guests/faces".to_owned()),
        // the default set is a set like the others
        (
            "GET",
            format!("/search?face_token={guest_token}&threshold=0.6"),
        ),
    ] {
        with(&staff, method, &path).error(403, 1011);
    }
    // nothing was touched in the other set
    assert_eq!(
        with(&admin, "GET", "/faceset?face_set=guests").ok()["face_num"],
        1
    );
    // and in its own set the key works
    let staff_face = with(&admin, "GET", "/faceset?face_set=staff").ok();
    let staff_token = staff_face["faces"][0]["face_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let found = with(
        &staff,
        "GET",
        &format!("/search?face_set=staff&face_token={staff_token}&threshold=0.6"),
    )
    .ok();
    assert_eq!(
        found["cmp_result"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    // a key limited to sets cannot manage keys, even an admin one
    let limited_admin = bearer(&make_key(
        &srv,
        "staff-admin",
        Role::Admin,
        Some(&["staff"]),
    ));
    with(&limited_admin, "GET", "/keys").error(403, 1011);
}

#[test]
fn keys_over_http_and_revocation_at_once() {
    let srv = TestServer::start("key-admin", |_| {});
    let admin = bearer(&make_key(&srv, "root", Role::Admin, None));
    let h = [("Authorization", admin.as_str())];

    // make a read key over HTTP (JSON body), limited to one set
    let made = srv
        .call(
            "POST",
            "/keys",
            &h,
            Some((
                "application/json",
                br#"{"name": "reader", "role": "read", "face_sets": "staff,guests"}"#,
            )),
        )
        .ok();
    let reader = made["key"].as_str().unwrap().to_owned();
    assert!(reader.starts_with("frk_") && reader.len() == 44, "{made}");
    assert_eq!(made["role"], "read");
    assert_eq!(made["face_sets"], serde_json::json!(["staff", "guests"]));
    // the same name again: 409
    srv.call(
        "POST",
        "/keys",
        &h,
        Some((
            "application/x-www-form-urlencoded",
            b"name=reader&role=write",
        )),
    )
    .error(409, 1001);
    // bad role, bad name, bad set
    for body in [
        "name=x&role=owner",
        "name=bad%20name&role=read",
        "name=x&role=read&face_sets=no%20spaces",
    ] {
        let form = ("application/x-www-form-urlencoded", body.as_bytes());
        srv.call("POST", "/keys", &h, Some(form)).error(400, 1001);
    }
    let form = ("application/x-www-form-urlencoded", b"role=read".as_slice());
    srv.call("POST", "/keys", &h, Some(form)).error(400, 1002);

    // listed without secrets; the file holds hashes only
    let list = srv.call("GET", "/keys", &h, None).ok();
    let names: Vec<&str> = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["reader", "root"]);
    assert!(!list.to_string().contains("frk_"), "{list}");
    let file = std::fs::read_to_string(srv.dir.join("keys.json")).unwrap();
    assert!(!file.contains(&reader) && !file.contains("frk_"), "{file}");

    let reader_h = bearer(&reader);
    srv.get_with("/facesets", ("Authorization", &reader_h)).ok();
    // revoked over HTTP: refused from the very next request
    let revoked = srv.call("DELETE", "/keys/reader", &h, None).ok();
    assert_eq!(revoked["name"], "reader");
    srv.get_with("/facesets", ("Authorization", &reader_h))
        .error(401, 1010);
    srv.call("DELETE", "/keys/reader", &h, None)
        .error(404, 1001);

    // revoked by another process on the same data dir (what `facerec-server keys revoke`
    // does while the server runs): refused at once too
    let other = bearer(&make_key(&srv, "other", Role::Read, None));
    srv.get_with("/facesets", ("Authorization", &other)).ok();
    FileKeys::in_dir(&srv.dir).revoke("other").unwrap();
    srv.get_with("/facesets", ("Authorization", &other))
        .error(401, 1010);
    // and a key made by another process works at once
    let outside = NewKey::generate("outside", Role::Read, None).unwrap();
    FileKeys::in_dir(&srv.dir).create(outside.record).unwrap();
    srv.get_with("/facesets", ("X-API-Key", &outside.secret))
        .ok();
}

#[test]
fn rate_limit_is_hit_and_recovers() {
    let srv = TestServer::start("rate", |config| {
        config.auth.rate_limit = Some(RateLimit {
            per_second: NonZeroU32::new(2).unwrap(),
            burst: NonZeroU32::new(3).unwrap(),
        });
    });
    let key = bearer(&make_key(&srv, "busy", Role::Read, None));
    let quiet = bearer(&make_key(&srv, "quiet", Role::Read, None));
    let started = Instant::now();
    for _ in 0..3 {
        srv.get_with("/facesets", ("Authorization", &key)).ok();
    }
    let limited = srv.get_with("/facesets", ("Authorization", &key));
    let v = limited.error(429, 1012);
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "too slow to test the burst"
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry, 1, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("'busy'"), "{v}");
    // other keys are not affected, and open routes are not limited
    srv.get_with("/facesets", ("Authorization", &quiet)).ok();
    srv.get("/health").ok();
    // after Retry-After, the key works again
    std::thread::sleep(Duration::from_secs(retry));
    srv.get_with("/facesets", ("Authorization", &key)).ok();
    let metrics = srv.get_with(
        "/metrics",
        (
            "Authorization",
            &bearer(&make_key(&srv, "ops", Role::Admin, None)),
        ),
    );
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("code=\"1012\""), "{text}");
}

#[test]
fn without_anonymous_access_a_key_is_needed_even_before_the_first() {
    let srv = TestServer::start("no-anon", |config| config.auth.anonymous = false);
    let v = srv.get("/facesets").error(401, 1010);
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("facerec-server keys create"),
        "{v}"
    );
    srv.get("/health").ok();
    srv.get("/ready").ok();
    let key = make_key(&srv, "first", Role::Read, None);
    srv.get_with("/facesets", ("X-API-Key", &key)).ok();
}

// ---- batch enrolment ----------------------------------------------------------------------

/// A batch body: for each photo, its `name` part, then its `image_file` part with a file name.
fn batch(photos: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, bytes) in photos {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n\
                 --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image_file\"; \
                 filename=\"{file_name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[test]
fn batch_enrolment() {
    let srv = TestServer::start("batch", |_| {});
    let (obama, obama2, biden, group) = (
        photo("obama.jpg"),
        photo("obama2.jpg"),
        photo("biden.jpg"),
        photo("group-sample1.jpg"),
    );
    let blank = png(200, 200);
    let corrupt = obama[..obama.len() / 3].to_vec();
    let body = batch(&[
        ("Obama", "obama.jpg", &obama),
        ("Obama", "obama2.jpg", &obama2),
        ("Biden", "biden.jpg", &biden),
        ("Crowd", "group.jpg", &group),
        ("Nobody", "blank.png", &blank),
        ("Broken", "broken.jpg", &corrupt),
    ]);
    let v = srv
        .post_raw("/faceset/people/faces", Some(&multipart_type()), &body)
        .ok();
    assert_eq!(v["face_set"], "people");
    assert_eq!(
        (v["enrolled"].as_u64(), v["failed"].as_u64()),
        (Some(4), Some(2)),
        "{v}"
    );
    let results = v["results"].as_array().unwrap();
    let files: Vec<&str> = results
        .iter()
        .map(|r| r["file_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "obama.jpg",
            "obama2.jpg",
            "biden.jpg",
            "group.jpg",
            "blank.png",
            "broken.jpg"
        ]
    );
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["index"].as_u64(), Some(i as u64));
    }
    for r in &results[..4] {
        assert!(is_token(&r["face_token"]), "{r}");
    }
    assert!(
        results[..3]
            .iter()
            .all(|r| r["face_count"].as_u64() >= Some(1))
    );
    assert!(
        results[3]["face_count"].as_u64().unwrap() > 1,
        "{}",
        results[3]
    );
    assert_eq!(results[4]["error_code"], 1007);
    assert_eq!(results[4]["error_message"], "FACE_INFO_ERROR");
    assert!(results[4]["detail"].as_str().unwrap().contains("blank.png"));
    assert_eq!(results[5]["error_code"], 1004);
    assert!(
        results[5]["detail"]
            .as_str()
            .unwrap()
            .contains("broken.jpg")
    );

    // the set holds the four faces under their names; a search finds Obama's two photos
    let page = srv.get("/faceset?face_set=people").ok();
    assert_eq!(page["face_num"], 4, "{page}");
    let obama_token = results[0]["face_token"].as_str().unwrap();
    let found = srv
        .get(&format!(
            "/search?face_set=people&face_token={obama_token}&threshold=0.6"
        ))
        .ok();
    let names: BTreeSet<&str> = found["cmp_result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["face_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["Obama"]), "{found}");

    // the same photos again: the same tokens, replaced, not duplicated
    let again = srv
        .post_raw("/faceset/people/faces", Some(&multipart_type()), &body)
        .ok();
    for (a, b) in results.iter().zip(again["results"].as_array().unwrap()) {
        assert_eq!(a["face_token"], b["face_token"]);
    }
    assert_eq!(srv.get("/faceset?face_set=people").ok()["face_num"], 4);
    // in another set, other tokens
    let other = srv
        .post_raw(
            "/faceset/others/faces",
            Some(&multipart_type()),
            &batch(&[("Obama", "o.jpg", &obama)]),
        )
        .ok();
    assert_ne!(other["results"][0]["face_token"], results[0]["face_token"]);

    // base64 parts work too, and a photo without a file name is called by its place
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &biden);
    let body = multipart(&[Part::Text("name", "Joe"), Part::Text("image_base64", &b64)]);
    let v = srv
        .post_raw("/faceset/b64/faces", Some(&multipart_type()), &body)
        .ok();
    assert_eq!(v["results"][0]["file_name"], "photo 1");
    assert_eq!(v["results"][0]["name"], "Joe");
}

#[test]
fn bad_batches_are_refused_whole_and_write_nothing() {
    let srv = TestServer::start("batch-bad", |config| config.limits.max_batch_images = 3);
    let obama = photo("obama.jpg");
    let mp = multipart_type();
    let cases: Vec<(Vec<u8>, u16, u64, &str)> = vec![
        // an image with no name before it
        (
            multipart(&[Part::File("image_file", &obama)]),
            400,
            1002,
            "name",
        ),
        // a name with no image after it
        (
            multipart(&[
                Part::Text("name", "A"),
                Part::File("image_file", &obama),
                Part::Text("name", "B"),
            ]),
            400,
            1002,
            "no photo",
        ),
        // no photo at all
        (multipart(&[Part::Text("other", "x")]), 400, 1002, "name"),
        // more photos than allowed
        (
            batch(&[
                ("a", "1.jpg", &obama),
                ("b", "2.jpg", &obama),
                ("c", "3.jpg", &obama),
                ("d", "4.jpg", &obama),
            ]),
            400,
            1001,
            "more than 3",
        ),
        // a name too long
        (
            batch(&[(&"x".repeat(300), "1.jpg", &obama)]),
            400,
            1001,
            "name",
        ),
    ];
    for (body, status, code, says) in cases {
        let v = srv
            .post_raw("/faceset/bad/faces", Some(&mp), &body)
            .error(status, code);
        assert!(v["detail"].as_str().unwrap().contains(says), "{v}");
    }
    // not multipart
    srv.post_form("/faceset/bad/faces", &[("name", "x")])
        .error(400, 1005);
    // a bad set name
    srv.post_raw(
        "/faceset/no%20spaces/faces",
        Some(&mp),
        &batch(&[("a", "1.jpg", &obama)]),
    )
    .error(400, 1001);
    assert_eq!(srv.get("/faceset?face_set=bad").ok()["face_num"], 0);

    // a request cut in the middle of its last photo writes nothing, not even the photos
    // that arrived whole
    let body = batch(&[("a", "1.jpg", &obama), ("b", "2.jpg", &obama)]);
    let head = format!(
        "POST /faceset/cut/faces HTTP/1.1\r\nHost: test\r\nContent-Type: {mp}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut stream = TcpStream::connect(srv.addr()).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() - 5000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stream.shutdown(Shutdown::Both).unwrap();
    drop(stream);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(srv.get("/faceset?face_set=cut").ok()["face_num"], 0);
    let sets = srv.get("/facesets").ok();
    assert!(!sets.to_string().contains("\"cut\""), "{sets}");
    // the server is fine
    srv.post_raw("/faceset/cut/faces", Some(&mp), &body).ok();
    assert_eq!(srv.get("/faceset?face_set=cut").ok()["face_num"], 1);
}
