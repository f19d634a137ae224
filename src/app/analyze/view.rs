//! The Analyze view: tabs for the head-metrics dashboard, the attention flow into the selected
//! query and value zeroing. It reads finished results from the controller and asks for work
//! through requests; the numbers are `analysis`' (as `attnviz analyze` writes them).

use super::background::{MapsItem, MapsTask};
use super::compute::{Item, Kind};
use super::controller::{Controller, flow_query};
use super::dashboard::Dashboard;
use super::{AnalyzeTab, rollout};
use crate::analysis::flow::FlowOptions;
use crate::analysis::value_zeroing::ValueZeroing;
use crate::app::heatmap::{HeatmapView, MapOverride};
use crate::app::view::{Request, ViewCx};
use crate::pipeline::Run;
use egui_plot::{Bar, BarChart, Plot};
use ndarray::Array2;
use std::sync::Arc;

/// A value-zeroing map on screen: (result address, layer or `None` for the product).
type VzShown = (usize, Option<usize>);

/// Rows whose raw value-zeroing sum is below this are not resolved in f32 (see
/// `ValueZeroing::row_sums`).
const UNRESOLVED_ROW_SUM: f64 = 1e-3;

/// The Analyze view's runtime state.
#[derive(Default)]
pub struct AnalyzeView {
    dashboard: Dashboard,
    /// The value-zeroing map on screen.
    vz_map: HeatmapView,
    /// The shown value-zeroing matrix in f32, and which it is.
    vz_shown: Option<(VzShown, Arc<Array2<f32>>)>,
    /// The background work of the view and of the rollout map: results, progress, Cancel.
    pub(in crate::app) controller: Controller,
}

impl AnalyzeView {
    /// The image the value-zeroing map drew last.
    pub fn value_zeroing_on_screen(&self) -> Option<&image::RgbaImage> {
        self.vz_map.on_screen()
    }

    /// Draws the view for `run`, whose tokens are labelled `labels`.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        cx: &mut ViewCx<'_>,
    ) {
        ui.horizontal(|ui| {
            for tab in AnalyzeTab::ALL {
                ui.selectable_value(&mut cx.state.analyze.tab, tab, tab.label());
            }
        });
        ui.separator();
        match cx.state.analyze.tab {
            AnalyzeTab::Metrics => self.dashboard.ui(ui, run, &self.controller, cx),
            AnalyzeTab::Flow => flow_ui(ui, run, labels, &self.controller, cx),
            AnalyzeTab::ValueZeroing => self.value_zeroing_ui(ui, run, labels, cx),
        }
    }

    /// Value zeroing of the run on screen: a layer's map or the product, as a heatmap.
    fn value_zeroing_ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        cx: &mut ViewCx<'_>,
    ) {
        ui.label(
            "Value zeroing (Mohebbi et al. 2023): C[i, j] = 1 − cos(block output i with token \
             j's values zeroed, output i), rows normalised; across layers their product.",
        );
        let Some(key) = cx.current.cloned().filter(|_| cx.external.is_none()) else {
            ui.label(
                "Value zeroing runs the model: compute a run (an attention file has no model).",
            );
            return;
        };
        let layers = run.maps.layers();
        let s = &mut cx.state.analyze;
        if s.vz_layer.is_some_and(|l| l >= layers) {
            s.vz_layer = None;
        }
        let name = |l: Option<usize>| match l {
            None => "product of all layers".to_owned(),
            Some(l) => format!("layer {l}"),
        };
        egui::ComboBox::from_label("Value-zeroing map")
            .selected_text(name(s.vz_layer))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut s.vz_layer, None, name(None));
                for l in 0..layers {
                    ui.selectable_value(&mut s.vz_layer, Some(l), name(Some(l)));
                }
            });
        let layer = s.vz_layer;
        let vz: Option<Result<Arc<ValueZeroing>, String>> =
            match self.controller.result(&key, Kind::ValueZeroing) {
                Some((Item::ValueZeroing(r), ms)) => {
                    ui.weak(format!("computed in {ms:.0} ms"));
                    Some(r.clone())
                }
                _ => None,
            };
        let vz = match vz {
            Some(Ok(vz)) => vz,
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("value zeroing: {e}"));
                return;
            }
            None => {
                model_waiting_ui(
                    ui,
                    cx,
                    &self.controller,
                    &key,
                    Kind::ValueZeroing,
                    "value zeroing",
                );
                return;
            }
        };
        let at = (Arc::as_ptr(&vz) as usize, layer);
        if self.vz_shown.as_ref().is_none_or(|(k, _)| *k != at) {
            let m = match layer {
                None => &vz.product,
                Some(l) => match vz.maps.get(l) {
                    Some(m) => m,
                    None => return,
                },
            };
            self.vz_shown = Some((at, Arc::new(m.mapv(|v| v as f32))));
        }
        let Some((_, matrix)) = &self.vz_shown else {
            return;
        };
        let unresolved = |sums: &[f64]| sums.iter().filter(|&&s| s < UNRESOLVED_ROW_SUM).count();
        let rows = match layer {
            Some(l) => vz.row_sums.get(l).map_or(0, |s| unresolved(s)),
            None => vz.row_sums.iter().map(|s| unresolved(s)).max().unwrap_or(0),
        };
        if rows > 0 {
            ui.weak(format!(
                "{rows} row(s) moved by less than {UNRESOLVED_ROW_SUM} before normalising (such as [CLS] in early layers): f32 cannot resolve them"
            ));
        }
        let overlay = MapOverride {
            id: Arc::as_ptr(matrix) as usize,
            matrix: matrix.clone(),
            title: format!("value zeroing · {}", name(layer)),
        };
        self.vz_map
            .ui_with(ui, run, labels, cx.state, Some(&overlay));
    }
}

