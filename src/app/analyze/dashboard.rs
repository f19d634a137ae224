//! The head-metrics dashboard: a layers × heads map of the chosen metric with each layer's sink
//! count, a table of every metric sortable by any column (or by the clustered head order), a
//! chart of each metric by layer (the mean over heads) and the chosen head's attention-distance
//! histogram. Clicking a cell or a row opens that head in the Heatmap view. The numbers are
//! `analysis::metrics`' (as `attnviz analyze --what metrics`), computed off the UI thread.

use super::Controller;
use super::background::{MapsItem, MapsTask, MetricsResult};
use super::compute::{InductionResult, Item, Kind};
use super::{Metric, SortKey};
use crate::analysis::metrics::distance_profile;
use crate::app::state::{AppState, HeadMode, ViewKind};
use crate::app::view::{Request, ViewCx};
use crate::pipeline::Run;
use crate::render::format_significant;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};
use std::sync::Arc;

/// Tallest the table grows before it scrolls, in points.
const TABLE_HEIGHT: f32 = 320.0;

/// A head of a run: (run address, layer, head).
type HeadOf = (usize, usize, usize);

/// The dashboard's runtime state: the distance histogram of the head last asked for.
#[derive(Default)]
pub struct Dashboard {
    /// The head and its histogram (`None`: no qualifying query).
    distances: Option<(HeadOf, Option<Vec<f64>>)>,
}

/// The metrics on screen: every head's, and the induction probe's scores when it ran.
struct Table<'a> {
    metrics: &'a MetricsResult,
    induction: Option<&'a InductionResult>,
}

impl Table<'_> {
    fn layers(&self) -> usize {
        self.metrics.per_head.len()
    }

    fn heads(&self) -> usize {
        self.metrics.per_head.first().map_or(0, Vec::len)
    }

    /// The metric of head (l, h).
    fn value(&self, metric: Metric, l: usize, h: usize) -> Option<f64> {
        match metric {
            Metric::Induction => self
                .induction
                .and_then(|r| r.scores.get(l)?.get(h).copied().flatten()),
            m => self.metrics.per_head.get(l)?.get(h).and_then(|hm| m.of(hm)),
        }
    }

    /// The metrics the table and the charts show (`induction` once the probe ran).
    fn columns(&self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|&m| m != Metric::Induction || self.induction.is_some())
            .collect()
    }

    /// The mean over heads of `metric` per layer (`None` for a layer without values).
    fn by_layer(&self, metric: Metric) -> Vec<Option<f64>> {
        (0..self.layers())
            .map(|l| {
                let v: Vec<f64> = (0..self.heads())
                    .filter_map(|h| self.value(metric, l, h))
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            })
            .collect()
    }
}

/// Opens head (l, h) in the Heatmap view.
fn open_head(state: &mut AppState, l: usize, h: usize) {
    state.layer_idx = l;
    state.head_idx = h;
    state.all_layers = false;
    state.head_mode = HeadMode::Single;
    state.analyze.rollout.on = false;
    state.view = ViewKind::Heatmap;
}

/// A colour of the view's colormap at `t` in [0, 1].
fn colour(state: &AppState, t: f64) -> Color32 {
    let [r, g, b, _] = state.colormap.color(t.clamp(0.0, 1.0) as f32);
    Color32::from_rgb(r, g, b)
}

/// Black or white text, whichever reads on `fill`.
fn text_on(fill: Color32) -> Color32 {
    let l = 0.299 * f32::from(fill.r()) + 0.587 * f32::from(fill.g()) + 0.114 * f32::from(fill.b());
    if l > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

/// A metric's value as the table writes it.
fn cell_text(metric: Metric, v: Option<f64>) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) if metric == Metric::OffsetPeak => format!("{v:+.0}"),
        Some(v) => format!("{v:.3}"),
    }
}

