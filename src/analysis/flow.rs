//! Attention flow (Abnar & Zuidema 2020): how much of output position Q can be traced back to
//! each input token when the layers are a flow network.
//!
//! The network has one node per (level, token): level 0 holds the input tokens, level k the
//! output of the k-th layer of the chosen range. Layer l's W′ (the rollout's: heads fused, then
//! α·A + (1 − α)·I with rows renormalised, [`super::rollout::mixing_matrix`]) gives the edge
//! (level k, key j) → (level k + 1, query i) the capacity W′[i, j]. The flow of input token j
//! is the maximum flow from (0, j) to (top, Q), computed with petgraph's Dinic's algorithm.
//!
//! The graph is built once for Q and shared by the N problems (one per source token), which
//! run in parallel. Capacities are quantised to integers (multiples of 2⁻⁴⁰ ≈ 9·10⁻¹³) so that
//! the algorithm's exact comparisons against zero hold: with f64 capacities a residual of
//! 10⁻¹⁷ left by rounding would count as an open edge. Each flow is off by at most the number
//! of edges into the sink times 2⁻⁴¹.
//!
//! Pure: no files, no UI. Cancellable between batches of problems.

use super::rollout::{RolloutOptions, layer_span, mixing_matrix};
use crate::engine::AttentionMaps;
use petgraph::graph::{DiGraph, NodeIndex};
use rayon::prelude::*;

/// Capacities are multiples of 1 / `CAPACITY_SCALE`.
const CAPACITY_SCALE: f64 = (1u64 << 40) as f64;

/// How a flow is computed: W′ as in the rollout, and the output position.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FlowOptions {
    /// Head fusion, α and the layer range, as in the rollout.
    pub rollout: RolloutOptions,
    /// The output position Q (0-based); `None`: the last token.
    pub query: Option<usize>,
}

/// Why a flow cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// The maps have no layers (a run that kept no maps).
    #[error("the attention flow needs attention maps, and this run has none")]
    NoMaps,
    /// Q is not a token.
    #[error("query {query} does not exist (the input has {tokens} tokens, 0..{})", tokens.saturating_sub(1))]
    QueryOutOfRange {
        /// The position asked for.
        query: usize,
        /// How many tokens there are.
        tokens: usize,
    },
    /// A capacity is NaN, infinite or negative.
    #[error(
        "the flow capacity W′[{query}, {key}] of layer {layer} is {value}; capacities must be finite and ≥ 0"
    )]
    BadCapacity {
        /// The layer.
        layer: usize,
        /// Its query row.
        query: usize,
        /// Its key column.
        key: usize,
        /// The value found.
        value: f64,
    },
    /// α or the layer range is wrong.
    #[error("{0}")]
    Options(String),
    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// The flow of every input token into output position Q, and Q.
#[derive(Clone, Debug, PartialEq)]
pub struct Flow {
    /// The output position.
    pub query: usize,
    /// Per input token, the maximum flow from it to Q (raw, not normalised).
    pub flow: Vec<f64>,
}

impl Flow {
    /// The flows divided by their sum (the paper's display); all zeros when the sum is 0.
    pub fn normalized(&self) -> Vec<f64> {
        let sum: f64 = self.flow.iter().sum();
        self.flow
            .iter()
            .map(|&f| if sum > 0.0 { f / sum } else { 0.0 })
            .collect()
    }
}

/// Problems solved between two progress calls (and two cancellation checks).
const BATCH: usize = 8;

