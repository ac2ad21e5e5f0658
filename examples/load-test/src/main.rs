//! A load generator for `facerec-server`: `--clients` threads POST one photo to `/detect`
//! (or, with `--endpoint search`, search for its largest face with `/search`; with
//! `--endpoint addface`, enrol the photo's face with `/addface`) back to back for `--seconds`,
//! then it reports throughput, latency percentiles (p50, p90, p99, max), answers by status
//! and, with `--pid`, the server's CPU time per answer and its memory before, during and after
//! the run.
//!
//! ```sh
//! cargo build --release -p facerec-server -p load-test
//! target/release/load-test --image crates/fixtures/photos/obama.jpg --make-640x480 /tmp/obama-640x480.jpg
//! target/release/facerec-server --data-dir /tmp/facerec-load &
//! target/release/load-test --url http://127.0.0.1:5000 --image /tmp/obama-640x480.jpg \
//!     --clients 8 --seconds 30 --pid $!
//! ```

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};

/// Load generator for facerec-server: concurrent POST /detect of one photo.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,

    /// The photo to upload (JPEG or PNG); with --make-640x480, the photo to convert.
    #[arg(long)]
    image: PathBuf,

    /// Concurrent clients, each on its own connection, each sending its next request as
    /// soon as the previous answer is read.
    #[arg(long, default_value_t = 8)]
    clients: usize,

    /// How long the clients send; requests under way at the end are finished.
    #[arg(long, default_value_t = 30)]
    seconds: u64,

    /// Process id of the server: its VmRSS and VmHWM (from /proc/PID/status) are sampled
    /// every second.
    #[arg(long)]
    pid: Option<u32>,

    /// What each request does: `detect` POSTs the photo to /detect; `addface` detects it
    /// once, then enrols its largest face with GET /addface into 50 face sets in turn (new
    /// faces first, then renames), so every request is a durable write.
    #[arg(long, value_enum, default_value_t = Endpoint::Detect)]
    endpoint: Endpoint,

    /// Instead of a load test: crop --image to 4:3 (full width, upper third kept, where faces
    /// sit in portraits), resize it to 640x480, write it here as a JPEG (quality 92), and exit.
    #[arg(long, value_name = "OUT.jpg")]
    make_640x480: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Endpoint {
    /// POST /detect with the photo.
    Detect,
    /// GET /addface with the token of the photo's largest face.
    Addface,
    /// POST /search with the photo (its largest face searched for, threshold 0.6).
    Search,
}

/// Multipart boundary of the upload.
const BOUNDARY: &str = "facerec-load-test-boundary-1f8Xq2";

/// Longest a single request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(out) = &args.make_640x480 {
        return make_640x480(&args.image, out);
    }
    if args.clients == 0 || args.seconds == 0 {
        bail!("--clients and --seconds must be at least 1");
    }
    let photo = std::fs::read(&args.image)
        .with_context(|| format!("reading --image {}", args.image.display()))?;
    let (width, height) = image::ImageReader::new(Cursor::new(&photo))
        .with_guessed_format()
        .context("reading the image header")?
        .into_dimensions()
        .with_context(|| format!("{} is not a JPEG or PNG", args.image.display()))?;
    let body = multipart(&photo, &[]);
    let search_body = multipart(&photo, &[("threshold", "0.6")]);
    let base = args.url.trim_end_matches('/');
    let detect_url = format!("{base}/detect");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let request: Box<Request> = match args.endpoint {
        Endpoint::Detect => Box::new(move |agent: &ureq::Agent, _client, _i| {
            agent
                .post(&detect_url)
                .header("Content-Type", &content_type)
                .send(&body)
        }),
        Endpoint::Search => {
            let search_url = format!("{base}/search");
            let content_type = content_type.clone();
            Box::new(move |agent: &ureq::Agent, _client, _i| {
                agent
                    .post(&search_url)
                    .header("Content-Type", &content_type)
                    .send(&search_body)
            })
        }
        Endpoint::Addface => {
            let token = largest_face_token(&detect_url, &content_type, &body)?;
            let add_url = format!("{base}/addface?face_token={token}");
            Box::new(move |agent: &ureq::Agent, client, i| {
                agent
                    .get(format!(
                        "{add_url}&face_set=load-{}&face_name=c{client}-{i}",
                        i % 50
                    ))
                    .call()
            })
        }
    };
    println!(
        "load-test: {:?} on {base}, {} clients, {} s, {} ({width}x{height}, {:.1} KB)",
        args.endpoint,
        args.clients,
        args.seconds,
        args.image.display(),
        photo.len() as f64 / 1000.0
    );

    let before = args.pid.map(memory).transpose()?;
    let cpu_before = args.pid.map(cpu_seconds).transpose()?;
    let mut run = run(&args, &*request)?;
    let cpu_after = args.pid.map(cpu_seconds).transpose()?;
    run.cpu = cpu_before.zip(cpu_after).map(|(a, b)| b - a);
    // let the server settle (in-flight work, freed buffers) before the last sample
    std::thread::sleep(Duration::from_secs(1));
    let after = args.pid.map(memory).transpose()?;
    report(&run, before, after);
    Ok(())
}

