//! The menu bar: File (open, recent files, save, exports, quit), Edit (undo, redo), View (theme,
//! presenter mode), Lessons and Help.

use crate::app::saliency::SaliencyExport;
use crate::app::state::{Theme, ViewKind};
use crate::app::view::{DialogPurpose, Request, View, ViewCx};

/// The menu bar.
#[derive(Default)]
pub struct Menu;

impl View for Menu {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        let mut requests = Vec::new();
        egui::MenuBar::new().ui(ui, |ui| {
            ui.menu_button("File", |ui| {
                let has_run = cx.run.is_some();
                if ui.button("Open file…  (Ctrl+O)").clicked() {
                    cx.request(Request::Dialog(DialogPurpose::OpenFile));
                }
                if ui
                    .button("Open GGUF model…")
                    .on_hover_text("A GGUF checkpoint file (llama.cpp's format, Llama family)")
                    .clicked()
                {
                    cx.request(Request::Dialog(DialogPurpose::OpenGguf));
                }
                ui.menu_button("Recent files", |ui| {
                    if cx.state.recent_files.is_empty() {
                        ui.label("(none yet)");
                    }
                    for path in &cx.state.recent_files {
                        let name = path.file_name().map_or_else(
                            || path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        if ui
                            .button(name)
                            .on_hover_text(path.display().to_string())
                            .clicked()
                        {
                            requests.push(Request::OpenFile(path.clone()));
                        }
                    }
                });
                if ui.button("Save session…  (Ctrl+S)").clicked() {
                    cx.request(Request::Dialog(DialogPurpose::SaveSession));
                }
                ui.separator();
                let exports = [
                    ("Export PNG…  (Ctrl+E)", DialogPurpose::ExportPng),
                    ("Export all heads…", DialogPurpose::ExportAllHeads),
                    ("Export JSON/NPY…", DialogPurpose::ExportTensors),
                ];
                for (label, purpose) in exports {
                    if ui.add_enabled(has_run, egui::Button::new(label)).clicked() {
                        // In the Saliency and Answer views, the PNG is the view's figure.
                        let purpose = match (cx.state.view, purpose) {
                            (ViewKind::Saliency, DialogPurpose::ExportPng) => {
                                DialogPurpose::ExportSaliency(SaliencyExport::Png)
                            }
                            (ViewKind::Answer, DialogPurpose::ExportPng) => {
                                DialogPurpose::ExportAnswer(crate::app::answer::AnswerExport::Png)
                            }
                            _ => purpose,
                        };
                        cx.request(Request::Dialog(purpose));
                    }
                }
                // Beside the exports: the largest tensor file they write.
                ui.horizontal(|ui| {
                    let label = ui.label("Largest export");
                    ui.add(
                        egui::TextEdit::singleline(&mut cx.state.max_output)
                            .hint_text("default 1 GiB")
                            .desired_width(90.0),
                    )
                    .labelled_by(label.id)
                    .on_hover_text(
                        "The largest tensor file Export JSON/NPY writes, e.g. 4GiB (the CLI's \
                         --max-output); the size is estimated before anything is written",
                    );
                });
                ui.separator();
                if ui.button("Quit  (Ctrl+Q)").clicked() {
                    requests.push(Request::Quit);
                }
            });
            ui.menu_button("Edit", |ui| {
                let (can_undo, can_redo) = cx.undo;
                if ui
                    .add_enabled(can_undo, egui::Button::new("Undo  (Ctrl+Z)"))
                    .clicked()
                {
                    requests.push(Request::Undo);
                }
                if ui
                    .add_enabled(can_redo, egui::Button::new("Redo  (Ctrl+Shift+Z)"))
                    .clicked()
                {
                    requests.push(Request::Redo);
                }
            });
            ui.menu_button("View", |ui| {
                for (theme, label) in [(Theme::Dark, "Dark theme"), (Theme::Light, "Light theme")] {
                    if ui.radio(cx.state.theme == theme, label).clicked() {
                        cx.state.theme = theme;
                    }
                }
                ui.separator();
                let mut presenter = cx.state.teach.presenter;
                if ui
                    .checkbox(&mut presenter, "Presenter mode  (F5)")
                    .clicked()
                {
                    crate::app::teach::presenter::toggle(cx.state);
                }
            });
            ui.menu_button("Lessons", |ui| crate::app::teach::lessons::menu_ui(ui, cx));
            ui.menu_button("Help", |ui| {
                if ui.button("Keyboard shortcuts and about  (F1)").clicked() {
                    requests.push(Request::ToggleHelp);
                }
            });
        });
        for r in requests {
            cx.request(r);
        }
    }
}
