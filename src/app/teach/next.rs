//! The sampling step's work on the worker thread: the model's whole next-token distribution
//! after one position (`pipeline::next_distribution`, the LM head `attnviz next` uses), ranked
//! once and labelled, so that the UI thread only reshapes it when a slider moves. Nothing here
//! touches egui.

use crate::analysis::sampling::RankedLogits;
use crate::engine::RunOptions;
use crate::model::LoadedModel;
use crate::pipeline::{self, PipelineError, Positions, RunInput};

/// The next-token distribution after one position, ready for the sampling step.
#[derive(Debug)]
pub struct NextChoices {
    /// The position (0-based) the next token follows.
    pub position: usize,
    /// The model's log-probabilities (its logits less one constant), ranked.
    pub ranked: RankedLogits,
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

/// The worker's answer for the sampling step: the choices, or a one-line reason (no LM head,
/// a position out of range, weights that overflow).
pub type NextOutcome = Result<std::sync::Arc<NextChoices>, String>;

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
    let (_, next) = pipeline::next_distribution(model, input, opts, position, progress)?;
    let ranked = RankedLogits::new(&next.logprobs);
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
