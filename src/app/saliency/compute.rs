//! The Saliency view's work on the worker thread: attributions through the one pipeline
//! (`pipeline::attribute`, as `attnviz attribute`), and the next-token candidates of a position
//! for the target picker (the LM head of `attnviz next`). Nothing here touches egui.

use super::api::{self, AttributeRequest, Attribution};
pub use crate::app::job::TaskProgress;
use crate::app::job::{JobError, JobKey};
use crate::grad::TargetKind;
use crate::model::LoadedModel;
use crate::pipeline::{self, PipelineError, RunInput};
use std::sync::Arc;

use std::time::Instant;

/// Work for the Saliency view, run on the model of its [`JobKey`]. Dropping it (run, stopped,
/// or skipped for a newer job) marks its progress as ended, so the app asks again if needed.
#[derive(Debug)]
pub struct Task {
    /// Attributions to compute, in order; each is sent back as soon as it is done.
    pub requests: Vec<AttributeRequest>,
    /// The position whose next-token candidates are wanted, and how many.
    pub predict: Option<(usize, usize)>,
    /// Progress and cancel flag.
    pub progress: Arc<TaskProgress>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.progress.end();
    }
}

/// A next-token candidate for the target picker.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// Vocabulary id.
    pub id: u32,
    /// The token as the views label it (the model's vocabulary style).
    pub label: String,
    /// Natural-log probability.
    pub logprob: f32,
}

/// How an attribution was made: its time, and how the views label its target tokens.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Done {
    /// Milliseconds it took.
    pub ms: f64,
    /// (id, label) of the target token, the foil and the generated targets.
    pub names: Vec<(u32, String)>,
}

impl Done {
    /// The label of token `id`, or `id N` when it was not named.
    pub fn name(&self, id: u32) -> String {
        self.names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| format!("id {id}"), |(_, n)| format!("{n:?}"))
    }
}

/// One finished piece of a [`Task`].
#[derive(Clone, Debug)]
pub enum Item {
    /// An attribution, or a one-line error.
    Attribution {
        /// What was asked.
        request: AttributeRequest,
        /// The scores, or why there are none.
        result: Result<Arc<Attribution>, String>,
        /// Time it took, and the names of the target's tokens.
        done: Done,
    },
    /// The most likely next tokens after a position, largest first.
    Predictions {
        /// The position.
        position: usize,
        /// How many were asked for.
        k: usize,
        /// The candidates, or why there are none.
        result: Result<Vec<Candidate>, String>,
    },
}

/// A finished piece of a task, with the settings it was computed for.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The settings (model, input, options) it was computed for.
    pub key: JobKey,
    /// The result.
    pub item: Item,
}

/// The target kinds `model` can compute, for the target picker.
pub fn supported_targets(model: &LoadedModel) -> Vec<TargetKind> {
    api::supported_targets(model)
}

/// Runs `task` on `model` for `key`, handing each finished piece to `send`. `still_wanted`
/// says whether a newer job has replaced this one. Returns early when cancelled.
pub fn run_task(
    model: &LoadedModel,
    key: &JobKey,
    task: &Task,
    still_wanted: &dyn Fn() -> bool,
    wake: &dyn Fn(),
    send: &mut dyn FnMut(Outcome),
) {
    let input = key.run_input();
    let cancelled = || task.progress.is_cancelled() || !still_wanted();
    if let Some((position, k)) = task.predict {
        if cancelled() {
            return;
        }
        let result = predictions(model, &input, key, position, k);
        send(Outcome {
            key: key.clone(),
            item: Item::Predictions {
                position,
                k,
                result,
            },
        });
        wake();
    }
    for (i, request) in task.requests.iter().enumerate() {
        task.progress.set(i, 0.0);
        wake();
        let start = Instant::now();
        let mut report = |fraction: f32| {
            task.progress.set(i, fraction);
            wake();
            !cancelled()
        };
        let mut names = Vec::new();
        let result = match api::attribute(model, &input, &key.opts, request, &mut report) {
            Ok(a) => {
                names = target_names(model, &a);
                Ok(Arc::new(a))
            }
            Err(PipelineError::Cancelled) => return,
            Err(e) => Err(worded(e)),
        };
        if cancelled() {
            return;
        }
        send(Outcome {
            key: key.clone(),
            item: Item::Attribution {
                request: request.clone(),
                result,
                done: Done {
                    ms: start.elapsed().as_secs_f64() * 1000.0,
                    names,
                },
            },
        });
        wake();
    }
    task.progress.set(task.requests.len(), 0.0);
}

