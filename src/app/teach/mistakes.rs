//! The classic mistakes, one toggle each: the correct and the mistaken map of the selected head
//! side by side (`render`'s labelled figures: tokens on both axes, colorbar), the one-sentence lesson and the effect measured on this input
//! (`analysis::teach::mistake_effect`, computed on the worker thread after the run). No √d
//! scaling adds the row entropy against d_head, a missing LayerNorm the activations' norm per
//! layer, a forgotten causal mask outlines the upper triangle that fills.

use super::TeachCx;
use super::figure_texture::{self, FigureTexture};
use super::presenter::Step;
use super::settings::TeachSettings;
use crate::analysis::teach::{MistakeEffect, entropy_vs_d_head};
use crate::app::theme;
use crate::app::view::{DialogPurpose, Request};
use crate::engine::{AttentionRun, Mistake};
use crate::render::{self, FigureOptions};
use crate::tokenize::Token;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};
use std::sync::Arc;

/// The tallest a map's figure gets, in points.
const MAX_MAP_HEIGHT_PT: f32 = 460.0;
/// The smallest room a map's figure is fitted to, in points.
const MIN_MAP_PT: f32 = 160.0;

/// Head widths of the entropy plot.
const D_HEADS: [usize; 8] = [4, 8, 16, 32, 64, 128, 256, 512];

/// A mistake's name on its toggle.
pub fn toggle_label(m: Mistake) -> &'static str {
    match m {
        Mistake::NoScaling => "No √d scaling",
        Mistake::NoPositions => "No positional encoding",
        Mistake::NoCausalMask => "Forgotten causal mask",
        Mistake::SoftmaxWrongAxis => "Softmax over the wrong axis",
        Mistake::ElementwiseValues => "Weights × V elementwise",
        Mistake::NoLayerNorm => "Missing LayerNorm",
        Mistake::ChunkByHeads => "Chunking by 2^heads",
    }
}

impl crate::app::AttnApp {
    /// The correct and the mistaken map's figures on screen (pixels and the options they were
    /// drawn with), for tests.
    pub fn mistake_figures_on_screen(&self) -> [Option<(&image::RgbaImage, &FigureOptions)>; 2] {
        let view = &self.panels.central.teach.mistakes;
        [view.correct.on_screen(), view.mistaken.on_screen()]
    }

    /// The measured effect of the mistake shown for the run on screen, once the worker has
    /// computed it.
    pub fn mistake_effect(&self) -> Option<Arc<MistakeEffect>> {
        let (key, _) = self.current.as_ref()?;
        self.effects
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, e)| e.clone())
    }
}

/// Shows the next or previous mistake (presenter keys without a lesson).
pub fn step_mistake(teach: &mut TeachSettings, step: Step) {
    let all = Mistake::ALL;
    let at = teach.mistake.and_then(|m| all.iter().position(|&x| x == m));
    let next = match (at, step) {
        (None, Step::Forward) => Some(0),
        (None, Step::Back) => None,
        (Some(i), Step::Forward) => Some((i + 1).min(all.len() - 1)),
        (Some(0), Step::Back) => None,
        (Some(i), Step::Back) => Some(i - 1),
    };
    teach.mistake = next.and_then(|i| all.get(i).copied());
}

/// What one side's texture shows.
#[derive(Clone, Debug, PartialEq)]
struct SideKey {
    effect: usize,
    mistaken: bool,
    layer_idx: usize,
    head_idx: usize,
    colormap: render::Colormap,
    /// The room the figure was fitted to, in points, and the pixels per point.
    room_pt: [u32; 2],
    scale: u32,
}

/// The mistakes view's runtime state.
#[derive(Default)]
pub struct MistakesView {
    correct: FigureTexture<SideKey>,
    mistaken: FigureTexture<SideKey>,
    /// The entropy curves of the no-scaling plot, for this many keys.
    entropy: Option<(usize, Vec<f32>, Vec<f32>)>,
}

