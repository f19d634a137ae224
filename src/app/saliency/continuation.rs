//! The attributed continuation (Inseq's main use): K tokens generated greedily, each one's
//! log-probability attributed over everything before it, shown as a (prompt + generated) ×
//! generated matrix. The pixels come from the one pixel path, `render::heatmap_image_masked`
//! (the function behind every heatmap figure), uploaded once per result with NEAREST filtering;
//! cells after a generated token's own position are drawn in the masked colour.

use super::api::{Attribution, Method};
use crate::render::{self, Colormap, ValueRange, ValueScale};
use egui::{Sense, TextureHandle, TextureOptions, vec2};
use image::RgbaImage;
use ndarray::Array2;
use std::sync::Arc;

/// Largest side of a cell on screen, in points.
const MAX_CELL: f32 = 28.0;
/// Width kept for the row labels, in points.
const LABEL_WIDTH: f32 = 110.0;

/// The matrix of a continuation: `[token][generated]`, with the masked cells (a generated token
/// is not attributed to itself or to what follows it).
pub fn continuation_matrix(attr: &Attribution) -> Option<(Array2<f32>, Array2<bool>)> {
    let g = attr.generated.as_ref()?;
    let k = g.scores.len();
    let rows = attr.tokens.len();
    if k == 0 || rows == 0 {
        return None;
    }
    let mut m = Array2::zeros((rows, k));
    let mut masked = Array2::from_elem((rows, k), true);
    for (col, scores) in g.scores.iter().enumerate() {
        for (row, v) in scores.iter().enumerate().take(rows) {
            if let Some(v) = v {
                m[[row, col]] = *v;
                masked[[row, col]] = false;
            }
        }
    }
    Some((m, masked))
}

/// The colour range of a continuation: symmetric around 0 for signed methods (on the diverging
/// map), 0 to the largest score otherwise.
pub fn continuation_range(m: &Array2<f32>, masked: &Array2<bool>, signed: bool) -> ValueRange {
    let values = m
        .iter()
        .zip(masked.iter())
        .filter(|(v, masked)| !**masked && v.is_finite())
        .map(|(v, _)| *v);
    if signed {
        let a = values.map(f32::abs).fold(0.0_f32, f32::max).max(1e-12);
        ValueRange { min: -a, max: a }
    } else {
        let a = values.fold(0.0_f32, f32::max).max(1e-12);
        ValueRange { min: 0.0, max: a }
    }
}

/// The image of a continuation at one pixel per cell, through the one pixel path.
pub fn continuation_image(attr: &Attribution, colormap: Colormap) -> Option<RgbaImage> {
    let (m, masked) = continuation_matrix(attr)?;
    let signed = attr.method.is_signed();
    let range = continuation_range(&m, &masked, signed);
    let map = if signed {
        Colormap::Diverging
    } else {
        colormap
    };
    Some(render::heatmap_image_masked(
        m.view(),
        Some(masked.view()),
        map,
        range,
        ValueScale::Linear,
        1,
    ))
}

/// The uploaded continuation texture and what it shows.
#[derive(Default)]
pub struct ContinuationView {
    shown: Option<(usize, Colormap, TextureHandle)>,
}

impl ContinuationView {
    /// Draws the continuation of `result` (none yet: a spinner; an error: the message).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        result: Option<&Result<Arc<Attribution>, String>>,
        colormap: Colormap,
        method: Method,
    ) {
        ui.strong(format!("Continuation attributed by {method}"));
        let attr = match result {
            None => {
                ui.spinner();
                return;
            }
            Some(Err(e)) => {
                ui.colored_label(crate::app::theme::error_color(ui.visuals().dark_mode), e);
                return;
            }
            Some(Ok(a)) => a,
        };
        let Some(g) = &attr.generated else {
            ui.label("no tokens were generated");
            return;
        };
        let id = Arc::as_ptr(attr) as usize;
        if self
            .shown
            .as_ref()
            .is_none_or(|(i, c, _)| *i != id || *c != colormap)
        {
            let Some(image) = continuation_image(attr, colormap) else {
                ui.label("no tokens were generated");
                return;
            };
            let size = [image.width() as usize, image.height() as usize];
            let color = egui::ColorImage::from_rgba_unmultiplied(size, image.as_raw());
            let texture =
                ui.ctx()
                    .load_texture("saliency-continuation", color, TextureOptions::NEAREST);
            self.shown = Some((id, colormap, texture));
        }
        let Some((_, _, texture)) = &self.shown else {
            return;
        };
        let rows = attr.tokens.len();
        let cols = g.scores.len();
        let generated: Vec<String> = attr.tokens[g.from.min(rows)..]
            .iter()
            .map(|t| t.text.clone())
            .collect();
        ui.label(format!(
            "rows: the {} prompt and {} generated tokens · columns: the generated tokens {}",
            g.from,
            cols,
            generated
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        ));
        let cell = ((ui.available_width() - LABEL_WIDTH) / cols.max(1) as f32).clamp(2.0, MAX_CELL);
        egui::ScrollArea::vertical()
            .id_salt("saliency-continuation-scroll")
            .max_height(420.0)
            .show(ui, |ui| {
                ui.horizontal(|ui| {
                    ui.vertical(|ui| {
                        ui.spacing_mut().item_spacing.y = 0.0;
                        for t in &attr.tokens {
                            let (rect, _) =
                                ui.allocate_exact_size(vec2(LABEL_WIDTH, cell), Sense::hover());
                            if cell >= 10.0 {
                                ui.painter().text(
                                    rect.right_center() - vec2(4.0, 0.0),
                                    egui::Align2::RIGHT_CENTER,
                                    crate::render::figure::truncate_label(&t.text),
                                    egui::FontId::proportional((cell * 0.7).min(13.0)),
                                    ui.visuals().text_color(),
                                );
                            }
                        }
                    });
                    let size = vec2(cell * cols as f32, cell * rows as f32);
                    let response =
                        ui.add(egui::Image::new((texture.id(), size)).sense(Sense::hover()));
                    if let Some(pos) = response.hover_pos() {
                        let rel = pos - response.rect.min;
                        let (r, c) = ((rel.y / cell) as usize, (rel.x / cell) as usize);
                        let value = g.scores.get(c).and_then(|s| s.get(r)).copied().flatten();
                        let text = match value {
                            Some(v) => render::format_significant(f64::from(v)),
                            None => "not attributed (at or after the generated token)".to_owned(),
                        };
                        let row = attr.tokens.get(r).map_or("", |t| t.text.as_str());
                        let col = generated.get(c).map_or("", String::as_str);
                        response.on_hover_text(format!("{row:?} for generated {col:?}: {text}"));
                    }
                });
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_range_is_symmetric_for_signed_methods_and_skips_masked_cells() {
        let m = Array2::from_shape_vec((2, 2), vec![-3.0, 9.0, 1.0, 2.0]).unwrap();
        let masked = Array2::from_shape_vec((2, 2), vec![false, true, false, false]).unwrap();
        // 9 is masked: max |s| over the rest is 3.
        assert_eq!(
            continuation_range(&m, &masked, true),
            ValueRange {
                min: -3.0,
                max: 3.0
            }
        );
        assert_eq!(
            continuation_range(&m, &masked, false),
            ValueRange { min: 0.0, max: 2.0 }
        );
    }
}