/// An attribution error in the app's words: request settings named by the Saliency view's
/// controls, the memory budget by its field in Run options.
fn worded(e: PipelineError) -> String {
    use crate::analysis::attribution::{AttributionError, RequestSetting};
    let control = |setting| match setting {
        RequestSetting::Steps => "steps",
        RequestSetting::Baseline => "Baseline",
        RequestSetting::Occlude => "Occlude with",
        RequestSetting::TextB => "Text B",
        RequestSetting::Generate => "generate",
        RequestSetting::Aggregate => "the word/token aggregation",
    };
    match e {
        PipelineError::Attribution(AttributionError::Setting { setting, reason }) => {
            format!("{reason} ({})", control(setting))
        }
        PipelineError::Attribution(
            e @ AttributionError::NoSpecialToken {
                setting: Some(setting),
                ..
            },
        ) => format!("{e} ({})", control(setting)),
        e => match JobError::from(e) {
            JobError::Failed(message, _) | JobError::MaskOutOfRange(message) => message,
            JobError::Cancelled => "cancelled".to_owned(),
        },
    }
}

/// The labels of the tokens `attr`'s targets name, in the model's vocabulary style.
fn target_names(model: &LoadedModel, attr: &Attribution) -> Vec<(u32, String)> {
    let mut ids: Vec<u32> = [attr.target.token, attr.target.foil]
        .into_iter()
        .flatten()
        .collect();
    if let Some(g) = &attr.generated {
        ids.extend(g.targets.iter().filter_map(|t| t.token));
    }
    let tokens = match model.as_checkpoint() {
        Some(ckpt) => ckpt.tokens_from_ids(&ids),
        None => return Vec::new(),
    };
    let style = model.vocab_style();
    ids.into_iter()
        .zip(tokens)
        .map(|(id, t)| (id, t.label(&style)))
        .collect()
}

/// The `k` most likely next tokens after `position` of `key`'s input, through the pipeline's
/// [`pipeline::next_tokens`] (the same call, and the same "no LM head" message, as `attnviz
/// next`).
fn predictions(
    model: &LoadedModel,
    input: &RunInput,
    key: &JobKey,
    position: usize,
    k: usize,
) -> Result<Vec<Candidate>, String> {
    let positions = pipeline::Positions::One(position);
    let (_, _, mut found) =
        pipeline::next_tokens(model, input, &key.opts, positions, k, &mut |_| true)
            .map_err(|e| e.to_string())?;
    let top = found.pop().map(|p| p.top).unwrap_or_default();
    let ids: Vec<u32> = top.iter().map(|p| p.id).collect();
    let tokens = model
        .as_checkpoint()
        .map(|c| c.tokens_from_ids(&ids))
        .unwrap_or_default();
    let style = model.vocab_style();
    Ok(top
        .iter()
        .zip(tokens)
        .map(|(p, t)| Candidate {
            id: p.id,
            label: t.label(&style),
            logprob: p.logprob,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::io::TokenInput;
    use std::path::Path;

    /// The target picker's candidates come from the pipeline's `next_tokens`: a model without
    /// an LM head gives the one message `attnviz next` prints (tests/cli.rs checks the CLI's).
    #[test]
    fn a_model_without_an_lm_head_says_so_as_attnviz_next_does() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
        let model = LoadedModel::checkpoint(&dir, Arc::default()).unwrap();
        let key = JobKey {
            input: TokenInput::Ids(vec![2, 5, 3]),
            tokenizer: crate::tokenize::DemoTokenizer::Words,
            demo: crate::model::DemoConfig::default(),
            model_dir: Some(dir.clone()),
            opts: crate::engine::RunOptions::default(),
            truncate: false,
            memory_budget: pipeline::default_memory_budget(),
            mistake: None,
            sampling: None,
        };
        let err = predictions(&model, &key.run_input(), &key, 0, 5).unwrap_err();
        let expected = pipeline::lm_head(&model).err().unwrap().to_string();
        assert_eq!(err, expected);
        assert!(err.contains("no next-token LM head"), "{err}");
        let demo = LoadedModel::demo(key.demo, key.tokenizer).unwrap();
        let err = predictions(&demo, &key.run_input(), &key, 0, 5).unwrap_err();
        assert!(err.starts_with("the demo model has no LM head"), "{err}");
    }
}
