//! Loading the three ONNX networks and caching tract execution plans per input shape.
//!
//! tract runs much faster with concrete shapes than with symbolic ones, but P-Net sees a
//! different input size at every pyramid level (and R-Net / O-Net a different batch
//! size per image). Each [`Net`] therefore keeps the model decluttered once with
//! symbolic dimensions, and for every concrete shape it meets binds the symbols,
//! optimises and caches the resulting plan. The cache is bounded: once it holds
//! `capacity` plans, the least recently used one is evicted before a new one is
//! inserted, so images of arbitrary sizes cannot grow memory without bound (a P-Net plan
//! takes roughly 250 KB).
//!
//! Before tract sees them, the ONNX graphs are rewritten for speed without changing
//! what they compute:
//! - the final two-class `Softmax` is dropped and its logits returned instead
//!   ([`face_probability`] does the rest, for only the values needed);
//! - the leading `Transpose` from the models' `[N, W, H, 3]` input to the `[N, 3, W, H]`
//!   their convolutions use is removed: the pyramid and crop resampling writes that
//!   planar layout directly. (W and H are swapped throughout, as in the reference: the
//!   networks were trained on transposed images.)
//! - P-Net's two 1×1 output convolutions (box regression and face logits) are merged
//!   into one with 6 output channels, which saves packing their shared input twice.
//!
//! tract then runs `PRelu` and `MaxPool` as the detector's own operators
//! ([`ops`](crate::ops)): one pass per PReLU with a slope per channel, and a max pool that
//! folds whole rows before columns. Where the detector's [convolutions](crate::conv) run, a
//! PReLU right after one is merged into it and applied as its outputs are written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tract_onnx::prelude::*;

use tract_onnx::pb::{AttributeProto, GraphProto, NodeProto};

use crate::{Error, Result};

/// How a model's graph differs from the MTCNN graphs the detector rewrites before tract sees
/// them (it removes the input transpose, returns logits instead of the softmax and merges
/// P-Net's two output convolutions): the part it looked for and did not find.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphMismatch {
    /// The file holds no graph.
    #[error("the file holds no graph")]
    NoGraph,
    /// The input is not followed by the `[N, W, H, 3]` to `[N, 3, W, H]` transpose.
    #[error("no input Transpose with perm [0, 3, 1, 2] on {input:?}")]
    NoInputTranspose {
        /// The graph's first input.
        input: String,
    },
    /// Another node reads the input besides its transpose.
    #[error("the input {input:?} has consumers besides its Transpose")]
    InputConsumers {
        /// The graph's first input.
        input: String,
    },
    /// An output the detector reads is not in the graph.
    #[error("no tensor named {name:?} in the graph")]
    NoTensor {
        /// The tensor name.
        name: String,
    },
    /// An output to merge is not a `Conv` followed by a `Transpose`.
    #[error("output {output:?} is not a Conv followed by a Transpose")]
    NotConvHead {
        /// The output's name.
        output: String,
    },
    /// Not exactly two heads to merge.
    #[error("expected two heads to merge, got {found}")]
    HeadCount {
        /// How many there are.
        found: usize,
    },
    /// The two heads to merge read different inputs or have different attributes.
    #[error("heads {a:?} and {b:?} differ in input or attributes")]
    HeadsDiffer {
        /// The first head's node name.
        a: String,
        /// The second head's node name.
        b: String,
    },
}

/// An optimised, runnable plan for one concrete input shape.
type Plan = TypedRunnableModel;

/// One output tensor of a run: its shape and its values in row-major order.
#[derive(Debug)]
pub(crate) struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// How to load one of the three networks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NetSpec {
    /// `pnet`, `rnet` or `onet`; also the file stem.
    pub name: &'static str,
    /// The input shape `[N, 3, W, H]`: planar RGB, with W and H swapped (see the module
    /// docs).
    pub shape: [Dim; 4],
    /// Output tensor names of the original model; softmax outputs come back as logits.
    pub outputs: &'static [&'static str],
    /// Merge the two 1×1 output convolutions feeding these two outputs into one
    /// (P-Net), replacing both outputs by a single one with their channels concatenated.
    pub merge_heads: bool,
    /// Bound of the plan cache.
    pub capacity: usize,
}