/// One request of client `client`, its `i`-th.
type Request = dyn Fn(&ureq::Agent, usize, u64) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>
    + Sync;

/// POSTs the photo to /detect once; the token of its largest face.
fn largest_face_token(url: &str, content_type: &str, body: &[u8]) -> Result<String> {
    let mut res = ureq::post(url)
        .header("Content-Type", content_type)
        .send(body)
        .with_context(|| format!("POST {url}"))?;
    let v: serde_json::Value = serde_json::from_slice(&res.body_mut().read_to_vec()?)?;
    let area = |f: &serde_json::Value| -> f64 {
        let (tl, br) = (&f["top_left"], &f["bottom_right"]);
        (br[0].as_f64().unwrap_or(0.0) - tl[0].as_f64().unwrap_or(0.0))
            * (br[1].as_f64().unwrap_or(0.0) - tl[1].as_f64().unwrap_or(0.0))
    };
    v["faces"]
        .as_array()
        .and_then(|faces| faces.iter().max_by(|a, b| area(a).total_cmp(&area(b))))
        .and_then(|f| f["face_token"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no face in the photo: {v}"))
}

/// What one client saw.
#[derive(Debug, Default)]
struct ClientLog {
    /// Latency of every 200 answer.
    latencies: Vec<Duration>,
    /// Answers that were not 200, by status and error code, or transport errors by kind.
    errors: BTreeMap<String, u64>,
    /// 200 answers by `face_num`.
    faces: BTreeMap<u64, u64>,
}

/// Everything the run measured.
#[derive(Debug, Default)]
struct Run {
    clients: ClientLog,
    elapsed: Duration,
    /// `(VmRSS, VmHWM)` in KiB, one sample a second.
    samples: Vec<(u64, u64)>,
    /// CPU seconds the server spent (user + system, all threads) while the clients ran.
    cpu: Option<f64>,
}

/// Runs the clients until `--seconds` have passed, sampling the server every second.
fn run(args: &Args, request: &Request) -> Result<Run> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let answered = AtomicU64::new(0);
    let done = AtomicBool::new(false);

    std::thread::scope(|s| -> Result<Run> {
        let clients: Vec<_> = (0..args.clients)
            .map(|c| {
                let answered = &answered;
                s.spawn(move || client(c, request, deadline, answered))
            })
            .collect();
        let sampler = s.spawn(|| sample(args.pid, started, &answered, &done));

        let mut run = Run::default();
        for client in clients {
            let log = client
                .join()
                .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
            run.clients.latencies.extend(log.latencies);
            merge(&mut run.clients.errors, log.errors);
            merge(&mut run.clients.faces, log.faces);
        }
        run.elapsed = started.elapsed();
        done.store(true, Ordering::Relaxed);
        run.samples = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler thread panicked"))??;
        Ok(run)
    })
}

/// One client: its own connection, one request at a time until the deadline.
fn client(id: usize, request: &Request, deadline: Instant, answered: &AtomicU64) -> ClientLog {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into();
    let mut log = ClientLog::default();
    for i in 0.. {
        if Instant::now() >= deadline {
            break;
        }
        let sent = Instant::now();
        let answer = request(&agent, id, i).and_then(|mut res| {
            let status = res.status().as_u16();
            let bytes = res.body_mut().read_to_vec()?;
            Ok((status, bytes))
        });
        let latency = sent.elapsed();
        answered.fetch_add(1, Ordering::Relaxed);
        match answer {
            Ok((200, bytes)) => {
                log.latencies.push(latency);
                // /detect answers count faces; /addface answers name the face
                let v = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
                match v
                    .as_ref()
                    .map(|v| (v["face_num"].as_u64(), v["success"].as_bool()))
                {
                    Some((Some(n), _)) => *log.faces.entry(n).or_default() += 1,
                    Some((None, Some(true))) => {}
                    _ => *log.errors.entry("200 without success".into()).or_default() += 1,
                }
            }
            Ok((status, bytes)) => {
                let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error_code"].as_u64())
                    .map_or_else(String::new, |c| format!(" (error {c})"));
                *log.errors.entry(format!("{status}{code}")).or_default() += 1;
            }
            Err(e) => {
                *log.errors.entry(format!("transport: {e}")).or_default() += 1;
                // a refused connection would otherwise spin
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    log
}

/// Prints a progress line every second; returns the server memory samples.
fn sample(
    pid: Option<u32>,
    started: Instant,
    answered: &AtomicU64,
    done: &AtomicBool,
) -> Result<Vec<(u64, u64)>> {
    let mut samples = Vec::new();
    let mut next = started + Duration::from_secs(1);
    let mut last_count = 0;
    while !done.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        let count = answered.load(Ordering::Relaxed);
        let mut line = format!(
            "{:>5.0} s: {count:>6} answers, {:>5} in the last second",
            started.elapsed().as_secs_f64(),
            count - last_count
        );
        last_count = count;
        if let Some(pid) = pid {
            let (rss, hwm) = memory(pid)?;
            samples.push((rss, hwm));
            line.push_str(&format!(", server RSS {}", mb(rss)));
        }
        println!("{line}");
    }
    Ok(samples)
}

fn report(run: &Run, before: Option<(u64, u64)>, after: Option<(u64, u64)>) {
    let mut latencies = run.clients.latencies.clone();
    latencies.sort_unstable();
    let ok = latencies.len() as u64;
    let errors: u64 = run.clients.errors.values().sum();
    let seconds = run.elapsed.as_secs_f64();
    println!();
    println!(
        "requests     {} ({ok} ok, {errors} errors) in {seconds:.1} s",
        ok + errors
    );
    println!("throughput   {:.1} req/s (ok answers)", ok as f64 / seconds);
    if latencies.is_empty() {
        println!("latency      no successful answer");
    } else {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "latency      p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms, mean {:.0} ms",
            ms(percentile(&latencies, 50.0)),
            ms(percentile(&latencies, 90.0)),
            ms(percentile(&latencies, 99.0)),
            ms(latencies[latencies.len() - 1]),
            ms(latencies.iter().sum::<Duration>()) / latencies.len() as f64
        );
    }
    if let Some(cpu) = run.cpu {
        println!(
            "server CPU   {cpu:.1} s, {:.1} ms per answer ({:.2} cores busy on average)",
            cpu * 1000.0 / (ok + errors).max(1) as f64,
            cpu / seconds
        );
    }
    println!("faces        {}", tally(&run.clients.faces, " face(s)"));
    println!("errors       {}", tally(&run.clients.errors, ""));
    if let (Some((rss0, hwm0)), Some((rss1, hwm1))) = (before, after) {
        let max = run.samples.iter().map(|s| s.0).max().unwrap_or(rss0);
        let last = run.samples.last().map_or(rss0, |s| s.0);
        println!(
            "server RSS   before {} (VmHWM {}); during: max {}, last {}; after {} (VmHWM {})",
            mb(rss0),
            mb(hwm0),
            mb(max),
            mb(last),
            mb(rss1),
            mb(hwm1)
        );
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn merge<K: Ord>(into: &mut BTreeMap<K, u64>, from: BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k).or_default() += v;
    }
}

/// `key{unit} x count, ...`, or `none`.
fn tally<K: std::fmt::Display>(counts: &BTreeMap<K, u64>, unit: &str) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    let parts: Vec<String> = counts
        .iter()
        .map(|(key, count)| format!("{key}{unit} x {count}"))
        .collect();
    parts.join(", ")
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 * 1024.0 / 1e6)
}

