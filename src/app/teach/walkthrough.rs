//! The walkthrough: one query of one head, step by step with Next and Back: the query q, the
//! keys K (rotated by RoPE, or with ALiBi's bias, where the model uses them), the dot products,
//! the scale, the mask (−∞ shown as such), the softmax, the weights times V and the head's
//! output; then, after the head, the model's next-token distribution sampled with temperature,
//! top-k and top-p (`super::sampling`, on checkpoints with an LM head). Each step has a short
//! explanation in plain words; the numbers are the engine's own, read from the layer's trace
//! through `analysis::explain::Explanation`, and the figure is `render`'s. The table below the
//! figure shows the same numbers key by key, each column appearing at the step that makes it.

use super::TeachCx;
use crate::analysis::explain::{Explanation, WalkStep};
use crate::app::view::{DialogPurpose, Request};
use crate::engine::PositionKind;
use crate::render;

pub use crate::app::state::teach::SAMPLING_STEP;

/// How many steps the walkthrough has: the eight of one head, then sampling.
pub const STEP_COUNT: usize = SAMPLING_STEP + 1;

/// How many vector entries a table cell lists before "…".
const SHOWN_DIMS: usize = 6;

/// The walkthrough view's runtime state.
#[derive(Default)]
pub struct WalkthroughView {
    figure: Option<super::texture::KeyedTexture<FigureKey>>,
    sampling: super::sampling::SamplingView,
}

/// What the step figure shows.
#[derive(Clone, Debug, PartialEq)]
struct FigureKey {
    run: usize,
    layer_idx: usize,
    head_idx: usize,
    query_idx: usize,
    step: usize,
    colormap: render::Colormap,
    pixel_scale: u32,
    /// In presenter mode, the width the figure is resampled to (the view's), else 0.
    fit_width: u32,
}

/// A number with four significant digits, −∞ spelled out.
fn num(v: f32) -> String {
    if v == f32::NEG_INFINITY {
        "−∞".to_owned()
    } else {
        render::format_significant(f64::from(v))
    }
}

