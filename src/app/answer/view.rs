//! The Answer view: tabs for the logit lens, contributions, routes and patching of the run on
//! screen. It reads finished results from the controller and asks for work through requests;
//! the numbers come from `pipeline::answer`, as `attnviz analyze` computes them.

use super::compute::{ContributionsResult, Item, Kind, LensResult, PatchingResult, name_in};
use super::{AnswerSettings, AnswerTab, Controller, suggest_corrupted};
use crate::analysis::answer::patching::PatchSite;
use crate::analysis::answer::routes::{EdgeKind, MIN_THRESHOLD, RouteGraph, Stage};
use crate::app::state::{HeadMode, ViewKind};
use crate::app::view::{Request, ViewCx};
use crate::pipeline::Run;
use crate::render::Colormap;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2};
use egui_plot::{Line, Plot, PlotPoints, Points};
use std::sync::Arc;

/// The Answer view (its settings live in [`AnswerSettings`]).
#[derive(Default)]
pub struct AnswerView {
    /// The background work: results by run, the task in flight, what was stopped.
    pub(in crate::app) controller: Controller,
}

/// A colour of `cmap` at `t` in [0, 1], for egui.
fn colour(cmap: Colormap, t: f32) -> Color32 {
    let [r, g, b, _] = cmap.color(t.clamp(0.0, 1.0));
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

/// Diverging colour of `v` in a range symmetric around 0 of half-width `max`.
fn diverging(v: f64, max: f64) -> Color32 {
    let t = if max > 0.0 { 0.5 + 0.5 * v / max } else { 0.5 };
    colour(Colormap::Diverging, t as f32)
}

/// `s` cut to `n` characters with an ellipsis.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
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
        match item {
            Item::Lens(Ok(r)) => lens_ui(ui, &mut cx.state.answer, &r, labels),
            Item::Contributions(Ok(r)) => contributions_ui(ui, cx, &r, run, labels),
            Item::Routes(Ok(g)) => routes_ui(ui, cx, &g, labels),
            Item::Patching(Ok(r)) => patching_ui(ui, &r, labels, cx.state.answer.site),
            Item::Lens(Err(e))
            | Item::Contributions(Err(e))
            | Item::Routes(Err(e))
            | Item::Patching(Err(e)) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        }
    }
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

