//! `explain`: one run with a trace of the asked layer, and the walkthrough of one query of one
//! head read from it. The CLI's `attnviz explain` and the app's walkthrough both call this.

use super::{PipelineError, Run, RunInput, run};
use crate::analysis::explain::Explanation;
use crate::engine::{EngineError, RunOptions};
use crate::model::LoadedModel;

/// Runs `model` on `input` under `opts` with a trace of `layer`, and explains query `query` of
/// head `head` (all 0-based). A layer, head or query that does not exist is an
/// [`PipelineError::Engine`] error (`OutOfRange`) naming the input file, as other bad indices are.
pub fn explain(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    layer: usize,
    head: usize,
    query: usize,
) -> Result<(Run, Explanation), PipelineError> {
    let info = model.info();
    let out_of_range = |what: String| PipelineError::Engine {
        error: EngineError::OutOfRange(what),
        file: input.file.clone(),
    };
    if layer >= info.layers {
        return Err(out_of_range(format!(
            "layer {layer} does not exist (the model has {} layers)",
            info.layers
        )));
    }
    if head >= info.heads {
        return Err(out_of_range(format!(
            "head {head} does not exist (the model has {} heads per layer)",
            info.heads
        )));
    }
    let opts = RunOptions {
        trace_layer: Some(layer),
        ..opts.clone()
    };
    let run = run(model, input, &opts, &mut |_| true)?;
    let trace = run
        .trace
        .as_ref()
        .ok_or_else(|| out_of_range(format!("layer {layer} was not traced")))?;
    let explanation =
        Explanation::from_trace(trace, head, query).map_err(|e| out_of_range(e.to_string()))?;
    Ok((run, explanation))
}
