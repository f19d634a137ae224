//! The compute worker: a named thread that loads models and runs forward passes off the UI
//! thread.
//!
//! Jobs carry an id. The worker always takes the newest queued job and skips older ones, a
//! running job is cancelled as soon as a newer one arrives, and the app drops any result whose
//! id is not the one it asked for last. `ui()` never waits on it.
//!
//! A checkpoint load is published as a [`LoadStatus`] (the folder and its [`LoadProgress`]) so
//! that the UI can draw its progress from the atomics and cancel it. A job for another model
//! cancels a load in progress (the newest folder wins); a cancelled or failed load leaves the
//! previous model in place.

use super::analyze::compute as analyze;
use super::answer::compute as answer;
use super::saliency::compute as saliency;
use super::teach::next::{NextOutcome, next_choices};
use crate::engine::{EngineError, MaskError, RunOptions};
use crate::io::TokenInput;
use crate::model::LoadedModel;
use crate::model::{DemoConfig, LoadError, LoadProgress};
use crate::pipeline::{self, PipelineError, Run, RunInput, RunSetting};
use crate::tokenize::DemoTokenizer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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

struct Job {
    id: u64,
    key: JobKey,
    /// Work for the Saliency or the Answer view instead of a run.
    side: Option<SideTask>,
    /// A finished run of `key.without_ablations()` (kept residuals) that an ablated run
    /// resumes from; `None` makes the job compute it first when `key` has ablations.
    base: Option<Arc<Run>>,
}

/// Work for a view on the model of a run already on screen, instead of a run.
enum SideTask {
    /// The Saliency view's attributions and candidates.
    Saliency(saliency::Task),
    /// The Answer view's lens, contributions, routes or patching.
    Answer(answer::Task),
    /// The Analyze view's value zeroing or induction probe.
    Analyze(analyze::Task),
}

/// Where side tasks send their results.
struct SideResults {
    saliency: Sender<saliency::Outcome>,
    answer: Sender<answer::Outcome>,
    analyze: Sender<analyze::Outcome>,
}

/// Why a job produced no run.
pub(crate) enum JobError {
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

/// The load in progress, and the test hold.
#[derive(Default)]
struct LoadSlot {
    /// Published while a checkpoint loads.
    loading: Option<LoadStatus>,
    /// While true, the worker waits just before it reads a model's files.
    held: bool,
}

/// State shared by the app's handle and the worker thread.
#[derive(Default)]
struct Shared {
    /// The id of the newest job; anything older is cancelled.
    latest: AtomicU64,
    /// Layers done in the running forward pass.
    progress: Mutex<Progress>,
    /// The checkpoint load in progress. `latest` is stored under this lock by `submit`, so a
    /// load either sees the newer job before it starts or is cancelled by it.
    load: Mutex<LoadSlot>,
    /// Signals a change of `load.held`.
    load_released: Condvar,
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is plain values).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Handle to the worker thread.
pub struct Worker {
    jobs: Sender<Job>,
    results: Receiver<JobResult>,
    saliency_results: Receiver<saliency::Outcome>,
    answer_results: Receiver<answer::Outcome>,
    analyze_results: Receiver<analyze::Outcome>,
    shared: Arc<Shared>,
    next_id: u64,
}

impl Worker {
    /// Starts the worker. `wake` is called whenever a result or progress is ready (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (jobs, job_rx) = channel::<Job>();
        let (result_tx, results) = channel();
        let (saliency_tx, saliency_results) = channel();
        let (answer_tx, answer_results) = channel();
        let (analyze_tx, analyze_results) = channel();
        let side = SideResults {
            saliency: saliency_tx,
            answer: answer_tx,
            analyze: analyze_tx,
        };
        let shared = Arc::new(Shared::default());
        let shared_w = shared.clone();
        std::thread::Builder::new()
            .name("attn-worker".to_owned())
            .spawn(move || worker_loop(&job_rx, &result_tx, &side, &shared_w, &wake))?;
        Ok(Self {
            jobs,
            results,
            saliency_results,
            answer_results,
            analyze_results,
            shared,
            next_id: 0,
        })
    }

    /// Queues a job and returns its id. Any older job is cancelled or skipped, and so is a
    /// checkpoint load for another model.
    pub fn submit(&mut self, key: JobKey) -> u64 {
        self.submit_job(key, None, None)
    }

    /// [`Self::submit`] for an ablated key, resuming from `base`, the finished run of
    /// `key.without_ablations()`: only the layers from the first ablated one run.
    pub fn submit_from(&mut self, key: JobKey, base: Option<Arc<Run>>) -> u64 {
        self.submit_job(key, None, base)
    }