/// The lens table (layers × positions, the top-1 token coloured by the target's log-prob), the
/// chosen cell's candidates, and the target's log-prob and rank by layer.
fn lens_ui(ui: &mut egui::Ui, s: &mut AnswerSettings, r: &LensResult, labels: &[String]) {
    let layers = r.cells.len();
    let cols = r.positions.len();
    let (cw, ch, lw) = (74.0, 18.0, 56.0);
    ui.label(format!(
        "Top-1 next token per layer (rows, the output at the top) and position (columns); colour: log p({}) from −12 to 0.",
        r.name(r.target.token)
    ));
    let size = Vec2::new(lw + cw * cols as f32, ch * (layers as f32 + 1.0));
    let (resp, painter) = ui.allocate_painter(size, Sense::click());
    let origin = resp.rect.min;
    let font = FontId::proportional(11.0);
    let text_col = ui.visuals().text_color();
    for (c, &p) in r.positions.iter().enumerate() {
        let x = origin.x + lw + cw * c as f32;
        painter.text(
            Pos2::new(x + cw / 2.0, origin.y + ch * layers as f32 + ch / 2.0),
            Align2::CENTER_CENTER,
            short(labels.get(p).map_or("", String::as_str), 10),
            font.clone(),
            text_col,
        );
    }
    for l in 0..layers {
        let y = origin.y + ch * (layers - 1 - l) as f32;
        painter.text(
            Pos2::new(origin.x + lw - 6.0, y + ch / 2.0),
            Align2::RIGHT_CENTER,
            if l == layers - 1 {
                format!("{l} out")
            } else {
                format!("{l}")
            },
            font.clone(),
            text_col,
        );
        for (c, cell) in r.cells[l].iter().enumerate() {
            let rect = Rect::from_min_size(
                Pos2::new(origin.x + lw + cw * c as f32, y),
                Vec2::new(cw - 1.0, ch - 1.0),
            );
            let lp = cell.target_logprob.unwrap_or(f32::NEG_INFINITY);
            let fill = colour(Colormap::Viridis, (lp + 12.0) / 12.0);
            painter.rect_filled(rect, 0.0, fill);
            if s.lens_cell == Some((l, r.positions[c])) {
                painter.rect_stroke(
                    rect,
                    0.0,
                    Stroke::new(2.0, Color32::RED),
                    egui::StrokeKind::Inside,
                );
            }
            if let Some(&(id, _)) = cell.top.first() {
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    short(&r.name(id), 9),
                    font.clone(),
                    text_on(fill),
                );
            }
        }
    }
    if resp.clicked()
        && let Some(pos) = resp.interact_pointer_pos()
    {
        let c = ((pos.x - origin.x - lw) / cw).floor();
        let row = ((pos.y - origin.y) / ch).floor();
        if c >= 0.0 && (c as usize) < cols && row >= 0.0 && (row as usize) < layers {
            s.lens_cell = Some((layers - 1 - row as usize, r.positions[c as usize]));
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

/// The layers × heads map of contributions plus the MLP column; a clicked head's split over
/// the keys beside its attention row.
fn contributions_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    r: &ContributionsResult,
    run: &Run,
    labels: &[String],
) {
    let c = &r.contributions;
    let name = |id| name_in(&r.names, id);
    ui.label(match r.target.foil {
        Some(f) => format!(
            "logit({}) − logit({}) = {:.3}",
            name(r.target.token),
            name(f),
            c.metric
        ),
        None => format!("logit({}) = {:.3}", name(r.target.token), c.metric),
    });
    ui.weak(format!(
        "embeddings {:+.3} · output-projection biases {:+.3} · final norm's shift {:+.3} · sum {:.3}",
        c.embeddings,
        c.attn_bias.iter().sum::<f64>(),
        c.norm_term,
        c.sum
    ));
    let layers = c.heads.len();
    let heads = c.heads.first().map_or(0, Vec::len);
    let max = c
        .heads
        .iter()
        .flatten()
        .chain(&c.mlp)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let (cw, ch, lw) = (40.0, 16.0, 30.0);
    let size = Vec2::new(lw + cw * (heads as f32 + 1.5), ch * (layers as f32 + 1.0));
    let (resp, painter) = ui.allocate_painter(size, Sense::click());
    let origin = resp.rect.min;
    let font = FontId::proportional(10.0);
    let text_col = ui.visuals().text_color();
    let mut hovered = None;
    for l in 0..layers {
        let y = origin.y + ch * (layers - 1 - l) as f32;
        painter.text(
            Pos2::new(origin.x + lw - 4.0, y + ch / 2.0),
            Align2::RIGHT_CENTER,
            l.to_string(),
            font.clone(),
            text_col,
        );
        for col in 0..=heads {
            let x = origin.x + lw + cw * col as f32 + if col == heads { cw * 0.5 } else { 0.0 };
            let rect = Rect::from_min_size(Pos2::new(x, y), Vec2::new(cw - 1.0, ch - 1.0));
            let v = if col == heads {
                c.mlp[l]
            } else {
                c.heads[l][col]
            };
            painter.rect_filled(rect, 0.0, diverging(v, max));
            if col < heads && cx.state.answer.head == Some((l, col)) {
                painter.rect_stroke(
                    rect,
                    0.0,
                    Stroke::new(2.0, Color32::BLACK),
                    egui::StrokeKind::Inside,
                );
            }
            if resp.hover_pos().is_some_and(|p| rect.contains(p)) {
                hovered = Some((l, col, v));
            }
        }
    }
    for col in 0..=heads {
        let x = origin.x + lw + cw * col as f32 + if col == heads { cw * 0.5 } else { 0.0 };
        let label = if col == heads {
            "MLP".to_owned()
        } else {
            format!("h{col}")
        };
        painter.text(
            Pos2::new(x + cw / 2.0, origin.y + ch * layers as f32 + ch / 2.0),
            Align2::CENTER_CENTER,
            label,
            font.clone(),
            text_col,
        );
    }
    if let Some((l, col, v)) = hovered {
        let what = if col == heads {
            format!("MLP {l}")
        } else {
            format!("head {l}.{col}")
        };
        resp.clone().on_hover_text(format!("{what}: {v:+.4}"));
        if resp.clicked() && col < heads {
            cx.state.answer.head = Some((l, col));
        }
    }
    ui.weak(format!(
        "blue negative, red positive, ±{max:.3}; click a head for its split over the keys"
    ));
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

/// The routes graph (layers bottom to top, tokens left to right) with the threshold slider.
fn routes_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>, g: &RouteGraph, labels: &[String]) {
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
        "{} edges from the output at position {position}; width by importance; orange attention, green MLP, grey residual",
        routes.edges.len()
    ));
    let layers = g.layers();
    let width = ui.available_width().clamp(300.0, 1400.0);
    let dx = ((width - 80.0) / n.max(1) as f32).min(90.0);
    // Fits about 600 px: 9 px a level for SmolLM2's 30 layers, at most 14.
    let dy = (600.0 / (2 * layers + 1) as f32).clamp(6.0, 14.0);
    let height = dy * (2 * layers + 1) as f32 + 30.0;
    let (resp, painter) = ui.allocate_painter(Vec2::new(width, height), Sense::click());
    let origin = resp.rect.min;
    let at = |l: usize, i: usize, stage: Stage| {
        let level = 2 * l + usize::from(stage == Stage::Mid);
        Pos2::new(
            origin.x + 60.0 + dx * (i as f32 + 0.5),
            origin.y + height - 24.0 - dy * level as f32,
        )
    };
    let font = FontId::proportional(10.0);
    let text_col = ui.visuals().text_color();
    for i in 0..n {
        painter.text(
            Pos2::new(at(0, i, Stage::In).x, origin.y + height - 10.0),
            Align2::CENTER_CENTER,
            short(labels.get(i).map_or("", String::as_str), 8),
            font.clone(),
            text_col,
        );
    }
    for l in (0..=layers).step_by(layers.div_ceil(8).max(1)) {
        painter.text(
            Pos2::new(origin.x + 4.0, at(l, 0, Stage::In).y),
            Align2::LEFT_CENTER,
            format!("L{l}"),
            font.clone(),
            text_col,
        );
    }
    let mut hovered = None;
    let pointer = resp.hover_pos();
    for (k, e) in routes.edges.iter().enumerate() {
        let (a, b) = (at(e.from.0, e.from.1, e.from.2), at(e.to.0, e.to.1, e.to.2));
        let col = match e.kind {
            EdgeKind::Attn => Color32::from_rgb(0xe6, 0x7e, 0x22),
            EdgeKind::Mlp => Color32::from_rgb(0x27, 0xae, 0x60),
            EdgeKind::Resid => Color32::from_gray(150),
        };
        // A residual and an MLP edge share their ends: bend the MLP one aside.
        let (a, b) = if e.kind == EdgeKind::Mlp {
            (a + Vec2::new(3.0, 0.0), b + Vec2::new(3.0, 0.0))
        } else {
            (a, b)
        };
        painter.line_segment([a, b], Stroke::new(0.5 + 5.0 * e.importance, col));
        if let Some(p) = pointer
            && distance_to_segment(p, a, b) < 4.0
        {
            hovered = Some(k);
        }
    }
    for n in &routes.nodes {
        painter.circle_filled(at(n.0, n.1, n.2), 2.0, text_col);
    }
    if let Some(k) = hovered {
        let e = &routes.edges[k];
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
        resp.clone().on_hover_text(text);
        if resp.clicked() && e.kind == EdgeKind::Attn {
            cx.state.layer_idx = e.to.0;
            cx.state.all_layers = false;
            cx.state.view = ViewKind::Grid;
        }
    }
}

