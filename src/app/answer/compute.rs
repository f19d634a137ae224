//! The Answer view's work on the worker thread: the logit lens, contributions, routes and
//! patching through `pipeline::answer` (as `attnviz analyze`), with progress and Cancel.
//! Nothing here touches egui.

use crate::analysis::answer::Target;
use crate::analysis::answer::contributions::Contributions;
use crate::analysis::answer::lens::LensCell;
use crate::analysis::answer::patching::{PatchSite, Patching};
use crate::analysis::answer::routes::RouteGraph;
use crate::app::job::{JobError, JobKey, TaskProgress};
pub use crate::app::state::answer::TargetChoice;
use crate::grad::{TargetKind, TargetSpec, TokenRef};
use crate::io::TokenInput;
use crate::model::LoadedModel;
use crate::pipeline::answer::{self, LensPositions};
use crate::pipeline::answer_json::vocab_strings;
use crate::pipeline::{PipelineError, RunInput};
use std::sync::Arc;
use std::time::Instant;

impl TargetChoice {
    /// The pipeline's target spec; `None` for all defaults. A foil without a token is ignored
    /// (a contrast needs both).
    pub fn spec(&self) -> Option<TargetSpec> {
        if self.position.is_none() && self.token.is_none() {
            return None;
        }
        let foil = self.foil.filter(|_| self.token.is_some());
        Some(TargetSpec {
            kind: if foil.is_some() {
                TargetKind::Contrast
            } else {
                TargetKind::Logprob
            },
            position: self.position,
            token: self.token.map(TokenRef::Id),
            foil: foil.map(TokenRef::Id),
        })
    }
}

/// One piece of work for the Answer view.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The lens at these positions, the top `k` per cell.
    Lens {
        /// The target.
        target: TargetChoice,
        /// The positions the table shows.
        positions: Vec<usize>,
        /// Candidates per cell.
        k: usize,
    },
    /// Direct contributions, with every head's split over the keys.
    Contributions {
        /// The target.
        target: TargetChoice,
    },
    /// The routes graph.
    Routes,
    /// Activation patching of the input (clean) into `text_b` (corrupted).
    Patching {
        /// The corrupted text.
        text_b: String,
        /// The site.
        site: PatchSite,
        /// The target.
        target: TargetChoice,
    },
}

/// The lens as the view shows it.
#[derive(Debug)]
pub struct LensResult {
    /// The resolved target.
    pub target: Target,
    /// The table's positions.
    pub positions: Vec<usize>,
    /// [layer][position index].
    pub cells: Vec<Vec<LensCell>>,
    /// [layer] at the target's position.
    pub at_target: Vec<LensCell>,
    /// The labels of every token id the cells and the target name.
    pub names: Vec<(u32, String)>,
    /// The same ids' vocabulary strings, as the exported JSON spells them.
    pub vocab: Vec<(u32, String)>,
}

impl LensResult {
    /// The label of `id`.
    pub fn name(&self, id: u32) -> String {
        name_in(&self.names, id)
    }
}

/// The label of `id` in `names`, or `id N`.
pub fn name_in(names: &[(u32, String)], id: u32) -> String {
    names
        .iter()
        .find(|(i, _)| *i == id)
        .map_or_else(|| format!("id {id}"), |(_, n)| n.clone())
}

/// Contributions as the view shows them.
#[derive(Debug)]
pub struct ContributionsResult {
    /// The resolved target.
    pub target: Target,
    /// The contributions.
    pub contributions: Contributions,
    /// Every head's contribution split over the keys: [layer][head][key].
    pub splits: Vec<Vec<Vec<f64>>>,
    /// The labels of T and F.
    pub names: Vec<(u32, String)>,
    /// T's and F's vocabulary strings, as the exported JSON spells them.
    pub vocab: Vec<(u32, String)>,
}

/// Patching as the view shows it.
#[derive(Debug)]
pub struct PatchingResult {
    /// The resolved target.
    pub target: Target,
    /// The recovery maps.
    pub patching: Patching,
    /// The corrupted input's labels.
    pub labels_b: Vec<String>,
    /// The corrupted input's vocabulary strings, as the exported JSON spells them.
    pub tokens_b: Vec<String>,
    /// The labels of T and F.
    pub names: Vec<(u32, String)>,
    /// T's and F's vocabulary strings, as the exported JSON spells them.
    pub vocab: Vec<(u32, String)>,
}

/// A finished piece of work, or a one-line error.
#[derive(Clone, Debug)]
pub enum Item {
    /// The lens.
    Lens(Result<Arc<LensResult>, String>),
    /// Contributions.
    Contributions(Result<Arc<ContributionsResult>, String>),
    /// Routes.
    Routes(Result<Arc<RouteGraph>, String>),
    /// Patching.
    Patching(Result<Arc<PatchingResult>, String>),
}

/// Work for the Answer view, run on the model of its [`JobKey`]. Dropping it marks its
/// progress as ended.
#[derive(Debug)]
pub struct Task {
    /// What to compute.
    pub kind: Kind,
    /// Progress (steps done as the fraction) and the cancel flag.
    pub progress: Arc<TaskProgress>,
}

