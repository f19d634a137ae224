//! Teaching numbers (issue 11): what each classic mistake measurably does, the cost of attention
//! as the input grows, which dimensions carry a head's scores, and how the softmax's entropy
//! depends on the head width with and without the 1/√d_head scale.
//!
//! Pure functions of runs and options, plus [`mistake_effect`], which runs a model two to four
//! times (with and without one [`Mistake`]) through the runner it is given (the pipeline's:
//! `pipeline::mistake_effect`). Nothing here touches files or the UI.

use crate::engine::{
    AttentionMaps, AttentionRun, HeadTrace, MaskError, MaskSpec, Mistake, RunOptions,
};
use crate::model::ModelInfo;
use crate::tokenize::Token;
use ndarray::ArrayView2;

/// The cost of one layer's attention sublayer for an input of `n` tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add counts 2).
    pub flops: f64,
    /// Bytes of f32 memory the sublayer holds: the heads' score matrices plus its activations.
    pub bytes: f64,
}

/// The dense cost of one attention sublayer at `n` tokens, width `d_model` and `heads` heads:
/// [`attention_cost_cells`] with every one of the n² cells computed, as attnviz (and a dense
/// kernel) does. Quadratic in n: doubling the input quadruples the score work and memory.
pub fn attention_cost(n: usize, d_model: usize, heads: usize) -> Cost {
    let n64 = n as u64;
    attention_cost_cells(n, n64.saturating_mul(n64), d_model, heads)
}

/// The cost of one attention sublayer that computes only `cells` (query, key) pairs per head (a
/// sparse kernel over a mask's allowed cells; `cells` = n² for dense attention):
/// - flops: the q/k/v projections 3·2·n·d², the scores and the weighted sum 2·2·cells·d (summed
///   over heads, whose widths add up to d), the softmax's max, exp, sum and divide 4·cells per
///   head, and the output projection 2·n·d²;
/// - bytes: one f32 score per cell per head, plus six [n, d] f32 activations (input, q, k, v,
///   the heads' concatenation, the output).
pub fn attention_cost_cells(n: usize, cells: u64, d_model: usize, heads: usize) -> Cost {
    let (n, cells, d, h) = (n as f64, cells as f64, d_model as f64, heads as f64);
    let flops = 6.0 * n * d * d + 4.0 * cells * d + 4.0 * cells * h + 2.0 * n * d * d;
    let bytes = 4.0 * cells * h + 4.0 * 6.0 * n * d;
    Cost { flops, bytes }
}

/// How many (query, key) cells `mask` allows over `n` tokens (no padding): the cells a sparse
/// kernel would compute. attnviz itself computes all n² densely and then masks.
pub fn allowed_cells(mask: &MaskSpec, n: usize) -> Result<u64, MaskError> {
    mask.count_allowed(n)
}

/// The entropy of one attention row, in nats: −Σ p ln p over its non-zero entries (0 for a
/// one-hot row, ln n for a uniform one, 0 for an all-zero, fully masked row).
pub fn row_entropy(row: &[f32]) -> f32 {
    let h: f64 = row
        .iter()
        .filter(|&&p| p > 0.0)
        .map(|&p| {
            let p = f64::from(p);
            -p * p.ln()
        })
        .sum();
    h as f32
}

/// The mean [`row_entropy`] over the rows of one map that are not all zero. Shape: [query, key].
pub fn mean_row_entropy(map: ArrayView2<'_, f32>) -> f32 {
    mean_over_rows(map, |row| f64::from(row_entropy(row)))
}

/// The mean over the rows of `map` that are not all zero (fully masked) of `f(row)`.
fn mean_over_rows(map: ArrayView2<'_, f32>, f: impl Fn(&[f32]) -> f64) -> f32 {
    let (mut total, mut count) = (0.0f64, 0usize);
    for row in map.rows() {
        let row = row.to_vec();
        if row.iter().any(|&p| p != 0.0) {
            total += f(&row);
            count += 1;
        }
    }
    if count == 0 {
        0.0
    } else {
        (total / count as f64) as f32
    }
}

