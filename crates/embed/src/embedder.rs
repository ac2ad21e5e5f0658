//! Running an ONNX embedding model on aligned face chips.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::source::TypedSource;
use tract_onnx::tract_core::plan::{SimpleState, eval};

use crate::align::{chip_to_image, warp_chip};
use crate::descriptor::{Layout, Metric, ModelDescriptor, Normalisation};
use crate::{Embedding, Error, Result};

/// Options of an [`Embedder`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedderConfig {
    /// Mirror-flip test-time augmentation: embed the chip and its mirror image and average
    /// the two (about +0.2 points on LFW, twice the inference time).
    pub flip: bool,
    /// Run the model's convolutions in 8-bit integers ([`int8_available`](crate::int8_available)
    /// says whether this CPU can; loading fails on one that cannot): weights quantized per output
    /// channel at load, each convolution's input per image at run time, no calibration data. On
    /// the dlib ResNet 1.8x faster per embedding on AVX-512 VNNI, 1.4x on AVX2 (AMD Zen 2);
    /// `lfw-dev` 98.20-98.23 % against 98.47 % in f32, 98.37-98.40 % against 98.37 % at the 0.6
    /// threshold; embeddings move by about 1 % of their length (docs/performance.md). The
    /// integer sums are the same on both kernels.
    pub int8: bool,
}

/// One step of the optimised model and its time, from [`Embedder::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// The step's name in tract's optimised plan (derived from the ONNX node it came from).
    pub name: String,
    /// The operation tract runs, e.g. `OptMatMul` for a convolution's matrix product.
    pub op: String,
    /// tract's description of the operation; for a matrix product its m, k, n and kernel.
    pub info: Vec<String>,
    /// Multiply-adds per run, from tract's cost model (0 for steps without arithmetic); for a
    /// `WinogradConv`, those of the direct convolution it replaces.
    pub multiply_adds: u64,
    /// Mean wall-clock seconds per run.
    pub seconds: f64,
}

/// A loaded embedding model: aligns faces by their five landmarks and embeds them.
///
/// The model is optimised once for a batch of one (faster per face in tract than batches) and
/// shared: an `Embedder` is `Send + Sync` and runs concurrently from many threads.
#[derive(Debug, Clone)]
pub struct Embedder {
    descriptor: ModelDescriptor,
    config: EmbedderConfig,
    plan: Arc<TypedRunnableModel>,
}

impl Embedder {
    /// Loads `descriptor.file` from `models_dir`.
    pub fn from_dir(
        models_dir: &Path,
        descriptor: ModelDescriptor,
        config: EmbedderConfig,
    ) -> Result<Self> {
        let path = models_dir.join(&descriptor.file);
        Self::from_file(&path, descriptor, config)
    }

