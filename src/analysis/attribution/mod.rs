//! Attribution (saliency): a score per input token for how much it drives a scalar target.
//!
//! The gradient methods ([`gradient`], [`input_x_gradient`], [`integrated_gradients`],
//! [`attention_gradient`]) and [`occlusion`] only see the model as a
//! `&dyn grad::Differentiable`; [`attention`] and [`rollout`] read a forward pass's maps. The
//! target is resolved once, on the unperturbed input, and held fixed for every perturbed run.
//! [`aggregate_words`] sums the pieces of a word; [`rank_correlation`] compares two methods;
//! [`to_json`] and [`to_csv`] write the `attnviz.attribution/v1` formats.
//!
//! Nothing here touches files or the UI; `pipeline::attribute` is the one entry point that
//! turns a request into an [`Attribution`].

mod export;
mod gradient;
mod maps;
mod occlusion;
mod words;

pub use export::{to_csv, to_json};
pub use gradient::{
    IntegratedGradients, PointBatches, attention_gradient, gradient, input_x_gradient,
    integrated_gradients,
};
pub use maps::{attention, rollout};
pub use occlusion::occlusion;
pub use words::{aggregate_words, word_groups};

use crate::grad::{GradError, ResolvedTarget, SpecialToken, TargetKind, TargetSpec};
use crate::tokenize::Token;
use serde::{Deserialize, Serialize};

/// Why an attribution could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum AttributionError {
    /// The model could not compute the target or its gradient.
    #[error(transparent)]
    Grad(#[from] GradError),
    /// The method needs a special token the model's tokenizer does not have.
    #[error("{what} needs the tokenizer's {token} token, and {model} has none")]
    NoSpecialToken {
        /// What asked for it, in words (`the mask baseline`, `occluding with unk`).
        what: String,
        /// The request's setting that asked for it, if one did (the front ends name it).
        setting: Option<RequestSetting>,
        /// Which token (`mask`, `unknown`, `padding`).
        token: &'static str,
        /// The model's name.
        model: String,
    },
    /// A request setting that does not go with the method or target, or is out of range. The
    /// reason names no CLI flag or app control: each front end adds its name for `setting`.
    #[error("{reason}")]
    Setting {
        /// Which setting.
        setting: RequestSetting,
        /// What is wrong with it.
        reason: String,
    },
    /// The computation went wrong inside (an internal inconsistency, not the request).
    #[error("{0}")]
    Invalid(String),
    /// The progress callback asked to stop.
    #[error("cancelled")]
    Cancelled,
}

/// The settings of an [`AttributeRequest`] an error can be about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestSetting {
    /// Integrated gradients' step count.
    Steps,
    /// Integrated gradients' baseline.
    Baseline,
    /// What occlusion puts in a token's place.
    Occlude,
    /// The similarity target's second text.
    TextB,
    /// Attributing a generated continuation.
    Generate,
    /// Token or word aggregation.
    Aggregate,
}

/// The name of a special token, for messages.
pub fn special_token_name(which: SpecialToken) -> &'static str {
    match which {
        SpecialToken::Mask => "mask",
        SpecialToken::Unknown => "unknown",
        SpecialToken::Pad => "padding",
    }
}

/// Implements `FromStr`, `Display` and `ALL` for a fieldless enum from (variant, name) pairs.
macro_rules! named_enum {
    ($ty:ident, $what:literal, [$(($variant:ident, $name:literal)),+ $(,)?]) => {
        impl $ty {
            /// Every value, in the order the CLI lists them.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name used on the command line and in files.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::ALL
                    .iter()
                    .copied()
                    .find(|v| v.name() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $ty::ALL.iter().map(|v| v.name()).collect();
                        format!("unknown {} {s:?}; expected one of: {}", $what, names.join(", "))
                    })
            }
        }
    };
}

/// An attribution method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// ‖∂T/∂e_i‖₂.
    Gradient,
    /// Σ_d e_{i,d} · ∂T/∂e_{i,d}.
    InputXGradient,
    /// Integrated gradients from a baseline (right Riemann sum).
    IntegratedGradients,
    /// Chefer et al. (2021), self-attention rule.
    AttentionGradient,
    /// T(original) − T(token i occluded).
    Occlusion,
    /// Row P of the last layer's head-mean attention.
    Attention,
    /// Row P of the attention rollout (Abnar & Zuidema 2020).
    Rollout,
}

named_enum!(
    Method,
    "method",
    [
        (Gradient, "gradient"),
        (InputXGradient, "input-x-gradient"),
        (IntegratedGradients, "integrated-gradients"),
        (AttentionGradient, "attention-gradient"),
        (Occlusion, "occlusion"),
        (Attention, "attention"),
        (Rollout, "rollout"),
    ]
);