impl MistakesView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        ui.horizontal_wrapped(|ui| {
            ui.label("Make a mistake on purpose:");
            for m in Mistake::ALL {
                let on = tc.cx.state.teach.mistake == Some(m);
                let response = ui
                    .selectable_label(on, toggle_label(m))
                    .on_hover_text(m.lesson());
                if response.clicked() {
                    tc.cx.state.teach.mistake = if on { None } else { Some(m) };
                }
            }
        });
        let Some(mistake) = tc.cx.state.teach.mistake else {
            tc.explain(
                ui,
                "Each button breaks attention in one classic way, the way tutorials (and the \
                 code of the tutorial attnviz is built around) get it wrong. The correct map and \
                 the broken one appear side by side, with what changed, measured on your input.",
            );
            return;
        };
        tc.explain(ui, mistake.lesson());
        let effect = tc
            .cx
            .mistake_effect
            .clone()
            .filter(|e| e.mistake == mistake);
        let Some(effect) = effect else {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("running the model with and without \"{mistake}\"…"));
            });
            return;
        };
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Export figure…")
                .on_hover_text("Both maps side by side as a PNG or SVG figure, for slides")
                .clicked()
            {
                tc.cx
                    .request(Request::Dialog(DialogPurpose::ExportTeachFigure));
            }
            ui.strong(&effect.summary);
        });
        egui::Grid::new("teach-mistake-figures")
            .striped(true)
            .show(ui, |ui| {
                ui.label("");
                ui.strong("correct");
                ui.strong("mistaken");
                ui.end_row();
                for f in &effect.figures {
                    ui.label(f.name);
                    ui.label(render::format_significant(f.correct));
                    ui.label(render::format_significant(f.mistaken));
                    ui.end_row();
                }
            });
        self.side_by_side(ui, tc, &effect);
        match mistake {
            Mistake::NoScaling => self.entropy_plot(ui, tc.run.tokens.len()),
            Mistake::NoLayerNorm => norms_plot(ui, &effect),
            _ => {}
        }
    }

    /// The correct and the mistaken map of the selected head, side by side, each as `render`'s
    /// labelled figure (tokens on both axes, colorbar, masked legend).
    fn side_by_side(
        &mut self,
        ui: &mut egui::Ui,
        tc: &TeachCx<'_, '_>,
        effect: &Arc<MistakeEffect>,
    ) {
        let state = &tc.cx.state;
        let (layer_idx, head_idx) = (state.layer_idx, state.head_idx);
        // Each side's mask is the one its run applied (the mistake can drop the causal mask).
        let masks = [effect.correct.mask.clone(), effect.mistaken.mask.clone()];
        let colormap = state.colormap;
        let id = Arc::as_ptr(effect) as usize;
        let labels = tc.labels.clone();
        let scale = figure_texture::pixel_scale(ui.ctx());
        ui.columns(2, |cols| {
            for (i, col) in cols.iter_mut().enumerate() {
                let mistaken = i == 1;
                let run: &AttentionRun = if mistaken {
                    &effect.mistaken
                } else {
                    &effect.correct
                };
                col.strong(if mistaken {
                    format!("with the mistake ({})", effect.mistake)
                } else {
                    "correct".to_owned()
                });
                let Some(map) = run.maps.head(layer_idx, head_idx) else {
                    col.label("no such head");
                    continue;
                };
                let n = map.nrows();
                // The room of the column, rounded so that a small resize keeps the texture.
                let room = egui::vec2(
                    (col.available_width() / 16.0).floor() * 16.0,
                    MAX_MAP_HEIGHT_PT,
                )
                .max(egui::vec2(MIN_MAP_PT, MIN_MAP_PT));
                let key = SideKey {
                    effect: id,
                    mistaken,
                    layer_idx,
                    head_idx,
                    colormap,
                    room_pt: [room.x as u32, room.y as u32],
                    scale,
                };
                let slot = if mistaken {
                    &mut self.mistaken
                } else {
                    &mut self.correct
                };
                let mask = masks[i].clone();
                let is_pad: Vec<bool> = run.tokens.iter().map(Token::is_pad).collect();
                let (max_w, max_h) = figure_texture::max_pixels(col.ctx(), room, scale);
                slot.prepare(col.ctx(), &format!("teach-mistake-{i}"), key, || {
                    let all: Vec<usize> = (0..n).collect();
                    let masked = render::view::masked_cells(&mask, n, &is_pad, &all);
                    let opts = render::teach::map_options(&labels, masked, colormap, scale);
                    render::fitted_figure(
                        map.view(),
                        &opts,
                        max_w,
                        max_h,
                        figure_texture::MAX_CELL_PT,
                    )
                    .ok()
                });
                let label = if mistaken {
                    "mistaken map"
                } else {
                    "correct map"
                };
                let shown = slot.show(col, room, label);
                if let Some(note) = shown.as_ref().and_then(|s| s.pooled_note(n)) {
                    col.weak(note);
                }
                if mistaken
                    && effect.mistake == crate::engine::Mistake::NoCausalMask
                    && let Some(shown) = shown
                {
                    // Outline the upper triangle, where the future leaks in.
                    let r = shown.cells;
                    col.painter().add(egui::Shape::closed_line(
                        vec![r.left_top(), r.right_top(), r.right_bottom()],
                        egui::Stroke::new(2.0, theme::hover_outline()),
                    ));
                }
                col.label(format!("mask: {}", masks[i]));
            }
        });
    }

    /// Row entropy against d_head, with and without 1/√d_head, for random q and k.
    fn entropy_plot(&mut self, ui: &mut egui::Ui, n_keys: usize) {
        let n_keys = n_keys.max(2);
        if self.entropy.as_ref().is_none_or(|(n, _, _)| *n != n_keys) {
            let scaled = entropy_vs_d_head(&D_HEADS, n_keys, true, 64, 0);
            let unscaled = entropy_vs_d_head(&D_HEADS, n_keys, false, 64, 0);
            self.entropy = Some((n_keys, scaled, unscaled));
        }
        let Some((_, scaled, unscaled)) = &self.entropy else {
            return;
        };
        ui.strong(format!(
            "Mean row entropy over {n_keys} keys against d_head (random q, k; uniform = ln {n_keys} = {:.2} nats)",
            (n_keys as f64).ln()
        ));
        let points = |v: &[f32]| -> Vec<[f64; 2]> {
            D_HEADS
                .iter()
                .zip(v)
                .map(|(&d, &e)| [(d as f64).log2(), f64::from(e)])
                .collect()
        };
        let (a, b) = (points(scaled), points(unscaled));
        Plot::new("teach-entropy")
            .height(180.0)
            .legend(Legend::default())
            .x_axis_label("log2 d_head")
            .y_axis_label("entropy (nats)")
            .allow_zoom(false)
            .allow_drag(false)
            .allow_scroll(false)
            .show(ui, |plot| {
                plot.line(Line::new("× 1/√d_head", PlotPoints::from(a.clone())));
                plot.points(Points::new("× 1/√d_head", PlotPoints::from(a)).radius(3.0));
                plot.line(Line::new("no scaling", PlotPoints::from(b.clone())));
                plot.points(Points::new("no scaling", PlotPoints::from(b)).radius(3.0));
            });
    }
}

/// The residual stream's mean norm after each layer, with and without normalisation.
fn norms_plot(ui: &mut egui::Ui, effect: &MistakeEffect) {
    let line = |run: &AttentionRun| -> Vec<[f64; 2]> {
        run.layer_norms
            .as_deref()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, &v)| [i as f64, f64::from(v)])
            .collect()
    };
    let (a, b) = (line(&effect.correct), line(&effect.mistaken));
    ui.strong("Mean norm of the residual stream after each layer");
    Plot::new("teach-norms")
        .height(180.0)
        .legend(Legend::default())
        .x_axis_label("layer")
        .y_axis_label("norm")
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new("with LayerNorm", PlotPoints::from(a.clone())));
            plot.points(Points::new("with LayerNorm", PlotPoints::from(a)).radius(3.0));
            plot.line(Line::new("without", PlotPoints::from(b.clone())));
            plot.points(Points::new("without", PlotPoints::from(b)).radius(3.0));
        });
}
