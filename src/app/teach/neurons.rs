//! The neuron and dimension view (BertViz's neuron view, on every model): for the selected
//! query and key, the per-dimension products qᵢ·kᵢ as bars, their sum (the score) and each
//! one's share of it; which dimensions carry most of the head's scores over the whole input;
//! and the dimension mask: clicking a dimension switches it off for that head, the run is
//! recomputed on the worker with the head's [`crate::engine::DimSubset`], and the head's map
//! changes. The scale stays the model's own, 1/√d_head.
//!
//! Numbers come from the engine's [`crate::engine::Trace`] of the selected layer; the map is
//! `render`'s labelled figure of the head's probabilities (tokens on both axes, colorbar).

use super::TeachCx;
use super::figure_texture::{self, FigureTexture};
use crate::analysis::explain::Explanation;
use crate::app::theme;
use crate::render;
use egui_plot::{Bar, BarChart, Plot};

/// How many dimensions "keep the strongest" keeps.
const TOP_DIMS: usize = 8;

/// What the map texture shows.
#[derive(Clone, Debug, PartialEq)]
struct MapKey {
    run: usize,
    layer_idx: usize,
    head_idx: usize,
    colormap: render::Colormap,
    mask: crate::engine::AppliedMask,
    /// The room the figure was fitted to, in points, and the pixels per point.
    room_pt: [u32; 2],
    scale: u32,
}

/// The tallest the map's figure gets, in points.
const MAX_MAP_HEIGHT_PT: f32 = 520.0;

/// The neuron view's runtime state.
#[derive(Default)]
pub struct NeuronView {
    map: FigureTexture<MapKey>,
}

impl crate::app::AttnApp {
    /// The head's map figure on screen (pixels and the options they were drawn with), for tests.
    pub fn neuron_figure_on_screen(&self) -> Option<(&image::RgbaImage, &render::FigureOptions)> {
        self.panels.central.teach.neurons.map.on_screen()
    }
}

