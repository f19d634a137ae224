//! The attributed continuation (Inseq's main use): K tokens generated greedily, each one's
//! log-probability attributed over everything before it, shown as a generated × (prompt +
//! generated) matrix. The pixels come from the one pixel path: the exported figure's matrix and
//! colours (`render::saliency::generated_matrix`) painted by `render::heatmap_image_masked`,
//! uploaded once per result with NEAREST filtering; cells at or after a generated token's own
//! position are drawn in the masked colour.

use super::api::{Attribution, Method};
use super::view::SaliencyExport;
use crate::app::AttnApp;
use crate::app::view::{DialogPurpose, Request, ViewCx};
use crate::render::{self, saliency};
use egui::{Sense, TextureHandle, TextureOptions, vec2};
use image::RgbaImage;
use std::sync::Arc;

/// Largest side of a cell on screen, in points.
const MAX_CELL: f32 = 28.0;
/// Width kept for the row labels, in points.
const LABEL_WIDTH: f32 = 110.0;

/// The image of a continuation at one pixel per cell: `render::saliency::generated_matrix`
/// (rows the generated tokens, columns every token, cells at or after a row's own token masked,
/// the diverging map around 0 for signed methods) painted by `render::heatmap_image_masked`,
/// exactly the cells of the exported figure.
pub fn continuation_image(attr: &Attribution) -> Option<RgbaImage> {
    let (m, fig) = saliency::generated_matrix(attr, "")?;
    Some(render::heatmap_image_masked(
        m.view(),
        fig.masked.as_ref().map(|x| x.view()),
        fig.colormap,
        fig.range,
        fig.scale,
        1,
    ))
}

/// The uploaded continuation texture and what it shows.
#[derive(Default)]
pub struct ContinuationView {
    /// The attribution shown (its address), the image uploaded and its texture.
    shown: Option<(usize, RgbaImage, TextureHandle)>,
}

impl ContinuationView {
    /// The image uploaded for the continuation on screen, for pixel tests.
    pub fn on_screen(&self) -> Option<&RgbaImage> {
        self.shown.as_ref().map(|(_, image, _)| image)
    }

    /// Draws the continuation of `result` (none yet: a spinner; an error: the message), with
    /// its PNG and SVG exports. `labels` are the labels of every token (prompt and generated).
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        cx: &mut ViewCx<'_>,
        result: Option<&Result<Arc<Attribution>, String>>,
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
        if self.shown.as_ref().is_none_or(|(i, _, _)| *i != id) {
            let Some(image) = continuation_image(attr) else {
                ui.label("no tokens were generated");
                return;
            };
            let size = [image.width() as usize, image.height() as usize];
            let color = egui::ColorImage::from_rgba_unmultiplied(size, image.as_raw());
            let texture =
                ui.ctx()
                    .load_texture("saliency-continuation", color, TextureOptions::NEAREST);
            self.shown = Some((id, image, texture));
        }
        let Some((_, _, texture)) = &self.shown else {
            return;
        };
        let cols = attr.tokens.len();
        let rows = g.scores.len();
        let labels = &attr.labels;
        let label = |i: usize| labels.get(i).map_or("", String::as_str);
        ui.label(format!(
            "rows: the {rows} generated tokens · columns: the {} prompt and {rows} generated \
             tokens · grey: not before the row's token",
            g.from
        ));
        let cell = ((ui.available_width() - LABEL_WIDTH) / cols.max(1) as f32).clamp(2.0, MAX_CELL);
        ui.horizontal(|ui| {
            ui.vertical(|ui| {
                ui.spacing_mut().item_spacing.y = 0.0;
                for r in 0..rows {
                    let (rect, _) = ui.allocate_exact_size(vec2(LABEL_WIDTH, cell), Sense::hover());
                    if cell >= 10.0 {
                        ui.painter().text(
                            rect.right_center() - vec2(4.0, 0.0),
                            egui::Align2::RIGHT_CENTER,
                            render::figure::truncate_label(label(g.from + r)),
                            egui::FontId::proportional((cell * 0.7).min(13.0)),
                            ui.visuals().text_color(),
                        );
                    }
                }
            });
            let size = vec2(cell * cols as f32, cell * rows as f32);
            let response = ui.add(egui::Image::new((texture.id(), size)).sense(Sense::hover()));
            if let Some(pos) = response.hover_pos() {
                let rel = pos - response.rect.min;
                let (r, c) = ((rel.y / cell) as usize, (rel.x / cell) as usize);
                let value = g.scores.get(r).and_then(|s| s.get(c)).copied().flatten();
                let text = match value {
                    Some(v) => render::format_significant(f64::from(v)),
                    None => "not attributed (at or after the generated token)".to_owned(),
                };
                response.on_hover_text(format!(
                    "{:?} for generated {:?}: {text}",
                    label(c),
                    label(g.from + r)
                ));
            }
        });
        if cell >= 10.0 {
            column_labels(ui, (0..cols).map(label), cell);
        }
        ui.horizontal(|ui| {
            ui.label("Export the continuation");
            for (kind, text) in [
                (SaliencyExport::ContinuationPng, "continuation PNG"),
                (SaliencyExport::ContinuationSvg, "continuation SVG"),
            ] {
                if ui.button(text).clicked() {
                    cx.request(Request::Dialog(DialogPurpose::ExportSaliency(kind)));
                }
            }
        });
    }
}

impl AttnApp {
    /// The image the Saliency view shows for the attributed continuation, for pixel tests.
    pub fn continuation_on_screen(&self) -> Option<&RgbaImage> {
        self.panels.central.saliency.continuation_on_screen()
    }
}

/// The column labels under the matrix, turned to read upwards, one per `cell`-wide column
/// (after the row labels' width).
fn column_labels<'a>(ui: &mut egui::Ui, labels: impl Iterator<Item = &'a str>, cell: f32) {
    let font = egui::FontId::proportional((cell * 0.7).min(13.0));
    let color = ui.visuals().text_color();
    let galleys: Vec<_> = labels
        .map(|l| {
            ui.painter().layout_no_wrap(
                render::figure::truncate_label(l).into_owned(),
                font.clone(),
                color,
            )
        })
        .collect();
    let height = galleys
        .iter()
        .map(|g| g.size().x)
        .fold(0.0, f32::max)
        .min(LABEL_WIDTH)
        + 4.0;
    let width = LABEL_WIDTH + cell * galleys.len() as f32;
    let (rect, _) = ui.allocate_exact_size(vec2(width, height), Sense::hover());
    let painter = ui.painter_at(rect);
    for (c, galley) in galleys.into_iter().enumerate() {
        let x = rect.left() + LABEL_WIDTH + (c as f32 + 0.5) * cell - galley.size().y / 2.0;
        let pos = egui::pos2(x, rect.top() + 2.0 + galley.size().x);
        painter.add(
            egui::epaint::TextShape::new(pos, galley, color)
                .with_angle(-std::f32::consts::FRAC_PI_2),
        );
    }
}
