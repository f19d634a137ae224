//! Lessons (`attnviz.lesson/v1`, read by `io::lesson`): the Lessons menu listing
//! `sample_inputs/lessons/*.json`, opening a lesson (its text and settings become the app's,
//! from the menu, a dialog, a dropped file or `attnviz LESSON.json`), the lesson bar above the
//! views with the current step's words, and stepping through the script (buttons, or space and
//! the arrow keys).

use super::presenter::Step;
use super::settings::{OpenLesson, TeachTab};
use crate::app::state::ViewKind;
use crate::app::view::{DialogPurpose, Request, ViewCx};
use crate::app::{AppState, AttnApp, ErrorCause};
use crate::engine::{DimSubset, ScoreScale};
use crate::io::TokenInput;
use crate::render::teach::lesson::{self, Lesson, LessonView};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// The folder of the bundled lessons, relative to a project or install folder.
const LESSONS_DIR: &str = "sample_inputs/lessons";

/// The view and teaching tab a lesson view names.
pub fn view_of(view: LessonView) -> (ViewKind, Option<TeachTab>) {
    match view {
        LessonView::Heatmap => (ViewKind::Heatmap, None),
        LessonView::Grid => (ViewKind::Grid, None),
        LessonView::HeadView => (ViewKind::HeadView, None),
        LessonView::Walkthrough => (ViewKind::Teach, Some(TeachTab::Walkthrough)),
        LessonView::Dimensions => (ViewKind::Teach, Some(TeachTab::Neurons)),
        LessonView::MultiHead => (ViewKind::Teach, Some(TeachTab::MultiHead)),
        LessonView::Cost => (ViewKind::Teach, Some(TeachTab::Cost)),
        LessonView::Mistakes => (ViewKind::Teach, Some(TeachTab::Mistakes)),
    }
}

/// Shows `view` in `state`.
fn show_view(state: &mut AppState, view: LessonView) {
    let (kind, tab) = view_of(view);
    state.view = kind;
    if let Some(tab) = tab {
        state.teach.tab = tab;
    }
}

/// Goes to step `step_idx` (clamped) of the open lesson: the lesson's settings, then every
/// step up to this one (a step keeps what it leaves out from the steps before it). Nothing
/// happens without an open lesson.
pub fn go_to(state: &mut AppState, step_idx: usize) {
    let Some(open) = state.teach.lesson.clone() else {
        return;
    };
    let lesson = &open.lesson;
    let last = lesson.steps.len().saturating_sub(1);
    let step_idx = step_idx.min(last);
    let s = &lesson.settings;
    let (mut view, mut layer, mut head, mut query) = (s.view, s.layer, s.head, s.query);
    let mut mask = s.mask.clone();
    let (mut walk, mut mistake) = (None, None);
    for step in lesson.steps.iter().take(step_idx + 1) {
        view = step.view.unwrap_or(view);
        layer = step.layer.unwrap_or(layer);
        head = step.head.unwrap_or(head);
        query = step.query.unwrap_or(query);
        mask = step.mask.clone().unwrap_or(mask);
        walk = step.step.or(walk);
        mistake = step.mistake.or(mistake);
    }
    show_view(state, view);
    state.layer_idx = layer;
    state.head_idx = head;
    state.all_layers = false;
    state.head_mode = crate::app::HeadMode::Single;
    state.selected_queries = vec![query];
    state.mask_text = mask;
    let walk_idx = walk.and_then(|w| {
        crate::analysis::explain::WalkStep::ALL
            .iter()
            .position(|&x| x == w)
    });
    state.teach.step = walk_idx.unwrap_or(0);
    state.teach.mistake = mistake.or(state.teach.mistake);
    state.teach.lesson_step = step_idx;
    // Indices a checkpoint lacks are clamped once its size is known, as for any setting.
    state.clamp(None);
}

/// Applies a lesson's text and settings to `state` and opens it at its first step. The model
/// is set by the caller (a checkpoint needs the app's model switch).
fn apply_lesson(state: &mut AppState, open: OpenLesson) {
    let s = &open.lesson.settings;
    state.set_input(TokenInput::Text(open.lesson.text.clone()));
    state.demo = s.demo;
    state.tokenizer = s.tokenizer;
    state.scale = s.scale.parse::<ScoreScale>().unwrap_or_default();
    state.teach.run_mistakes = s.mistakes.clone();
    state.teach.dims = s
        .dims
        .iter()
        .filter_map(|d| d.parse::<DimSubset>().ok())
        .collect();
    if let Some(colormap) = s.colormap {
        state.colormap = colormap;
    }
    state.teach.mistake = None;
    state.teach.lesson = Some(Arc::new(open));
    go_to(state, 0);
}