/// The attention flow of `maps` into `opts.query` (by default the last token). `progress` gets
/// (problems done, problems) after each batch; returning false cancels
/// ([`FlowError::Cancelled`]).
pub fn attention_flow(
    maps: &AttentionMaps,
    opts: &FlowOptions,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Flow, FlowError> {
    let n = maps.len();
    if maps.layers() == 0 || n == 0 {
        return Err(FlowError::NoMaps);
    }
    let (first, last) = layer_span(maps, &opts.rollout).map_err(FlowError::Options)?;
    let query = opts.query.unwrap_or(n - 1);
    if query >= n {
        return Err(FlowError::QueryOutOfRange { query, tokens: n });
    }
    let mut capacities = Vec::with_capacity(last + 1 - first);
    for l in first..=last {
        let w = mixing_matrix(maps, l, opts.rollout.fusion, opts.rollout.alpha);
        if let Some(((i, j), &value)) = w.indexed_iter().find(|(_, v)| !v.is_finite() || **v < 0.0)
        {
            return Err(FlowError::BadCapacity {
                layer: l,
                query: i,
                key: j,
                value,
            });
        }
        capacities.push(w);
    }
    let network = Network::build(&capacities, query);
    let mut flow = vec![0.0; n];
    let mut done = 0;
    for chunk in flow.chunks_mut(BATCH) {
        let start = done;
        chunk
            .par_iter_mut()
            .enumerate()
            .for_each(|(k, f)| *f = network.max_flow(start + k));
        done += chunk.len();
        if !progress(done, n) {
            return Err(FlowError::Cancelled);
        }
    }
    Ok(Flow { query, flow })
}

/// The flow network of one output position, built once for all sources.
struct Network {
    graph: DiGraph<(), u64>,
    /// Node of (level 0, token j), or `None` when j cannot reach the sink.
    sources: Vec<Option<NodeIndex>>,
    sink: NodeIndex,
}

impl Network {
    /// The network of the layers' W′ (`capacities`, first to last) into `query` at the top.
    /// Only nodes that can reach the sink and edges of positive capacity are kept.
    fn build(capacities: &[ndarray::Array2<f64>], query: usize) -> Network {
        let levels = capacities.len() + 1;
        let n = capacities.first().map_or(0, |w| w.nrows());
        // reaches[k][i]: node (k, i) has a path of positive capacities to (top, Q).
        let mut reaches = vec![vec![false; n]; levels];
        reaches[levels - 1][query] = true;
        for k in (0..levels - 1).rev() {
            let w = &capacities[k];
            for j in 0..n {
                reaches[k][j] = (0..n).any(|i| reaches[k + 1][i] && quantised(w[(i, j)]) > 0);
            }
        }
        let mut graph = DiGraph::<(), u64>::new();
        let mut node = vec![vec![None; n]; levels];
        for (k, level) in reaches.iter().enumerate() {
            for (i, &r) in level.iter().enumerate() {
                if r {
                    node[k][i] = Some(graph.add_node(()));
                }
            }
        }
        for (k, w) in capacities.iter().enumerate() {
            for i in 0..n {
                let Some(up) = node[k + 1][i] else { continue };
                for j in 0..n {
                    let cap = quantised(w[(i, j)]);
                    if let (Some(down), true) = (node[k][j], cap > 0) {
                        graph.add_edge(down, up, cap);
                    }
                }
            }
        }
        let sink =
            node[levels - 1][query].unwrap_or_else(|| unreachable!("the sink reaches itself"));
        Network {
            graph,
            sources: node[0].clone(),
            sink,
        }
    }

    /// The maximum flow from input token `j` to the sink.
    fn max_flow(&self, j: usize) -> f64 {
        self.max_flow_edges(j).map_or(0.0, |(value, _)| value)
    }

    /// The maximum flow from input token `j` and the flow on every edge (by edge index), or
    /// `None` when j cannot reach the sink.
    fn max_flow_edges(&self, j: usize) -> Option<(f64, Vec<u64>)> {
        let source = self.sources.get(j).copied().flatten()?;
        let (value, edges) = petgraph::algo::dinics(&self.graph, source, self.sink);
        Some((value as f64 / CAPACITY_SCALE, edges))
    }
}

/// `w` as an integer capacity (multiples of 2⁻⁴⁰). W′ entries lie in [0, 1].
fn quantised(w: f64) -> u64 {
    (w.clamp(0.0, 1.0) * CAPACITY_SCALE).round() as u64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::analysis::rollout::HeadFusion;
    use ndarray::{Array2, array};

    fn maps(layers: Vec<Vec<Array2<f32>>>) -> AttentionMaps {
        let (l, h, n) = (layers.len(), layers[0].len(), layers[0][0].nrows());
        AttentionMaps::from_heads(l, h, n, layers.into_iter().flatten().collect()).unwrap()
    }

    fn all(m: &AttentionMaps, opts: &FlowOptions) -> Result<Flow, FlowError> {
        attention_flow(m, opts, &mut |_, _| true)
    }

    #[test]
    fn two_layers_by_hand() {
        // α = 1 (no residual) so W′ = A. Three tokens, Q = 2.
        // Layer 0: A0 = [[1,0,0],[0.5,0.5,0],[0.2,0.3,0.5]]; layer 1: A1 = [[1,0,0],
        // [0.6,0.4,0],[0.1,0.8,0.1]]. Edges into the sink (2, 2): from (1,0) 0.1, (1,1) 0.8,
        // (1,2) 0.1.
        // Source token 0: paths 0→(1,0)→Q carry min(1, 0.1) = 0.1; 0→(1,1)→Q carry
        // min(0.5, 0.8) = 0.5; 0→(1,2)→Q carry min(0.2, 0.1) = 0.1. Flow 0.7.
        // Token 1: (1,1) gives min(0.5, 0.8) = 0.5, (1,2) gives min(0.3, 0.1) = 0.1: 0.6.
        // Token 2: only (1,2): min(0.5, 0.1) = 0.1.
        let a0 = array![[1.0f32, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]];
        let a1 = array![[1.0f32, 0.0, 0.0], [0.6, 0.4, 0.0], [0.1, 0.8, 0.1]];
        let m = maps(vec![vec![a0], vec![a1]]);
        let opts = FlowOptions {
            rollout: RolloutOptions {
                alpha: 1.0,
                ..RolloutOptions::default()
            },
            query: None,
        };
        let f = all(&m, &opts).unwrap();
        assert_eq!(f.query, 2);
        for (got, want) in f.flow.iter().zip([0.7, 0.6, 0.1]) {
            assert!((got - want).abs() < 1e-7, "{:?}", f.flow);
        }
        // Divided by their sum 1.4: 0.5, 3/7, 1/14.
        let norm = f.normalized();
        assert!((norm[0] - 0.5).abs() < 1e-7 && (norm[2] - 1.0 / 14.0).abs() < 1e-7);
        // Q = 0 in a causal model: only token 0 reaches it, through (1,0) with capacity 1
        // from (0,0): 1·1 = 1.
        let f0 = all(
            &m,
            &FlowOptions {
                query: Some(0),
                ..opts
            },
        )
        .unwrap();
        assert_eq!(f0.flow, vec![1.0, 0.0, 0.0]);
        // With α = 0.5, layer 1 alone: W′1 row 2 = 0.5·[0.1,0.8,0.1] + [0,0,0.5]
        // = [0.05, 0.4, 0.55]: one layer, so each flow is its one edge.
        let one = FlowOptions {
            rollout: RolloutOptions {
                layers: Some((1, 1)),
                fusion: HeadFusion::Mean,
                alpha: 0.5,
            },
            query: None,
        };
        let f1 = all(&m, &one).unwrap();
        for (got, want) in f1.flow.iter().zip([0.05, 0.4, 0.55]) {
            assert!((got - want).abs() < 1e-7, "{:?}", f1.flow);
        }
    }

    #[test]
    fn flow_never_exceeds_the_capacities() {
        // A dense 5-token, 3-layer, 2-head network: on every edge 0 ≤ flow ≤ capacity, flow
        // is conserved at every inner node, and the value is what leaves the source, at most
        // what the source's edges and the sink's edges can carry.
        let n = 5;
        let head = |seed: u32| {
            let mut a = Array2::from_shape_fn((n, n), |(i, j)| {
                ((i as u32 * 7 + j as u32 * 13 + seed * 31) % 17 + 1) as f32
            });
            for mut row in a.rows_mut() {
                let s = row.sum();
                row /= s;
            }
            a
        };
        let m = maps(vec![
            vec![head(1), head(2)],
            vec![head(3), head(4)],
            vec![head(5), head(6)],
        ]);
        let w: Vec<Array2<f64>> = (0..3)
            .map(|l| mixing_matrix(&m, l, HeadFusion::Mean, 0.5))
            .collect();
        for q in 0..n {
            let network = Network::build(&w, q);
            let g = &network.graph;
            for j in 0..n {
                let (value, flows) = network.max_flow_edges(j).unwrap();
                let source = network.sources[j].unwrap();
                let mut net = vec![0i128; g.node_count()];
                for e in g.edge_indices() {
                    let (a, b) = g.edge_endpoints(e).unwrap();
                    let (f, cap) = (flows[e.index()], g[e]);
                    assert!(f <= cap, "edge {a:?}->{b:?}: flow {f} > capacity {cap}");
                    net[a.index()] -= i128::from(f);
                    net[b.index()] += i128::from(f);
                }
                for v in g.node_indices() {
                    if v != source && v != network.sink {
                        assert_eq!(net[v.index()], 0, "node {v:?}");
                    }
                }
                let out = -net[source.index()] as f64 / CAPACITY_SCALE;
                assert!((out - value).abs() < 1e-12);
                assert!(value > 0.0 && value <= w[0].column(j).sum() + 1e-9);
                assert!(value <= w[2].row(q).sum() + 1e-9);
                assert_eq!(value, network.max_flow(j));
            }
        }
        // One layer: each flow is its one edge.
        let single = FlowOptions {
            rollout: RolloutOptions {
                layers: Some((2, 2)),
                ..RolloutOptions::default()
            },
            query: Some(1),
        };
        let f = all(&m, &single).unwrap();
        for (j, &fj) in f.flow.iter().enumerate() {
            assert!((fj - w[2][(1, j)]).abs() < 1e-9);
        }
    }

    #[test]
    fn bad_input_is_refused_and_progress_can_cancel() {
        let a = array![[1.0f32, 0.0], [0.5, 0.5]];
        let m = maps(vec![vec![a]]);
        let err = all(
            &m,
            &FlowOptions {
                query: Some(2),
                ..FlowOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "query 2 does not exist (the input has 2 tokens, 0..1)"
        );
        let nan = array![[1.0f32, 0.0], [f32::NAN, 0.5]];
        let err = all(&maps(vec![vec![nan]]), &FlowOptions::default()).unwrap_err();
        assert!(
            matches!(err, FlowError::BadCapacity { layer: 0, .. }),
            "{err}"
        );
        let err = attention_flow(&m, &FlowOptions::default(), &mut |_, _| false).unwrap_err();
        assert_eq!(err, FlowError::Cancelled);
        let empty = AttentionMaps::from_heads(0, 0, 2, Vec::new()).unwrap();
        assert_eq!(
            all(&empty, &FlowOptions::default()).unwrap_err(),
            FlowError::NoMaps
        );
    }
    #[test]
    fn flows_equal_networkx_on_random_graphs() {
        // tests/fixtures/flow/make_flow_fixtures.py: random stacks, mean/max/min fusion, α,
        // layer ranges and queries, max flows from networkx.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/flow/flow_cases.json"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = json["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 5);
        for (c, case) in cases.iter().enumerate() {
            let stack: Vec<Vec<Vec<Vec<f32>>>> =
                serde_json::from_value(case["maps"].clone()).unwrap();
            let layers: Vec<Vec<Array2<f32>>> = stack
                .iter()
                .map(|heads| {
                    heads
                        .iter()
                        .map(|rows| {
                            let n = rows.len();
                            Array2::from_shape_vec((n, n), rows.concat()).unwrap()
                        })
                        .collect()
                })
                .collect();
            let m = maps(layers);
            let range: Option<(usize, usize)> =
                serde_json::from_value(case["layers"].clone()).unwrap();
            let opts = FlowOptions {
                rollout: RolloutOptions {
                    fusion: case["fusion"].as_str().unwrap().parse().unwrap(),
                    alpha: case["alpha"].as_f64().unwrap(),
                    layers: range,
                },
                query: serde_json::from_value(case["query"].clone()).unwrap(),
            };
            let got = all(&m, &opts).unwrap();
            let want: Vec<f64> = serde_json::from_value(case["flow"].clone()).unwrap();
            assert_eq!(got.flow.len(), want.len());
            for (g, w) in got.flow.iter().zip(&want) {
                assert!(
                    (g - w).abs() < 1e-9,
                    "case {c}: {:?} vs networkx {want:?}",
                    got.flow
                );
            }
        }
    }
}
