//! Models: the built-in demo and real Hugging Face checkpoints (with their LM heads).
//!
//! A model turns tokens into embeddings, runs the engine's [`Transformer`](crate::engine::Transformer),
//! and returns an [`AttentionRun`]. Nothing here touches the UI.

pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod gguf;
pub mod lm_head;
pub mod loaded;
mod loaders;
pub mod naming;
mod parts;
pub(crate) mod rng;
pub mod weights;

use crate::engine::{
    AppliedMask, AttentionRun, Captured, EngineError, Interventions, Resume, RunOptions,
};
use crate::tokenize::Token;
use serde::Serialize;

pub use checkpoint::Checkpoint;
pub use demo::{DemoConfig, DemoModel, DemoPositional};
pub use lm_head::{LmHeadInfo, MlmHead, PredictError, Prediction};
pub use loaded::{InputError, LoadedModel, OpenError};
pub use weights::{LoadError, LoadProgress};

/// A model's architecture, for `attnviz info` and the app's model panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// A short name, such as `demo` or a folder name.
    pub name: String,
    /// The model this one was fine-tuned or converted from, when its config names one (see
    /// [`naming`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<String>,
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

impl ModelInfo {
    /// Per key/value head, the query heads that share it (one group per head without GQA).
    pub fn kv_groups(&self) -> Vec<Vec<usize>> {
        kv_groups(self.heads, self.kv_heads)
    }
}

/// Key/value groups as Hugging Face models share KV heads (`repeat_kv`): query head h uses KV
/// head h / (heads / kv_heads). One group per head when `kv_heads` is 0 or does not divide
/// `heads`.
pub fn kv_groups(heads: usize, kv_heads: usize) -> Vec<Vec<usize>> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return (0..heads).map(|h| vec![h]).collect();
    }
    let per = heads / kv_heads;
    (0..kv_heads)
        .map(|g| (g * per..(g + 1) * per).collect())
        .collect()
}

/// Anything that runs attention over tokens.
pub trait Model: Send + Sync {
    /// The architecture summary.
    fn info(&self) -> ModelInfo;

    /// The input of the first block for `tokens` under `opts` (token embeddings plus any
    /// learned or added position embeddings, and the embedding norm where the model has one):
    /// `Resid(0)`. Shape: [token, d_model]. Refuses an empty or over-long input.
    fn input_embeddings(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
    ) -> Result<ndarray::Array2<f32>, EngineError>;

    /// Runs the model and records every layer's and head's attention.
    ///
    /// `progress` is called after each layer with the number of layers done; returning false
    /// cancels the run.
    fn forward_with_progress(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<AttentionRun, EngineError> {
        let x = self.input_embeddings(tokens, opts)?;
        self.transformer().run(tokens, x, opts, progress)
    }

    /// [`Self::forward_with_progress`] capturing and overriding the sites `iv` names, and
    /// starting at `resume`'s block on its stored residual when given (the embeddings are then
    /// not computed). See [`crate::engine::Transformer::forward_with`].
    fn forward_intervened(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
        iv: &Interventions,
        resume: Option<Resume>,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(AttentionRun, Captured), EngineError> {
        let start = match resume {
            Some(resume) => resume,
            None => Resume::embeddings(self.input_embeddings(tokens, opts)?),
        };
        if start.resid.nrows() != tokens.len() {
            return Err(EngineError::Unsupported(format!(
                "the stored residual has {} rows for {} tokens",
                start.resid.nrows(),
                tokens.len()
            )));
        }
        self.transformer()
            .run_with(tokens, start, opts, iv, progress)
    }

    /// The transformer stack the model runs.
    fn transformer(&self) -> &crate::engine::Transformer;

    /// The mask a run of `len` tokens under `opts` applies (decided by the engine's
    /// [`AppliedMask::decide`], as every forward pass does; for callers that need the mask
    /// without running, such as the attribution JSON).
    fn applied_mask(&self, opts: &RunOptions, len: usize) -> AppliedMask {
        self.transformer().applied_mask(opts, len)
    }

    /// Runs the model to the end.
    fn forward(&self, tokens: &[Token], opts: &RunOptions) -> Result<AttentionRun, EngineError> {
        self.forward_with_progress(tokens, opts, &mut |_| true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_groups_follow_repeat_kv() {
        // 4 query heads over 2 KV heads: heads 0,1 share KV head 0 and 2,3 share KV head 1.
        assert_eq!(kv_groups(4, 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(kv_groups(3, 3), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(kv_groups(3, 2), vec![vec![0], vec![1], vec![2]]);
    }
}
