//! The Answer view: tabs for the logit lens, contributions, routes and patching of the run on
//! screen. It reads finished results from the controller and asks for work through requests;
//! the numbers come from `pipeline::answer`, as `attnviz analyze` computes them. Each figure is
//! `render::answer`'s (the export's pixels, uploaded by [`super::figure`]); clicks and hovers
//! are mapped through the figure's geometry to its cells and edges.

use super::compute::{ContributionsResult, Item, Kind, LensResult, PatchingResult};
use super::figure::{FigureKey, FigureSlot, Placed, draw, pixel_scale, plot_of};
use super::{AnswerSettings, AnswerTab, Controller, suggest_corrupted};
use crate::analysis::answer::patching::PatchSite;
use crate::analysis::answer::routes::{EdgeKind, MIN_THRESHOLD, RouteGraph, Routes};
use crate::app::AttnApp;
use crate::app::state::{HeadMode, ViewKind};
use crate::app::view::{Request, ViewCx};
use crate::pipeline::Run;
use crate::render::answer::{AnswerFigure, CellId, UnitRect};
use crate::render::{Colormap, FigureContext};
use egui::{Color32, Pos2, Rect, Sense, Stroke, Vec2};
use egui_plot::{Line, Plot, PlotPoints, Points};
use std::sync::Arc;

/// A colour of `cmap` at `t` in [0, 1], for egui.
fn colour(cmap: Colormap, t: f32) -> Color32 {
    let [r, g, b, _] = cmap.color(t.clamp(0.0, 1.0));
    Color32::from_rgb(r, g, b)
}

/// Diverging colour of `v` in a range symmetric around 0 of half-width `max`.
fn diverging(v: f64, max: f64) -> Color32 {
    let t = if max > 0.0 { 0.5 + 0.5 * v / max } else { 0.5 };
    colour(Colormap::Diverging, t as f32)
}

/// The Answer view (its settings live in [`AnswerSettings`]); it keeps its background work and
/// each tab's uploaded figure.
#[derive(Default)]
pub struct AnswerView {
    /// The background work: results by run, the task in flight, what was stopped.
    pub(in crate::app) controller: Controller,
    /// One figure per tab, in [`AnswerTab::ALL`]'s order.
    figures: [FigureSlot; 4],
}

/// The slot of `tab`'s figure.
fn slot_of(tab: AnswerTab) -> usize {
    AnswerTab::ALL.iter().position(|&t| t == tab).unwrap_or(0)
}

/// The stroke of a selection outline over a figure.
fn outline(ui: &egui::Ui) -> Stroke {
    Stroke::new(2.5, ui.visuals().selection.stroke.color)
}

/// Draws `stroke` around `area` (scene units) of the placed figure, clipped to it.
fn outline_ui(ui: &egui::Ui, placed: &Placed<'_>, area: UnitRect, stroke: Stroke) {
    let clip = placed.rect.intersect(ui.clip_rect());
    ui.painter().with_clip_rect(clip).rect_stroke(
        placed.screen_from_unit(area),
        0.0,
        stroke,
        egui::StrokeKind::Outside,
    );
}

impl AnswerView {
    /// Draws the view for `run`, whose tokens are labelled `labels`.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        cx: &mut ViewCx<'_>,
    ) {
        ui.horizontal(|ui| {
            for tab in AnswerTab::ALL {
                ui.selectable_value(&mut cx.state.answer.tab, tab, tab.label());
            }
        });
        let Some(key) = cx.current.cloned() else {
            ui.label("The Answer view reads a model run: compute one (an opened attention file has no model).");
            return;
        };
        if cx.external.is_some() {
            ui.label(
                "The Answer view reads a model run, not an attention file: leave the file first.",
            );
            return;
        }
        let work = &self.controller;
        let n = run.tokens.len();
        target_line_ui(ui, cx, work, labels, n);
        ui.separator();
        let tab = cx.state.answer.tab;
        if tab == AnswerTab::Patching {
            patching_controls_ui(ui, cx);
        }
        let kind = cx.state.answer.kind(tab, n);
        let result = work
            .result(&key, &kind)
            .map(|(item, ms)| (item.clone(), ms));
        let Some((item, ms)) = result else {
            pending_ui(ui, cx, work, &key, &kind, tab);
            return;
        };
        ui.horizontal(|ui| {
            ui.weak(format!("computed in {ms:.0} ms"));
            super::export::export_ui(ui, cx);
        });
        let slot = &mut self.figures[slot_of(tab)];
        match &item {
            Item::Lens(Ok(r)) => lens_ui(ui, slot, &item, run, &mut cx.state.answer, r, labels),
            Item::Contributions(Ok(r)) => contributions_ui(ui, slot, &item, cx, r, run, labels),
            Item::Routes(Ok(g)) => routes_ui(ui, slot, &item, cx, g, run),
            Item::Patching(Ok(r)) => patching_ui(ui, slot, &item, run, r, labels),
            Item::Lens(Err(e))
            | Item::Contributions(Err(e))
            | Item::Routes(Err(e))
            | Item::Patching(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        }
    }

    /// The figure of the tab on screen as last drawn: where (in points), its pixels and where
    /// its parts are.
    pub fn figure_on_screen(&self, tab: AnswerTab) -> Option<(Rect, &AnswerFigure)> {
        let shown = self.figures.get(slot_of(tab))?.shown()?;
        Some((shown.rect?, &shown.figure))
    }

    /// Texture uploads of `tab`'s figure so far.
    pub fn figure_uploads(&self, tab: AnswerTab) -> usize {
        self.figures.get(slot_of(tab)).map_or(0, |s| s.uploads)
    }
}

