//! The status bar: tokens, model, run time, load and run progress, export progress, the notice
//! and the error.

use crate::app::theme;
use crate::app::view::{Request, View, ViewCx, folder_name};

/// The status bar.
#[derive(Default)]
pub struct Status;

impl View for Status {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.horizontal(|ui| {
            // While a run is on its way the shown run's count and time are stale: say so.
            let computing = cx.jobs.busy && cx.jobs.loading.is_none();
            match (&cx.run, computing) {
                (_, true) if cx.jobs.progress.tokens > 0 => {
                    ui.label(format!("computing … ({} tokens)", cx.jobs.progress.tokens))
                }
                (_, true) => ui.label("computing …"),
                (Some(run), false) => ui.label(format!("{} tokens", run.tokens.len())),
                (None, false) => ui.label("no run yet"),
            };
            ui.separator();
            match (cx.external, &cx.state.model_dir) {
                (Some(e), _) => ui.label(format!("{} (from file)", e.run.model.name)),
                (None, Some(dir)) => {
                    let arch = match cx.model_info {
                        Some(i) if cx.model_loaded() => i.architecture.as_str(),
                        _ if cx.jobs.loading.is_some() => "loading",
                        _ => "not loaded",
                    };
                    ui.label(format!("{} ({arch})", cx.model_name(dir)))
                }
                (None, None) => ui.label(format!(
                    "demo {}×{}×{}",
                    cx.state.demo.layers, cx.state.demo.heads, cx.state.demo.d_model
                )),
            };
            if let Some(note) = cx.run_note.as_ref().filter(|_| !cx.jobs.busy) {
                ui.separator();
                ui.label(note);
            }
            if let Some(load) = cx.jobs.loading.clone() {
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
                    cx.request(Request::CancelLoad);
                }
            } else if cx.jobs.busy {
                ui.separator();
                ui.spinner();
                if cx.jobs.slow {
                    let p = cx.jobs.progress;
                    if p.total > 0 {
                        ui.add(
                            egui::ProgressBar::new(p.done as f32 / p.total as f32)
                                .desired_width(120.0)
                                .text(format!("layer {}/{}", p.done, p.total)),
                        );
                    }
                    if ui.button("Cancel").clicked() {
                        cx.request(Request::CancelRun);
                    }
                }
            }
            if let Some((done, total)) = cx.jobs.export {
                ui.separator();
                ui.add(
                    egui::ProgressBar::new(done as f32 / total.max(1) as f32)
                        .desired_width(120.0)
                        .text(format!("export {done}/{total}")),
                );
                if ui.button("Cancel export").clicked() {
                    cx.request(Request::CancelExport);
                }
            }
            if let Some(n) = cx.notice {
                ui.separator();
                ui.label(n);
            }
            if let Some(e) = cx.error {
                ui.separator();
                let dark = ui.visuals().dark_mode;
                ui.colored_label(theme::error_color(dark), format!("error: {e}"));
                if ui.small_button("dismiss").clicked() {
                    cx.request(Request::DismissError);
                }
            }
        });
    }
}
