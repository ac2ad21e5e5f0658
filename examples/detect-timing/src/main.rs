//! Wall-clock timing of `Detector::detect` on a few representative image sizes.
//!
//! ```text
//! cargo run --release -p detect-timing [-- RUNS [EXTRA_IMAGE...]]
//! ```
//!
//! Images: a 640x480 centre crop (4:3) of `obama.jpg`, a 640x480 crop of its top part
//! (which contains the face), `group-sample1.jpg` (1920x1280) and any extra images
//! given (e.g. a 250x250 LFW photo). Each is detected a few times to warm the plan
//! cache, then `RUNS` times (default 30) on the global rayon pool (all cores) and on a
//! one-thread pool; the median, min and max wall-clock times are printed with the
//! process CPU time per run (which, unlike wall-clock time, other processes competing
//! for the cores hardly affect), plus the first (cold-cache) call on a fresh detector. With
//! `RUST_LOG=facerec_detect=debug` the per-stage timings and counts are logged too.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use facerec_detect::{Detector, DetectorConfig};
use image::RgbImage;
use image::imageops::{FilterType, crop_imm, resize};

/// Median, min and max of `times`, in milliseconds.
fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    format!(
        "median {:7.2} ms  min {:7.2}  max {:7.2}",
        ms(times.get(times.len() / 2)),
        ms(times.first()),
        ms(times.last())
    )
}

/// CPU time (user + system) used by this process so far, in ms (Linux only; 0 elsewhere).
fn cpu_ms() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime, in clock ticks of (almost always) 10 ms.
    (ticks(11) + ticks(12)) * 10.0
}

/// Detects `img` three times to warm the plan cache, then `runs` times: the wall-clock times,
/// the number of faces and the process CPU time per run.
fn time(detector: &Detector, img: &RgbImage, runs: usize) -> Result<(Vec<Duration>, usize, f64)> {
    let mut faces = 0;
    for _ in 0..3 {
        faces = detector.detect(img)?.len();
    }
    let cpu = cpu_ms();
    let times = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(detector.detect(img)?);
            Ok(start.elapsed())
        })
        .collect::<Result<_>>()?;
    Ok((times, faces, (cpu_ms() - cpu) / runs as f64))
}

fn open(path: &std::path::Path) -> Result<RgbImage> {
    Ok(image::open(path)
        .with_context(|| format!("reading {}", path.display()))?
        .to_rgb8())
}

fn main() -> Result<()> {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut args = std::env::args().skip(1);
    let runs: usize = match args.next() {
        Some(s) => s
            .parse()
            .with_context(|| format!("RUNS must be a whole number, not {s:?}"))?,
        None => 30,
    };
    let runs = runs.max(1);
    let obama = open(&facerec_fixtures::photo("obama.jpg"))?;
    let (w, h) = obama.dimensions();
    let crop_h = w * 3 / 4;
    let centre = resize(
        &crop_imm(&obama, 0, (h - crop_h) / 2, w, crop_h).to_image(),
        640,
        480,
        FilterType::Triangle,
    );
    let top = resize(
        &crop_imm(&obama, 0, 0, w, crop_h).to_image(),
        640,
        480,
        FilterType::Triangle,
    );
    let mut images = vec![
        ("obama centre crop 640x480".to_string(), centre),
        ("obama top crop 640x480".to_string(), top),
        (
            "group-sample1 1920x1280".to_string(),
            open(&facerec_fixtures::photo("group-sample1.jpg"))?,
        ),
    ];
    for path in args {
        let img = open(path.as_ref())?;
        images.push((format!("{path} {}x{}", img.width(), img.height()), img));
    }

    let models = facerec_fixtures::models_dir();
    let start = Instant::now();
    let detector = Detector::from_dir(&models, DetectorConfig::default())
        .with_context(|| format!("loading the MTCNN models from {}", models.display()))?;
    println!(
        "load: {:.1} ms; rayon threads: {}",
        start.elapsed().as_secs_f64() * 1e3,
        rayon::current_num_threads()
    );

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .context("starting a one-thread pool")?;
    for (name, img) in &images {
        let fresh = Detector::from_dir(&models, DetectorConfig::default())?;
        let start = Instant::now();
        fresh.detect(img)?;
        let cold = start.elapsed();
        let (all, faces, all_cpu) = time(&detector, img, runs)?;
        let (one, _, one_cpu) = pool.install(|| time(&detector, img, runs))?;
        println!(
            "{name}: {faces} face(s); first call on a fresh detector {:.1} ms",
            cold.as_secs_f64() * 1e3
        );
        println!("  all cores: {}  (cpu {all_cpu:.1} ms/run)", stats(all));
        println!("  1 thread : {}  (cpu {one_cpu:.1} ms/run)", stats(one));
    }
    Ok(())
}
