//! Every colour the app uses, in one place.

use egui::Color32;

/// Colour of error text and the error banner's border.
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
