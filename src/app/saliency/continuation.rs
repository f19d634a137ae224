//! The attributed continuation (Inseq's main use): K tokens generated greedily, each one's
//! log-probability attributed over everything before it, shown as a generated × (prompt +
//! generated) matrix. The pixels come from the one pixel path: the exported figure itself
//! (`render::saliency::generated_matrix` through `render::fitted_figure`: token labels on both
//! axes, a colorbar with ticks, the masked legend) at a cell size that fits the view, uploaded
//! once per result and size with NEAREST filtering; cells at or after a generated token's own
//! position are drawn in the masked colour.

use super::api::{Attribution, Method};
use super::view::SaliencyExport;
use crate::app::AttnApp;
use crate::app::texture::upload;
use crate::app::view::{DialogPurpose, Request, ViewCx};
use crate::render::{self, saliency};
use egui::{Sense, TextureHandle, vec2};
use image::RgbaImage;
use std::sync::Arc;

/// Largest side of a cell, in points.
pub const MAX_CELL: u32 = 28;
/// The tallest the figure gets, in points.
const MAX_HEIGHT: u32 = 640;

/// The continuation's labelled figure fitted to `max_width` x `max_height` pixels at
/// `pixel_scale` (cells of at most [`MAX_CELL`] points): the exported figure
/// (`render::saliency::generated_matrix` through `render::heatmap_figure`: generated tokens on
/// the rows, every token on the columns, a colorbar with ticks, the masked legend), untitled.
pub fn continuation_figure(
    attr: &Attribution,
    max_width: u32,
    max_height: u32,
    pixel_scale: u32,
) -> Option<render::FittedFigure> {
    let (m, fig) = saliency::generated_matrix(attr, "")?;
    let opts = render::FigureOptions { pixel_scale, ..fig };
    render::fitted_figure(m.view(), &opts, max_width, max_height, MAX_CELL).ok()
}

/// What the uploaded figure shows: the attribution (its address), the room in points and the
/// pixels per point.
type ShownKey = (usize, [u32; 2], u32);

/// The uploaded continuation figure and what it shows.
#[derive(Default)]
pub struct ContinuationView {
    /// What is shown, the figure uploaded and its texture.
    shown: Option<(ShownKey, render::FittedFigure, TextureHandle)>,
}

impl ContinuationView {
    /// The figure uploaded for the continuation on screen, for pixel tests.
    pub fn on_screen(&self) -> Option<&RgbaImage> {
        self.shown.as_ref().map(|(_, fig, _)| &fig.image)
    }

    /// Draws the continuation of `result` (none yet: a spinner; an error: the message), with
    /// its PNG and SVG exports.
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
        let scale =
            (ui.ctx().pixels_per_point().round() as u32).clamp(1, render::figure::MAX_PIXEL_SCALE);
        // The room, rounded so that a small resize keeps the texture.
        let room = [
            ((ui.available_width() / 16.0).floor() * 16.0).max(160.0) as u32,
            MAX_HEIGHT,
        ];
        let key = (Arc::as_ptr(attr) as usize, room, scale);
        if self.shown.as_ref().is_none_or(|(k, _, _)| *k != key) {
            let side = ui.ctx().input(|i| i.max_texture_side).max(1) as u32;
            let (w, h) = ((room[0] * scale).min(side), (room[1] * scale).min(side));
            let Some(fig) = continuation_figure(attr, w, h, scale) else {
                ui.label("no tokens were generated");
                return;
            };
            let texture = upload(ui.ctx(), "saliency-continuation", &fig.image);
            self.shown = Some((key, fig, texture));
        }
        let Some((_, fig, texture)) = &self.shown else {
            return;
        };
        let rows = g.scores.len();
        let labels = &attr.labels;
        let label = |i: usize| labels.get(i).map_or("", String::as_str);
        ui.label(format!(
            "rows: the {rows} generated tokens · columns: the {} prompt and {rows} generated \
             tokens · grey: not before the row's token",
            g.from
        ));
        // One texel per screen pixel; smaller only when even one-pixel cells are too wide.
        let pixels = vec2(fig.image.width() as f32, fig.image.height() as f32);
        let zoom = (1.0 / scale as f32).min(ui.available_width().max(1.0) / pixels.x);
        let response =
            ui.add(egui::Image::new((texture.id(), pixels * zoom)).sense(Sense::hover()));
        let (x, y, w, h) = fig.cells;
        let cells = egui::Rect::from_min_size(
            response.rect.min + vec2(x as f32, y as f32) * zoom,
            vec2(w as f32, h as f32) * zoom,
        );
        let cell = fig.options.cell_pixels() as f32 * zoom;
        if let Some(pos) = response.hover_pos().filter(|p| cells.contains(*p)) {
            let rel = pos - cells.min;
            // A pooled column holds several tokens: name the first.
            let (cols, drawn_cols) = (attr.tokens.len(), fig.shape.1);
            let c = render::pool_block((rel.x / cell) as usize, cols, drawn_cols).start;
            let r = (rel.y / cell) as usize;
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
    /// The figure the Saliency view shows for the attributed continuation, for pixel tests.
    pub fn continuation_on_screen(&self) -> Option<&RgbaImage> {
        self.panels.central.saliency.continuation_on_screen()
    }
}
