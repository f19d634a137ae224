//! The cost of attention as the input grows: FLOPs and memory of one attention layer of the
//! model on screen against n (`analysis::teach::attention_cost`, quadratic in n), plotted with
//! egui_plot from 32 tokens to the model's own limit, with the current input's point on the
//! curve, and the window, strided and block masks compared by the cells a sparse kernel would
//! compute (`allowed_cells`). attnviz itself computes every cell and then masks; the view says
//! so. The legend sits in the top-left corner, and the y-axis is set high enough that no curve
//! passes under it.

use super::TeachCx;
use crate::analysis::teach::{Cost, allowed_cells, attention_cost, attention_cost_cells};
use crate::engine::{AppliedMask, MaskSpec};
use egui_plot::{Corner, Legend, Line, Plot, PlotPoints, Points};

/// The shortest input on the curves (unless the model's limit is below 64).
const FIRST_LENGTH: usize = 32;

/// The longest input whose sparse cells are counted: `allowed_cells` visits every cell, so
/// beyond it (8192² = 67 M cells per mask) the sparse curves stop and the view says where.
const MAX_COUNTED: usize = 8192;

/// The sparse masks compared with the full one.
const SPARSE: [&str; 3] = ["window:32", "strided:32", "block:64"];

/// Height of each plot, in points.
const PLOT_HEIGHT: f32 = 280.0;

/// Space kept between the legend and the highest curve, in points.
const LEGEND_GAP: f32 = 10.0;

/// What the curves depend on: d_model, heads, the input's length, its mask and the model's
/// token limit.
type CurvesKey = (usize, usize, usize, AppliedMask, usize);

/// The curves for one model size and input length.
#[derive(Clone, Debug, PartialEq)]
struct Curves {
    key: CurvesKey,
    /// The input lengths of the curves: up to the model's limit.
    lengths: Vec<usize>,
    /// Per mask ("full" first), the cost at each of `lengths` (the sparse ones stop at
    /// [`MAX_COUNTED`]).
    lines: Vec<(String, Vec<Cost>)>,
    /// The current input: dense cost, and its own mask's cells.
    here: Cost,
    here_masked: Option<(u64, Cost)>,
}

/// One plot as it was last drawn, in screen points (for the layout tests).
#[derive(Clone, Debug, PartialEq)]
pub struct PlottedCost {
    /// The plot's frame (inside the axes).
    pub frame: egui::Rect,
    /// The x-axis' range, in tokens.
    pub x_range: (f64, f64),
    /// The legend's room in the frame's top-left corner (curves stay [`LEGEND_GAP`] away).
    pub legend: egui::Rect,
    /// Each curve's (and the input's point's) name and points.
    pub curves: Vec<(String, Vec<egui::Pos2>)>,
}

/// The cost view's runtime state.
#[derive(Default)]
pub struct CostView {
    curves: Option<Curves>,
    /// Each plot's frame size in the last frame (the legend's share of it sets the y-axis).
    frames: [Option<egui::Vec2>; 2],
    /// The plots as last drawn.
    plotted: Vec<PlottedCost>,
}

impl crate::app::AttnApp {
    /// The cost plots as last drawn, for tests.
    pub fn cost_plots_on_screen(&self) -> &[PlottedCost] {
        &self.panels.central.teach.cost.plotted
    }
}

/// The longest input the model on screen accepts: the demo's [`crate::model::demo::MAX_TOKENS`],
/// a checkpoint's `max_positions`; `None` until a checkpoint's sizes are known.
fn token_limit(tc: &TeachCx<'_, '_>) -> Option<usize> {
    match (&tc.cx.state.model_dir, tc.cx.model_info) {
        (None, _) => Some(crate::model::demo::MAX_TOKENS),
        (Some(_), Some(info)) => Some(info.max_positions),
        (Some(_), None) => None,
    }
}

/// The input lengths of the curves for a model taking at most `limit` tokens: the powers of two
/// from [`FIRST_LENGTH`] (from 2 for limits up to 64) below the limit, then the limit itself.
fn lengths(limit: usize) -> Vec<usize> {
    let limit = limit.max(2);
    let first = if limit > 2 * FIRST_LENGTH {
        FIRST_LENGTH
    } else {
        2
    };
    let mut out: Vec<usize> = (1..usize::BITS)
        .map(|k| 1usize << k)
        .take_while(|&p| p < limit)
        .filter(|&p| p >= first)
        .collect();
    out.push(limit);
    out
}

