//! Information-flow routes (Ferrando & Voita 2024): which parts of each residual update carry
//! the output, as a graph traced back from one output position.
//!
//! Nodes: (l, i, in) = x_l[i] for l in 0..=L, and (l, i, mid) = the residual after block l's
//! attention sublayer. The attention update at (l, i) is y = x_l[i] + b_O + Σ_j A_j with
//! A_j = Σ_h p_{h,i,j} (v_{h,j} W_O^h); the MLP update is y = mid + mlp. A part z of a sum y has
//! importance max(0, ‖y‖₁ − ‖y − z‖₁), normalised over the sum's parts. Edges: (l, j, in) →
//! (l, i, mid) of kind `attn` (A_j) or `resid` (j = i: x_l[i] + b_O); (l, i, mid) → (l+1, i, in)
//! of kind `mlp` or `resid`. From (L, P, in), the edges of importance ≥ τ reachable backwards
//! are kept.

use super::AnswerError;
use ndarray::{Array1, Array2, Array3, ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// The smallest threshold the routes are built for: per-head shares are kept only for
/// attention edges at least this important.
pub const MIN_THRESHOLD: f64 = 0.005;

/// The default threshold τ.
pub const DEFAULT_THRESHOLD: f64 = 0.04;

/// One query head's part of block l's attention update.
pub struct HeadParts<'a> {
    /// The query head.
    pub head: usize,
    /// Its probabilities. Shape: [query, key].
    pub pattern: ArrayView2<'a, f32>,
    /// v_{h,j} W_O^h for every key j. Shape: [key, d_model].
    pub out: Array2<f32>,
}

/// Block l's tensors as the routes read them.
pub struct LayerParts<'a> {
    /// x_l. Shape: [token, d_model].
    pub x: ArrayView2<'a, f32>,
    /// The attention sublayer's output (with its bias). Shape: [token, d_model].
    pub attn: ArrayView2<'a, f32>,
    /// The MLP's output. Shape: [token, d_model].
    pub mlp: ArrayView2<'a, f32>,
    /// What the attention update adds that no key carries: b_O, plus the constant output of
    /// mean-ablated heads. Shape: [d_model].
    pub constant: Option<Array1<f32>>,
    /// The heads whose output depends on the keys (zero-ablated heads add nothing and are left
    /// out).
    pub heads: Vec<HeadParts<'a>>,
}

/// Every importance of every sum, for one run: filtering by a threshold is then a walk.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteGraph {
    /// Query heads per layer.
    pub heads: usize,
    /// Per layer, [query, 1 + key]: column 0 the residual's importance, column 1 + j key j's.
    attn: Vec<Array2<f32>>,
    /// Per layer, [query, 2]: the residual's and the MLP's importance.
    mlp: Vec<Array2<f32>>,
    /// Per layer, [query, key, head]: each head's share of the attention edge (NaN where the
    /// edge is below [`MIN_THRESHOLD`]).
    head_shares: Vec<Array3<f32>>,
}

/// A node of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Node(pub usize, pub usize, pub Stage);

/// Where in a block a node sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// x_l: the block's input.
    In,
    /// After the attention sublayer.
    Mid,
}

/// What an edge carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeKind {
    /// A key's attention update.
    Attn,
    /// The MLP's update.
    Mlp,
    /// The residual stream itself.
    Resid,
}

/// One kept edge.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Edge {
    /// Where it starts.
    pub from: Node,
    /// Where it ends.
    pub to: Node,
    /// What it carries.
    pub kind: EdgeKind,
    /// Its importance in the sum at `to`.
    pub importance: f32,
    /// For attention edges, each head's share (adding up to `importance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heads: Option<Vec<f32>>,
}

/// The routes to one output position above a threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Routes {
    /// The output position P.
    pub position: usize,
    /// τ.
    pub threshold: f64,
    /// Every node on a kept edge, and the output node.
    pub nodes: Vec<Node>,
    /// The kept edges.
    pub edges: Vec<Edge>,
}

/// max(0, ‖y‖₁ − ‖y − z‖₁).
fn raw_importance(y: ArrayView1<'_, f32>, y_l1: f64, z: &[f32]) -> f64 {
    let rest: f64 = y
        .iter()
        .zip(z)
        .map(|(&a, &b)| f64::from((a - b).abs()))
        .sum();
    (y_l1 - rest).max(0.0)
}

