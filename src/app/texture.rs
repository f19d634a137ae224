//! The one way the app turns render's pixels into a texture: uploaded as they are (straight
//! alpha) and NEAREST-filtered, so a texel is a pixel of the figure or map it came from.

use egui::{TextureHandle, TextureOptions};
use image::RgbaImage;

/// Uploads `img` as a NEAREST-filtered texture named `name`. The image must not be empty
/// (callers drop empty images first: a map too large to draw gives one).
pub(crate) fn upload(
    ctx: &egui::Context,
    name: impl Into<String>,
    img: &RgbaImage,
) -> TextureHandle {
    let size = [img.width() as usize, img.height() as usize];
    let color = egui::ColorImage::from_rgba_unmultiplied(size, img.as_raw());
    ctx.load_texture(name, color, TextureOptions::NEAREST)
}
