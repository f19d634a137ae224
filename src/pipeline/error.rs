//! Why a run could not be made: [`PipelineError`] and the typed parts the front ends word in
//! their own language ([`OptionMisfit`], [`RunSetting`], [`TextRole`]).

use super::thousands;
use crate::engine::{ByteSize, EngineError};
use crate::model::{InputError, LoadError, OpenError, demo};
use std::path::{Path, PathBuf};

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The demo model's settings are impossible.
    // No `#[from]`: that would make the cause a source too, said twice on the CLI's line.
    #[error("demo model: {0}")]
    Demo(demo::DemoConfigError),
    /// A checkpoint folder could not be loaded (the message names the file).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The input cannot be turned into tokens for this model.
    #[error(transparent)]
    Input(#[from] InputError),
    /// A run option does not fit the model.
    #[error("{0}")]
    Misfit(OptionMisfit),
    /// The input is longer than the model's position limit.
    #[error(
        "{}{}",
        too_long_text(*which, *count, *generated, *limit, config.as_deref()),
        in_file(file.as_deref())
    )]
    TooLong {
        /// Which text is too long: the input, or the similarity target's second text.
        which: TextRole,
        /// Tokens in it (with the generated ones).
        count: usize,
        /// Of `count`, the tokens a generated continuation adds.
        generated: usize,
        /// The model's limit.
        limit: usize,
        /// True when the input asked to be cut at the limit (and still did not fit).
        truncate: bool,
        /// The checkpoint's config.json that sets the limit (`None` for the demo).
        config: Option<PathBuf>,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The forward pass failed.
    // Not named `source`: the message already says why, and a source would make `{:#}` (the
    // CLI's error line) say it twice.
    #[error("{error}{}", in_file(file.as_deref()))]
    Engine {
        /// Why.
        error: EngineError,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The run would need more memory than its budget allows.
    #[error(
        "needs {} for {} tokens; the memory budget is {}{}",
        ByteSize(*needs),
        thousands(*tokens),
        ByteSize(*budget),
        in_file(file.as_deref())
    )]
    OverBudget {
        /// Estimated peak bytes of the run.
        needs: u64,
        /// Tokens in the run.
        tokens: usize,
        /// The budget, in bytes.
        budget: u64,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// Next-token predictions are impossible (no LM head, a position out of range).
    #[error(transparent)]
    Predict(crate::model::PredictError),
    /// An export would be larger than its limit; nothing was written.
    #[error(
        "the export would take {}, more than the {} allowed; nothing was written to {}",
        output_size(*estimate, *at_least),
        ByteSize(*limit),
        file.display()
    )]
    OutputTooLarge {
        /// The estimated size, in bytes.
        estimate: u64,
        /// Whether `estimate` is the least the file can take (known before the values are,
        /// see `check_output_ahead`) rather than an estimate of its size.
        at_least: bool,
        /// The limit, in bytes.
        limit: u64,
        /// The file that was not written.
        file: PathBuf,
    },
    /// Writing an export failed (the message names the file).
    #[error(transparent)]
    Write(#[from] crate::fs::IoError),
    /// A newer job or the user stopped the run.
    #[error("cancelled")]
    Cancelled,
    /// The model could not be built within its budget.
    #[error(transparent)]
    Open(OpenError),
    /// An attribution could not be computed (unsupported target, missing special token, …).
    #[error(transparent)]
    Attribution(crate::analysis::attribution::AttributionError),
    /// A logit lens, contributions, routes or patching could not be made.
    #[error(transparent)]
    Answer(#[from] crate::analysis::answer::AnswerError),
}

impl From<demo::DemoConfigError> for PipelineError {
    fn from(e: demo::DemoConfigError) -> Self {
        Self::Demo(e)
    }
}

impl From<OpenError> for PipelineError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Demo(e) => Self::Demo(e),
            OpenError::Load(e) => Self::Load(e),
            e @ OpenError::OverBudget { .. } => Self::Open(e),
        }
    }
}

