//! What a panel sees: the [`View`] trait, the [`ViewCx`] it draws with, and the [`Request`]s it
//! hands back to the controller.
//!
//! Panels change the persisted [`AppState`] directly (a slider is a field); everything else the
//! controller owns (files, the worker, dialogs, errors) they only read here and change by
//! pushing a [`Request`], which [`super::AttnApp`] carries out after the frame is drawn.

use super::job::{JobKey, LoadStatus, NextOutcome, Progress};
use super::state::AppState;
use crate::engine::AppliedMask;
use crate::model::ModelInfo;
use crate::pipeline::Run;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What an export of the Saliency view writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaliencyExport {
    /// The labelled figure as PNG.
    Png,
    /// The labelled figure as SVG.
    Svg,
    /// The scores as CSV.
    Csv,
    /// The scores as `attnviz.attribution/v1` JSON.
    Json,
    /// The continuation matrix as PNG.
    ContinuationPng,
    /// The continuation matrix as SVG.
    ContinuationSvg,
    /// The method table (every method's score of every token) as CSV.
    TableCsv,
}

/// What an export of the Answer view writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AnswerExport {
    /// The tab's figure as PNG.
    Png,
    /// The tab's figure as SVG.
    Svg,
    /// The tab's document (`attnviz.logit_lens/v1`, …) as JSON.
    Json,
}

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
    /// Open a GGUF checkpoint file.
    OpenGguf,
    /// Export the Saliency view (figure or scores).
    ExportSaliency(SaliencyExport),
    /// Export the teaching figure on screen (a walkthrough step or a mistake comparison) as
    /// PNG or SVG.
    ExportTeachFigure,
    /// Export the Answer view's current tab (figure or document).
    ExportAnswer(AnswerExport),
}

impl DialogPurpose {
    /// Which remembered folder a dialog for this purpose starts in: opening files, sessions,
    /// model folders and exports each keep their own.
    pub fn folder_key(self) -> &'static str {
        match self {
            DialogPurpose::OpenFile => "open",
            DialogPurpose::SaveSession => "session",
            DialogPurpose::OpenModel | DialogPurpose::OpenGguf => "model",
            DialogPurpose::ExportPng
            | DialogPurpose::ExportAllHeads
            | DialogPurpose::ExportTensors
            | DialogPurpose::ExportSaliency(_)
            | DialogPurpose::ExportTeachFigure
            | DialogPurpose::ExportAnswer(_) => "export",
        }
    }
}

/// Attention opened from a file rather than computed.
pub struct ExternalRun {
    /// The file it came from.
    pub path: PathBuf,
    /// The maps and tokens, with the model the file names and the mask it records.
    pub run: Arc<Run>,
}

/// Something a panel asks the controller to do once the frame is drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Ask for a path (system or in-app dialog).
    Dialog(DialogPurpose),
    /// Switch to a checkpoint folder.
    OpenModel(PathBuf),
    /// Switch to the built-in demo model.
    UseDemo,
    /// Compute the current settings again after a cancelled run.
    Compute,
    /// Leave the opened attention file and show the computed run again.
    LeaveFile,
    /// Stop the checkpoint load in progress.
    CancelLoad,
    /// Stop the running forward pass.
    CancelRun,
    /// Stop the export of all heads.
    CancelExport,
    /// Hide the error.
    DismissError,
    /// Cut inputs at the model's token limit from now on.
    Truncate,
    /// Stop the Saliency view's work.
    CancelSaliency,
    /// Open a file (from the recent files).
    OpenFile(PathBuf),
    /// Show or hide the Help window.
    ToggleHelp,
    /// Close the window.
    Quit,
    /// Undo the last settings edit.
    Undo,
    /// Redo the last undone settings edit.
    Redo,
    /// Compute the Saliency view's stopped work after all.
    ComputeSaliency,
    /// Stop the Answer view's work.
    CancelAnswer,
    /// Compute the Answer view's current tab (patching, or stopped work).
    ComputeAnswer,
    /// Stop what the Analyze view or the rollout map waits for.
    CancelAnalyze,
    /// Compute what the Analyze view or the rollout map stopped.
    ComputeAnalyze,
    /// Run the induction probe (the dashboard's `induction` metric).
    InductionProbe,
    /// Open a lesson file (the Lessons menu).
    OpenLesson(PathBuf),
    /// Close the open lesson and bring back the text, model and settings from before it.
    CloseLesson,
    /// Run the open lesson's script on the model and text from before it.
    LessonOnOwnInput,
}

