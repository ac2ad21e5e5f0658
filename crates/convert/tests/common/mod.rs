//! Helpers shared by the integration tests: paths, the dlib reference embeddings in
//! `tests/data`, and running an ONNX model with tract.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

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
    match name {
        "gray" => vec![128; CHIP * CHIP * 3],
        "pattern" => (0..CHIP)
            .flat_map(|y| {
                (0..CHIP).flat_map(move |x| {
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
            let chip = image::open(data_dir().join(format!("{name}_chip.png")))
                .unwrap()
                .to_rgb8();
            assert_eq!(chip.dimensions(), (CHIP as u32, CHIP as u32), "{name}");
            chip.into_raw()
        }
    }
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
