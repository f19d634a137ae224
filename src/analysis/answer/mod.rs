//! Where the answer forms: what each layer would predict (the logit lens), what each head and
//! MLP adds to the target's logit (direct contributions), which routes carry information to the
//! output (Ferrando & Voita 2024) and which sites matter (activation patching).
//!
//! Pure functions of a run's captured tensors and the model's read-out (the final norm and the
//! unembedding). The runs themselves go through `pipeline::answer`. Notation as in the issue
//! that defines these (0-based): x_l the input of block l, `norm_f` the final norm, W_U the
//! unembedding with its bias b_U, target T at position P, optional foil F.

pub mod contributions;
pub mod lens;
pub mod patching;
pub mod routes;

use crate::engine::Norm;
use crate::model::MlmHead;
use ndarray::{Array1, ArrayView1, ArrayView2};

/// Why an answer analysis cannot be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    /// The block structure has no additive decomposition (post-LN: BERT).
    #[error(
        "{what} needs a pre-norm model (GPT-2, Llama, Mistral, Qwen2): in a post-norm model \
         (BERT) each block's norm mixes the residual stream, so no sum of parts reaches the \
         output; the logit lens works on it"
    )]
    PostNorm {
        /// The analysis asked for.
        what: &'static str,
    },
    /// A token, position or setting that does not fit.
    #[error("{0}")]
    Bad(String),
    /// The clean and corrupted inputs differ in length.
    #[error(
        "activation patching needs inputs of equal length: the clean text has {clean} tokens, \
         the corrupted text {corrupted}"
    )]
    Lengths {
        /// Tokens of the clean input.
        clean: usize,
        /// Tokens of the corrupted input.
        corrupted: usize,
    },
    /// The metric is the same on both inputs: recovery is undefined.
    #[error(
        "the metric is {value} on both the clean and the corrupted input, so recovery is \
         undefined: pick inputs (or a target) on which the model's answers differ"
    )]
    SameMetric {
        /// The metric on both.
        value: f64,
    },
}

/// How the final residual becomes logits: `norm_f` (or BERT's masked-LM transform), then W_U
/// and b_U.
#[derive(Clone, Copy)]
pub struct Readout<'a> {
    /// The final norm, or the transform that plays its part.
    pub norm: ReadoutNorm<'a>,
    /// W_U. Shape: [vocab, d_model].
    pub weight: ArrayView2<'a, f32>,
    /// b_U, when the head has one. Shape: [vocab].
    pub bias: Option<ArrayView1<'a, f32>>,
}

/// What stands between the residual stream and the unembedding.
#[derive(Clone, Copy)]
pub enum ReadoutNorm<'a> {
    /// Nothing (a model without a final norm).
    None,
    /// The final norm (GPT-2's `ln_f`, Llama's `norm`).
    Norm(&'a Norm),
    /// BERT's masked-LM transform (dense, GELU, LayerNorm).
    Mlm(&'a MlmHead),
}

impl Readout<'_> {
    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.weight.nrows()
    }

    /// `norm_f(x)` for each row of `x` ([row, d_model]): what the unembedding reads.
    pub fn normed(&self, x: ArrayView2<'_, f32>) -> ndarray::Array2<f32> {
        let mut out = x.to_owned();
        match self.norm {
            ReadoutNorm::None => {}
            ReadoutNorm::Norm(norm) => norm.apply(&mut out),
            ReadoutNorm::Mlm(head) => {
                for mut row in out.rows_mut() {
                    let h: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                    for (o, t) in row.iter_mut().zip(head.transform_row(&h)) {
                        *o = t as f32;
                    }
                }
            }
        }
        out
    }

    /// The logits of one normed row, in f64: W_U·h + b_U.
    pub fn logits_f64(&self, h: ArrayView1<'_, f32>) -> Vec<f64> {
        let h: Vec<f64> = h.iter().map(|&v| f64::from(v)).collect();
        self.weight
            .rows()
            .into_iter()
            .enumerate()
            .map(|(v, w)| {
                let dot: f64 = w.iter().zip(&h).map(|(&a, &b)| f64::from(a) * b).sum();
                dot + self.bias.map_or(0.0, |b| f64::from(b[v]))
            })
            .collect()
    }

    /// The direction a normed residual is read along for `target`: W_U[T] (− W_U[F]).
    pub fn direction(&self, target: &Target) -> Array1<f64> {
        let row = |v: u32| self.weight.row(v as usize).mapv(f64::from);
        match target.foil {
            Some(f) => row(target.token) - row(f),
            None => row(target.token),
        }
    }

    /// b_U[T] (− b_U[F]), zero without a bias.
    pub fn bias_term(&self, target: &Target) -> f64 {
        let Some(b) = self.bias else { return 0.0 };
        let at = |v: u32| f64::from(b[v as usize]);
        at(target.token) - target.foil.map_or(0.0, at)
    }

    /// Checks that `target` names tokens of the vocabulary.
    pub fn check(&self, target: &Target) -> Result<(), AnswerError> {
        for id in std::iter::once(target.token).chain(target.foil) {
            if id as usize >= self.vocab() {
                return Err(AnswerError::Bad(format!(
                    "token id {id} is outside the vocabulary (size {})",
                    self.vocab()
                )));
            }
        }
        Ok(())
    }
}

/// The target of an answer analysis, resolved: token T at position P, optional foil F.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Target {
    /// P (0-based).
    pub position: usize,
    /// T's vocabulary id.
    pub token: u32,
    /// F's vocabulary id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub foil: Option<u32>,
}

/// The metric m of the lens and of patching on one normed row: logit(T) − logit(F) with a foil,
/// else log p(T).
///
/// With a foil only the two logits are computed (in f64); without one, the whole row's
/// log-softmax as `attnviz next` computes it.
pub fn metric(readout: &Readout<'_>, normed_row: ArrayView1<'_, f32>, target: &Target) -> f64 {
    let h: Vec<f64> = normed_row.iter().map(|&v| f64::from(v)).collect();
    let logit = |v: u32| -> f64 {
        let dot: f64 = readout
            .weight
            .row(v as usize)
            .iter()
            .zip(&h)
            .map(|(&a, &b)| f64::from(a) * b)
            .sum();
        dot + readout.bias.map_or(0.0, |b| f64::from(b[v as usize]))
    };
    match target.foil {
        Some(f) => logit(target.token) - logit(f),
        None => {
            let mut logits = normed_row
                .insert_axis(ndarray::Axis(0))
                .dot(&readout.weight.t());
            if let Some(b) = readout.bias {
                logits += &b;
            }
            crate::model::lm_head::log_softmax_rows(&mut logits);
            f64::from(logits[[0, target.token as usize]])
        }
    }
}