/// Forgets the open lesson in `state` (its settings stay; [`AttnApp::close_lesson`] brings the
/// user's own back).
fn close(state: &mut AppState) {
    state.teach.lesson = None;
    state.teach.lesson_step = 0;
    state.teach.run_mistakes.clear();
}

impl AttnApp {
    /// Opens a lesson file: its text and settings replace the app's, and its script starts at
    /// the first step. A bad file leaves everything as it was, with an error naming the file.
    pub fn open_lesson(&mut self, path: &Path) {
        let lesson = match lesson::load_lesson(path) {
            Ok(l) => l,
            Err(e) => {
                self.report(ErrorCause::File, e.to_string());
                return;
            }
        };
        // The user's own text, model and settings, kept for Close lesson (from before the
        // first lesson when one lesson follows another).
        if self.before_lesson.is_none() {
            self.before_lesson = Some(Box::new(self.state.clone()));
        }
        self.external = None;
        match lesson.settings.model.as_str() {
            "demo" => {
                self.state.model_dir = None;
                self.previous_model_dir = None;
            }
            folder => {
                let dir = Path::new(folder);
                let dir = if dir.is_absolute() {
                    dir.to_path_buf()
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(dir)
                };
                self.open_model_folder(&dir);
            }
        }
        apply_lesson(
            &mut self.state,
            OpenLesson {
                path: path.to_owned(),
                lesson,
            },
        );
        self.settings_with_text = true;
        self.clear_error(ErrorCause::File);
    }

    /// Closes the open lesson and brings back the text, model and settings from before it
    /// (the recent lists and dialog folders stay as they are now).
    pub fn close_lesson(&mut self) {
        close(&mut self.state);
        let Some(before) = self.before_lesson.take() else {
            return;
        };
        let mut restored = *before;
        restored.recent_files = std::mem::take(&mut self.state.recent_files);
        restored.recent_models = std::mem::take(&mut self.state.recent_models);
        restored.dialog_folders = std::mem::take(&mut self.state.dialog_folders);
        let model_dir = std::mem::replace(&mut restored.model_dir, self.state.model_dir.clone());
        self.state = restored;
        match model_dir {
            Some(dir) => self.open_model_folder(&dir),
            None => {
                self.state.model_dir = None;
                self.previous_model_dir = None;
            }
        }
        self.settings_with_text = true;
    }

    /// Runs the open lesson's script on the model and text from before it, where the lesson
    /// allows it (`any_input`): the script's views and selections stay, clamped to the model.
    pub fn run_lesson_on_own_input(&mut self) {
        let Some(open) = self.state.teach.lesson.clone() else {
            return;
        };
        let Some(before) = self.before_lesson.as_deref() else {
            return;
        };
        if !open.lesson.settings.any_input {
            self.report(
                ErrorCause::Other,
                "this lesson's script relies on the demo's crafted heads: it runs on its own text",
            );
            return;
        }
        let (input, tokenizer, demo, model_dir) = (
            before.input(),
            before.tokenizer,
            before.demo,
            before.model_dir.clone(),
        );
        self.state.set_input(input);
        self.state.tokenizer = tokenizer;
        self.state.demo = demo;
        match model_dir {
            Some(dir) => self.open_model_folder(&dir),
            None => {
                self.state.model_dir = None;
                self.previous_model_dir = None;
            }
        }
        let at = self.state.teach.lesson_step;
        go_to(&mut self.state, at);
    }

    /// The state to save on exit: the user's own while a lesson is open.
    pub fn state_to_keep(&self) -> AppState {
        match &self.before_lesson {
            Some(before) => {
                let mut keep = (**before).clone();
                keep.recent_files.clone_from(&self.state.recent_files);
                keep.recent_models.clone_from(&self.state.recent_models);
                keep.dialog_folders.clone_from(&self.state.dialog_folders);
                keep
            }
            None => self.state.clone(),
        }
    }

    /// One step forward or back: through the open lesson's script, else through the teaching
    /// view on screen.
    pub(crate) fn teach_step(&mut self, step: Step) {
        if self.state.teach.lesson.is_some() {
            let at = self.state.teach.lesson_step;
            let to = match step {
                Step::Forward => at + 1,
                Step::Back => at.saturating_sub(1),
            };
            go_to(&mut self.state, to);
        } else {
            super::presenter::step_view(&mut self.state, step);
        }
    }
}