    /// Loads the ONNX model at `path`, described by `descriptor`.
    pub fn from_file(
        path: &Path,
        descriptor: ModelDescriptor,
        config: EmbedderConfig,
    ) -> Result<Self> {
        descriptor.validate()?;
        if !path.is_file() {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "model file not found"),
            });
        }
        let n = descriptor.input_size as usize;
        let shape = input_shape(&descriptor);
        let model_error = |source: TractError| Error::Model {
            path: PathBuf::from(path),
            source,
        };
        let kernel = match config.int8 {
            false => None,
            true => Some(crate::q8::Kernel::best().ok_or(Error::Int8Unsupported)?),
        };
        let plan = load_plan(path, shape, kernel).map_err(model_error)?;
        let embedder = Self {
            descriptor,
            config,
            plan,
        };
        // Check the output size once, so a wrong descriptor fails at load, not per request.
        let probe = embedder.run(&RgbImage::new(n as u32, n as u32))?;
        if probe.len() != embedder.descriptor.dims {
            return Err(Error::OutputSize {
                path: path.to_path_buf(),
                found: probe.len(),
                expected: embedder.descriptor.dims,
            });
        }
        tracing::debug!(model = %embedder.descriptor.id, path = %path.display(), "embedding model loaded");
        Ok(embedder)
    }

    /// The model's descriptor.
    pub fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    /// The options this embedder runs with.
    pub fn config(&self) -> &EmbedderConfig {
        &self.config
    }

    /// Aligns the face with `landmarks` (in `image` pixels, MTCNN order) onto the model's
    /// template and returns the square chip the model sees.
    pub fn align(&self, image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<RgbImage> {
        let d = &self.descriptor;
        let map = chip_to_image(landmarks, &d.template, d.input_size, d.warp)
            .ok_or(Error::Landmarks(*landmarks))?;
        Ok(warp_chip(image, &map, d.input_size))
    }

    /// Aligns and embeds the face with `landmarks` in `image`.
    pub fn embed(&self, image: &RgbImage, landmarks: &[[f32; 2]; 5]) -> Result<Embedding> {
        let chip = self.align(image, landmarks)?;
        self.embed_chip(&chip)
    }

    /// Embeds an already aligned chip of `input_size` x `input_size` pixels.
    pub fn embed_chip(&self, chip: &RgbImage) -> Result<Embedding> {
        self.check_chip(chip)?;
        let mut values = self.run(chip)?;
        if self.config.flip {
            let mirrored = self.run(&image::imageops::flip_horizontal(chip))?;
            for (v, m) in values.iter_mut().zip(mirrored) {
                *v = (*v + m) / 2.0;
            }
        }
        if self.descriptor.metric == Metric::L2NormalisedEuclidean {
            let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                values.iter_mut().for_each(|v| *v /= norm);
            }
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                model: self.descriptor.id.clone(),
            });
        }
        Ok(Embedding::new(values))
    }

    /// Runs the model `runs` times on `chip` and times each step of the optimised plan,
    /// slowest first: where one embedding's time goes, to compare models or runtimes.
    ///
    /// The steps' sum is slightly above [`Embedder::embed_chip`]'s time: each step is timed
    /// on its own. Mirror-flip is not applied (it doubles every step).
    pub fn profile(&self, chip: &RgbImage, runs: usize) -> Result<Vec<StepTime>> {
        self.check_chip(chip)?;
        let input: TValue = to_tensor(chip, &self.descriptor)
            .map_err(|e| self.inference_error(e))?
            .into();
        let inference = |source: TractError| Error::Profile {
            model: self.descriptor.id.clone(),
            source,
        };
        let mut seconds = vec![0.0f64; self.plan.model().nodes().len()];
        let mut state = SimpleState::new(&self.plan).map_err(inference)?;
        for _ in 0..runs {
            state
                .run_plan_with_eval(tvec!(input.clone()), |session, op_state, node, inputs| {
                    let start = std::time::Instant::now();
                    let outputs = eval(session, op_state, node, inputs);
                    seconds[node.id] += start.elapsed().as_secs_f64();
                    outputs
                })
                .map_err(inference)?;
        }
        let model = self.plan.model();
        let mut steps = Vec::new();
        for node in model.nodes() {
            if node.op_is::<TypedSource>() || node.op_is::<Const>() {
                continue;
            }
            let facts = model.node_input_facts(node.id).map_err(inference)?;
            let multiply_adds = node
                .op
                .cost(&facts)
                .map_err(inference)?
                .iter()
                .filter(|(cost, _)| matches!(cost, Cost::FMA(_)))
                .filter_map(|(_, count)| count.to_i64().ok())
                .sum::<i64>();
            steps.push(StepTime {
                name: node.name.clone(),
                op: node.op.name().to_string(),
                info: node.op.info().map_err(inference)?,
                multiply_adds: u64::try_from(multiply_adds).unwrap_or(0),
                seconds: seconds[node.id] / runs.max(1) as f64,
            });
        }
        steps.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(steps)
    }

    /// A chip must be the model's input size.
    fn check_chip(&self, chip: &RgbImage) -> Result<()> {
        let n = self.descriptor.input_size;
        if chip.dimensions() == (n, n) {
            Ok(())
        } else {
            Err(Error::ChipSize {
                expected: n,
                width: chip.width(),
                height: chip.height(),
            })
        }
    }

    fn run(&self, chip: &RgbImage) -> Result<Vec<f32>> {
        let input = to_tensor(chip, &self.descriptor).map_err(|e| self.inference_error(e))?;
        let outputs = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| self.inference_error(e))?;
        let output = outputs.first().ok_or_else(|| Error::NoOutput {
            model: self.descriptor.id.clone(),
        })?;
        let values = output
            .try_as_plain_ram()
            .and_then(|view| Ok(view.as_slice::<f32>()?.to_vec()))
            .map_err(|e| self.inference_error(e))?;
        Ok(values)
    }

    /// tract's `source` failed while embedding a chip.
    fn inference_error(&self, source: TractError) -> Error {
        Error::Inference {
            model: self.descriptor.id.clone(),
            size: self.descriptor.input_size,
            source,
        }
    }
}

/// Loads, types and optimises the model at `path` for inputs of `shape`: its convolutions on
/// `int8` kernels when given, else its larger 3x3 ones by Winograd's transform where this CPU
/// runs it (`crate::winograd`).
fn load_plan(
    path: &Path,
    shape: [usize; 4],
    int8: Option<crate::q8::Kernel>,
) -> TractResult<Arc<TypedRunnableModel>> {
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact(shape).into())?;
    let mut model = model.into_typed()?.into_decluttered()?;
    match int8 {
        Some(kernel) => crate::q8::replace_convs(&mut model, kernel)?,
        None => crate::winograd::replace_convs(&mut model)?,
    };
    model.into_optimized()?.into_runnable()
}

/// The model's input shape for one chip.
fn input_shape(d: &ModelDescriptor) -> [usize; 4] {
    let n = d.input_size as usize;
    match d.layout {
        Layout::Nchw => [1, 3, n, n],
        Layout::Nhwc => [1, n, n, 3],
    }
}

