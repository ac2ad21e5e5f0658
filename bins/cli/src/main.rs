//! `facerec`: detect faces, compare two photos, enrol a folder of photos in a face set, and
//! evaluate on LFW (verification and open-set identification) from the command line.

mod draw;
mod enroll;
mod eval;
mod ident;
mod lfw;
mod timings;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use facerec::{DecodeLimits, EngineConfig, Face, FaceEngine, ModelSpec, decode_image};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "facerec",
    version,
    about = "Face detection, comparison, enrolment and LFW evaluation"
)]
struct Cli {
    /// Folder holding pnet/rnet/onet.onnx and the embedding model.
    #[arg(
        long,
        global = true,
        env = "FACEREC_MODELS_DIR",
        default_value = "models"
    )]
    models: PathBuf,
    /// Smallest face to look for, in pixels.
    #[arg(long, global = true, default_value_t = 30.0)]
    min_face: f32,
    /// Mirror-flip test-time augmentation (averages the embeddings of a chip and its mirror).
    #[arg(long, global = true)]
    flip: bool,
    /// Run the embedding model's convolutions in 8-bit integers (needs an x86-64 CPU with AVX2
    /// or AVX-512 VNNI; about 1.4x (AVX2) to 1.8x (VNNI) faster per face; LFW accuracy within
    /// 0.3 points).
    #[arg(long, global = true, env = "FACEREC_INT8")]
    int8: bool,
    /// The embedding model: dlib (128-d), mobilefacenet (192-d) or dlib+mobilefacenet (both,
    /// fused). A data dir keeps the model that made it.
    #[arg(
        long,
        global = true,
        env = "FACEREC_MODEL",
        value_name = "NAME",
        default_value = "dlib"
    )]
    model: ModelSpec,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find every face: box, score, five landmarks.
    Detect {
        /// A JPEG or PNG photo.
        image: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also write the photo with boxes and landmarks drawn to this PNG/JPEG file.
        #[arg(long, value_name = "OUT")]
        draw: Option<PathBuf>,
        /// Also print where the time goes: resize, P-Net and NMS per pyramid level, R-Net,
        /// O-Net and embedding, each the mean of --runs warm runs.
        #[arg(long)]
        timings: bool,
        /// How many runs --timings averages (after one warm-up run).
        #[arg(long, default_value_t = 10, value_name = "N")]
        runs: usize,
    },
    /// Distance between the largest faces of two photos, and the verdict at the model's
    /// recommended threshold.
    Compare {
        /// First photo.
        image_a: PathBuf,
        /// Second photo.
        image_b: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Enrol a folder of photos, DIR/<name>/*.jpg, in a face set: through a server
    /// (--server) or straight into a data dir (--data-dir); resumable (--resume).
    Enroll(enroll::EnrollArgs),
    /// The standard LFW verification protocol (threshold per fold chosen on the other folds).
    EvalLfw(eval::EvalArgs),
    /// Open-set 1:N identification on DIR/<identity>/*.jpg: rank-1, FNIR at FPIR 1% and 0.1%.
    ///
    /// One gallery image per identity with two or more; their other images are the mated
    /// probes, the single-image identities the unknowns (non-mated probes).
    EvalIdent(ident::IdentArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut config = EngineConfig::default();
    config.detector.min_face_size = cli.min_face;
    config.embedder.flip = cli.flip;
    config.embedder.int8 = cli.int8;
    config.model = cli.model;
    let models = cli.models;
    let load = move || {
        FaceEngine::with_config(&models, config)
            .with_context(|| format!("loading models from {}", models.display()))
    };
    match cli.command {
        Command::Detect {
            image,
            json,
            draw,
            timings,
            runs,
        } => detect(
            &load()?,
            &image,
            json,
            draw.as_deref(),
            timings.then_some(runs),
        ),
        Command::Compare {
            image_a,
            image_b,
            json,
        } => compare(&load()?, &image_a, &image_b, json),
        // enrolling through a server loads no models
        Command::Enroll(args) => enroll::run(&args, load),
        Command::EvalLfw(args) => eval::run(&load()?, &args),
        // the folder is checked before the models load
        Command::EvalIdent(args) => ident::run(&args, load),
    }
}

/// Command-line inputs may be larger than the HTTP limits; the detector's own bound applies.
fn cli_limits() -> DecodeLimits {
    DecodeLimits {
        max_bytes: 256 * 1024 * 1024,
        min_side: 1,
        max_side: 4096,
    }
}

fn load(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_image(&bytes, &cli_limits()).with_context(|| format!("decoding {}", path.display()))
}

fn face_json(f: &Face) -> serde_json::Value {
    json!({
        "top_left": [f.bbox.x1, f.bbox.y1],
        "bottom_right": [f.bbox.x2, f.bbox.y2],
        "score": f.score,
        "landmarks": f.landmarks,
    })
}

/// `facerec detect`; `timings` is the number of runs `--timings` averages, if given.
fn detect(
    engine: &FaceEngine,
    path: &Path,
    json: bool,
    draw: Option<&Path>,
    timings: Option<usize>,
) -> Result<()> {
    let image = load(path)?;
    let started = std::time::Instant::now();
    let faces = engine.analyze(&image)?;
    let elapsed = started.elapsed();
    let report = match timings {
        Some(runs) => Some(timings::measure(engine, &image.to_rgb8(), runs)?),
        None => None,
    };
    if json {
        let out = json!({
            "image": path,
            "width": image.width(),
            "height": image.height(),
            "face_num": faces.len(),
            "faces": faces.iter().map(face_json).collect::<Vec<_>>(),
            "millis": elapsed.as_secs_f64() * 1e3,
            "timings": report.as_ref().map(timings::Report::json),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: {}x{}, {} face(s) in {:.1} ms",
            path.display(),
            image.width(),
            image.height(),
            faces.len(),
            elapsed.as_secs_f64() * 1e3
        );
        for (i, f) in faces.iter().enumerate() {
            let marks: Vec<String> = f
                .landmarks
                .iter()
                .map(|p| format!("({:.0},{:.0})", p[0], p[1]))
                .collect();
            println!(
                "  #{i}: box ({:.0},{:.0})-({:.0},{:.0}) score {:.3} landmarks {}",
                f.bbox.x1,
                f.bbox.y1,
                f.bbox.x2,
                f.bbox.y2,
                f.score,
                marks.join(" ")
            );
        }
        if let Some(report) = &report {
            report.print();
        }
    }
    if let Some(out) = draw {
        let drawn = draw::faces(&image.to_rgb8(), &faces);
        drawn
            .save(out)
            .with_context(|| format!("writing {}", out.display()))?;
        if !json {
            println!("drawn: {}", out.display());
        }
    }
    Ok(())
}

fn main_face(engine: &FaceEngine, path: &Path) -> Result<Face> {
    match engine.analyze_largest(&load(path)?, None)? {
        Some((face, _)) => Ok(face),
        None => bail!("no face found in {}", path.display()),
    }
}

fn compare(engine: &FaceEngine, a: &Path, b: &Path, json: bool) -> Result<()> {
    let (fa, fb) = (main_face(engine, a)?, main_face(engine, b)?);
    let distance = fa.embedding.distance(&fb.embedding);
    let threshold = engine.model().threshold;
    let same = distance < threshold;
    if json {
        let out = json!({
            "image_a": a, "image_b": b,
            "face_a": face_json(&fa), "face_b": face_json(&fb),
            "distance": distance, "threshold": threshold, "same_person": same,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verdict = if same {
            "same person"
        } else {
            "different people"
        };
        println!("distance {distance:.4} (threshold {threshold}): {verdict}");
    }
    Ok(())
}
