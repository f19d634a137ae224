//! One query of one head, step by step: the numbers of the `attnviz.explain/v1` contract and of
//! the app's walkthrough, read from the engine's [`Trace`] of the layer.
//!
//! Nothing is recomputed here except `scaled` (raw scores × scale + bias, before the mask), which
//! the engine folds into q; every other field is the engine's own tensor, so that a test comparing
//! the fields with each other checks the engine, not this file.

use crate::engine::{PositionKind, Trace};
use serde::{Deserialize, Serialize};

/// Why an explanation cannot be read from a trace.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExplainError {
    /// The head index is past the layer's heads.
    #[error("head {head} does not exist (the layer has {heads} heads)")]
    NoSuchHead {
        /// Asked for.
        head: usize,
        /// Heads in the layer.
        heads: usize,
    },
    /// The query index is past the tokens.
    #[error("query {query} does not exist (the input has {tokens} tokens)")]
    NoSuchQuery {
        /// Asked for.
        query: usize,
        /// Tokens in the run.
        tokens: usize,
    },
}

/// The walkthrough of one query row of one head: the `attnviz.explain/v1` fields (without the
/// model, mask and tokens, which the file adds). Vectors are over keys (`[n]`), head
/// dimensions (`[d]`) or both (`[n][d]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The layer (0-based).
    pub layer: usize,
    /// The query head.
    pub head: usize,
    /// The key/value head it reads (differs from `head` under grouped-query attention).
    pub kv_head: usize,
    /// The query token.
    pub query: usize,
    /// Width of the head.
    pub d_head: usize,
    /// How attention saw positions: `none`, `rope` (q and k below are rotated) or `alibi`
    /// (`bias` holds its distance penalty).
    pub position: PositionKind,
    /// The query vector, after RoPE and a `--dims` subset, before scaling. Shape: [d].
    pub q: Vec<f32>,
    /// The key vectors, the same way. Shape: [n][d].
    pub keys: Vec<Vec<f32>>,
    /// q·k_j. Shape: [n].
    pub scores: Vec<f32>,
    /// The factor that multiplied the scores: 1/√d_head, over T under `temperature:T`, 1 under
    /// `none` or the no-scaling mistake.
    pub scale: f32,
    /// ALiBi's bias −m·|query − j|, or `None`. Shape: [n].
    pub bias: Option<Vec<f32>>,
    /// scores × scale + bias. Shape: [n].
    pub scaled: Vec<f32>,
    /// The engine's scaled scores with masked keys as `None` (−∞ to the softmax). Shape: [n].
    pub masked: Vec<Option<f32>>,
    /// True when the mask left this query nothing to attend to (its weights are all zero).
    pub fully_masked: bool,
    /// The softmax of `masked`: the row of the attention map. Shape: [n].
    pub weights: Vec<f32>,
    /// The value vectors of the kv head. Shape: [n][d].
    pub values: Vec<Vec<f32>>,
    /// weights · values: the head's output before the output projection. Shape: [d].
    pub output: Vec<f32>,
}

impl Explanation {
    /// Reads query `query` of head `head` from a layer's trace.
    pub fn from_trace(trace: &Trace, head: usize, query: usize) -> Result<Self, ExplainError> {
        let h = trace.heads.get(head).ok_or(ExplainError::NoSuchHead {
            head,
            heads: trace.heads.len(),
        })?;
        let tokens = h.q.nrows();
        if query >= tokens {
            return Err(ExplainError::NoSuchQuery { query, tokens });
        }
        let rows = |m: &ndarray::Array2<f32>| -> Vec<Vec<f32>> {
            m.rows().into_iter().map(|r| r.to_vec()).collect()
        };
        let scores = h.raw_scores.row(query).to_vec();
        let bias = h.bias_row(query);
        let scaled = scores
            .iter()
            .enumerate()
            .map(|(j, &s)| s * h.scale + bias.as_ref().map_or(0.0, |b| b[j]))
            .collect();
        let masked: Vec<Option<f32>> = h
            .masked_scores
            .row(query)
            .iter()
            .map(|&s| (s != f32::NEG_INFINITY).then_some(s))
            .collect();
        Ok(Self {
            layer: trace.layer_idx,
            head,
            kv_head: h.kv_head,
            query,
            d_head: h.q.ncols(),
            position: trace.position,
            q: h.q.row(query).to_vec(),
            keys: rows(&h.k),
            scores,
            scale: h.scale,
            bias,
            scaled,
            fully_masked: masked.iter().all(Option::is_none),
            masked,
            weights: h.probs.row(query).to_vec(),
            values: rows(&h.v),
            output: h.output.row(query).to_vec(),
        })
    }

