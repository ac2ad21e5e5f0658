//! What configures the API: plain structs with `Default`; only the binary reads flags.

use std::path::PathBuf;
use std::time::Duration;

use facerec::DecodeLimits;

/// Bounds on what a request may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Image limits: 2 MiB, 48 to 4096 px a side (the original API's).
    pub decode: DecodeLimits,
    /// Largest text field of a multipart or urlencoded form, in bytes (4 KiB).
    pub max_text_bytes: usize,
    /// Most multipart fields in one request (8).
    pub max_fields: usize,
    /// Room for multipart headers, boundaries and text fields on top of the image bytes
    /// (64 KiB): a request body may be `images x decode.max_bytes + this` long.
    pub multipart_overhead: usize,
    /// Largest urlencoded body, and largest body of an endpoint without uploads (16 KiB).
    pub max_form_bytes: usize,
    /// Time allowed for receiving a whole request body (30 s).
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            decode: DecodeLimits::default(),
            max_text_bytes: 4 * 1024,
            max_fields: 8,
            multipart_overhead: 64 * 1024,
            max_form_bytes: 16 * 1024,
            body_timeout: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Largest body accepted by an endpoint taking `images` uploads.
    pub fn max_body(&self, images: usize) -> usize {
        if images == 0 {
            self.max_form_bytes.max(self.multipart_overhead)
        } else {
            images * self.decode.max_bytes + self.multipart_overhead
        }
    }
}

/// Everything [`FaceService::open`](crate::FaceService::open) needs besides the models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// Data dir: face sets in `<data_dir>/faces`, crops in `<data_dir>/crops`.
    pub data_dir: PathBuf,
    /// Most face tokens (and crops) kept; the oldest go first (100,000).
    pub max_tokens: usize,
    /// Age at which a token (and its crop) expires (72 h).
    pub token_ttl: Duration,
    /// Threads running decode + detect + embed (the number of CPUs).
    pub inference_threads: usize,
    /// Inference jobs allowed to wait for a thread; beyond, requests get 503 (64).
    pub queue: usize,
    /// Request limits.
    pub limits: Limits,
}

impl ApiConfig {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_tokens: 100_000,
            token_ttl: Duration::from_secs(72 * 3600),
            inference_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue: 64,
            limits: Limits::default(),
        }
    }

    /// Where the face sets live.
    pub fn faces_dir(&self) -> PathBuf {
        self.data_dir.join("faces")
    }

    /// Where the face crops live.
    pub fn crops_dir(&self) -> PathBuf {
        self.data_dir.join("crops")
    }
}
