//! The embedder on the real dlib model and photos, and the descriptor path for another
//! model, checked on a tiny ONNX graph written here with tract's own ONNX messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use facerec_embed::{
    Embedder, EmbedderConfig, Error, Layout, Metric, ModelDescriptor, Normalisation, Warp,
};
use facerec_fixtures as fx;
use image::{Rgb, RgbImage};
use prost::Message;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, tensor_shape_proto, type_proto,
};

/// Landmarks of the face in obama.jpg, as MTCNN finds them.
const OBAMA: [[f32; 2]; 5] = [
    [442.4, 213.4],
    [548.7, 211.3],
    [495.2, 277.1],
    [436.9, 319.0],
    [552.5, 316.8],
];

fn dlib(config: EmbedderConfig) -> Embedder {
    Embedder::from_dir(&fx::models_dir(), ModelDescriptor::dlib_resnet_v1(), config).unwrap()
}

#[test]
fn the_dlib_chip_is_centred_on_the_face_and_the_embedding_is_raw() {
    let embedder = dlib(EmbedderConfig::default());
    let photo = image::open(fx::photo("obama.jpg")).unwrap().to_rgb8();
    let chip = embedder.align(&photo, &OBAMA).unwrap();
    assert_eq!(chip.dimensions(), (150, 150));
    // The eyes land where the template puts them: darker than the cheeks below them.
    let luma = |x: u32, y: u32| {
        let p = chip.get_pixel(x, y).0;
        u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])
    };
    assert!(
        luma(47, 46) < luma(47, 70),
        "left eye darker than the cheek"
    );
    let e = embedder.embed_chip(&chip).unwrap();
    let norm = e.as_slice().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!(
        (1.0..1.7).contains(&norm),
        "dlib descriptors are not normalised: {norm}"
    );
    assert_eq!(embedder.embed(&photo, &OBAMA).unwrap(), e);
}

#[test]
fn flip_augmentation_averages_with_the_mirror_image() {
    let plain = dlib(EmbedderConfig::default());
    let flipped = dlib(EmbedderConfig {
        flip: true,
        ..EmbedderConfig::default()
    });
    let photo = image::open(fx::photo("obama.jpg")).unwrap().to_rgb8();
    let chip = plain.align(&photo, &OBAMA).unwrap();
    let a = plain.embed_chip(&chip).unwrap();
    let m = plain
        .embed_chip(&image::imageops::flip_horizontal(&chip))
        .unwrap();
    let f = flipped.embed_chip(&chip).unwrap();
    for ((a, m), f) in a.as_slice().iter().zip(m.as_slice()).zip(f.as_slice()) {
        assert!(((a + m) / 2.0 - f).abs() < 1e-6);
    }
    assert!(
        a.distance(&f) > 0.0 && a.distance(&f) < 0.3,
        "{}",
        a.distance(&f)
    );
}

#[test]
fn bad_input_gives_typed_errors() {
    let embedder = dlib(EmbedderConfig::default());
    let photo = image::open(fx::photo("obama.jpg")).unwrap().to_rgb8();
    assert!(matches!(
        embedder.embed(&photo, &[[5.0, 5.0]; 5]),
        Err(Error::Landmarks(_))
    ));
    let small = RgbImage::new(100, 150);
    assert!(matches!(
        embedder.embed_chip(&small),
        Err(Error::ChipSize { expected: 150, .. })
    ));
    let missing = Embedder::from_dir(
        std::path::Path::new("/nonexistent"),
        ModelDescriptor::dlib_resnet_v1(),
        EmbedderConfig::default(),
    );
    assert!(matches!(missing, Err(Error::Io { .. })));
}

#[test]
fn tract_errors_stay_in_the_chain() {
    let dir = std::env::temp_dir().join(format!("facerec-embed-garbage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("garbage.onnx"), b"\xff\xff\xff not an ONNX model").unwrap();
    let descriptor = ModelDescriptor {
        file: "garbage.onnx".into(),
        ..ModelDescriptor::dlib_resnet_v1()
    };
    let err = Embedder::from_dir(&dir, descriptor, EmbedderConfig::default()).unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("garbage.onnx"), "{err}");
    // tract's own message is the next link of the chain, not part of this one's.
    let tract = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        !tract.is_empty() && !err.to_string().contains(&tract),
        "{err}: {tract}"
    );
}