/// Progress with Cancel, the stopped state with Compute, or a spinner, for model work `kind`.
fn model_waiting_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    work: &Controller,
    key: &crate::app::job::JobKey,
    kind: Kind,
    what: &str,
) {
    ui.horizontal(|ui| {
        if let Some((fraction, secs)) = work.pending(key, kind) {
            ui.spinner();
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(220.0)
                    .text(format!("{what} · {secs:.1} s")),
            );
            if ui.button("Cancel").clicked() {
                cx.request(Request::CancelAnalyze);
            }
        } else if work.stopped(key, kind) {
            ui.label(format!("{what}: stopped"));
            if ui.button("Compute").clicked() {
                cx.request(Request::ComputeAnalyze);
            }
        } else {
            ui.spinner();
            ui.label(format!("{what}…"));
        }
    });
}

/// The attention flow into the selected query, as a bar chart over the input tokens.
fn flow_ui(
    ui: &mut egui::Ui,
    run: &Arc<Run>,
    labels: &[String],
    work: &Controller,
    cx: &mut ViewCx<'_>,
) {
    let n = run.tokens.len();
    let layers = run.maps.layers();
    let q = flow_query(&cx.state.selected_queries, n);
    ui.label(format!(
        "Attention flow (Abnar & Zuidema 2020) into query {q} {:?}: the maximum flow from each \
         input token through W′ of every layer. Click a token above to pick another query.",
        labels.get(q).map_or("", String::as_str)
    ));
    ui.label("W′ (shared with the Heatmap's rollout):");
    rollout::mixing_controls_ui(ui, &mut cx.state.analyze.rollout, layers);
    ui.checkbox(&mut cx.state.analyze.flow_normalized, "÷ sum")
        .on_hover_text("Divide the flows by their sum (the paper's display)");
    let task = MapsTask::Flow(FlowOptions {
        rollout: cx.state.analyze.rollout.options(layers),
        query: Some(q),
    });
    let flow = match work.maps_result(&task) {
        Some((MapsItem::Flow(Ok(f)), ms)) => {
            ui.weak(format!("computed in {ms:.0} ms"));
            f.clone()
        }
        Some((MapsItem::Flow(Err(e)), _)) => {
            ui.colored_label(ui.visuals().error_fg_color, format!("flow: {e}"));
            return;
        }
        _ => {
            rollout::waiting_ui(ui, cx, work, &task);
            return;
        }
    };
    let normalized = cx.state.analyze.flow_normalized;
    let values = if normalized {
        flow.normalized()
    } else {
        flow.flow.clone()
    };
    let mut top: Vec<(usize, f64)> = values.iter().copied().enumerate().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let listed: Vec<String> = top
        .iter()
        .take(5)
        .map(|&(j, v)| {
            format!(
                "{j} {:?} {}",
                labels.get(j).map_or("", String::as_str),
                crate::render::format_significant(v)
            )
        })
        .collect();
    ui.label(format!(
        "flow into query {} ({}): {}",
        flow.query,
        if normalized { "÷ sum" } else { "raw" },
        listed.join(" · ")
    ));
    let bars: Vec<Bar> = values
        .iter()
        .enumerate()
        .map(|(j, &v)| {
            Bar::new(j as f64, v)
                .width(0.85)
                .name(format!("{j} {}", labels.get(j).map_or("", String::as_str)))
        })
        .collect();
    let names: Vec<String> = labels.to_vec();
    Plot::new("analyze-flow")
        .height(260.0)
        .x_axis_label("input token")
        .y_axis_label(if normalized {
            "flow ÷ sum"
        } else {
            "max flow"
        })
        .x_axis_formatter(move |mark, _| {
            let j = mark.value.round();
            if (mark.value - j).abs() > 1e-6 || j < 0.0 {
                return String::new();
            }
            names.get(j as usize).cloned().unwrap_or_default()
        })
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .show(ui, |plot| plot.bar_chart(BarChart::new("flow", bars)));
}