impl AttnApp {
    /// The Answer view's figure of the current tab as drawn last: its rectangle in points,
    /// its pixels (an export's at the screen's pixel scale) and its geometry; for tests that
    /// click on it.
    pub fn answer_figure_on_screen(&self) -> Option<(Rect, &AnswerFigure)> {
        self.panels
            .central
            .answer
            .figure_on_screen(self.state.answer.tab)
    }

    /// Texture uploads of the current tab's figure so far (hovers and clicks add none).
    pub fn answer_figure_uploads(&self) -> usize {
        self.panels
            .central
            .answer
            .figure_uploads(self.state.answer.tab)
    }
}

/// Shows `item`'s figure on `run` (`routes`: the routes cut for a routes graph), uploaded
/// again only when the result, the run, the routes' cut (`cut`: position and τ's bits) or
/// the screen's pixel scale changed.
fn figure_ui<'s>(
    ui: &mut egui::Ui,
    slot: &'s mut FigureSlot,
    item: &Item,
    routes: Option<&Routes>,
    run: &Arc<Run>,
    cut: (usize, u64),
    label: &str,
) -> Option<Placed<'s>> {
    let scale = pixel_scale(ui.ctx());
    let key = FigureKey {
        item: item.clone(),
        run: Arc::downgrade(run),
        cut,
        pixel_scale: scale,
    };
    slot.ui(ui, key, label, || {
        let (plot, names) = plot_of(item, routes)?;
        Some(draw(plot, names, &FigureContext::from_run(run), scale))
    })
}

/// The target: its position, token and foil, with ways to reset them.
fn target_line_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    work: &Controller,
    labels: &[String],
    n: usize,
) {
    let s = &mut cx.state.answer;
    let t = s.target_on(n);
    let named = |id: u32| match work.name(id) {
        Some(label) => format!("{label:?} (id {id})"),
        None => format!("token id {id}"),
    };
    ui.horizontal_wrapped(|ui| {
        let p = t.position.unwrap_or(n.saturating_sub(1));
        ui.label(format!(
            "Target after position {p} {:?}:",
            labels.get(p).map_or("", String::as_str)
        ));
        match t.token {
            Some(id) => ui.strong(named(id)),
            None => ui.strong("the model's own top-1"),
        };
        if let Some(f) = t.foil {
            ui.label(format!("vs foil {}", named(f)));
        }
        if (t.token.is_some() || t.position.is_some()) && ui.button("Reset target").clicked() {
            s.target = Default::default();
        }
        if t.foil.is_some() && ui.button("No foil").clicked() {
            s.target.foil = None;
        }
    });
    ui.weak("Pick T (click) or a foil (right-click) among a lens cell's candidates.");
}

/// Progress and Cancel, or what to press.
fn pending_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    work: &Controller,
    key: &crate::app::job::JobKey,
    kind: &Kind,
    tab: AnswerTab,
) {
    if let Some((fraction, secs)) = work.pending(key, kind) {
        ui.horizontal(|ui| {
            ui.add(
                egui::ProgressBar::new(fraction)
                    .show_percentage()
                    .desired_width(240.0),
            );
            ui.label(format!("{secs:.1} s"));
            if ui.button("Cancel").clicked() {
                cx.request(Request::CancelAnswer);
            }
        });
        return;
    }
    if tab == AnswerTab::Patching {
        ui.label("Press Run patching to patch every site of the corrupted run with the clean run's value.");
    } else if work.stopped(key, kind) {
        ui.horizontal(|ui| {
            ui.label("stopped");
            if ui.button("Compute").clicked() {
                cx.request(Request::ComputeAnswer);
            }
        });
    } else {
        ui.spinner();
    }
}