/// A run option that does not fit the model, with the value and the valid range. Worded
/// without the CLI's flags or the app's controls: each front end says which of its own the
/// option is ([`OptionMisfit::option`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptionMisfit {
    /// A dimension subset names a head that does not exist.
    DimsHead {
        /// The layer named.
        layer_idx: usize,
        /// The head named.
        head_idx: usize,
        /// Layers in the model.
        layers: usize,
        /// Heads per layer.
        heads: usize,
    },
    /// A dimension subset names a dimension past the head's width.
    DimsDimension {
        /// The dimension named.
        dim: usize,
        /// Its layer.
        layer_idx: usize,
        /// Its head.
        head_idx: usize,
        /// Dimensions per head.
        d_head: usize,
    },
    /// The traced layer does not exist.
    TraceLayer {
        /// The layer named.
        layer_idx: usize,
        /// Layers in the model.
        layers: usize,
    },
    /// An ablation names a head that does not exist.
    AblatedHead {
        /// The ablation.
        ablation: crate::engine::Ablation,
        /// Layers in the model.
        layers: usize,
        /// Heads per layer.
        heads: usize,
    },
    /// The same head is ablated twice with two modes (the reason says which).
    AblatedTwice(String),
}

/// The run options a [`OptionMisfit`] or a budget can be about, for the front ends' wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunSetting {
    /// The per-head dimension subsets.
    Dims,
    /// The traced layer.
    TraceLayer,
    /// The ablated heads.
    Ablations,
    /// The memory budget.
    MemoryBudget,
    /// Cutting an input longer than the model's limit.
    Truncate,
}

impl OptionMisfit {
    /// Which option does not fit.
    pub fn option(&self) -> RunSetting {
        match self {
            Self::DimsHead { .. } | Self::DimsDimension { .. } => RunSetting::Dims,
            Self::TraceLayer { .. } => RunSetting::TraceLayer,
            Self::AblatedHead { .. } | Self::AblatedTwice(_) => RunSetting::Ablations,
        }
    }
}

impl std::fmt::Display for OptionMisfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::DimsHead {
                layer_idx,
                head_idx,
                layers,
                heads,
            } => write!(
                f,
                "the dimension mask names head {layer_idx}.{head_idx}, which does not exist ({layers} layers × {heads} heads)"
            ),
            Self::DimsDimension {
                dim,
                layer_idx,
                head_idx,
                d_head,
            } => write!(
                f,
                "the dimension mask names dimension {dim} of head {layer_idx}.{head_idx}, but heads have {d_head} dimensions (0–{})",
                d_head.saturating_sub(1)
            ),
            Self::TraceLayer { layer_idx, layers } => write!(
                f,
                "the traced layer {layer_idx} does not exist ({layers} layers, 0–{})",
                layers.saturating_sub(1)
            ),
            Self::AblatedHead {
                ablation,
                layers,
                heads,
            } => write!(
                f,
                "cannot ablate head {}.{}: it does not exist (layers 0–{}, heads 0–{})",
                ablation.layer_idx,
                ablation.head_idx,
                layers.saturating_sub(1),
                heads.saturating_sub(1)
            ),
            Self::AblatedTwice(reason) => f.write_str(reason),
        }
    }
}

/// Which text of a run a [`PipelineError::TooLong`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextRole {
    /// The input.
    Input,
    /// The similarity target's second text.
    TextB,
}

/// A [`PipelineError::TooLong`]'s message without its file, for front ends that add a hint
/// before the path (the path stays last).
pub fn too_long_text(
    which: TextRole,
    count: usize,
    generated: usize,
    limit: usize,
    config: Option<&Path>,
) -> String {
    format!(
        "{}{count} tokens exceed the model's limit of {limit}{}",
        which.prefix(generated),
        limit_source(config)
    )
}

impl TextRole {
    /// What the message says first: nothing for the input, `text B: ` for the second text,
    /// and how many of the tokens a continuation adds.
    fn prefix(self, generated: usize) -> String {
        let role = match self {
            Self::Input => "",
            Self::TextB => "text B: ",
        };
        if generated > 0 {
            format!("{role}with {generated} generated, ")
        } else {
            role.to_owned()
        }
    }
}

/// `" (set by CONFIG)"`, or nothing.
pub(super) fn limit_source(config: Option<&Path>) -> String {
    config.map_or_else(String::new, |c| format!(" (set by {})", c.display()))
}

/// `" in FILE"`, or nothing.
pub(crate) fn in_file(file: Option<&Path>) -> String {
    file.map_or_else(String::new, |f| format!(" in {}", f.display()))
}

/// An export's size as the messages word it: "about 4.2 GiB", or "at least 4.2 GiB" when only
/// the least it can take is known.
pub fn output_size(estimate: u64, at_least: bool) -> String {
    let words = if at_least { "at least" } else { "about" };
    format!("{words} {}", ByteSize(estimate))
}
