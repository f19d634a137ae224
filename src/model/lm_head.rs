//! Language-model heads: final hidden states to next-token log-probabilities.
//!
//! A head is a [vocab, d_model] matrix W (transformers' `lm_head.weight`, or the input embedding
//! when `tie_word_embeddings` ties them); the logits of a position are h·Wᵀ and its
//! log-probabilities their log-softmax. [`Checkpoint`](super::Checkpoint) owns the head; this
//! module holds the pure maths and the types it hands out. Nothing here touches files or UI.

use crate::engine::Norm;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};
use serde::Serialize;
use std::path::PathBuf;

/// What a checkpoint's next-token head is, for `attnviz info` and the model panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LmHeadInfo {
    /// The tensor holding the head's weights: `lm_head.weight`, or the tied input embedding
    /// (`transformer.wte.weight`, `model.embed_tokens.weight`).
    pub tensor: String,
    /// True when the head is the input embedding matrix (`tie_word_embeddings`).
    pub tied: bool,
    /// Number of outputs: the vocabulary size.
    pub vocab: usize,
}

/// One predicted next token.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// Vocabulary id.
    pub id: u32,
    /// The vocabulary string (`Ġthe`), or the id when the folder has no vocabulary.
    pub token: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// Why a model has no next-token predictions.
fn no_head_text(dir: Option<&std::path::Path>) -> String {
    match dir {
        None => "the demo model has no LM head: next-token predictions need a GPT-2 or \
                 Llama-family checkpoint"
            .to_owned(),
        Some(dir) => format!(
            "the model has no next-token LM head (a BERT encoder, or no lm_head.weight and \
             untied embeddings) in {}",
            dir.display()
        ),
    }
}

/// Errors from asking a checkpoint for next-token predictions.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// The model has no next-token LM head: the one wording, for `attnviz next` and the
    /// Saliency view alike.
    #[error("{}", no_head_text(dir.as_deref()))]
    NoHead {
        /// The checkpoint folder, or `None` for the demo model.
        dir: Option<PathBuf>,
    },
    /// The head's log-probabilities are not finite (weights that overflow f32).
    #[error(
        "the LM head gives non-finite log-probabilities (its weights or the final norm overflow \
         f32) in {}",
        file.display()
    )]
    NonFinite {
        /// The weights file.
        file: PathBuf,
    },
    /// The hidden states are not d_model wide.
    #[error("hidden states are {got} wide, but the LM head expects {expected}")]
    Width {
        /// d_model.
        expected: usize,
        /// The width given.
        got: usize,
    },
    /// The position is not in the sequence.
    #[error("position {position} is out of range: the input has {len} tokens (0-based)")]
    Position {
        /// The position asked for.
        position: usize,
        /// The number of tokens.
        len: usize,
    },
    /// The logits would not fit in memory.
    #[error(
        "{rows} positions × {vocab} vocabulary entries is too many log-probabilities at once; ask for fewer positions"
    )]
    TooLarge {
        /// Positions asked for.
        rows: usize,
        /// Vocabulary size.
        vocab: usize,
    },
}

/// Most log-probabilities computed at once: 2^28 f32 values, 1 GiB.
pub const MAX_LOGPROBS: usize = 1 << 28;

/// Log-probabilities of every position: `log_softmax(hidden · weightᵀ)` per row.
///
/// `hidden` has shape [position, d_model] and `weight` [vocab, d_model]. Each row's normaliser
/// is a max-subtracted log-sum-exp with the sum taken in f64, so a row's log-probabilities do
/// not depend on the vocabulary order beyond f32 rounding.
pub fn logprobs_from_hidden(
    hidden: ArrayView2<'_, f32>,
    weight: ArrayView2<'_, f32>,
) -> Result<Array2<f32>, PredictError> {
    if hidden.ncols() != weight.ncols() {
        return Err(PredictError::Width {
            expected: weight.ncols(),
            got: hidden.ncols(),
        });
    }
    if hidden.nrows().saturating_mul(weight.nrows()) > MAX_LOGPROBS {
        return Err(PredictError::TooLarge {
            rows: hidden.nrows(),
            vocab: weight.nrows(),
        });
    }
    let mut logits = hidden.dot(&weight.t());
    log_softmax_rows(&mut logits);
    Ok(logits)
}

