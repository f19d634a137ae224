//! The Analyze view's work that runs the model, on the worker thread: value zeroing of the run
//! on screen and the induction probe, through the pipeline (as `attnviz analyze`), with
//! progress and Cancel. Nothing here touches egui.

use crate::analysis::metrics::InductionProbe;
use crate::analysis::value_zeroing::ValueZeroing;
use crate::app::job::{JobError, JobKey, TaskProgress};
use crate::model::LoadedModel;
use crate::pipeline::{self, PipelineError, Run};
use std::sync::Arc;
use std::time::Instant;

/// One piece of model work for the Analyze view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Value zeroing of the run's tokens.
    ValueZeroing,
    /// The induction probe's scores.
    Induction,
}

/// The induction probe's scores.
#[derive(Debug)]
pub struct InductionResult {
    /// Shape: [layer][head]; `None` where the probe does not fit.
    pub scores: Vec<Vec<Option<f64>>>,
    /// Where the repeated sequence sits.
    pub probe: InductionProbe,
    /// Tokens in the probe's run.
    pub tokens: usize,
}

/// A finished piece of work, or a one-line error.
#[derive(Clone, Debug)]
pub enum Item {
    /// Value zeroing.
    ValueZeroing(Result<Arc<ValueZeroing>, String>),
    /// The induction probe.
    Induction(Result<Arc<InductionResult>, String>),
}

/// Work for the Analyze view on the model of its [`JobKey`], for `run` (the key's run).
/// Dropping it marks its progress as ended.
#[derive(Debug)]
pub struct Task {
    /// What to compute.
    pub kind: Kind,
    /// The run on screen (its tokens and options).
    pub run: Arc<Run>,
    /// Progress (the fraction) and the cancel flag.
    pub progress: Arc<TaskProgress>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.progress.end();
    }
}

/// A finished task, with the settings it was computed for.
pub type Outcome = crate::app::side::Finished<Kind, Item>;

fn worded(e: PipelineError) -> Option<String> {
    match JobError::from(e) {
        JobError::Failed(message, _) | JobError::MaskOutOfRange(message) => Some(message),
        JobError::Cancelled => None,
    }
}

/// Runs `task` on `model` for `key` and hands the result to `send` (nothing when cancelled or
/// replaced by a newer job).
pub fn run_task(
    model: &LoadedModel,
    key: &JobKey,
    task: &Task,
    still_wanted: &dyn Fn() -> bool,
    wake: &dyn Fn(),
    send: &mut dyn FnMut(Outcome),
) {
    let start = Instant::now();
    let keep_going = |fraction: f32| {
        task.progress.set(0, fraction);
        wake();
        !task.progress.is_cancelled() && still_wanted()
    };
    let item = match task.kind {
        Kind::ValueZeroing => {
            let mut report = keep_going;
            match pipeline::value_zeroing_of(model, &task.run, &mut report) {
                Ok(vz) => Item::ValueZeroing(Ok(Arc::new(vz))),
                Err(e) => match worded(e) {
                    Some(message) => Item::ValueZeroing(Err(message)),
                    None => return,
                },
            }
        }
        Kind::Induction => {
            let layers = model.info().layers.max(1);
            let mut report = |done: usize| keep_going(done as f32 / layers as f32);
            let mut opts = task.run.options.clone().unwrap_or_else(|| key.opts.clone());
            // The probe's own run needs no trace and no resumes.
            opts.trace_layer = None;
            opts.keep_residuals = false;
            match pipeline::induction_scores(model, &opts, &mut report) {
                Ok((run, probe, scores)) => Item::Induction(Ok(Arc::new(InductionResult {
                    scores,
                    probe,
                    tokens: run.tokens.len(),
                }))),
                Err(e) => match worded(e) {
                    Some(message) => Item::Induction(Err(message)),
                    None => return,
                },
            }
        }
    };
    if task.progress.is_cancelled() || !still_wanted() {
        return;
    }
    send(Outcome {
        key: key.clone(),
        kind: task.kind,
        item,
        ms: start.elapsed().as_secs_f64() * 1000.0,
    });
    wake();
}
