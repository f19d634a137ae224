//! The eframe app. [`AttnApp`] wires the panels, the worker and the persisted state together;
//! the maths lives in `engine`/`model`/`analysis`, the pixels in `render`, the files in `io`.
//!
//! Here: the app's fields, what is shown, the keyboard, and one frame (`logic_step`, `draw`).
//! Files and sessions are in `files.rs`, the background jobs (worker runs, the export thread,
//! file dialogs, the screenshot) in `jobs.rs`, and each panel in `panels/` as a [`view::View`]
//! that draws with a [`view::ViewCx`] and hands its [`view::Request`]s back to the app.

pub mod analyze;
pub mod answer;
mod chips;
pub mod export;
pub mod file_dialog;
mod files;
mod grid;
mod head_view;
mod heatmap;
mod help;
pub mod job;
mod jobs;
mod panels;
pub mod saliency;
pub mod shortcuts;
mod side;
pub mod state;
pub mod teach;
mod texture;
mod theme;
mod token_strip;
mod undo;
pub mod view;
pub mod worker;

use crate::pipeline::Run;
use crate::tokenize;
use anyhow::anyhow;
use file_dialog::{DialogBackend, DialogRequest, InAppDialog, SystemOutcome};
use job::JobKey;
use panels::central::Central;
use panels::controls::Controls;
use panels::menu::Menu;
use panels::status::Status;
pub use state::{AppState, HeadMode, QueryCombine, SAMPLE_TEXT, Theme, ViewKind};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Weak};
use std::time::Instant;
pub use view::{DialogPurpose, ExternalRun};
use view::{Request, RunFailure, View, ViewCx};
use worker::Worker;

/// Key of the persisted state in eframe's storage.
const STORAGE_KEY: &str = "attnviz_state";

/// What an error on screen came from, and so what takes it away (besides "dismiss").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrorCause {
    /// Opening, saving or exporting a file: gone when a file action succeeds.
    File,
    /// Settings that cannot run (a bad mask spec, impossible demo settings): gone once the
    /// settings can run again.
    Settings,
    /// The requested run failed or was stopped: gone when a run succeeds.
    Run,
    /// A model folder failed to load (the previous model came back): gone when another model
    /// runs.
    Model,
    /// Anything else: only "dismiss" takes it away.
    Other,
}

/// The panels of the window.
#[derive(Default)]
struct Panels {
    menu: Menu,
    controls: Controls,
    status: Status,
    central: Central,
}