impl NeuronView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        let run = tc.run.clone();
        let Some((trace, head)) = super::traced_head(&run, tc.cx.state) else {
            tc.waiting_for_trace(ui);
            return;
        };
        let layer_idx = trace.layer_idx;
        let head_idx = tc.cx.state.head_idx;
        let d_head = head.q.ncols();
        let n = head.q.nrows();
        if n == 0 || d_head == 0 {
            ui.label("nothing to show: no tokens");
            return;
        }
        let query_idx = tc.query_idx(n);
        let key_idx = tc.cx.state.teach.key_idx.min(n - 1);
        tc.cx.state.teach.key_idx = key_idx;
        let labels = tc.labels.clone();
        let label = |i: usize| labels.get(i).cloned().unwrap_or_else(|| i.to_string());
        let scale = tc.cx.state.scale.factor(d_head);

        ui.horizontal_wrapped(|ui| {
            ui.heading(format!(
                "Layer {layer_idx}, head {head_idx}: query {query_idx} \"{}\"",
                label(query_idx)
            ));
            egui::ComboBox::from_label("key")
                .selected_text(format!("{key_idx} \"{}\"", label(key_idx)))
                .show_ui(ui, |ui| {
                    for k in 0..n {
                        ui.selectable_value(
                            &mut tc.cx.state.teach.key_idx,
                            k,
                            format!("{k} \"{}\"", label(k)),
                        );
                    }
                });
        });
        tc.explain(
            ui,
            &format!(
                "The score of a query for a key is the dot product q·k: the sum, over the head's \
                 {d_head} dimensions, of qᵢ × kᵢ. Each bar below is one of those products. A \
                 dimension where q and k agree in sign pushes the score up; one where they \
                 disagree pulls it down. Click dimensions below to switch them off for this \
                 head: the head then scores with the others only, and its map changes live. \
                 The scale stays the model's own, 1/√{d_head} = {}.",
                render::format_significant(f64::from(scale))
            ),
        );

        let products = Explanation::from_trace(trace, head_idx, query_idx)
            .map(|e| e.dim_products(key_idx))
            .unwrap_or_default();
        let score = head
            .raw_scores
            .get((query_idx, key_idx))
            .copied()
            .unwrap_or(0.0);
        let weight = head.probs.get((query_idx, key_idx)).copied().unwrap_or(0.0);
        let kept = tc
            .cx
            .state
            .teach
            .kept_dims(layer_idx, head_idx)
            .map(<[usize]>::to_vec);
        let is_kept = |i: usize| kept.as_ref().is_none_or(|k| k.contains(&i));
        let importance = crate::analysis::teach::dim_importance(head);

        ui.horizontal_wrapped(|ui| {
            ui.strong(format!(
                "Dimension mask of head {layer_idx}.{head_idx}: {} of {d_head} kept",
                kept.as_ref().map_or(d_head, Vec::len)
            ));
            let teach = &mut tc.cx.state.teach;
            if ui.button("Keep all").clicked() {
                teach.set_kept_dims(layer_idx, head_idx, d_head, (0..d_head).collect());
            }
            if ui
                .button(format!("Keep the strongest {TOP_DIMS}"))
                .on_hover_text("The dimensions with the largest mean |qᵢ × kᵢ| over the input")
                .clicked()
            {
                let mut order: Vec<usize> = (0..importance.len()).collect();
                order.sort_by(|&a, &b| {
                    importance[b]
                        .partial_cmp(&importance[a])
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                order.truncate(TOP_DIMS);
                teach.set_kept_dims(layer_idx, head_idx, d_head, order);
            }
            if ui
                .button("Keep none")
                .on_hover_text("Every score becomes 0: the map turns uniform over allowed keys")
                .clicked()
            {
                teach.set_kept_dims(layer_idx, head_idx, d_head, Vec::new());
            }
        });
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing = egui::vec2(2.0, 2.0);
            for i in 0..d_head {
                let on = is_kept(i);
                let response = ui
                    .add(
                        egui::Button::selectable(on, format!("{i}"))
                            .min_size(egui::vec2(26.0, 0.0)),
                    )
                    .on_hover_text(format!(
                        "dimension {i}: {} (mean |qᵢ × kᵢ| {})",
                        if on {
                            "kept; click to drop"
                        } else {
                            "dropped; click to keep"
                        },
                        importance
                            .get(i)
                            .map_or("?".to_owned(), |v| render::format_significant(f64::from(
                                *v
                            )))
                    ));
                let name = format!("dimension {i}");
                response.widget_info(|| {
                    egui::WidgetInfo::selected(egui::Role::Button, true, on, &name)
                });
                if response.clicked() {
                    tc.cx.state.teach.toggle_dim(layer_idx, head_idx, d_head, i);
                }
            }
        });
        ui.separator();
        let dark = ui.visuals().dark_mode;
        let avail = ui.available_size();
        // The room of the map's figure, rounded so that a small resize keeps the texture.
        let room = egui::vec2(
            ((avail.x * 0.42).clamp(200.0, 560.0) / 16.0).floor() * 16.0,
            MAX_MAP_HEIGHT_PT,
        );
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(room.x);
                ui.strong("The head's map");
                let scale = figure_texture::pixel_scale(ui.ctx());
                let key = MapKey {
                    run: tc.run_id(),
                    layer_idx,
                    head_idx,
                    colormap: tc.cx.state.colormap,
                    mask: tc.mask().clone(),
                    room_pt: [room.x as u32, room.y as u32],
                    scale,
                };
                let colormap = tc.cx.state.colormap;
                let mask = tc.mask().clone();
                let is_pad: Vec<bool> = run.tokens.iter().map(|t| t.is_pad()).collect();
                let all: Vec<usize> = (0..n).collect();
                let probs = head.probs.view();
                let (max_w, max_h) = figure_texture::max_pixels(ui.ctx(), room, scale);
                self.map.prepare(ui.ctx(), "teach-neuron-map", key, || {
                    let masked = render::view::masked_cells(&mask, n, &is_pad, &all);
                    let opts = render::teach::map_options(&labels, masked, colormap, scale);
                    render::fitted_figure(probs, &opts, max_w, max_h, figure_texture::MAX_CELL_PT)
                        .ok()
                });
                let shown = self.map.show(ui, room, "neuron head map");
                if let Some(note) = shown.as_ref().and_then(|s| s.pooled_note(n)) {
                    ui.weak(note);
                }
                if let Some(shown) = shown {
                    // The query's row, and the key's cell in it.
                    // A pooled map draws the block holding each.
                    let rect = shown.cells;
                    let (rows, cols) = shown.shape;
                    let cell = egui::vec2(
                        rect.width() / cols.max(1) as f32,
                        rect.height() / rows.max(1) as f32,
                    );
                    let (row_idx, col_idx) = (query_idx * rows / n, key_idx * cols / n);
                    let row = egui::Rect::from_min_size(
                        rect.min + egui::vec2(0.0, row_idx as f32 * cell.y),
                        egui::vec2(rect.width(), cell.y),
                    );
                    let stroke = (1.5, theme::selection_outline(dark));
                    ui.painter()
                        .rect_stroke(row, 0.0, stroke, egui::StrokeKind::Inside);
                    let at = egui::Rect::from_min_size(
                        row.min + egui::vec2(col_idx as f32 * cell.x, 0.0),
                        cell,
                    );
                    ui.painter().rect_stroke(
                        at,
                        0.0,
                        (2.0, theme::hover_outline()),
                        egui::StrokeKind::Inside,
                    );
                }
                ui.label(format!(
                    "weight of key {key_idx} for query {query_idx}: {}",
                    render::format_significant(f64::from(weight))
                ));
            });
            ui.vertical(|ui| {
                ui.strong(format!(
                    "qᵢ × kᵢ for query {query_idx} and key {key_idx}, per dimension"
                ));
                let bars: Vec<Bar> = products
                    .iter()
                    .enumerate()
                    .map(|(i, &p)| {
                        let color = if is_kept(i) {
                            theme::dim_kept_color(dark, p >= 0.0)
                        } else {
                            theme::dim_dropped_color()
                        };
                        Bar::new(i as f64, f64::from(p))
                            .width(0.8)
                            .fill(color)
                            .name(format!("dimension {i}"))
                    })
                    .collect();
                Plot::new("teach-dim-products")
                    .height(150.0)
                    .allow_zoom(false)
                    .allow_drag(false)
                    .allow_scroll(false)
                    .show(ui, |plot| plot.bar_chart(BarChart::new("qᵢ × kᵢ", bars)));
                let sum: f32 = products.iter().sum();
                ui.label(format!(
                    "sum of the bars = q·k = {} (the engine's score: {}); × scale {} = {}",
                    render::format_significant(f64::from(sum)),
                    render::format_significant(f64::from(score)),
                    render::format_significant(f64::from(scale)),
                    render::format_significant(f64::from(score * scale)),
                ));
                let mut order: Vec<usize> = (0..products.len()).collect();
                order.sort_by(|&a, &b| {
                    products[b]
                        .abs()
                        .partial_cmp(&products[a].abs())
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
                let shares: Vec<String> = order
                    .iter()
                    .take(4)
                    .filter(|&&i| products[i] != 0.0)
                    .map(|&i| {
                        let share = if score.abs() > f32::EPSILON {
                            format!("{:.0} %", 100.0 * products[i] / score)
                        } else {
                            "n/a".to_owned()
                        };
                        format!(
                            "dimension {i}: {} ({share} of the score)",
                            render::format_significant(f64::from(products[i]))
                        )
                    })
                    .collect();
                if !shares.is_empty() {
                    ui.label(format!("largest: {}", shares.join(" · ")));
                }
                ui.add_space(6.0);
                ui.strong(
                    "Which dimensions carry this head's scores: mean |qᵢ × kᵢ| over the input",
                );
                let bars: Vec<Bar> = importance
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let color = if is_kept(i) {
                            theme::dim_kept_color(dark, true)
                        } else {
                            theme::dim_dropped_color()
                        };
                        Bar::new(i as f64, f64::from(v))
                            .width(0.8)
                            .fill(color)
                            .name(format!("dimension {i}"))
                    })
                    .collect();
                Plot::new("teach-dim-importance")
                    .height(110.0)
                    .allow_zoom(false)
                    .allow_drag(false)
                    .allow_scroll(false)
                    .show(ui, |plot| {
                        plot.bar_chart(BarChart::new("mean |qᵢ × kᵢ|", bars))
                    });
            });
        });

        if tc.busy() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("recomputing with the new dimensions…");
            });
        }
    }
}