/// A small deterministic generator (SplitMix64) for [`entropy_vs_d_head`].
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u1 = ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The mean row entropy (nats) of softmax(q·K × scale) over `n_keys` keys, for each head width
/// in `d_heads`, where q and the keys have independent standard normal entries (what a
/// freshly initialised layer sees), `scaled` chooses scale 1/√d (true) or 1 (false), and each
/// point averages `samples` rows drawn from `seed`. A pure function for the "no √d scaling"
/// plot: with the scale the scores keep unit variance and the entropy stays put as d grows;
/// without it their spread grows as √d and the entropy falls towards 0 (one-hot rows).
pub fn entropy_vs_d_head(
    d_heads: &[usize],
    n_keys: usize,
    scaled: bool,
    samples: usize,
    seed: u64,
) -> Vec<f32> {
    d_heads
        .iter()
        .map(|&d| {
            let mut rng = SplitMix(seed ^ (d as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
            let scale = if scaled {
                1.0 / (d.max(1) as f64).sqrt()
            } else {
                1.0
            };
            let mut total = 0.0f64;
            for _ in 0..samples {
                let q: Vec<f64> = (0..d).map(|_| rng.normal()).collect();
                let scores: Vec<f64> = (0..n_keys)
                    .map(|_| q.iter().map(|qi| qi * rng.normal()).sum::<f64>() * scale)
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                total += exps
                    .iter()
                    .map(|e| e / sum)
                    .filter(|&p| p > 0.0)
                    .map(|p| -p * p.ln())
                    .sum::<f64>();
            }
            (total / samples.max(1) as f64) as f32
        })
        .collect()
}

/// Which dimensions carry a head's scores: per dimension i of the head, the mean of
/// |q_i·k_i| over every (query, key) pair of the input. Because |q_i·k_i| = |q_i|·|k_i|, this
/// is mean_t |q[t, i]| × mean_s |k[s, i]| (computed so, in O(n·d)). Masked pairs are included:
/// the number says what a dimension contributes to q·k, before any mask. Shape: [d_head].
pub fn dim_importance(head: &HeadTrace) -> Vec<f32> {
    let mean_abs = |m: &ndarray::Array2<f32>, dim: usize| -> f64 {
        let col = m.column(dim);
        if col.is_empty() {
            return 0.0;
        }
        col.iter().map(|&v| f64::from(v.abs())).sum::<f64>() / col.len() as f64
    };
    (0..head.q.ncols())
        .map(|dim| (mean_abs(&head.q, dim) * mean_abs(&head.k, dim)) as f32)
        .collect()
}

/// One measured number, with and without the mistake.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// What is measured, in words (`mean row max`).
    pub name: &'static str,
    /// Its value in the correct run.
    pub correct: f64,
    /// Its value with the mistake.
    pub mistaken: f64,
}

/// Runs the model on tokens under options: how [`mistake_effect`] reaches the model (the
/// pipeline passes its own forward, with the budget, token limit and cancellation).
pub type Runner<'a, E> = dyn FnMut(&[Token], &RunOptions) -> Result<AttentionRun, E> + 'a;

/// What one mistake does to a run, measured.
#[derive(Clone, Debug)]
pub struct MistakeEffect {
    /// The mistake.
    pub mistake: Mistake,
    /// Its one-sentence lesson ([`Mistake::lesson`]).
    pub lesson: &'static str,
    /// One sentence with the measured effect on this input.
    pub summary: String,
    /// The run without the mistake (the caller's other options kept).
    pub correct: AttentionRun,
    /// The run with it.
    pub mistaken: AttentionRun,
    /// The numbers behind the summary, the first being the headline.
    pub figures: Vec<Figure>,
}

/// Mean of `f(map)` over every layer and head.
fn mean_over_heads(maps: &AttentionMaps, f: impl Fn(ArrayView2<'_, f32>) -> f64) -> f64 {
    let (mut total, mut count) = (0.0f64, 0usize);
    maps.for_each_head(|_, _, map| {
        total += f(map);
        count += 1;
    });
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

/// The mean over layers, heads and rows (not fully masked) of each row's largest weight.
pub fn mean_row_max(maps: &AttentionMaps) -> f64 {
    mean_over_heads(maps, |map| {
        f64::from(mean_over_rows(map, |row| {
            f64::from(row.iter().copied().fold(0.0f32, f32::max))
        }))
    })
}

/// The mean over layers, heads and rows of the weight a query puts on later keys (j > i).
pub fn mean_future_mass(maps: &AttentionMaps) -> f64 {
    mean_over_heads(maps, |map| {
        let n = map.nrows().max(1) as f64;
        let total: f64 = map
            .indexed_iter()
            .filter(|((i, j), _)| j > i)
            .map(|(_, &p)| f64::from(p))
            .sum();
        total / n
    })
}

/// The largest |sum − 1| over every row (axis 1) or column (axis 0) of every map that is not
/// all zero.
pub fn max_sum_error(maps: &AttentionMaps, axis: usize) -> f64 {
    let mut worst = 0.0f64;
    maps.for_each_head(|_, _, map| {
        for lane in map.lanes(ndarray::Axis(axis)) {
            let sum: f64 = lane.iter().map(|&p| f64::from(p)).sum();
            if sum != 0.0 {
                worst = worst.max((sum - 1.0).abs());
            }
        }
    });
    worst
}

/// The largest |a − b| over two runs' maps of the same shape (∞ when the shapes differ).
pub fn max_map_difference(a: &AttentionMaps, b: &AttentionMaps) -> f64 {
    if a.shape() != b.shape() {
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    a.for_each_head(|layer_idx, head_idx, map| {
        if let Some(other) = b.head(layer_idx, head_idx) {
            for (x, y) in map.iter().zip(other.iter()) {
                worst = worst.max(f64::from((x - y).abs()));
            }
        }
    });
    worst
}

/// The permutation [`mistake_effect`] shuffles tokens with for `no-positions`: position p of
/// the shuffled input holds original token `perm[p]`. Fixed (seeded Fisher–Yates) so that
/// figures are reproducible; for n ≥ 2 it moves at least one token.
pub fn shuffle_permutation(n: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..n).collect();
    let mut rng = SplitMix(0x5EED);
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        perm.swap(i, j);
    }
    if n >= 2 && perm.iter().enumerate().all(|(i, &p)| i == p) {
        perm.swap(0, 1);
    }
    perm
}

/// The largest |shuffled[p][r] − original[perm[p]][perm[r]]| over every layer and head: zero
/// when the maps permute exactly as the tokens did.
pub fn max_permutation_error(
    original: &AttentionMaps,
    shuffled: &AttentionMaps,
    perm: &[usize],
) -> f64 {
    if original.shape() != shuffled.shape() {
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    shuffled.for_each_head(|layer_idx, head_idx, map| {
        let Some(orig) = original.head(layer_idx, head_idx) else {
            return;
        };
        for ((p, r), &v) in map.indexed_iter() {
            if let (Some(&op), Some(&or)) = (perm.get(p), perm.get(r))
                && let Some(&o) = orig.get((op, or))
            {
                worst = worst.max(f64::from((v - o).abs()));
            }
        }
    });
    worst
}

/// The mean over the traced layer's heads and queries of cos(head output_i, v_i): how much a
/// query's output is just its own value vector (1 when nothing is mixed in).
pub fn mean_self_value_cosine(run: &AttentionRun) -> f64 {
    let Some(trace) = &run.trace else {
        return 0.0;
    };
    let (mut total, mut count) = (0.0f64, 0usize);
    for head in &trace.heads {
        for (out, v) in head.output.rows().into_iter().zip(head.v.rows()) {
            let (dot, no, nv) = out
                .iter()
                .zip(v.iter())
                .fold((0.0, 0.0, 0.0), |acc, (&a, &b)| {
                    let (a, b) = (f64::from(a), f64::from(b));
                    (acc.0 + a * b, acc.1 + a * a, acc.2 + b * b)
                });
            if no > 0.0 && nv > 0.0 {
                total += dot / (no.sqrt() * nv.sqrt());
                count += 1;
            }
        }
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

fn fig(name: &'static str, correct: f64, mistaken: f64) -> Figure {
    Figure {
        name,
        correct,
        mistaken,
    }
}

/// Runs the model of `info` (through `run`: the pipeline's forward, with its budget, token
/// limit and cancellation) on `tokens` with `opts` minus `mistake` and with it, and measures the
/// difference (the traced layer is `opts.trace_layer`, or 0). The summary is one sentence with
/// the headline figure:
/// - no-scaling: the mean row max and row entropy;
/// - no-positions: both variants are also run on the tokens shuffled by
///   [`shuffle_permutation`], and the figure is how far the shuffled maps are from the permuted
///   originals ([`max_permutation_error`]); under a causal mask order still leaks through the
///   mask itself, which the summary says;
/// - no-causal-mask: the mean weight on future keys ([`mean_future_mass`]);
/// - wrong-axis: the worst row and column sums ([`max_sum_error`]);
/// - elementwise-values: [`mean_self_value_cosine`] at the traced layer;
/// - no-layernorm: the residual norm after the first and the last block (`layer_norms`);
/// - chunk-by-heads: the chunk size 2^heads and the allowed cells against the correct mask.
pub fn mistake_effect<E: From<MaskError>>(
    info: &ModelInfo,
    tokens: &[Token],
    opts: &RunOptions,
    mistake: Mistake,
    run: &mut Runner<'_, E>,
) -> Result<MistakeEffect, E> {
    let mut correct_opts = opts.clone();
    correct_opts.mistakes.retain(|&m| m != mistake);
    correct_opts.trace_layer = Some(opts.trace_layer.unwrap_or(0));
    correct_opts.keep_layer_norms = true;
    correct_opts.keep_maps = true;
    let mut mistaken_opts = correct_opts.clone();
    mistaken_opts.mistakes.push(mistake);
    let correct = run(tokens, &correct_opts)?;
    let mistaken = run(tokens, &mistaken_opts)?;
    let (figures, summary) = match mistake {
        Mistake::NoScaling => {
            let max = fig(
                "mean row max",
                mean_row_max(&correct.maps),
                mean_row_max(&mistaken.maps),
            );
            let entropy =
                |m: &AttentionMaps| mean_over_heads(m, |map| f64::from(mean_row_entropy(map)));
            let ent = fig(
                "mean row entropy (nats)",
                entropy(&correct.maps),
                entropy(&mistaken.maps),
            );
            let summary = format!(
                "Without 1/√{} the mean row max goes from {:.3} to {:.3} and the row entropy from {:.2} to {:.2} nats.",
                info.d_head, max.correct, max.mistaken, ent.correct, ent.mistaken
            );
            (vec![max, ent], summary)
        }
        Mistake::NoPositions => {
            let perm = shuffle_permutation(tokens.len());
            let shuffled: Vec<Token> = perm.iter().map(|&p| tokens[p].clone()).collect();
            let correct_shuffled = run(&shuffled, &correct_opts)?;
            let mistaken_shuffled = run(&shuffled, &mistaken_opts)?;
            let err = fig(
                "max |shuffled − permuted| over the maps",
                max_permutation_error(&correct.maps, &correct_shuffled.maps, &perm),
                max_permutation_error(&mistaken.maps, &mistaken_shuffled.maps, &perm),
            );
            let causal = mistaken.mask.is_causal();
            let summary = if causal {
                format!(
                    "Shuffling the tokens changes the maps by up to {:.2e} even without positions, because the causal mask itself tells each token how many came before it (with positions: {:.2e}).",
                    err.mistaken, err.correct
                )
            } else {
                format!(
                    "Without positions, shuffling the tokens only permutes the maps (largest difference {:.1e}); with them the maps change by up to {:.3}.",
                    err.mistaken, err.correct
                )
            };
            (vec![err], summary)
        }
        Mistake::NoCausalMask => {
            let future = fig(
                "mean weight on future keys",
                mean_future_mass(&correct.maps),
                mean_future_mass(&mistaken.maps),
            );
            let summary = if mistaken.mask.is_causal() {
                // A causal mask typed in the mask field stays: only the architecture's goes.
                format!(
                    "The causal mask typed in the mask field stays: the mistake only forgets the one the architecture adds, so {:.1} % of the weight is on later tokens either way.",
                    100.0 * future.mistaken
                )
            } else if info.causal {
                format!(
                    "Without the causal mask each query puts {:.1} % of its weight on tokens after it ({:.1} % with the mask).",
                    100.0 * future.mistaken,
                    100.0 * future.correct
                )
            } else {
                format!(
                    "This model is not causal by construction, so there is no causal mask to forget; {:.1} % of the weight is on later tokens either way.",
                    100.0 * future.mistaken
                )
            };
            (vec![future], summary)
        }
        Mistake::SoftmaxWrongAxis => {
            let cols = fig(
                "worst |column sum − 1|",
                max_sum_error(&correct.maps, 0),
                max_sum_error(&mistaken.maps, 0),
            );
            let rows = fig(
                "worst |row sum − 1|",
                max_sum_error(&correct.maps, 1),
                max_sum_error(&mistaken.maps, 1),
            );
            let summary = format!(
                "Over the wrong axis the columns sum to 1 (worst error {:.1e}) and the rows miss 1 by up to {:.2}.",
                cols.mistaken, rows.mistaken
            );
            (vec![cols, rows], summary)
        }
        Mistake::ElementwiseValues => {
            let cos = fig(
                "mean cos(head output, own value)",
                mean_self_value_cosine(&correct),
                mean_self_value_cosine(&mistaken),
            );
            let summary = format!(
                "Elementwise, every head output is its own value vector scaled (cosine {:.3}); the matrix product mixes the others in (cosine {:.3}).",
                cos.mistaken, cos.correct
            );
            (vec![cos], summary)
        }
        Mistake::NoLayerNorm => {
            let norms = |r: &AttentionRun| r.layer_norms.clone().unwrap_or_default();
            let (c, m) = (norms(&correct), norms(&mistaken));
            let first = |v: &[f32]| f64::from(v.first().copied().unwrap_or(0.0));
            let last = |v: &[f32]| f64::from(v.last().copied().unwrap_or(0.0));
            let ratio = |v: &[f32]| {
                if first(v) > 0.0 {
                    last(v) / first(v)
                } else {
                    0.0
                }
            };
            let growth = fig(
                "residual norm, last layer / first layer",
                ratio(&c),
                ratio(&m),
            );
            let last_norm = fig("residual norm after the last layer", last(&c), last(&m));
            let summary = format!(
                "Without normalisation the residual norm grows {:.2}× from the first to the last layer (to {:.1}); with it {:.2}× (to {:.1}).",
                growth.mistaken, last_norm.mistaken, growth.correct, last_norm.correct
            );
            (vec![growth, last_norm], summary)
        }
        Mistake::ChunkByHeads => {
            let n = tokens.len();
            let count = |r: &AttentionRun| r.mask.spec().count_allowed(n).map(|c| c as f64);
            let cells = fig("allowed cells", count(&correct)?, count(&mistaken)?);
            let size = crate::engine::chunk_by_heads_size(info.heads);
            let summary = if size >= n {
                format!(
                    "With {} heads the chunks are 2^{} = {} tokens, longer than these {} tokens: nothing is chunked, a proper block:B picks B for the input instead.",
                    info.heads,
                    info.heads,
                    if size == usize::MAX {
                        "more than 10^18".to_owned()
                    } else {
                        size.to_string()
                    },
                    n
                )
            } else {
                format!(
                    "With {} heads the chunks are {} tokens: {} of {} cells stay allowed ({} under the correct mask).",
                    info.heads,
                    size,
                    cells.mistaken,
                    n * n,
                    cells.correct
                )
            };
            (
                vec![cells, fig("chunk size", n as f64, size as f64)],
                summary,
            )
        }
    };
    Ok(MistakeEffect {
        mistake,
        lesson: mistake.lesson(),
        summary,
        correct,
        mistaken,
        figures,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::model::{Checkpoint, DemoConfig, DemoModel, Model};

    const TEXT: &str = "the quick brown fox jumps over the lazy dog and the cat sat on the mat";

    /// [`mistake_effect`] run straight on `model` (the pipeline adds its checks around it).
    fn effect_of(
        model: &dyn crate::model::Model,
        tokens: &[Token],
        opts: &RunOptions,
        mistake: Mistake,
    ) -> Result<MistakeEffect, crate::engine::EngineError> {
        mistake_effect(&model.info(), tokens, opts, mistake, &mut |t, o| {
            model.forward(t, o)
        })
    }

    fn demo(cfg: DemoConfig) -> DemoModel {
        DemoModel::new(cfg).unwrap()
    }

    fn tokens(text: &str) -> Vec<Token> {
        crate::tokenize::tokenize(text, Default::default()).unwrap()
    }

    fn effect(model: &dyn Model, text: &str, mask: &str, m: Mistake) -> MistakeEffect {
        let opts = RunOptions {
            mask: MaskSpec::parse(mask).unwrap(),
            ..RunOptions::default()
        };
        let e = effect_of(model, &tokens(text), &opts, m).unwrap();
        eprintln!("{m}: {} {:?}", e.summary, e.figures);
        e
    }

    #[test]
    fn no_scaling_raises_the_mean_row_max_at_d_head_64() {
        // d_model 512 over 8 heads: d_head 64, so the scores grow 8× without the scale.
        let model = demo(DemoConfig {
            d_model: 512,
            heads: 8,
            ..DemoConfig::default()
        });
        let e = effect(&model, TEXT, "none", Mistake::NoScaling);
        let max = &e.figures[0];
        assert!(max.mistaken > max.correct + 0.05, "{max:?}");
        let entropy = &e.figures[1];
        assert!(entropy.mistaken < entropy.correct, "{entropy:?}");
        // The trace records the scale that was used: 1/√64 = 0.125, and 1 with the mistake.
        assert_eq!(e.correct.trace.as_ref().unwrap().heads[0].scale, 0.125);
        assert_eq!(e.mistaken.trace.as_ref().unwrap().heads[0].scale, 1.0);
    }

    #[test]
    fn wrong_axis_makes_the_columns_sum_to_one() {
        let model = demo(DemoConfig::default());
        let e = effect(&model, TEXT, "none", Mistake::SoftmaxWrongAxis);
        let (cols, rows) = (&e.figures[0], &e.figures[1]);
        assert!(cols.mistaken < 1e-5, "{cols:?}");
        assert!(rows.correct < 1e-5, "{rows:?}");
        assert!(
            rows.mistaken > 0.1 && cols.correct > 0.1,
            "{rows:?} {cols:?}"
        );
        // Under a causal mask each column sums over the queries that may see it.
        let e = effect(&model, TEXT, "causal", Mistake::SoftmaxWrongAxis);
        assert!(e.figures[0].mistaken < 1e-5);
        let map = e.mistaken.maps.head(0, 0).unwrap();
        assert!(map[(0, 1)] == 0.0 && (map[(15, 15)] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn no_positions_makes_shuffled_maps_a_permutation() {
        // d_model 32: every head is a seeded random one (the crafted heads need 64).
        for positional in [
            crate::model::DemoPositional::Sinusoidal,
            crate::model::DemoPositional::Learned,
            crate::model::DemoPositional::Rope,
            crate::model::DemoPositional::Alibi,
        ] {
            let model = demo(DemoConfig {
                positional,
                d_model: 32,
                heads: 4,
                ..DemoConfig::default()
            });
            let e = effect(&model, TEXT, "none", Mistake::NoPositions);
            let err = &e.figures[0];
            // Equal up to rounding: a permuted row meets other rows in its strip and lane, and
            // the portable path (ATTNVIZ_ISA=portable, no fused multiply-add) rounds every
            // product on its own: 1.01e-6 there for the sinusoidal case.
            assert!(err.mistaken <= 2e-6, "{positional:?}: {err:?}");
            assert!(err.correct > 1e-2, "{positional:?}: {err:?}");
            // Under a causal mask order leaks through the mask: the maps do not permute.
            let e = effect(&model, TEXT, "causal", Mistake::NoPositions);
            assert!(
                e.figures[0].mistaken > 1e-2,
                "{positional:?}: {:?}",
                e.figures
            );
            assert!(e.summary.contains("causal mask"));
        }
        // The default demo: every head permutes within 1e-6 except the crafted induction head
        // (last layer, head 0), whose 1e5 logits per unit of content cosine amplify the f32
        // rounding of the sums over keys, whose order the shuffle changes: 3.4e-4 there.
        let e = effect(
            &demo(DemoConfig::default()),
            TEXT,
            "none",
            Mistake::NoPositions,
        );
        assert!(
            e.figures[0].mistaken < 1e-3 && e.figures[0].correct > 0.5,
            "{:?}",
            e.figures
        );
    }

    fn fixture(name: &str) -> Checkpoint {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        Checkpoint::load(&dir).unwrap()
    }

    fn fixture_tokens(model: &Checkpoint, ids: &[u32]) -> Vec<Token> {
        model.tokens_from_ids(ids)
    }

    #[test]
    fn forgotten_causal_mask_fills_the_upper_triangle() {
        let gpt2 = fixture("gpt2");
        let toks = fixture_tokens(&gpt2, &[5, 17, 42, 8, 99, 3]);
        let e = effect_of(&gpt2, &toks, &RunOptions::default(), Mistake::NoCausalMask).unwrap();
        let future = &e.figures[0];
        assert_eq!(future.correct, 0.0);
        assert!(future.mistaken > 0.05, "{future:?}");
        let map = e.mistaken.maps.head(0, 0).unwrap();
        assert!(map[(0, 5)] > 0.0);
        // A causal mask the user wrote stays.
        let opts = RunOptions {
            mask: MaskSpec::parse("causal").unwrap(),
            ..RunOptions::default()
        };
        let e = effect_of(&gpt2, &toks, &opts, Mistake::NoCausalMask).unwrap();
        assert_eq!(e.figures[0].mistaken, 0.0);
        // The demo is not causal: nothing to forget, and the summary says so.
        let e = effect(
            &demo(DemoConfig::default()),
            TEXT,
            "none",
            Mistake::NoCausalMask,
        );
        assert_eq!(e.figures[0].correct, e.figures[0].mistaken);
        assert!(e.summary.contains("not causal"));
    }

    #[test]
    fn no_layernorm_skips_every_norm() {
        // BERT's embedding LayerNorm is skipped too: the fixture's raw embeddings are small
        // (norm 0.17), normalised they have norm √32 · |gamma| = 5.66 after each post-LN block.
        let bert = fixture("bert");
        let toks = fixture_tokens(&bert, &[5, 17, 42, 8, 99, 3, 11]);
        let e = effect_of(&bert, &toks, &RunOptions::default(), Mistake::NoLayerNorm).unwrap();
        let last = &e.figures[1];
        assert!((last.correct - 32f64.sqrt()).abs() < 1e-3, "{last:?}");
        assert!(last.mistaken < 1.0, "{last:?}");
        assert_eq!(e.mistaken.layer_norms.as_ref().unwrap().len(), 2);
    }

    /// all-MiniLM-L6-v2 (post-LN BERT, 6 layers) when `ATTNVIZ_MINILM_DIR` is set, as `.ci/run`
    /// does: without its norms the residual stream grows layer after layer (measured 6.7 → 1243,
    /// 185×, against 0.72× with them on "[CLS] the cat sat on the mat . [SEP]").
    #[test]
    fn no_layernorm_lets_minilm_activations_grow() {
        let Ok(dir) = std::env::var("ATTNVIZ_MINILM_DIR") else {
            eprintln!("ATTNVIZ_MINILM_DIR unset: skipped");
            return;
        };
        let model = Checkpoint::load(std::path::Path::new(&dir)).unwrap();
        let toks = model.tokens_from_ids(&[101, 1996, 4937, 2938, 2006, 1996, 13523, 1012, 102]);
        let e = effect_of(&model, &toks, &RunOptions::default(), Mistake::NoLayerNorm).unwrap();
        let norms = e.mistaken.layer_norms.clone().unwrap();
        assert!(norms.windows(2).all(|w| w[1] > w[0]), "{norms:?}");
        let growth = &e.figures[0];
        assert!(growth.mistaken > 50.0 && growth.correct < 2.0, "{growth:?}");
    }

    #[test]
    fn chunk_by_heads_is_block_of_two_to_the_heads() {
        // 2 heads: chunks of 2² = 4 tokens, the same maps as the proper mask block:4.
        let model = demo(DemoConfig {
            heads: 2,
            ..DemoConfig::default()
        });
        let e = effect(&model, TEXT, "none", Mistake::ChunkByHeads);
        let block = model
            .forward(
                &tokens(TEXT),
                &RunOptions {
                    mask: MaskSpec::parse("block:4").unwrap(),
                    ..RunOptions::default()
                },
            )
            .unwrap();
        assert_eq!(max_map_difference(&block.maps, &e.mistaken.maps), 0.0);
        // 16 tokens in chunks of 4: 4 chunks × 16 cells = 64 of 256.
        assert_eq!(e.figures[0].mistaken, 64.0);
        assert_eq!(e.figures[0].correct, 256.0);
        // 8 heads: 256-token chunks, so 16 tokens are not chunked at all.
        let e = effect(
            &demo(DemoConfig::default()),
            TEXT,
            "none",
            Mistake::ChunkByHeads,
        );
        assert_eq!(max_map_difference(&e.correct.maps, &e.mistaken.maps), 0.0);
        assert!(e.summary.contains("nothing is chunked"));
    }

    #[test]
    fn elementwise_values_mix_nothing() {
        let e = effect(
            &demo(DemoConfig::default()),
            TEXT,
            "none",
            Mistake::ElementwiseValues,
        );
        let cos = &e.figures[0];
        assert!((cos.mistaken - 1.0).abs() < 1e-5, "{cos:?}");
        assert!(cos.correct < 0.9, "{cos:?}");
        // The traced layer's output is exactly p_ii · v_i.
        let h = &e.mistaken.trace.as_ref().unwrap().heads[3];
        for i in 0..h.v.nrows() {
            for c in 0..h.v.ncols() {
                assert_eq!(h.output[(i, c)], h.probs[(i, i)] * h.v[(i, c)]);
            }
        }
    }

    #[test]
    fn cost_model_hand_computed_and_quadratic() {
        // n 2, d 4, 2 heads, dense (4 cells): 6·2·16 + 4·4·4 + 4·4·2 + 2·2·16 = 352 flops;
        // 4·4·2 + 24·2·4 = 224 bytes.
        let c = attention_cost(2, 4, 2);
        assert_eq!((c.flops, c.bytes), (352.0, 224.0));
        // At long inputs the n² terms dominate: doubling n nearly quadruples the cost.
        let (a, b) = (attention_cost(8192, 256, 8), attention_cost(16384, 256, 8));
        assert!(b.flops / a.flops > 3.5 && b.bytes / a.bytes > 3.9);
        // window:1 over 5 tokens allows 5 + 2·4 = 13 cells.
        let window = MaskSpec::parse("window:1").unwrap();
        assert_eq!(allowed_cells(&window, 5).unwrap(), 13);
        assert!(attention_cost_cells(5, 13, 4, 2).flops < attention_cost(5, 4, 2).flops);
    }

    #[test]
    fn entropy_and_dim_importance_hand_computed() {
        // [0.5, 0.5]: ln 2 = 0.693147; one-hot: 0; all zeros (fully masked): 0.
        assert!((row_entropy(&[0.5, 0.5]) - std::f32::consts::LN_2).abs() < 1e-6);
        assert_eq!(row_entropy(&[1.0, 0.0]), 0.0);
        assert_eq!(row_entropy(&[0.0, 0.0]), 0.0);
        let ds = [4, 16, 64, 256];
        let scaled = entropy_vs_d_head(&ds, 16, true, 200, 7);
        let raw = entropy_vs_d_head(&ds, 16, false, 200, 7);
        eprintln!("entropy scaled {scaled:?} unscaled {raw:?}");
        // With the scale the scores keep unit variance: the entropy barely moves (ln 16 = 2.77
        // is the uniform ceiling). Without it, it falls as d grows.
        assert!((scaled[0] - scaled[3]).abs() < 0.2, "{scaled:?}");
        assert!(raw.windows(2).all(|w| w[1] < w[0]), "{raw:?}");
        assert!(raw[3] < 0.5 * scaled[3], "{raw:?} {scaled:?}");
        // q = [[1, −2], [3, 0]], k = [[2, 1], [−1, 4]]. Dimension 0: pairs |1·2|, |1·−1|, |3·2|,
        // |3·−1| = 2, 1, 6, 3, mean 3. Dimension 1: |−2·1|, |−2·4|, 0, 0, mean 2.5.
        let q = ndarray::array![[1.0f32, -2.0], [3.0, 0.0]];
        let k = ndarray::array![[2.0f32, 1.0], [-1.0, 4.0]];
        let head = HeadTrace {
            kv_head: 0,
            scale: 1.0,
            alibi_slope: None,
            raw_scores: q.dot(&k.t()),
            masked_scores: q.dot(&k.t()),
            probs: ndarray::Array2::zeros((2, 2)),
            output: ndarray::Array2::zeros((2, 2)),
            v: k.clone(),
            q,
            k,
        };
        assert_eq!(dim_importance(&head), [3.0, 2.5]);
    }
}