/// The lens figure (layers × positions, the top-1 token coloured by the target's log-prob);
/// a clicked cell's candidates, and the target's log-prob and rank by layer.
fn lens_ui(
    ui: &mut egui::Ui,
    slot: &mut FigureSlot,
    item: &Item,
    run: &Arc<Run>,
    s: &mut AnswerSettings,
    r: &LensResult,
    labels: &[String],
) {
    ui.weak("Click a cell for its candidates.");
    if let Some(placed) = figure_ui(ui, slot, item, None, run, (0, 0), "logit lens") {
        let cell_of =
            |at: Option<(f32, f32)>| match at.and_then(|(x, y)| placed.geometry.cell_at(x, y)) {
                Some(CellId::Lens { layer, position }) => Some((layer, position)),
                _ => None,
            };
        if let Some(cell) = cell_of(placed.clicked_unit()) {
            s.lens_cell = Some(cell);
        }
        if let Some((l, p)) = cell_of(placed.hovered_unit())
            && let Some(c) = r.positions.iter().position(|&q| q == p)
            && let Some(cell) = r.cells.get(l).and_then(|row| row.get(c))
        {
            let mut text = format!(
                "layer {l}, after {:?}",
                labels.get(p).map_or("", String::as_str)
            );
            if let Some(&(id, lp)) = cell.top.first() {
                text.push_str(&format!("\ntop-1 {} (log p {lp:.2})", r.name(id)));
            }
            if let Some(lp) = cell.target_logprob {
                text.push_str(&format!("\nlog p({}) {lp:.2}", r.name(r.target.token)));
            }
            text.push_str("\nclick for the candidates");
            placed.response.clone().on_hover_text_at_pointer(text);
        }
        if let Some((l, p)) = s.lens_cell
            && let Some(area) = placed.geometry.area_of(CellId::Lens {
                layer: l,
                position: p,
            })
        {
            outline_ui(ui, &placed, area, outline(ui));
        }
    }
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            let Some((l, p)) = s.lens_cell else {
                ui.weak("Click a cell for its candidates.");
                return;
            };
            let Some(c) = r.positions.iter().position(|&q| q == p) else {
                return;
            };
            let Some(cell) = r.cells.get(l).and_then(|row| row.get(c)) else {
                return;
            };
            ui.strong(format!(
                "layer {l}, after {:?}",
                labels.get(p).map_or("", String::as_str)
            ));
            for &(id, lp) in &cell.top {
                let text = format!("{:>7.2}  {}", lp, r.name(id));
                let b = ui.button(egui::RichText::new(text).monospace());
                if b.clicked() {
                    s.target.position = Some(p);
                    s.target.token = Some(id);
                }
                if b.secondary_clicked() {
                    s.target.position = Some(p);
                    s.target.foil = Some(id);
                }
            }
        });
        ui.vertical(|ui| {
            let points: Vec<[f64; 2]> = r
                .at_target
                .iter()
                .enumerate()
                .map(|(l, c)| [l as f64, f64::from(c.target_logprob.unwrap_or(f32::NAN))])
                .collect();
            let ranks: Vec<String> = r
                .at_target
                .iter()
                .map(|c| {
                    c.target_rank
                        .map_or_else(|| "–".to_owned(), |k| k.to_string())
                })
                .collect();
            ui.label(format!(
                "log p({}) after position {} by layer; rank by layer: {}",
                r.name(r.target.token),
                r.target.position,
                ranks.join(" ")
            ));
            Plot::new("answer-lens-target")
                .height(170.0)
                .width(380.0)
                .x_axis_label("layer")
                .y_axis_label("log p")
                .allow_zoom(false)
                .allow_drag(false)
                .allow_scroll(false)
                .show(ui, |plot| {
                    plot.line(Line::new("log p", PlotPoints::from(points.clone())));
                    plot.points(Points::new("log p", PlotPoints::from(points)).radius(2.5));
                });
        });
    });
}