fn l1(v: ArrayView1<'_, f32>) -> f64 {
    v.iter().map(|&a| f64::from(a.abs())).sum()
}

/// Divides `v` by its sum (all zero when the sum is).
fn normalise(v: &mut [f64]) {
    let total: f64 = v.iter().sum();
    if total > 0.0 {
        v.iter_mut().for_each(|x| *x /= total);
    }
}

impl RouteGraph {
    /// The importances of every sum of `layers` (block 0 first), `heads` query heads per layer.
    pub fn build(layers: &[LayerParts<'_>], heads: usize) -> Result<Self, AnswerError> {
        let mut graph = RouteGraph {
            heads,
            attn: Vec::with_capacity(layers.len()),
            mlp: Vec::with_capacity(layers.len()),
            head_shares: Vec::with_capacity(layers.len()),
        };
        for (l, parts) in layers.iter().enumerate() {
            let (n, d) = parts.x.dim();
            if parts.attn.dim() != (n, d) || parts.mlp.dim() != (n, d) {
                return Err(AnswerError::Bad(format!(
                    "layer {l}'s tensors do not share the shape [{n}, {d}]"
                )));
            }
            for hp in &parts.heads {
                if hp.pattern.dim() != (n, n) || hp.out.dim() != (n, d) || hp.head >= heads {
                    return Err(AnswerError::Bad(format!(
                        "layer {l}, head {}: pattern or output of the wrong shape",
                        hp.head
                    )));
                }
            }
            let rows: Vec<(Vec<f32>, [f32; 2], Vec<f32>)> = (0..n)
                .into_par_iter()
                .map(|i| attention_row(parts, i, heads))
                .collect();
            let mut attn = Array2::zeros((n, n + 1));
            let mut mlp = Array2::zeros((n, 2));
            let mut shares = Array3::from_elem((n, n, heads), f32::NAN);
            for (i, (a, m, s)) in rows.into_iter().enumerate() {
                attn.row_mut(i).assign(&Array1::from(a));
                mlp.row_mut(i).assign(&Array1::from(m.to_vec()));
                for (j, chunk) in s.chunks(heads).enumerate() {
                    shares
                        .index_axis_mut(Axis(0), i)
                        .row_mut(j)
                        .assign(&ndarray::ArrayView1::from(chunk));
                }
            }
            graph.attn.push(attn);
            graph.mlp.push(mlp);
            graph.head_shares.push(shares);
        }
        Ok(graph)
    }

    /// The number of blocks.
    pub fn layers(&self) -> usize {
        self.attn.len()
    }

    /// The number of tokens.
    pub fn tokens(&self) -> usize {
        self.attn.first().map_or(0, |a| a.nrows())
    }

    /// The edges of importance ≥ `threshold` reachable backwards from (L, `position`, in).
    pub fn routes(&self, position: usize, threshold: f64) -> Result<Routes, AnswerError> {
        let n = self.tokens();
        if position >= n {
            return Err(AnswerError::Bad(format!(
                "position {position} is out of range: the input has {n} tokens (0-based)"
            )));
        }
        if !(threshold.is_finite() && (MIN_THRESHOLD..=1.0).contains(&threshold)) {
            return Err(AnswerError::Bad(format!(
                "threshold {threshold} is out of range: it must be between {MIN_THRESHOLD} and 1"
            )));
        }
        let big = threshold as f32;
        let layers = self.layers();
        let out = Node(layers, position, Stage::In);
        let mut nodes = std::collections::BTreeSet::from([out]);
        let mut edges = Vec::new();
        // `reached[i]`: (l + 1, i, in) is on a kept route, walking from the top block down.
        let mut reached = vec![false; n];
        reached[position] = true;
        for l in (0..layers).rev() {
            let mut mid = vec![false; n];
            for i in (0..n).filter(|&i| reached[i]) {
                let to = Node(l + 1, i, Stage::In);
                let from = Node(l, i, Stage::Mid);
                for (col, kind) in [(1, EdgeKind::Mlp), (0, EdgeKind::Resid)] {
                    let importance = self.mlp[l][[i, col]];
                    if importance >= big {
                        mid[i] = true;
                        edges.push(Edge {
                            from,
                            to,
                            kind,
                            importance,
                            heads: None,
                        });
                    }
                }
            }
            let mut below = vec![false; n];
            for i in (0..n).filter(|&i| mid[i]) {
                let to = Node(l, i, Stage::Mid);
                nodes.insert(to);
                let resid = self.attn[l][[i, 0]];
                if resid >= big {
                    below[i] = true;
                    edges.push(Edge {
                        from: Node(l, i, Stage::In),
                        to,
                        kind: EdgeKind::Resid,
                        importance: resid,
                        heads: None,
                    });
                }
                for (j, reached_j) in below.iter_mut().enumerate() {
                    let importance = self.attn[l][[i, 1 + j]];
                    if importance >= big {
                        *reached_j = true;
                        let shares = self.head_shares[l].index_axis(Axis(0), i);
                        edges.push(Edge {
                            from: Node(l, j, Stage::In),
                            to,
                            kind: EdgeKind::Attn,
                            importance,
                            heads: Some(shares.row(j).iter().map(|&s| s.max(0.0)).collect()),
                        });
                    }
                }
            }
            for (i, &b) in below.iter().enumerate() {
                if b {
                    nodes.insert(Node(l, i, Stage::In));
                }
            }
            reached = below;
        }
        Ok(Routes {
            position,
            threshold,
            nodes: nodes.into_iter().collect(),
            edges,
        })
    }
}

/// The importances of query `i`'s two sums in one block: the attention update's parts
/// (residual, then each key), the MLP update's (residual, MLP), and each head's share of each
/// key's edge ([key][head] flattened; NaN below [`MIN_THRESHOLD`]).
fn attention_row(parts: &LayerParts<'_>, i: usize, heads: usize) -> (Vec<f32>, [f32; 2], Vec<f32>) {
    let (n, d) = parts.x.dim();
    let x = parts.x.row(i);
    let y: Array1<f32> = &x + &parts.attn.row(i);
    let y_l1 = l1(y.view());
    let mut resid: Vec<f32> = x.to_vec();
    if let Some(c) = &parts.constant {
        resid.iter_mut().zip(c).for_each(|(r, &c)| *r += c);
    }
    let mut raw = Vec::with_capacity(n + 1);
    raw.push(raw_importance(y.view(), y_l1, &resid));
    let mut a = vec![0.0f32; d];
    for j in 0..n {
        a.iter_mut().for_each(|v| *v = 0.0);
        for hp in &parts.heads {
            let p = hp.pattern[[i, j]];
            if p != 0.0 {
                a.iter_mut()
                    .zip(hp.out.row(j))
                    .for_each(|(s, &o)| *s += p * o);
            }
        }
        raw.push(raw_importance(y.view(), y_l1, &a));
    }
    normalise(&mut raw);
    let mut shares = vec![f32::NAN; n * heads];
    for j in 0..n {
        let edge = raw[1 + j];
        if edge < MIN_THRESHOLD {
            continue;
        }
        let mut h_raw = vec![0.0f64; heads];
        let mut part = vec![0.0f32; d];
        for hp in &parts.heads {
            let p = hp.pattern[[i, j]];
            part.iter_mut()
                .zip(hp.out.row(j))
                .for_each(|(s, &o)| *s = p * o);
            h_raw[hp.head] = raw_importance(y.view(), y_l1, &part);
        }
        normalise(&mut h_raw);
        for (h, v) in h_raw.iter().enumerate() {
            shares[j * heads + h] = (v * edge) as f32;
        }
    }
    let out: Array1<f32> = &y + &parts.mlp.row(i);
    let out_l1 = l1(out.view());
    let mut m = [
        raw_importance(out.view(), out_l1, &y.to_vec()),
        raw_importance(out.view(), out_l1, &parts.mlp.row(i).to_vec()),
    ];
    normalise(&mut m);
    (
        raw.iter().map(|&v| v as f32).collect(),
        [m[0] as f32, m[1] as f32],
        shares,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Two tokens, d = 2, one head, two blocks, no biases.
    ///
    /// Block 0: x = [[1,0],[0,1]], pattern rows [1,0] and [.5,.5], v·W_O = [[2,0],[0,2]], so
    /// attn = [[2,0],[1,1]]; mlp = [[0,0],[1,0]].
    /// - (0,1): y = x + attn = [1,2], ‖y‖₁ = 3. resid [0,1]: ‖y − z‖₁ = 2 → 1; A_0 = [1,0] → 2 →
    ///   1; A_1 = [0,1] → 1. Normalised 1/3 each. MLP sum [2,2] (4): mid [1,2] leaves [1,0] → 3;
    ///   mlp [1,0] leaves [1,2] → 1: 0.75 and 0.25.
    /// - (0,0): y = [3,0] (3). resid [1,0] → 1; A_0 = [2,0] → 2; A_1 = 0 → 0: 1/3, 2/3, 0. MLP
    ///   zero: resid 1, mlp 0.
    ///
    /// Block 1: x = [[3,0],[2,2]], pattern rows [1,0] and [1,0], v·W_O row 0 = [1,1] (row 1
    /// zero), so attn row 1 = [1,1]; mlp zero.
    /// - (1,1): y = [3,3] (6). resid [2,2] leaves [1,1] → 4; A_0 = [1,1] leaves [2,2] → 2;
    ///   A_1 = 0 → 0: 2/3, 1/3, 0. MLP zero: resid 1, mlp 0.
    ///
    /// From (2,1,in) at τ = 0.04: block 1 keeps (1,1,mid)→(2,1,in) resid, (1,1,in)→(1,1,mid)
    /// resid and (1,0,in)→(1,1,mid) attn (3 edges); block 0 keeps for token 1 the mlp and resid
    /// edges, for token 0 resid (3), then (0,1,mid)'s resid, A_0, A_1 and (0,0,mid)'s resid and
    /// A_0 (5): 11 edges.
    #[test]
    fn two_blocks_by_hand() {
        let x0 = array![[1.0f32, 0.0], [0.0, 1.0]];
        let attn0 = array![[2.0f32, 0.0], [1.0, 1.0]];
        let mlp0 = array![[0.0f32, 0.0], [1.0, 0.0]];
        let p0 = array![[1.0f32, 0.0], [0.5, 0.5]];
        let x1 = array![[3.0f32, 0.0], [2.0, 2.0]];
        let attn1 = array![[1.0f32, 1.0], [1.0, 1.0]];
        let mlp1 = Array2::<f32>::zeros((2, 2));
        let p1 = array![[1.0f32, 0.0], [1.0, 0.0]];
        let layers = [
            LayerParts {
                x: x0.view(),
                attn: attn0.view(),
                mlp: mlp0.view(),
                constant: None,
                heads: vec![HeadParts {
                    head: 0,
                    pattern: p0.view(),
                    out: array![[2.0f32, 0.0], [0.0, 2.0]],
                }],
            },
            LayerParts {
                x: x1.view(),
                attn: attn1.view(),
                mlp: mlp1.view(),
                constant: None,
                heads: vec![HeadParts {
                    head: 0,
                    pattern: p1.view(),
                    out: array![[1.0f32, 1.0], [0.0, 0.0]],
                }],
            },
        ];
        let graph = RouteGraph::build(&layers, 1).unwrap();
        let close = |a: f32, b: f64| (f64::from(a) - b).abs() < 1e-6;
        let third = 1.0 / 3.0;
        for (got, want) in graph.attn[0].row(1).iter().zip([third, third, third]) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        for (got, want) in graph.attn[0].row(0).iter().zip([third, 2.0 * third, 0.0]) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        assert!(close(graph.mlp[0][[1, 0]], 0.75) && close(graph.mlp[0][[1, 1]], 0.25));
        for (got, want) in graph.attn[1].row(1).iter().zip([2.0 * third, third, 0.0]) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        // Every sum's importances add up to 1.
        for l in 0..2 {
            for i in 0..2 {
                assert!(close(graph.attn[l].row(i).sum(), 1.0));
                assert!(close(graph.mlp[l].row(i).sum(), 1.0));
            }
        }
        let routes = graph.routes(1, DEFAULT_THRESHOLD).unwrap();
        assert_eq!(routes.edges.len(), 11, "{:#?}", routes.edges);
        let attn_edge = routes
            .edges
            .iter()
            .find(|e| e.kind == EdgeKind::Attn && e.to == Node(1, 1, Stage::Mid))
            .unwrap();
        assert_eq!(attn_edge.from, Node(1, 0, Stage::In));
        // One head: it carries the whole edge.
        assert!(close(attn_edge.heads.as_ref().unwrap()[0], third));
        assert!(routes.nodes.contains(&Node(0, 0, Stage::In)));
        // A higher threshold keeps less: at 0.5 only the heaviest path survives.
        let strict = graph.routes(1, 0.5).unwrap();
        assert!(strict.edges.iter().all(|e| e.importance >= 0.5));
        assert!(strict.edges.len() < routes.edges.len());
        assert!(graph.routes(2, 0.1).is_err());
        assert!(graph.routes(1, 0.0).is_err());
    }
}