impl Drop for Task {
    fn drop(&mut self) {
        self.progress.end();
    }
}

/// A finished task, with the settings it was computed for.
pub type Outcome = crate::app::side::Finished<Kind, Item>;

/// Labels of `ids` in the model's vocabulary style.
fn names(model: &LoadedModel, ids: impl IntoIterator<Item = u32>) -> Vec<(u32, String)> {
    let mut ids: Vec<u32> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let style = model.vocab_style();
    match model.tokens(&TokenInput::Ids(ids.clone()), None) {
        Ok(tokens) => ids
            .into_iter()
            .zip(tokens)
            .map(|(id, t)| (id, t.label(&style)))
            .collect(),
        Err(_) => ids.into_iter().map(|id| (id, format!("id {id}"))).collect(),
    }
}

fn target_ids(t: &Target) -> impl Iterator<Item = u32> {
    std::iter::once(t.token).chain(t.foil)
}

fn worded(e: PipelineError) -> String {
    match JobError::from(e) {
        JobError::Failed(message, _) | JobError::MaskOutOfRange(message) => message,
        JobError::Cancelled => "cancelled".to_owned(),
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
    let input = key.run_input();
    let start = Instant::now();
    let mut report = |done: usize, total: usize| {
        task.progress.set(done, done as f32 / total.max(1) as f32);
        wake();
        !task.progress.is_cancelled() && still_wanted()
    };
    let item = match compute(model, key, &input, &task.kind, &mut report) {
        Some(item) => item,
        None => return,
    };
    if task.progress.is_cancelled() || !still_wanted() {
        return;
    }
    send(Outcome {
        key: key.clone(),
        kind: task.kind.clone(),
        item,
        ms: start.elapsed().as_secs_f64() * 1000.0,
    });
    wake();
}

/// The result of `kind`, `None` when cancelled.
fn compute(
    model: &LoadedModel,
    key: &JobKey,
    input: &RunInput,
    kind: &Kind,
    report: &mut dyn FnMut(usize, usize) -> bool,
) -> Option<Item> {
    let opts = &key.opts;
    let fail = |e: PipelineError| match e {
        PipelineError::Cancelled => None,
        e => Some(worded(e)),
    };
    Some(match kind {
        Kind::Lens {
            target,
            positions,
            k,
        } => {
            let spec = target.spec();
            let result = answer::logit_lens(
                model,
                input,
                opts,
                spec.as_ref(),
                &LensPositions::These(positions.clone()),
                *k,
                report,
            );
            Item::Lens(match result {
                Ok(r) => {
                    let ids = r
                        .lens
                        .cells
                        .iter()
                        .flatten()
                        .chain(&r.at_target)
                        .flat_map(|c| c.top.iter().map(|&(id, _)| id))
                        .chain(target_ids(&r.target))
                        .collect::<Vec<_>>();
                    Ok(Arc::new(LensResult {
                        vocab: vocab_strings(model, ids.iter().copied()),
                        names: names(model, ids),
                        target: r.target,
                        positions: r.lens.positions,
                        cells: r.lens.cells,
                        at_target: r.at_target,
                    }))
                }
                Err(e) => Err(fail(e)?),
            })
        }
        Kind::Contributions { target } => {
            let spec = target.spec();
            let result =
                answer::contributions(model, input, opts, spec.as_ref(), report).and_then(|r| {
                    let layers = r.contributions.heads.len();
                    let mut splits = Vec::with_capacity(layers);
                    for l in 0..layers {
                        splits.push(r.key_splits(model, l)?);
                    }
                    Ok(ContributionsResult {
                        names: names(model, target_ids(&r.target)),
                        vocab: vocab_strings(model, target_ids(&r.target)),
                        target: r.target,
                        contributions: r.contributions,
                        splits,
                    })
                });
            Item::Contributions(match result {
                Ok(r) => Ok(Arc::new(r)),
                Err(e) => Err(fail(e)?),
            })
        }
        Kind::Routes => Item::Routes(match answer::routes(model, input, opts, report) {
            Ok((_, graph)) => Ok(Arc::new(graph)),
            Err(e) => Err(fail(e)?),
        }),
        Kind::Patching {
            text_b,
            site,
            target,
        } => {
            let mut corrupted = RunInput::new(TokenInput::Text(text_b.clone()));
            corrupted.truncate = input.truncate;
            corrupted.memory_budget = input.memory_budget;
            let spec = target.spec();
            let result = crate::pipeline::patching::patching(
                model,
                input,
                &corrupted,
                opts,
                spec.as_ref(),
                *site,
                report,
            );
            Item::Patching(match result {
                Ok(r) => {
                    let style = model.vocab_style();
                    Ok(Arc::new(PatchingResult {
                        labels_b: crate::tokenize::display_labels(&r.corrupted.tokens, &style),
                        tokens_b: r.corrupted.tokens.iter().map(|t| t.text.clone()).collect(),
                        names: names(model, target_ids(&r.target)),
                        vocab: vocab_strings(model, target_ids(&r.target)),
                        target: r.target,
                        patching: r.patching,
                    }))
                }
                Err(e) => Err(fail(e)?),
            })
        }
    })
}
