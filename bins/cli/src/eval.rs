//! `facerec eval-lfw`: the standard LFW verification protocol on a pairs file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use facerec::{Embedding, FaceEngine, central_face};
use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde_json::json;

use crate::lfw;

/// Arguments of `eval-lfw`.
#[derive(clap::Args)]
pub struct EvalArgs {
    /// The LFW pairs file (header: FOLDS PAIRS).
    #[arg(long)]
    pairs: PathBuf,
    /// The folder holding `Name/Name_NNNN.jpg`.
    #[arg(long)]
    images: PathBuf,
    /// One JSON object on stdout instead of the report.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write every pair's distance to this file, one tab-separated line per pair
    /// (`fold same distance a b`), to look at the pairs it gets wrong.
    #[arg(long, value_name = "FILE")]
    distances: Option<PathBuf>,
}

/// Mean MTCNN landmarks over LFW's 250x250 images: when no face is found, the image is
/// aligned as if the face sat at its usual place (LFW crops are centred on the face).
const LFW_MEAN_LANDMARKS: [[f32; 2]; 5] = [
    [103.99, 113.84],
    [148.30, 112.92],
    [126.28, 139.13],
    [107.49, 161.87],
    [146.12, 161.24],
];

struct Embedded {
    embedding: Embedding,
    found: bool,
}

