//! Helpers shared by the integration tests: paths, the dlib reference embeddings in
//! `tests/data`, and running an ONNX model with tract.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use facerec_convert::graph::{BATCH_DIM, INPUT_NAME, OUTPUT_NAME};
use facerec_convert::onnx::{
    DATA_TYPE_FLOAT, GraphProto, ValueInfoProto, tensor_shape_proto::dimension::Value as Dim,
    type_proto,
};
use tract_onnx::prelude::*;

/// Side of the face chip the model takes.
pub const CHIP: usize = 150;

/// The committed ONNX model.
pub fn model_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/dlib_face_recognition_resnet_model_v1.onnx")
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// dlib's own descriptors from `tests/data/dlib_embeddings.txt`, by image name.
pub fn dlib_embeddings() -> Vec<(String, Vec<f32>)> {
    let text = std::fs::read_to_string(data_dir().join("dlib_embeddings.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next().unwrap().to_owned();
            let values: Vec<f32> = fields.map(|v| v.parse::<f64>().unwrap() as f32).collect();
            assert_eq!(values.len(), 128, "{name}");
            (name, values)
        })
        .collect()
}

/// The 150x150 RGB image (row-major, interleaved) that `dlib_embeddings.txt` names `name`:
/// a synthetic image rebuilt here, or a face chip decoded from `tests/data`.
pub fn reference_image(name: &str) -> Vec<u8> {
    reference_image_of(name, CHIP, &format!("{name}_chip.png"))
}

/// A `side` x `side` reference image: `gray` (every value 128), `pattern` (R = (7x + 13y) %
/// 256, G = (3x + 5y + 50) % 256, B = (x*x + y) % 256), or else the PNG `chip` of `tests/data`.
pub fn reference_image_of(name: &str, side: usize, chip: &str) -> Vec<u8> {
    match name {
        "gray" => vec![128; side * side * 3],
        "pattern" => (0..side)
            .flat_map(|y| {
                (0..side).flat_map(move |x| {
                    [
                        (7 * x + 13 * y) % 256,
                        (3 * x + 5 * y + 50) % 256,
                        (x * x + y) % 256,
                    ]
                    .map(|v| v as u8)
                })
            })
            .collect(),
        _ => {
            let chip = image::open(data_dir().join(chip)).unwrap().to_rgb8();
            assert_eq!(chip.dimensions(), (side as u32, side as u32), "{name}");
            chip.into_raw()
        }
    }
}

/// The dimensions of a graph input or output, which must be a float tensor.
pub fn dims(info: &ValueInfoProto) -> Vec<Dim> {
    let Some(type_proto::Value::TensorType(t)) = info.r#type.as_ref().unwrap().value.as_ref()
    else {
        panic!("{} is not a tensor", info.name);
    };
    assert_eq!(t.elem_type, DATA_TYPE_FLOAT);
    t.shape
        .as_ref()
        .unwrap()
        .dim
        .iter()
        .map(|d| d.value.clone().unwrap())
        .collect()
}

/// Checks the graph's one input `[N, 3, side, side]` and one output `[N, outputs]`, and that
/// its nodes are topologically sorted with every value produced exactly once.
pub fn check_io_and_order(g: &GraphProto, side: usize, outputs: usize) {
    assert_eq!(g.input.len(), 1);
    assert_eq!(g.input[0].name, INPUT_NAME);
    let n = Dim::DimParam(BATCH_DIM.to_owned());
    let side = Dim::DimValue(side as i64);
    assert_eq!(
        dims(&g.input[0]),
        [n.clone(), Dim::DimValue(3), side.clone(), side]
    );
    assert_eq!(g.output.len(), 1);
    assert_eq!(g.output[0].name, OUTPUT_NAME);
    assert_eq!(dims(&g.output[0]), [n, Dim::DimValue(outputs as i64)]);

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
}

/// Interleaved RGB bytes to the model's planar `[3][150][150]` float input.
pub fn to_planar(rgb: &[u8]) -> Vec<f32> {
    (0..3)
        .flat_map(|c| rgb.iter().skip(c).step_by(3).map(|&v| f32::from(v)))
        .collect()
}

/// The ONNX model at `path`, its batch dimension fixed to `batch`, ready to run.
pub fn tract_plan(path: &Path, batch: usize) -> Arc<TypedRunnableModel> {
    tract_onnx::onnx()
        .model_for_path(path)
        .and_then(|m| m.with_input_fact(0, f32::fact([batch, 3, CHIP, CHIP]).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap()
}

/// Runs `plan` on a batch of interleaved RGB images; one embedding per image.
pub fn embed(plan: &Arc<TypedRunnableModel>, images: &[&[u8]]) -> Vec<Vec<f32>> {
    let data: Vec<f32> = images.iter().flat_map(|rgb| to_planar(rgb)).collect();
    let input = tract_ndarray::Array4::from_shape_vec((images.len(), 3, CHIP, CHIP), data)
        .unwrap()
        .into_tensor();
    let outputs = plan.run(tvec![input.into_tvalue()]).unwrap();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].shape(), [images.len(), 128]);
    let flat = outputs[0]
        .try_as_plain_ram()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec();
    flat.chunks(128).map(<[f32]>::to_vec).collect()
}

/// Largest absolute difference between two vectors of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Euclidean distance.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}