/// Replaces each row of logits by its log-softmax. Shape: [position, vocab].
///
/// Non-finite logits (from non-finite weights) give non-finite results, never a panic.
pub fn log_softmax_rows(logits: &mut Array2<f32>) {
    for mut row in logits.rows_mut() {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let max = f64::from(max);
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        let log_sum = sum.ln();
        row.mapv_inplace(|v| ((f64::from(v) - max) - log_sum) as f32);
    }
}

/// The `k` largest entries of one row of log-probabilities as (id, log-prob), largest first;
/// equal values are ordered by id. NaN sorts below every number.
pub fn top_k(row: ArrayView1<'_, f32>, k: usize) -> Vec<(u32, f32)> {
    let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
    let order = |a: &(u32, f32), b: &(u32, f32)| key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0));
    let mut all: Vec<(u32, f32)> = row
        .iter()
        .enumerate()
        .map(|(id, &v)| (u32::try_from(id).unwrap_or(u32::MAX), v))
        .collect();
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, order);
        all.truncate(k);
    }
    all.sort_by(order);
    all
}

/// BERT's masked-LM head (`BertOnlyMLMHead`): `cls.predictions.transform` (dense, erf GELU,
/// LayerNorm), then the decoder tied to the word embeddings plus its own bias.
// https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py
// (BertPredictionHeadTransform, BertLMPredictionHead)
#[derive(Clone, Debug, PartialEq)]
pub struct MlmHead {
    /// `transform.dense`, transposed to [in, out]. Shape: [d_model, d_model].
    pub dense: Array2<f32>,
    /// `transform.dense.bias`. Shape: [d_model].
    pub dense_bias: Array1<f32>,
    /// `transform.LayerNorm`.
    pub norm: Norm,
    /// `cls.predictions.bias` (or `decoder.bias`). Shape: [vocab].
    pub bias: Array1<f32>,
}

/// log p(`token`) (minus log p(`foil`) when given) in the distribution softmax(W·h + b) of one
/// hidden row `h`, in f64, and with `want_grad` its gradient with respect to `h`.
///
/// `weight` is [vocab, d_model]; `bias`, when given, [vocab]. With a foil the normaliser
/// cancels: the value is a logit difference and the gradient W_T − W_F.
pub fn logprob_of_row(
    h: &[f64],
    weight: ArrayView2<'_, f32>,
    bias: Option<ArrayView1<'_, f32>>,
    token: usize,
    foil: Option<usize>,
    want_grad: bool,
) -> (f64, Option<Vec<f64>>) {
    let logit =
        |v: usize| -> f64 { row_dot(weight.row(v), h) + bias.map_or(0.0, |b| f64::from(b[v])) };
    if let Some(foil) = foil {
        let value = logit(token) - logit(foil);
        let grad = want_grad.then(|| {
            weight
                .row(token)
                .iter()
                .zip(weight.row(foil))
                .map(|(&a, &b)| f64::from(a) - f64::from(b))
                .collect()
        });
        return (value, grad);
    }
    // The vocabulary in fixed pieces on the engine's threads, each read once: per piece its
    // largest logit m, the sum of e^(z − m) and (for the gradient) of e^(z − m)·W_v, rescaled
    // whenever m grows, while the row is still in cache from its logit. The pieces combine in
    // their order, so the result is the same whatever the thread count. One thread without
    // vector instructions, reading the head twice, took 45 ms of a 240 ms SmolLM2 gradient.
    let vocab = weight.nrows();
    let pieces = vocab.div_ceil(VOCAB_PIECE);
    let d = if want_grad { h.len() } else { 0 };
    let parts = crate::engine::parallel_map(pieces, crate::engine::pool_threads(), &|i| {
        let mut part = Piece {
            max: f64::NEG_INFINITY,
            sum: 0.0,
            weighted: vec![0.0; d],
        };
        for v in i * VOCAB_PIECE..((i + 1) * VOCAB_PIECE).min(vocab) {
            let z = logit(v);
            part.add(z, want_grad.then(|| weight.row(v)));
        }
        part
    });
    let max = parts
        .iter()
        .map(|p| p.max)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0f64;
    let mut weighted = vec![0.0f64; d];
    for part in &parts {
        // A piece of −∞ logits only (or none) adds nothing; NaN propagates through its scale.
        let scale = if part.max == f64::NEG_INFINITY {
            0.0
        } else {
            (part.max - max).exp()
        };
        sum += part.sum * scale;
        for (w, &pw) in weighted.iter_mut().zip(&part.weighted) {
            *w += pw * scale;
        }
    }
    let lse = max + sum.ln();
    let value = logit(token) - lse;
    let grad = want_grad.then(|| {
        // ∂/∂h (z_T − lse) = W_T − Σ_v p_v W_v, with p_v = e^(z_v − max) / sum.
        weight
            .row(token)
            .iter()
            .zip(weighted)
            .map(|(&w, t)| f64::from(w) - t / sum)
            .collect()
    });
    (value, grad)
}

