//! What configures the API: plain structs with `Default`, the one place each default is
//! written; only the binary reads flags, and its flags override these.

use std::path::PathBuf;
use std::time::Duration;

use facerec::DecodeLimits;
use facerec_store::TokenCacheConfig;

use crate::ImageUrlPolicy;

/// Bounds on what a request may send. The extractors validate every request against the
/// `Limits` registered as app data by [`app`](crate::app).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Image limits: 2 MiB, 48 to 4096 px a side (the original API's).
    pub decode: DecodeLimits,
    /// Largest text field of a multipart or urlencoded form, in bytes (4 KiB).
    pub max_text_bytes: usize,
    /// Most multipart fields in one request (8).
    pub max_fields: usize,
    /// Room for multipart headers, boundaries and text fields on top of the images (64 KiB):
    /// a request body may be `images x max_base64_bytes() + this` long.
    pub multipart_overhead: usize,
    /// Largest body of an endpoint without images, urlencoded or JSON (16 KiB).
    pub max_form_bytes: usize,
    /// Time allowed for receiving a whole request body (30 s).
    pub body_timeout: Duration,
    /// Whether and where the images of `image_url` parameters are fetched from (off).
    pub image_urls: ImageUrlPolicy,
    /// Largest search threshold (4.0): raw distances of the default model stay below about
    /// 3, so anything above matches every face already.
    pub max_threshold: f32,
    /// Largest `top_k` of a search (10,000).
    pub max_top_k: usize,
    /// Page size of `/faceset` when none is asked for (100).
    pub default_page: usize,
    /// Largest page size of `/faceset` (1,000).
    pub max_page: usize,
    /// Most images in one batch enrolment, `POST /faceset/{set}/faces` (16).
    pub max_batch_images: usize,
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
            image_urls: ImageUrlPolicy::default(),
            max_threshold: 4.0,
            max_top_k: 10_000,
            default_page: 100,
            max_page: 1_000,
            max_batch_images: 16,
        }
    }
}

impl Limits {
    /// Largest body accepted by an endpoint taking `images` uploads.
    pub fn max_body(&self, images: usize) -> usize {
        if images == 0 {
            self.max_form_bytes.max(self.multipart_overhead)
        } else {
            images * self.max_base64_bytes() + self.multipart_overhead
        }
    }

    /// Longest base64 text of one image (`image_base64`): the encoding of `decode.max_bytes`
    /// (4 bytes of text per 3 of image), plus an eighth for line breaks, a `data:` prefix and
    /// the percent-encoding of a urlencoded form. The decoded bytes are held to
    /// `decode.max_bytes` all the same.
    pub fn max_base64_bytes(&self) -> usize {
        let encoded = self.decode.max_bytes.div_ceil(3) * 4;
        encoded + encoded / 8 + 1024
    }
}

/// Everything [`FaceService::open`](crate::FaceService::open) needs besides the models.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiConfig {
    /// Data dir: face sets in `<data_dir>/faces`, crops in `<data_dir>/crops`.
    pub data_dir: PathBuf,
    /// Bounds of the temporary face tokens (and their crops): 100,000 tokens, 72 h; the
    /// oldest go first.
    pub tokens: TokenCacheConfig,
    /// Threads running decode + detect + embed (the number of CPUs).
    pub inference_threads: usize,
    /// Inference jobs allowed to wait for a thread; beyond, requests get 503 (64).
    pub queue: usize,
    /// Request limits.
    pub limits: Limits,
    /// Who may call the API without a key, and how fast keys may call it.
    pub auth: AuthConfig,
}

/// Access without API keys, and the per-key rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// Whether requests without a key are served while no key exists (true: the original
    /// API's behaviour). Once a key exists, every request but `/health` and `/ready` needs
    /// one whatever this says. The server binary sets it to false when it listens on a
    /// non-loopback address without `--allow-anonymous`.
    pub anonymous: bool,
    /// Requests each key may send (token bucket); `None`: no limit. Default 50 per second,
    /// in bursts of up to 100.
    pub rate_limit: Option<RateLimit>,
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: std::num::NonZeroU32,
    /// Most requests at once.
    pub burst: std::num::NonZeroU32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            anonymous: true,
            rate_limit: Some(RateLimit {
                per_second: std::num::NonZeroU32::new(50).unwrap_or(std::num::NonZeroU32::MIN),
                burst: std::num::NonZeroU32::new(100).unwrap_or(std::num::NonZeroU32::MIN),
            }),
        }
    }
}

impl ApiConfig {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tokens: TokenCacheConfig::default(),
            inference_threads: cpus(),
            queue: 64,
            limits: Limits::default(),
            auth: AuthConfig::default(),
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

/// The number of CPUs this process may use (2 if it cannot be told).
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
