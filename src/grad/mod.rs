//! Gradients of a scalar target with respect to the input embeddings, for saliency.
//!
//! This module is the contract between the backward pass (models implement [`Differentiable`])
//! and the attribution methods in `analysis::attribution`, which only ever see a
//! `&dyn Differentiable`. Weights are constants: nothing here computes a weight's gradient.
//!
//! Targets are natural-log quantities of one forward pass:
//! - `logprob:P:T`: log p(T) in position P's next-token distribution (causal LMs);
//! - `contrast:P:T:F`: log p(T) − log p(F) at P;
//! - `mlm:P:T`: masked-LM log-probability of T at P (BERT with `cls.predictions.*`);
//! - `similarity`: cosine similarity between the mean final hidden state of the input and that
//!   of a second text, held constant.

mod model;

use crate::engine::{EngineError, RunOptions};
use crate::tokenize::Token;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Which scalar a saliency method explains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// Log-probability of a next token.
    Logprob,
    /// Log-probability of a token minus that of a foil.
    Contrast,
    /// Masked-LM log-probability.
    Mlm,
    /// Cosine similarity of mean-pooled final hidden states with a second text.
    Similarity,
}

impl TargetKind {
    /// Every kind, in the order `attnviz info` lists them.
    pub const ALL: [TargetKind; 4] = [
        TargetKind::Logprob,
        TargetKind::Contrast,
        TargetKind::Mlm,
        TargetKind::Similarity,
    ];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Logprob => "logprob",
            TargetKind::Contrast => "contrast",
            TargetKind::Mlm => "mlm",
            TargetKind::Similarity => "similarity",
        }
    }
}

impl std::fmt::Display for TargetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A token named in a target: a vocabulary id, or a vocabulary string (written in quotes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenRef {
    /// A vocabulary id.
    Id(u32),
    /// A vocabulary string, as the vocabulary stores it (`Ġhe`).
    Text(String),
}

/// A target as the user wrote it, before defaults are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetSpec {
    /// What kind of scalar.
    pub kind: TargetKind,
    /// The position P (0-based); `None` means the default (the last position for `logprob`).
    pub position: Option<usize>,
    /// The token T; `None` means the argmax at P.
    pub token: Option<TokenRef>,
    /// The foil F of `contrast`.
    pub foil: Option<TokenRef>,
}

impl std::str::FromStr for TargetSpec {
    type Err = String;

    /// Reads `logprob[:P[:T]]`, `contrast:P:T:F`, `mlm:P[:T]` or `similarity`. T and F are ids
    /// or vocabulary strings in double quotes (`logprob:5:"Ġhe"`); a quoted string may hold `:`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "bad --target {s:?}: {why}; expected logprob[:P[:T]], contrast:P:T:F, mlm:P[:T] \
                 or similarity"
            )
        };
        let fields = split_fields(s.trim()).map_err(|why| bad(&why))?;
        let (kind, rest) = fields.split_first().ok_or_else(|| bad("empty"))?;
        let kind = match kind.as_str() {
            "logprob" => TargetKind::Logprob,
            "contrast" => TargetKind::Contrast,
            "mlm" => TargetKind::Mlm,
            "similarity" => TargetKind::Similarity,
            other => return Err(bad(&format!("unknown kind {other:?}"))),
        };
        let (min, max) = match kind {
            TargetKind::Logprob => (0, 2),
            TargetKind::Contrast => (3, 3),
            TargetKind::Mlm => (1, 2),
            TargetKind::Similarity => (0, 0),
        };
        if rest.len() < min || rest.len() > max {
            return Err(bad(&format!(
                "{kind} takes {min}..={max} fields after the kind, got {}",
                rest.len()
            )));
        }
        let position = rest
            .first()
            .map(|p| {
                p.parse::<usize>()
                    .map_err(|_| bad(&format!("position {p:?} is not an index")))
            })
            .transpose()?;
        let token_ref = |f: &String| -> Result<TokenRef, String> {
            if let Some(text) = f.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                if text.is_empty() {
                    return Err(bad("empty token string"));
                }
                Ok(TokenRef::Text(text.to_owned()))
            } else {
                f.parse::<u32>().map(TokenRef::Id).map_err(|_| {
                    bad(&format!(
                        "token {f:?} is neither an id nor a string in double quotes"
                    ))
                })
            }
        };
        let token = rest.get(1).map(token_ref).transpose()?;
        let foil = rest.get(2).map(token_ref).transpose()?;
        Ok(Self {
            kind,
            position,
            token,
            foil,
        })
    }
}

/// Splits on `:` outside double quotes, keeping the quotes on quoted fields.
fn split_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in s.chars() {
        match c {
            ':' if !quoted => fields.push(String::new()),
            _ => {
                if c == '"' {
                    quoted = !quoted;
                }
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    if quoted {
        return Err("unclosed double quote".to_owned());
    }
    Ok(fields)
}

/// A target with every default resolved on the unperturbed input. It is held fixed for every
/// perturbed run (integrated-gradient steps, baselines, occlusions) and written into outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedTarget {
    /// What kind of scalar.
    pub kind: TargetKind,
    /// The position P in the unperturbed input; `None` for `similarity`.
    pub position: Option<usize>,
    /// The token T; `None` for `similarity`.
    pub token: Option<u32>,
    /// The foil F of `contrast`.
    pub foil: Option<u32>,
    /// The second text of `similarity`.
    pub text_b: Option<String>,
    /// For `similarity`: the mean final hidden state of text B, held constant. Shape: [d_model].
    pub reference: Option<Vec<f32>>,
    /// T on the unperturbed input.
    pub value: f64,
}

/// The gradient of a target at one input.
#[derive(Clone, Debug, PartialEq)]
pub struct Gradient {
    /// T at this input.
    pub value: f64,
    /// ∂T/∂e, one row per token. Shape: [token, d_model].
    pub d_embeds: Array2<f32>,
    /// When asked for, one matrix per layer: Ā_l = mean over query heads of
    /// max(0, ∂T/∂A_l ⊙ A_l), with A_l the post-softmax (masked) probabilities.
    /// Shape of each: [query, key].
    pub attention_relevance: Option<Vec<Array2<f32>>>,
}

/// Which special token an occlusion or a baseline asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpecialToken {
    /// The mask token (`[MASK]`).
    Mask,
    /// The unknown token (`[UNK]`, `<unk>`).
    Unknown,
    /// The padding token (`[PAD]`).
    Pad,
}

