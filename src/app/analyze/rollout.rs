//! The rollout map in the Heatmap view: its controls (on/off, α, head fusion, layer range; the
//! attention flow shares them), the map itself from the analysis thread, and its progress,
//! Cancel and errors. The numbers are `analysis::rollout`'s, as `attnviz analyze --what
//! rollout` writes them; the export is in `app::export`.

use super::Controller;
use super::RolloutSettings;
use super::background::{MapsItem, MapsTask};
use crate::analysis::rollout::HeadFusion;
use crate::app::heatmap::{HeatmapView, MapOverride};
use crate::app::view::{Request, ViewCx};
use crate::pipeline::Run;
use std::sync::Arc;

/// α, the head fusion and the layer range of W′ on a model of `layers` layers.
pub fn mixing_controls_ui(ui: &mut egui::Ui, r: &mut RolloutSettings, layers: usize) {
    let last = layers.saturating_sub(1);
    ui.horizontal_wrapped(|ui| {
        ui.add(
            egui::Slider::new(&mut r.alpha, 0.0..=1.0)
                .text("α")
                .fixed_decimals(2),
        )
        .on_hover_text("W′ = α·A + (1 − α)·I: the weight of attention against the residual");
        egui::ComboBox::from_label("fusion")
            .selected_text(r.fusion.name())
            .show_ui(ui, |ui| {
                for f in [HeadFusion::Mean, HeadFusion::Max, HeadFusion::Min] {
                    ui.selectable_value(&mut r.fusion, f, f.name());
                }
            });
    });
    ui.horizontal_wrapped(|ui| {
        let (mut a, mut b) = r.span(layers);
        ui.label("layers");
        let first = ui.add(egui::DragValue::new(&mut a).range(0..=last));
        ui.label("–");
        let second = ui.add(egui::DragValue::new(&mut b).range(0..=last));
        if first.changed() || second.changed() {
            if first.changed() {
                b = b.max(a);
            } else {
                a = a.min(b);
            }
            r.layers = (a, b).ne(&(0, last)).then_some((a, b));
        }
        if r.layers.is_some() && ui.small_button("all").clicked() {
            r.layers = None;
        }
    });
}

/// The "rollout" checkbox and, when on, its controls, for the Heatmap view's side panel.
pub fn controls_ui(ui: &mut egui::Ui, r: &mut RolloutSettings, layers: usize) {
    ui.checkbox(&mut r.on, "rollout")
        .on_hover_text("Show the attention rollout (Abnar & Zuidema 2020) instead of one head");
    if r.on {
        mixing_controls_ui(ui, r, layers);
    }
}

/// Progress with Cancel, the stopped state with Compute, or nothing, for `task`.
pub fn waiting_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>, work: &Controller, task: &MapsTask) {
    if let Some((fraction, secs)) = work.maps_pending(task) {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(180.0)
                    .text(format!("{} · {secs:.1} s", task.label())),
            );
            if ui.button("Cancel").clicked() {
                cx.request(Request::CancelAnalyze);
            }
        });
    } else if work.maps_stopped(task) {
        ui.horizontal(|ui| {
            ui.label(format!("{}: stopped", task.label()));
            if ui.button("Compute").clicked() {
                cx.request(Request::ComputeAnalyze);
            }
        });
    } else {
        ui.horizontal(|ui| {
            ui.spinner();
            ui.label(format!("{}…", task.label()));
        });
    }
}

/// The Heatmap view with the rollout map of `run` instead of the selected head.
pub fn heatmap_ui(
    view: &mut HeatmapView,
    ui: &mut egui::Ui,
    run: &Arc<Run>,
    labels: &[String],
    work: &Controller,
    cx: &mut ViewCx<'_>,
) {
    let layers = run.maps.layers();
    let settings = cx.state.analyze.rollout;
    let task = MapsTask::Rollout(settings.options(layers));
    let result = work.maps_result(&task).map(|(item, _)| item.clone());
    match result {
        Some(MapsItem::Rollout(Ok(matrix))) => {
            let overlay = MapOverride {
                id: Arc::as_ptr(&matrix) as usize,
                matrix,
                title: settings.title(layers),
            };
            view.ui_with(ui, run, labels, cx.state, Some(&overlay));
        }
        Some(MapsItem::Rollout(Err(e))) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("rollout: {e}"));
        }
        _ => waiting_ui(ui, cx, work, &task),
    }
}
