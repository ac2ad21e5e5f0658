#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The real `facerec-server` binary under abuse.
//!
//! * **kill -9:** writers add, rename and remove faces from several threads; the server gets
//!   SIGKILL while requests are in flight, then restarts on the same data dir. Every
//!   acknowledged change must be there (an add with its exact name, a remove as an absence),
//!   nothing that was never sent may appear, and the store must open cleanly. The rounds run
//!   on one data dir, so each restart also re-checks every earlier round.
//!   `FACEREC_KILL_ITERATIONS` (default 3) sets the number of rounds, `FACEREC_KILL_SEED`
//!   (default fixed) varies when the kills land.
//! * **flood:** a bounded stream of bad requests from several threads; every answer must be
//!   the documented JSON error, the server must stay up and its memory bounded.
//!
//! Each test starts its own server on `127.0.0.1:0` and reads the bound address from the
//! server's JSON log.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Answer, ServerProcess, env_number, fresh_dir, multipart_file};
use facerec_fixtures::{Rng, form, multipart_type, url_encode as enc};

// ---- kill -9 ------------------------------------------------------------------------------

/// Writer threads per round, each on its own face sets.
const WRITERS: usize = 4;

/// Face sets per writer: every token of a round is a separate record in each of them.
const SETS_PER_WRITER: usize = 8;

/// A face record: `(face set, token)`.
type Key = (String, String);

/// What each record may be after a restart: present with a name, or absent (`None`). One
/// state once acknowledged; two while a change was in flight at the kill.
type Ledger = BTreeMap<Key, Vec<Option<String>>>;

