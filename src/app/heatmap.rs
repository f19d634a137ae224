//! The heatmap view: the selected head (or combination) as a texture, with token labels that
//! follow zoom and pan, hover details, a colorbar, and right-click mask edits.
//!
//! The pixels come from `render::heatmap_image`, the same path as the PNG export. The texture
//! is uploaded with NEAREST filtering, and only when the data or the colours change.

use super::state::AppState;
use super::theme;
use crate::analysis::view_matrix;
use crate::engine::AttentionRun;
use crate::render::{self, ValueRange};
use egui::{Color32, Rect, Sense, TextureHandle, TextureOptions, Vec2, pos2, vec2};
use ndarray::Array2;
use std::sync::Arc;

/// What the texture currently shows.
#[derive(Clone, Debug, PartialEq)]
struct TextureKey {
    run: usize,
    spec: crate::analysis::ViewSpec,
    colormap: render::Colormap,
    scale: render::ValueScale,
    range: render::RangeMode,
}

/// The uploaded texture and what it was made from.
struct Shown {
    key: TextureKey,
    texture: TextureHandle,
    /// The matrix on screen. Shape: [query, key].
    matrix: Arc<Array2<f32>>,
    /// Token index of each row and column.
    kept: Vec<usize>,
    range: ValueRange,
}

/// The heatmap view's runtime state.
pub struct HeatmapView {
    texture: Option<Shown>,
    /// Texture uploads so far: hovering, zooming and panning must not add to it.
    pub uploads: usize,
    /// Zoom factor (1 = fit).
    zoom: f32,
    /// Top-left of the visible area, in cells.
    offset: Vec2,
}

impl Default for HeatmapView {
    fn default() -> Self {
        Self {
            texture: None,
            uploads: 0,
            zoom: 1.0,
            offset: Vec2::ZERO,
        }
    }
}

/// Width reserved for labels and the colorbar.
const LABEL_SPACE: f32 = 90.0;
const COLORBAR_SPACE: f32 = 70.0;

