//! What the app and its worker say to each other: the settings of a run ([`JobKey`]), what comes
//! back ([`JobResult`], [`JobError`]), the progress they share ([`Progress`], [`LoadStatus`],
//! [`TaskProgress`]), and a view's side task as the worker runs it ([`SideTask`]).
//!
//! The lowest room of the app: it imports nothing from `app`, so the worker, the settings and
//! every view can use it without an import circle.

use crate::engine::{EngineError, MaskError, RunOptions};
use crate::io::TokenInput;
use crate::model::{DemoConfig, LoadError, LoadProgress, LoadedModel};
use crate::pipeline::{self, PipelineError, Run, RunInput, RunSetting};
use crate::tokenize::DemoTokenizer;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};

/// Everything that determines a run. Equal keys give equal results, so results are cached by it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobKey {
    /// Text, token strings or token ids.
    pub input: TokenInput,
    /// The demo tokenizer.
    pub tokenizer: DemoTokenizer,
    /// The demo model's settings (used when `model_dir` is `None`).
    pub demo: DemoConfig,
    /// A checkpoint folder, or `None` for the demo.
    pub model_dir: Option<PathBuf>,
    /// Mask, scale and the rest.
    pub opts: RunOptions,
    /// Cut the input at the model's token limit instead of failing.
    pub truncate: bool,
    /// The most bytes the run may need (see `pipeline::estimate_run_bytes`).
    pub memory_budget: u64,
    /// A mistake whose measured effect (`analysis::teach::mistake_effect`) the mistakes view
    /// shows, computed after the run with the same model and options.
    pub mistake: Option<crate::engine::Mistake>,
    /// The position whose whole next-token distribution the walkthrough's sampling step shows,
    /// computed after the run with the same model and options.
    pub sampling: Option<pipeline::Positions>,
}

impl JobKey {
    /// The same key with no head ablated: the run an ablated run is compared with and resumes
    /// from.
    pub fn without_ablations(&self) -> JobKey {
        let mut key = self.clone();
        key.opts.ablations.clear();
        // The mistake's measured effect belongs to the key asked for, not to its baseline.
        key.mistake = None;
        key.sampling = None;
        key
    }

    /// The pipeline's input: the text or tokens, truncation and memory budget of this key.
    pub fn run_input(&self) -> RunInput {
        let mut input = RunInput::new(self.input.clone());
        input.truncate = self.truncate;
        input.memory_budget = self.memory_budget;
        input
    }
}

/// A finished job.
pub struct JobResult {
    /// The id the app gave the job.
    pub id: u64,
    /// The settings that produced it.
    pub key: JobKey,
    /// The run (with every decision it made: applied mask, labels, KV groups, timings), or a
    /// one-line error.
    pub outcome: Result<Arc<Run>, String>,
    /// The model's token limit, when the run failed because the input is longer.
    pub too_long: Option<usize>,
    /// True when the run failed because the mask names a token the input does not have.
    pub mask_out_of_range: bool,
    /// True when the job's model loaded (a failed run of a loaded model is not a failed load).
    pub model_loaded: bool,
    /// The architecture of the model loaded (also when its run failed).
    pub info: Option<crate::model::ModelInfo>,
    /// The saliency targets the model supports.
    pub saliency_targets: Vec<crate::grad::TargetKind>,
    /// The measured effect of `key.mistake`, when asked for and the run succeeded.
    pub effect: Option<Arc<crate::analysis::teach::MistakeEffect>>,
    /// For a key with ablations, the run of [`JobKey::without_ablations`] the ablated run
    /// resumed from, when the job computed it (the app had none): the app caches it, and the
    /// difference view subtracts it.
    pub baseline: Option<Arc<Run>>,
    /// The next-token choices of `key.sampling`, when asked for and the run succeeded.
    pub next: Option<NextOutcome>,
}

/// Progress of the running job: layers done out of layers total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Layers finished.
    pub done: usize,
    /// Layers in the model.
    pub total: usize,
    /// Tokens in the running job's input, once tokenized (0 before).
    pub tokens: usize,
}

/// A checkpoint being loaded: which folder, and how far it has got.
#[derive(Clone, Debug)]
pub struct LoadStatus {
    /// The folder being loaded.
    pub dir: PathBuf,
    /// Bytes converted so far, and the cancel flag.
    pub progress: Arc<LoadProgress>,
}

/// Why a job produced no run.
pub enum JobError {
    /// A newer job or the user stopped it; nothing is reported.
    Cancelled,
    /// The mask names a token the input does not have (the one-line message).
    MaskOutOfRange(String),
    /// A one-line message for the user, and the model's token limit when the input exceeds
    /// it.
    Failed(String, Option<usize>),
}

