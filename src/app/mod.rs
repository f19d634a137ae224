//! The eframe app. It wires the views, the worker and the persisted state together; the maths
//! lives in `engine`/`model`/`analysis`, the pixels in `render`, the files in `io`.

pub mod export;
pub mod file_dialog;
mod grid;
mod head_view;
mod heatmap;
pub mod state;
mod theme;
mod token_strip;
pub mod worker;

use crate::engine::{AttentionRun, MaskSpec, NormPlacement, ScoreScale};
use crate::io::{self, InputFile, ModelMeta};
use crate::model::{DemoPositional, demo::crafted_at};
use crate::render::{Colormap, RangeMode, ValueScale};
use crate::tokenize::{self, DemoTokenizer, VocabStyle};
use anyhow::anyhow;
use file_dialog::{
    DialogBackend, DialogMode, DialogRequest, InAppDialog, InAppOutcome, SystemOutcome,
};
pub use state::{AppState, HeadMode, QueryCombine, SAMPLE_TEXT, Theme, ViewKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use worker::{JobKey, Worker};

/// Key of the persisted state in eframe's storage.
const STORAGE_KEY: &str = "attnviz_state";
/// How many finished runs are kept, so toggling a setting back is instant.
const CACHE_SIZE: usize = 8;
/// Work that takes longer than this shows progress and a cancel button.
const SHOW_PROGRESS_AFTER_MS: u128 = 200;

/// What a file dialog was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogPurpose {
    /// Open a text, token, attention or session file.
    OpenFile,
    /// Save the session.
    SaveSession,
    /// Export the current view as PNG.
    ExportPng,
    /// Export every head into a folder.
    ExportAllHeads,
    /// Export the tensors as JSON or NPY.
    ExportTensors,
    /// Open a Hugging Face checkpoint folder.
    OpenModel,
}

/// Attention opened from a file rather than computed.
pub struct ExternalRun {
    /// The file it came from.
    pub path: PathBuf,
    /// The maps and tokens.
    pub run: Arc<AttentionRun>,
    /// The model the file names.
    pub meta: ModelMeta,
    /// The mask the file says was applied.
    pub mask: String,
}

struct ExportJob {
    total: usize,
    done: Arc<AtomicUsize>,
    cancel: Arc<AtomicBool>,
    result: Receiver<Result<usize, String>>,
}

struct ScreenshotJob {
    path: PathBuf,
    frames_with_result: u32,
    requested: bool,
    image: Arc<Mutex<Option<Arc<egui::ColorImage>>>>,
}

/// The app.
pub struct AttnApp {
    /// The user's settings (persisted).
    pub state: AppState,
    worker: Option<Worker>,
    requested: Option<(u64, JobKey)>,
    requested_at: Option<Instant>,
    /// The computed run on screen, with the settings that made it.
    pub current: Option<(JobKey, Arc<AttentionRun>)>,
    /// Attention opened from a file; shown instead of the computed run while set.
    pub external: Option<ExternalRun>,
    /// Finished runs with the mask each applied.
    cache: Vec<(JobKey, Arc<AttentionRun>, String)>,
    /// The mask the computed run on screen applied (the user's spec plus the architecture's).
    pub current_mask: Option<String>,
    /// The last error, shown until dismissed or replaced.
    pub error: Option<String>,
    /// A short confirmation (export done, session saved).
    pub notice: Option<String>,
    last_compute_ms: Option<f64>,
    /// The architecture of the model behind the current run.
    pub model_info: Option<crate::model::ModelInfo>,
    /// Per checkpoint folder run recently, which query heads share each key/value head.
    kv_groups: Vec<(PathBuf, Vec<Vec<usize>>)>,
    /// Per checkpoint folder run recently, how its tokenizer spells the vocabulary.
    vocab_styles: Vec<(PathBuf, VocabStyle)>,
    /// Labels of the shown run's tokens, with the run and style they were made for.
    labels: Option<(Weak<AttentionRun>, VocabStyle, Arc<Vec<String>>)>,
    /// The model folder to go back to if a newly opened one fails to load or is cancelled.
    previous_model_dir: Option<Option<PathBuf>>,
    /// The session file in use, if any.
    pub session_path: Option<PathBuf>,
    heatmap: heatmap::HeatmapView,
    grid: grid::GridView,
    head_view: head_view::HeadView,
    token_strip: token_strip::TokenStrip,
    /// Shows the system's file dialogs ([`file_dialog::SystemDialogs`] unless replaced).
    dialogs: Arc<dyn DialogBackend>,
    /// A system dialog open on its thread, with what it was opened for.
    dialog: Option<(DialogPurpose, DialogRequest, Receiver<SystemOutcome>)>,
    /// The in-app dialog, when the system one is unavailable.
    in_app_dialog: Option<(DialogPurpose, InAppDialog)>,
    /// Set once a system dialog turned out to be unavailable: later requests go straight to
    /// the in-app dialog.
    system_dialogs_unavailable: bool,
    export_job: Option<ExportJob>,
    screenshot: Option<ScreenshotJob>,
    title: String,
    /// Whether the label fonts were added to the context (once, on the first logic step).
    fonts_installed: bool,
}

