//! Checks the committed `models/dlib_face_recognition_resnet_model_v1.onnx`: its structure,
//! and that tract running it reproduces dlib's own descriptors (`tests/data`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use facerec_convert::graph;
use facerec_convert::onnx::ModelProto;
use prost::Message;

fn load_model() -> ModelProto {
    let bytes = std::fs::read(model_path()).unwrap();
    ModelProto::decode(bytes.as_slice()).unwrap()
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
    check_io_and_order(g, 150, 128);

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