impl Dashboard {
    /// Draws the dashboard for `run`.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        work: &Controller,
        cx: &mut ViewCx<'_>,
    ) {
        let metrics = match work.maps_result(&MapsTask::Metrics) {
            Some((MapsItem::Metrics(Ok(m)), _)) => m.clone(),
            Some((MapsItem::Metrics(Err(e)), _)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("metrics: {e}"));
                return;
            }
            _ => {
                super::rollout::waiting_ui(ui, cx, work, &MapsTask::Metrics);
                return;
            }
        };
        let key = cx.current.cloned().filter(|_| cx.external.is_none());
        let induction = key
            .as_ref()
            .and_then(|k| match work.result(k, Kind::Induction) {
                Some((Item::Induction(r), _)) => Some(r.clone()),
                _ => None,
            });
        let induction_ok = induction.as_ref().and_then(|r| r.as_ref().ok()).cloned();
        let table = Table {
            metrics: &metrics,
            induction: induction_ok.as_deref(),
        };
        ui.horizontal_wrapped(|ui| {
            let s = &mut cx.state.analyze;
            egui::ComboBox::from_label("Metric")
                .selected_text(s.metric.name())
                .show_ui(ui, |ui| {
                    for m in table.columns() {
                        ui.selectable_value(&mut s.metric, m, m.name())
                            .on_hover_text(m.help());
                    }
                });
            ui.weak(s.metric.help());
        });
        probe_ui(ui, cx, work, key.as_ref(), induction.as_ref());
        let metric = if table.columns().contains(&cx.state.analyze.metric) {
            cx.state.analyze.metric
        } else {
            Metric::FirstToken
        };
        let sinks: Vec<String> = metrics.sinks.iter().map(usize::to_string).collect();
        ui.label(format!(
            "Sink heads (first_token > 0.5) per layer: {} — {} of {} heads",
            sinks.join(" "),
            metrics.sinks.iter().sum::<usize>(),
            table.layers() * table.heads()
        ));
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| map_ui(ui, cx.state, &table, metric));
            ui.vertical(|ui| {
                by_layer_ui(ui, &table, metric);
                self.distance_ui(ui, run, cx.state, &metrics);
            });
        });
        ui.separator();
        let order = match work.maps_result(&MapsTask::HeadOrder) {
            Some((MapsItem::HeadOrder(o), _)) => Some(o.clone()),
            _ => None,
        };
        if cx.state.analyze.sort == SortKey::Cluster && order.is_none() {
            super::rollout::waiting_ui(ui, cx, work, &MapsTask::HeadOrder);
        }
        table_ui(ui, cx.state, &table, order.as_deref().map(Vec::as_slice));
    }

    /// The chosen head's attention-distance histogram.
    fn distance_ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        state: &AppState,
        metrics: &MetricsResult,
    ) {
        let (l, h) = (state.layer_idx, state.head_idx);
        let at = (Arc::as_ptr(run) as usize, l, h);
        if self.distances.as_ref().is_none_or(|(k, _)| *k != at) {
            let profile = run
                .maps
                .head(l, h)
                .and_then(|m| distance_profile(m.view(), metrics.data.allowed()));
            self.distances = Some((at, profile));
        }
        let Some((_, Some(profile))) = &self.distances else {
            ui.weak(format!("L{l}·H{h}: no query with two allowed keys"));
            return;
        };
        ui.label(format!(
            "Attention distance of L{l}·H{h} (the head picked in View)"
        ));
        let bars: Vec<Bar> = profile
            .iter()
            .enumerate()
            .map(|(d, &v)| Bar::new(d as f64, v).width(0.9))
            .collect();
        Plot::new("analyze-distance")
            .height(150.0)
            .width(380.0)
            .x_axis_label("|key − query| (tokens)")
            .y_axis_label("mean weight")
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .show(ui, |plot| plot.bar_chart(BarChart::new("distance", bars)));
    }
}

/// The induction probe's button, progress with Cancel, or result line.
fn probe_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    work: &Controller,
    key: Option<&crate::app::job::JobKey>,
    result: Option<&Result<Arc<InductionResult>, String>>,
) {
    let Some(key) = key else {
        ui.weak("The induction probe runs the model: compute a run (not an attention file).");
        return;
    };
    ui.horizontal_wrapped(|ui| {
        if let Some((fraction, secs)) = work.pending(key, Kind::Induction) {
            ui.spinner();
            ui.add(
                egui::ProgressBar::new(fraction)
                    .desired_width(180.0)
                    .text(format!("induction probe · {secs:.1} s")),
            );
            if ui.button("Cancel").clicked() {
                cx.request(Request::CancelAnalyze);
            }
            return;
        }
        match result {
            Some(Ok(r)) => {
                ui.label(format!(
                    "induction probe: {} random tokens twice ({} tokens); pick `induction` above",
                    r.probe.period, r.tokens
                ));
            }
            Some(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, format!("induction probe: {e}"));
            }
            None => {
                if ui
                    .button("Run induction probe")
                    .on_hover_text(Metric::Induction.help())
                    .clicked()
                {
                    cx.request(Request::InductionProbe);
                }
            }
        }
    });
}

