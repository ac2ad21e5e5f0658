//! Detection, alignment + embedding, and the end-to-end pipeline on real photos.
//!
//! `cargo bench -p facerec-benches --bench pipeline`; criterion prints the median of each.

// A bench that cannot load its models or photos has nothing to measure: fail loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use facerec::{DecodeLimits, FaceEngine, decode_image};
use facerec_fixtures as fx;

fn engine() -> FaceEngine {
    FaceEngine::from_dir(fx::models_dir()).expect("loading the models")
}

fn detection(c: &mut Criterion) {
    let engine = engine();
    let small = fx::obama_640x480();
    let large = image::open(fx::photo("group-sample1.jpg"))
        .expect("group photo")
        .to_rgb8();
    assert_eq!(large.dimensions(), (1920, 1280));
    let mut g = c.benchmark_group("detect");
    g.sample_size(30);
    for (name, img, faces) in [("640x480", &small, 1), ("1920x1280", &large, 3)] {
        assert_eq!(engine.detect(img).expect("detect").len(), faces, "{name}");
        g.bench_function(name, |b| {
            b.iter(|| engine.detect(black_box(img)).expect("detect"))
        });
    }
    g.finish();
}

fn embedding(c: &mut Criterion) {
    let engine = engine();
    let img = fx::obama_640x480();
    let face = engine.detect(&img).expect("detect").remove(0);
    let mut g = c.benchmark_group("embed");
    g.sample_size(50);
    g.bench_function("align", |b| {
        b.iter(|| {
            engine
                .embedder()
                .align(black_box(&img), &face.landmarks)
                .expect("align")
        })
    });
    let chip = engine
        .embedder()
        .align(&img, &face.landmarks)
        .expect("align");
    g.bench_function("embed aligned chip (1 thread)", |b| {
        b.iter(|| {
            engine
                .embedder()
                .embed_chip(black_box(&chip))
                .expect("embed")
        })
    });
    g.bench_function("align+embed per face (1 thread)", |b| {
        b.iter(|| {
            engine
                .embedder()
                .embed(black_box(&img), &face.landmarks)
                .expect("embed")
        })
    });
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let engine = engine();
    let jpeg = fx::encode_jpeg(&fx::obama_640x480());
    let group = fx::photo_bytes("group-sample1.jpg");
    let mut g = c.benchmark_group("analyze");
    g.sample_size(20);
    for (name, bytes) in [
        ("640x480 jpeg, 1 face", &jpeg),
        ("1920x1280 jpeg, 3 faces", &group),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let image =
                    decode_image(black_box(bytes), &DecodeLimits::default()).expect("decode");
                engine.analyze(&image).expect("analyze")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, detection, embedding, end_to_end);
criterion_main!(benches);
