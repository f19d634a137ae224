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
    let held = if mistake == Mistake::NoPositions {
        4
    } else {
        2
    };
    teach::mistake_effect(&info, &tokens, opts, mistake, &mut |tokens, run_opts| {
        check_budget(model, input, run_opts, tokens.len(), held)?;
        forward(model, tokens, run_opts, file, progress)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::TokenInput;
    use crate::model::DemoConfig;
    use crate::tokenize::DemoTokenizer;

    fn demo() -> LoadedModel {
        LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap()
    }

    #[test]
    fn the_mistakes_effect_keeps_the_budget_the_token_limit_and_cancel() {
        let model = demo();
        let text = TokenInput::Text("the cat sat on the mat".to_owned());
        let opts = RunOptions::default();
        // Within the default budget it measures, with each side's own applied mask.
        let input = RunInput::new(text.clone());
        let effect =
            mistake_effect(&model, &input, &opts, Mistake::ChunkByHeads, &mut |_| true).unwrap();
        assert_eq!(effect.correct.mask.to_string(), "none");
        // The demo has 8 heads: chunks of 2^8 = 256 tokens.
        assert_eq!(effect.mistaken.mask.to_string(), "block:256");
        // Over the memory budget: refused before anything runs, naming the budget.
        let small = RunInput::new(text).with_memory_budget(1024);
        let err =
            mistake_effect(&model, &small, &opts, Mistake::NoScaling, &mut |_| true).unwrap_err();
        assert!(matches!(err, PipelineError::OverBudget { .. }), "{err}");
        // Over the token limit: the same refusal as a run's, and cut with truncate.
        let limit = model.info().max_positions;
        let long = TokenInput::Text("word ".repeat(limit + 5));
        let err = mistake_effect(
            &model,
            &RunInput::new(long.clone()),
            &opts,
            Mistake::NoScaling,
            &mut |_| true,
        )
        .unwrap_err();
        assert!(matches!(err, PipelineError::TooLong { .. }), "{err}");
        // Cancelled at the first layer.
        let err = mistake_effect(
            &model,
            &RunInput::new(TokenInput::Text("a b c".to_owned())),
            &opts,
            Mistake::NoScaling,
            &mut |_| false,
        )
        .unwrap_err();
        assert!(matches!(err, PipelineError::Cancelled), "{err}");
    }

    #[test]
    fn options_that_do_not_fit_are_refused_naming_the_option() {
        let model = demo();
        let input = RunInput::new(TokenInput::Text("a b c".to_owned()));
        let opts = RunOptions {
            dims: vec!["0.0=0-99".parse().unwrap()],
            ..RunOptions::default()
        };
        let err = super::super::run(&model, &input, &opts, &mut |_| true).unwrap_err();
        // The demo's heads have 256 / 8 = 32 dimensions.
        assert_eq!(
            err.to_string(),
            "the dimension mask names dimension 32 of head 0.0, but heads have 32 dimensions (0–31)"
        );
        let opts = RunOptions {
            trace_layer: Some(6),
            ..RunOptions::default()
        };
        let err =
            mistake_effect(&model, &input, &opts, Mistake::NoScaling, &mut |_| true).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the traced layer 6 does not exist (6 layers, 0–5)"
        );
    }
}
