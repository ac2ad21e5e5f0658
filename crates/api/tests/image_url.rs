#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `image_url` against a real server on 127.0.0.1:0, fetching from a small HTTP server of the
//! test's own, also on 127.0.0.1: photos, redirects, oversize, slow and missing images. Every
//! other address in these tests is refused before any connection is made; nothing here
//! touches the network beyond 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::{engine, fresh_dir};
use facerec_api::{ApiConfig, FaceService, ImageUrlPolicy, RunningServer, ServerOptions};
use facerec_fixtures::{Part, form, multipart, multipart_type};
use serde_json::{Value, json};

// ---- the image server ---------------------------------------------------------------------

/// What the image server saw and did, shared with the tests.
#[derive(Default)]
struct Seen {
    /// Request targets, in order.
    requests: Mutex<Vec<String>>,
    /// Bytes of `/endless` written before the client went away.
    endless_written: AtomicUsize,
    /// Whether `/endless` has stopped writing.
    endless_done: AtomicUsize,
}

struct ImageServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl ImageServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn was_asked_for(&self, target: &str) -> bool {
        self.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r == target)
    }
}

/// One image server for the whole test binary (a thread per connection, never stopped).
fn images() -> &'static ImageServer {
    static SERVER: OnceLock<ImageServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let shared = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let seen = Arc::clone(&shared);
                std::thread::spawn(move || serve(stream, addr, &seen));
            }
        });
        ImageServer { addr, seen }
    })
}

fn serve(mut stream: TcpStream, addr: SocketAddr, seen: &Seen) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or("").to_owned();
    seen.requests.lock().unwrap().push(target.clone());
    let path = target.split('?').next().unwrap_or("");
    let reply = |stream: &mut TcpStream, status: &str, headers: &str, body: &[u8]| {
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = stream.write_all(body);
    };
    let redirect = |stream: &mut TcpStream, location: &str| {
        reply(
            stream,
            "302 Found",
            &format!("Location: {location}\r\n"),
            b"",
        );
    };
    match path {
        "/obama.jpg" | "/obama2.jpg" | "/biden.jpg" => {
            let photo = facerec_fixtures::photo_bytes(&path[1..]);
            reply(
                &mut stream,
                "200 OK",
                "Content-Type: image/jpeg\r\n",
                &photo,
            );
        }
        "/not-an-image" => reply(&mut stream, "200 OK", "", b"hello, world"),
        "/redirect/obama.jpg" => redirect(&mut stream, "/obama.jpg"),
        "/to-loopback" => redirect(
            &mut stream,
            &format!("http://127.0.0.2:{}/obama.jpg", addr.port()),
        ),
        "/to-ftp" => redirect(&mut stream, "ftp://127.0.0.1/obama.jpg"),
        _ if path.starts_with("/chain/") => {
            // `/chain/N`: N redirects, the last to the photo
            let left: usize = path["/chain/".len()..].parse().unwrap();
            if left <= 1 {
                redirect(&mut stream, "/obama.jpg");
            } else {
                redirect(&mut stream, &format!("/chain/{}", left - 1));
            }
        }
        // announces 2 MiB + 1 bytes
        "/big" => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                2 * 1024 * 1024 + 1
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&vec![0u8; 2 * 1024 * 1024 + 1]);
        }
        // no Content-Length, 64 MiB until the connection closes, or until the client leaves
        "/endless" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![0u8; 64 * 1024];
            for _ in 0..1024 {
                if stream.write_all(&chunk).is_err() {
                    break;
                }
                seen.endless_written
                    .fetch_add(chunk.len(), Ordering::SeqCst);
            }
            seen.endless_done.store(1, Ordering::SeqCst);
        }
        // the head and a little of the body at once, the rest after 3 s
        "/slow" => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789",
            );
            std::thread::sleep(Duration::from_secs(3));
            let _ = stream.write_all(&[0u8; 990]);
        }
        _ => reply(&mut stream, "404 Not Found", "", b"no such image"),
    }
}

// ---- the API server -----------------------------------------------------------------------

struct Api {
    server: Option<RunningServer>,
    dir: PathBuf,
    agent: ureq::Agent,
}

struct Resp {
    status: u16,
    body: Value,
}