/// The top of a y-axis from 0 for `curves` (points `[x, y]`, x from 0 to `x_max`) drawn in a
/// frame of `frame` points, such that a legend of `legend` points (gap included) in the frame's
/// top-left corner covers none of them: at least 5 % above the highest point, and high enough
/// that every curve stays below the legend over the legend's width (a polyline's highest
/// point over an interval is a vertex or the interval's end). The legend takes at most 80 % of
/// the frame's height.
fn y_top(curves: &[Vec<[f64; 2]>], x_max: f64, legend: egui::Vec2, frame: egui::Vec2) -> f64 {
    let y_max = curves.iter().flatten().map(|p| p[1]).fold(0.0f64, f64::max);
    let y_max = if y_max > 0.0 && y_max.is_finite() {
        y_max
    } else {
        1.0
    };
    let x_edge = x_max * f64::from(legend.x / frame.x.max(1.0));
    let mut under = 0.0f64;
    for pts in curves {
        for (i, p) in pts.iter().enumerate() {
            if p[0] <= x_edge {
                under = under.max(p[1]);
            }
            // Where a segment crosses the legend's right edge.
            if let Some(q) = pts.get(i + 1)
                && p[0] < x_edge
                && q[0] > x_edge
            {
                let t = (x_edge - p[0]) / (q[0] - p[0]);
                under = under.max(p[1] + t * (q[1] - p[1]));
            }
        }
    }
    let share = (f64::from(legend.y) / f64::from(frame.y.max(1.0))).clamp(0.0, 0.8);
    (y_max * 1.05).max(under / (1.0 - share))
}

/// The height egui_plot's legend takes in a plot, in points: its 4-point inset, a frame with a
/// 4-point margin and a stroke above and below, and `entries` rows of `row` points `spacing`
/// apart.
fn legend_height(entries: usize, row: f32, spacing: f32, stroke: f32) -> f32 {
    let k = entries.max(1) as f32;
    4.0 + 2.0 * (4.0 + stroke) + k * row + (k - 1.0) * spacing
}

/// The width egui_plot's legend takes in a plot, in points: its 4-point inset, a frame with an
/// 8-point margin and a stroke left and right, the entries' dot (a row square and a fifth of
/// it) and the `widest` name.
fn legend_width(widest: f32, row: f32, stroke: f32) -> f32 {
    4.0 + 2.0 * (8.0 + stroke) + row * 1.2 + widest
}

