//! Next-token predictions through the pipeline: one run with the final hidden states (its
//! token limit, budget and cancellation), then the LM head on the positions asked for. `attnviz
//! next` and the Saliency view's target picker both call [`next_tokens`], so they refuse a
//! model without an LM head with the same message.

use super::{PipelineError, Run, RunInput};
use crate::engine::RunOptions;
use crate::model::{Checkpoint, LmHeadInfo, LoadedModel, PredictError, Prediction};
use ndarray::{Array2, s};

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

/// The whole next-token distribution after one position: what sampling draws from.
#[derive(Clone, Debug, PartialEq)]
pub struct NextDistribution {
    /// The position (0-based) the next token follows.
    pub position: usize,
    /// The natural-log probability of every vocabulary id (the logits less one constant).
    /// Shape: [vocab].
    pub logprobs: Vec<f32>,
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
    let run = run_keeping_hidden(model, input, opts, progress)?;
    let hidden = hidden_of(&run, model)?;
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

/// One run that keeps the final hidden states (not the maps), for the LM head.
fn run_keeping_hidden(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Run, PipelineError> {
    let opts = RunOptions {
        keep_hidden: true,
        keep_maps: false,
        ..opts.clone()
    };
    super::run(model, input, &opts, progress)
}

/// The final hidden states of a run made by [`run_keeping_hidden`]. Shape: [position, d_model].
fn hidden_of<'r>(run: &'r Run, model: &LoadedModel) -> Result<&'r Array2<f32>, PipelineError> {
    run.hidden.as_ref().ok_or_else(|| {
        PipelineError::Predict(PredictError::NoHead {
            dir: model.dir().map(ToOwned::to_owned),
        })
    })
}

/// Runs `model` on `input` and returns the log-probability of every vocabulary id after
/// `position` (`None`: the last token), for the walkthrough's sampling step. The same checks
/// and "no LM head" message as [`next_tokens`]; non-finite log-probabilities are refused, as
/// `attnviz next` refuses them.
pub fn next_distribution(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    position: Option<usize>,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(Run, NextDistribution), PipelineError> {
    let (ckpt, _) = lm_head(model)?;
    let run = run_keeping_hidden(model, input, opts, progress)?;
    let hidden = hidden_of(&run, model)?;
    let len = hidden.nrows();
    let position = position.unwrap_or(len.saturating_sub(1));
    if position >= len {
        return Err(PipelineError::Predict(PredictError::Position {
            position,
            len,
        }));
    }
    let logprobs = ckpt
        .next_token_logprobs(hidden.slice(s![position..=position, ..]))
        .map_err(PipelineError::Predict)?
        .ok_or_else(|| {
            PipelineError::Predict(PredictError::NoHead {
                dir: model.dir().map(ToOwned::to_owned),
            })
        })?;
    if logprobs.iter().any(|v| !v.is_finite()) {
        return Err(PipelineError::Predict(PredictError::NonFinite {
            file: ckpt.weights_path(),
        }));
    }
    let logprobs = logprobs.row(0).to_vec();
    Ok((run, NextDistribution { position, logprobs }))
}

/// The sampling step's work (the app's teaching walkthrough): the model's whole next-token
/// distribution after one position, ranked once and labelled, so that the UI thread only
/// reshapes it when a slider moves.
/// The next-token distribution after one position, ready for the sampling step.
#[derive(Debug)]
pub struct NextChoices {
    /// The position (0-based) the next token follows.
    pub position: usize,
    /// The model's log-probabilities (its logits less one constant), ranked.
    pub ranked: crate::analysis::sampling::RankedLogits,
    /// The label of every vocabulary id, in the model's vocabulary style (`␣Paris`).
    pub labels: Vec<String>,
}

impl NextChoices {
    /// The label of vocabulary id `id`, or `id N` when the vocabulary has none.
    pub fn label(&self, id: u32) -> String {
        self.labels
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| format!("id {id}"))
    }
}

/// Runs `model` on `input` with `opts` and returns the next-token choices after `position`.
/// Errors are the pipeline's; the caller words them for the app.
pub fn next_choices(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    position: Positions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<NextChoices, PipelineError> {
    let position = match position {
        Positions::One(p) => Some(p),
        Positions::Last | Positions::All => None,
    };
    let (_, next) = next_distribution(model, input, opts, position, progress)?;
    let ranked = crate::analysis::sampling::RankedLogits::new(&next.logprobs);
    let ids: Vec<u32> = (0..next.logprobs.len())
        .map(|id| u32::try_from(id).unwrap_or(u32::MAX))
        .collect();
    let style = model.vocab_style();
    let labels = model
        .as_checkpoint()
        .map(|c| c.tokens_from_ids(&ids))
        .unwrap_or_default()
        .iter()
        .map(|t| t.label(&style))
        .collect();
    Ok(NextChoices {
        position: next.position,
        ranked,
        labels,
    })
}
