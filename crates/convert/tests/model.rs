//! Checks the committed `models/dlib_face_recognition_resnet_model_v1.onnx`: its structure,
//! and that tract running it reproduces dlib's own descriptors (`tests/data`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use facerec_convert::graph::{self, BATCH_DIM, INPUT_NAME, OUTPUT_NAME};
use facerec_convert::onnx::{ModelProto, tensor_shape_proto::dimension::Value as Dim, type_proto};
use prost::Message;

fn load_model() -> ModelProto {
    let bytes = std::fs::read(model_path()).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
}

fn dims(info: &facerec_convert::onnx::ValueInfoProto) -> Vec<Dim> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().unwrap().value.as_ref()
    else {
        panic!("{} is not a tensor", info.name);
    };
    assert_eq!(t.elem_type, facerec_convert::onnx::DATA_TYPE_FLOAT);
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| d.value.clone().unwrap())
        .collect()
}

#[test]
fn committed_model_has_the_expected_structure() {
    let model = load_model();
    assert_eq!(model.ir_version, graph::IR_VERSION);
    assert_eq!(model.producer_name, "facerec-convert");
    assert_eq!(model.opset_import.len(), 1);
    assert_eq!(model.opset_import[0].domain, "");
    assert_eq!(model.opset_import[0].version, 13);

    let counts = graph::op_counts(&model);
    let expected: BTreeMap<String, usize> = [
        ("Add", 14),
        ("AveragePool", 4),
        ("Conv", 29),
        ("Flatten", 1),
        ("GlobalAveragePool", 1),
        ("MatMul", 1),
        ("MaxPool", 1),
        ("Mul", 1),
        ("Pad", 5),
        ("Relu", 29),
        ("Sub", 1),
    ]
    .into_iter()
    .map(|(op, n)| (op.to_owned(), n))
    .collect();
    assert_eq!(counts, expected);

    let g = model.graph.as_ref().unwrap();
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, INPUT_NAME);
    let n = Dim::DimParam(BATCH_DIM.to_owned());
    assert_eq!(
        dims(&g.input[0]),
        [
            n.clone(),
            Dim::DimValue(3),
            Dim::DimValue(150),
            Dim::DimValue(150)
        ]
    );
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, OUTPUT_NAME);
    assert_eq!(dims(&g.output[0]), [n, Dim::DimValue(128)]);

    // Nodes are topologically sorted and every value is produced exactly once.
    let mut defined: BTreeSet<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(defined.len(), g.initializer.len(), "duplicate initializer");
    defined.insert(INPUT_NAME);
    for node in &g.node {
        for input in &node.input {
            assert!(
                defined.contains(input.as_str()),
                "{} uses {input}",
                node.name
            );
        }
        for output in &node.output {
            assert!(defined.insert(output), "{output} defined twice");
        }
    }
    assert!(defined.contains(OUTPUT_NAME));

    // dlib stores 5,614,592 parameters; folding drops each affine layer's gamma and beta
    // (two per conv output channel) and the graph adds the input mean (3) and scale (1).
    // The last block's second conv sees a 1x1 input, so only the centre of its 3x3
    // 256x256 filters is kept: 8 of every 9 taps (524,288 weights) are dropped.
    let conv_channels: usize = g
        .initializer
        .iter()
        .filter(|t| t.name.starts_with("Conv_") && t.name.ends_with(".bias"))
        .map(|t| t.dims[0] as usize)
        .sum();
    assert_eq!(
        graph::weight_count(&model),
        5_614_592 - 2 * conv_channels + 4 - 256 * 256 * 8
    );
}

#[test]
fn committed_model_reproduces_dlib_descriptors() {
    let plan = tract_plan(&model_path(), 1);
    let references = dlib_embeddings();
    assert_eq!(references.len(), 5);
    let mut ours = BTreeMap::new();
    for (name, expected) in &references {
        let image = reference_image(name);
        let embedding = embed(&plan, &[&image]).remove(0);
        assert!(embedding.iter().all(|v| v.is_finite()), "{name}");
        let norm = distance(&embedding, &[0.0; 128]);
        assert!((0.5..2.0).contains(&norm), "{name}: norm {norm}");
        let diff = max_abs_diff(&embedding, expected);
        eprintln!("{name}: norm {norm:.4}, max |tract - dlib| = {diff:e}");
        assert!(diff < 1e-5, "{name}: differs from dlib by up to {diff}");
        ours.insert(name.as_str(), embedding);
    }
    // dlib's threshold for "same person" is 0.6.
    let same = distance(&ours["obama"], &ours["obama2"]);
    let different = distance(&ours["obama"], &ours["biden"]);
    assert!(same < 0.6, "obama vs obama2: {same}");
    assert!(different > 0.6, "obama vs biden: {different}");
}

#[test]
fn committed_model_runs_batches() {
    let single = tract_plan(&model_path(), 1);
    let batch = tract_plan(&model_path(), 2);
    let a = reference_image("obama");
    let b = reference_image("pattern");
    let both = embed(&batch, &[&a, &b]);
    assert!(max_abs_diff(&both[0], &embed(&single, &[&a])[0]) < 1e-5);
    assert!(max_abs_diff(&both[1], &embed(&single, &[&b])[0]) < 1e-5);
}

#[test]
fn models_readme_lists_every_model_with_its_checksum() {
    let dir = model_path().parent().unwrap().to_path_buf();
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    // Table rows: | `file.onnx` | `sha256` | size | source | licence |
    let listed: BTreeMap<String, (String, String)> = readme
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?.strip_prefix('`')?.strip_suffix(".onnx`")?;
            let sha = cells.get(2)?.trim_matches('`').to_owned();
            let size = cells.get(3)?.replace(',', "");
            Some((format!("{file}.onnx"), (sha, size)))
        })
        .collect();
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "onnx") {
            on_disk.push(path);
        }
    }
    assert_eq!(
        on_disk.len(),
        listed.len(),
        "models/README.md lists {:?}",
        listed.keys()
    );
    for path in on_disk {
        let name = path.file_name().unwrap().to_str().unwrap();
        let (sha, size) = listed
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in models/README.md"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes.len().to_string(), size, "size of {name}");
        assert_eq!(
            &facerec_convert::sha256_hex(&bytes),
            sha,
            "sha256 of {name} differs from models/README.md"
        );
    }
}