    /// The per-dimension products q_i·k_i for key `key_idx` (the neuron view's bars); they sum
    /// to `scores[key_idx]`. Empty when the key does not exist.
    pub fn dim_products(&self, key_idx: usize) -> Vec<f32> {
        self.keys
            .get(key_idx)
            .map(|k| self.q.iter().zip(k).map(|(q, k)| q * k).collect())
            .unwrap_or_default()
    }
}

/// The steps of the walkthrough, in order (issue 11 item 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WalkStep {
    /// The query vector q.
    Query,
    /// The key vectors K (rotated by RoPE, where the model uses it).
    Keys,
    /// The dot products q·k_j.
    Scores,
    /// × the scale (and + ALiBi's bias).
    Scale,
    /// The mask: forbidden keys become −∞.
    Mask,
    /// The softmax: weights that sum to 1.
    Softmax,
    /// The weights times the value vectors.
    Values,
    /// Their sum: the head's output.
    Output,
}

impl WalkStep {
    /// Every step, first to last.
    pub const ALL: [WalkStep; 8] = [
        WalkStep::Query,
        WalkStep::Keys,
        WalkStep::Scores,
        WalkStep::Scale,
        WalkStep::Mask,
        WalkStep::Softmax,
        WalkStep::Values,
        WalkStep::Output,
    ];

    /// The name used in lesson files (`query`, `keys`, …, `output`).
    pub fn name(self) -> &'static str {
        match self {
            WalkStep::Query => "query",
            WalkStep::Keys => "keys",
            WalkStep::Scores => "scores",
            WalkStep::Scale => "scale",
            WalkStep::Mask => "mask",
            WalkStep::Softmax => "softmax",
            WalkStep::Values => "values",
            WalkStep::Output => "output",
        }
    }

    /// A short title for the step's figure and the walkthrough's heading.
    pub fn title(self) -> &'static str {
        match self {
            WalkStep::Query => "1. The query q",
            WalkStep::Keys => "2. The keys K",
            WalkStep::Scores => "3. Dot products q·k",
            WalkStep::Scale => "4. × scale",
            WalkStep::Mask => "5. The mask",
            WalkStep::Softmax => "6. Softmax",
            WalkStep::Values => "7. Weights × V",
            WalkStep::Output => "8. The head output",
        }
    }

    /// What happens in this step and why, in plain words (for the explanation under a figure).
    pub fn explanation(self, e: &Explanation) -> String {
        match self {
            WalkStep::Query => format!(
                "Token {} asks a question: its hidden state times the query weights gives the {}-number vector q{}.",
                e.query,
                e.d_head,
                if e.position == PositionKind::Rope {
                    ", then RoPE turns its pairs of numbers by angles that grow with the position"
                } else {
                    ""
                }
            ),
            WalkStep::Keys => format!(
                "Every token offers a key k_j, made the same way with the key weights{}. Head {} reads key/value head {}.",
                if e.position == PositionKind::Rope {
                    " and rotated by its own position"
                } else {
                    ""
                },
                e.head,
                e.kv_head
            ),
            WalkStep::Scores => "The dot product q·k_j adds up, dimension by dimension, how well the question matches each key: large and positive means a good match.".to_owned(),
            WalkStep::Scale => format!(
                "The scores are multiplied by {:.4}{}. Dividing by √d_head keeps them in a range where the softmax does not saturate, whatever the head width.",
                e.scale,
                if e.bias.is_some() {
                    " and ALiBi subtracts a penalty that grows with the distance to the query"
                } else {
                    ""
                }
            ),
            WalkStep::Mask => {
                let hidden = e.masked.iter().filter(|m| m.is_none()).count();
                format!(
                    "The mask removes {hidden} of {} keys by setting their scores to −∞, so the softmax gives them exactly zero weight.",
                    e.masked.len()
                )
            }
            WalkStep::Softmax => "The softmax turns the scores into weights: each is e^score over the sum of all of them, so they are positive and add up to 1.".to_owned(),
            WalkStep::Values => "Each value vector v_j is multiplied by its weight: the keys that matched best contribute most.".to_owned(),
            WalkStep::Output => "The weighted values are summed (a matrix product, not an elementwise one) into the head's output, which the output projection then mixes with the other heads'.".to_owned(),
        }
    }
}