impl From<PipelineError> for JobError {
    /// The error in the app's words: the memory budget and options that do not fit are named by
    /// the controls that set them.
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Cancelled | PipelineError::Load(LoadError::Cancelled) => {
                JobError::Cancelled
            }
            PipelineError::TooLong { limit, .. } => JobError::Failed(e.to_string(), Some(limit)),
            PipelineError::Engine {
                error: EngineError::Mask(MaskError::OutOfRange { .. }),
                ..
            } => JobError::MaskOutOfRange(e.to_string()),
            PipelineError::OverBudget { .. }
            | PipelineError::Open(crate::model::OpenError::OverBudget { .. }) => {
                JobError::Failed(format!("{e} (Memory budget in Run options)"), None)
            }
            PipelineError::Misfit(misfit) => {
                let control = match misfit.option() {
                    RunSetting::Dims => "Teach → Neurons, dimension mask",
                    RunSetting::TraceLayer => "the layer picker",
                    RunSetting::MemoryBudget => "Memory budget in Run options",
                    RunSetting::Truncate => "Cut the input at the model's token limit",
                    RunSetting::Ablations => "the ablation chips above the map",
                };
                JobError::Failed(format!("{misfit} ({control})"), None)
            }
            e => JobError::Failed(e.to_string(), None),
        }
    }
}

impl From<crate::model::OpenError> for JobError {
    fn from(e: crate::model::OpenError) -> Self {
        PipelineError::from(e).into()
    }
}

/// How far a task has got, and its cancel flag; shared by the app and the worker.
#[derive(Debug, Default)]
pub struct TaskProgress {
    /// Requests finished.
    done: AtomicUsize,
    /// Fraction of the running request done, as `f32` bits.
    fraction: AtomicU32,
    /// Set to stop the task.
    cancel: AtomicBool,
    /// Set once the worker is done with the task: finished, stopped, or skipped for a newer job.
    ended: AtomicBool,
}

impl TaskProgress {
    /// Requests finished and the fraction of the running one.
    pub fn get(&self) -> (usize, f32) {
        (
            self.done.load(Ordering::SeqCst),
            f32::from_bits(self.fraction.load(Ordering::SeqCst)),
        )
    }

    /// Stops the task at its next progress report.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    /// True once [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// True once the worker is done with the task (finished, stopped or skipped).
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Marks the task as ended (finished, stopped or skipped for a newer job).
    pub(in crate::app) fn end(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }

    pub(in crate::app) fn set(&self, done: usize, fraction: f32) {
        self.done.store(done, Ordering::SeqCst);
        self.fraction.store(fraction.to_bits(), Ordering::SeqCst);
    }
}

/// The sampling step's next-token choices, or why there are none (no LM head).
pub type NextOutcome = Result<Arc<pipeline::NextChoices>, String>;

/// A view's work on the model of a run already on screen, as the worker runs it: the model, the
/// run's settings, whether the job is still the newest, and the wake-up call. The view builds it
/// with [`side_task`] from its task and its compute function, so the worker knows no view.
pub type SideTask = Box<dyn FnOnce(&LoadedModel, &JobKey, &dyn Fn() -> bool, &dyn Fn()) + Send>;

/// A view's compute function: runs `task` on the model for the key, sending each finished piece.
pub type RunTask<T, O> =
    fn(&LoadedModel, &JobKey, &T, &dyn Fn() -> bool, &dyn Fn(), &mut dyn FnMut(O));

/// The side task that runs `task` with `run` and sends its pieces to `to`. Dropping it unrun
/// (a newer job came first) drops `task`, which is how a task marks its progress as ended.
pub fn side_task<T, O>(task: T, run: RunTask<T, O>, to: Sender<O>) -> SideTask
where
    T: Send + 'static,
    O: Send + 'static,
{
    Box::new(move |model, key, still_wanted, wake| {
        run(model, key, &task, still_wanted, wake, &mut |o| {
            // A send only fails when the view is gone; nothing waits for the piece then.
            let _ = to.send(o);
        });
    })
}

/// Where a view's side tasks send their pieces, and where the view picks them up.
pub struct Outbox<O> {
    to: Sender<O>,
    from: Receiver<O>,
}

impl<O> Default for Outbox<O> {
    fn default() -> Self {
        let (to, from) = channel();
        Self { to, from }
    }
}

impl<O> Outbox<O> {
    /// A sender for a new task's pieces.
    pub fn sender(&self) -> Sender<O> {
        self.to.clone()
    }

    /// The next finished piece, if any.
    pub fn poll(&self) -> Option<O> {
        self.from.try_recv().ok()
    }
}