/// One dimension of a network input: fixed, or a named symbol bound per run.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dim {
    Fixed(usize),
    Var(&'static str),
}

/// A cached plan and when it was last used.
struct CacheEntry {
    plan: Arc<Plan>,
    last_used: AtomicU64,
}

/// A network with its symbolic model and a bounded cache of concrete plans.
pub(crate) struct Net {
    name: &'static str,
    model: TypedModel,
    symbols: [Option<Symbol>; 4],
    cache: RwLock<HashMap<[usize; 4], CacheEntry>>,
    capacity: usize,
    /// Logical time for the LRU eviction.
    clock: AtomicU64,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cached = self.cache.read().map(|c| c.len()).unwrap_or_default();
        f.debug_struct("Net")
            .field("name", &self.name)
            .field("cached_plans", &cached)
            .finish()
    }
}

impl Net {
    /// Loads the ONNX model at `path`, applies the graph [`rewrites`](self) (softmax
    /// removal, and `merge_heads` for P-Net), fixes its single input to `f32` with the
    /// `shape` given (symbols for the varying dimensions), keeps `outputs` (by tensor name,
    /// in that order; a softmax output is replaced by its logits), declutters it and puts
    /// the detector's own PReLU and max pool [operators](crate::ops) and
    /// [convolutions](crate::conv) in.
    pub(crate) fn load(spec: &NetSpec, path: &Path) -> Result<Self> {
        let name = spec.name;
        let load_err = |source: TractError| Error::ModelLoad {
            net: name,
            path: path.to_path_buf(),
            source,
        };
        let graph_err = |mismatch: GraphMismatch| Error::ModelGraph {
            net: name,
            path: path.to_path_buf(),
            mismatch,
        };
        let bytes = std::fs::read(path).map_err(|source| Error::ModelRead {
            net: name,
            path: path.to_path_buf(),
            source,
        })?;
        let mut onnx = tract_onnx::onnx();
        crate::ops::register(&mut onnx);
        let mut proto = onnx
            .proto_model_for_read(&mut bytes.as_slice())
            .map_err(load_err)?;
        let graph = proto
            .graph
            .as_mut()
            .ok_or_else(|| graph_err(GraphMismatch::NoGraph))?;
        let outputs = rewrite(graph, spec.outputs, spec.merge_heads).map_err(graph_err)?;
        let mut model = onnx.model_for_proto_model(&proto).map_err(load_err)?;
        let symbols = spec.shape.map(|d| match d {
            Dim::Fixed(_) => None,
            Dim::Var(s) => Some(model.symbols.sym(s)),
        });
        let dims: Vec<TDim> = spec
            .shape
            .iter()
            .zip(&symbols)
            .map(|(d, s)| match (d, s) {
                (Dim::Fixed(n), _) => TDim::from(*n),
                (Dim::Var(_), Some(s)) => TDim::from(s.clone()),
                // `symbols` was built from `shape` above, so a `Var` always has a symbol.
                (Dim::Var(_), None) => TDim::from(1usize),
            })
            .collect();
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), dims))
            .map_err(load_err)?;
        model.select_outputs_by_name(&outputs).map_err(load_err)?;
        let mut model = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(load_err)?;
        crate::ops::replace_max_pools(&mut model).map_err(load_err)?;
        crate::conv::replace_convs(&mut model).map_err(load_err)?;
        Ok(Self {
            name,
            model,
            symbols,
            cache: RwLock::new(HashMap::new()),
            capacity: spec.capacity.max(1),
            clock: AtomicU64::new(0),
        })
    }

    /// The plan for a concrete input shape, from the cache or freshly optimised.
    fn plan(&self, shape: [usize; 4]) -> TractResult<Arc<Plan>> {
        let tick = self.clock.fetch_add(1, Ordering::Relaxed);
        // A poisoned lock only means another thread panicked while holding it; the map
        // itself is always left consistent, so keep using it.
        if let Some(entry) = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&shape)
        {
            entry.last_used.store(tick, Ordering::Relaxed);
            return Ok(Arc::clone(&entry.plan));
        }
        let start = std::time::Instant::now();
        let subs: HashMap<Symbol, TDim> = self
            .symbols
            .iter()
            .zip(shape)
            .filter_map(|(s, n)| s.clone().map(|s| (s, TDim::Val(n as i64))))
            .collect();
        let plan = self
            .model
            .set_symbols(&subs)?
            .into_optimized()?
            .into_runnable()?;
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= self.capacity && !cache.contains_key(&shape) {
            // Evict the least recently used plan (a linear scan: the cache is small).
            let victim = cache
                .iter()
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| *k);
            if let Some(victim) = victim {
                cache.remove(&victim);
            }
        }
        // Another thread may have built the same plan meanwhile; either copy will do.
        let plan = Arc::clone(
            &cache
                .entry(shape)
                .or_insert_with(|| CacheEntry {
                    plan,
                    last_used: AtomicU64::new(tick),
                })
                .plan,
        );
        tracing::debug!(
            net = self.name,
            ?shape,
            cached = cache.len(),
            ms = start.elapsed().as_secs_f64() * 1e3,
            "optimised plan"
        );
        Ok(plan)
    }

    /// Runs the network on one input tensor of `shape` holding `data` (row-major) and
    /// returns every selected output as its shape and a flat row-major `f32` vector.
    pub(crate) fn run(&self, shape: [usize; 4], data: Vec<f32>) -> Result<Vec<Output>> {
        self.run_inner(shape, data)
            .map_err(|source| Error::Inference {
                net: self.name,
                shape,
                source,
            })
    }

    fn run_inner(&self, shape: [usize; 4], data: Vec<f32>) -> TractResult<Vec<Output>> {
        let plan = self.plan(shape)?;
        let input = tract_ndarray::Array4::from_shape_vec(shape, data)?.into_tensor();
        let outputs = plan.run(tvec![input.into_tvalue()])?;
        outputs
            .iter()
            .map(|t| {
                Ok(Output {
                    shape: t.shape().to_vec(),
                    data: t.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
                })
            })
            .collect()
    }

    /// Whether a plan for `shape` is cached.
    #[cfg(test)]
    pub(crate) fn is_cached(&self, shape: [usize; 4]) -> bool {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&shape)
    }

    /// The number of plans currently cached.
    #[cfg(test)]
    pub(crate) fn cached_plans(&self) -> usize {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The face probability from two-class logits `[not face, face]` (the dropped softmax).
#[inline]
pub(crate) fn face_probability(logits: &[f32]) -> f32 {
    1.0 / (1.0 + (logits[0] - logits[1]).exp())
}

fn node(op: &str, name: String, inputs: Vec<String>, output: String) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input: inputs,
        output: vec![output],
        ..Default::default()
    }
}