impl CostView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        let (Some(dims), Some(limit)) = (tc.model_dims(), token_limit(tc)) else {
            ui.label("waiting for the model's sizes…");
            return;
        };
        let n = tc.run.tokens.len().max(1);
        let mask = tc.mask().clone();
        let key = (dims.d_model, dims.heads, n, mask.clone(), limit);
        if self.curves.as_ref().is_none_or(|c| c.key != key) {
            self.curves = Some(curves(key, &mask));
        }
        let Some(c) = &self.curves else {
            return;
        };
        let (d, h) = (dims.d_model, dims.heads);
        tc.explain(
            ui,
            &format!(
                "Every query scores every key: n tokens make n × n scores per head. Doubling the \
                 input doubles the projections' work but quadruples the scores' work and memory, \
                 so for long inputs attention's n² dominates. One attention layer of this model \
                 (d_model {d}, {h} heads) on your {n} tokens: {:.3} MFLOP and {:.2} MB. Sparse \
                 masks allow fewer cells: a sparse kernel computes only those, growing about \
                 linearly. attnviz itself computes every cell densely and then masks, so its own \
                 cost is the full curve whatever the mask. The curves end at this model's limit, \
                 {limit} tokens.",
                c.here.flops / 1e6,
                c.here.bytes / 1e6
            ),
        );
        if let Some((cells, cost)) = &c.here_masked {
            ui.label(format!(
                "your mask ({mask}) allows {cells} of {} cells: a sparse kernel would need {:.3} MFLOP and {:.2} MB",
                n * n,
                cost.flops / 1e6,
                cost.bytes / 1e6
            ));
        }
        if limit > MAX_COUNTED {
            ui.label(format!(
                "the sparse curves stop at {MAX_COUNTED} tokens: counting their cells up to \
                 {limit} would take too long"
            ));
        }
        let row = ui.text_style_height(&egui::TextStyle::Body);
        let spacing = ui.spacing().item_spacing.y;
        let stroke = ui.visuals().window_stroke().width;
        let band = legend_height(c.lines.len() + 1, row, spacing, stroke);
        let font = egui::TextStyle::Body.resolve(ui.style());
        let widest = c
            .lines
            .iter()
            .map(|(name, _)| name.clone())
            .chain([format!("this input (n = {n})")])
            .map(|name| {
                ui.fonts_mut(|f| f.layout_no_wrap(name, font.clone(), egui::Color32::WHITE))
                    .size()
                    .x
            })
            .fold(0.0f32, f32::max);
        let legend = egui::vec2(legend_width(widest, row, stroke), band);
        let half = ((ui.available_width() - 16.0) / 2.0).max(200.0);
        let mut plotted = Vec::new();
        let frames = &mut self.frames;
        ui.horizontal_top(|ui| {
            for (title, unit, pick) in [
                ("FLOPs of one attention layer", "MFLOP", 0),
                ("Memory of one attention layer", "MB", 1),
            ] {
                ui.vertical(|ui| {
                    ui.set_width(half);
                    ui.strong(title);
                    let value = |cost: &Cost| {
                        if pick == 0 {
                            cost.flops / 1e6
                        } else {
                            cost.bytes / 1e6
                        }
                    };
                    let mut series: Vec<(String, Vec<[f64; 2]>)> = c
                        .lines
                        .iter()
                        .map(|(name, costs)| {
                            let pts = c
                                .lengths
                                .iter()
                                .zip(costs)
                                .map(|(&len, cost)| [len as f64, value(cost)])
                                .collect();
                            (name.clone(), pts)
                        })
                        .collect();
                    series.push((
                        format!("this input (n = {n})"),
                        vec![[n as f64, value(&c.here)]],
                    ));
                    let guess = egui::vec2(half - 60.0, PLOT_HEIGHT - 40.0);
                    let frame_pt = frames.get(pick).copied().flatten().unwrap_or(guess);
                    let x_max = c.lengths.last().copied().unwrap_or(1).max(n) as f64;
                    let points: Vec<Vec<[f64; 2]>> =
                        series.iter().map(|(_, pts)| pts.clone()).collect();
                    let top = y_top(
                        &points,
                        x_max,
                        legend + egui::Vec2::splat(LEGEND_GAP),
                        frame_pt,
                    );
                    let response = Plot::new(format!("teach-cost-{pick}"))
                        .height(PLOT_HEIGHT)
                        .width(half)
                        .legend(
                            Legend::default()
                                .position(Corner::LeftTop)
                                .follow_insertion_order(true),
                        )
                        .x_axis_label("tokens n")
                        .y_axis_label(unit)
                        .include_x(0.0)
                        .include_x(x_max)
                        .include_y(0.0)
                        .include_y(top)
                        .set_margin_fraction(egui::Vec2::ZERO)
                        .allow_zoom(false)
                        .allow_drag(false)
                        .allow_scroll(false)
                        .allow_double_click_reset(false)
                        .allow_boxed_zoom(false)
                        .show(ui, |plot| {
                            let last = series.len() - 1;
                            for (i, (name, pts)) in series.iter().enumerate() {
                                if i == last {
                                    plot.points(
                                        Points::new(name.clone(), PlotPoints::from(pts.clone()))
                                            .radius(6.0),
                                    );
                                } else {
                                    plot.line(Line::new(
                                        name.clone(),
                                        PlotPoints::from(pts.clone()),
                                    ));
                                }
                            }
                        });
                    let t = &response.transform;
                    let frame = *t.frame();
                    if let Some(slot) = frames.get_mut(pick) {
                        *slot = Some(frame.size());
                    }
                    if (frame.size() - frame_pt).length() > 0.5 {
                        // The first frame guessed the frame's height: draw once more.
                        ui.ctx().request_repaint();
                    }
                    let bounds = t.bounds();
                    plotted.push(PlottedCost {
                        frame,
                        x_range: (bounds.min()[0], bounds.max()[0]),
                        legend: egui::Rect::from_min_size(frame.min, legend),
                        curves: series
                            .iter()
                            .map(|(name, pts)| {
                                let screen = pts
                                    .iter()
                                    .map(|p| {
                                        t.position_from_point(&egui_plot::PlotPoint::new(
                                            p[0], p[1],
                                        ))
                                    })
                                    .collect();
                                (name.clone(), screen)
                            })
                            .collect(),
                    });
                });
            }
        });
        self.plotted = plotted;
    }
}