/// A FaceNet-shaped stand-in: NHWC 160x160 input, per-channel spatial mean, then an 8-d
/// linear map `W` (3 x 8).
fn tiny_model(w: &[f32; 24]) -> Vec<u8> {
    use tensor_shape_proto::dimension::Value::DimValue;
    let value_info = |name: &str, dims: &[i64]| ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| tensor_shape_proto::Dimension {
                            value: Some(DimValue(*d)),
                            denotation: String::new(),
                        })
                        .collect(),
                }),
            })),
            denotation: String::new(),
        }),
        ..Default::default()
    };
    let node =
        |op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>| NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            name: output.into(),
            op_type: op.into(),
            attribute,
            ..Default::default()
        };
    let axes = AttributeProto {
        name: "axes".into(),
        r#type: AttributeType::Ints as i32,
        ints: vec![1, 2],
        ..Default::default()
    };
    let keepdims = AttributeProto {
        name: "keepdims".into(),
        r#type: AttributeType::Int as i32,
        i: 0,
        ..Default::default()
    };
    let weights = TensorProto {
        dims: vec![3, 8],
        data_type: DataType::Float as i32,
        name: "w".into(),
        raw_data: w.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    };
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "facerec-embed test".into(),
        graph: Some(GraphProto {
            node: vec![
                node("ReduceMean", &["input"], "mean", vec![axes, keepdims]),
                node("MatMul", &["mean", "w"], "embedding", vec![]),
            ],
            name: "tiny".into(),
            initializer: vec![weights],
            input: vec![value_info("input", &[1, 160, 160, 3])],
            output: vec![value_info("embedding", &[1, 8])],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn facenet_like() -> ModelDescriptor {
    ModelDescriptor {
        id: "tiny-facenet".into(),
        file: "tiny.onnx".into(),
        input_size: 160,
        layout: Layout::Nhwc,
        normalisation: Normalisation::Prewhiten,
        template: [
            [54.7, 73.9],
            [105.0, 73.5],
            [80.0, 102.5],
            [59.0, 131.3],
            [101.0, 131.0],
        ],
        warp: Warp::Similarity,
        dims: 8,
        metric: Metric::L2NormalisedEuclidean,
        threshold: 1.1,
    }
}

#[test]
fn another_model_plugs_in_through_its_descriptor() {
    let dir = std::env::temp_dir().join(format!("facerec-embed-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w: [f32; 24] = std::array::from_fn(|i| (i as f32 - 11.5) / 7.0);
    std::fs::write(dir.join("tiny.onnx"), tiny_model(&w)).unwrap();

    // The descriptor also round-trips through JSON, as a user would ship it beside the model.
    let json = serde_json::to_string_pretty(&facenet_like()).unwrap();
    std::fs::write(dir.join("tiny.json"), json).unwrap();
    let descriptor = ModelDescriptor::from_json_file(&dir.join("tiny.json")).unwrap();
    assert_eq!(descriptor, facenet_like());

    let embedder = Embedder::from_dir(&dir, descriptor, EmbedderConfig::default()).unwrap();
    // Left half red-ish, right half blue-ish: distinct channel means after prewhitening.
    let chip = RgbImage::from_fn(160, 160, |x, _| {
        if x < 80 {
            Rgb([200, 40, 90])
        } else {
            Rgb([20, 60, 240])
        }
    });
    let got = embedder.embed_chip(&chip).unwrap();

    // Expected, computed independently: prewhiten over all values, mean per channel, @ W, L2.
    let values: Vec<f64> = chip.pixels().flat_map(|p| p.0.map(f64::from)).collect();
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let std = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    let channel_mean: Vec<f64> = (0..3)
        .map(|c| {
            values
                .iter()
                .skip(c)
                .step_by(3)
                .map(|v| (v - mean) / std)
                .sum::<f64>()
                / (160.0 * 160.0)
        })
        .collect();
    let raw: Vec<f64> = (0..8)
        .map(|j| {
            (0..3)
                .map(|c| channel_mean[c] * f64::from(w[c * 8 + j]))
                .sum()
        })
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
    for (g, r) in got.as_slice().iter().zip(&raw) {
        assert!(
            (f64::from(*g) - r / norm).abs() < 1e-4,
            "{:?} vs {raw:?}",
            got.as_slice()
        );
    }
    let unit = got.as_slice().iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((unit - 1.0).abs() < 1e-5, "L2-normalised: {unit}");

    // A descriptor that disagrees with the model is refused at load, not per request.
    let wrong = ModelDescriptor {
        dims: 16,
        ..facenet_like()
    };
    let err = Embedder::from_dir(&dir, wrong, EmbedderConfig::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("outputs 8 values; descriptor says 16"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn profile_times_every_step_of_the_plan() {
    let embedder = dlib(EmbedderConfig::default());
    let photo = image::open(fx::photo("obama.jpg")).unwrap().to_rgb8();
    let chip = embedder.align(&photo, &OBAMA).unwrap();
    let steps = embedder.profile(&chip, 2).unwrap();
    assert!(
        steps.windows(2).all(|w| w[0].seconds >= w[1].seconds),
        "slowest first"
    );
    assert!(steps.iter().map(|s| s.seconds).sum::<f64>() > 0.0);
    // The 29 convolutions and the final 256x128 product each become one matrix product or,
    // for 18 padded 3x3 convolutions on CPUs with AVX2 and FMA, one `WinogradConv`. Together
    // they do 270,329,856 multiply-adds (weights times output pixels, summed over layers;
    // `WinogradConv` counts those of the convolution it replaces).
    let products: Vec<_> = steps
        .iter()
        .filter(|s| s.op == "OptMatMul" || s.op == "WinogradConv")
        .collect();
    assert_eq!(products.len(), 30, "{products:#?}");
    let winograd = products.iter().filter(|s| s.op == "WinogradConv").count();
    assert!(winograd == 0 || winograd == 18, "{products:#?}");
    let multiply_adds: u64 = products.iter().map(|s| s.multiply_adds).sum();
    assert_eq!(multiply_adds, 270_329_856);
    assert!(
        products
            .iter()
            .filter(|s| s.op == "OptMatMul")
            .all(|s| s.info.iter().any(|i| i.contains("k:")))
    );
    assert!(matches!(
        embedder.profile(&RgbImage::new(10, 10), 1),
        Err(Error::ChipSize { .. })
    ));
}