/// One piece of the vocabulary in [`logprob_of_row`]: its largest logit so far, the sum of
/// e^(z − max) and Σ e^(z − max)·W_v (empty without a gradient).
struct Piece {
    max: f64,
    sum: f64,
    weighted: Vec<f64>,
}

impl Piece {
    /// Takes in logit `z` of a word whose head row is `row` (given for the gradient).
    fn add(&mut self, z: f64, row: Option<ArrayView1<'_, f32>>) {
        if z > self.max {
            // Everything so far was relative to the old max: e^(old − new) rescales it (0 when
            // the old max was −∞ and the sums were still empty).
            let scale = if self.max == f64::NEG_INFINITY {
                0.0
            } else {
                (self.max - z).exp()
            };
            self.sum *= scale;
            for w in &mut self.weighted {
                *w *= scale;
            }
            self.max = z;
        }
        let e = if z == f64::NEG_INFINITY && self.max == f64::NEG_INFINITY {
            0.0
        } else {
            (z - self.max).exp()
        };
        self.sum += e;
        if let Some(row) = row {
            row_add_scaled(&mut self.weighted, e, row);
        }
    }
}

/// Vocabulary rows per piece of [`logprob_of_row`]'s work (a fixed size: the pieces, not the
/// threads, decide the order of its sums).
const VOCAB_PIECE: usize = 2048;

/// Σ w_i·h_i in f64 ([`crate::engine::simd::dot_f32_f64`] for a contiguous row).
fn row_dot(w: ArrayView1<'_, f32>, h: &[f64]) -> f64 {
    match w.as_slice() {
        Some(w) => crate::engine::simd::dot_f32_f64(w, h),
        None => w.iter().zip(h).map(|(&a, &b)| f64::from(a) * b).sum(),
    }
}

/// `acc += s · w` in f64 ([`crate::engine::simd::add_scaled_f64`] for a contiguous row).
fn row_add_scaled(acc: &mut [f64], s: f64, w: ArrayView1<'_, f32>) {
    match w.as_slice() {
        Some(w) => crate::engine::simd::add_scaled_f64(acc, s, w),
        None => {
            for (a, &v) in acc.iter_mut().zip(w) {
                *a += s * f64::from(v);
            }
        }
    }
}

impl MlmHead {
    /// The masked-LM log-probability of `token` after hidden row `h` (decoder tied to `word`,
    /// [vocab, d_model]), in f64, and with `want_grad` its gradient with respect to `h`.
    pub fn logprob(
        &self,
        h: &[f64],
        word: ArrayView2<'_, f32>,
        token: usize,
        want_grad: bool,
    ) -> (f64, Option<Vec<f64>>) {
        let d = h.len();
        let Transformed {
            t1,
            xhat,
            r,
            t3,
            gamma,
            centred,
        } = self.transform(h);
        let n = d as f64;
        let (value, d_t3) =
            logprob_of_row(&t3, word, Some(self.bias.view()), token, None, want_grad);
        let grad = d_t3.map(|d_t3| {
            let g: Vec<f64> = (0..d).map(|j| d_t3[j] * gamma[j]).collect();
            let mean_g = if centred {
                g.iter().sum::<f64>() / n
            } else {
                0.0
            };
            let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / n;
            let d_t1: Vec<f64> = (0..d)
                .map(|j| r * (g[j] - mean_g - xhat[j] * mean_gx) * gelu64_slope(t1[j]))
                .collect();
            // ∂/∂h_i = Σ_j W[i, j] d_t1[j].
            (0..d)
                .map(|i| {
                    self.dense
                        .row(i)
                        .iter()
                        .zip(&d_t1)
                        .map(|(&w, &g)| f64::from(w) * g)
                        .sum()
                })
                .collect()
        });
        (value, grad)
    }

