//! Prometheus metrics, kept with atomics and written by hand in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// A latency histogram: one counter per bucket (not cumulative), a count and a sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (le, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The stages of a request whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Image bytes to pixels.
    Decode,
    /// Detection and embedding of every face.
    DetectEmbed,
    /// Face store reads and writes (including the flush of a write).
    Store,
    /// Token store reads and writes (token embeddings and crops).
    Tokens,
    /// API key lookups and changes.
    Keys,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Decode,
        Stage::DetectEmbed,
        Stage::Store,
        Stage::Tokens,
        Stage::Keys,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::DetectEmbed => "detect_embed",
            Stage::Store => "store",
            Stage::Tokens => "tokens",
            Stage::Keys => "keys",
        }
    }
}

/// Gauges read from the service when the metrics are rendered.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    pub(crate) face_sets: Vec<(String, usize)>,
    /// Tokens held, when the token store can tell.
    pub(crate) tokens: Option<usize>,
    pub(crate) max_tokens: usize,
    pub(crate) inference_in_flight: usize,
    pub(crate) inference_capacity: usize,
    pub(crate) inference_threads: usize,
}

/// Every counter and histogram of the server.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// Requests by (endpoint, method, status).
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    /// Errors by error code.
    errors: Mutex<BTreeMap<u16, u64>>,
    /// Request latency by endpoint.
    latency: Mutex<BTreeMap<&'static str, Histogram>>,
    stages: [Histogram; Stage::ALL.len()],
    faces_detected: AtomicU64,
    overloaded: AtomicU64,
    tokens_evicted: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            stages: Default::default(),
            faces_detected: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            tokens_evicted: AtomicU64::new(0),
        }
    }

    /// Counts a finished request. `endpoint` is a route pattern or `unmatched`, `method` one of
    /// a fixed set: label values stay bounded whatever clients send.
    pub(crate) fn record_request(
        &self,
        endpoint: &'static str,
        method: &'static str,
        status: u16,
        error_code: Option<u16>,
        elapsed: Duration,
    ) {
        *self
            .requests
            .lock()
            .entry((endpoint, method, status))
            .or_default() += 1;
        if let Some(code) = error_code {
            *self.errors.lock().entry(code).or_default() += 1;
        }
        self.latency
            .lock()
            .entry(endpoint)
            .or_default()
            .observe(elapsed);
    }

    /// Times `f` as `stage`.
    pub(crate) fn time<T>(&self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let out = f();
        self.stages[stage as usize].observe(started.elapsed());
        out
    }

    pub(crate) fn add_faces_detected(&self, n: usize) {
        self.faces_detected.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn add_overloaded(&self) {
        self.overloaded.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_tokens_evicted(&self, n: usize) {
        self.tokens_evicted.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);

        head(
            &mut out,
            "facerec_http_requests_total",
            "counter",
            "HTTP requests by endpoint, method and status.",
        );
        for ((endpoint, method, status), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "facerec_http_requests_total{{endpoint=\"{endpoint}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        head(
            &mut out,
            "facerec_http_errors_total",
            "counter",
            "Error answers by API error code.",
        );
        for (code, n) in self.errors.lock().iter() {
            let _ = writeln!(
                out,
                "facerec_http_errors_total{{error_code=\"{code}\"}} {n}"
            );
        }
        head(
            &mut out,
            "facerec_http_request_duration_seconds",
            "histogram",
            "Time from request head to response, by endpoint.",
        );
        for (endpoint, histogram) in self.latency.lock().iter() {
            histogram.render(
                &mut out,
                "facerec_http_request_duration_seconds",
                &format!("endpoint=\"{endpoint}\""),
            );
        }
        head(
            &mut out,
            "facerec_stage_duration_seconds",
            "histogram",
            "Time spent per stage: decode, detect_embed (all faces of an image), store.",
        );
        for stage in Stage::ALL {
            self.stages[stage as usize].render(
                &mut out,
                "facerec_stage_duration_seconds",
                &format!("stage=\"{}\"", stage.label()),
            );
        }
        head(
            &mut out,
            "facerec_faces_detected_total",
            "counter",
            "Faces found in uploaded images.",
        );
        let _ = writeln!(
            out,
            "facerec_faces_detected_total {}",
            self.faces_detected.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "facerec_inference_rejected_total",
            "counter",
            "Requests refused with 503 because the inference queue was full.",
        );
        let _ = writeln!(
            out,
            "facerec_inference_rejected_total {}",
            self.overloaded.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "facerec_inference_in_flight",
            "gauge",
            "Inference jobs running or queued.",
        );
        let _ = writeln!(
            out,
            "facerec_inference_in_flight {}",
            gauges.inference_in_flight
        );
        head(
            &mut out,
            "facerec_inference_capacity",
            "gauge",
            "Inference jobs allowed to run or wait (threads + queue).",
        );
        let _ = writeln!(
            out,
            "facerec_inference_capacity {}",
            gauges.inference_capacity
        );
        head(
            &mut out,
            "facerec_inference_threads",
            "gauge",
            "Threads running inference.",
        );
        let _ = writeln!(
            out,
            "facerec_inference_threads {}",
            gauges.inference_threads
        );
        head(
            &mut out,
            "facerec_token_cache_tokens",
            "gauge",
            "Face tokens held (expired ones not yet purged included).",
        );
        if let Some(tokens) = gauges.tokens {
            let _ = writeln!(out, "facerec_token_cache_tokens {tokens}");
        }
        head(
            &mut out,
            "facerec_token_cache_capacity",
            "gauge",
            "Most face tokens held.",
        );
        let _ = writeln!(out, "facerec_token_cache_capacity {}", gauges.max_tokens);
        head(
            &mut out,
            "facerec_tokens_evicted_total",
            "counter",
            "Face tokens (and crops) dropped for room or age.",
        );
        let _ = writeln!(
            out,
            "facerec_tokens_evicted_total {}",
            self.tokens_evicted.load(Ordering::Relaxed)
        );
        head(
            &mut out,
            "facerec_face_set_faces",
            "gauge",
            "Faces enrolled per face set.",
        );
        // Face set names are 1-64 characters of A-Z a-z 0-9 _ - (checked by the store), so
        // they need no escaping.
        for (set, n) in &gauges.face_sets {
            let _ = writeln!(out, "facerec_face_set_faces{{face_set=\"{set}\"}} {n}");
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(20));
        h.observe(Duration::from_secs(100));
        let mut out = String::new();
        h.render(&mut out, "x", "stage=\"decode\"");
        assert!(
            out.contains("x_bucket{stage=\"decode\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{stage=\"decode\",le=\"0.025\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{stage=\"decode\",le=\"30\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{stage=\"decode\",le=\"+Inf\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_sum{stage=\"decode\"} 100.0205\n"), "{out}");
        assert!(out.contains("x_count{stage=\"decode\"} 3\n"), "{out}");
    }

    #[test]
    fn rendering_lists_requests_stages_and_gauges() {
        let m = Metrics::new();
        m.record_request("/detect", "POST", 200, None, Duration::from_millis(30));
        m.record_request("/detect", "POST", 413, Some(1004), Duration::from_millis(1));
        m.time(Stage::Decode, || ());
        let text = m.render(&Gauges {
            face_sets: vec![("default".into(), 2)],
            tokens: Some(5),
            ..Gauges::default()
        });
        for line in [
            "facerec_http_requests_total{endpoint=\"/detect\",method=\"POST\",status=\"200\"} 1",
            "facerec_http_requests_total{endpoint=\"/detect\",method=\"POST\",status=\"413\"} 1",
            "facerec_http_errors_total{error_code=\"1004\"} 1",
            "facerec_http_request_duration_seconds_count{endpoint=\"/detect\"} 2",
            "facerec_stage_duration_seconds_count{stage=\"decode\"} 1",
            "facerec_stage_duration_seconds_count{stage=\"store\"} 0",
            "facerec_face_set_faces{face_set=\"default\"} 2",
            "facerec_token_cache_tokens 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }
}