/// The first entries of a vector, then "…" and the count.
fn vector(v: &[f32]) -> String {
    let shown: Vec<String> = v.iter().take(SHOWN_DIMS).map(|&x| num(x)).collect();
    if v.len() > SHOWN_DIMS {
        format!("[{}, … ({} numbers)]", shown.join(", "), v.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// The step at `idx` (clamped).
pub fn step_at(idx: usize) -> WalkStep {
    WalkStep::ALL.get(idx).copied().unwrap_or(WalkStep::Output)
}

impl WalkthroughView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        if tc.cx.state.teach.step >= SAMPLING_STEP {
            tc.cx.state.teach.step = SAMPLING_STEP;
            self.sampling.ui(ui, tc);
            return;
        }
        let run = tc.run.clone();
        let Some((trace, _)) = super::traced_head(&run, tc.cx.state) else {
            tc.waiting_for_trace(ui);
            return;
        };
        let n = run.tokens.len();
        let head_idx = tc.cx.state.head_idx;
        let query_idx = tc.query_idx(n);
        let e = match Explanation::from_trace(trace, head_idx, query_idx) {
            Ok(e) => e,
            Err(err) => {
                ui.label(format!("nothing to explain: {err}"));
                return;
            }
        };
        let idx = tc.cx.state.teach.step.min(STEP_COUNT - 1);
        tc.cx.state.teach.step = idx;
        let step = step_at(idx);
        let labels = tc.labels.clone();
        let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());

        ui.horizontal_wrapped(|ui| {
            if ui.add_enabled(idx > 0, egui::Button::new("Back")).clicked() {
                tc.cx.state.teach.step = idx - 1;
            }
            if ui
                .add_enabled(idx + 1 < STEP_COUNT, egui::Button::new("Next"))
                .clicked()
            {
                tc.cx.state.teach.step = idx + 1;
            }
            if ui
                .button("Export figure…")
                .on_hover_text("This step as a PNG or SVG figure, for slides")
                .clicked()
            {
                tc.cx
                    .request(Request::Dialog(DialogPurpose::ExportTeachFigure));
            }
            ui.heading(step.title());
            ui.label(format!(
                "· layer {}, head {head_idx}, query {query_idx} \"{}\" · step {} of {STEP_COUNT}",
                e.layer,
                label(query_idx),
                idx + 1
            ));
        });
        let mut words = step.explanation(&e);
        if step == WalkStep::Keys && e.kv_head != e.head {
            let group: Vec<String> = tc
                .cx
                .kv_groups()
                .get(e.kv_head)
                .map(|g| g.iter().map(usize::to_string).collect())
                .unwrap_or_default();
            words.push_str(&format!(
                " This model uses grouped-query attention: query heads {} all read the keys and values of key/value head {}.",
                group.join(", "),
                e.kv_head
            ));
        }
        if step == WalkStep::Keys && e.position == PositionKind::Alibi {
            words.push_str(
                " ALiBi does not rotate anything: it adds a penalty to each score that grows with the distance between the tokens (next steps).",
            );
        }
        tc.explain(ui, &words);
        self.figure_ui(ui, tc, &e, step, idx);
        self.table_ui(ui, &e, idx, &label);
    }

    /// The step's figure (labelled vectors, matrices and bars), drawn by `render::teach` as the
    /// export writes it, scaled to the view's width and at most a third of its height.
    fn figure_ui(
        &mut self,
        ui: &mut egui::Ui,
        tc: &TeachCx<'_, '_>,
        e: &Explanation,
        step: WalkStep,
        idx: usize,
    ) {
        // Presenter mode fills the width with a figure rendered at a larger pixel scale, so
        // its smallest text stays at least `presenter::MIN_FIGURE_TEXT_PX` on screen; normal
        // mode draws the 1× figure, at most twice its size and half the view's height.
        let presenting = tc.cx.state.teach.presenter;
        let width = ui.available_width();
        let mut style = super::export::style(tc.cx.state);
        // The texture may not be wider than the GPU allows: render at the presenter scale,
        // then resample to the view's width (never wider than the largest texture).
        let max_side = ui.ctx().input(|i| i.max_texture_side) as u32;
        let fit_width = if presenting {
            style.pixel_scale = super::presenter::figure_pixel_scale(width);
            (width.floor() as u32).clamp(1, max_side.max(1))
        } else {
            0
        };
        let key = FigureKey {
            run: tc.run_id(),
            layer_idx: e.layer,
            head_idx: e.head,
            query_idx: e.query,
            step: idx,
            colormap: tc.cx.state.colormap,
            pixel_scale: style.pixel_scale,
            fit_width,
        };
        let labels = tc.labels.as_ref();
        let tex = super::texture::KeyedTexture::get(
            &mut self.figure,
            ui.ctx(),
            "teach-walkthrough-figure",
            key,
            || {
                let img = render::teach::step_figure(e, step, labels, &style).ok()?;
                Some(super::presenter::fit_to_width(img, fit_width))
            },
        );
        if let Some(tex) = tex {
            let (max, max_zoom) = if presenting {
                (egui::vec2(width, f32::INFINITY), 1.0)
            } else {
                (
                    egui::vec2(width, (ui.available_height() / 2.0).max(120.0)),
                    2.0,
                )
            };
            tex.show(
                ui,
                max,
                max_zoom,
                &format!("walkthrough figure: {}", step.title()),
            );
        }
    }

    /// The numbers key by key, each column from the step that makes it.
    fn table_ui(
        &self,
        ui: &mut egui::Ui,
        e: &Explanation,
        idx: usize,
        label: &dyn Fn(usize) -> String,
    ) {
        let at = |s: WalkStep| WalkStep::ALL.iter().position(|&x| x == s).unwrap_or(0) <= idx;
        ui.label(format!(
            "q (token {}, {} numbers{}): {}",
            e.query,
            e.d_head,
            if e.position == PositionKind::Rope {
                ", after RoPE"
            } else {
                ""
            },
            vector(&e.q)
        ));
        if at(WalkStep::Scale) {
            ui.label(format!(
                "scale = {}{}",
                num(e.scale),
                if e.bias.is_some() {
                    ", plus ALiBi's bias per key"
                } else {
                    ""
                }
            ));
        }
        if !at(WalkStep::Keys) {
            return;
        }
        egui::Grid::new("teach-walkthrough-table")
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                ui.strong("key j");
                ui.strong("k_j");
                if at(WalkStep::Scores) {
                    ui.strong("q·k_j");
                }
                if at(WalkStep::Scale) {
                    ui.strong(if e.bias.is_some() {
                        "× scale + bias"
                    } else {
                        "× scale"
                    });
                }
                if at(WalkStep::Mask) {
                    ui.strong("masked");
                }
                if at(WalkStep::Softmax) {
                    ui.strong("weight");
                }
                if at(WalkStep::Values) {
                    ui.strong("v_j");
                    ui.strong("weight × v_j");
                }
                ui.end_row();
                for (j, key) in e.keys.iter().enumerate() {
                    ui.label(format!("{j} \"{}\"", label(j)));
                    ui.label(vector(key));
                    if at(WalkStep::Scores) {
                        ui.label(e.scores.get(j).map_or("?".to_owned(), |&v| num(v)));
                    }
                    if at(WalkStep::Scale) {
                        ui.label(e.scaled.get(j).map_or("?".to_owned(), |&v| num(v)));
                    }
                    if at(WalkStep::Mask) {
                        ui.label(match e.masked.get(j) {
                            Some(Some(v)) => num(*v),
                            _ => "−∞".to_owned(),
                        });
                    }
                    if at(WalkStep::Softmax) {
                        let w = e.weights.get(j).copied().unwrap_or(0.0);
                        ui.add(
                            egui::ProgressBar::new(w.clamp(0.0, 1.0))
                                .desired_width(90.0)
                                .text(num(w)),
                        );
                    }
                    if at(WalkStep::Values) {
                        let w = e.weights.get(j).copied().unwrap_or(0.0);
                        ui.label(e.values.get(j).map_or("?".to_owned(), |v| vector(v)));
                        ui.label(e.values.get(j).map_or("?".to_owned(), |v| {
                            // (+ 0.0 turns the −0 of a zero weight times a negative value
                            // into 0.)
                            vector(&v.iter().map(|&x| w * x + 0.0).collect::<Vec<f32>>())
                        }));
                    }
                    ui.end_row();
                }
            });
        if at(WalkStep::Softmax) {
            let sum: f32 = e.weights.iter().sum();
            ui.label(format!(
                "the weights add up to {}{}",
                num(sum),
                if e.fully_masked {
                    " (the mask left this query nothing: every weight is 0)"
                } else {
                    ""
                }
            ));
        }
        if at(WalkStep::Output) {
            ui.strong(format!(
                "head output = Σ weight × v_j = {} (then W_O mixes it with the other heads)",
                vector(&e.output)
            ));
        }
    }
}