/// The bundled lessons: (file, title), sorted by file name; read once per process from the
/// first `sample_inputs/lessons` folder found (the working folder, the executable's folder and
/// its parents, then the source tree the binary was built from). `ATTNVIZ_LESSONS_DIR`
/// overrides the search.
pub fn bundled_lessons() -> &'static [(PathBuf, String)] {
    static LESSONS: OnceLock<Vec<(PathBuf, String)>> = OnceLock::new();
    LESSONS.get_or_init(|| {
        let Some(dir) = lessons_dir() else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| lesson::is_lesson_file(p))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let title = lesson::load_lesson(&p).map_or_else(
                    |_| {
                        p.file_stem()
                            .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
                    },
                    |l| l.title,
                );
                (p, title)
            })
            .collect()
    })
}

/// Where the bundled lessons are, if anywhere.
fn lessons_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ATTNVIZ_LESSONS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut candidates = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.push(cwd.join(LESSONS_DIR));
    }
    if let Ok(exe) = std::env::current_exe() {
        candidates.extend(exe.ancestors().skip(1).take(4).map(|d| d.join(LESSONS_DIR)));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join(LESSONS_DIR));
    candidates.into_iter().find(|d| d.is_dir())
}

/// The Lessons menu: every bundled lesson, opening another file, closing the open one.
pub fn menu_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    let lessons = bundled_lessons();
    if lessons.is_empty() {
        ui.label("no bundled lessons found (sample_inputs/lessons)");
    }
    for (path, title) in lessons {
        if ui
            .button(title)
            .on_hover_text(path.display().to_string())
            .clicked()
        {
            cx.request(Request::OpenLesson(path.clone()));
            ui.close();
        }
    }
    ui.separator();
    if ui.button("Open lesson file…").clicked() {
        cx.request(Request::Dialog(DialogPurpose::OpenFile));
        ui.close();
    }
    if cx.state.teach.lesson.is_some() && ui.button("Close lesson").clicked() {
        cx.request(Request::CloseLesson);
        ui.close();
    }
}

/// The bar above the views while a lesson is open: its title, the step's title and words, and
/// the buttons to step through it.
pub fn lesson_bar_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    let Some(open) = cx.state.teach.lesson.clone() else {
        return;
    };
    let lesson: &Lesson = &open.lesson;
    let at = cx
        .state
        .teach
        .lesson_step
        .min(lesson.steps.len().saturating_sub(1));
    let Some(step) = lesson.steps.get(at) else {
        return;
    };
    egui::Frame::group(ui.style()).show(ui, |ui| {
        ui.set_width(ui.available_width());
        ui.horizontal_wrapped(|ui| {
            ui.strong(&lesson.title);
            ui.label(format!(
                "· step {} of {}: {}",
                at + 1,
                lesson.steps.len(),
                step.title
            ));
            if ui
                .add_enabled(at > 0, egui::Button::new("Previous step"))
                .clicked()
            {
                go_to(cx.state, at - 1);
            }
            if ui
                .add_enabled(at + 1 < lesson.steps.len(), egui::Button::new("Next step"))
                .clicked()
            {
                go_to(cx.state, at + 1);
            }
            if ui
                .button("Close lesson")
                .on_hover_text("Back to your own text, model and settings")
                .clicked()
            {
                cx.request(Request::CloseLesson);
            }
            let own_differs = cx.before_lesson.is_some_and(|b| {
                b.input() != cx.state.input() || b.model_dir != cx.state.model_dir
            });
            if lesson.settings.any_input
                && own_differs
                && ui
                    .button("Run this lesson on my model and text")
                    .on_hover_text(
                        "Keep the lesson's steps, on the text and model you had before opening it",
                    )
                    .clicked()
            {
                cx.request(Request::LessonOnOwnInput);
            }
        });
        if at == 0 && !lesson.intro.trim().is_empty() {
            ui.label(&lesson.intro);
        }
        ui.label(&step.text);
        if !cx.state.teach.run_mistakes.is_empty() {
            let names: Vec<&str> = cx
                .state
                .teach
                .run_mistakes
                .iter()
                .map(|m| m.name())
                .collect();
            ui.colored_label(
                crate::app::theme::error_color(ui.visuals().dark_mode),
                format!(
                    "every run here makes a mistake on purpose: {}",
                    names.join(", ")
                ),
            );
        }
    });
}