impl Method {
    /// True when scores can be negative (a diverging colormap shows them).
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Method::InputXGradient | Method::IntegratedGradients | Method::Occlusion
        )
    }

    /// True when the method needs the model's gradients (or perturbed runs), not just its maps.
    pub fn needs_target_value(self) -> bool {
        !matches!(self, Method::Attention | Method::Rollout)
    }

    /// True when the method runs the backward pass.
    pub fn needs_gradient(self) -> bool {
        matches!(
            self,
            Method::Gradient
                | Method::InputXGradient
                | Method::IntegratedGradients
                | Method::AttentionGradient
        )
    }
}

/// The integrated-gradients baseline: what replaces every token's embedding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// All zeros.
    #[default]
    Zero,
    /// The padding token's embedding in every row.
    Pad,
    /// The mask token's embedding in every row.
    Mask,
}

named_enum!(
    Baseline,
    "baseline",
    [(Zero, "zero"), (Pad, "pad"), (Mask, "mask")]
);

/// How occlusion hides a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Occlude {
    /// Replace it by the mask token.
    Mask,
    /// Replace it by the unknown token.
    Unk,
    /// Remove it (later tokens move one position left).
    Remove,
}

named_enum!(
    Occlude,
    "occlusion",
    [(Mask, "mask"), (Unk, "unk"), (Remove, "remove")]
);

/// Whether scores are per token or summed per word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    /// One score per token.
    #[default]
    Token,
    /// One score per word: the sum of its pieces.
    Word,
}

named_enum!(Aggregate, "aggregation", [(Token, "token"), (Word, "word")]);

/// Integrated-gradient steps when none are asked for.
pub const DEFAULT_STEPS: usize = 32;
/// The most integrated-gradient steps allowed.
pub const MAX_STEPS: usize = 100_000;

/// What to attribute: the method, the target and the method's settings. Sessions keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeRequest {
    /// The method.
    pub method: Method,
    /// The target, before its defaults are resolved.
    pub target: TargetSpec,
    /// The second text of `similarity`.
    pub text_b: Option<String>,
    /// Integrated-gradient steps (only that method; default [`DEFAULT_STEPS`]).
    pub steps: Option<usize>,
    /// Integrated-gradient baseline (only that method; default zero).
    pub baseline: Option<Baseline>,
    /// How occlusion hides a token (only that method; default mask, else unk, else remove).
    pub occlude: Option<Occlude>,
    /// Per token or per word.
    #[serde(default)]
    pub aggregate: Aggregate,
    /// Greedily generate this many tokens and attribute each one's log-probability.
    pub generate: Option<usize>,
}

impl AttributeRequest {
    /// A request for `method` on `target` with every setting at its default.
    pub fn new(method: Method, target: TargetSpec) -> Self {
        Self {
            method,
            target,
            text_b: None,
            steps: None,
            baseline: None,
            occlude: None,
            aggregate: Aggregate::Token,
            generate: None,
        }
    }

    /// Checks the settings against the method and target: `--steps` and `--baseline` only with
    /// integrated gradients, `--occlude` only with occlusion, `--text-b` exactly with
    /// `similarity`, `--generate` only with a `logprob` target.
    pub fn validate(&self) -> Result<(), AttributionError> {
        use RequestSetting as S;
        let bad = |setting: RequestSetting, reason: String| {
            Err(AttributionError::Setting { setting, reason })
        };
        let ig = self.method == Method::IntegratedGradients;
        if self.steps.is_some() && !ig {
            return bad(
                S::Steps,
                format!(
                    "a step count only applies to integrated-gradients, not to {}",
                    self.method
                ),
            );
        }
        if let Some(steps) = self.steps
            && !(1..=MAX_STEPS).contains(&steps)
        {
            return bad(
                S::Steps,
                format!("the step count must be 1..={MAX_STEPS}, got {steps}"),
            );
        }
        if self.baseline.is_some() && !ig {
            return bad(
                S::Baseline,
                format!(
                    "a baseline only applies to integrated-gradients, not to {}",
                    self.method
                ),
            );
        }
        if self.occlude.is_some() && self.method != Method::Occlusion {
            return bad(
                S::Occlude,
                format!(
                    "an occluding token only applies to occlusion, not to {}",
                    self.method
                ),
            );
        }
        let similarity = self.target.kind == TargetKind::Similarity;
        if similarity && self.text_b.is_none() {
            return bad(
                S::TextB,
                "the similarity target needs a second text".to_owned(),
            );
        }
        if !similarity && self.text_b.is_some() {
            return bad(
                S::TextB,
                format!(
                    "a second text only applies to the similarity target, not to {}",
                    self.target.kind
                ),
            );
        }
        if let Some(k) = self.generate {
            if self.target.kind != TargetKind::Logprob
                || self.target.position.is_some()
                || self.target.token.is_some()
            {
                return bad(
                    S::Generate,
                    "a generated continuation attributes each generated token's \
                     log-probability: use it with a logprob target with no position or token"
                        .to_owned(),
                );
            }
            if self.aggregate == Aggregate::Word {
                return bad(
                    S::Aggregate,
                    "word aggregation does not combine with a generated continuation".to_owned(),
                );
            }
            if k == 0 {
                return bad(
                    S::Generate,
                    "a generated continuation needs at least 1 token".to_owned(),
                );
            }
        }
        Ok(())
    }
}