impl AttnApp {
    /// A new app; `wake` lets the worker request a repaint.
    pub fn new(mut state: AppState, wake: impl Fn() + Send + 'static) -> Self {
        state.clamp(None);
        let (worker, error) = match Worker::spawn(wake) {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(format!("cannot start the compute thread: {e}"))),
        };
        Self {
            state,
            worker,
            requested: None,
            requested_at: None,
            current: None,
            external: None,
            cache: Vec::new(),
            current_mask: None,
            error,
            notice: None,
            last_compute_ms: None,
            model_info: None,
            kv_groups: Vec::new(),
            vocab_styles: Vec::new(),
            labels: None,
            previous_model_dir: None,
            session_path: None,
            heatmap: heatmap::HeatmapView::default(),
            grid: grid::GridView::default(),
            head_view: head_view::HeadView::default(),
            token_strip: token_strip::TokenStrip::default(),
            dialogs: Arc::new(file_dialog::SystemDialogs),
            dialog: None,
            in_app_dialog: None,
            system_dialogs_unavailable: false,
            export_job: None,
            screenshot: None,
            title: String::new(),
            fonts_installed: false,
        }
    }

    /// The run the views show: an opened attention file, else the computed run.
    pub fn shown_run(&self) -> Option<&Arc<AttentionRun>> {
        match &self.external {
            Some(e) => Some(&e.run),
            None => self.current.as_ref().map(|(_, r)| r),
        }
    }

    /// True while a requested run has not arrived yet.
    pub fn busy(&self) -> bool {
        self.external.is_none()
            && self
                .requested
                .as_ref()
                .is_some_and(|(_, k)| self.current.as_ref().is_none_or(|(c, _)| c != k))
            && self.error.is_none()
    }

    fn model_meta(&self) -> ModelMeta {
        match (&self.external, &self.model_info) {
            (Some(e), _) => e.meta.clone(),
            (None, Some(info)) if self.state.model_dir.is_some() => ModelMeta::from(info),
            (None, _) => ModelMeta {
                name: "demo".to_owned(),
                architecture: "demo".to_owned(),
                layers: self.state.demo.layers,
                heads: self.state.demo.heads,
                kv_heads: self.state.demo.heads,
                d_model: self.state.demo.d_model,
            },
        }
    }

    /// Opens a file given on the command line, dropped on the window or picked in a dialog.
    /// On error the current state stays and the message names the file.
    pub fn open_file(&mut self, path: &Path) {
        match io::load_input(path) {
            Ok(InputFile::Input(input)) => {
                // Token strings and ids run as they are, as `attnviz export` runs them.
                self.external = None;
                self.state.set_input(input);
                self.error = None;
            }
            Ok(InputFile::Attention(file)) => {
                let (run, meta) = crate::pipeline::from_attention_file(*file);
                let [layers, heads, n, _] = run.attention.maps.shape();
                self.state.layer_idx = self.state.layer_idx.min(layers - 1);
                self.state.head_idx = self.state.head_idx.min(heads - 1);
                self.state.selected_queries.retain(|&q| q < n);
                self.external = Some(ExternalRun {
                    path: path.to_owned(),
                    run: Arc::new(run.attention),
                    meta,
                    mask: run.mask,
                });
                self.error = None;
            }
            Ok(InputFile::Session(value)) => self.apply_session(path, value),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Loads a session file's fields into the state, clamped to the model.
    fn apply_session(&mut self, path: &Path, value: serde_json::Value) {
        let fields = match io::session_fields(path, value) {
            Ok(f) => f,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        match serde_json::from_value::<AppState>(fields) {
            Ok(mut state) => {
                state.clamp(None);
                self.state = state;
                self.previous_model_dir = None;
                self.external = None;
                self.session_path = Some(path.to_owned());
                self.error = None;
            }
            Err(e) => self.error = Some(format!("not a valid session ({e}) in {}", path.display())),
        }
    }

    /// Writes the session file.
    pub fn save_session(&mut self, path: &Path) {
        let mut value = match serde_json::to_value(&self.state) {
            Ok(v) => v,
            Err(e) => {
                self.error = Some(format!("cannot serialise the session: {e}"));
                return;
            }
        };
        if let Some(obj) = value.as_object_mut() {
            // The model the session ran: "demo", or the checkpoint folder.
            let model = self
                .state
                .model_dir
                .as_ref()
                .map_or_else(|| "demo".to_owned(), |d| d.display().to_string());
            obj.insert("model".to_owned(), serde_json::Value::from(model));
        }
        match io::write_session(path, &value) {
            Ok(()) => {
                self.session_path = Some(path.to_owned());
                self.notice = Some(format!("saved {}", path.display()));
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    /// Handles a path chosen for `purpose` (from a dialog, or directly in tests).
    pub fn complete_dialog(&mut self, purpose: DialogPurpose, path: &Path) {
        match purpose {
            DialogPurpose::OpenFile => self.open_file(path),
            DialogPurpose::SaveSession => self.save_session(path),
            DialogPurpose::ExportPng => {
                let Some(run) = self.shown_run().cloned() else {
                    self.error = Some("nothing to export yet".to_owned());
                    return;
                };
                let ctx = self.figure_context(&run);
                match export::export_png(path, &run, &self.state, &ctx) {
                    Ok(()) => self.notice = Some(format!("wrote {}", path.display())),
                    Err(e) => self.error = Some(e),
                }
            }
            DialogPurpose::ExportTensors => {
                let Some(run) = self.shown_run().cloned() else {
                    self.error = Some("nothing to export yet".to_owned());
                    return;
                };
                // The mask that was applied, not the one typed: a GPT-2 run says `causal`.
                let mask = self.shown_mask();
                match export::export_tensors(path, &run, &self.model_meta(), &mask) {
                    Ok(()) => self.notice = Some(format!("wrote {}", path.display())),
                    Err(e) => self.error = Some(e),
                }
            }
            DialogPurpose::ExportAllHeads => self.start_export_all(path),
            DialogPurpose::OpenModel => self.open_model_folder(path),
        }
    }

    /// Switches to a checkpoint folder; it loads on the worker, and a folder still loading is
    /// cancelled (the newest wins). If it fails or is cancelled, the model on screen before
    /// stays and a failure names the file. The folder joins the recent list once it has run.
    pub fn open_model_folder(&mut self, dir: &Path) {
        self.external = None;
        if self.state.model_dir.as_deref() == Some(dir) {
            return;
        }
        // While another folder is still loading, the model to go back to is still the one
        // before it.
        if self.previous_model_dir.is_none() {
            self.previous_model_dir = Some(self.state.model_dir.clone());
        }
        self.state.model_dir = Some(dir.to_owned());
    }

    /// The checkpoint load in progress on the worker, if any (also a cancelled one that has not
    /// stopped yet).
    pub fn loading(&self) -> Option<worker::LoadStatus> {
        self.worker.as_ref().and_then(Worker::loading)
    }

    /// Holds the worker just before it reads a model's files (`true`), or lets it go on. For
    /// tests that need a load in progress at a known point.
    pub fn hold_model_loads(&self, hold: bool) {
        if let Some(w) = &self.worker {
            w.hold_loads(hold);
        }
    }

    /// Stops the checkpoint load in progress and goes back to the model on screen before it,
    /// with its settings as they were. Not an error: a short notice says what happened.
    fn cancel_load(&mut self) {
        let Some(load) = self.loading() else {
            return;
        };
        load.progress.cancel();
        if self.state.model_dir.as_ref() == Some(&load.dir) {
            // With nothing to go back to (the app started with this folder), the demo.
            self.state.model_dir = self.previous_model_dir.take().unwrap_or_default();
        }
        let kept = match &self.state.model_dir {
            Some(dir) => folder_name(dir),
            None => "the demo model".to_owned(),
        };
        self.notice = Some(format!(
            "cancelled loading {}; kept {kept}",
            folder_name(&load.dir)
        ));
    }

    /// The key/value groups of the run on screen: per KV head, the query heads sharing it.
    /// Empty when unknown; the demo has one KV head per query head.
    fn shown_kv_groups(&self) -> Vec<Vec<usize>> {
        match (&self.external, &self.current) {
            (Some(e), _) => crate::pipeline::kv_groups(e.meta.heads, e.meta.kv_heads),
            (None, Some((key, _))) => key
                .model_dir
                .as_ref()
                .and_then(|dir| self.kv_groups.iter().find(|(d, _)| d == dir))
                .map(|(_, g)| g.clone())
                .unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// How the shown run's token strings are labelled: plain for the demo and for attention
    /// files (they name no tokenizer), the checkpoint tokenizer's style otherwise.
    pub fn shown_vocab_style(&self) -> VocabStyle {
        match (&self.external, &self.current) {
            (None, Some((key, _))) => key
                .model_dir
                .as_ref()
                .and_then(|dir| self.vocab_styles.iter().find(|(d, _)| d == dir))
                .map(|(_, style)| style.clone())
                .unwrap_or_default(),
            _ => VocabStyle::Plain,
        }
    }

    /// The labels of `run`'s tokens under the shown style, made once per run and style.
    /// The mask the run on screen applied: an attention file's recorded mask, or the computed
    /// run's (the user's spec plus what the architecture adds).
    fn shown_mask(&self) -> String {
        match &self.external {
            Some(e) => e.mask.clone(),
            None => self
                .current_mask
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
        }
    }

    /// What an exported figure of `run` says besides its maps (labels, model, applied mask,
    /// text, KV groups): the same as `attnviz render` gives for the same run.
    pub fn figure_context(&self, run: &AttentionRun) -> crate::render::FigureContext {
        let mut ctx = crate::render::FigureContext::from_tokens(
            &run.tokens,
            &self.shown_vocab_style(),
            &self.model_meta().name,
            &self.shown_mask(),
        );
        if self.external.is_none() {
            ctx.text = self.state.text.clone();
        }
        ctx.kv_groups = self.shown_kv_groups();
        ctx
    }

    fn shown_labels(&mut self, run: &Arc<AttentionRun>) -> Arc<Vec<String>> {
        let style = self.shown_vocab_style();
        if let Some((r, s, labels)) = &self.labels
            && std::ptr::eq(r.as_ptr(), Arc::as_ptr(run))
            && *s == style
        {
            return labels.clone();
        }
        let labels = Arc::new(tokenize::display_labels(&run.tokens, &style));
        self.labels = Some((Arc::downgrade(run), style, labels.clone()));
        labels
    }

    fn start_export_all(&mut self, dir: &Path) {
        let Some(run) = self.shown_run().cloned() else {
            self.error = Some("nothing to export yet".to_owned());
            return;
        };
        let [layers, heads, _, _] = run.maps.shape();
        let done = Arc::new(AtomicUsize::new(0));
        let cancel = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (state, dir) = (self.state.clone(), dir.to_owned());
        let ctx = self.figure_context(&run);
        let (done_w, cancel_w) = (done.clone(), cancel.clone());
        let spawned = std::thread::Builder::new()
            .name("attn-export".to_owned())
            .spawn(move || {
                let _ = tx.send(export::export_all_heads(
                    &dir, &run, &state, &ctx, &done_w, &cancel_w,
                ));
            });
        match spawned {
            Ok(_) => {
                self.export_job = Some(ExportJob {
                    total: layers * heads,
                    done,
                    cancel,
                    result: rx,
                })
            }
            Err(e) => self.error = Some(format!("cannot start the export thread: {e}")),
        }
    }

    /// Replaces the system file dialogs, e.g. by [`file_dialog::NoSystemDialogs`] (tests, or
    /// desktops where the system dialog misbehaves).
    pub fn set_dialog_backend(&mut self, backend: Arc<dyn DialogBackend>) {
        self.dialogs = backend;
        self.system_dialogs_unavailable = false;
    }

    /// The in-app file dialog's request, while it is open.
    pub fn in_app_dialog(&self) -> Option<&DialogRequest> {
        self.in_app_dialog.as_ref().map(|(_, d)| d.request())
    }

    /// What a dialog for `purpose` asks for.
    fn dialog_request(&self, purpose: DialogPurpose) -> DialogRequest {
        let save = |title: &str, default_name: String| DialogRequest {
            title: title.to_owned(),
            mode: DialogMode::Save { default_name },
            start_dir: None,
        };
        let folder = |title: &str| DialogRequest {
            title: title.to_owned(),
            mode: DialogMode::Folder,
            start_dir: None,
        };
        let mut request = match purpose {
            DialogPurpose::OpenFile => DialogRequest {
                title: "Open a text, token, attention or session file".to_owned(),
                mode: DialogMode::Open {
                    filter_name: "text, tokens, attention or session".to_owned(),
                    extensions: ["txt", "json", "npy"].map(str::to_owned).to_vec(),
                },
                start_dir: None,
            },
            DialogPurpose::SaveSession => save("Save session", "session.attnviz.json".to_owned()),
            DialogPurpose::ExportPng => save("Export PNG", export::default_png_name(&self.state)),
            DialogPurpose::ExportTensors => save(
                "Export attention (.json or .npy)",
                "attention.json".to_owned(),
            ),
            DialogPurpose::ExportAllHeads => folder("Export all heads into a folder"),
            DialogPurpose::OpenModel => folder("Open a Hugging Face model folder"),
        };
        // Start next to the session file in use, if any.
        request.start_dir = self
            .session_path
            .as_deref()
            .and_then(Path::parent)
            .filter(|p| p.is_dir())
            .map(Path::to_path_buf);
        request
    }

    /// Asks for a path for `purpose`: the system dialog on its own thread, so the UI keeps
    /// drawing, or the in-app dialog once the system one is known to be unavailable.
    fn open_dialog(&mut self, purpose: DialogPurpose) {
        if self.dialog.is_some() || self.in_app_dialog.is_some() {
            return;
        }
        let request = self.dialog_request(purpose);
        if self.system_dialogs_unavailable {
            self.in_app_dialog = Some((purpose, InAppDialog::new(request)));
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let backend = self.dialogs.clone();
        let asked = request.clone();
        let spawned = std::thread::Builder::new()
            .name("file-dialog".to_owned())
            .spawn(move || {
                let _ = tx.send(backend.pick(&asked));
            });
        match spawned {
            Ok(_) => self.dialog = Some((purpose, request, rx)),
            Err(_) => self.in_app_dialog = Some((purpose, InAppDialog::new(request))),
        }
    }

    /// Handles what the system dialog answered; an unavailable one hands over to the in-app
    /// dialog, and the status bar says so once.
    fn system_dialog_answered(
        &mut self,
        purpose: DialogPurpose,
        request: DialogRequest,
        outcome: SystemOutcome,
    ) {
        match outcome {
            SystemOutcome::Picked(path) => self.complete_dialog(purpose, &path),
            SystemOutcome::Cancelled => {}
            SystemOutcome::Unavailable(reason) => {
                if !self.system_dialogs_unavailable {
                    self.notice = Some(format!(
                        "the system file dialog is unavailable ({reason}); using attnviz's own"
                    ));
                }
                self.system_dialogs_unavailable = true;
                self.in_app_dialog = Some((purpose, InAppDialog::new(request)));
            }
        }
    }

    /// Draws the in-app file dialog while it is open and acts on its outcome.
    fn in_app_dialog_ui(&mut self, ctx: &egui::Context) {
        let Some((purpose, dialog)) = self.in_app_dialog.as_mut() else {
            return;
        };
        let purpose = *purpose;
        match dialog.ui(ctx) {
            None => {}
            Some(InAppOutcome::Cancelled) => self.in_app_dialog = None,
            Some(InAppOutcome::Picked(path)) => {
                self.in_app_dialog = None;
                self.complete_dialog(purpose, &path);
            }
        }
    }

    /// Starts a run if the settings changed since the last request; uses the cache when it can.
    fn schedule(&mut self) {
        if self.external.is_some() {
            return;
        }
        let key = match self.state.job_key() {
            Ok(k) => k,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        if self.requested.as_ref().is_some_and(|(_, k)| *k == key) {
            return;
        }
        if let Some((_, run, mask)) = self.cache.iter().find(|(k, _, _)| *k == key) {
            // Nothing is submitted, so stop a load of another model here.
            if let Some(w) = &self.worker {
                w.cancel_load_unless(key.model_dir.as_deref());
            }
            self.current = Some((key.clone(), run.clone()));
            self.current_mask = Some(mask.clone());
            self.requested = Some((0, key));
            self.error = None;
            return;
        }
        if let Some(worker) = self.worker.as_mut() {
            let id = worker.submit(key.clone());
            self.requested = Some((id, key));
            self.requested_at = Some(Instant::now());
        }
    }

    fn receive(&mut self) {
        let Some(worker) = self.worker.as_ref() else {
            return;
        };
        while let Some(result) = worker.poll() {
            let wanted = self
                .requested
                .as_ref()
                .is_some_and(|(id, _)| *id == result.id);
            if !wanted {
                continue;
            }
            self.last_compute_ms = Some(result.compute_ms);
            if result.outcome.is_ok() {
                self.model_info = result.info.clone();
                self.previous_model_dir = None;
                if let Some(dir) = &result.key.model_dir {
                    // Only folders that loaded and ran join the recent list.
                    if self.state.recent_models.first() != Some(dir) {
                        self.state.remember_model(dir);
                    }
                    self.kv_groups.retain(|(d, _)| d != dir);
                    self.kv_groups.push((dir.clone(), result.kv_groups.clone()));
                    if self.kv_groups.len() > CACHE_SIZE {
                        self.kv_groups.remove(0);
                    }
                    self.vocab_styles.retain(|(d, _)| d != dir);
                    self.vocab_styles
                        .push((dir.clone(), result.vocab_style.clone()));
                    if self.vocab_styles.len() > CACHE_SIZE {
                        self.vocab_styles.remove(0);
                    }
                }
            }
            match result.outcome {
                Ok(run) => {
                    self.cache.retain(|(k, _, _)| *k != result.key);
                    self.cache
                        .push((result.key.clone(), run.clone(), result.mask.clone()));
                    if self.cache.len() > CACHE_SIZE {
                        self.cache.remove(0);
                    }
                    let n = run.tokens.len();
                    self.current = Some((result.key, run));
                    self.current_mask = Some(result.mask);
                    self.state.selected_queries.retain(|&q| q < n);
                    self.error = None;
                }
                Err(e) => {
                    // A model folder that fails to load gives way to the previous model.
                    if let Some(previous) = self.previous_model_dir.take()
                        && result.key.model_dir.is_some()
                        && result.key.model_dir == self.state.model_dir
                    {
                        self.state.model_dir = previous;
                        // The previous run is still on screen: mark it as the one asked for,
                        // so that the error stays visible instead of being cleared by a rerun.
                        if let Ok(key) = self.state.job_key() {
                            self.requested = Some((0, key));
                        }
                    }
                    self.error = Some(e);
                }
            }
        }
    }

    /// Waits (sleeping) until the requested run has arrived or `timeout` passes. For tests and
    /// scripted use; the UI never calls it.
    pub fn wait_for_run(&mut self, timeout: std::time::Duration) -> bool {
        let start = Instant::now();
        loop {
            self.receive();
            self.schedule();
            if !self.busy() {
                return self.error.is_none();
            }
            if start.elapsed() > timeout {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    fn cancel_run(&mut self) {
        if let Some(w) = self.worker.as_mut() {
            w.cancel();
        }
        self.error = Some("cancelled; change a setting to compute again".to_owned());
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        // Arrow keys wait until the model's size is known.
        let typing = ctx.egui_wants_keyboard_input()
            || self.layers_heads().is_none()
            || self.in_app_dialog.is_some();
        let (layers, heads) = self.layers_heads().unwrap_or((1, 1));
        let mut dialog = None;
        let mut save_direct = None;
        ctx.input_mut(|i| {
            if i.consume_key(egui::Modifiers::COMMAND, egui::Key::O) {
                dialog = Some(DialogPurpose::OpenFile);
            }
            if i.consume_key(egui::Modifiers::COMMAND, egui::Key::S) {
                match &self.session_path {
                    Some(p) => save_direct = Some(p.clone()),
                    None => dialog = Some(DialogPurpose::SaveSession),
                }
            }
            if i.consume_key(egui::Modifiers::COMMAND, egui::Key::E) {
                dialog = Some(DialogPurpose::ExportPng);
            }
            if typing {
                return;
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowRight) {
                self.state.head_idx = (self.state.head_idx + 1).min(heads - 1);
                self.state.head_mode = HeadMode::Single;
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowLeft) {
                self.state.head_idx = self.state.head_idx.saturating_sub(1);
                self.state.head_mode = HeadMode::Single;
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowDown) {
                self.state.layer_idx = (self.state.layer_idx + 1).min(layers - 1);
                self.state.all_layers = false;
            }
            if i.consume_key(egui::Modifiers::NONE, egui::Key::ArrowUp) {
                self.state.layer_idx = self.state.layer_idx.saturating_sub(1);
                self.state.all_layers = false;
            }
        });
        if let Some(p) = save_direct {
            self.save_session(&p);
        }
        if let Some(purpose) = dialog {
            self.open_dialog(purpose);
        }
    }

    /// Layers and heads of what is shown (the file's, or the demo settings').
    /// `None` while a checkpoint is still loading: its size is not known yet, so nothing may be
    /// clamped against it.
    fn layers_heads(&self) -> Option<(usize, usize)> {
        match &self.external {
            Some(e) => {
                let [l, h, _, _] = e.run.maps.shape();
                Some((l.max(1), h.max(1)))
            }
            None if self.state.model_dir.is_some() => {
                let loaded = self
                    .current
                    .as_ref()
                    .is_some_and(|(k, _)| k.model_dir == self.state.model_dir);
                self.model_info
                    .as_ref()
                    .filter(|_| loaded)
                    .map(|i| (i.layers.max(1), i.heads.max(1)))
            }
            None => Some((self.state.demo.layers, self.state.demo.heads)),
        }
    }

    fn poll_background(&mut self) {
        if let Some((_, _, rx)) = &self.dialog {
            match rx.try_recv() {
                Ok(outcome) => {
                    if let Some((purpose, request, _)) = self.dialog.take() {
                        self.system_dialog_answered(purpose, request, outcome);
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.dialog = None,
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
        }
        if let Some(job) = &self.export_job
            && let Ok(result) = job.result.try_recv()
        {
            match result {
                Ok(n) => self.notice = Some(format!("exported {n} PNGs")),
                Err(e) => self.error = Some(e),
            }
            self.export_job = None;
        }
    }

    fn menu_ui(&mut self, ui: &mut egui::Ui) {
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                let has_run = self.shown_run().is_some();
                if ui.button("Open file…  (Ctrl+O)").clicked() {
                    self.open_dialog(DialogPurpose::OpenFile);
                }
                if ui.button("Save session…  (Ctrl+S)").clicked() {
                    self.open_dialog(DialogPurpose::SaveSession);
                }
                ui.separator();
                if ui
                    .add_enabled(has_run, egui::Button::new("Export PNG…  (Ctrl+E)"))
                    .clicked()
                {
                    self.open_dialog(DialogPurpose::ExportPng);
                }
                if ui
                    .add_enabled(has_run, egui::Button::new("Export all heads…"))
                    .clicked()
                {
                    self.open_dialog(DialogPurpose::ExportAllHeads);
                }
                if ui
                    .add_enabled(has_run, egui::Button::new("Export JSON/NPY…"))
                    .clicked()
                {
                    self.open_dialog(DialogPurpose::ExportTensors);
                }
            });
            ui.menu_button("View", |ui| {
                for (theme, label) in [(Theme::Dark, "Dark theme"), (Theme::Light, "Light theme")] {
                    if ui.radio(self.state.theme == theme, label).clicked() {
                        self.state.theme = theme;
                    }
                }
            });
        });
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Input");
        if let Some(ext) = &self.external {
            // The file's own run is on screen: say so, with its model, tokens and ids.
            ui.label(format!("Showing attention from {}", ext.path.display()));
            ui.label(format!(
                "model {} ({}), {} tokens, mask {}",
                ext.meta.name,
                ext.meta.architecture,
                ext.run.tokens.len(),
                if ext.mask.is_empty() {
                    "not recorded"
                } else {
                    &ext.mask
                }
            ));
            egui::CollapsingHeader::new("Tokens and ids")
                .id_salt("file-tokens")
                .show(ui, |ui| {
                    egui::ScrollArea::vertical()
                        .max_height(160.0)
                        .id_salt("file-tokens-scroll")
                        .show(ui, |ui| {
                            for (i, t) in ext.run.tokens.iter().enumerate() {
                                ui.monospace(format!("{i:>4}  {:<16} id {}", t.text, t.id));
                            }
                        });
                });
            let back = match &self.state.model_dir {
                Some(dir) => format!("Back to {}", folder_name(dir)),
                None => "Back to the demo model".to_owned(),
            };
            let mut back_clicked = false;
            ui.horizontal(|ui| {
                back_clicked = ui.button(back).clicked();
                if ui.button("Open file…").clicked() {
                    self.open_dialog(DialogPurpose::OpenFile);
                }
            });
            if back_clicked {
                self.external = None;
            } else {
                // The text, model and run options do not apply to a file's run: only the view.
                ui.separator();
                self.view_controls_ui(ui);
                return;
            }
        }
        let label = ui.label("Text");
        let edited = ui
            .add(
                egui::TextEdit::multiline(&mut self.state.text)
                    .desired_rows(5)
                    .desired_width(f32::INFINITY)
                    .id_salt("input-text"),
            )
            .labelled_by(label.id)
            .changed();
        if edited {
            // Typing replaces a token file's tokens or ids by the text.
            self.state.tokens = None;
            self.state.token_ids = None;
        }
        if let Some(ids) = &self.state.token_ids {
            ui.label(format!(
                "{} token ids from a file, run as they are",
                ids.len()
            ));
        } else if let Some(tokens) = &self.state.tokens {
            ui.label(format!(
                "{} tokens from a file, run as they are",
                tokens.len()
            ));
        }
        ui.horizontal(|ui| {
            if self.state.model_dir.is_some() {
                // A checkpoint always tokenizes with its own tokenizer.json.
                ui.label("Tokenizer: the model folder's tokenizer.json");
            } else {
                egui::ComboBox::from_label("Tokenizer")
                    .selected_text(self.state.tokenizer.name())
                    .show_ui(ui, |ui| {
                        for t in DemoTokenizer::ALL {
                            ui.selectable_value(&mut self.state.tokenizer, t, t.name());
                        }
                    });
            }
            if ui.button("Open file…").clicked() {
                self.open_dialog(DialogPurpose::OpenFile);
            }
        });
        ui.separator();
        self.model_ui(ui);
        ui.separator();
        ui.heading("Run options");
        ui.horizontal(|ui| {
            let label = ui.label("Mask");
            ui.text_edit_singleline(&mut self.state.mask_text)
                .labelled_by(label.id);
        });
        // What the run on screen really applied: the architecture adds its causal mask and
        // Mistral its sliding window to the typed spec.
        let applied = match &self.external {
            Some(e) => Some(e.mask.as_str()),
            None => self.current_mask.as_deref(),
        };
        if let Some(applied) = applied
            && MaskSpec::parse(&self.state.mask_text)
                .map(|m| m.to_string())
                .ok()
                .as_deref()
                != Some(applied)
        {
            ui.label(format!("applied: {applied}"));
        }
        ui.horizontal_wrapped(|ui| {
            for part in [
                "none",
                "causal",
                "padding",
                "window:3",
                "strided:4",
                "block:8",
                "global:0",
            ] {
                if ui.small_button(part).clicked() {
                    self.state.mask_text = match (part, self.state.mask_text.trim()) {
                        ("none", _) | (_, "none" | "") => part.to_owned(),
                        (_, current) => format!("{current}+{part}"),
                    };
                }
            }
        });
        ui.label("Right-click a heatmap cell to drop it, its key or its query.");
        let mut temperature = match self.state.scale {
            ScoreScale::Temperature(t) => Some(t),
            _ => None,
        };
        egui::ComboBox::from_label("Score scale")
            .selected_text(match self.state.scale {
                ScoreScale::InvSqrtDHead => "1/√d_head",
                ScoreScale::None => "none",
                ScoreScale::Temperature(_) => "temperature",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.state.scale, ScoreScale::InvSqrtDHead, "1/√d_head");
                ui.selectable_value(&mut self.state.scale, ScoreScale::None, "none");
                if ui
                    .selectable_label(temperature.is_some(), "temperature")
                    .clicked()
                    && temperature.is_none()
                {
                    temperature = Some(1.0);
                    self.state.scale = ScoreScale::Temperature(1.0);
                }
            });
        if let Some(mut t) = temperature
            && ui
                .add(
                    egui::Slider::new(&mut t, 0.05..=10.0)
                        .logarithmic(true)
                        .text("temperature"),
                )
                .changed()
        {
            self.state.scale = ScoreScale::Temperature(t);
        }
        ui.separator();
        self.view_controls_ui(ui);
    }

    fn model_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model");
        let current = self
            .state
            .model_dir
            .as_ref()
            .map_or("demo (built in)".to_owned(), |d| d.display().to_string());
        let mut chosen: Option<Option<PathBuf>> = None;
        ui.horizontal(|ui| {
            egui::ComboBox::from_label("model")
                .selected_text(current)
                .width(200.0)
                .show_ui(ui, |ui| {
                    if ui
                        .selectable_label(self.state.model_dir.is_none(), "demo (built in)")
                        .clicked()
                    {
                        chosen = Some(None);
                    }
                    for dir in &self.state.recent_models {
                        let on = self.state.model_dir.as_ref() == Some(dir);
                        if ui.selectable_label(on, dir.display().to_string()).clicked() {
                            chosen = Some(Some(dir.clone()));
                        }
                    }
                });
            if ui.button("Open model folder…").clicked() {
                self.open_dialog(DialogPurpose::OpenModel);
            }
        });
        match chosen {
            Some(Some(dir)) => self.open_model_folder(&dir),
            Some(None) => {
                self.state.model_dir = None;
                self.previous_model_dir = None;
                self.external = None;
            }
            None => {}
        }
        if self.state.model_dir.is_some() {
            match &self.model_info {
                Some(info)
                    if self
                        .current
                        .as_ref()
                        .is_some_and(|(k, _)| k.model_dir == self.state.model_dir) =>
                {
                    egui::Grid::new("model-info").num_columns(2).show(ui, |ui| {
                        let rows = [
                            ("architecture", info.architecture.clone()),
                            ("layers", info.layers.to_string()),
                            ("heads", info.heads.to_string()),
                            ("KV heads", kv_heads_text(info.heads, info.kv_heads)),
                            ("d_model", info.d_model.to_string()),
                            ("parameters", info.params.to_string()),
                            ("dtype", info.dtype.clone()),
                            (
                                "positions",
                                format!("{}, max {}", info.positional, info.max_positions),
                            ),
                        ];
                        for (k, v) in rows {
                            ui.label(k);
                            ui.label(v);
                            ui.end_row();
                        }
                    });
                }
                _ => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("loading the model…");
                    });
                }
            }
            return;
        }
        let mut demo = self.state.demo;
        ui.add(egui::Slider::new(&mut demo.layers, 1..=24).text("layers"));
        ui.add(egui::Slider::new(&mut demo.heads, 1..=32).text("heads"));
        ui.add(egui::Slider::new(&mut demo.d_model, 8..=1024).text("d_model"));
        egui::ComboBox::from_label("Positional encoding")
            .selected_text(demo.positional.name())
            .show_ui(ui, |ui| {
                for p in DemoPositional::ALL {
                    ui.selectable_value(&mut demo.positional, p, p.name());
                }
            });
        egui::ComboBox::from_label("LayerNorm")
            .selected_text(demo.norm.name())
            .show_ui(ui, |ui| {
                for p in NormPlacement::ALL {
                    ui.selectable_value(&mut demo.norm, p, p.name());
                }
            });
        match demo.validate() {
            Ok(()) => self.state.demo = demo,
            Err(e) => {
                ui.colored_label(theme::error_color(ui.visuals().dark_mode), e.to_string());
            }
        }
    }

    fn view_controls_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("View");
        let Some((layers, heads)) = self.layers_heads() else {
            ui.label("(waiting for the model)");
            return;
        };
        self.state.layer_idx = self.state.layer_idx.min(layers - 1);
        self.state.head_idx = self.state.head_idx.min(heads - 1);
        ui.horizontal(|ui| {
            ui.add_enabled(
                !self.state.all_layers,
                egui::Slider::new(&mut self.state.layer_idx, 0..=layers - 1).text("layer"),
            );
            ui.checkbox(&mut self.state.all_layers, "mean of layers");
        });
        egui::ComboBox::from_label("Heads")
            .selected_text(self.state.head_mode.label())
            .show_ui(ui, |ui| {
                for m in HeadMode::ALL {
                    ui.selectable_value(&mut self.state.head_mode, m, m.label());
                }
            });
        match self.state.head_mode {
            HeadMode::Single => {
                ui.add(egui::Slider::new(&mut self.state.head_idx, 0..=heads - 1).text("head"));
            }
            HeadMode::Set => {
                ui.horizontal_wrapped(|ui| {
                    for h in 0..heads {
                        let mut on = self.state.head_set.contains(&h);
                        if ui.checkbox(&mut on, format!("{h}")).changed() {
                            if on {
                                self.state.head_set.push(h);
                                self.state.head_set.sort_unstable();
                            } else {
                                self.state.head_set.retain(|&x| x != h);
                            }
                        }
                    }
                });
            }
            HeadMode::Mean | HeadMode::Max => {}
        }
        if self.external.is_none()
            && self.state.model_dir.is_none()
            && self.state.head_mode == HeadMode::Single
            && let Some(kind) =
                crafted_at(&self.state.demo, self.state.layer_idx, self.state.head_idx)
        {
            ui.label(format!("crafted head: {}", kind.label()));
        }
        egui::ComboBox::from_label("Colormap")
            .selected_text(self.state.colormap.name())
            .show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut self.state.colormap, c, c.name());
                }
            });
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.state.value_scale, ValueScale::Linear, "linear");
            ui.selectable_value(&mut self.state.value_scale, ValueScale::Log, "log");
            ui.separator();
            for r in RangeMode::ALL {
                ui.selectable_value(&mut self.state.range, r, r.name());
            }
        });
        ui.checkbox(
            &mut self.state.hide_special,
            "Hide special tokens and renormalise",
        );
    }

    fn status_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            match self.shown_run() {
                Some(run) => ui.label(format!("{} tokens", run.tokens.len())),
                None => ui.label("no run yet"),
            };
            ui.separator();
            match (&self.external, &self.state.model_dir) {
                (Some(e), _) => ui.label(format!("{} (from file)", e.meta.name)),
                (None, Some(dir)) => {
                    let loaded = self
                        .current
                        .as_ref()
                        .is_some_and(|(k, _)| k.model_dir.as_ref() == Some(dir));
                    ui.label(format!(
                        "{} ({})",
                        folder_name(dir),
                        self.model_info
                            .as_ref()
                            .filter(|_| loaded)
                            .map_or("loading", |i| i.architecture.as_str())
                    ))
                }
                (None, None) => ui.label(format!(
                    "demo {}×{}×{}",
                    self.state.demo.layers, self.state.demo.heads, self.state.demo.d_model
                )),
            };
            if let Some(ms) = self.last_compute_ms {
                ui.separator();
                ui.label(format!("computed in {ms:.1} ms"));
            }
            let load = self.loading().filter(|l| !l.progress.is_cancelled());
            if let Some(load) = load {
                ui.separator();
                let name = folder_name(&load.dir);
                // The fraction is known once the weight files' headers are read.
                let bar = match load.progress.fraction() {
                    Some(f) => egui::ProgressBar::new(f)
                        .text(format!("loading {name} {:.0}%", (f * 100.0).floor())),
                    None => egui::ProgressBar::new(0.0).text(format!("loading {name}…")),
                };
                ui.add(bar.desired_width(220.0))
                    .on_hover_text(load.dir.display().to_string());
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop loading and keep the current model")
                    .clicked()
                {
                    self.cancel_load();
                }
            } else if self.busy() {
                ui.separator();
                ui.spinner();
                let slow = self
                    .requested_at
                    .is_some_and(|t| t.elapsed().as_millis() > SHOW_PROGRESS_AFTER_MS);
                if slow {
                    if let Some(w) = &self.worker {
                        let p = w.progress();
                        if p.total > 0 {
                            ui.add(
                                egui::ProgressBar::new(p.done as f32 / p.total as f32)
                                    .desired_width(120.0)
                                    .text(format!("layer {}/{}", p.done, p.total)),
                            );
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        self.cancel_run();
                    }
                }
            }
            if let Some(job) = &self.export_job {
                ui.separator();
                let done = job.done.load(Ordering::SeqCst);
                ui.add(
                    egui::ProgressBar::new(done as f32 / job.total.max(1) as f32)
                        .desired_width(120.0)
                        .text(format!("export {done}/{}", job.total)),
                );
                if ui.button("Cancel export").clicked() {
                    job.cancel.store(true, Ordering::SeqCst);
                }
            }
            if let Some(n) = &self.notice {
                ui.separator();
                ui.label(n);
            }
            let dark = ui.visuals().dark_mode;
            let mut dismiss = false;
            if let Some(e) = &self.error {
                ui.separator();
                ui.colored_label(theme::error_color(dark), format!("error: {e}"));
                dismiss = ui.small_button("dismiss").clicked();
            }
            if dismiss {
                self.error = None;
            }
        });
    }

    fn central_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            for v in ViewKind::ALL {
                ui.selectable_value(&mut self.state.view, v, v.label());
            }
        });
        let Some(run) = self.shown_run().cloned() else {
            ui.spinner();
            return;
        };
        let labels = self.shown_labels(&run);
        self.token_strip.ui(ui, &run, &labels, &mut self.state);
        ui.separator();
        match self.state.view {
            ViewKind::Heatmap => {
                let mask = self.shown_mask();
                self.heatmap.ui(ui, &run, &labels, &mask, &mut self.state);
            }
            ViewKind::Grid => {
                let (kv_groups, mask) = (self.shown_kv_groups(), self.shown_mask());
                self.grid.ui(ui, &run, &mut self.state, &kv_groups, &mask);
            }
            ViewKind::HeadView => self.head_view.ui(ui, &run, &labels, &mut self.state),
        }
    }

    fn handle_screenshot(&mut self, ctx: &egui::Context) {
        let ready = self.shown_run().is_some() && !self.busy();
        let Some(job) = self.screenshot.as_mut() else {
            return;
        };
        let taken = job.image.lock().ok().and_then(|mut g| g.take());
        if let Some(image) = taken {
            let [w, h] = image.size;
            let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
            let result = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
                .ok_or_else(|| "screenshot has a wrong size".to_owned())
                .and_then(|img| {
                    crate::render::write_png(&img, &job.path).map_err(|e| e.to_string())
                });
            if let Err(e) = result {
                eprintln!("error: {e}");
            }
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
            return;
        }
        if ready && !job.requested {
            job.frames_with_result += 1;
            // A few frames let layout, fonts and textures settle before the shot.
            if job.frames_with_result >= 6 {
                let slot = job.image.clone();
                ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(
                    egui::ScreenshotCallback::new(move |img| {
                        if let Ok(mut g) = slot.lock() {
                            *g = Some(img);
                        }
                    }),
                ));
                job.requested = true;
            }
        }
        ctx.request_repaint();
    }

    fn update_title(&mut self, ctx: &egui::Context) {
        let name = self
            .session_path
            .as_ref()
            .and_then(|p| p.file_name())
            .map_or("untitled".to_owned(), |n| n.to_string_lossy().into_owned());
        let title = format!("attnviz — {name}");
        if title != self.title {
            ctx.send_viewport_cmd(egui::ViewportCommand::Title(title.clone()));
            self.title = title;
        }
    }

    /// One step of work without drawing: results, scheduling, files, keys. eframe calls it
    /// before every frame; tests call it through the harness.
    pub fn logic_step(&mut self, ctx: &egui::Context) {
        self.receive();
        self.schedule();
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_owned())
                .collect()
        });
        for path in dropped {
            self.open_file(&path);
        }
        self.poll_background();
        self.handle_keys(ctx);
        if !self.fonts_installed {
            // Here rather than only in `run`, so that every host of the app (tests too) draws
            // the label marks.
            theme::install_fonts(ctx);
            self.fonts_installed = true;
        }
        theme::apply(ctx, self.state.theme);
        self.update_title(ctx);
        self.handle_screenshot(ctx);
        let loading = self.loading().is_some_and(|l| !l.progress.is_cancelled());
        if self.busy() || loading || self.export_job.is_some() || self.dialog.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    /// Draws the whole window.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("menu").show(ui, |ui| self.menu_ui(ui));
        egui::Panel::bottom("status").show(ui, |ui| self.status_ui(ui));
        egui::Panel::left("controls")
            .default_size(320.0)
            .resizable(true)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| self.controls_ui(ui));
            });
        egui::CentralPanel::default_margins().show(ui, |ui| self.central_ui(ui));
        self.in_app_dialog_ui(&ui.ctx().clone());
    }

    /// The image uploaded as the grid view's thumbnail of (`layer`, `head`), for pixel tests.
    pub fn grid_thumbnail(&self, layer: usize, head: usize) -> Option<&image::RgbaImage> {
        self.grid.thumbnail(layer, head)
    }

    /// The image the heatmap view draws right now (a max-pooled level for long inputs).
    pub fn heatmap_on_screen(&self) -> Option<&image::RgbaImage> {
        self.heatmap.on_screen()
    }

    /// Draws only the central area (view switcher, token strip, current view) into `ui`,
    /// without the side panels; for snapshot tests of the views.
    pub fn draw_central(&mut self, ui: &mut egui::Ui) {
        self.central_ui(ui);
    }
}

