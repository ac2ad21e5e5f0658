//! Every embedding model of `models/` through the whole pipeline, on real photos: MobileFaceNet
//! alone and fused with dlib's ResNet tell the same people apart as dlib alone does, and a
//! fused embedding is its parts', each divided by its own threshold; int8 convolutions keep
//! every model's embeddings within a few hundredths of its f32 ones.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use facerec::{
    EngineConfig, Face, FaceEngine, MODEL_NAMES, Metric, ModelName, ModelSpec, largest_face,
};
use facerec_fixtures as fx;

fn engine(name: &str) -> FaceEngine {
    engine_with(name, false).unwrap()
}

fn engine_with(name: &str, int8: bool) -> facerec::Result<FaceEngine> {
    let mut config = EngineConfig {
        model: ModelSpec::named(name).unwrap(),
        ..EngineConfig::default()
    };
    config.embedder.int8 = int8;
    FaceEngine::with_config(fx::models_dir(), config)
}

fn main_face(engine: &FaceEngine, photo: &str) -> Face {
    let faces = engine
        .analyze(&image::open(fx::photo(photo)).unwrap())
        .unwrap();
    let i = largest_face(&faces).unwrap_or_else(|| panic!("no face in {photo}"));
    faces[i].clone()
}

#[test]
fn every_model_tells_obama_from_biden() {
    for ModelName { name, .. } in MODEL_NAMES {
        let engine = engine(name);
        let model = engine.model();
        let [a, b, c] = ["obama.jpg", "obama2.jpg", "biden.jpg"].map(|p| main_face(&engine, p));
        assert_eq!(a.embedding.len(), model.dims(), "{name}");
        let same = a.embedding.distance(&b.embedding);
        let different = a.embedding.distance(&c.embedding);
        println!("{name}: obama-obama2 {same:.3}, obama-biden {different:.3}");
        assert!(same < model.threshold, "{name}: obama vs obama2 {same}");
        assert!(
            different > model.threshold,
            "{name}: obama vs biden {different}"
        );
        assert!(engine.same_person(&a.embedding, &b.embedding), "{name}");
        assert!(!engine.same_person(&a.embedding, &c.embedding), "{name}");
    }
}

#[test]
fn mobilefacenet_embeddings_have_unit_length() {
    let engine = engine("mobilefacenet");
    assert_eq!(
        engine.model().parts[0].metric,
        Metric::L2NormalisedEuclidean
    );
    let face = main_face(&engine, "obama.jpg");
    let norm = face.embedding.as_slice().iter().map(|v| v * v).sum::<f32>();
    assert!((norm.sqrt() - 1.0).abs() < 1e-5, "{norm}");
}

#[test]
fn a_fused_embedding_is_its_parts_each_divided_by_its_threshold() {
    let fused = engine("dlib+mobilefacenet");
    let spec = fused.model();
    assert!(spec.is_fused());
    assert_eq!(spec.id, "dlib+mobilefacenet");
    let face = main_face(&fused, "obama2.jpg");
    let mut expected = Vec::new();
    for part in &spec.parts {
        let single = fused
            .embedder()
            .nets()
            .iter()
            .find(|n| n.descriptor() == part);
        let single = single.unwrap();
        let e = single.embed(
            &image::open(fx::photo("obama2.jpg")).unwrap().to_rgb8(),
            &face.landmarks,
        );
        expected.extend(e.unwrap().as_slice().iter().map(|v| v / part.threshold));
    }
    assert_eq!(face.embedding.as_slice(), expected.as_slice());

    // The same face through the single-model engines: the fused distance between two faces is
    // sqrt((d_dlib / 0.6)^2 + (d_mobilefacenet / t)^2).
    let other = main_face(&fused, "obama.jpg");
    let parts: Vec<f32> = ["dlib", "mobilefacenet"]
        .iter()
        .map(|name| {
            let e = engine(name);
            let t = e.model().threshold;
            main_face(&e, "obama.jpg")
                .embedding
                .distance(&main_face(&e, "obama2.jpg").embedding)
                / t
        })
        .collect();
    let combined = parts.iter().map(|d| d * d).sum::<f32>().sqrt();
    let d = other.embedding.distance(&face.embedding);
    assert!((d - combined).abs() < 1e-4, "{d} vs {combined}");
}

#[test]
fn int8_embeddings_stay_close_to_f32_and_tell_the_same_people_apart() {
    if !facerec::int8_available() {
        let Err(err) = engine_with("dlib", true) else {
            panic!("int8 without AVX2 or VNNI must fail");
        };
        println!("SKIPPED int8 embeddings: this CPU has neither AVX2 nor AVX-512 VNNI ({err:#})");
        assert!(
            format!("{err:#}").contains("AVX2 or AVX-512 VNNI"),
            "{err:#}"
        );
        return;
    }
    for ModelName { name, .. } in MODEL_NAMES {
        let f32_engine = engine(name);
        let int8_engine = engine_with(name, true).unwrap();
        let threshold = f32_engine.model().threshold;
        let photos = ["obama.jpg", "obama2.jpg", "biden.jpg", "group-sample1.jpg"];
        for photo in photos {
            let a = main_face(&f32_engine, photo);
            let b = main_face(&int8_engine, photo);
            assert_eq!(a.bbox, b.bbox, "{name} {photo}: detection does not change");
            let moved = a.embedding.distance(&b.embedding);
            println!("{name} {photo}: int8 is {moved:.4} from f32 (threshold {threshold})");
            assert!(
                moved > 0.0 && moved < 0.05 * threshold,
                "{name} {photo}: int8 embedding {moved} from f32's"
            );
        }
        let [a, b, c] =
            ["obama.jpg", "obama2.jpg", "biden.jpg"].map(|p| main_face(&int8_engine, p));
        assert!(a.embedding.distance(&b.embedding) < threshold, "{name}");
        assert!(a.embedding.distance(&c.embedding) > threshold, "{name}");
    }
}