/// Scores of a continuation: each generated token's log-probability attributed over everything
/// before it.
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    /// The index of the first generated token (the prompt's length N).
    pub from: usize,
    /// The target of each generated token: `logprob` at the position before it.
    pub targets: Vec<ResolvedTarget>,
    /// [K][N+K]: row k scores the tokens before generated token k; `None` from its own position
    /// on.
    pub scores: Vec<Vec<Option<f32>>>,
}

/// The result of an attribution.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    /// The tokens the model saw: the prompt (with the mask token at P for `mlm`), and the
    /// generated tokens with `--generate`.
    pub tokens: Vec<Token>,
    /// The method.
    pub method: Method,
    /// The (first) target, resolved.
    pub target: ResolvedTarget,
    /// Integrated-gradient steps, for that method.
    pub steps: Option<usize>,
    /// Integrated-gradient baseline, for that method.
    pub baseline: Option<Baseline>,
    /// How occlusion hid tokens, for that method.
    pub occlude: Option<Occlude>,
    /// Σ_i s_i − (T(e) − T(b)), for integrated gradients.
    pub completeness_gap: Option<f64>,
    /// One score per token, or per word with [`Aggregate::Word`] (the first generated token's
    /// row with `--generate`).
    pub scores: Vec<f32>,
    /// What each score is about: token labels, or words.
    pub labels: Vec<String>,
    /// With [`Aggregate::Word`], the token indices of each word (one per score).
    pub words: Option<Vec<Vec<usize>>>,
    /// Scores of a continuation, with `--generate`.
    pub generated: Option<Generated>,
    /// The mask the runs on the prompt applied (the engine's decision for the prompt's
    /// length), as the attribution JSON records it.
    pub mask: crate::engine::AppliedMask,
    /// The heads every run of the attribution ablated, as the attribution JSON records them.
    pub ablations: Vec<crate::engine::Ablation>,
}

/// The row of a square matrix that a target reads: row P, or the mean of the rows for
/// `similarity` (P = `None`).
pub(crate) fn target_row(matrix: &ndarray::Array2<f64>, target: &ResolvedTarget) -> Vec<f32> {
    match target.position {
        Some(p) if p < matrix.nrows() => matrix.row(p).iter().map(|&v| v as f32).collect(),
        Some(_) => vec![0.0; matrix.ncols()],
        None => {
            let n = matrix.nrows().max(1) as f64;
            matrix
                .columns()
                .into_iter()
                .map(|c| (c.sum() / n) as f32)
                .collect()
        }
    }
}

/// Spearman's rank correlation of two score vectors (ties get their mean rank). `None` when the
/// lengths differ, there are fewer than two scores, a score is not finite, or either vector is
/// constant.
pub fn rank_correlation(a: &[f32], b: &[f32]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 2 || a.iter().chain(b).any(|v| !v.is_finite()) {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let mean = (a.len() as f64 + 1.0) / 2.0;
    let (mut num, mut da, mut db) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        num += (x - mean) * (y - mean);
        da += (x - mean) * (x - mean);
        db += (y - mean) * (y - mean);
    }
    if da == 0.0 || db == 0.0 {
        return None;
    }
    Some(num / (da * db).sqrt())
}

/// 1-based ranks, ties sharing their mean rank.
fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean is (start+1+end)/2.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

/// An attribution of `method` over tokens `texts` with `scores`, for log p of token 7 at the
/// last position: the fixture unit tests of its renderers and exports share.
#[cfg(test)]
pub(crate) fn test_attribution(method: Method, texts: &[&str], scores: Vec<f32>) -> Attribution {
    let tokens: Vec<crate::tokenize::Token> = texts
        .iter()
        .map(|t| crate::tokenize::Token::from_text(t))
        .collect();
    Attribution {
        mask: crate::engine::AppliedMask::default(),
        ablations: Vec::new(),
        labels: tokens.iter().map(|t| t.text.clone()).collect(),
        tokens,
        method,
        target: crate::grad::ResolvedTarget {
            kind: crate::grad::TargetKind::Logprob,
            position: Some(texts.len().saturating_sub(1)),
            token: Some(7),
            foil: None,
            text_b: None,
            reference: None,
            value: -1.5,
        },
        steps: None,
        baseline: None,
        occlude: None,
        completeness_gap: None,
        scores,
        words: None,
        generated: None,
    }
}

#[cfg(test)]
mod tests;
