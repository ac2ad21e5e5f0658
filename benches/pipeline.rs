//! Detection, alignment + embedding, and the end-to-end pipeline on real photos: the groups
//! `detect`, `embed` (every model of `models/`: each network's alignment, of a 640x480 photo's
//! face and of a phone photo's, and its inference, and each model's whole embedding of a face,
//! fusion included) and `analyze`. Criterion prints the median of each.
//!
//! The models load on first use, and each group's photos and faces when its first bench
//! runs, so a run filtered to other groups does not pay for them.

// A bench that cannot load its models or photos has nothing to measure: fail loudly.
#![allow(clippy::expect_used, missing_docs)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::sync::OnceLock;

use criterion::{Criterion, criterion_group};
use facerec::{
    DecodeLimits, Detection, EmbedderConfig, FaceEngine, MODEL_NAMES, ModelEmbedder, ModelName,
    ModelSpec, decode_image,
};
use facerec_fixtures as fx;
use image::RgbImage;

/// The engine, loaded once for every group that runs.
fn engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| FaceEngine::from_dir(fx::models_dir()).expect("loading the models"))
}

/// A bench name, how to load its photo, and how many faces the photo holds.
type Photo = (&'static str, fn() -> RgbImage, usize);

fn detection(c: &mut Criterion) {
    let mut g = c.benchmark_group("detect");
    g.sample_size(30);
    let load_large = || {
        let large = image::open(fx::photo("group-sample1.jpg"))
            .expect("group photo")
            .to_rgb8();
        assert_eq!(large.dimensions(), (1920, 1280));
        large
    };
    let photos: [Photo; 2] = [
        ("640x480", fx::obama_640x480, 1),
        ("1920x1280", load_large, 3),
    ];
    for (name, load, faces) in photos {
        let img = OnceCell::new();
        g.bench_function(name, |b| {
            let img = img.get_or_init(|| {
                let img = load();
                assert_eq!(
                    engine().detect(&img).expect("detect").len(),
                    faces,
                    "{name}"
                );
                img
            });
            b.iter(|| engine().detect(black_box(img)).expect("detect"))
        });
    }
    g.finish();
}

fn embedding(c: &mut Criterion) {
    // The photo and its face, found once; each model's embedder loads when its first bench
    // runs, so a run filtered to one model loads only that one.
    let prepared: OnceCell<(RgbImage, Detection)> = OnceCell::new();
    let setup = || {
        prepared.get_or_init(|| {
            let img = fx::obama_640x480();
            let face = engine().detect(&img).expect("detect").remove(0);
            (img, face)
        })
    };
    // A phone-sized photo (obama.jpg at twice its size, 1820x2274) whose face spans about 4
    // image pixels per chip pixel: alignment then averages, so it costs more than at 640x480.
    let large: OnceCell<(RgbImage, Detection)> = OnceCell::new();
    let setup_large = || {
        large.get_or_init(|| {
            let photo = image::open(fx::photo("obama.jpg"))
                .expect("obama.jpg")
                .to_rgb8();
            let (w, h) = photo.dimensions();
            let img = image::imageops::resize(
                &photo,
                w * 2,
                h * 2,
                image::imageops::FilterType::Triangle,
            );
            let face = engine().detect(&img).expect("detect").remove(0);
            (img, face)
        })
    };
    let mut g = c.benchmark_group("embed");
    g.sample_size(50);
    for ModelName { name, .. } in MODEL_NAMES {
        let loaded: OnceCell<ModelEmbedder> = OnceCell::new();
        let embedder = || {
            loaded.get_or_init(|| {
                let spec = ModelSpec::named(name).expect("a listed model");
                ModelEmbedder::from_dir(&fx::models_dir(), spec, EmbedderConfig::default())
                    .expect("loading the embedding model")
            })
        };
        // Each network of a single model alone: its alignment and its inference.
        if !name.contains('+') {
            g.bench_function(format!("align/{name}"), |b| {
                let (img, face) = setup();
                let net = &embedder().nets()[0];
                b.iter(|| net.align(black_box(img), &face.landmarks).expect("align"))
            });
            g.bench_function(format!("align, face in 1820x2274/{name}"), |b| {
                let (img, face) = setup_large();
                let net = &embedder().nets()[0];
                b.iter(|| net.align(black_box(img), &face.landmarks).expect("align"))
            });
            g.bench_function(format!("embed aligned chip (1 thread)/{name}"), |b| {
                let (img, face) = setup();
                let net = &embedder().nets()[0];
                let chip = net.align(img, &face.landmarks).expect("align");
                b.iter(|| net.embed_chip(black_box(&chip)).expect("embed"))
            });
        }
        g.bench_function(format!("align+embed per face (1 thread)/{name}"), |b| {
            let (img, face) = setup();
            let embedder = embedder();
            b.iter(|| {
                embedder
                    .embed(black_box(img), &face.landmarks)
                    .expect("embed")
            })
        });
    }
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
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
                engine().analyze(&image).expect("analyze")
            })
        });
    }
    g.finish();
}

criterion_group!(benches, detection, embedding, end_to_end);