    /// Queues work for the Saliency view on `key`'s model and input; like a run, it replaces
    /// any older job. Its pieces arrive through [`Self::poll_saliency`].
    pub fn submit_saliency(&mut self, key: JobKey, task: saliency::Task) -> u64 {
        self.submit_job(key, Some(SideTask::Saliency(task)), None)
    }

    /// Queues work for the Answer view on `key`'s model and input; like a run, it replaces any
    /// older job. Its result arrives through [`Self::poll_answer`].
    pub fn submit_answer(&mut self, key: JobKey, task: answer::Task) -> u64 {
        self.submit_job(key, Some(SideTask::Answer(task)), None)
    }

    /// Queues work for the Analyze view on `key`'s model; like a run, it replaces any older
    /// job. Its result arrives through [`Self::poll_analyze`].
    pub fn submit_analyze(&mut self, key: JobKey, task: analyze::Task) -> u64 {
        self.submit_job(key, Some(SideTask::Analyze(task)), None)
    }

    fn submit_job(&mut self, key: JobKey, side: Option<SideTask>, base: Option<Arc<Run>>) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        // The new job's progress starts from nothing (no stale token count or layers).
        *lock(&self.shared.progress) = Progress::default();
        {
            let slot = lock(&self.shared.load);
            self.shared.latest.store(id, Ordering::SeqCst);
            if let Some(load) = &slot.loading
                && key.model_dir.as_ref() != Some(&load.dir)
            {
                load.progress.cancel();
            }
        }
        // A send only fails when the worker is gone; the app then shows no new results.
        let _ = self.jobs.send(Job {
            id,
            key,
            side,
            base,
        });
        id
    }

    /// Cancels the checkpoint load in progress unless it is for `model_dir` (for when the app
    /// switches to a model it has a cached run of, and submits nothing).
    pub fn cancel_load_unless(&self, model_dir: Option<&Path>) {
        if let Some(load) = &lock(&self.shared.load).loading
            && model_dir != Some(load.dir.as_path())
        {
            load.progress.cancel();
        }
    }

    /// Cancels whatever is running, loading or queued.
    pub fn cancel(&mut self) {
        self.next_id += 1;
        let slot = lock(&self.shared.load);
        self.shared.latest.store(self.next_id, Ordering::SeqCst);
        if let Some(load) = &slot.loading {
            load.progress.cancel();
        }
    }

    /// The next finished job, if any.
    pub fn poll(&self) -> Option<JobResult> {
        self.results.try_recv().ok()
    }

    /// The next finished piece of saliency work, if any.
    pub fn poll_saliency(&self) -> Option<saliency::Outcome> {
        self.saliency_results.try_recv().ok()
    }

    /// The next finished piece of the Answer view's work, if any.
    pub fn poll_answer(&self) -> Option<answer::Outcome> {
        self.answer_results.try_recv().ok()
    }

    /// The next finished piece of the Analyze view's work, if any.
    pub fn poll_analyze(&self) -> Option<analyze::Outcome> {
        self.analyze_results.try_recv().ok()
    }

    /// Progress of the running job.
    pub fn progress(&self) -> Progress {
        *lock(&self.shared.progress)
    }

    /// The checkpoint load in progress, if any (also one that was cancelled but has not
    /// stopped yet: check `progress.is_cancelled()`).
    pub fn loading(&self) -> Option<LoadStatus> {
        lock(&self.shared.load).loading.clone()
    }

    /// While `hold` is true the worker stops just before it reads a model's files, with the
    /// load already published by [`Self::loading`], and before it starts a view's side task
    /// (saliency, answer). For tests that need a load or a task to be in progress at a known
    /// point; the app never holds.
    pub fn hold_loads(&self, hold: bool) {
        lock(&self.shared.load).held = hold;
        self.shared.load_released.notify_all();
    }
}

impl Drop for Worker {
    /// A held worker is let go, so that it can notice the app is gone and end.
    fn drop(&mut self) {
        self.hold_loads(false);
    }
}

