//! The classic mistakes' measured effect (`analysis::teach::mistake_effect`) through the
//! pipeline: every one of its two to four runs is checked against the token limit and the
//! memory budget and can be cancelled, as any other run.

use super::{PipelineError, RunInput, check_budget, check_options, forward, input_tokens};
use crate::analysis::teach::{self, MistakeEffect};
use crate::engine::{MaskError, Mistake, RunOptions};
use crate::model::LoadedModel;

impl From<MaskError> for PipelineError {
    fn from(error: MaskError) -> Self {
        Self::Engine {
            error: error.into(),
            file: None,
        }
    }
}

/// Measures `mistake` on `model` and `input` under `opts`: the input's tokens (the one
/// token-limit check), the options checked against the model, then every run the measurement
/// needs (the correct and the mistaken one with a trace and the layer norms, two more on
/// shuffled tokens for `no-positions`), each within the memory budget. `progress` is called
/// after each layer of each run; returning false cancels.
pub fn mistake_effect(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    mistake: Mistake,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<MistakeEffect, PipelineError> {
    let tokens = input_tokens(model, input, 0)?;
    let info = model.info();
    check_options(&info, opts)?;
    let file = input.file.as_deref();
    // The runs the measurement holds at once: the correct and the mistaken one, and their
    // shuffled twins for no-positions.
    let held = if mistake == Mistake::NoPositions { 4 } else { 2 };
    teach::mistake_effect(&info, &tokens, opts, mistake, &mut |tokens, run_opts| {
        check_budget(model, input, run_opts, tokens.len(), held)?;
        forward(model, tokens, run_opts, file, progress)
    })
}