impl Resp {
    fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "{}", self.body);
        assert_eq!(self.body["success"], true, "{}", self.body);
        &self.body
    }

    /// Asserts the error shape with this status and code; returns `detail`.
    fn error(&self, status: u16, code: u64) -> String {
        assert_eq!(
            (self.status, self.body["error_code"].as_u64()),
            (status, Some(code)),
            "{}",
            self.body
        );
        assert_eq!(self.body["success"], false, "{}", self.body);
        self.body["detail"].as_str().unwrap().to_owned()
    }
}

impl Api {
    fn start(name: &str, policy: ImageUrlPolicy) -> Self {
        let dir = fresh_dir(&format!("image-url-{name}"));
        let mut config = ApiConfig::new(&dir);
        config.inference_threads = 2;
        config.limits.image_urls = policy;
        let service = FaceService::open(engine(), config).expect("opening the service");
        let options = ServerOptions {
            workers: 2,
            ..ServerOptions::default()
        };
        let server = facerec_api::spawn(service, "127.0.0.1:0", options).expect("starting");
        let agent = ureq::Agent::config_builder()
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

    /// Fetching enabled, from 127.0.0.1 and ::1 (where the image server is), within 1 s.
    fn local() -> Self {
        Self::start(
            "local",
            ImageUrlPolicy {
                enabled: true,
                allow: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
                timeout: Duration::from_secs(1),
                ..ImageUrlPolicy::default()
            },
        )
    }

    /// Fetching enabled, public addresses only.
    fn public_only() -> Self {
        Self::start(
            "public",
            ImageUrlPolicy {
                enabled: true,
                ..ImageUrlPolicy::default()
            },
        )
    }

    fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        let url = self.server.as_ref().unwrap().url(path);
        let mut res = self
            .agent
            .post(url)
            .header("Content-Type", content_type)
            .send(body)
            .expect("HTTP exchange");
        let status = res.status().as_u16();
        let bytes = res.body_mut().read_to_vec().expect("reading the body");
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "status {status}: not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        Resp { status, body }
    }

    fn json(&self, path: &str, body: Value) -> Resp {
        self.post(path, "application/json", body.to_string().as_bytes())
    }

    fn form(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        self.post(
            path,
            "application/x-www-form-urlencoded",
            form(fields).as_bytes(),
        )
    }

    fn multipart(&self, path: &str, parts: &[Part]) -> Resp {
        self.post(path, &multipart_type(), &multipart(parts))
    }

