//! The compute worker: a named thread that runs forward passes off the UI thread.
//!
//! Jobs carry an id. The worker always takes the newest queued job and skips older ones, a
//! running job is cancelled as soon as a newer one arrives, and the app drops any result whose
//! id is not the one it asked for last. `ui()` never waits on it.

use crate::engine::{AttentionRun, RunOptions};
use crate::model::{Checkpoint, DemoConfig, DemoModel, Model};
use crate::tokenize::{DemoTokenizer, Token, tokenize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

/// Everything that determines a run. Equal keys give equal results, so results are cached by it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobKey {
    /// The text to tokenize.
    pub text: String,
    /// The demo tokenizer.
    pub tokenizer: DemoTokenizer,
    /// The demo model's settings (used when `model_dir` is `None`).
    pub demo: DemoConfig,
    /// A checkpoint folder, or `None` for the demo.
    pub model_dir: Option<std::path::PathBuf>,
    /// Mask, scale and the rest.
    pub opts: RunOptions,
}

/// A finished job.
pub struct JobResult {
    /// The id the app gave the job.
    pub id: u64,
    /// The settings that produced it.
    pub key: JobKey,
    /// The run, or a one-line error.
    pub outcome: Result<Arc<AttentionRun>, String>,
    /// Time spent in tokenizing and the forward pass.
    pub compute_ms: f64,
    /// The architecture of the model that ran.
    pub info: Option<crate::model::ModelInfo>,
}

/// Progress of the running job: layers done out of layers total.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Layers finished.
    pub done: usize,
    /// Layers in the model.
    pub total: usize,
}

struct Job {
    id: u64,
    key: JobKey,
}

/// Handle to the worker thread.
pub struct Worker {
    jobs: Sender<Job>,
    results: Receiver<JobResult>,
    latest: Arc<AtomicU64>,
    progress: Arc<std::sync::Mutex<Progress>>,
    next_id: u64,
}

impl Worker {
    /// Starts the worker. `wake` is called whenever a result or progress is ready (the app passes
    /// `ctx.request_repaint`).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Self> {
        let (jobs, job_rx) = channel::<Job>();
        let (result_tx, results) = channel();
        let latest = Arc::new(AtomicU64::new(0));
        let progress = Arc::new(std::sync::Mutex::new(Progress::default()));
        let (latest_w, progress_w) = (latest.clone(), progress.clone());
        std::thread::Builder::new()
            .name("attn-worker".to_owned())
            .spawn(move || worker_loop(&job_rx, &result_tx, &latest_w, &progress_w, &wake))?;
        Ok(Self {
            jobs,
            results,
            latest,
            progress,
            next_id: 0,
        })
    }

    /// Queues a job and returns its id. Any older job is cancelled or skipped.
    pub fn submit(&mut self, key: JobKey) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.latest.store(id, Ordering::SeqCst);
        // A send only fails when the worker is gone; the app then shows no new results.
        let _ = self.jobs.send(Job { id, key });
        id
    }

    /// Cancels whatever is running or queued.
    pub fn cancel(&mut self) {
        self.next_id += 1;
        self.latest.store(self.next_id, Ordering::SeqCst);
    }

    /// The next finished job, if any.
    pub fn poll(&self) -> Option<JobResult> {
        self.results.try_recv().ok()
    }

    /// Progress of the running job.
    pub fn progress(&self) -> Progress {
        self.progress.lock().map(|p| *p).unwrap_or_default()
    }
}

fn worker_loop(
    jobs: &Receiver<Job>,
    results: &Sender<JobResult>,
    latest: &AtomicU64,
    progress: &std::sync::Mutex<Progress>,
    wake: &dyn Fn(),
) {
    // Models are slow to build or load: keep the last one.
    let mut model: Option<Loaded> = None;
    while let Ok(mut job) = jobs.recv() {
        // Skip to the newest queued job.
        while let Ok(newer) = jobs.try_recv() {
            job = newer;
        }
        if job.id < latest.load(Ordering::SeqCst) {
            continue;
        }
        let start = Instant::now();
        let outcome = run_job(&job, &mut model, latest, progress, wake);
        let info = model.as_ref().map(|m| m.model().info());
        if outcome.as_ref().is_err_and(|e| e == "cancelled") {
            continue;
        }
        let result = JobResult {
            id: job.id,
            key: job.key,
            outcome,
            compute_ms: start.elapsed().as_secs_f64() * 1e3,
            info,
        };
        if results.send(result).is_err() {
            return;
        }
        wake();
    }
}

/// The model the worker holds: the demo, or a checkpoint loaded from a folder.
enum Loaded {
    Demo(Box<DemoModel>),
    Checkpoint(std::path::PathBuf, Box<Checkpoint>),
}

impl Loaded {
    fn model(&self) -> &dyn Model {
        match self {
            Loaded::Demo(m) => m.as_ref(),
            Loaded::Checkpoint(_, m) => m.as_ref(),
        }
    }

    fn matches(&self, key: &JobKey) -> bool {
        match (self, &key.model_dir) {
            (Loaded::Demo(m), None) => *m.config() == key.demo,
            (Loaded::Checkpoint(dir, _), Some(want)) => dir == want,
            _ => false,
        }
    }
}

fn run_job(
    job: &Job,
    model: &mut Option<Loaded>,
    latest: &AtomicU64,
    progress: &std::sync::Mutex<Progress>,
    wake: &dyn Fn(),
) -> Result<Arc<AttentionRun>, String> {
    let key = &job.key;
    if model.as_ref().is_none_or(|m| !m.matches(key)) {
        *model = None;
        *model = Some(match &key.model_dir {
            None => Loaded::Demo(Box::new(
                DemoModel::new(key.demo).map_err(|e| e.to_string())?,
            )),
            Some(dir) => Loaded::Checkpoint(
                dir.clone(),
                Box::new(Checkpoint::load(dir).map_err(|e| e.to_string())?),
            ),
        });
    }
    let Some(loaded) = model.as_ref() else {
        return Err("no model".to_owned());
    };
    let tokens: Vec<Token> = match loaded {
        Loaded::Demo(_) => tokenize(&key.text, key.tokenizer).map_err(|e| e.to_string())?,
        Loaded::Checkpoint(_, c) => c.tokenize(&key.text)?,
    };
    let limit = loaded.model().info().max_positions;
    if tokens.len() > limit {
        return Err(format!(
            "{} tokens exceed the model's limit of {limit}",
            tokens.len()
        ));
    }
    let total = loaded.model().info().layers;
    if let Ok(mut p) = progress.lock() {
        *p = Progress { done: 0, total };
    }
    let mut on_layer = |done: usize| {
        if let Ok(mut p) = progress.lock() {
            *p = Progress { done, total };
        }
        wake();
        latest.load(Ordering::SeqCst) == job.id
    };
    loaded
        .model()
        .forward_with_progress(&tokens, &key.opts, &mut on_layer)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}