/// Applies the rewrites described in the [module docs](self) to `graph`, returning the
/// names of the outputs to select in place of `outputs`.
fn rewrite(
    graph: &mut GraphProto,
    outputs: &[&str],
    merge_heads: bool,
) -> std::result::Result<Vec<String>, GraphMismatch> {
    // Feed the planar tensor straight in: drop `Transpose(input, perm = [0, 3, 1, 2])`.
    let input = graph
        .input
        .first()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let leading = graph.node.iter().position(|n| {
        n.op_type == "Transpose"
            && n.input.first() == Some(&input)
            && n.attribute
                .iter()
                .any(|a| a.name == "perm" && a.ints == [0, 3, 1, 2])
    });
    let Some(leading) = leading else {
        return Err(GraphMismatch::NoInputTranspose { input });
    };
    let transpose = graph.node.remove(leading);
    if !(graph.node.iter().all(|n| !n.input.contains(&input)) && transpose.output.len() == 1) {
        return Err(GraphMismatch::InputConsumers { input });
    }
    if let Some(i) = graph.input.first_mut() {
        // The declared (NHWC) shape is stale now, but `Net::load` replaces the input
        // fact anyway.
        i.name = transpose.output[0].clone();
    }

    // Softmax outputs -> their logits.
    let producer = |g: &GraphProto, tensor: &str| {
        g.node
            .iter()
            .position(|n| n.output.iter().any(|o| o == tensor))
    };
    let mut selected = Vec::new();
    for &out in outputs {
        match producer(graph, out).map(|i| &graph.node[i]) {
            Some(n) if n.op_type == "Softmax" => selected.push(n.input[0].clone()),
            Some(_) => selected.push(out.to_string()),
            None => {
                return Err(GraphMismatch::NoTensor {
                    name: out.to_owned(),
                });
            }
        }
    }
    if !merge_heads {
        return Ok(selected);
    }

    // Merge the two 1x1 convolutions behind the selected outputs (through the
    // NCHW -> NHWC Transpose each is followed by) into one Conv + Transpose.
    let mut convs = Vec::new();
    for out in &selected {
        let transpose = producer(graph, out).map(|i| &graph.node[i]);
        let conv = match transpose {
            Some(t) if t.op_type == "Transpose" => {
                producer(graph, &t.input[0]).map(|i| &graph.node[i])
            }
            _ => None,
        };
        match conv {
            Some(c) if c.op_type == "Conv" && c.input.len() == 3 => convs.push(c.clone()),
            _ => {
                return Err(GraphMismatch::NotConvHead {
                    output: out.clone(),
                });
            }
        }
    }
    let [a, b] = convs.as_slice() else {
        return Err(GraphMismatch::HeadCount { found: convs.len() });
    };
    if !(a.input[0] == b.input[0] && a.attribute == b.attribute) {
        return Err(GraphMismatch::HeadsDiffer {
            a: a.name.clone(),
            b: b.name.clone(),
        });
    }
    let axis0 = AttributeProto {
        name: "axis".into(),
        r#type: 2,
        i: 0,
        ..Default::default()
    };
    let perm = AttributeProto {
        name: "perm".into(),
        r#type: 7,
        ints: vec![0, 2, 3, 1],
        ..Default::default()
    };
    let mut kernel = node(
        "Concat",
        "heads.kernel".into(),
        vec![a.input[1].clone(), b.input[1].clone()],
        "heads.kernel".into(),
    );
    kernel.attribute.push(axis0.clone());
    let mut bias = node(
        "Concat",
        "heads.bias".into(),
        vec![a.input[2].clone(), b.input[2].clone()],
        "heads.bias".into(),
    );
    bias.attribute.push(axis0);
    let mut conv = node(
        "Conv",
        "heads.conv".into(),
        vec![
            a.input[0].clone(),
            "heads.kernel".into(),
            "heads.bias".into(),
        ],
        "heads.nchw".into(),
    );
    conv.attribute = a.attribute.clone();
    let mut transpose = node(
        "Transpose",
        "heads".into(),
        vec!["heads.nchw".into()],
        "heads".into(),
    );
    transpose.attribute.push(perm);
    graph.node.extend([kernel, bias, conv, transpose]);
    Ok(vec!["heads".into()])
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    pub(crate) fn noise(n: usize, mut seed: u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Runs the untouched ONNX model on an `[N, W, H, 3]` input.
    fn reference(file: &str, nhwc: [usize; 4], data: &[f32]) -> Vec<Vec<f32>> {
        let path = facerec_fixtures::models_dir().join(file);
        let mut model = tract_onnx::onnx().model_for_path(path).unwrap();
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), nhwc.to_vec()))
            .unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let input = Tensor::from_shape(&nhwc, data).unwrap();
        let out = plan.run(tvec![input.into_tvalue()]).unwrap();
        out.iter()
            .map(|t| {
                t.try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }

    /// `[N, W, H, 3]` -> `[N, 3, W, H]`.
    fn planar(nhwc: [usize; 4], data: &[f32]) -> Vec<f32> {
        let [n, w, h, c] = nhwc;
        let mut out = vec![0.0; data.len()];
        for b in 0..n {
            for x in 0..w {
                for y in 0..h {
                    for k in 0..c {
                        out[((b * c + k) * w + x) * h + y] = data[((b * w + x) * h + y) * c + k];
                    }
                }
            }
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        let worst = got
            .iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-4, "{what}: max difference {worst}");
    }

    fn probabilities(logits: &[f32]) -> Vec<f32> {
        logits
            .chunks(2)
            .flat_map(|l| [1.0 - face_probability(l), face_probability(l)])
            .collect()
    }

    fn pnet_with_capacity(capacity: usize) -> Net {
        let spec = NetSpec {
            name: "pnet",
            shape: [Dim::Fixed(1), Dim::Fixed(3), Dim::Var("W"), Dim::Var("H")],
            outputs: &["conv2d_4", "softmax"],
            merge_heads: true,
            capacity,
        };
        Net::load(&spec, &facerec_fixtures::models_dir().join("pnet.onnx")).unwrap()
    }

    /// How many nodes of `net`'s model run the op named `op`.
    fn count_ops(net: &Net, op: &str) -> usize {
        net.model
            .nodes()
            .iter()
            .filter(|n| n.op.name() == op)
            .count()
    }

    /// The detector's convolutions run all `convs` of a network where the CPU has them, with
    /// the PReLU after each merged in, so that only `prelus` PReLUs (after dense layers) stay
    /// ops of their own; tract runs them all elsewhere (P-Net's 1x1 heads become a matrix
    /// product in tract's declutter).
    fn assert_direct_convs(net: &Net, convs: usize, prelus: usize) {
        let ours = if crate::conv::available() { convs } else { 0 };
        assert_eq!(count_ops(net, "DirectConv"), ours, "{net:?}");
        assert_eq!(count_ops(net, "Conv"), convs - ours, "{net:?}");
        assert_eq!(
            count_ops(net, "ChannelPRelu"),
            prelus + convs - ours,
            "{net:?}"
        );
    }

    #[test]
    fn rewritten_pnet_matches_the_original() {
        let net = pnet_with_capacity(2);
        assert_direct_convs(&net, 3, 0);
        for (i, (w, h)) in [(40, 30), (13, 57), (40, 30)].into_iter().enumerate() {
            let nhwc = [1, w, h, 3];
            let data = noise(w * h * 3, i as u64 % 2);
            let want = reference("pnet.onnx", nhwc, &data);
            let got = net.run([1, 3, w, h], planar(nhwc, &data)).unwrap();
            let heads = &got[0];
            let (ow, oh) = (heads.shape[1], heads.shape[2]);
            assert_eq!(heads.shape, [1, ow, oh, 6]);
            assert_eq!((ow, oh), ((w - 2).div_ceil(2) - 4, (h - 2).div_ceil(2) - 4));
            let reg: Vec<f32> = heads.data.chunks(6).flat_map(|c| c[..4].to_vec()).collect();
            let logits: Vec<f32> = heads.data.chunks(6).flat_map(|c| c[4..].to_vec()).collect();
            assert_close(&reg, &want[0], "pnet regression");
            assert_close(&probabilities(&logits), &want[1], "pnet probabilities");
        }
        assert_eq!(net.cached_plans(), 2);
    }

    #[test]
    fn rewritten_rnet_and_onet_match_the_originals() {
        for (file, size, outputs) in [
            ("rnet.onnx", 24, &["dense_2", "softmax_1"][..]),
            ("onet.onnx", 48, &["dense_5", "dense_6", "softmax_2"][..]),
        ] {
            let spec = NetSpec {
                name: "net",
                shape: [
                    Dim::Var("N"),
                    Dim::Fixed(3),
                    Dim::Fixed(size),
                    Dim::Fixed(size),
                ],
                outputs,
                merge_heads: false,
                capacity: 1,
            };
            let net = Net::load(&spec, &facerec_fixtures::models_dir().join(file)).unwrap();
            // Both have a PReLU after their dense layer.
            match size {
                24 => assert_direct_convs(&net, 3, 1),
                _ => assert_direct_convs(&net, 4, 1),
            }
            for n in [1, 3] {
                let nhwc = [n, size, size, 3];
                let data = noise(n * size * size * 3, 7);
                let want = reference(file, nhwc, &data);
                let got = net.run([n, 3, size, size], planar(nhwc, &data)).unwrap();
                assert_eq!(got.len(), want.len());
                let last = got.len() - 1;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    if i == last {
                        assert_close(&probabilities(&g.data), w, file);
                    } else {
                        assert_close(&g.data, w, file);
                    }
                }
            }
            // Capacity 1: the second batch size evicted the first plan.
            assert_eq!(net.cached_plans(), 1);
        }
    }

    #[test]
    fn plan_cache_evicts_the_least_recently_used() {
        let net = pnet_with_capacity(2);
        let run = |w: usize, h: usize| {
            let out = net.run([1, 3, w, h], noise(3 * w * h, 3)).unwrap();
            assert_eq!(out[0].shape[3], 6);
        };
        let (a, b, c) = ([1, 3, 12, 12], [1, 3, 13, 12], [1, 3, 12, 14]);
        run(12, 12);
        run(13, 12);
        run(12, 12); // a is now more recent than b
        run(12, 14); // evicts b
        assert!(net.is_cached(a) && net.is_cached(c) && !net.is_cached(b));
        assert_eq!(net.cached_plans(), 2);
    }

    /// P-Net asked for an output it does not have.
    const NO_SUCH_OUTPUT: NetSpec = NetSpec {
        name: "pnet",
        shape: [Dim::Fixed(1); 4],
        outputs: &["nope"],
        merge_heads: false,
        capacity: 1,
    };

    #[test]
    fn load_errors_name_the_problem() {
        let spec = NO_SUCH_OUTPUT;
        let err = Net::load(&spec, &facerec_fixtures::models_dir().join("pnet.onnx"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pnet") && err.contains("nope"), "{err}");
        let missing = std::path::Path::new("/nonexistent/pnet.onnx");
        let err = Net::load(&spec, missing).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/pnet.onnx"), "{err}");
    }

    #[test]
    fn causes_stay_in_the_error_chain() {
        use std::error::Error as _;
        let spec = NO_SUCH_OUTPUT;
        let err = Net::load(&spec, &facerec_fixtures::models_dir().join("pnet.onnx")).unwrap_err();
        assert!(
            matches!(&err, Error::ModelGraph { mismatch: GraphMismatch::NoTensor { name }, .. } if name == "nope"),
            "{err}"
        );
        let missing = Net::load(&spec, std::path::Path::new("/nonexistent/pnet.onnx")).unwrap_err();
        let io = missing.source().unwrap().downcast_ref::<std::io::Error>();
        assert_eq!(
            io.map(std::io::Error::kind),
            Some(std::io::ErrorKind::NotFound)
        );

        let path = std::env::temp_dir().join(format!("facerec-detect-{}.onnx", std::process::id()));
        std::fs::write(&path, b"\xff\xff\xff not an ONNX model").unwrap();
        let err = Net::load(&spec, &path).unwrap_err();
        std::fs::remove_file(&path).ok();
        assert!(matches!(err, Error::ModelLoad { net: "pnet", .. }), "{err}");
        // The message names the operation; tract's own error follows in the chain.
        let tract = err.source().unwrap().to_string();
        assert!(
            !tract.is_empty() && !err.to_string().contains(&tract),
            "{err}: {tract}"
        );
    }
}