impl std::fmt::Display for WalkStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::engine::{MaskSpec, RunOptions};
    use crate::model::{DemoConfig, DemoModel, DemoPositional, Model};

    fn explain(cfg: DemoConfig, mask: &str, head: usize, query: usize) -> Explanation {
        let model = DemoModel::new(cfg).unwrap();
        let tokens =
            crate::tokenize::tokenize("the cat sat on the mat", Default::default()).unwrap();
        let opts = RunOptions {
            mask: MaskSpec::parse(mask).unwrap(),
            trace_layer: Some(1),
            ..RunOptions::default()
        };
        let run = model.forward(&tokens, &opts).unwrap();
        let e = Explanation::from_trace(run.trace.as_ref().unwrap(), head, query).unwrap();
        // The weights are the map's row.
        let map = run.maps.head(1, head).unwrap();
        assert_eq!(e.weights, map.row(query).to_vec());
        e
    }

    fn check_consistent(e: &Explanation) {
        let n = e.keys.len();
        for j in 0..n {
            let dot: f32 = e.q.iter().zip(&e.keys[j]).map(|(a, b)| a * b).sum();
            assert!(
                (dot - e.scores[j]).abs() <= 1e-4 * (1.0 + dot.abs()),
                "score {j}"
            );
            assert!((e.dim_products(j).iter().sum::<f32>() - e.scores[j]).abs() < 1e-3);
            if let Some(m) = e.masked[j] {
                assert!(
                    (m - e.scaled[j]).abs() <= 1e-4 * (1.0 + m.abs()),
                    "masked {j}"
                );
            } else {
                assert_eq!(e.weights[j], 0.0);
            }
        }
        let sum: f32 = e.weights.iter().sum();
        assert!((sum - if e.fully_masked { 0.0 } else { 1.0 }).abs() < 1e-5);
        for c in 0..e.d_head {
            let o: f32 = (0..n).map(|j| e.weights[j] * e.values[j][c]).sum();
            assert!((o - e.output[c]).abs() < 1e-4, "output {c}");
        }
    }

    #[test]
    fn fields_agree_with_each_other_and_with_the_map() {
        let e = explain(DemoConfig::default(), "causal", 2, 3);
        // Causal: keys 4 and 5 are masked for query 3.
        assert_eq!(e.masked[4], None);
        assert_eq!(e.masked[5], None);
        assert!(e.masked[3].is_some());
        // d_model 256 over 8 heads: d_head 32, scale 1/√32.
        assert_eq!(e.d_head, 32);
        assert!((e.scale - 1.0 / 32f32.sqrt()).abs() < 1e-7);
        assert_eq!(e.position, PositionKind::None);
        assert!(e.bias.is_none());
        check_consistent(&e);
    }

    #[test]
    fn alibi_bias_and_rope_are_recorded() {
        let alibi = DemoConfig {
            positional: DemoPositional::Alibi,
            ..DemoConfig::default()
        };
        let e = explain(alibi, "none", 0, 2);
        assert_eq!(e.position, PositionKind::Alibi);
        let bias = e.bias.clone().unwrap();
        // 8 heads: head 0's slope is 2^-1; query 2 against key 0 is −0.5·2 = −1.
        assert!((bias[0] + 1.0).abs() < 1e-6, "{bias:?}");
        assert_eq!(bias[2], 0.0);
        check_consistent(&e);
        let rope = DemoConfig {
            positional: DemoPositional::Rope,
            ..DemoConfig::default()
        };
        let e = explain(rope, "window:1", 1, 0);
        assert_eq!(e.position, PositionKind::Rope);
        check_consistent(&e);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let model = DemoModel::new(DemoConfig::default()).unwrap();
        let tokens = crate::tokenize::tokenize("a b", Default::default()).unwrap();
        let opts = RunOptions {
            trace_layer: Some(0),
            ..RunOptions::default()
        };
        let trace = model.forward(&tokens, &opts).unwrap().trace.unwrap();
        assert_eq!(
            Explanation::from_trace(&trace, 8, 0),
            Err(ExplainError::NoSuchHead { head: 8, heads: 8 })
        );
        assert_eq!(
            Explanation::from_trace(&trace, 0, 2)
                .unwrap_err()
                .to_string(),
            "query 2 does not exist (the input has 2 tokens)"
        );
    }
}