/// The app.
pub struct AttnApp {
    /// The user's settings (persisted).
    pub state: AppState,
    worker: Option<Worker>,
    requested: Option<(u64, JobKey)>,
    requested_at: Option<Instant>,
    /// The computed run on screen, with the settings that made it.
    pub current: Option<(JobKey, Arc<Run>)>,
    /// Attention opened from a file; shown instead of the computed run while set.
    pub external: Option<ExternalRun>,
    /// Finished runs (each carries the mask it applied).
    cache: Vec<(JobKey, Arc<Run>)>,
    /// Measured effects of mistakes (the mistakes view), by the job that measured them.
    effects: Vec<(JobKey, Arc<crate::analysis::teach::MistakeEffect>)>,
    /// The sampling step's next-token choices, by the job that computed them.
    next_choices: Vec<(JobKey, teach::next::NextOutcome)>,
    /// The error on screen. It stays until the user dismisses it or changes what caused it
    /// (see [`ErrorCause`]); set only through [`AttnApp::report`].
    pub error: Option<String>,
    /// What the error on screen came from.
    error_cause: ErrorCause,
    /// Why the requested run failed or stopped; nothing more arrives for it.
    run_failed: Option<RunFailure>,
    /// A short confirmation (export done, session saved).
    pub notice: Option<String>,
    /// How the run on screen was obtained: its forward time, or `None` when it came from the
    /// cache.
    shown_compute_ms: Option<Option<f64>>,
    /// The architecture of the model behind the current run.
    pub model_info: Option<crate::model::ModelInfo>,
    /// The checkpoint folder of the last run that arrived (`None`: the demo).
    model_info_dir: Option<PathBuf>,
    /// Labels of the shown run's tokens, with the run they were made for.
    labels: Option<(Weak<Run>, Arc<Vec<String>>)>,
    /// The model folder to go back to if a newly opened one fails to load or is cancelled.
    previous_model_dir: Option<Option<PathBuf>>,
    /// The user's own state from before the open lesson: Close lesson brings it back, and it
    /// is what is saved on exit while a lesson is open.
    before_lesson: Option<Box<AppState>>,
    /// The session file in use, if any.
    pub session_path: Option<PathBuf>,
    /// The panels; taken out while they draw.
    panels: Panels,
    /// Shows the system's file dialogs ([`file_dialog::SystemDialogs`] unless replaced).
    dialogs: Arc<dyn DialogBackend>,
    /// A system dialog open on its thread, with what it was opened for.
    dialog: Option<(DialogPurpose, DialogRequest, Receiver<SystemOutcome>)>,
    /// The in-app dialog, when the system one is unavailable.
    in_app_dialog: Option<(DialogPurpose, InAppDialog)>,
    /// Set once a system dialog turned out to be unavailable: later requests go straight to
    /// the in-app dialog.
    system_dialogs_unavailable: bool,
    export_job: Option<jobs::ExportJob>,
    /// Set when a session or lesson brought its own text and settings: the next run's new
    /// tokens do not clear the positions those settings name.
    settings_with_text: bool,
    /// A large tensor export waiting for confirmation: the run, its path and estimated size.
    pending_export: Option<(Arc<Run>, PathBuf, u64)>,
    screenshot: Option<jobs::ScreenshotJob>,
    title: String,
    /// Whether the label fonts were added to the context (once, on the first logic step).
    fonts_installed: bool,
    /// The difference view's run (ablated minus unablated), with the two runs it was made
    /// from.
    difference: Option<(Weak<Run>, Weak<Run>, Arc<Run>)>,
    /// Settings edits that can be undone (the settings before each edit, oldest first) and
    /// redone.
    undo: undo::History<undo::Undoable>,
    /// Whether the Help window (keyboard shortcuts, About) is open.
    pub help_open: bool,
    /// File → Quit was chosen: the window closes on the next logic step.
    pub quit_requested: bool,
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
            effects: Vec::new(),
            next_choices: Vec::new(),
            error,
            error_cause: ErrorCause::Other,
            run_failed: None,
            notice: None,
            shown_compute_ms: None,
            model_info: None,
            model_info_dir: None,
            labels: None,
            previous_model_dir: None,
            before_lesson: None,
            session_path: None,
            panels: Panels::default(),
            dialogs: Arc::new(file_dialog::SystemDialogs),
            dialog: None,
            in_app_dialog: None,
            system_dialogs_unavailable: false,
            export_job: None,
            pending_export: None,
            settings_with_text: false,
            screenshot: None,
            title: String::new(),
            fonts_installed: false,
            difference: None,
            undo: undo::History::default(),
            help_open: false,
            quit_requested: false,
        }
    }

    /// The run the views show: an opened attention file, else the computed run.
    pub fn shown_run(&self) -> Option<&Arc<Run>> {
        match &self.external {
            Some(e) => Some(&e.run),
            None => self.current.as_ref().map(|(_, r)| r),
        }
    }

    /// The run without ablations that the computed ablated run on screen is compared with
    /// (and resumed from), when the cache holds it.
    pub fn baseline_run(&self) -> Option<Arc<Run>> {
        if self.external.is_some() {
            return None;
        }
        let (key, _) = self.current.as_ref()?;
        if key.opts.ablations.is_empty() {
            return None;
        }
        let want = key.without_ablations();
        self.cache
            .iter()
            .find(|(k, _)| *k == want)
            .map(|(_, run)| run.clone())
    }

    /// The run the map views draw and export: in the Heatmap and the Grid with the difference
    /// view on, the ablated run's attention minus the unablated run's (made once per pair);
    /// else [`Self::shown_run`].
    pub fn displayed_run(&mut self) -> Option<Arc<Run>> {
        let run = self.shown_run()?.clone();
        // The rollout map multiplies attention maps, never their differences.
        let rollout = self.state.view == ViewKind::Heatmap && self.state.analyze.rollout.on;
        let wanted = self.state.show_difference
            && matches!(self.state.view, ViewKind::Heatmap | ViewKind::Grid)
            && !rollout
            && !run.ablations.is_empty();
        let Some(base) = self.baseline_run().filter(|_| wanted) else {
            return Some(run);
        };
        let same = |w: &Weak<Run>, a: &Arc<Run>| std::ptr::eq(w.as_ptr(), Arc::as_ptr(a));
        if let Some((a, b, d)) = &self.difference
            && same(a, &run)
            && same(b, &base)
        {
            return Some(d.clone());
        }
        match run.ablation_difference(&base) {
            Ok(d) => {
                let d = Arc::new(d);
                self.difference = Some((Arc::downgrade(&run), Arc::downgrade(&base), d.clone()));
                Some(d)
            }
            Err(_) => Some(run),
        }
    }

    /// Undoes the last settings edit (a no-op without one).
    pub fn undo(&mut self) {
        if let Some(before) = self.undo.undo(&undo::Undoable::of(&self.state)) {
            before.apply(&mut self.state);
        }
    }

    /// Redoes the last undone settings edit.
    pub fn redo(&mut self) {
        if let Some(after) = self.undo.redo(&undo::Undoable::of(&self.state)) {
            after.apply(&mut self.state);
        }
    }

    /// True while a requested run has not arrived yet.
    pub fn busy(&self) -> bool {
        self.external.is_none()
            && self
                .requested
                .as_ref()
                .is_some_and(|(_, k)| self.current.as_ref().is_none_or(|(c, _)| c != k))
            && self.run_failed.is_none()
    }

    /// What an exported figure of `run` says besides its maps (labels, model, applied mask,
    /// text, KV groups): the same as `attnviz render` gives for the same run.
    pub fn figure_context(&self, run: &Run) -> crate::render::FigureContext {
        crate::render::FigureContext::from_run(run)
    }

    /// The labels of `run`'s tokens under its model's style, made once per run.
    fn shown_labels(&mut self, run: &Arc<Run>) -> Arc<Vec<String>> {
        if let Some((r, labels)) = &self.labels
            && std::ptr::eq(r.as_ptr(), Arc::as_ptr(run))
        {
            return labels.clone();
        }
        let labels = Arc::new(tokenize::display_labels(&run.tokens, &run.vocab_style));
        self.labels = Some((Arc::downgrade(run), labels.clone()));
        labels
    }

    fn handle_keys(&mut self, ctx: &egui::Context) {
        // Arrow keys wait until the model's size is known.
        let typing = ctx.egui_wants_keyboard_input()
            || self.layers_heads().is_none()
            || self.in_app_dialog.is_some();
        let (layers, heads) = self.layers_heads().unwrap_or((1, 1));
        let presenting = self.state.teach.presenter;
        let lesson = self.state.teach.lesson.is_some();
        // Open, save, export and quit work while typing (their keys type nothing). Read before
        // `input_mut`: the context's lock is held inside it.
        let text_focus = ctx.egui_wants_keyboard_input();
        let actions = ctx.input_mut(|i| {
            shortcuts::read(i, text_focus, presenting, lesson)
                .into_iter()
                .filter(|a| {
                    !typing
                        || matches!(
                            a,
                            shortcuts::Action::Open
                                | shortcuts::Action::Save
                                | shortcuts::Action::Export
                                | shortcuts::Action::Quit
                                | shortcuts::Action::Help
                                | shortcuts::Action::Presenter
                        )
                })
                .collect::<Vec<_>>()
        });
        for action in actions {
            use shortcuts::Action;
            let s = &mut self.state;
            match action {
                Action::Open => self.open_dialog(DialogPurpose::OpenFile),
                Action::Save => match self.session_path.clone() {
                    Some(p) => self.save_session(&p),
                    None => self.open_dialog(DialogPurpose::SaveSession),
                },
                Action::Export => {
                    let purpose = match s.view {
                        ViewKind::Saliency => {
                            DialogPurpose::ExportSaliency(saliency::SaliencyExport::Png)
                        }
                        ViewKind::Answer => DialogPurpose::ExportAnswer(answer::AnswerExport::Png),
                        _ => DialogPurpose::ExportPng,
                    };
                    self.open_dialog(purpose);
                }
                Action::Undo => self.undo(),
                Action::Redo => self.redo(),
                Action::Quit => ctx.send_viewport_cmd(egui::ViewportCommand::Close),
                Action::Help => self.help_open = !self.help_open,
                Action::Presenter => teach::presenter::toggle(s),
                Action::LeavePresenter => teach::presenter::toggle(s),
                Action::StepForward => self.teach_step(teach::presenter::Step::Forward),
                Action::StepBack => self.teach_step(teach::presenter::Step::Back),
                Action::NextHead => {
                    s.head_idx = (s.head_idx + 1).min(heads - 1);
                    s.head_mode = HeadMode::Single;
                }
                Action::PreviousHead => {
                    s.head_idx = s.head_idx.saturating_sub(1);
                    s.head_mode = HeadMode::Single;
                }
                Action::NextLayer => {
                    s.layer_idx = (s.layer_idx + 1).min(layers - 1);
                    s.all_layers = false;
                }
                Action::PreviousLayer => {
                    s.layer_idx = s.layer_idx.saturating_sub(1);
                    s.all_layers = false;
                }
            }
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
                // The folder's model has loaded (its run may still have failed, e.g. too long).
                let loaded = self.model_info_dir == self.state.model_dir;
                self.model_info
                    .as_ref()
                    .filter(|_| loaded)
                    .map(|i| (i.layers.max(1), i.heads.max(1)))
            }
            None => Some((self.state.demo.layers, self.state.demo.heads)),
        }
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
        // Any change of the settings since they last settled is one undoable edit: looked at
        // only between drags and outside text fields, so a drag or a typed mask is one edit.
        let settled = !ctx.input(|i| i.pointer.any_down()) && !ctx.egui_wants_keyboard_input();
        if settled {
            self.undo.observe(&undo::Undoable::of(&self.state));
        }
        self.receive();
        self.schedule();
        self.receive_saliency();
        self.schedule_saliency();
        self.receive_answer();
        self.schedule_answer();
        self.receive_analyze();
        self.schedule_analyze(ctx);
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
        if std::mem::take(&mut self.quit_requested) {
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
        if !self.fonts_installed {
            // Here rather than only in `run`, so that every host of the app (tests too) draws
            // the label marks.
            theme::install_fonts(ctx);
            self.fonts_installed = true;
        }
        theme::apply(ctx, self.state.theme);
        teach::presenter::apply_style(ctx, self.state.teach.presenter);
        self.update_title(ctx);
        self.handle_screenshot(ctx);
        let loading = self.loading().is_some_and(|l| !l.progress.is_cancelled());
        if self.busy() || loading || self.export_job.is_some() || self.dialog.is_some() {
            ctx.request_repaint_after(std::time::Duration::from_millis(50));
        }
    }

    /// What the panels see this frame.
    fn view_cx(&mut self) -> ViewCx<'_> {
        let run = self.displayed_run();
        let labels = match &run {
            Some(run) => self.shown_labels(run),
            None => Arc::new(Vec::new()),
        };
        let layers_heads = self.layers_heads();
        let jobs = self.jobs_status();
        let run_note = self.run_note();
        let info_is_current = self.model_info_dir == self.state.model_dir;
        let mistake_effect = self.mistake_effect();
        let next_choices = self.shown_next_choices();
        ViewCx {
            state: &mut self.state,
            run,
            labels,
            external: self.external.as_ref(),
            current: self.current.as_ref().map(|(k, _)| k),
            model_info: self.model_info.as_ref().filter(|_| info_is_current),
            layers_heads,
            error: self.error.as_deref(),
            notice: self.notice.as_deref(),
            run_note,
            run_failed: self.run_failed.as_ref().filter(|_| self.external.is_none()),
            jobs,
            mistake_effect,
            next_choices,
            undo: (self.undo.can_undo(), self.undo.can_redo()),
            before_lesson: self.before_lesson.as_deref(),
            requests: Vec::new(),
        }
    }

    /// How the run on screen was obtained, for the status bar.
    fn run_note(&self) -> Option<String> {
        if self.external.is_some() {
            return None;
        }
        self.shown_compute_ms.map(|ms| match ms {
            Some(ms) => format!("computed in {ms:.1} ms"),
            None => "cached".to_owned(),
        })
    }

    /// The app's one way to show an error: `message` stays on screen until the user dismisses
    /// it or `cause` changes (see [`ErrorCause`]).
    fn report(&mut self, cause: ErrorCause, message: impl Into<String>) {
        self.error = Some(message.into());
        self.error_cause = cause;
    }

    /// Takes the error off the screen if it came from `cause`, which has just changed.
    fn clear_error(&mut self, cause: ErrorCause) {
        if self.error.is_some() && self.error_cause == cause {
            self.error = None;
        }
    }

    /// Carries out what the panels asked for.
    fn apply_requests(&mut self, requests: Vec<Request>) {
        for request in requests {
            match request {
                Request::Dialog(purpose) => self.open_dialog(purpose),
                Request::OpenModel(dir) => self.open_model_folder(&dir),
                Request::UseDemo => {
                    self.state.model_dir = None;
                    self.previous_model_dir = None;
                    self.external = None;
                }
                Request::LeaveFile => self.external = None,
                Request::CancelLoad => self.cancel_load(),
                Request::CancelRun => self.cancel_run(),
                Request::Compute => self.compute_again(),
                Request::CancelExport => self.cancel_export(),
                Request::DismissError => self.error = None,
                Request::Truncate => self.state.truncate = true,
                Request::CancelSaliency => self.cancel_saliency(),
                Request::OpenFile(path) => self.open_file(&path),
                Request::ToggleHelp => self.help_open = !self.help_open,
                Request::Quit => self.quit_requested = true,
                Request::Undo => self.undo(),
                Request::Redo => self.redo(),
                Request::ComputeSaliency => self.resume_saliency(),
                Request::CancelAnswer => self.cancel_answer(),
                Request::ComputeAnswer => self.compute_answer(),
                Request::CancelAnalyze => self.cancel_analyze(),
                Request::ComputeAnalyze => self.compute_analyze(),
                Request::InductionProbe => self.ask_induction_probe(),
                Request::OpenLesson(path) => self.open_lesson(&path),
                Request::CloseLesson => self.close_lesson(),
                Request::LessonOnOwnInput => self.run_lesson_on_own_input(),
            }
        }
    }

    /// Draws the whole window.
    pub fn draw(&mut self, ui: &mut egui::Ui) {
        let mut panels = std::mem::take(&mut self.panels);
        let mut cx = self.view_cx();
        egui::Panel::top("menu").show(ui, |ui| panels.menu.ui(ui, &mut cx));
        // Presenter mode keeps the menu and the central view only.
        if !cx.state.teach.presenter {
            egui::Panel::bottom("status").show(ui, |ui| panels.status.ui(ui, &mut cx));
            egui::Panel::left("controls")
                .default_size(320.0)
                .min_size(260.0)
                .resizable(true)
                .show(ui, |ui| {
                    egui::ScrollArea::vertical().show(ui, |ui| panels.controls.ui(ui, &mut cx));
                });
        }
        egui::CentralPanel::default_margins().show(ui, |ui| panels.central.ui(ui, &mut cx));
        let requests = std::mem::take(&mut cx.requests);
        self.panels = panels;
        self.apply_requests(requests);
        self.in_app_dialog_ui(&ui.ctx().clone());
        self.confirm_export_ui(&ui.ctx().clone());
        help::window(&ui.ctx().clone(), &mut self.help_open);
    }

    /// The image uploaded as the grid view's thumbnail of (`layer`, `head`), for pixel tests.
    pub fn grid_thumbnail(&self, layer: usize, head: usize) -> Option<&image::RgbaImage> {
        self.panels.central.grid.thumbnail(layer, head)
    }

    /// The image the Analyze view's value-zeroing map draws right now.
    pub fn value_zeroing_on_screen(&self) -> Option<&image::RgbaImage> {
        self.panels.central.analyze.value_zeroing_on_screen()
    }

    /// The image the heatmap view draws right now (a max-pooled level for long inputs).
    pub fn heatmap_on_screen(&self) -> Option<&image::RgbaImage> {
        self.panels.central.heatmap.on_screen()
    }

    /// Draws only the central area (view switcher, token strip, current view) into `ui`,
    /// without the side panels; for snapshot tests of the views.
    pub fn draw_central(&mut self, ui: &mut egui::Ui) {
        let mut central = std::mem::take(&mut self.panels.central);
        let mut cx = self.view_cx();
        central.ui(ui, &mut cx);
        let requests = std::mem::take(&mut cx.requests);
        self.panels.central = central;
        self.apply_requests(requests);
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
            // The user's own work, not the lesson's text and settings.
            let state = self.state_to_keep();
            eframe::set_value(storage, STORAGE_KEY, &state);
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
            app.screenshot = screenshot.map(jobs::ScreenshotJob::new);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow!("cannot open the window: {e}"))
}