/// What went wrong computing a target or its gradient.
#[derive(Debug, thiserror::Error)]
pub enum GradError {
    /// The model cannot compute this kind of target.
    #[error("{model} does not support the {kind} target; it supports: {supported}")]
    Unsupported {
        /// The model's name.
        model: String,
        /// The kind asked for.
        kind: TargetKind,
        /// The kinds it supports, comma-separated.
        supported: String,
    },
    /// The target names a position or token the input or vocabulary does not have.
    #[error("{0}")]
    BadTarget(String),
    /// The forward pass failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// A model seen as a differentiable function from input embeddings e to a target T.
///
/// e_i is token i's input embedding row exactly as transformers' `inputs_embeds` holds it: BERT's
/// `word_embeddings` row before positions, token types and the embedding LayerNorm; GPT-2's
/// `wte` row before `wpe`; Llama's `embed_tokens` row; the demo's token vector before its
/// positions. Positions and token types are added inside, from the token index.
pub trait Differentiable: Send + Sync {
    /// The target kinds this model can compute.
    fn supported_targets(&self) -> Vec<TargetKind>;

    /// The model's special token of this kind, if its tokenizer has one.
    fn special_token(&self, which: SpecialToken) -> Option<Token>;

    /// The input embeddings e of these tokens. Shape: [token, d_model].
    fn input_embeddings(&self, tokens: &[Token]) -> Result<Array2<f32>, GradError>;

    /// Resolves the defaults of `spec` on the unperturbed `tokens` (and `text_b` for
    /// `similarity`) and computes T there.
    fn resolve_target(
        &self,
        tokens: &[Token],
        spec: &TargetSpec,
        text_b: Option<&[Token]>,
        opts: &RunOptions,
    ) -> Result<ResolvedTarget, GradError>;

    /// T at embeddings `embeds` (one row per token of `tokens`; `tokens` supply positions,
    /// token types and the mask). `target.position` is taken as is: a caller that removed
    /// tokens passes a target whose position it has already shifted.
    fn target_value(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        opts: &RunOptions,
    ) -> Result<f64, GradError>;

    /// T and ∂T/∂e at `embeds`, plus the per-layer attention relevance when
    /// `attention_relevance` is true. Identical results whatever the thread count.
    fn gradient(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        opts: &RunOptions,
        attention_relevance: bool,
    ) -> Result<Gradient, GradError>;

    /// T and ∂T/∂e at each of `points` (embeddings of the same `tokens`), without relevance:
    /// the same values, bit for bit, as [`Self::gradient`] at each point. A model may run the
    /// points through one batched pass (integrated gradients' steps); this default runs them
    /// one by one.
    fn gradients(
        &self,
        tokens: &[Token],
        points: &[Array2<f32>],
        target: &ResolvedTarget,
        opts: &RunOptions,
    ) -> Result<Vec<Gradient>, GradError> {
        one_by_one(self, tokens, points, target, opts)
    }
}

/// [`Differentiable::gradients`] one point at a time, through [`Differentiable::gradient`].
pub(crate) fn one_by_one<M: Differentiable + ?Sized>(
    model: &M,
    tokens: &[Token],
    points: &[Array2<f32>],
    target: &ResolvedTarget,
    opts: &RunOptions,
) -> Result<Vec<Gradient>, GradError> {
    points
        .iter()
        .map(|p| model.gradient(tokens, p.view(), target, opts, false))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_target_form() {
        let t: TargetSpec = "logprob".parse().unwrap();
        assert_eq!(
            (t.kind, t.position, t.token),
            (TargetKind::Logprob, None, None)
        );
        let t: TargetSpec = "logprob:5:\"Ġhe\"".parse().unwrap();
        assert_eq!(t.position, Some(5));
        assert_eq!(t.token, Some(TokenRef::Text("Ġhe".into())));
        let t: TargetSpec = "contrast:3:12:\"a:b\"".parse().unwrap();
        assert_eq!(t.kind, TargetKind::Contrast);
        assert_eq!(t.token, Some(TokenRef::Id(12)));
        assert_eq!(t.foil, Some(TokenRef::Text("a:b".into())));
        let t: TargetSpec = "mlm:2".parse().unwrap();
        assert_eq!((t.kind, t.position), (TargetKind::Mlm, Some(2)));
        assert_eq!(
            "similarity".parse::<TargetSpec>().unwrap().kind,
            TargetKind::Similarity
        );
    }

    #[test]
    fn rejects_bad_targets() {
        for bad in [
            "",
            "logits",
            "contrast:1:2",
            "similarity:3",
            "mlm",
            "logprob:x",
            "logprob:1:he",
            "logprob:1:\"he",
            "logprob:1:\"\"",
        ] {
            assert!(bad.parse::<TargetSpec>().is_err(), "{bad:?} parsed");
        }
    }
}