/// Lays out a chip as the model's input tensor with its normalisation.
fn to_tensor(chip: &RgbImage, d: &ModelDescriptor) -> TractResult<Tensor> {
    let n = d.input_size as usize;
    let plane = n * n;
    let mut data = vec![0.0f32; 3 * plane];
    let pixels = chip.as_raw();
    match d.layout {
        Layout::Nchw => {
            let (r, rest) = data.split_at_mut(plane);
            let (g, b) = rest.split_at_mut(plane);
            for (((px, r), g), b) in pixels.chunks_exact(3).zip(r).zip(g).zip(b) {
                (*r, *g, *b) = (f32::from(px[0]), f32::from(px[1]), f32::from(px[2]));
            }
        }
        Layout::Nhwc => {
            for (v, &p) in data.iter_mut().zip(pixels) {
                *v = f32::from(p);
            }
        }
    }
    match &d.normalisation {
        Normalisation::Raw => {}
        Normalisation::MeanStd { mean, std } => {
            for (i, v) in data.iter_mut().enumerate() {
                let c = match d.layout {
                    Layout::Nchw => i / plane,
                    Layout::Nhwc => i % 3,
                };
                *v = (*v - mean[c]) / std[c];
            }
        }
        Normalisation::Prewhiten => {
            let count = data.len() as f64;
            let mean = data.iter().map(|&v| f64::from(v)).sum::<f64>() / count;
            let var = data
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / count;
            let std = var.sqrt().max(1.0 / count.sqrt());
            for v in &mut data {
                *v = ((f64::from(*v) - mean) / std) as f32;
            }
        }
    }
    Ok(tract_ndarray::Array::from_shape_vec(input_shape(d), data)?.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &Tensor) -> Vec<f32> {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }

    /// The model's plan as tract alone makes it: no convolution of ours.
    fn tracts_plan(path: &Path, shape: [usize; 4]) -> Arc<TypedRunnableModel> {
        tract_onnx::onnx()
            .model_for_path(path)
            .unwrap()
            .with_input_fact(0, f32::fact(shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap()
    }

    #[test]
    fn winograd_convolutions_give_tracts_embeddings() {
        if !crate::winograd::available() {
            facerec_fixtures::skip("this CPU lacks AVX2 or FMA, so no model runs WinogradConv");
            return;
        }
        let photo = image::open(facerec_fixtures::photo("obama.jpg"))
            .unwrap()
            .to_rgb8();
        for (d, replaced) in [
            (ModelDescriptor::dlib_resnet_v1(), 18),
            (ModelDescriptor::mobilefacenet(), 0),
        ] {
            let path = facerec_fixtures::models_dir().join(&d.file);
            let shape = input_shape(&d);
            let mut model = tract_onnx::onnx()
                .model_for_path(&path)
                .unwrap()
                .with_input_fact(0, f32::fact(shape).into())
                .unwrap()
                .into_typed()
                .unwrap()
                .into_decluttered()
                .unwrap();
            assert_eq!(
                crate::winograd::replace_convs(&mut model).unwrap(),
                replaced,
                "{}: convolutions on Winograd",
                d.id
            );
            let n = d.input_size;
            let chip = image::imageops::resize(&photo, n, n, image::imageops::Triangle);
            let input = to_tensor(&chip, &d).unwrap();
            let ours = load_plan(&path, shape, None).unwrap();
            let ours = ours.run(tvec![input.clone().into()]).unwrap();
            let tracts = tracts_plan(&path, shape).run(tvec![input.into()]).unwrap();
            let (ours, tracts) = (values(&ours[0]), values(&tracts[0]));
            let diff = ours
                .iter()
                .zip(&tracts)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let largest = tracts.iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "{}: max |ours - tract's| = {diff:e} (largest value {largest})",
                d.id
            );
            assert!(diff <= 1e-4 * largest, "{}: differs by {diff}", d.id);
        }
    }

    #[test]
    fn tensor_layouts_and_normalisations() {
        let chip = RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8, y as u8, 200]));
        let mut d = ModelDescriptor::dlib_resnet_v1();
        d.input_size = 8;
        let v = values(&to_tensor(&chip, &d).unwrap());
        assert_eq!(v[3], 3.0, "R plane, x = 3");
        assert_eq!(v[64 + 8], 1.0, "G plane, y = 1");
        assert_eq!(v[128], 200.0, "B plane");
        d.layout = Layout::Nhwc;
        d.normalisation = Normalisation::MeanStd {
            mean: [1.0, 0.0, 100.0],
            std: [2.0, 1.0, 50.0],
        };
        let v = values(&to_tensor(&chip, &d).unwrap());
        assert_eq!(&v[33..36], &[(3.0 - 1.0) / 2.0, 1.0, 2.0], "pixel (3, 1)");
        d.normalisation = Normalisation::Prewhiten;
        let v = values(&to_tensor(&chip, &d).unwrap());
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4,
            "{mean} {var}"
        );
    }
}