    /// The transform (dense, erf GELU, LayerNorm) of one hidden row `h`, in f64: what the
    /// decoder reads, and what the logit lens puts in place of a final norm.
    pub fn transform_row(&self, h: &[f64]) -> Vec<f64> {
        self.transform(h).t3
    }

    /// The most likely token after hidden row `h` (the lowest id among equals).
    pub fn argmax(&self, h: &[f64], word: ArrayView2<'_, f32>) -> usize {
        let t3 = self.transform(h).t3;
        let mut best = (0, f64::NEG_INFINITY);
        for (v, w) in word.rows().into_iter().enumerate() {
            let z = f64::from(self.bias[v])
                + w.iter()
                    .zip(&t3)
                    .map(|(&a, &b)| f64::from(a) * b)
                    .sum::<f64>();
            if z > best.1 {
                best = (v, z);
            }
        }
        best.0
    }

    /// `transform` of one row: dense, GELU, LayerNorm, keeping what the gradient needs.
    fn transform(&self, h: &[f64]) -> Transformed {
        let d = h.len();
        let t1: Vec<f64> = (0..d)
            .map(|j| {
                let col = self.dense.column(j);
                f64::from(self.dense_bias[j])
                    + col
                        .iter()
                        .zip(h)
                        .map(|(&w, &x)| f64::from(w) * x)
                        .sum::<f64>()
            })
            .collect();
        let t2: Vec<f64> = t1.iter().map(|&x| gelu64(x)).collect();
        let (gamma, beta, eps) = match &self.norm {
            Norm::LayerNorm { gamma, beta, eps } => (gamma, Some(beta), *eps),
            Norm::RmsNorm { gamma, eps } => (gamma, None, *eps),
        };
        let n = d as f64;
        let mean = if beta.is_some() {
            t2.iter().sum::<f64>() / n
        } else {
            0.0
        };
        let var = t2.iter().map(|&x| (x - mean).powi(2)).sum::<f64>() / n;
        let r = 1.0 / (var + f64::from(eps)).sqrt();
        let xhat: Vec<f64> = t2.iter().map(|&x| (x - mean) * r).collect();
        let t3 = (0..d)
            .map(|j| xhat[j] * f64::from(gamma[j]) + beta.map_or(0.0, |b| f64::from(b[j])))
            .collect();
        Transformed {
            t1,
            xhat,
            r,
            t3,
            gamma: gamma.iter().map(|&g| f64::from(g)).collect(),
            centred: beta.is_some(),
        }
    }
}

/// One row through [`MlmHead`]'s transform.
struct Transformed {
    /// Before the GELU.
    t1: Vec<f64>,
    /// Normalised, before scale and shift.
    xhat: Vec<f64>,
    /// 1/√(var + ε).
    r: f64,
    /// The output.
    t3: Vec<f64>,
    /// The norm's scale.
    gamma: Vec<f64>,
    /// True for LayerNorm (mean subtracted), false for RMSNorm.
    centred: bool,
}

/// erf in f64 (series below 3, asymptotic above; error below 1e-12 where it matters).
fn erf64(x: f64) -> f64 {
    let a = x.abs();
    if a <= 3.0 {
        let (mut term, mut sum) = (x, x);
        for k in 1..100 {
            term *= -x * x / k as f64;
            sum += term / (2 * k + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let inv = 1.0 / (a * a);
        let series =
            1.0 - 0.5 * inv + 0.75 * inv * inv - 1.875 * inv.powi(3) + 6.5625 * inv.powi(4);
        (1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series).copysign(x)
    }
}

/// Exact GELU in f64.
fn gelu64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2))
}