/// The curves for `key` = (d_model, heads, n, mask, limit).
fn curves(key: CurvesKey, mask: &AppliedMask) -> Curves {
    let (d, h, n, _, limit) = key.clone();
    let lengths = lengths(limit);
    let mut lines = vec![(
        "full (what attnviz computes)".to_owned(),
        lengths
            .iter()
            .map(|&len| attention_cost(len, d, h))
            .collect(),
    )];
    for spec in SPARSE {
        let Ok(parsed) = MaskSpec::parse(spec) else {
            continue;
        };
        let costs = lengths
            .iter()
            .take_while(|&&len| len <= MAX_COUNTED)
            .map(|&len| {
                let cells = allowed_cells(&parsed, len).unwrap_or((len * len) as u64);
                attention_cost_cells(len, cells, d, h)
            })
            .collect();
        lines.push((format!("{spec} (sparse kernel)"), costs));
    }
    let here_masked = Some(mask)
        .filter(|m| !m.is_none())
        .and_then(|m| allowed_cells(m.spec(), n).ok())
        .map(|cells| (cells, attention_cost_cells(n, cells, d, h)));
    Curves {
        here: attention_cost(n, d, h),
        here_masked,
        lines,
        lengths,
        key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curves_end_at_the_models_limit() {
        assert_eq!(lengths(512), [32, 64, 128, 256, 512]);
        assert_eq!(lengths(4096).last(), Some(&4096));
        assert_eq!(lengths(4096).first(), Some(&32));
        // GPT-2 fixtures and other small limits: from 2 tokens, ending at the limit.
        assert_eq!(lengths(40), [2, 4, 8, 16, 32, 40]);
        assert_eq!(lengths(1), [2]);
        let c = curves(
            (384, 12, 9, AppliedMask::default(), 512),
            &AppliedMask::default(),
        );
        assert_eq!(c.lengths.last(), Some(&512));
        for (name, costs) in &c.lines {
            assert_eq!(costs.len(), c.lengths.len(), "{name}");
        }
    }

    /// Whether segment a–b meets `rect` (sampled finely: the curves are a few hundred points
    /// across).
    fn segment_meets(a: egui::Pos2, b: egui::Pos2, rect: egui::Rect) -> bool {
        (0..=256).any(|i| rect.contains(a.lerp(b, i as f32 / 256.0)))
    }

    #[test]
    fn no_curve_passes_under_the_legend() {
        // MiniLM (d 384, 12 heads, limit 512), the demo (d 256, 8 heads, limit 4096) and GPT-2
        // (d 768, 12 heads, limit 1024), plots 500 × 220 points with a 260 × 120 legend: map
        // every curve to the screen as egui_plot does with the axis from 0 to y_top and check
        // that none meets the legend.
        for (d, h, limit) in [(384, 12, 512), (256, 8, 4096), (768, 12, 1024)] {
            let c = curves(
                (d, h, 7, AppliedMask::default(), limit),
                &AppliedMask::default(),
            );
            let frame = egui::Rect::from_min_size(egui::pos2(60.0, 20.0), egui::vec2(500.0, 220.0));
            let size = egui::vec2(260.0, legend_height(c.lines.len() + 1, 17.0, 3.0, 1.0));
            let legend = egui::Rect::from_min_size(frame.min, size);
            let x_max = *c.lengths.last().unwrap_or(&1) as f64;
            assert_eq!(x_max as usize, limit);
            for pick in 0..2 {
                let value = |cost: &Cost| if pick == 0 { cost.flops } else { cost.bytes };
                let curves: Vec<Vec<[f64; 2]>> = c
                    .lines
                    .iter()
                    .map(|(_, costs)| {
                        c.lengths
                            .iter()
                            .zip(costs)
                            .map(|(&len, cost)| [len as f64, value(cost)])
                            .collect()
                    })
                    .collect();
                let gap = egui::Vec2::splat(LEGEND_GAP);
                let top = y_top(&curves, x_max, size + gap, frame.size());
                let screen = |p: &[f64; 2]| {
                    egui::pos2(
                        frame.left() + (p[0] / x_max) as f32 * frame.width(),
                        frame.bottom() - (p[1] / top) as f32 * frame.height(),
                    )
                };
                for (pts, (name, _)) in curves.iter().zip(&c.lines) {
                    let pts: Vec<egui::Pos2> = pts.iter().map(screen).collect();
                    assert!(
                        pts.iter().all(|p| frame.contains(*p)),
                        "{name} off the plot"
                    );
                    for pair in pts.windows(2) {
                        assert!(
                            !segment_meets(pair[0], pair[1], legend),
                            "{name} (d {d}, limit {limit}) passes under the legend {legend:?}"
                        );
                    }
                }
            }
        }
    }
}