/// Why the requested run produced nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFailure {
    /// The message, as in the status bar.
    pub message: String,
    /// The model's token limit, when the input was longer.
    pub limit: Option<usize>,
    /// The user cancelled the run: not an error; the previous map stays on screen, dimmed and
    /// marked stale, with a Compute button.
    pub cancelled: bool,
}

/// The state of the background work, for the status bar.
#[derive(Clone, Debug, Default)]
pub struct JobsStatus {
    /// A requested run has not arrived yet.
    pub busy: bool,
    /// The run has taken long enough to show progress and a cancel button.
    pub slow: bool,
    /// Layers done in the running forward pass.
    pub progress: Progress,
    /// The checkpoint load in progress (not cancelled).
    pub loading: Option<LoadStatus>,
    /// PNGs written and total, while all heads export.
    pub export: Option<(usize, usize)>,
}

/// What a panel may read and change.
pub struct ViewCx<'a> {
    /// The user's settings.
    pub state: &'a mut AppState,
    /// The user's own state from before the open lesson, if one is open.
    pub before_lesson: Option<&'a AppState>,
    /// The run on screen (an opened attention file's, else the computed one).
    pub run: Option<Arc<Run>>,
    /// The labels of `run`'s tokens.
    pub labels: Arc<Vec<String>>,
    /// The attention file on screen, if any.
    pub external: Option<&'a ExternalRun>,
    /// The computed run on screen with the settings that made it.
    pub current: Option<&'a JobKey>,
    /// The architecture of the checkpoint on screen, once it has run.
    pub model_info: Option<&'a ModelInfo>,
    /// Layers and heads of what is shown; `None` while a checkpoint's size is unknown.
    pub layers_heads: Option<(usize, usize)>,
    /// The error on screen.
    pub error: Option<&'a str>,
    /// A short confirmation.
    pub notice: Option<&'a str>,
    /// How the run on screen was obtained ("computed in X ms" or "cached").
    pub run_note: Option<String>,
    /// Why the requested run failed, shown where the map would be.
    pub run_failed: Option<&'a RunFailure>,
    /// The background work.
    pub jobs: JobsStatus,
    /// The measured effect of the mistake the mistakes view shows, once computed.
    pub mistake_effect: Option<Arc<crate::analysis::teach::MistakeEffect>>,
    /// The sampling step's next-token choices for the run on screen, once computed.
    pub next_choices: Option<NextOutcome>,
    /// Whether a settings edit can be undone and redone.
    pub undo: (bool, bool),
    /// What the panels asked for this frame.
    pub requests: Vec<Request>,
}

impl ViewCx<'_> {
    /// The mask the run on screen applied, as the run decided it.
    pub fn applied_mask(&self) -> Option<&AppliedMask> {
        self.run.as_ref().map(|r| &r.mask)
    }

    /// Per key/value head, the query heads sharing it in the run on screen (empty when none).
    pub fn kv_groups(&self) -> &[Vec<usize>] {
        self.run.as_ref().map_or(&[], |r| &r.kv_groups)
    }

    /// Asks the controller to do `request` after this frame.
    pub fn request(&mut self, request: Request) {
        if !self.requests.contains(&request) {
            self.requests.push(request);
        }
    }

    /// The one name of the checkpoint in `dir` (the picker, the recent list and the status bar
    /// say the same as the figure titles): the loaded model's own, else the folder's as
    /// `model::naming` decides it without loading (read once per folder).
    pub fn model_name(&self, dir: &Path) -> String {
        if let Some(info) = self.model_info
            && self.model_loaded()
            && self.state.model_dir.as_deref() == Some(dir)
            && !info.name.is_empty()
        {
            return info.name.clone();
        }
        folder_model_name(dir)
    }

    /// The checkpoint on screen has run (its info is known), rather than still loading.
    pub fn model_loaded(&self) -> bool {
        // `model_info` is only set while it describes the selected folder's loaded model.
        self.state.model_dir.is_some() && self.model_info.is_some()
    }
}

/// A panel or view: draws into `ui`, reading and changing what `cx` offers.
pub trait View {
    /// Draws the panel for one frame.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>);
}

/// [`crate::model::naming::folder_checkpoint_name`] of `dir`, read once per folder and kept
/// (a few recent folders, each a small config.json read).
fn folder_model_name(dir: &Path) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashMap<std::path::PathBuf, String>>> = OnceLock::new();
    let names = NAMES.get_or_init(Mutex::default);
    let mut names = names
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if names.len() > 64 {
        names.clear();
    }
    names
        .entry(dir.to_owned())
        .or_insert_with(|| crate::model::naming::folder_checkpoint_name(dir).name)
        .clone()
}

/// The last component of a model folder, for short messages.
pub fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