/// d/dx GELU = Φ(x) + x·φ(x).
fn gelu64_slope(x: f64) -> f64 {
    0.5 * (1.0 + erf64(x / std::f64::consts::SQRT_2))
        + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// Two positions, d_model 2, a vocabulary of three words.
    ///
    /// W = [[1, 0], [0, 1], [1, 1]] (rows: words 0, 1, 2), so logits = h·Wᵀ = [h0, h1, h0 + h1].
    /// - h = [ln 2, 0]: logits [ln 2, 0, ln 2], exp = [2, 1, 2], sum 5,
    ///   log-probs = [ln(2/5), ln(1/5), ln(2/5)] = [−0.916291, −1.609438, −0.916291].
    /// - h = [0, 0]: logits [0, 0, 0], log-probs ln(1/3) = −1.098612 each.
    #[test]
    fn hand_computed_two_tokens_three_words() {
        let w = array![[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]];
        let h = array![[2f32.ln(), 0.0], [0.0, 0.0]];
        let lp = logprobs_from_hidden(h.view(), w.view()).unwrap();
        let want = [
            [(0.4f64).ln(), (0.2f64).ln(), (0.4f64).ln()],
            [(1.0f64 / 3.0).ln(); 3],
        ];
        for (got_row, want_row) in lp.rows().into_iter().zip(want) {
            for (&g, w) in got_row.iter().zip(want_row) {
                assert!((f64::from(g) - w).abs() < 1e-6, "{g} vs {w}");
            }
        }
        assert!((-0.916291 - f64::from(lp[(0, 0)])).abs() < 1e-6);
        // Ties (words 0 and 2) are ordered by id.
        assert_eq!(
            top_k(lp.row(0), 2)
                .iter()
                .map(|&(id, _)| id)
                .collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(top_k(lp.row(0), 10).len(), 3);
        assert!(top_k(lp.row(0), 0).is_empty());
    }

    /// Logits far outside f32's exp range still give finite log-probs: [1000, 0] has
    /// log-probs [−ln(1 + e^−1000), −1000 − ln(1 + e^−1000)] = [0, −1000].
    #[test]
    fn large_logits_stay_finite() {
        let mut logits = array![[1000.0f32, 0.0]];
        log_softmax_rows(&mut logits);
        assert_eq!(logits[(0, 0)], 0.0);
        assert_eq!(logits[(0, 1)], -1000.0);
    }

    /// A vocabulary of several pieces, whose largest logit comes late (so each piece rescales
    /// its sums), against the textbook two-pass log-softmax and its gradient in f64.
    #[test]
    fn logprob_of_row_over_many_pieces_matches_the_two_pass_formula() {
        let (vocab, d) = (3 * VOCAB_PIECE + 77, 19);
        let weight = Array2::from_shape_fn((vocab, d), |(v, j)| {
            (((v * 37 + j * 11) % 101) as f32 / 50.0 - 1.0) * if v == vocab - 5 { 4.0 } else { 1.0 }
        });
        let bias = Array1::from_shape_fn(vocab, |v| ((v * 13) % 7) as f32 * 0.1);
        let h: Vec<f64> = (0..d).map(|j| (j as f64 - 9.0) / 7.0).collect();
        let token = 1234;
        let logits: Vec<f64> = (0..vocab)
            .map(|v| {
                f64::from(bias[v])
                    + weight
                        .row(v)
                        .iter()
                        .zip(&h)
                        .map(|(&w, &x)| f64::from(w) * x)
                        .sum::<f64>()
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + logits.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
        let want_value = logits[token] - lse;
        let want_grad: Vec<f64> = (0..d)
            .map(|j| {
                f64::from(weight[(token, j)])
                    - (0..vocab)
                        .map(|v| (logits[v] - lse).exp() * f64::from(weight[(v, j)]))
                        .sum::<f64>()
            })
            .collect();
        let (value, grad) = logprob_of_row(&h, weight.view(), Some(bias.view()), token, None, true);
        assert!(
            (value - want_value).abs() < 1e-12,
            "{value} vs {want_value}"
        );
        let grad = grad.unwrap();
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        let (value_only, none) =
            logprob_of_row(&h, weight.view(), Some(bias.view()), token, None, false);
        assert_eq!(
            value_only, value,
            "the same sums with or without the gradient"
        );
        assert!(none.is_none());
    }

    #[test]
    fn width_mismatch_is_an_error() {
        let w = Array2::<f32>::zeros((3, 2));
        let h = Array2::<f32>::zeros((1, 4));
        let err = logprobs_from_hidden(h.view(), w.view()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "hidden states are 4 wide, but the LM head expects 2"
        );
    }

    #[test]
    fn nan_sorts_last() {
        let row = array![f32::NAN, -1.0, -2.0];
        assert_eq!(top_k(row.view(), 3)[0].0, 1);
        assert_eq!(top_k(row.view(), 3)[2].0, 0);
    }
}