fn worker_loop(
    jobs: &Receiver<Job>,
    results: &Sender<JobResult>,
    side_results: &SideResults,
    shared: &Shared,
    wake: &dyn Fn(),
) {
    // Models are slow to build or load: keep the last one.
    let mut model: Option<LoadedModel> = None;
    while let Ok(mut job) = jobs.recv() {
        // Skip to the newest queued job.
        while let Ok(newer) = jobs.try_recv() {
            job = newer;
        }
        if job.id < shared.latest.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(task) = job.side.take() {
            wait_while_held(shared);
            // Only asked for once the run of this key is on screen, so the model is loaded.
            if let Ok(loaded) = ensure_model(&job, &mut model, shared, wake) {
                let id = job.id;
                let still_wanted = || shared.latest.load(Ordering::SeqCst) == id;
                match &task {
                    SideTask::Saliency(task) => {
                        saliency::run_task(loaded, &job.key, task, &still_wanted, wake, &mut |o| {
                            let _ = side_results.saliency.send(o);
                        });
                    }
                    SideTask::Answer(task) => {
                        answer::run_task(loaded, &job.key, task, &still_wanted, wake, &mut |o| {
                            let _ = side_results.answer.send(o);
                        });
                    }
                    SideTask::Analyze(task) => {
                        analyze::run_task(loaded, &job.key, task, &still_wanted, wake, &mut |o| {
                            let _ = side_results.analyze.send(o);
                        });
                    }
                }
            }
            continue;
        }
        let ran = run_job(&job, &mut model, shared, wake).and_then(|(run, baseline)| {
            let effect = match (job.key.mistake, model.as_ref()) {
                (Some(m), Some(loaded)) => Some(measure_mistake(&job, loaded, m, shared, wake)?),
                _ => None,
            };
            let next = match (job.key.sampling, model.as_ref()) {
                (Some(p), Some(loaded)) => Some(next_for_sampling(&job, loaded, p, shared, wake)?),
                _ => None,
            };
            Ok((run, effect, baseline, next))
        });
        let mut mask_out_of_range = false;
        let (outcome, too_long, effect, baseline, next) = match ran {
            Ok((run, effect, baseline, next)) => (
                Ok(Arc::new(run)),
                None,
                effect.map(Arc::new),
                baseline,
                next,
            ),
            Err(JobError::Cancelled) => continue,
            Err(JobError::Failed(e, limit)) => (Err(e), limit, None, None, None),
            Err(JobError::MaskOutOfRange(e)) => {
                mask_out_of_range = true;
                (Err(e), None, None, None, None)
            }
        };
        // Whether the job's model is the one loaded now: false when its folder failed to load
        // (the previous model stays), true when the model loaded but the run itself failed.
        let model_loaded = model.as_ref().is_some_and(|m| matches(m, &job.key));
        let result = JobResult {
            model_loaded,
            id: job.id,
            key: job.key,
            outcome,
            too_long,
            mask_out_of_range,
            info: model.as_ref().map(LoadedModel::info),
            saliency_targets: model
                .as_ref()
                .map(saliency::supported_targets)
                .unwrap_or_default(),
            effect,
            baseline,
            next,
        };
        if results.send(result).is_err() {
            return;
        }
        wake();
    }
}

/// True when `model` is the one `key` asks for (the demo tokenizer may differ: it is set per
/// run).
fn matches(model: &LoadedModel, key: &JobKey) -> bool {
    match (model, &key.model_dir) {
        (LoadedModel::Demo { model, .. }, None) => *model.config() == key.demo,
        (LoadedModel::Checkpoint { dir, .. }, Some(want)) => dir == want,
        _ => false,
    }
}

/// Waits while a test holds the worker ([`Worker::hold_loads`]).
fn wait_while_held(shared: &Shared) {
    let mut slot = lock(&shared.load);
    while slot.held {
        slot = shared
            .load_released
            .wait(slot)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// Loads the checkpoint in `dir` for `job`, publishing its progress while it loads.
fn load_checkpoint(
    job: &Job,
    dir: &Path,
    shared: &Shared,
    wake: &dyn Fn(),
) -> Result<LoadedModel, JobError> {
    let progress = Arc::new(LoadProgress::default());
    {
        let mut slot = lock(&shared.load);
        // Under the lock: a newer job either shows up here or sees this load and cancels it.
        if shared.latest.load(Ordering::SeqCst) != job.id {
            return Err(JobError::Cancelled);
        }
        slot.loading = Some(LoadStatus {
            dir: dir.to_owned(),
            progress: progress.clone(),
        });
    }
    // Outside the lock: the UI thread takes it to draw the progress.
    wake();
    wait_while_held(shared);
    let loaded = if progress.is_cancelled() {
        Err(PipelineError::Cancelled)
    } else {
        LoadedModel::checkpoint(dir, progress).map_err(PipelineError::from)
    };
    lock(&shared.load).loading = None;
    wake();
    loaded.map_err(JobError::from)
}

/// The model `job` asks for, built or loaded unless it is the one kept, with the job's demo
/// tokenizer.
fn ensure_model<'m>(
    job: &Job,
    model: &'m mut Option<LoadedModel>,
    shared: &Shared,
    wake: &dyn Fn(),
) -> Result<&'m mut LoadedModel, JobError> {
    let key = &job.key;
    if model.as_ref().is_none_or(|m| !matches(m, key)) {
        match &key.model_dir {
            None => {
                // The demo builds in well under a second: free the old model first.
                *model = None;
                *model = Some(LoadedModel::demo_within(
                    key.demo,
                    key.tokenizer,
                    key.memory_budget,
                )?);
            }
            // The previous model stays until the new one has loaded, so a cancelled or failed
            // load leaves it in place.
            Some(dir) => *model = Some(load_checkpoint(job, dir, shared, wake)?),
        }
    }
    let Some(loaded) = model.as_mut() else {
        return Err(JobError::Failed("no model".to_owned(), None));
    };
    loaded.set_demo_tokenizer(key.tokenizer);
    Ok(loaded)
}

