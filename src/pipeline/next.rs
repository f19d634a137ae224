//! Next-token predictions through the pipeline: one run with the final hidden states (its
//! token limit, budget and cancellation), then the LM head on the positions asked for. `attnviz
//! next` and the Saliency view's target picker both call [`next_tokens`], so they refuse a
//! model without an LM head with the same message.

use super::{PipelineError, Run, RunInput};
use crate::engine::RunOptions;
use crate::model::{Checkpoint, LmHeadInfo, LoadedModel, PredictError, Prediction};

/// Which positions to predict after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// The last token.
    Last,
    /// Every token.
    All,
    /// One token (0-based).
    One(usize),
}

/// The most likely next tokens after one position, largest first.
#[derive(Clone, Debug, PartialEq)]
pub struct NextTokens {
    /// The position (0-based).
    pub position: usize,
    /// The `k` most likely next tokens, with their raw vocabulary strings.
    pub top: Vec<Prediction>,
}

/// The model's checkpoint and its LM head, or the one "no LM head" error.
pub fn lm_head(model: &LoadedModel) -> Result<(&Checkpoint, LmHeadInfo), PipelineError> {
    let no_head = |dir| PipelineError::Predict(PredictError::NoHead { dir });
    let ckpt = model.as_checkpoint().ok_or_else(|| no_head(None))?;
    let head = ckpt
        .lm_head()
        .ok_or_else(|| no_head(model.dir().map(ToOwned::to_owned)))?;
    Ok((ckpt, head))
}

/// Runs `model` on `input` (keeping the hidden states, not the maps) and predicts the `k` most
/// likely next tokens after `positions`. The model's LM head is checked before anything runs.
pub fn next_tokens(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    positions: Positions,
    k: usize,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(Run, LmHeadInfo, Vec<NextTokens>), PipelineError> {
    let (ckpt, head) = lm_head(model)?;
    let opts = RunOptions {
        keep_hidden: true,
        keep_maps: false,
        ..opts.clone()
    };
    let run = super::run(model, input, &opts, progress)?;
    let hidden = run.hidden.as_ref().ok_or_else(|| {
        PipelineError::Predict(PredictError::NoHead {
            dir: model.dir().map(ToOwned::to_owned),
        })
    })?;
    let n = run.tokens.len();
    let wanted: Vec<usize> = match positions {
        Positions::Last => vec![n.saturating_sub(1)],
        Positions::All => (0..n).collect(),
        Positions::One(p) => vec![p],
    };
    let mut out = Vec::with_capacity(wanted.len());
    for position in wanted {
        let top = ckpt
            .top_next_tokens(hidden.view(), position, k)
            .map_err(PipelineError::Predict)?;
        out.push(NextTokens { position, top });
    }
    Ok((run, head, out))
}