/// What one writer thread did until the kill.
#[derive(Default)]
struct WriterReport {
    ledger: Ledger,
    adds: usize,
    removes: usize,
    in_flight: usize,
    /// Answers that were neither an acknowledgement nor a consequence of the kill.
    unexpected: Vec<String>,
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let dir = fresh_dir("kill9");
    kill_9_rounds(&format!("data dir {}", dir.display()), &|| {
        ServerProcess::start(&dir)
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn acknowledged_writes_survive_kill_9_on_postgres() {
    let Some(db) = facerec_fixtures::postgres::fresh_database("kill9") else {
        return;
    };
    kill_9_rounds(&format!("PostgreSQL database {}", db.name), &|| {
        ServerProcess::start_with(&[OsStr::new("--store"), OsStr::new(&db.url)])
    });
}

/// Rounds of writes cut by SIGKILL, each followed by a restart (`start`) that must find
/// exactly what was acknowledged.
fn kill_9_rounds(store: &str, start: &dyn Fn() -> ServerProcess) {
    let iterations = env_number("FACEREC_KILL_ITERATIONS", 3);
    let seed = env_number("FACEREC_KILL_SEED", 0x5EED_F00D);
    println!(
        "kill -9: {iterations} rounds (FACEREC_KILL_ITERATIONS), seed {seed} \
         (FACEREC_KILL_SEED), {store}"
    );
    let photos = [
        facerec_fixtures::encode_jpeg(&facerec_fixtures::obama_640x480()),
        facerec_fixtures::photo_bytes("biden.jpg"),
        facerec_fixtures::photo_bytes("obama2.jpg"),
        facerec_fixtures::photo_bytes("group-sample1.jpg"),
    ];
    let mut ledger = Ledger::new();
    let started = Instant::now();

    for round in 0..iterations {
        let round_started = Instant::now();
        let mut rng = Rng(seed ^ round.wrapping_mul(0xA076_1D64_78BD_642F));
        let server = start();
        let (faces, sets) = check_store(&server, &mut ledger);

        let tokens = mint_tokens(&server, &photos);
        let ack_target = 20 + rng.below(300) as usize;
        let extra_delay = Duration::from_millis(rng.below(200));
        let acks = AtomicUsize::new(0);
        let killed = AtomicBool::new(false);
        let reports: Vec<WriterReport> = std::thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let (server, tokens, acks, killed) = (&server, &tokens, &acks, &killed);
                    let writer_seed = rng.next_u64();
                    s.spawn(move || {
                        write_until_killed(server, round, w, tokens, writer_seed, acks, killed)
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            while acks.load(Ordering::Relaxed) < ack_target
                && Instant::now() < deadline
                && !writers.iter().all(|h| h.is_finished())
            {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(extra_delay);
            killed.store(true, Ordering::SeqCst);
            server.kill();
            writers.into_iter().map(|h| h.join().unwrap()).collect()
        });

        let unexpected: Vec<&String> = reports.iter().flat_map(|r| &r.unexpected).collect();
        assert!(
            unexpected.is_empty(),
            "round {round}: answers before the kill that were not acknowledgements:\n{unexpected:#?}"
        );
        let (adds, removes, in_flight) = reports.iter().fold((0, 0, 0), |acc, r| {
            (acc.0 + r.adds, acc.1 + r.removes, acc.2 + r.in_flight)
        });
        assert!(
            adds > 0,
            "round {round}: no add was acknowledged before the kill"
        );
        for report in reports {
            ledger.extend(report.ledger);
        }
        println!(
            "round {:>2}/{iterations}: store opened with {faces} faces in {sets} sets, all as \
             acknowledged; {} tokens; SIGKILL {} ms after ack #{}: by then {adds} adds or renames \
             and {removes} removes acknowledged, {in_flight} in flight; {:.1} s",
            round + 1,
            tokens.len(),
            extra_delay.as_millis(),
            ack_target,
            round_started.elapsed().as_secs_f64()
        );
    }

    let server = start();
    let (faces, sets) = check_store(&server, &mut ledger);
    println!(
        "after {iterations} kills: store opened with {faces} faces in {sets} sets, every \
         acknowledged add present with its name and every acknowledged remove absent \
         ({} records tracked; {:.1} s in all)",
        ledger.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Detects faces in each photo: every face is a new token, in memory until the restart.
fn mint_tokens(server: &ServerProcess, photos: &[Vec<u8>]) -> Vec<String> {
    let mut tokens = Vec::new();
    for photo in photos {
        let answer = server
            .post(
                "/detect",
                Some(&multipart_type()),
                &multipart_file("image_file", photo),
            )
            .expect("POST /detect");
        let v = answer.success().unwrap_or_else(|e| panic!("/detect: {e}"));
        tokens.extend(
            v["faces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["face_token"].as_str().unwrap().to_owned()),
        );
    }
    assert!(tokens.len() >= photos.len(), "too few faces: {tokens:?}");
    tokens
}

/// One writer: on its own face sets, adds (or renames) and removes this round's tokens in a
/// seeded random order until a request fails because the server was killed. Every add has a
/// name never used before, so the name found after the restart tells which write landed.
fn write_until_killed(
    server: &ServerProcess,
    round: u64,
    writer: usize,
    tokens: &[String],
    seed: u64,
    acks: &AtomicUsize,
    killed: &AtomicBool,
) -> WriterReport {
    let sets: Vec<String> = (0..SETS_PER_WRITER)
        .map(|s| format!("kill-w{writer}-s{s}"))
        .collect();
    let mut rng = Rng(seed);
    // the state of record `i`: token `i % tokens.len()` in set `i / tokens.len()`
    let mut state: Vec<Option<String>> = vec![None; tokens.len() * sets.len()];
    let mut report = WriterReport::default();
    let deadline = Instant::now() + Duration::from_secs(60);

    for op in 0.. {
        let i = rng.below(state.len() as u64) as usize;
        let token = tokens[i % tokens.len()].as_str();
        let set = &sets[i / tokens.len()];
        let before = state[i].clone();
        let remove = before.is_some() && rng.below(10) < 3;
        let after = if remove {
            None
        } else {
            // now and then a name that is not ASCII
            let accent = if op % 7 == 0 { "-ñ名" } else { "" };
            Some(format!("r{round}-w{writer}-op{op}{accent}"))
        };
        let path = if remove { "/removeface" } else { "/addface" };
        let mut fields = vec![("face_token", token), ("face_set", set.as_str())];
        if let Some(name) = &after {
            fields.push(("face_name", name));
        }
        // both ways of sending parameters: query string and urlencoded body
        let sent = if op % 2 == 0 {
            server.get(&format!("{path}?{}", form(&fields)))
        } else {
            server.post(
                path,
                Some("application/x-www-form-urlencoded"),
                form(&fields).as_bytes(),
            )
        };
        let acknowledged = match &sent {
            Ok(answer) => answer.success().and_then(|v| {
                let expected_name = after.as_ref().or(before.as_ref());
                let echoed = v["face_token"] == token
                    && v["face_set"] == set.as_str()
                    && v["face_name"].as_str() == expected_name.map(String::as_str);
                if echoed {
                    Ok(())
                } else {
                    Err(format!("{path} acknowledged something else: {v}"))
                }
            }),
            Err(e) => Err(format!("{path}: {e}")),
        };
        let key = (set.clone(), token.to_owned());
        match acknowledged {
            Ok(()) => {
                state[i] = after.clone();
                report.ledger.insert(key, vec![after]);
                if remove {
                    report.removes += 1;
                } else {
                    report.adds += 1;
                }
                acks.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                report.ledger.insert(key, vec![before, after]);
                report.in_flight += 1;
                // only the kill may interrupt a request, and only by cutting the connection
                if sent.is_ok() || !killed.load(Ordering::SeqCst) {
                    report.unexpected.push(e);
                }
                break;
            }
        }
        if Instant::now() > deadline {
            report
                .unexpected
                .push("still writing 60 s later: the kill never came".into());
            break;
        }
    }
    report
}

/// Lists every face of every set, checks it against the ledger and the store's own count at
/// open, and narrows each in-flight record to the state found. Returns `(faces, sets)`.
fn check_store(server: &ServerProcess, ledger: &mut Ledger) -> (usize, usize) {
    let stored = list_faces(server);
    let mut problems = Vec::new();
    for (key, allowed) in ledger.iter_mut() {
        let found = stored.get(key).cloned();
        if allowed.contains(&found) {
            *allowed = vec![found];
        } else {
            problems.push(format!(
                "{key:?}: expected one of {allowed:?}, found {found:?}"
            ));
        }
    }
    for (key, name) in &stored {
        if !ledger.contains_key(key) {
            problems.push(format!("{key:?}: never written, found as {name:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} records differ from what was acknowledged:\n{}\nserver log:\n{}",
        problems.len(),
        problems
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        server.log_tail()
    );
    assert_eq!(
        server.opened_faces(),
        stored.len() as u64,
        "the store counted another number of faces at open than it lists"
    );
    let sets: BTreeSet<&String> = stored.keys().map(|(set, _)| set).collect();
    (stored.len(), sets.len())
}

/// Every `(set, token) -> name` the server lists, read with `/facesets` and paged `/faceset`.
fn list_faces(server: &ServerProcess) -> BTreeMap<Key, String> {
    const LIMIT: usize = 1000;
    let v = server.get("/facesets").unwrap().success().unwrap();
    let mut faces = BTreeMap::new();
    for entry in v["face_sets"].as_array().unwrap() {
        let set = entry["face_set"].as_str().unwrap();
        let total = entry["face_num"].as_u64().unwrap() as usize;
        let mut seen = 0;
        loop {
            let page = server
                .get(&format!(
                    "/faceset?face_set={}&offset={seen}&limit={LIMIT}",
                    enc(set)
                ))
                .unwrap()
                .success()
                .unwrap();
            assert_eq!(page["face_num"].as_u64(), Some(total as u64), "{set}");
            let page = page["faces"].as_array().unwrap();
            assert!(page.len() <= LIMIT);
            for face in page {
                let token = face["face_token"].as_str().unwrap().to_owned();
                let name = face["face_name"].as_str().unwrap().to_owned();
                assert!(
                    faces.insert((set.to_owned(), token), name).is_none(),
                    "a face listed twice in {set}"
                );
            }
            seen += page.len();
            if page.is_empty() || seen >= total {
                break;
            }
        }
        assert_eq!(seen, total, "{set}: listed {seen} of {total} faces");
    }
    faces
}

// ---- flood --------------------------------------------------------------------------------

/// Most flood requests, and most time the flood may take.
const FLOOD_REQUESTS: usize = 2000;
const FLOOD_TIME: Duration = Duration::from_secs(30);
const FLOOD_THREADS: usize = 4;

/// The kinds of bad request the flood sends, each with the answers it may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Abuse {
    /// Random bytes as a multipart body.
    NoiseMultipart,
    /// Random bytes with no content type.
    NoiseUntyped,
    /// A multipart body cut in half (its Content-Length matches the cut).
    TruncatedMultipart,
    /// Random bytes as the image.
    NoiseImage,
    /// A PNG whose header claims 100,000 x 100,000 px.
    HugePng,
    /// A GIF.
    Gif,
    /// Parameters that cannot be parsed.
    GarbageQuery,
    /// Random percent-encoded bytes as the whole query string.
    NoiseQuery,
    /// A 10 MB multipart upload (over the body limit).
    TenMegabytes,
    /// A file of 2 MiB + 1 byte in a body under the body limit.
    FileOverLimit,
    /// An unknown route.
    NoRoute,
}

impl Abuse {
    const ALL: [Abuse; 11] = [
        Abuse::NoiseMultipart,
        Abuse::NoiseUntyped,
        Abuse::TruncatedMultipart,
        Abuse::NoiseImage,
        Abuse::HugePng,
        Abuse::Gif,
        Abuse::GarbageQuery,
        Abuse::NoiseQuery,
        Abuse::TenMegabytes,
        Abuse::FileOverLimit,
        Abuse::NoRoute,
    ];

    /// `(status, error_code)` pairs the API documents for this request.
    fn allowed(self) -> &'static [(u16, u64)] {
        match self {
            Abuse::NoiseMultipart | Abuse::NoiseUntyped | Abuse::TruncatedMultipart => {
                &[(400, 1005)]
            }
            Abuse::NoiseImage | Abuse::HugePng | Abuse::Gif => &[(400, 1004)],
            Abuse::GarbageQuery => &[(400, 1001)],
            // unparsable, missing or unknown: whichever the bytes amount to
            Abuse::NoiseQuery => &[(400, 1001), (400, 1002), (404, 1006)],
            Abuse::TenMegabytes | Abuse::FileOverLimit => &[(413, 1004)],
            Abuse::NoRoute => &[(404, 1008)],
        }
    }
}

/// The fixed payloads, built once.
struct Payloads {
    truncated: Vec<u8>,
    huge_png: Vec<u8>,
    gif: Vec<u8>,
    ten_mb: Vec<u8>,
    over_limit: Vec<u8>,
}

impl Payloads {
    fn new() -> Self {
        let jpeg = multipart_file("image_file", &facerec_fixtures::photo_bytes("obama.jpg"));
        let mut huge_png = facerec_fixtures::encode_png(&facerec_fixtures::gradient(64, 64));
        huge_png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge_png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let mut big_file = vec![0u8; 2 * 1024 * 1024 + 1];
        big_file[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]);
        Self {
            truncated: jpeg[..jpeg.len() / 2].to_vec(),
            huge_png: multipart_file("image_file", &huge_png),
            gif: multipart_file("image_file", b"GIF89a\x01\x00\x01\x00\x80\x00\x00"),
            ten_mb: multipart_file("image_file", &vec![0xAB; 10 * 1000 * 1000]),
            over_limit: multipart_file("image_file", &big_file),
        }
    }
}

fn send_abuse(
    server: &ServerProcess,
    abuse: Abuse,
    payloads: &Payloads,
    rng: &mut Rng,
) -> Result<Answer, ureq::Error> {
    let multipart = multipart_type();
    let multipart = Some(multipart.as_str());
    match abuse {
        Abuse::NoiseMultipart => {
            let len = 1 + rng.below(100_000) as usize;
            server.post("/detect", multipart, &rng.bytes(len))
        }
        Abuse::NoiseUntyped => {
            let len = 1 + rng.below(100_000) as usize;
            let path = ["/detect", "/search", "/compare"][rng.below(3) as usize];
            server.post(path, None, &rng.bytes(len))
        }
        Abuse::TruncatedMultipart => server.post("/detect", multipart, &payloads.truncated),
        Abuse::NoiseImage => {
            let len = 1 + rng.below(200_000) as usize;
            server.post(
                "/detect",
                multipart,
                &multipart_file("image_file", &rng.bytes(len)),
            )
        }
        Abuse::HugePng => server.post("/detect", multipart, &payloads.huge_png),
        Abuse::Gif => server.post("/detect", multipart, &payloads.gif),
        Abuse::GarbageQuery => {
            let junk = enc(&String::from_utf8_lossy(&rng.bytes(40)));
            let query = match rng.below(6) {
                0 => format!("/search?face_token={junk}&threshold=abc"),
                1 => format!("/search?face_token={junk}&threshold=NaN&top_k=3"),
                2 => format!("/search?face_token={junk}&threshold=0.6&top_k=-{junk}"),
                3 => format!("/addface?face_token={junk}&face_set=..%2F..%2Fetc"),
                4 => format!("/faceset?limit=0&offset={junk}"),
                _ => format!("/removeface?face_token={junk}&face_set={}", "s".repeat(65)),
            };
            server.get(&query)
        }
        Abuse::NoiseQuery => {
            let path = ["/addface", "/removeface", "/search", "/compare"][rng.below(4) as usize];
            let len = 1 + rng.below(300) as usize;
            let bytes = rng.bytes(len);
            let query: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            server.get(&format!("{path}?{query}"))
        }
        Abuse::TenMegabytes => server.post("/detect", multipart, &payloads.ten_mb),
        Abuse::FileOverLimit => server.post("/detect", multipart, &payloads.over_limit),
        Abuse::NoRoute => {
            let junk: String = rng
                .bytes(20)
                .iter()
                .map(|b| (b'a' + b % 26) as char)
                .collect();
            server.get(&format!("/{junk}?x=%00%FF"))
        }
    }
}

/// Checks the one documented error shape; returns the problem when it is not that.
fn check_error(abuse: Abuse, answer: &Answer) -> Result<(), String> {
    let v = answer.json().ok_or_else(|| {
        format!(
            "{abuse:?}: status {}, not JSON: {}",
            answer.status,
            answer.text()
        )
    })?;
    let code = v["error_code"].as_u64().unwrap_or(0);
    let name = match code {
        1001 => "BAD_ARGUMENTS",
        1002 => "MISSING_ARGUMENTS",
        1004 => "FILE_ERROR",
        1005 => "UPLOAD_ERROR",
        1006 => "FACE_TOKEN_ERROR",
        1008 => "NOT_FOUND",
        _ => "",
    };
    let well_formed = v["sucess"] == false
        && v["success"] == false
        && v["error_message"] == name
        && v["detail"].as_str().is_some_and(|d| !d.is_empty());
    if well_formed && abuse.allowed().contains(&(answer.status, code)) {
        Ok(())
    } else {
        Err(format!(
            "{abuse:?}: expected one of {:?}, got status {}: {v}",
            abuse.allowed(),
            answer.status
        ))
    }
}

#[test]
fn a_flood_of_bad_requests_gets_json_errors_in_bounded_memory() {
    let dir = fresh_dir("flood");
    let server = ServerProcess::start(&dir);
    let (baseline_rss, baseline_hwm) = server.memory_kib();
    let payloads = Payloads::new();
    let sent = AtomicUsize::new(0);
    let counts = Mutex::new(BTreeMap::<Abuse, usize>::new());
    let problems = Mutex::new(Vec::<String>::new());
    let started = Instant::now();

    std::thread::scope(|s| {
        for thread in 0..FLOOD_THREADS {
            let (server, payloads, sent, counts, problems) =
                (&server, &payloads, &sent, &counts, &problems);
            s.spawn(move || {
                let mut rng = Rng(0xF100D ^ thread as u64);
                while started.elapsed() < FLOOD_TIME {
                    let n = sent.fetch_add(1, Ordering::Relaxed);
                    if n >= FLOOD_REQUESTS {
                        break;
                    }
                    let abuse = Abuse::ALL[n % Abuse::ALL.len()];
                    let checked = match send_abuse(server, abuse, payloads, &mut rng) {
                        Ok(answer) => check_error(abuse, &answer),
                        Err(e) => Err(format!("{abuse:?}: no answer: {e}")),
                    };
                    *counts.lock().unwrap().entry(abuse).or_default() += 1;
                    if let Err(problem) = checked {
                        problems.lock().unwrap().push(problem);
                    }
                }
            });
        }
    });

    let elapsed = started.elapsed();
    let (rss, hwm) = server.memory_kib();
    let total: usize = counts.lock().unwrap().values().sum();
    println!(
        "flood: {total} bad requests from {FLOOD_THREADS} threads in {:.1} s: {:?}",
        elapsed.as_secs_f64(),
        counts.lock().unwrap()
    );
    println!(
        "flood: server RSS {:.1} MB before, {:.1} MB after (peak {:.1} MB; peak before {:.1} MB)",
        baseline_rss as f64 / 1024.0,
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        baseline_hwm as f64 / 1024.0
    );
    let problems = problems.into_inner().unwrap();
    assert!(
        problems.is_empty(),
        "{} of {total} answers were not the documented error:\n{}",
        problems.len(),
        problems
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(total >= 500, "only {total} requests in {elapsed:?}");

    server
        .get("/health")
        .expect("GET /health after the flood")
        .success()
        .expect("healthy after the flood");
    let photo = facerec_fixtures::encode_jpeg(&facerec_fixtures::obama_640x480());
    let tokens = mint_tokens(&server, &[photo]);
    assert!(!tokens.is_empty());
    let bound = 2 * baseline_rss + 100 * 1024;
    assert!(
        rss < bound,
        "RSS after the flood {rss} KiB is over 2 x {baseline_rss} KiB + 100 MiB"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// obama.jpg at twice its size with a little noise: a 1820x2274 "phone photo" over 2 MiB.
fn large_photo() -> Vec<u8> {
    let photo = image::load_from_memory(&facerec_fixtures::photo_bytes("obama.jpg"))
        .unwrap()
        .to_rgb8();
    let (w, h) = photo.dimensions();
    let mut large = image::imageops::resize(&photo, w * 2, h * 2, image::imageops::Triangle);
    let mut rng = Rng(0x9407);
    for pixel in large.pixels_mut() {
        for c in &mut pixel.0 {
            *c = c.saturating_add((rng.below(24)) as u8).saturating_sub(12);
        }
    }
    let jpeg = facerec_fixtures::encode_jpeg(&large);
    assert!(
        jpeg.len() > 2 << 20,
        "the photo is only {} bytes",
        jpeg.len()
    );
    jpeg
}

#[test]
fn image_limits_are_the_operators_to_raise_or_lower() {
    let photo = large_photo();
    let (content_type, body) = (multipart_type(), multipart_file("image_file", &photo));
    let detect = |server: &ServerProcess| {
        server
            .post("/detect", Some(&content_type), &body)
            .expect("an answer")
    };

    // The original API's 2 MiB: refused whole, in the one error shape.
    let dir = fresh_dir("limits-default");
    let server = ServerProcess::start(&dir);
    let answer = detect(&server);
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert_eq!(answer.json().unwrap()["error_code"], 1004);
    drop(server);

    // Raised for phone photos: the same upload is served, its face found.
    let dir = fresh_dir("limits-raised");
    let server = ServerProcess::start_with(&[
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--max-image-bytes"),
        OsStr::new("5MB"),
    ]);
    let found = detect(&server).success().unwrap();
    assert!(found["face_num"].as_u64().unwrap() >= 1, "{found}");
    let top = found["faces"][0]["top_left"][0].as_f64().unwrap();
    // obama.jpg's face starts at x 376.7: twice that here
    assert!((top - 753.5).abs() < 12.0, "{found}");
    drop(server);

    // A side limit below the photo's 2274 px: refused with the size in words.
    let dir = fresh_dir("limits-side");
    let server = ServerProcess::start_with(&[
        OsStr::new("--data-dir"),
        dir.as_os_str(),
        OsStr::new("--max-image-bytes"),
        OsStr::new("5MB"),
        OsStr::new("--max-image-side"),
        OsStr::new("2000"),
    ]);
    let answer = detect(&server);
    assert_eq!(answer.status, 400, "{}", answer.text());
    let error = answer.json().unwrap();
    assert_eq!(error["error_code"], 1004);
    assert!(
        error["detail"].as_str().unwrap().contains("2000"),
        "{error}"
    );
}
