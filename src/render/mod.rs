//! The one pixel path: attention matrices become RGBA images here.
//!
//! Everything is drawn on the CPU into [`image::RgbaImage`] buffers:
//!
//! * [`colormap`] — named colormaps backed by 256-entry lookup tables;
//! * [`heatmap`] — value normalisation and the bare matrix-to-pixels step;
//! * [`figure`] — a labelled figure (title, token labels, colorbar) around a heatmap;
//! * [`grid`] — one thumbnail per (layer, head);
//! * [`pool`] — max-pooling, so maps larger than their pixels keep their peaks;
//! * [`png`] — fast PNG encoding and atomic file writes;
//! * `scene` — every figure above (and [`saliency`]'s, and [`teach`]'s) is laid out once as a
//!   scene of rectangles, frames, lines, texts, gradients and images, then drawn into pixels or
//!   written as SVG ([`svg`]: vector text and colorbar, cells as rectangles or an embedded PNG);
//! * [`teach`] — the walkthrough's step figures and the mistake comparisons;
//! * [`answer`] — the logit-lens table, the contribution map, the routes graph and the
//!   patching recovery map.
//!
//! Sizes are computed in `u64` and checked against [`MAX_SIDE`] before any
//! buffer is allocated, so absurd cell sizes produce [`RenderError::TooLarge`]
//! instead of an allocation failure.

pub mod answer;
pub mod colorbar;
pub mod colormap;
pub mod figure;
pub mod grid;
pub mod heatmap;
mod layout;
pub mod png;
pub mod pool;
pub mod saliency;
pub use saliency::{ScoreColouring, text_on as saliency_text_on};
mod scene;
pub use scene::svg;
pub mod teach;
mod text;
pub mod view;

use std::path::PathBuf;

pub use colormap::Colormap;
pub use figure::{
    ColorbarTick, FigureOptions, FittedFigure, colorbar_image, colorbar_ticks, figure_cells_rect,
    figure_size, fit_cell_px, fitted_figure, format_significant, heatmap_figure, heatmap_svg,
};
pub use grid::{GridOptions, grid_figure, grid_svg, grid_thumb_rect, thumbnail_image};
pub use heatmap::{
    LOG_FLOOR_RATIO, ValueRange, ValueScale, heatmap_image, heatmap_image_masked, log_floor,
    normalize, try_heatmap_image,
};
pub use png::{encode_png, write_png};
pub use pool::{heatmap_pyramid, max_pool, pool_block, pool_mask};
pub use svg::write_svg;
pub use text::{CoverageBitmap, embedded_font, fallback_fonts, rasterize_line};
pub use view::{
    ExportStyle, FigureContext, RangeMode, RenderStyle, grid_view_figure, grid_view_svg,
    view_figure, view_svg,
};

/// Largest width or height, in pixels, of any image this module produces.
pub const MAX_SIDE: u32 = 32_768;

/// The default bound on the pixels of one image: 2^26 = 67,108,864 pixels (256 MiB of RGBA).
pub const DEFAULT_MAX_PIXELS: u64 = 64 << 20;

/// The pixel budget in force (see [`set_max_pixels`]).
static MAX_PIXELS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(DEFAULT_MAX_PIXELS);

/// Sets the most pixels (width × height) any one image may have, checked before allocating;
/// the CLI's `--max-pixels`. 0 restores [`DEFAULT_MAX_PIXELS`].
pub fn set_max_pixels(pixels: u64) {
    let pixels = if pixels == 0 {
        DEFAULT_MAX_PIXELS
    } else {
        pixels
    };
    MAX_PIXELS.store(pixels, std::sync::atomic::Ordering::Relaxed);
}

/// The pixel budget in force.
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Errors produced while drawing or writing images.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The requested image would exceed [`MAX_SIDE`] pixels on a side.
    #[error(
        "image too large: {width}x{height} pixels (limit {limit} per side); use a smaller --cell"
    )]
    TooLarge {
        /// Requested width in pixels.
        width: u64,
        /// Requested height in pixels.
        height: u64,
        /// The per-side limit that was exceeded.
        limit: u32,
    },
    /// The requested image would exceed the pixel budget ([`max_pixels`]).
    // The budget is said as it was given (pixels, not 2^20-pixel "megapixels": issue 20).
    #[error(
        "image too large: {width}x{height} pixels is {} pixels, more than the {limit} allowed \
         (--max-pixels); use a smaller --cell",
        width.saturating_mul(*height)
    )]
    TooManyPixels {
        /// Requested width in pixels.
        width: u64,
        /// Requested height in pixels.
        height: u64,
        /// The pixel budget that was exceeded.
        limit: u64,
    },
    /// The matrix (or set of matrices) has no cells.
    #[error("empty matrix: nothing to draw")]
    Empty,
    /// Writing the output file failed.
    #[error("cannot write PNG ({cause}): {path}")]
    Io {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error (part of the message, so not also a `source`).
        cause: std::io::Error,
    },
    /// The PNG encoder reported an error that is not an I/O error.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

/// Checks a requested image size against [`MAX_SIDE`] and converts it to `u32`.
pub(crate) fn checked_size(width: u64, height: u64) -> Result<(u32, u32), RenderError> {
    let too_large = RenderError::TooLarge {
        width,
        height,
        limit: MAX_SIDE,
    };
    if width > u64::from(MAX_SIDE) || height > u64::from(MAX_SIDE) {
        return Err(too_large);
    }
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(w), Ok(h)) => Ok((w, h)),
        _ => Err(too_large),
    }
}

/// [`checked_size`] for a figure (a PNG the user asked for), which must also stay within the
/// pixel budget ([`max_pixels`]). The app's own textures are bounded by their side only.
pub(crate) fn checked_figure_size(width: u64, height: u64) -> Result<(u32, u32), RenderError> {
    let size = checked_size(width, height)?;
    let limit = max_pixels();
    // Both sides are at most MAX_SIDE here: the product cannot overflow.
    if width * height > limit {
        return Err(RenderError::TooManyPixels {
            width,
            height,
            limit,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checked_size_accepts_limit_and_rejects_beyond() {
        assert_eq!(checked_size(32_768, 1).ok(), Some((32_768, 1)));
        assert!(matches!(
            checked_size(32_769, 1),
            Err(RenderError::TooLarge { width: 32_769, .. })
        ));
        assert!(matches!(
            checked_size(1, u64::MAX),
            Err(RenderError::TooLarge { .. })
        ));
    }

    #[test]
    fn the_pixel_budget_bounds_the_area() {
        // 8 tokens at --cell 4096: 32768 × 32768 = 2^30 pixels is within the side limit but
        // 4 GiB of RGBA, 16 times the 2^26-pixel default. 8192 × 8192 = 2^26 is allowed.
        let err = checked_figure_size(32_768, 32_768).unwrap_err().to_string();
        assert!(
            err.contains("is 1073741824 pixels, more than the 67108864 allowed"),
            "{err}"
        );
        assert_eq!(checked_figure_size(8192, 8192).ok(), Some((8192, 8192)));
        assert!(checked_figure_size(8192, 8193).is_err());
        // The app's textures keep the side limit only.
        assert!(checked_size(32_768, 32_768).is_ok());
    }

    #[test]
    fn io_error_message_ends_with_path() {
        let err = RenderError::Io {
            path: PathBuf::from("/tmp/x/out.png"),
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no such dir"),
        };
        let msg = err.to_string();
        assert!(msg.ends_with("/tmp/x/out.png"), "{msg}");
        assert!(msg.contains("no such dir"), "{msg}");
    }
}
