//! Figure geometry shared by every figure and the scene's pixel backend: sizes, gaps and
//! fonts of titles, labels and colour bars, and the pixel rectangle. Below `figure`, `grid`,
//! `colorbar` and `scene`, so that the backend does not reach up into the figures.

use image::{Rgba, RgbaImage};

/// Font size of the title, in pixels.
pub(crate) const TITLE_PX: f32 = 16.0;
/// Space between the title and what is below it.
pub(crate) const TITLE_GAP: u64 = 8;
/// Font size of the axis titles ("query", "key").
pub(crate) const AXIS_PX: f32 = 12.0;
/// Space between the cells and the colorbar.
pub(crate) const BAR_GAP: u64 = 14;
/// Width of the colorbar.
pub(crate) const BAR_WIDTH: u64 = 16;
/// Smallest colorbar height, so tiny matrices still get a readable bar.
pub(crate) const MIN_BAR_HEIGHT: u64 = 120;
/// Length of the tick marks right of the colorbar.
pub(crate) const TICK_LEN: u64 = 4;
/// Space between a tick mark and its value.
pub(crate) const TICK_GAP: u64 = 3;
/// Font size of the tick values.
pub(crate) const TICK_PX: f32 = 11.0;
/// Space between the colorbar and the "masked" legend below it.
pub(crate) const LEGEND_GAP: u64 = 12;
/// Height of the "masked" legend's swatch (its width is the bar's).
pub(crate) const LEGEND_SWATCH: u64 = 12;
/// The legend's text.
pub const MASKED_LEGEND: &str = "masked";
/// Labels longer than this many characters are shortened with '…'.
pub const MAX_LABEL_CHARS: usize = 16;
/// Largest `pixel_scale` accepted: beyond it figures only get blurrier in viewers.
pub const MAX_PIXEL_SCALE: u32 = 8;

/// Mid grey for the colorbar frame.
pub(crate) const FRAME: Rgba<u8> = Rgba([0x88, 0x88, 0x88, 255]);

/// An axis-aligned rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rect {
    pub(crate) x: u64,
    pub(crate) y: u64,
    pub(crate) w: u64,
    pub(crate) h: u64,
}

/// Fills `rect` with `color`, clipped to the image.
pub(crate) fn fill_rect(img: &mut RgbaImage, rect: Rect, color: Rgba<u8>) {
    let (w, h) = (u64::from(img.width()), u64::from(img.height()));
    for y in rect.y..(rect.y + rect.h).min(h) {
        for x in rect.x..(rect.x + rect.w).min(w) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}
