//! Every colour the app uses, in one place.

use egui::Color32;
use serde::{Deserialize, Serialize};

/// Light or dark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Theme {
    /// Dark background.
    #[default]
    Dark,
    /// Light background.
    Light,
}

/// Applies the light or dark theme.
pub fn apply(ctx: &egui::Context, theme: Theme) {
    ctx.set_visuals(match theme {
        Theme::Dark => egui::Visuals::dark(),
        Theme::Light => egui::Visuals::light(),
    });
}

/// Adds the figures' DejaVu Sans and then their fallback fonts (Noto Sans Devanagari) after
/// egui's own fonts (which include an emoji font), so characters those lack (the token label
/// marks `␣ ↵ ⇥`, arrows, Devanagari) are drawn rather than shown as boxes. egui's fonts still
/// draw everything they have, so nothing else changes. A character no font has is drawn as
/// its code point (`U+1F469`), as in figures.
pub fn install_fonts(ctx: &egui::Context) {
    let mut fonts = egui::FontDefinitions::default();
    let extra = std::iter::once(("DejaVuSans", crate::render::embedded_font()))
        .chain(crate::render::fallback_fonts().iter().copied());
    for (name, data) in extra {
        fonts.font_data.insert(
            name.to_owned(),
            std::sync::Arc::new(egui::FontData::from_static(data)),
        );
        for family in [egui::FontFamily::Proportional, egui::FontFamily::Monospace] {
            if let Some(list) = fonts.families.get_mut(&family) {
                list.push(name.to_owned());
            }
        }
    }
    ctx.set_fonts(fonts);
    // Last resort for a character no font has (emoji, flags): its code point, `U+1F469`, drawn
    // by the figures' text renderer, never an empty box.
    ctx.add_glyph_rasterizer(egui::epaint::text::GlyphRasterizer::new(
        "attnviz::code_points",
        |request| {
            let line = crate::render::rasterize_line(request.cluster, request.font_size_px);
            if line.width == 0 {
                return None;
            }
            let pixels = line
                .alpha
                .iter()
                .map(|&a| egui::Color32::from_white_alpha(a))
                .collect();
            Some(egui::epaint::text::RasterizedGlyph {
                bitmap: egui::epaint::text::GlyphBitmap {
                    image: egui::ColorImage::new([line.width, line.height], pixels),
                    offset_px: egui::vec2(0.0, -line.ascent),
                    is_color: false,
                },
                advance_px: line.advance,
            })
        },
    ));
}

/// Colour of error text.
pub fn error_color(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(255, 120, 110)
    } else {
        Color32::from_rgb(180, 30, 20)
    }
}

/// Outline of the hovered heatmap cell.
pub fn hover_outline() -> Color32 {
    Color32::from_rgb(255, 80, 80)
}

/// Outline of the selected query rows.
pub fn selection_outline(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(255, 255, 255)
    } else {
        Color32::from_rgb(20, 20, 20)
    }
}

/// A distinct colour for head `head_idx` of `heads` (evenly spaced hues, fixed lightness).
pub fn head_color(head_idx: usize, heads: usize) -> Color32 {
    let hue = head_idx as f32 / heads.max(1) as f32;
    egui::ecolor::Hsva::new(hue, 0.75, 0.9, 1.0).into()
}

/// Background of selected tokens in the token strip.
pub fn selected_token_fill(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(40, 90, 160)
    } else {
        Color32::from_rgb(170, 200, 245)
    }
}

/// Panel behind the query heads that share one key/value head in the grid: a faint tint of the
/// background, so that the thumbnails keep their colours.
pub fn kv_group_fill(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(45, 50, 62)
    } else {
        Color32::from_rgb(222, 228, 240)
    }
}

/// Bracket and label over a key/value group in the grid.
pub fn kv_group_accent(dark: bool) -> Color32 {
    if dark {
        Color32::from_rgb(240, 180, 90)
    } else {
        Color32::from_rgb(150, 80, 0)
    }
}

/// Fill and text colour of the crafted-head badge on grid thumbnails.
pub fn badge_colors(dark: bool) -> (Color32, Color32) {
    if dark {
        (Color32::from_black_alpha(200), Color32::WHITE)
    } else {
        (Color32::from_white_alpha(220), Color32::BLACK)
    }
}

/// Frame of the colorbar and of the "masked" legend swatch (the figures' frame grey).
pub fn colorbar_frame() -> Color32 {
    Color32::from_rgb(0x88, 0x88, 0x88)
}

/// A kept dimension's bar in the neuron view: positive products warm, negative cool.
pub fn dim_kept_color(dark: bool, positive: bool) -> Color32 {
    match (positive, dark) {
        (true, true) => Color32::from_rgb(240, 170, 70),
        (true, false) => Color32::from_rgb(200, 110, 0),
        (false, true) => Color32::from_rgb(100, 170, 255),
        (false, false) => Color32::from_rgb(30, 100, 200),
    }
}

/// A dropped dimension's bar or the masked half of a comparison.
pub fn dim_dropped_color() -> Color32 {
    Color32::from_rgb(0x80, 0x80, 0x80)
}