pub fn run(engine: &FaceEngine, args: &EvalArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.pairs)
        .with_context(|| format!("reading {}", args.pairs.display()))?;
    let pairs =
        lfw::parse_pairs(&text).with_context(|| format!("parsing {}", args.pairs.display()))?;
    let mut images: Vec<PathBuf> = pairs
        .iter()
        .flat_map(|p| [p.a.clone(), p.b.clone()])
        .collect();
    images.sort();
    images.dedup();
    let folds = pairs.iter().map(|p| p.fold + 1).max().unwrap_or(0);

    let pool = worker_pool(args.threads)?;
    let multiple = AtomicUsize::new(0);
    let started = Instant::now();
    let embedded: Vec<Result<Embedded>> = map_with_progress(&pool, &images, |rel| {
        embed_one(engine, &args.images.join(rel), &multiple)
    });
    let wall = started.elapsed();

    let mut by_path = BTreeMap::new();
    let mut no_face = Vec::new();
    for (rel, result) in images.iter().zip(embedded) {
        let e = result.with_context(|| format!("image {}", rel.display()))?;
        if !e.found {
            no_face.push(rel.display().to_string());
        }
        by_path.insert(rel.clone(), e.embedding);
    }
    let distances: Vec<f32> = pairs
        .iter()
        .map(|p| by_path[&p.a].distance(&by_path[&p.b]))
        .collect();
    if let Some(path) = &args.distances {
        let mut out = String::from("fold\tsame\tdistance\ta\tb\n");
        for (p, d) in pairs.iter().zip(&distances) {
            out.push_str(&format!(
                "{}\t{}\t{d:.6}\t{}\t{}\n",
                p.fold + 1,
                u8::from(p.same),
                p.a.display(),
                p.b.display()
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    let model = engine.model();
    let recommended = model.threshold;
    let s = lfw::score(&pairs, &distances, recommended);
    let per_image_ms = wall.as_secs_f64() * 1e3 / images.len().max(1) as f64;
    let threads = pool.current_num_threads();
    let min_face = engine.detector().config().min_face_size;
    let flip = engine.embedder().config().flip;
    let multiple = multiple.load(Ordering::Relaxed);

    if args.json {
        let out = json!({
            "model": model.id,
            "dims": model.dims(),
            "pairs": pairs.len(),
            "folds": folds,
            "images": images.len(),
            "accuracy_mean": s.accuracy_mean,
            "accuracy_std": s.accuracy_std,
            "fold_accuracy": s.fold_accuracy,
            "fold_threshold": s.fold_threshold,
            "best_threshold": s.best_threshold,
            "best_accuracy": s.best_accuracy,
            "recommended_threshold": recommended,
            "accuracy_at_recommended": s.accuracy_at_recommended,
            "tar_at_far_1e-2": s.tar_at_far_1e2,
            "tar_at_far_1e-3": s.tar_at_far_1e3,
            "mean_distance_same": s.mean_same,
            "mean_distance_different": s.mean_different,
            "no_face": no_face.len(),
            "no_face_images": no_face,
            "no_face_fallback": "aligned with the mean LFW landmarks (a fixed centre crop)",
            "multiple_faces": multiple,
            "flip": flip,
            "min_face": min_face,
            "threads": threads,
            "wall_seconds": wall.as_secs_f64(),
            "ms_per_image": per_image_ms,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "LFW: {} pairs in {folds} folds, {} images (model {}, {}-d, min face {min_face} px, \
         flip {flip})",
        pairs.len(),
        images.len(),
        model.id,
        model.dims()
    );
    let pct = |v: f64| v * 100.0;
    println!(
        "accuracy (threshold per fold from the other folds): {:.2}% ± {:.2}",
        pct(s.accuracy_mean),
        pct(s.accuracy_std)
    );
    for (i, (a, t)) in s.fold_accuracy.iter().zip(&s.fold_threshold).enumerate() {
        println!("  fold {:>2}: {:.2}% at {t:.3}", i + 1, pct(*a));
    }
    println!(
        "best single threshold: {:.3} ({:.2}%)",
        s.best_threshold,
        pct(s.best_accuracy)
    );
    println!(
        "accuracy at the recommended threshold {recommended}: {:.2}%",
        pct(s.accuracy_at_recommended)
    );
    println!(
        "TAR at FAR=1e-2: {:.2}%, at FAR=1e-3: {:.2}%",
        pct(s.tar_at_far_1e2),
        pct(s.tar_at_far_1e3)
    );
    println!(
        "mean distance: same {:.3}, different {:.3}",
        s.mean_same, s.mean_different
    );
    println!(
        "no face found: {} of {} images ({:.2}%), aligned with the mean LFW landmarks instead{}",
        no_face.len(),
        images.len(),
        100.0 * no_face.len() as f64 / images.len().max(1) as f64,
        if no_face.is_empty() {
            String::new()
        } else {
            format!(": {}", no_face.join(", "))
        }
    );
    println!("more than one face: {multiple} images (the largest, most central one was used)");
    println!(
        "time: {:.1} s wall on {threads} threads, {per_image_ms:.1} ms per image",
        wall.as_secs_f64()
    );
    Ok(())
}

/// The worker threads of an evaluation: `threads`, or one per core.
pub(crate) fn worker_pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .context("starting the worker threads")
}

/// `f` on every item of `items` on `pool`, in order, with a progress bar of images on stderr
/// (hidden when stderr is not a terminal).
pub(crate) fn map_with_progress<I: Sync, T: Send>(
    pool: &rayon::ThreadPool,
    items: &[I],
    f: impl Fn(&I) -> T + Sync,
) -> Vec<T> {
    let bar = ProgressBar::new(items.len() as u64).with_style(
        ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let out = pool.install(|| {
        items
            .par_iter()
            .map(|item| {
                let out = f(item);
                bar.inc(1);
                out
            })
            .collect()
    });
    bar.finish_and_clear();
    out
}

/// An image read, decoded and searched for faces, with the face an evaluation embeds.
pub(crate) struct MainFace {
    /// The decoded image.
    pub(crate) image: RgbImage,
    /// Landmarks of the largest, most central face ([`central_face`]), if any was found.
    pub(crate) landmarks: Option<[[f32; 2]; 5]>,
    /// How many faces the detector found.
    pub(crate) faces: usize,
}

impl MainFace {
    /// Reads, decodes (within the command line's limits) and detects `path`.
    pub(crate) fn detect(engine: &FaceEngine, path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let image = facerec::decode_image(&bytes, &crate::cli_limits())?.to_rgb8();
        let detections = engine.detect(&image)?;
        let boxes: Vec<_> = detections.iter().map(|d| d.bbox).collect();
        let landmarks =
            central_face(&boxes, image.width(), image.height()).map(|i| detections[i].landmarks);
        Ok(Self {
            image,
            landmarks,
            faces: detections.len(),
        })
    }

    /// The embedding of the face at `landmarks` (with the engine's flip setting); `path`
    /// names the image in errors.
    pub(crate) fn embed(
        &self,
        engine: &FaceEngine,
        landmarks: &[[f32; 2]; 5],
        path: &Path,
    ) -> Result<Embedding> {
        let embedding = engine.embedder().embed(&self.image, landmarks)?;
        if embedding.is_empty() {
            bail!("empty embedding for {}", path.display());
        }
        Ok(embedding)
    }
}

fn embed_one(engine: &FaceEngine, path: &Path, multiple: &AtomicUsize) -> Result<Embedded> {
    let face = MainFace::detect(engine, path)?;
    if face.faces > 1 {
        multiple.fetch_add(1, Ordering::Relaxed);
    }
    let landmarks = face.landmarks.unwrap_or_else(|| {
        let (w, h) = face.image.dimensions();
        let (sx, sy) = (w as f32 / 250.0, h as f32 / 250.0);
        LFW_MEAN_LANDMARKS.map(|[x, y]| [x * sx, y * sy])
    });
    Ok(Embedded {
        embedding: face.embed(engine, &landmarks, path)?,
        found: face.landmarks.is_some(),
    })
}