fn distance_to_segment(p: Pos2, a: Pos2, b: Pos2) -> f32 {
    let ab = b - a;
    let t = ((p - a).dot(ab) / ab.length_sq().max(1e-6)).clamp(0.0, 1.0);
    (a + ab * t - p).length()
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

/// The recovery map: layers × positions (or heads), diverging around 0.
fn patching_ui(ui: &mut egui::Ui, r: &PatchingResult, labels: &[String], _site: PatchSite) {
    let p = &r.patching;
    let name = |id| name_in(&r.names, id);
    ui.label(format!(
        "m = {} at position {}: clean {:.3}, corrupted {:.3}; recovery = (m − corrupted)/(clean − corrupted)",
        match r.target.foil {
            Some(f) => format!("logit({}) − logit({})", name(r.target.token), name(f)),
            None => format!("log p({})", name(r.target.token)),
        },
        r.target.position,
        p.metric_clean,
        p.metric_corrupted
    ));
    let layers = p.recovery.len();
    let cols = p.recovery.first().map_or(0, Vec::len);
    let (cw, ch, lw) = (60.0, 14.0, 30.0);
    let size = Vec2::new(lw + cw * cols as f32, ch * (layers as f32 + 2.0));
    let (resp, painter) = ui.allocate_painter(size, Sense::hover());
    let origin = resp.rect.min;
    let font = FontId::proportional(10.0);
    let text_col = ui.visuals().text_color();
    let mut hovered = None;
    for (l, row) in p.recovery.iter().enumerate() {
        let y = origin.y + ch * (layers - 1 - l) as f32;
        painter.text(
            Pos2::new(origin.x + lw - 4.0, y + ch / 2.0),
            Align2::RIGHT_CENTER,
            l.to_string(),
            font.clone(),
            text_col,
        );
        for (c, &v) in row.iter().enumerate() {
            let rect = Rect::from_min_size(
                Pos2::new(origin.x + lw + cw * c as f32, y),
                Vec2::new(cw - 1.0, ch - 1.0),
            );
            painter.rect_filled(rect, 0.0, diverging(v, 1.0));
            if resp.hover_pos().is_some_and(|q| rect.contains(q)) {
                hovered = Some((l, c, v));
            }
        }
    }
    for c in 0..cols {
        let x = origin.x + lw + cw * c as f32 + cw / 2.0;
        let (top, bottom) = if p.site == PatchSite::Head {
            (format!("h{c}"), String::new())
        } else {
            (
                short(labels.get(c).map_or("", String::as_str), 8),
                short(r.labels_b.get(c).map_or("", String::as_str), 8),
            )
        };
        painter.text(
            Pos2::new(x, origin.y + ch * layers as f32 + ch / 2.0),
            Align2::CENTER_CENTER,
            top,
            font.clone(),
            text_col,
        );
        painter.text(
            Pos2::new(x, origin.y + ch * (layers as f32 + 1.0) + ch / 2.0),
            Align2::CENTER_CENTER,
            bottom,
            font.clone(),
            ui.visuals().weak_text_color(),
        );
    }
    if let Some((l, c, v)) = hovered {
        resp.on_hover_text(format!(
            "layer {l}, {} {c}: recovery {v:.3}",
            if p.site == PatchSite::Head {
                "head"
            } else {
                "position"
            }
        ));
    }
    ui.weak("blue −1, white 0, red +1 (full recovery); second label row: the corrupted tokens");
}