/// The layers × heads map of `metric`, layer 0 on top, and each layer's sink count.
fn map_ui(ui: &mut egui::Ui, state: &mut AppState, table: &Table<'_>, metric: Metric) {
    let (layers, heads) = (table.layers(), table.heads());
    let values: Vec<f64> = (0..layers)
        .flat_map(|l| (0..heads).map(move |h| (l, h)))
        .filter_map(|(l, h)| table.value(metric, l, h))
        .collect();
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    let diverging = metric == Metric::OffsetPeak;
    let reach = lo.abs().max(hi.abs()).max(1.0);
    let t_of = |v: f64| {
        if diverging {
            0.5 + 0.5 * v / reach
        } else if hi > lo {
            (v - lo) / (hi - lo)
        } else {
            0.5
        }
    };
    let cw: f32 = if heads > 16 { 26.0 } else { 38.0 };
    let ch: f32 = if layers > 24 { 13.0 } else { 18.0 };
    let (lw, top, sinks_w) = (28.0, 16.0, 40.0);
    let size = Vec2::new(lw + cw * heads as f32 + sinks_w, top + ch * layers as f32);
    let (rect, _) = ui.allocate_exact_size(size, Sense::hover());
    let painter = ui.painter_at(rect);
    let font = FontId::proportional(if ch < 16.0 { 9.0 } else { 10.0 });
    let text_col = ui.visuals().text_color();
    let origin = rect.min;
    for h in 0..heads {
        painter.text(
            Pos2::new(origin.x + lw + cw * (h as f32 + 0.5), origin.y + top / 2.0),
            Align2::CENTER_CENTER,
            format!("h{h}"),
            font.clone(),
            text_col,
        );
    }
    painter.text(
        Pos2::new(
            origin.x + lw + cw * heads as f32 + sinks_w / 2.0,
            origin.y + top / 2.0,
        ),
        Align2::CENTER_CENTER,
        "sinks",
        font.clone(),
        text_col,
    );
    let chosen = (state.layer_idx, state.head_idx);
    for l in 0..layers {
        let y = origin.y + top + ch * l as f32;
        painter.text(
            Pos2::new(origin.x + lw - 4.0, y + ch / 2.0),
            Align2::RIGHT_CENTER,
            l.to_string(),
            font.clone(),
            text_col,
        );
        for h in 0..heads {
            let cell = Rect::from_min_size(
                Pos2::new(origin.x + lw + cw * h as f32, y),
                Vec2::new(cw - 1.0, ch - 1.0),
            );
            let v = table.value(metric, l, h);
            let fill = v.map_or(ui.visuals().faint_bg_color, |v| colour(state, t_of(v)));
            painter.rect_filled(cell, 0.0, fill);
            if ch >= 13.0 && cw >= 26.0 {
                let text = match v {
                    Some(v) if metric == Metric::OffsetPeak => format!("{v:+.0}"),
                    Some(v) if v.abs() >= 10.0 => format!("{v:.0}"),
                    Some(v) => format!("{v:.2}"),
                    None => "—".to_owned(),
                };
                painter.text(
                    cell.center(),
                    Align2::CENTER_CENTER,
                    text,
                    font.clone(),
                    text_on(fill),
                );
            }
            if chosen == (l, h) {
                painter.rect_stroke(
                    cell,
                    0.0,
                    Stroke::new(2.0, text_col),
                    egui::StrokeKind::Inside,
                );
            }
            let response = ui.interact(
                cell,
                ui.scope_id().with(("analyze-cell", l, h)),
                Sense::click(),
            );
            let name = format!("L{l}·H{h} cell");
            response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &name));
            let response = response.on_hover_text(format!(
                "L{l}·H{h}: {} = {}\nclick to open this head",
                metric.name(),
                v.map_or("—".to_owned(), format_significant)
            ));
            if response.clicked() {
                open_head(state, l, h);
            }
        }
        let sinks = table.metrics.sinks.get(l).copied().unwrap_or(0);
        painter.text(
            Pos2::new(
                origin.x + lw + cw * heads as f32 + sinks_w / 2.0,
                y + ch / 2.0,
            ),
            Align2::CENTER_CENTER,
            format!("{sinks}/{heads}"),
            font.clone(),
            text_col,
        );
    }
    if values.is_empty() {
        ui.weak(format!("{}: no head has a value", metric.name()));
    } else if diverging {
        ui.weak(format!("colours: offset −{reach:.0} … +{reach:.0}"));
    } else {
        ui.weak(format!(
            "colours: {} … {} ({})",
            format_significant(lo),
            format_significant(hi),
            state.colormap.name()
        ));
    }
}

