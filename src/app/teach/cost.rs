//! The cost of attention as the input grows: FLOPs and memory of one attention layer of the
//! model on screen against n (`analysis::teach::attention_cost`, quadratic in n), plotted with
//! egui_plot, with the current input's point on the curve, and the window, strided and block
//! masks compared by the cells a sparse kernel would compute (`allowed_cells`). attnviz itself
//! computes every cell and then masks; the view says so.

use super::TeachCx;
use crate::analysis::teach::{Cost, allowed_cells, attention_cost, attention_cost_cells};
use crate::engine::{AppliedMask, MaskSpec};
use egui_plot::{Legend, Line, Plot, PlotPoints, Points};

/// Input lengths of the curves.
const LENGTHS: [usize; 7] = [32, 64, 128, 256, 512, 1024, 2048];

/// The sparse masks compared with the full one.
const SPARSE: [&str; 3] = ["window:32", "strided:32", "block:64"];

/// The curves for one model size and input length.
#[derive(Clone, Debug, PartialEq)]
struct Curves {
    key: (usize, usize, usize, AppliedMask),
    /// Per mask ("full" first), the cost at each of [`LENGTHS`].
    lines: Vec<(String, Vec<Cost>)>,
    /// The current input: dense cost, and its own mask's cells.
    here: Cost,
    here_masked: Option<(u64, Cost)>,
}

/// The cost view's runtime state.
#[derive(Default)]
pub struct CostView {
    curves: Option<Curves>,
}

impl CostView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        let Some(dims) = tc.model_dims() else {
            ui.label("waiting for the model's sizes…");
            return;
        };
        let n = tc.run.tokens.len().max(1);
        let mask = tc.mask().clone();
        let key = (dims.d_model, dims.heads, n, mask.clone());
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
                 cost is the full curve whatever the mask.",
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
        let half = ((ui.available_width() - 16.0) / 2.0).max(200.0);
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
                    Plot::new(format!("teach-cost-{pick}"))
                        .height(260.0)
                        .width(half)
                        .legend(Legend::default())
                        .x_axis_label("tokens n")
                        .y_axis_label(unit)
                        .allow_zoom(false)
                        .allow_drag(false)
                        .allow_scroll(false)
                        .show(ui, |plot| {
                            for (name, costs) in &c.lines {
                                let pts: Vec<[f64; 2]> = LENGTHS
                                    .iter()
                                    .zip(costs)
                                    .map(|(&len, cost)| [len as f64, value(cost)])
                                    .collect();
                                plot.line(Line::new(name.clone(), PlotPoints::from(pts)));
                            }
                            plot.points(
                                Points::new(
                                    format!("this input (n = {n})"),
                                    PlotPoints::from(vec![[n as f64, value(&c.here)]]),
                                )
                                .radius(6.0),
                            );
                        });
                });
            }
        });
    }
}

/// The curves for `key` = (d_model, heads, n, mask).
fn curves(key: (usize, usize, usize, AppliedMask), mask: &AppliedMask) -> Curves {
    let (d, h, n, _) = key.clone();
    let mut lines = vec![(
        "full (what attnviz computes)".to_owned(),
        LENGTHS
            .iter()
            .map(|&len| attention_cost(len, d, h))
            .collect(),
    )];
    for spec in SPARSE {
        let Ok(parsed) = MaskSpec::parse(spec) else {
            continue;
        };
        let costs = LENGTHS
            .iter()
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
        key,
    }
}
