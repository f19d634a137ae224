//! Files and sessions: opening inputs, attention files and sessions, saving sessions, switching
//! checkpoint folders, and carrying out what a file dialog was opened for (exports included).

use super::file_dialog::{DialogBackend, DialogMode, DialogRequest};
use super::view::{DialogPurpose, ExternalRun};
use super::{AppState, AttnApp, ErrorCause, export};
use crate::io::{self, InputFile, ModelMeta};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Tensor exports larger than this are confirmed, with their size, before they are written.
pub const CONFIRM_EXPORT_BYTES: u64 = 100 << 20;

impl AttnApp {
    /// The model of the run on screen, as the run recorded it (an attention file's, or the
    /// computed run's); the selected model's before any run has arrived.
    pub(super) fn model_meta(&self) -> ModelMeta {
        if let Some(run) = self.shown_run() {
            return run.model.clone();
        }
        match &self.model_info {
            Some(info) if self.state.model_dir.is_some() => ModelMeta::from(info),
            _ => ModelMeta {
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
        // A GGUF file is a model, not an input: it replaces the model, as Open .gguf… does.
        if crate::model::gguf::is_gguf_path(path) {
            self.open_model_folder(path);
            return;
        }
        // What the file is comes from its parsed JSON's `format` field, wherever it stands.
        match io::load_input(path) {
            Ok(InputFile::Lesson) => {
                self.open_lesson(path);
                if self
                    .state
                    .teach
                    .lesson
                    .as_ref()
                    .is_some_and(|l| l.path == path)
                {
                    self.state.remember_file(path);
                }
            }
            Ok(InputFile::Input(input)) => {
                // Token strings and ids run as they are, as `attnviz export` runs them.
                self.external = None;
                self.state.set_input(input);
                self.state.remember_file(path);
                self.clear_error(ErrorCause::File);
            }
            Ok(InputFile::Attention(file)) => {
                // A file saved elsewhere may carry NaN or rows off 1: drawn, and said.
                let warnings = (!file.warnings.is_empty()).then(|| {
                    format!(
                        "warning: {} in {} (non-finite cells are drawn in a colour of their own)",
                        file.warnings.join("; "),
                        path.display()
                    )
                });
                let run = crate::pipeline::from_attention_file(*file);
                let [layers, heads, n, _] = run.maps.shape();
                self.state.layer_idx = self.state.layer_idx.min(layers - 1);
                self.state.head_idx = self.state.head_idx.min(heads - 1);
                self.state.selected_queries.retain(|&q| q < n);
                self.external = Some(ExternalRun {
                    path: path.to_owned(),
                    run: Arc::new(run),
                });
                self.state.remember_file(path);
                self.clear_error(ErrorCause::File);
                if warnings.is_some() {
                    self.notice = warnings;
                }
            }
            Ok(InputFile::Session(value)) => self.apply_session(path, value),
            Err(e) => self.report(ErrorCause::File, e.to_string()),
        }
    }

    /// Loads a session file's fields into the state, clamped to the model.
    pub(super) fn apply_session(&mut self, path: &Path, value: serde_json::Value) {
        let fields = match io::session_fields(path, value) {
            Ok(f) => f,
            Err(e) => {
                self.report(ErrorCause::File, e.to_string());
                return;
            }
        };
        match serde_json::from_value::<AppState>(fields) {
            Ok(state) if state.check_bounds().is_err() => {
                let why = state.check_bounds().err().unwrap_or_default();
                self.report(
                    ErrorCause::File,
                    format!("not a valid session ({why}) in {}", path.display()),
                );
            }
            Ok(mut state) => {
                state.clamp(None);
                // The app's own history stays the app's: a session does not replace the recent
                // files or the dialogs' folders.
                state.recent_files = std::mem::take(&mut self.state.recent_files);
                state.dialog_folders = std::mem::take(&mut self.state.dialog_folders);
                state.remember_file(path);
                self.state = state;
                self.settings_with_text = true;
                self.previous_model_dir = None;
                self.external = None;
                self.session_path = Some(path.to_owned());
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                self.notice = Some(format!("opened {name}"));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(
                ErrorCause::File,
                format!("not a valid session ({e}) in {}", path.display()),
            ),
        }
    }

    /// Writes the session file.
    pub fn save_session(&mut self, path: &Path) {
        let mut value = match serde_json::to_value(&self.state) {
            Ok(v) => v,
            Err(e) => {
                self.report(
                    ErrorCause::Other,
                    format!("cannot serialise the session: {e}"),
                );
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
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e.to_string()),
        }
    }

    /// Handles a path chosen for `purpose` (from a dialog, or directly in tests).
    pub fn complete_dialog(&mut self, purpose: DialogPurpose, path: &Path) {
        // The next dialog for this purpose starts where this one ended: the chosen file's
        // folder (a chosen folder's parent for model folders and export folders).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        if let Some(folder) = absolute.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.state.remember_folder(purpose.folder_key(), folder);
        }
        // An export writes what its file's name says, or nothing (a dialog lets the user type
        // any name: `figure.bmp` is refused, naming what this export writes).
        if let Some(accepted) = output_formats(purpose)
            && let Err(e) = io::OutputFormat::of(path, &accepted)
        {
            self.report(ErrorCause::File, e);
            return;
        }
        match purpose {
            DialogPurpose::OpenFile => self.open_file(path),
            DialogPurpose::SaveSession => self.save_session(path),
            DialogPurpose::ExportPng => {
                // What the view draws: with the difference view on, the difference.
                let Some(run) = self.displayed_run() else {
                    self.report(ErrorCause::File, "nothing to export yet");
                    return;
                };
                let ctx = self.figure_context(&run);
                match export::export_png(path, &run, &self.state, &ctx) {
                    Ok(()) => self.wrote(path),
                    Err(e) => self.report(ErrorCause::File, e),
                }
            }
            DialogPurpose::ExportTensors => {
                let Some(run) = self.shown_run().cloned() else {
                    self.report(ErrorCause::File, "nothing to export yet");
                    return;
                };
                // The run carries the mask that was applied, not the one typed: a GPT-2 run
                // says `causal`. Large files are said before they are written.
                let format = crate::pipeline::TensorFormat::from_path(path);
                let estimate = crate::pipeline::estimate_tensor_bytes(&run, format);
                let within = self.state.max_output_bytes().is_ok_and(|l| estimate <= l);
                if estimate > CONFIRM_EXPORT_BYTES && within {
                    // The run asked for is the one written, whatever arrives meanwhile.
                    self.pending_export = Some((run, path.to_owned(), estimate));
                    return;
                }
                self.write_tensors(&run, path);
            }
            DialogPurpose::ExportAllHeads => self.start_export_all(path),
            DialogPurpose::OpenModel | DialogPurpose::OpenGguf => self.open_model_folder(path),
            DialogPurpose::ExportSaliency(kind) => self.export_saliency(kind, path),
            DialogPurpose::ExportAnswer(kind) => self.export_answer(kind, path),
            DialogPurpose::ExportTeachFigure => match self.export_teach_figure(path) {
                Ok(()) => self.wrote(path),
                Err(e) => self.report(ErrorCause::File, e),
            },
        }
    }

    /// Writes the shown run's tensors to `path`, within the largest export of Run options.
    pub(super) fn write_tensors(&mut self, run: &crate::pipeline::Run, path: &Path) {
        let limit = match self.state.max_output_bytes() {
            Ok(l) => l,
            Err(e) => {
                self.report(ErrorCause::File, e);
                return;
            }
        };
        let format = crate::pipeline::TensorFormat::from_path(path);
        match crate::pipeline::write_tensors(run, path, format, limit) {
            Ok(()) => self.wrote(path),
            Err(crate::pipeline::PipelineError::OutputTooLarge {
                estimate,
                at_least,
                limit,
                file,
            }) => self.report(
                ErrorCause::File,
                format!(
                    "the export would take {}, more than the {} allowed (Largest export \
                     in the File menu); nothing was written to {}",
                    crate::pipeline::output_size(estimate, at_least),
                    crate::pipeline::ByteSize(limit),
                    file.display()
                ),
            ),
            Err(e) => self.report(ErrorCause::File, e.to_string()),
        }
    }

    /// The confirmation of a large tensor export: its size, Write or Cancel.
    pub(super) fn confirm_export_ui(&mut self, ctx: &egui::Context) {
        let Some((run, path, estimate)) = self.pending_export.clone() else {
            return;
        };
        let mut answer = None;
        egui::Modal::new(egui::Id::unique("confirm-export")).show(ctx, |ui| {
            ui.label(format!(
                "The export will take about {}: {}",
                crate::pipeline::ByteSize(estimate),
                path.display()
            ));
            ui.horizontal(|ui| {
                if ui.button("Write").clicked() {
                    answer = Some(true);
                }
                if ui.button("Cancel").clicked() {
                    answer = Some(false);
                }
            });
        });
        match answer {
            Some(true) => {
                self.pending_export = None;
                self.write_tensors(&run, &path);
            }
            Some(false) => self.pending_export = None,
            None => {}
        }
    }

    /// Switches to a checkpoint folder (or GGUF file); it loads on the worker, and a folder still loading is
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
    pub(super) fn dialog_request(&self, purpose: DialogPurpose) -> DialogRequest {
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
                    extensions: ["txt", "json", "npy", "npz", "safetensors", "gguf"]
                        .map(str::to_owned)
                        .to_vec(),
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
            DialogPurpose::OpenGguf => DialogRequest {
                title: "Open a GGUF model file".to_owned(),
                mode: DialogMode::Open {
                    filter_name: "GGUF model".to_owned(),
                    extensions: vec!["gguf".to_owned()],
                },
                start_dir: None,
            },
            DialogPurpose::ExportSaliency(kind) => save(
                "Export the saliency view",
                super::saliency::export::default_name(kind, self.state.saliency.method),
            ),
            DialogPurpose::ExportTeachFigure => save(
                "Export the teaching figure (.png or .svg)",
                crate::app::teach::export::default_name(&self.state),
            ),
            DialogPurpose::ExportAnswer(kind) => save(
                "Export the Answer view",
                super::answer::export::default_name(self.state.answer.tab, kind),
            ),
        };
        // Start in the folder last used for this purpose, else next to the session file in
        // use, if any.
        let remembered = self.state.dialog_folders.get(purpose.folder_key());
        let next_to_session = self.session_path.as_deref().and_then(Path::parent);
        request.start_dir = remembered
            .map(PathBuf::as_path)
            .into_iter()
            .chain(next_to_session)
            .find(|p| p.is_dir())
            .map(Path::to_path_buf);
        request
    }

    /// Says that `path` was written; an earlier file error no longer applies.
    fn wrote(&mut self, path: &Path) {
        self.notice = Some(format!("wrote {}", path.display()));
        self.clear_error(ErrorCause::File);
    }
}

/// The formats an export for `purpose` writes (from its file's extension); `None` for dialogs
/// that open, save sessions (any name) or choose folders.
fn output_formats(purpose: DialogPurpose) -> Option<Vec<io::OutputFormat>> {
    use io::OutputFormat::{Csv, Json, Npy, Png, Svg};
    Some(match purpose {
        DialogPurpose::ExportPng | DialogPurpose::ExportTeachFigure => vec![Png, Svg],
        DialogPurpose::ExportTensors => vec![Json, Npy],
        // The one format the saliency export kind writes.
        DialogPurpose::ExportSaliency(kind) => [Json, Csv, Png, Svg]
            .into_iter()
            .filter(|f| f.extension() == kind.extension())
            .collect(),
        DialogPurpose::ExportAnswer(kind) => [Json, Png, Svg]
            .into_iter()
            .filter(|f| f.extension() == kind.extension())
            .collect(),
        DialogPurpose::OpenFile
        | DialogPurpose::SaveSession
        | DialogPurpose::OpenModel
        | DialogPurpose::OpenGguf
        | DialogPurpose::ExportAllHeads => return None,
    })
}