/// `(VmRSS, VmHWM)` of a process in KiB, from `/proc/PID/status` (Linux).
fn memory(pid: u32) -> Result<(u64, u64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}: is the server (--pid {pid}) running?"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU seconds of a process, all its threads, from `/proc/PID/stat` (Linux;
/// clock ticks of 1/100 s, as on every Linux build this runs on).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {path}: is the server (--pid {pid}) running?"))?;
    // the command name (field 2) may hold spaces: count fields after its closing parenthesis
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("unexpected {path}: {stat}"))
    };
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// The photo as the `image_file` field of a multipart body, after the text `fields`.
fn multipart(photo: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image_file\"; \
             filename=\"photo.jpg\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(photo);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Crops `input` to 4:3 and resizes it to 640x480; for `obama.jpg` the result is byte for
/// byte the `facerec_fixtures::obama_640x480()` JPEG of the benches.
fn make_640x480(input: &Path, out: &Path) -> Result<()> {
    let img = image::open(input)
        .with_context(|| format!("decoding {}", input.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    // the largest 4:3 window: full width of a portrait, full height of a panorama
    let (crop_w, crop_h) = if u64::from(w) * 3 <= u64::from(h) * 4 {
        (w, w * 3 / 4)
    } else {
        (h * 4 / 3, h)
    };
    let (left, top) = ((w - crop_w) / 2, (h - crop_h) / 3);
    let cropped = image::imageops::crop_imm(&img, left, top, crop_w, crop_h).to_image();
    let resized =
        image::imageops::resize(&cropped, 640, 480, image::imageops::FilterType::Triangle);
    let mut jpeg = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92);
    resized
        .write_with_encoder(encoder)
        .context("encoding the JPEG")?;
    std::fs::write(out, &jpeg).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} (640x480 from {w}x{h}, crop {crop_w}x{crop_h} at {left},{top}; {:.1} KB)",
        out.display(),
        jpeg.len() as f64 / 1000.0
    );
    Ok(())
}
