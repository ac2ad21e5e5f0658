//! Where one face's embedding spends its time: every step of the optimised tract plan, timed
//! over many runs on a real aligned chip, with the multiply-adds and the matrix kernel of
//! each convolution.
//!
//! `cargo bench --workspace --bench layers [-- RUNS]`
//!
//! It profiles the f32 model, then, on CPUs with AVX2 or AVX-512 VNNI, the same model with
//! int8 convolutions (`EmbedderConfig::int8`).
//!
//! It prints a table instead of criterion's statistics, so it is a target of its own rather
//! than a group of `bench_main`. Like criterion, it takes a name filter: `cargo bench
//! --workspace --benches -- embed` skips it, `-- layers` runs it.

// A bench that cannot load its models or photos has nothing to measure: fail loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;

use facerec::{EngineConfig, FaceEngine};
use facerec_fixtures as fx;

fn main() {
    let Some(runs) = facerec_benches::table_bench_runs("layers", 200) else {
        return;
    };
    profile(runs, false);
    if facerec_embed::int8_available() {
        println!();
        profile(runs, true);
    } else {
        println!("\nint8: skipped, this CPU has neither AVX2 nor AVX-512 VNNI");
    }
}

/// Profiles one embedding, in f32 or with int8 convolutions.
fn profile(runs: usize, int8: bool) {
    let mut config = EngineConfig::default();
    config.embedder.int8 = int8;
    let engine = FaceEngine::with_config(fx::models_dir(), config).expect("loading the models");
    let photo = fx::obama_640x480();
    let face = engine.detect(&photo).expect("detect").remove(0);
    let embedder = &engine.embedder().nets()[0];
    let chip = embedder.align(&photo, &face.landmarks).expect("align");
    embedder.profile(&chip, 20).expect("warm-up");
    let steps = embedder.profile(&chip, runs).expect("profile");

    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    let d = embedder.descriptor();
    println!(
        "{} ({}){}, {}x{} chip, mean of {runs} runs on one thread: {:.3} ms in {} steps",
        d.id,
        d.file,
        match (int8, facerec_embed::int8_kernel()) {
            (true, Some(kernel)) => format!(", int8 convolutions on {kernel}"),
            _ => String::new(),
        },
        d.input_size,
        d.input_size,
        total * 1e3,
        steps.len()
    );
    let mut by_op: BTreeMap<&str, (f64, u64, usize)> = BTreeMap::new();
    for s in &steps {
        let e = by_op.entry(&s.op).or_default();
        (e.0, e.1, e.2) = (e.0 + s.seconds, e.1 + s.multiply_adds, e.2 + 1);
    }
    let mut by_op: Vec<_> = by_op.into_iter().collect();
    by_op.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
    println!("\nby operation (a matrix product's time includes its im2col gathering):");
    println!(
        "{:<28} {:>5} {:>9} {:>6} {:>9}",
        "op", "steps", "ms", "%", "GFLOP/s"
    );
    for (op, (seconds, multiply_adds, count)) in by_op {
        println!(
            "{op:<28} {count:>5} {:>9.3} {:>6.1} {}",
            seconds * 1e3,
            100.0 * seconds / total,
            gflops(multiply_adds, seconds)
        );
    }
    println!("\nslowest steps:");
    println!(
        "{:<32} {:>9} {:>6} {:>9}  matrix product",
        "step", "ms", "%", "GFLOP/s"
    );
    for s in steps.iter().take(40) {
        let product = s
            .info
            .iter()
            .find_map(|i| i.strip_prefix("Mult: "))
            .unwrap_or("");
        println!(
            "{:<32} {:>9.3} {:>6.1} {}  {product}",
            s.name,
            s.seconds * 1e3,
            100.0 * s.seconds / total,
            gflops(s.multiply_adds, s.seconds)
        );
    }
}

/// Two flops per multiply-add; blank for steps without arithmetic.
fn gflops(multiply_adds: u64, seconds: f64) -> String {
    if multiply_adds == 0 || seconds <= 0.0 {
        return format!("{:>9}", "");
    }
    format!("{:>9.1}", 2.0 * multiply_adds as f64 / seconds / 1e9)
}
