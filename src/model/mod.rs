//! Models: the built-in demo and real Hugging Face checkpoints (with their LM heads).
//!
//! A model turns tokens into embeddings, runs the engine's [`Transformer`](crate::engine::Transformer),
//! and returns an [`AttentionRun`]. Nothing here touches the UI.

pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod lm_head;
mod loaders;
mod rng;
pub mod weights;

use crate::engine::{AttentionRun, EngineError, MaskPart, MaskSpec, Mistake, RunOptions};
use crate::tokenize::Token;
use serde::Serialize;

pub use checkpoint::Checkpoint;
pub use demo::{DemoConfig, DemoModel, DemoPositional};
pub use lm_head::{LmHeadInfo, PredictError, Prediction};
pub use weights::{LoadError, LoadProgress};

/// A model's architecture, for `attnviz info` and the app's model panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// A short name, such as `demo` or a folder name.
    pub name: String,
    /// `demo`, `bert`, `gpt2` or `llama`.
    pub architecture: String,
    /// Number of layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one head.
    pub d_head: usize,
    /// Hidden width of the MLP.
    pub d_ff: usize,
    /// Vocabulary size, if the model has a vocabulary.
    pub vocab: Option<usize>,
    /// Number of parameters.
    pub params: u64,
    /// How weights are stored.
    pub dtype: String,
    /// Longest accepted input, in tokens.
    pub max_positions: usize,
    /// Positional encoding, in words.
    pub positional: String,
    /// Norm placement, in words.
    pub norm: String,
    /// True when the model is causal by construction.
    pub causal: bool,
    /// The next-token head, when the model has one.
    pub lm_head: Option<LmHeadInfo>,
}

/// Anything that runs attention over tokens.
pub trait Model: Send + Sync {
    /// The architecture summary.
    fn info(&self) -> ModelInfo;

    /// Runs the model and records every layer's and head's attention.
    ///
    /// `progress` is called after each layer with the number of layers done; returning false
    /// cancels the run.
    fn forward_with_progress(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<AttentionRun, EngineError>;

    /// Runs the model to the end.
    fn forward(&self, tokens: &[Token], opts: &RunOptions) -> Result<AttentionRun, EngineError> {
        self.forward_with_progress(tokens, opts, &mut |_| true)
    }
}

/// The mask a run applies: the user's `spec`, plus what the architecture adds for an input of
/// `len` tokens: the causal mask of a causal model (GPT-2, Llama), and Mistral's sliding window
/// of `sliding_window` keys (a query sees the W most recent keys, itself included, as
/// transformers allows query − key < W) once the input is longer than W. The one place this is
/// decided: checkpoints run with it, exports record it and the app shows it.
pub fn effective_mask(
    spec: &MaskSpec,
    causal: bool,
    sliding_window: Option<usize>,
    len: usize,
) -> MaskSpec {
    let mut mask = crate::engine::effective_mask(spec, causal);
    if let Some(window) = sliding_window
        && window > 0
        && len > window
    {
        mask.parts.push(MaskPart::Window(window - 1));
    }
    mask
}

/// The mask a run applies once `mistakes` are made (teaching): [`effective_mask`], without the
/// architecture's causal mask under [`Mistake::NoCausalMask`] (a `causal` the user wrote stays),
/// and with `block:2^heads` under [`Mistake::ChunkByHeads`]. With no mistakes it equals
/// [`effective_mask`].
pub fn applied_mask(
    spec: &MaskSpec,
    causal: bool,
    sliding_window: Option<usize>,
    len: usize,
    heads: usize,
    mistakes: &[Mistake],
) -> MaskSpec {
    let causal = causal && !mistakes.contains(&Mistake::NoCausalMask);
    let mask = effective_mask(spec, causal, sliding_window, len);
    crate::engine::mistaken_mask(&mask, false, heads, mistakes)
}