/// A job's run, and the unablated run it resumed from when the job had to compute that first.
type Ran = (pipeline::Run, Option<Arc<Run>>);

fn run_job(
    job: &Job,
    model: &mut Option<LoadedModel>,
    shared: &Shared,
    wake: &dyn Fn(),
) -> Result<Ran, JobError> {
    let key = &job.key;
    let loaded = ensure_model(job, model, shared, wake)?;
    let total = loaded.info().layers;
    *lock(&shared.progress) = Progress {
        done: 0,
        total,
        tokens: 0,
    };
    let mut on_tokens = |tokens: usize| {
        lock(&shared.progress).tokens = tokens;
        wake();
    };
    let mut on_layer = layer_progress(shared, total, wake, job.id);
    // Options that do not fit the model are the pipeline's to refuse; the app clamps its
    // settings when a model loads (`AppState::fit_to_model`), so this only happens for a
    // job asked before the model's size was known.
    let input = key.run_input();
    // An ablated run starts from the unablated one at the first ablated layer: the app's
    // cached run, else one computed here first (and handed back for the app to keep).
    let mut computed = None;
    let base = match (&job.base, key.opts.ablations.is_empty()) {
        (_, true) => None,
        (Some(base), false) => Some(base.clone()),
        (None, false) => {
            let plain = key.without_ablations();
            let run =
                pipeline::run_observed(loaded, &input, &plain.opts, &mut on_tokens, &mut on_layer)?;
            let run = Arc::new(run);
            computed = Some(run.clone());
            Some(run)
        }
    };
    let run = pipeline::run_resumed(
        loaded,
        &input,
        &key.opts,
        base.as_deref(),
        &mut on_tokens,
        &mut on_layer,
    )?;
    Ok((run, computed))
}

/// The progress callback of a job's runs: publishes layers done out of `total`, wakes the UI,
/// and says whether job `id` is still the newest (false cancels).
fn layer_progress<'a>(
    shared: &'a Shared,
    total: usize,
    wake: &'a dyn Fn(),
    id: u64,
) -> impl FnMut(usize) -> bool + 'a {
    move |done| {
        let mut p = lock(&shared.progress);
        p.done = done;
        p.total = total;
        drop(p);
        wake();
        shared.latest.load(Ordering::SeqCst) == id
    }
}

/// Measures `mistake` for the mistakes view through the pipeline (its token limit, memory
/// budget and cancellation), with the same model, input and options as the run.
fn measure_mistake(
    job: &Job,
    loaded: &LoadedModel,
    mistake: crate::engine::Mistake,
    shared: &Shared,
    wake: &dyn Fn(),
) -> Result<crate::analysis::teach::MistakeEffect, JobError> {
    let total = loaded.info().layers;
    let mut on_layer = layer_progress(shared, total, wake, job.id);
    let key = &job.key;
    pipeline::mistake_effect(loaded, &key.run_input(), &key.opts, mistake, &mut on_layer).map_err(
        |e| match JobError::from(e) {
            JobError::Failed(e, limit) => {
                JobError::Failed(format!("measuring {mistake}: {e}"), limit)
            }
            JobError::MaskOutOfRange(e) => {
                JobError::Failed(format!("measuring {mistake}: {e}"), None)
            }
            JobError::Cancelled => JobError::Cancelled,
        },
    )
}

/// The next-token choices the sampling step shows, through the pipeline (its token limit,
/// memory budget and cancellation), with the same model, input and options as the run. Only a
/// cancel stops the job; any other failure (no LM head) is the step's to show, not the run's.
fn next_for_sampling(
    job: &Job,
    loaded: &LoadedModel,
    position: pipeline::Positions,
    shared: &Shared,
    wake: &dyn Fn(),
) -> Result<NextOutcome, JobError> {
    let total = loaded.info().layers;
    let mut on_layer = layer_progress(shared, total, wake, job.id);
    let key = &job.key;
    match next_choices(loaded, &key.run_input(), &key.opts, position, &mut on_layer) {
        Ok(choices) => Ok(Ok(Arc::new(choices))),
        Err(e) => match JobError::from(e) {
            JobError::Cancelled => Err(JobError::Cancelled),
            JobError::Failed(e, _) | JobError::MaskOutOfRange(e) => Ok(Err(e)),
        },
    }
}
