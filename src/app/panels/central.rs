//! The central area: the view switcher, the token strip and the chosen view (heatmap, grid or
//! head view).

use crate::app::grid::GridView;
use crate::app::head_view::HeadView;
use crate::app::heatmap::HeatmapView;
use crate::app::saliency::SaliencyView;
use crate::app::state::ViewKind;
use crate::app::theme;
use crate::app::token_strip::{Selection, TokenStrip};
use crate::app::view::{Request, RunFailure, View, ViewCx};

/// The central area and the views it switches between.
#[derive(Default)]
pub struct Central {
    /// One head or a combination, as a heatmap.
    pub heatmap: HeatmapView,
    /// Every layer × head as thumbnails.
    pub grid: GridView,
    /// Lines between two token columns.
    pub head_view: HeadView,
    /// The tokens, clickable to select queries.
    pub token_strip: TokenStrip,
    /// Which input tokens drive a target.
    pub saliency: SaliencyView,
    /// The teaching views.
    pub teach: crate::app::teach::TeachPanel,
    /// Where the answer forms.
    pub answer: crate::app::answer::AnswerView,
    /// Head metrics, flow and value zeroing.
    pub analyze: crate::app::analyze::AnalyzeView,
}

impl View for Central {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.horizontal(|ui| {
            for v in ViewKind::ALL {
                ui.selectable_value(&mut cx.state.view, v, v.label());
            }
        });
        crate::app::teach::lessons::lesson_bar_ui(ui, cx);
        // Every setting that changes the numbers, next to the map, in every view.
        crate::app::chips::settings_chips_ui(ui, cx);
        let stale = cx.run_failed.is_some_and(|f| f.cancelled) && cx.run.is_some();
        if stale {
            // Cancelled: the previous map stays, dimmed and marked stale, until Compute.
            ui.horizontal(|ui| {
                ui.label("stale: computing was cancelled; the map is from the previous settings");
                if ui.button("Compute").clicked() {
                    cx.request(Request::Compute);
                }
            });
            ui.multiply_opacity(0.45);
        } else if let Some(failure) = cx.run_failed {
            // The map for these settings does not exist: say why where it would be, rather
            // than a spinner or an older map.
            failure_ui(ui, cx, failure);
            return;
        }
        let Some(run) = cx.run.clone() else {
            if cx.jobs.busy || cx.jobs.loading.is_some() {
                ui.spinner();
            } else {
                ui.label("no run yet");
            }
            return;
        };
        let labels = cx.labels.clone();
        // The Saliency view shows the tokens itself, coloured by their scores; the teaching
        // views pick their query themselves, in less room.
        if !matches!(
            cx.state.view,
            ViewKind::Saliency | ViewKind::Teach | ViewKind::Answer
        ) {
            let selection = Selection {
                spec: cx.state.view_spec(),
                queries: &mut cx.state.selected_queries,
                combine: &mut cx.state.query_combine,
            };
            self.token_strip.ui(ui, &run, &labels, selection);
            ui.separator();
        }
        match cx.state.view {
            ViewKind::Heatmap if cx.state.analyze.rollout.on => {
                let work = &self.analyze.controller;
                crate::app::analyze::rollout::heatmap_ui(
                    &mut self.heatmap,
                    ui,
                    &run,
                    &labels,
                    work,
                    cx,
                );
            }
            ViewKind::Heatmap => self.heatmap.ui(ui, cx),
            ViewKind::Grid => self.grid.ui(ui, cx),
            ViewKind::HeadView => self.head_view.ui(ui, cx),
            ViewKind::Saliency => {
                egui::ScrollArea::vertical()
                    .id_salt("saliency-scroll")
                    .show(ui, |ui| self.saliency.ui(ui, cx));
            }
            ViewKind::Teach => self.teach.ui(ui, cx),
            ViewKind::Answer => {
                egui::ScrollArea::vertical()
                    .id_salt("answer-scroll")
                    .show(ui, |ui| self.answer.ui(ui, &run, &labels, cx));
            }
            ViewKind::Analyze => {
                egui::ScrollArea::vertical()
                    .id_salt("analyze-scroll")
                    .show(ui, |ui| self.analyze.ui(ui, &run, &labels, cx));
            }
        }
    }
}

/// Why the requested run failed, with a one-click "Truncate to the limit" when the input is
/// longer than the model allows.
fn failure_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>, failure: &RunFailure) {
    ui.add_space(24.0);
    ui.vertical_centered(|ui| {
        let dark = ui.visuals().dark_mode;
        if failure.cancelled {
            ui.label(&failure.message);
            if ui.button("Compute").clicked() {
                cx.request(Request::Compute);
            }
        } else {
            ui.colored_label(theme::error_color(dark), &failure.message);
        }
        if let Some(limit) = failure.limit {
            ui.add_space(8.0);
            if ui
                .button("Truncate to the limit")
                .on_hover_text(format!(
                    "Keep the first {limit} tokens (the CLI's --truncate); stays on for later inputs"
                ))
                .clicked()
            {
                cx.request(Request::Truncate);
            }
        }
    });
}
