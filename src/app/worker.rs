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

pub use super::job::{JobError, JobKey, JobResult, LoadStatus, Progress};
use super::job::{NextOutcome, SideTask};
use crate::model::{LoadProgress, LoadedModel};
use crate::pipeline::{self, PipelineError, Run};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

struct Job {
    id: u64,
    key: JobKey,
    /// A view's work (Saliency, Answer, Analyze) instead of a run.
    side: Option<SideTask>,
    /// A finished run of `key.without_ablations()` (kept residuals) that an ablated run
    /// resumes from; `None` makes the job compute it first when `key` has ablations.
    base: Option<Arc<Run>>,
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
    shared: Arc<Shared>,
    next_id: u64,
}

impl Worker {
    /// Starts the worker. `wake` is called whenever a result or progress is ready (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (jobs, job_rx) = channel::<Job>();
        let (result_tx, results) = channel();
        let shared = Arc::new(Shared::default());
        let shared_w = shared.clone();
        std::thread::Builder::new()
            .name("attn-worker".to_owned())
            .spawn(move || worker_loop(&job_rx, &result_tx, &shared_w, &wake))?;
        Ok(Self {
            jobs,
            results,
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

    /// Queues a view's side task (made by [`super::job::side_task`]) on `key`'s model and
    /// input; like a run, it replaces any older job. Its pieces go where the task sends them.
    pub fn submit_side(&mut self, key: JobKey, task: SideTask) -> u64 {
        self.submit_job(key, Some(task), None)
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
    /// load already published by [`Self::loading`], before a run's first layer (its token count
    /// published), and before it starts a view's side task (saliency, answer). For tests that
    /// need a load, a run or a task to be in progress at a known point however fast the engine
    /// is; the app never holds.
    pub fn hold(&self, hold: bool) {
        lock(&self.shared.load).held = hold;
        self.shared.load_released.notify_all();
    }
}

impl Drop for Worker {
    /// A held worker is let go, so that it can notice the app is gone and end.
    fn drop(&mut self) {
        self.hold(false);
    }
}

fn worker_loop(
    jobs: &Receiver<Job>,
    results: &Sender<JobResult>,
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
                task(loaded, &job.key, &still_wanted, wake);
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
                .map(pipeline::supported_targets)
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

/// Waits while a test holds the worker ([`Worker::hold`]).
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
        // A test's hold stops the run here, tokenized but before its first layer (a cancel
        // while held is seen at that layer).
        wait_while_held(shared);
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
    match pipeline::next_choices(loaded, &key.run_input(), &key.opts, position, &mut on_layer) {
        Ok(choices) => Ok(Ok(Arc::new(choices))),
        Err(e) => match JobError::from(e) {
            JobError::Cancelled => Err(JobError::Cancelled),
            JobError::Failed(e, _) | JobError::MaskOutOfRange(e) => Ok(Err(e)),
        },
    }
}