    /// `/detect` of `image_url=url` in a JSON body.
    fn detect_url(&self, url: &str) -> Resp {
        self.json("/detect", json!({ "image_url": url }))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn faces(v: &Value) -> Vec<f64> {
    let mut scores: Vec<f64> = v["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["score"].as_f64().unwrap())
        .collect();
    scores.sort_by(f64::total_cmp);
    scores
}

// ---- tests --------------------------------------------------------------------------------

/// A fetched photo finds the same faces as the same photo uploaded, in JSON, urlencoded and
/// multipart bodies, through a redirect, three redirects and a host name.
#[test]
fn fetched_images_find_the_faces_an_upload_finds() {
    let img = images();
    let api = Api::local();
    let uploaded = api
        .multipart(
            "/detect",
            &[Part::File(
                "image_file",
                &facerec_fixtures::photo_bytes("obama.jpg"),
            )],
        )
        .ok()
        .clone();
    assert!(!faces(&uploaded).is_empty(), "{uploaded}");
    let url = img.url("/obama.jpg");
    let by_name = url.replace("127.0.0.1", "localhost");
    let answers = [
        api.detect_url(&url),
        api.form("/detect", &[("image_url", url.as_str())]),
        api.multipart("/detect", &[Part::Text("image_url", &url)]),
        api.detect_url(&img.url("/redirect/obama.jpg")),
        api.detect_url(&img.url("/chain/3")),
        api.detect_url(&by_name),
    ];
    for answer in &answers {
        let v = answer.ok();
        let (got, want) = (faces(v), faces(&uploaded));
        assert_eq!(got.len(), want.len(), "{v}");
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{v}");
        }
    }
    assert!(img.was_asked_for("/chain/1"));

    // the bytes take the upload's path: what is not an image is the same FILE_ERROR
    let detail = api.detect_url(&img.url("/not-an-image")).error(400, 1004);
    assert!(detail.contains("JPEG and PNG"), "{detail}");
}

/// `/search` and `/compare` take image URLs too (`image_url_a`, `image_url_b`), and a face
/// not found is named by the URL parameter.
#[test]
fn search_and_compare_take_image_urls() {
    let img = images();
    let api = Api::local();
    let enrolled = api
        .multipart(
            "/detect",
            &[Part::File(
                "image_file",
                &facerec_fixtures::photo_bytes("obama.jpg"),
            )],
        )
        .ok()
        .clone();
    let token = enrolled["faces"][0]["face_token"].as_str().unwrap();
    api.form(
        "/addface",
        &[
            ("face_token", token),
            ("face_name", "obama"),
            ("face_set", "urls"),
        ],
    )
    .ok();
    let found = api.json(
        "/search",
        json!({ "image_url": img.url("/obama2.jpg"), "threshold": "0.6", "face_set": "urls" }),
    );
    assert_eq!(
        found.ok()["cmp_result"][0]["face_name"],
        "obama",
        "{}",
        found.body
    );

    let biden = facerec_fixtures::photo_bytes("biden.jpg");
    let obama2 = img.url("/obama2.jpg");
    let mixed = api.multipart(
        "/compare",
        &[
            Part::Text("image_url_a", &obama2),
            Part::File("image_file_b", &biden),
        ],
    );
    assert!(
        mixed.ok()["distance"].as_f64().unwrap() > 0.6,
        "{}",
        mixed.body
    );
    let both = api.form(
        "/compare",
        &[
            ("image_url_a", obama2.as_str()),
            ("image_url_b", img.url("/obama.jpg").as_str()),
        ],
    );
    assert!(
        both.ok()["distance"].as_f64().unwrap() < 0.6,
        "{}",
        both.body
    );
    let either = api
        .form(
            "/compare",
            &[("image_url_a", obama2.as_str()), ("face_token_a", token)],
        )
        .error(400, 1001);
    assert!(either.contains("give only one of face_token_a"), "{either}");
}

/// Each redirect is checked like the first URL, and only so many are followed.
#[test]
fn redirects_are_checked_hop_by_hop() {
    let img = images();
    let api = Api::local();
    // 127.0.0.1 is allowed, the 127.0.0.2 it redirects to is not
    let detail = api.detect_url(&img.url("/to-loopback")).error(400, 1001);
    assert!(
        detail.contains("redirected to 'http://127.0.0.2:"),
        "{detail}"
    );
    assert!(detail.contains("127.0.0.2 is loopback"), "{detail}");
    let detail = api.detect_url(&img.url("/to-ftp")).error(400, 1001);
    assert!(detail.contains("redirected to 'ftp://"), "{detail}");
    assert!(detail.contains("scheme 'ftp'"), "{detail}");
    let detail = api.detect_url(&img.url("/chain/4")).error(400, 1004);
    assert!(detail.contains("redirected more than 3 times"), "{detail}");
}

/// More than 2 MiB is a 413 FILE_ERROR, like an oversize upload: refused on its
/// Content-Length before the body is read, or as soon as the streamed body passes the limit.
#[test]
fn oversize_images_are_refused_while_streaming() {
    let img = images();
    let api = Api::local();
    let detail = api.detect_url(&img.url("/big")).error(413, 1004);
    assert!(detail.contains("larger than 2097152 bytes"), "{detail}");
    assert!(detail.contains("Content-Length: 2097153"), "{detail}");

    let detail = api.detect_url(&img.url("/endless")).error(413, 1004);
    assert!(detail.contains("larger than 2097152 bytes"), "{detail}");
    assert!(detail.contains("stopped reading after"), "{detail}");
    // the reading stopped there: the image server could not write its 64 MiB
    let deadline = Instant::now() + Duration::from_secs(10);
    while img.seen.endless_done.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let written = img.seen.endless_written.load(Ordering::SeqCst);
    assert!(written < 24 << 20, "{written} bytes were taken");
}

/// A slow body, an error status and a refused connection are FILE_ERRORs naming what went
/// wrong; the slow one is cut at the policy's timeout (1 s here, 5 s by default).
#[test]
fn slow_missing_and_unreachable_images_are_fetch_errors() {
    let img = images();
    let api = Api::local();
    let started = Instant::now();
    let detail = api.detect_url(&img.url("/slow")).error(400, 1004);
    assert!(detail.contains("was not fetched within 1 s"), "{detail}");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );

    let detail = api.detect_url(&img.url("/nothing.jpg")).error(400, 1004);
    assert!(detail.contains("answered HTTP 404 Not Found"), "{detail}");

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let detail = api
        .detect_url(&format!("http://{closed}/obama.jpg"))
        .error(400, 1004);
    assert!(detail.contains("cannot fetch"), "{detail}");
    assert!(detail.to_lowercase().contains("connect"), "{detail}");
}

/// On a server that fetches from public addresses only, every other kind of URL is refused
/// with BAD_ARGUMENTS before anything is fetched.
#[test]
fn urls_are_refused_before_anything_is_fetched() {
    let img = images();
    let api = Api::public_only();
    let probe = img.url("/obama.jpg?probe=public-only");
    let port = img.addr.port();
    for (url, says) in [
        ("ftp://127.0.0.1/obama.jpg".to_owned(), "scheme 'ftp'"),
        ("file:///etc/passwd".to_owned(), "scheme 'file'"),
        (
            format!("http://user:secret@127.0.0.1:{port}/"),
            "credentials",
        ),
        (probe.clone(), "address 127.0.0.1 is loopback"),
        (
            format!("http://localhost:{port}/obama.jpg"),
            "host 'localhost' resolves to",
        ),
        ("http://10.1.2.3/".to_owned(), "10.1.2.3 is private"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254 is link-local",
        ),
        (format!("http://[::1]:{port}/"), "::1 is loopback"),
        (format!("http://[::ffff:127.0.0.1]:{port}/"), "IPv4-mapped"),
        ("http://0.0.0.0/".to_owned(), "unspecified"),
        ("not a url".to_owned(), "not a valid URL"),
    ] {
        let detail = api.detect_url(&url).error(400, 1001);
        assert!(detail.contains(says), "{url}: {detail}");
        assert!(detail.contains("image_url"), "{url}: {detail}");
        assert!(!detail.contains("secret"), "{url}: {detail}");
        if !says.contains("not a valid")
            && !says.contains("scheme")
            && !says.contains("credentials")
        {
            assert!(detail.contains("--image-url-allow"), "{url}: {detail}");
        }
    }
    assert!(!img.was_asked_for("/obama.jpg?probe=public-only"));

    // one image, one way
    let photo = facerec_fixtures::photo_bytes("obama.jpg");
    let detail = api
        .multipart(
            "/detect",
            &[
                Part::File("image_file", &photo),
                Part::Text("image_url", &probe),
            ],
        )
        .error(400, 1001);
    assert!(
        detail.contains("give image_file or image_url, not both"),
        "{detail}"
    );
    let detail = api
        .json(
            "/detect",
            json!({ "image_base64": "AAAA", "image_url": probe }),
        )
        .error(400, 1001);
    assert!(
        detail.contains("give image_base64 or image_url, not both"),
        "{detail}"
    );
    let missing = api.json("/detect", json!({})).error(400, 1002);
    assert!(missing.contains("image_url"), "{missing}");
}

/// Off by default: the refusal names the flag that turns it on, and nothing is fetched.
#[test]
fn image_urls_are_off_by_default() {
    let img = images();
    let api = Api::start("off", ImageUrlPolicy::default());
    let url = img.url("/obama.jpg?probe=off");
    let detail = api.detect_url(&url).error(400, 1001);
    assert!(
        detail.contains("does not fetch images from URLs"),
        "{detail}"
    );
    assert!(detail.contains("--allow-image-urls"), "{detail}");
    let detail = api
        .form(
            "/compare",
            &[("image_url_a", url.as_str()), ("image_url_b", url.as_str())],
        )
        .error(400, 1001);
    assert!(detail.contains("image_url_a"), "{detail}");
    assert!(!img.was_asked_for("/obama.jpg?probe=off"));

    // and the OpenAPI document lists the parameters, with the flag
    let doc: Value = serde_json::from_str(facerec_api::openapi_json()).unwrap();
    let form = |path: &str| {
        doc["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
            ["properties"]
            .clone()
    };
    let detect = form("/detect");
    assert!(
        detect["image_url"]["description"]
            .as_str()
            .unwrap()
            .contains("--allow-image-urls"),
        "{detect}"
    );
    for name in ["image_url_a", "image_url_b"] {
        assert!(form("/compare")[name].is_object(), "{name}");
    }
    assert!(form("/search")["image_url"].is_object());
}
