//! Where one detection spends its time: resize, P-Net and NMS per pyramid level, the NMS
//! across levels, R-Net and O-Net, for the 640x480 portrait and the 1920x1280 group photo, on
//! one thread and on every core. Each figure is the mean of warm runs (one warm-up run first
//! builds the plans of the photo's sizes).
//!
//! `cargo bench --workspace --bench stages [-- RUNS]`
//!
//! Like `layers`, it prints tables instead of criterion's statistics and takes a name filter:
//! `-- stages` runs it, `-- embed` skips it. The `detect` group of `bench_main` measures the
//! same detections whole, with criterion's statistics.

// A bench that cannot load its models or photos has nothing to measure: fail loudly.
#![allow(clippy::expect_used, missing_docs)]

use facerec::{FaceEngine, Timings};
use facerec_fixtures as fx;

fn main() {
    let Some(runs) = facerec_benches::table_bench_runs("stages", 50) else {
        return;
    };
    let engine = FaceEngine::from_dir(fx::models_dir()).expect("loading the models");
    let group = image::open(fx::photo("group-sample1.jpg"))
        .expect("group photo")
        .to_rgb8();
    let photos = [("640x480", fx::obama_640x480()), ("1920x1280", group)];
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    for (name, photo) in &photos {
        for (threads, pool) in [(1, Some(&one)), (rayon::current_num_threads(), None)] {
            let timed = || {
                let detect = || {
                    engine
                        .detector()
                        .detect_timed(photo, None)
                        .expect("detect")
                        .1
                };
                detect();
                let all: Vec<Timings> = (0..runs).map(|_| detect()).collect();
                Timings::mean(&all).expect("runs")
            };
            let mean = match pool {
                Some(pool) => pool.install(timed),
                None => timed(),
            };
            println!("\n{name}, {threads} thread(s), mean of {runs} runs:\n{mean}");
        }
    }
}