/// The contribution figure (layers × heads plus the MLP column); a clicked head's split over
/// the keys beside its attention row.
fn contributions_ui(
    ui: &mut egui::Ui,
    slot: &mut FigureSlot,
    item: &Item,
    cx: &mut ViewCx<'_>,
    r: &ContributionsResult,
    run: &Arc<Run>,
    labels: &[String],
) {
    let c = &r.contributions;
    let layers = c.heads.len();
    let heads = c.heads.first().map_or(0, Vec::len);
    ui.weak("Click a head for its split over the keys.");
    if let Some(placed) = figure_ui(ui, slot, item, None, run, (0, 0), "contributions") {
        let cell_at = |at: Option<(f32, f32)>| at.and_then(|(x, y)| placed.geometry.cell_at(x, y));
        match cell_at(placed.hovered_unit()) {
            Some(CellId::Head { layer, head }) => {
                let v = c.heads.get(layer).and_then(|row| row.get(head));
                let v = v.copied().unwrap_or(f64::NAN);
                placed.response.clone().on_hover_text_at_pointer(format!(
                    "head {layer}.{head}: {v:+.4}\nclick for its split over the keys"
                ));
            }
            Some(CellId::Mlp { layer }) => {
                let v = c.mlp.get(layer).copied().unwrap_or(f64::NAN);
                placed
                    .response
                    .clone()
                    .on_hover_text_at_pointer(format!("MLP {layer}: {v:+.4}"));
            }
            _ => {}
        }
        if let Some(CellId::Head { layer, head }) = cell_at(placed.clicked_unit()) {
            cx.state.answer.head = Some((layer, head));
        }
        if let Some((l, h)) = cx.state.answer.head
            && let Some(area) = placed.geometry.area_of(CellId::Head { layer: l, head: h })
        {
            outline_ui(ui, &placed, area, outline(ui));
        }
    }
    let Some((l, h)) = cx
        .state
        .answer
        .head
        .filter(|&(l, h)| l < layers && h < heads)
    else {
        return;
    };
    let Some(split) = r.splits.get(l).and_then(|row| row.get(h)) else {
        return;
    };
    ui.horizontal(|ui| {
        ui.strong(format!("head {l}.{h}: {:+.4}", c.heads[l][h]));
        if ui.button("Open in Heatmap").clicked() {
            cx.state.layer_idx = l;
            cx.state.all_layers = false;
            cx.state.head_idx = h;
            cx.state.head_mode = HeadMode::Single;
            cx.state.selected_queries = vec![r.target.position];
            cx.state.view = ViewKind::Heatmap;
        }
    });
    let row = run.maps.head(l, h);
    let smax = split.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    egui::Grid::new("answer-split")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("key");
            ui.strong("attention");
            ui.strong("contribution");
            ui.end_row();
            for (j, v) in split.iter().enumerate() {
                ui.label(labels.get(j).map_or("", String::as_str));
                let a = row.as_ref().map_or(f32::NAN, |m| m[[r.target.position, j]]);
                ui.label(format!("{a:.3}"));
                let (rect, _) = ui.allocate_exact_size(Vec2::new(160.0, 12.0), Sense::hover());
                let w = if smax > 0.0 {
                    (v.abs() / smax) as f32 * 78.0
                } else {
                    0.0
                };
                let mid = rect.center().x;
                let bar = if *v >= 0.0 {
                    Rect::from_min_max(Pos2::new(mid, rect.min.y), Pos2::new(mid + w, rect.max.y))
                } else {
                    Rect::from_min_max(Pos2::new(mid - w, rect.min.y), Pos2::new(mid, rect.max.y))
                };
                ui.painter().rect_filled(bar, 0.0, diverging(*v, smax));
                ui.label(format!("{v:+.4}"));
                ui.end_row();
            }
        });
}