impl HeatmapView {
    /// Draws the heatmap of `state`'s selection.
    /// `labels` are the tokens' display labels, one per token.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<AttentionRun>,
        labels: &[String],
        state: &mut AppState,
    ) {
        let spec = state.view_spec();
        let key = TextureKey {
            run: Arc::as_ptr(run) as usize,
            spec: spec.clone(),
            colormap: state.colormap,
            scale: state.value_scale,
            range: state.range,
        };
        if self.texture.as_ref().is_none_or(|t| t.key != key) {
            let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
            match view_matrix(&run.maps, &special, &spec) {
                Ok((matrix, kept)) => {
                    let range = render::view::range_for(&run.maps, matrix.view(), state.range);
                    let img = render::heatmap_image(
                        matrix.view(),
                        state.colormap,
                        range,
                        state.value_scale,
                        1,
                    );
                    let size = [img.width() as usize, img.height() as usize];
                    let color = egui::ColorImage::from_rgba_unmultiplied(size, img.as_raw());
                    let handle = ui
                        .ctx()
                        .load_texture("heatmap", color, TextureOptions::NEAREST);
                    if self
                        .texture
                        .as_ref()
                        .is_some_and(|t| t.matrix.dim() != matrix.dim())
                    {
                        self.zoom = 1.0;
                        self.offset = Vec2::ZERO;
                    }
                    self.texture = Some(Shown {
                        key,
                        texture: handle,
                        matrix: Arc::new(matrix),
                        kept,
                        range,
                    });
                    self.uploads += 1;
                }
                Err(e) => {
                    ui.label(format!("Cannot show this selection: {e}"));
                    return;
                }
            }
        }
        let Some(shown) = &self.texture else {
            return;
        };
        let (texture, matrix, kept, range) = (
            shown.texture.clone(),
            shown.matrix.clone(),
            shown.kept.clone(),
            shown.range,
        );
        let n = matrix.nrows();
        if n == 0 {
            return;
        }
        ui.horizontal(|ui| {
            ui.label(format!("{} · {}", spec.layer, spec.heads));
            if ui.small_button("reset zoom").clicked() {
                self.zoom = 1.0;
                self.offset = Vec2::ZERO;
            }
            ui.label("scroll to zoom, drag to pan, right-click a cell to mask it");
        });
        let avail = ui.available_size();
        let side = (avail.x - LABEL_SPACE - COLORBAR_SPACE)
            .min(avail.y - LABEL_SPACE - 12.0)
            .max(64.0);
        let (outer, _) = ui.allocate_exact_size(
            vec2(side + LABEL_SPACE + COLORBAR_SPACE, side + LABEL_SPACE),
            Sense::hover(),
        );
        let cells = Rect::from_min_size(
            outer.min + vec2(LABEL_SPACE, LABEL_SPACE),
            Vec2::splat(side),
        );
        let response = ui.interact(
            cells,
            ui.scope_id().with("heatmap-cells"),
            Sense::click_and_drag(),
        );

        // Zoom around the pointer, pan by dragging; the view never leaves the matrix.
        let visible = n as f32 / self.zoom;
        if let Some(pointer) = response.hover_pos() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y);
            if scroll != 0.0 {
                let at = self.offset + (pointer - cells.min) / side * visible;
                self.zoom =
                    (self.zoom * (scroll / 200.0).exp()).clamp(1.0, (n as f32 / 4.0).max(1.0));
                let new_visible = n as f32 / self.zoom;
                self.offset = at - (pointer - cells.min) / side * new_visible;
            }
        }
        if response.dragged() {
            self.offset -= response.drag_delta() / side * (n as f32 / self.zoom);
        }
        let visible = n as f32 / self.zoom;
        self.offset = self
            .offset
            .clamp(Vec2::ZERO, Vec2::splat(n as f32 - visible));
        let cell = side / visible;
        let uv = Rect::from_min_max(
            pos2(self.offset.x / n as f32, self.offset.y / n as f32),
            pos2(
                (self.offset.x + visible) / n as f32,
                (self.offset.y + visible) / n as f32,
            ),
        );
        let painter = ui.painter_at(outer);
        painter.image(texture.id(), cells, uv, Color32::WHITE);

        // Labels for the visible rows and columns, thinned so they never overlap.
        let all_labels = labels;
        let labels: Vec<&str> = kept
            .iter()
            .map(|&i| all_labels.get(i).map_or("?", String::as_str))
            .collect();
        let font = egui::FontId::proportional(cell.clamp(7.0, 13.0));
        let color = ui.visuals().text_color();
        let step = ((13.0 / cell).ceil() as usize).max(1);
        let first = self.offset.x.floor() as usize;
        let last = ((self.offset.x + visible).ceil() as usize).min(n);
        let first_row = self.offset.y.floor() as usize;
        let last_row = ((self.offset.y + visible).ceil() as usize).min(n);
        let short = |s: &str| -> String {
            if s.chars().count() > 12 {
                format!("{}…", s.chars().take(11).collect::<String>())
            } else {
                s.to_owned()
            }
        };
        for i in (first_row..last_row).filter(|i| i % step == 0) {
            let y = cells.top() + (i as f32 + 0.5 - self.offset.y) * cell;
            painter.text(
                pos2(cells.left() - 4.0, y),
                egui::Align2::RIGHT_CENTER,
                short(labels.get(i).copied().unwrap_or("?")),
                font.clone(),
                color,
            );
        }
        for j in (first..last).filter(|j| j % step == 0) {
            let x = cells.left() + (j as f32 + 0.5 - self.offset.x) * cell;
            let galley = painter.layout_no_wrap(
                short(labels.get(j).copied().unwrap_or("?")),
                font.clone(),
                color,
            );
            let pos = pos2(x - galley.size().y / 2.0, cells.top() - 4.0);
            painter.add(
                egui::epaint::TextShape::new(pos, galley, color)
                    .with_angle(-std::f32::consts::FRAC_PI_2),
            );
        }

        // Selected query rows, outlined.
        let dark = ui.visuals().dark_mode;
        for &q in &state.selected_queries {
            if let Some(row) = kept.iter().position(|&k| k == q) {
                let y = cells.top() + (row as f32 - self.offset.y) * cell;
                if y + cell >= cells.top() && y <= cells.bottom() {
                    let r = Rect::from_min_size(pos2(cells.left(), y), vec2(side, cell));
                    painter.rect_stroke(
                        r.intersect(cells),
                        0.0,
                        (1.5, theme::selection_outline(dark)),
                        egui::StrokeKind::Inside,
                    );
                }
            }
        }

        self.colorbar_ui(&painter, cells, state, range);

        // Hover details, click to select the query, right-click to mask.
        let cell_at = |p: egui::Pos2| -> (usize, usize) {
            let r = (((p.y - cells.top()) / cell + self.offset.y) as usize).min(n - 1);
            let c = (((p.x - cells.left()) / cell + self.offset.x) as usize).min(n - 1);
            (r, c)
        };
        if let Some(pointer) = response.hover_pos() {
            let (r, c) = cell_at(pointer);
            let rect = Rect::from_min_size(
                pos2(
                    cells.left() + (c as f32 - self.offset.x) * cell,
                    cells.top() + (r as f32 - self.offset.y) * cell,
                ),
                Vec2::splat(cell),
            );
            painter.rect_stroke(
                rect,
                0.0,
                (1.5, theme::hover_outline()),
                egui::StrokeKind::Outside,
            );
            let weight = matrix[(r, c)];
            let rank = 1 + matrix.row(r).iter().filter(|&&v| v > weight).count();
            let (q, k) = (
                kept.get(r).copied().unwrap_or(r),
                kept.get(c).copied().unwrap_or(c),
            );
            let describe = |i: usize, label: &str| match run.tokens.get(i) {
                Some(t) if t.text != label => format!("{label} ({:?}, id {})", t.text, t.id),
                Some(t) => format!("{label:?} (id {})", t.id),
                None => "?".to_owned(),
            };
            let (qt, kt) = (
                describe(q, labels.get(r).copied().unwrap_or("?")),
                describe(k, labels.get(c).copied().unwrap_or("?")),
            );
            response.clone().on_hover_text(format!(
                "query {q} {qt} → key {k} {kt}\nweight {weight:.4} (rank {rank} of {n} in the row)"
            ));
        }
        if response.clicked()
            && let Some(p) = response.interact_pointer_pos()
        {
            let (r, _) = cell_at(p);
            if let Some(&q) = kept.get(r) {
                state.selected_queries = vec![q];
            }
        }
        if response.secondary_clicked()
            && let Some(p) = response.interact_pointer_pos()
        {
            let (r, c) = cell_at(p);
            ui.memory_mut(|m| {
                m.data.insert_temp(
                    ui.scope_id().with("mask-cell"),
                    (
                        kept.get(r).copied().unwrap_or(r),
                        kept.get(c).copied().unwrap_or(c),
                    ),
                )
            });
        }
        response.context_menu(|ui| {
            let Some((q, k)) = ui.memory(|m| {
                m.data
                    .get_temp::<(usize, usize)>(ui.scope_id().with("mask-cell"))
            }) else {
                ui.label("right-click a cell");
                return;
            };
            let mut add = |part: String| {
                state.mask_text = match state.mask_text.trim() {
                    "" | "none" => part,
                    current => format!("{current}+{part}"),
                };
            };
            if ui.button(format!("Drop cell {q}.{k}")).clicked() {
                add(format!("drop-cells:{q}.{k}"));
                ui.close();
            }
            if ui.button(format!("Drop key {k} (every query)")).clicked() {
                add(format!("drop-keys:{k}"));
                ui.close();
            }
            if ui
                .button(format!("Drop query {q} (its whole row)"))
                .clicked()
            {
                add(format!("drop-queries:{q}"));
                ui.close();
            }
        });
    }

    /// A vertical colorbar right of the cells, with the range's ends and middle.
    fn colorbar_ui(
        &self,
        painter: &egui::Painter,
        cells: Rect,
        state: &AppState,
        range: ValueRange,
    ) {
        let bar = Rect::from_min_size(
            pos2(cells.right() + 12.0, cells.top()),
            vec2(14.0, cells.height()),
        );
        let steps = 64;
        for s in 0..steps {
            let t = 1.0 - (s as f32 + 0.5) / steps as f32;
            let [r, g, b, _] = state.colormap.color(t);
            let y0 = bar.top() + bar.height() * s as f32 / steps as f32;
            let y1 = bar.top() + bar.height() * (s + 1) as f32 / steps as f32;
            painter.rect_filled(
                Rect::from_min_max(pos2(bar.left(), y0), pos2(bar.right(), y1 + 0.5)),
                0.0,
                Color32::from_rgb(r, g, b),
            );
        }
        let color = painter.ctx().global_style().visuals.text_color();
        let font = egui::FontId::proportional(11.0);
        let mid = match state.value_scale {
            render::ValueScale::Linear => (range.min + range.max) / 2.0,
            render::ValueScale::Log => (range.min.max(range.max * 1e-4) * range.max).sqrt(),
        };
        // The end labels sit inside the bar's height, so the view's clip rect never cuts them.
        let labels = [
            (range.max, bar.top(), egui::Align2::LEFT_TOP),
            (mid, bar.center().y, egui::Align2::LEFT_CENTER),
            (range.min, bar.bottom(), egui::Align2::LEFT_BOTTOM),
        ];
        for (value, y, align) in labels {
            painter.text(
                pos2(bar.right() + 4.0, y),
                align,
                format!("{value:.3}"),
                font.clone(),
                color,
            );
        }
    }
}