/// The last component of a model folder, for short messages.
fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The info panel's "KV heads" entry: how many, and how they are shared.
fn kv_heads_text(heads: usize, kv_heads: usize) -> String {
    match kv_heads {
        k if k == heads => format!("{k} (one per head)"),
        1 => format!("1 (shared by all {heads} heads)"),
        k if k > 0 && heads.is_multiple_of(k) => {
            format!("{k} (groups of {} query heads)", heads / k)
        }
        k => k.to_string(),
    }
}

impl eframe::App for AttnApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.logic_step(ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.draw(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.screenshot.is_none() {
            eframe::set_value(storage, STORAGE_KEY, &self.state);
        }
    }
}

/// Opens the app window, restoring the last session's state unless a screenshot is wanted.
/// With `screenshot`, saves a PNG of the window once the first map is drawn, then exits.
/// With `model`, the app opens on that checkpoint folder (`attnviz --model DIR [FILE]`).
pub fn run(
    file: Option<PathBuf>,
    screenshot: Option<PathBuf>,
    model: Option<PathBuf>,
) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("attnviz")
            .with_inner_size([1360.0, 860.0])
            .with_drag_and_drop(true),
        persist_window: screenshot.is_none(),
        ..Default::default()
    };
    eframe::run_native(
        "attnviz",
        options,
        Box::new(move |cc| {
            theme::install_fonts(&cc.egui_ctx);
            let ctx = cc.egui_ctx.clone();
            let restored = if screenshot.is_none() {
                cc.storage
                    .and_then(|s| eframe::get_value::<AppState>(s, STORAGE_KEY))
            } else {
                None
            };
            let mut app = AttnApp::new(restored.unwrap_or_default(), move || ctx.request_repaint());
            if let Some(dir) = &model {
                app.open_model_folder(dir);
            }
            if let Some(path) = &file {
                app.open_file(path);
            }
            app.screenshot = screenshot.map(|path| ScreenshotJob {
                path,
                frames_with_result: 0,
                requested: false,
                image: Arc::new(Mutex::new(None)),
            });
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}