/// The routes figure (layers bottom to top, tokens left to right) with the threshold slider,
/// which re-cuts the graph already computed.
fn routes_ui(
    ui: &mut egui::Ui,
    slot: &mut FigureSlot,
    item: &Item,
    cx: &mut ViewCx<'_>,
    g: &RouteGraph,
    run: &Arc<Run>,
) {
    let n = g.tokens();
    let s = &mut cx.state.answer;
    ui.horizontal(|ui| {
        ui.add(
            egui::Slider::new(&mut s.threshold, MIN_THRESHOLD..=0.5)
                .logarithmic(true)
                .text("threshold τ"),
        );
    });
    let position = s.target_on(n).position.unwrap_or(n.saturating_sub(1));
    let routes = match g.routes(position, s.threshold) {
        Ok(r) => r,
        Err(e) => {
            ui.colored_label(ui.visuals().error_fg_color, e.to_string());
            return;
        }
    };
    ui.weak(format!(
        "{} edges from the output at position {position}; hover an edge for its heads, click an attention edge to open its layer",
        routes.edges.len()
    ));
    let cut = (position, s.threshold.to_bits());
    let Some(placed) = figure_ui(ui, slot, item, Some(&routes), run, cut, "routes") else {
        return;
    };
    // Within 3 points of a stroke's edge.
    let slack = 3.0 * placed.unit_from_screen(placed.rect.min + Vec2::X).0;
    let edge_at = |at: Option<(f32, f32)>| {
        at.and_then(|(x, y)| placed.geometry.edge_at(x, y, slack))
            .and_then(|e| Some((e, routes.edges.get(e.index)?)))
    };
    if let Some((drawn, e)) = edge_at(placed.hovered_unit()) {
        let mut text = format!(
            "{:?} edge, importance {:.3}: ({}, {}, {:?}) → ({}, {}, {:?})",
            e.kind, e.importance, e.from.0, e.from.1, e.from.2, e.to.0, e.to.1, e.to.2
        );
        if let Some(heads) = &e.heads {
            let mut by: Vec<(usize, f32)> = heads.iter().copied().enumerate().collect();
            by.sort_by(|a, b| b.1.total_cmp(&a.1));
            let top: Vec<String> = by
                .iter()
                .take(4)
                .map(|(h, v)| format!("h{h} {v:.3}"))
                .collect();
            text.push_str(&format!(
                "\nheads: {}\nclick to open layer {}'s heads",
                top.join(", "),
                e.to.0
            ));
        }
        placed.response.clone().on_hover_text_at_pointer(text);
        // The hovered edge, traced over the figure.
        let (a, b) = (drawn.a, drawn.b);
        let to_screen = |p: (f32, f32)| {
            placed
                .screen_from_unit(UnitRect {
                    x: p.0,
                    y: p.1,
                    w: 0.0,
                    h: 0.0,
                })
                .min
        };
        let clip = placed.rect.intersect(ui.clip_rect());
        ui.painter()
            .with_clip_rect(clip)
            .line_segment([to_screen(a), to_screen(b)], outline(ui));
    }
    if let Some((_, e)) = edge_at(placed.clicked_unit())
        && e.kind == EdgeKind::Attn
    {
        cx.state.layer_idx = e.to.0;
        cx.state.all_layers = false;
        cx.state.view = ViewKind::Grid;
    }
}

/// The corrupted text, the site and Run.
fn patching_controls_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    if cx.state.answer.text_b.is_empty() && !cx.state.text.is_empty() {
        cx.state.answer.text_b = suggest_corrupted(&cx.state.text);
    }
    ui.horizontal(|ui| {
        let label = ui.label("Corrupted text (same number of tokens):");
        ui.add(egui::TextEdit::singleline(&mut cx.state.answer.text_b).desired_width(360.0))
            .labelled_by(label.id);
    });
    ui.horizontal(|ui| {
        egui::ComboBox::from_label("site")
            .selected_text(cx.state.answer.site.name())
            .show_ui(ui, |ui| {
                for site in PatchSite::ALL {
                    ui.selectable_value(&mut cx.state.answer.site, site, site.name());
                }
            });
        if ui.button("Run patching").clicked() {
            cx.request(Request::ComputeAnswer);
        }
    });
}

/// The recovery figure: layers × positions (or heads), diverging around 0, with each cell's
/// value on hover.
fn patching_ui(
    ui: &mut egui::Ui,
    slot: &mut FigureSlot,
    item: &Item,
    run: &Arc<Run>,
    r: &PatchingResult,
    labels: &[String],
) {
    let Some(placed) = figure_ui(ui, slot, item, None, run, (0, 0), "patching") else {
        return;
    };
    let hovered = placed
        .hovered_unit()
        .and_then(|(x, y)| placed.geometry.cell_at(x, y));
    if let Some(CellId::Patch { layer, column }) = hovered
        && let Some(v) = r
            .patching
            .recovery
            .get(layer)
            .and_then(|row| row.get(column))
    {
        let what = if r.patching.site == PatchSite::Head {
            format!("head {column}")
        } else {
            format!(
                "position {column} ({:?} / {:?})",
                labels.get(column).map_or("", String::as_str),
                r.labels_b.get(column).map_or("", String::as_str)
            )
        };
        placed
            .response
            .clone()
            .on_hover_text_at_pointer(format!("layer {layer}, {what}: recovery {v:.3}"));
    }
}
