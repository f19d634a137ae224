//! The heatmap view: one head's map as a texture, with token labels and hover details.
//!
//! The pixels come from `render::heatmap_image`, the same path as the PNG export, uploaded with
//! NEAREST filtering and only when the data or the colormap change.

use crate::engine::AttentionRun;
use crate::render::{self, Colormap, ValueRange, ValueScale};
use egui::{Color32, Rect, Sense, TextureHandle, TextureOptions, Vec2, pos2, vec2};
use std::sync::Arc;

/// What the texture currently shows.
#[derive(Clone, Debug, PartialEq)]
struct TextureKey {
    run: usize,
    layer_idx: usize,
    head_idx: usize,
    colormap: Colormap,
}

/// The heatmap view's runtime state.
#[derive(Default)]
pub struct HeatmapView {
    texture: Option<(TextureKey, TextureHandle)>,
    /// Number of texture uploads so far (tests check that hovering does not re-upload).
    pub uploads: usize,
}

impl HeatmapView {
    /// Draws the selected head of `run`.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<AttentionRun>,
        layer_idx: usize,
        head_idx: usize,
        colormap: Colormap,
    ) {
        let Some(map) = run.maps.head(layer_idx, head_idx) else {
            ui.label("This layer and head do not exist in the current run.");
            return;
        };
        let key = TextureKey {
            run: Arc::as_ptr(run) as usize,
            layer_idx,
            head_idx,
            colormap,
        };
        if self.texture.as_ref().is_none_or(|(k, _)| *k != key) {
            let img = render::heatmap_image(
                map.view(),
                colormap,
                ValueRange::unit(),
                ValueScale::Linear,
                1,
            );
            let size = [img.width() as usize, img.height() as usize];
            let color = egui::ColorImage::from_rgba_unmultiplied(size, img.as_raw());
            let handle = ui
                .ctx()
                .load_texture("heatmap", color, TextureOptions::NEAREST);
            self.texture = Some((key, handle));
            self.uploads += 1;
        }
        let Some((_, texture)) = &self.texture else {
            return;
        };
        let n = map.nrows();
        let labels: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
        let avail = ui.available_size();
        let label_w = if n <= 64 { 90.0 } else { 0.0 };
        let side = (avail.x - label_w).min(avail.y - label_w).max(64.0);
        let (outer, _) =
            ui.allocate_exact_size(vec2(side + label_w, side + label_w), Sense::hover());
        let cells = Rect::from_min_size(outer.min + vec2(label_w, label_w), Vec2::splat(side));
        let response = ui.interact(cells, ui.scope_id().with("heatmap-cells"), Sense::hover());
        let painter = ui.painter_at(outer);
        painter.image(
            texture.id(),
            cells,
            Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0)),
            Color32::WHITE,
        );
        let cell = side / n as f32;
        if label_w > 0.0 {
            let font = egui::FontId::proportional((cell * 0.7).clamp(7.0, 13.0));
            let color = ui.visuals().text_color();
            for (i, label) in labels.iter().enumerate() {
                let y = cells.top() + (i as f32 + 0.5) * cell;
                painter.text(
                    pos2(cells.left() - 4.0, y),
                    egui::Align2::RIGHT_CENTER,
                    *label,
                    font.clone(),
                    color,
                );
                let x = cells.left() + (i as f32 + 0.5) * cell;
                let galley = painter.layout_no_wrap((*label).to_owned(), font.clone(), color);
                let pos = pos2(x - galley.size().y / 2.0, cells.top() - 4.0);
                painter.add(
                    egui::epaint::TextShape::new(pos, galley, color)
                        .with_angle(-std::f32::consts::FRAC_PI_2),
                );
            }
        }
        if let Some(pointer) = response.hover_pos() {
            let query_idx = (((pointer.y - cells.top()) / cell) as usize).min(n - 1);
            let key_idx = (((pointer.x - cells.left()) / cell) as usize).min(n - 1);
            let rect = Rect::from_min_size(
                pos2(
                    cells.left() + key_idx as f32 * cell,
                    cells.top() + query_idx as f32 * cell,
                ),
                Vec2::splat(cell),
            );
            painter.rect_stroke(
                rect,
                0.0,
                (1.5, super::theme::hover_outline()),
                egui::StrokeKind::Outside,
            );
            let weight = map[(query_idx, key_idx)];
            let row = map.row(query_idx);
            let rank = 1 + row.iter().filter(|&&v| v > weight).count();
            let q = labels.get(query_idx).copied().unwrap_or("?");
            let k = labels.get(key_idx).copied().unwrap_or("?");
            response.on_hover_text(format!(
                "query {query_idx} {q:?} → key {key_idx} {k:?}\nweight {weight:.4} (rank {rank} of {n} in the row)"
            ));
        }
    }
}