/// Each metric in [0, 1] by layer (the mean over heads), the chosen one thicker; a metric with
/// another range gets a chart of its own.
fn by_layer_ui(ui: &mut egui::Ui, table: &Table<'_>, chosen: Metric) {
    let points = |m: Metric| -> Vec<[f64; 2]> {
        table
            .by_layer(m)
            .into_iter()
            .enumerate()
            .filter_map(|(l, v)| v.map(|v| [l as f64, v]))
            .collect()
    };
    ui.label("Each metric by layer (mean over heads)");
    Plot::new("analyze-by-layer")
        .height(200.0)
        .width(380.0)
        .legend(Legend::default())
        .x_axis_label("layer")
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .show(ui, |plot| {
            for m in table.columns().into_iter().filter(|m| m.is_share()) {
                let width = if m == chosen { 3.0 } else { 1.2 };
                plot.line(Line::new(m.name(), PlotPoints::from(points(m))).width(width));
            }
        });
    if !chosen.is_share() {
        Plot::new("analyze-by-layer-own")
            .height(120.0)
            .width(380.0)
            .x_axis_label("layer")
            .y_axis_label(chosen.name())
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .show(ui, |plot| {
                plot.line(Line::new(chosen.name(), PlotPoints::from(points(chosen))).width(2.0));
            });
    }
}

/// The heads in the table's order.
fn sorted_heads(
    state: &AppState,
    table: &Table<'_>,
    order: Option<&[(usize, usize)]>,
) -> Vec<(usize, usize)> {
    let mut rows: Vec<(usize, usize)> = (0..table.layers())
        .flat_map(|l| (0..table.heads()).map(move |h| (l, h)))
        .collect();
    let s = &state.analyze;
    match s.sort {
        SortKey::Head => {
            if s.descending {
                rows.reverse();
            }
        }
        SortKey::Cluster => {
            if let Some(order) = order {
                rows = order.to_vec();
                if s.descending {
                    rows.reverse();
                }
            }
        }
        SortKey::Metric(m) => {
            rows.sort_by(|&(al, ah), &(bl, bh)| {
                match (table.value(m, al, ah), table.value(m, bl, bh)) {
                    (Some(a), Some(b)) if s.descending => b.total_cmp(&a),
                    (Some(a), Some(b)) => a.total_cmp(&b),
                    // Heads without a value go last either way.
                    (Some(_), None) => std::cmp::Ordering::Less,
                    (None, Some(_)) => std::cmp::Ordering::Greater,
                    (None, None) => std::cmp::Ordering::Equal,
                }
                .then((al, ah).cmp(&(bl, bh)))
            });
        }
    }
    rows
}

/// A header button that sorts by `key` (a second click reverses).
fn header_ui(ui: &mut egui::Ui, state: &mut AppState, key: SortKey, name: &str, help: &str) {
    let s = &mut state.analyze;
    ui.horizontal(|ui| {
        if ui.small_button(name).on_hover_text(help).clicked() {
            if s.sort == key {
                s.descending = !s.descending;
            } else {
                s.sort = key;
                s.descending = matches!(key, SortKey::Metric(_));
            }
        }
        if s.sort == key {
            ui.weak(if s.descending { "▼" } else { "▲" });
        }
    });
}

/// Every head's metrics, one row per head; a header sorts, a row's button opens the head.
fn table_ui(
    ui: &mut egui::Ui,
    state: &mut AppState,
    table: &Table<'_>,
    order: Option<&[(usize, usize)]>,
) {
    let columns = table.columns();
    let rows = sorted_heads(state, table, order);
    egui::ScrollArea::both()
        .id_salt("analyze-table")
        .max_height(TABLE_HEIGHT)
        .show(ui, |ui| {
            egui::Grid::new("analyze-table-grid")
                .striped(true)
                .min_col_width(40.0)
                .show(ui, |ui| {
                    header_ui(ui, state, SortKey::Head, "head", "layer, then head");
                    header_ui(
                        ui,
                        state,
                        SortKey::Cluster,
                        "cluster",
                        "heads clustered by the Jensen–Shannon divergence of their maps (head_order)",
                    );
                    for &m in &columns {
                        header_ui(ui, state, SortKey::Metric(m), m.name(), m.help());
                    }
                    ui.end_row();
                    let position = |lh: (usize, usize)| order.and_then(|o| o.iter().position(|&x| x == lh));
                    for (l, h) in rows {
                        if ui
                            .selectable_label((state.layer_idx, state.head_idx) == (l, h), format!("L{l}·H{h}"))
                            .on_hover_text("open this head in the Heatmap")
                            .clicked()
                        {
                            open_head(state, l, h);
                        }
                        ui.label(position((l, h)).map_or("—".to_owned(), |p| p.to_string()));
                        for &m in &columns {
                            ui.label(cell_text(m, table.value(m, l, h)));
                        }
                        ui.end_row();
                    }
                });
        });
}
