//! A labelled heatmap figure: title, token labels, cells and a colorbar.
//!
//! ```text
//!            title
//!          k k k k k      <- key labels, rotated to read upward
//!   query  ■ ■ ■ ■ ■   ▐█▌- 1.00
//!   query  ■ ■ ■ ■ ■   ▐█▌- 0.50
//!   query  ■ ■ ■ ■ ■   ▐█▌- 0.00
//! ```
//!
//! The figure is a [`Scene`](super::scene): laid out once by one private `Layout` (shared by
//! [`heatmap_figure`], [`heatmap_svg`] and [`figure_cells_rect`]), then drawn into pixels or
//! written as SVG. Its cells are an image element painted by the same code as
//! [`heatmap_image`], so they are bit-identical to it.
//!
//! [`heatmap_image`]: super::heatmap::heatmap_image

use std::borrow::Cow;

use image::RgbaImage;
use ndarray::{Array2, ArrayView2};

use super::colorbar::{Colorbar, Tick};
pub use super::colorbar::{ColorbarTick, colorbar_image, colorbar_ticks, format_significant};
#[cfg(test)]
use super::colorbar::{format_fixed, format_power_of_ten, linear_ticks, log_ticks};
use super::colormap::Colormap;
use super::heatmap::{ValueRange, ValueScale};
pub(crate) use super::layout::{
    AXIS_PX, BAR_GAP, BAR_WIDTH, FRAME, MIN_BAR_HEIGHT, Rect, TICK_PX, TITLE_GAP, TITLE_PX,
};
pub use super::layout::{MASKED_LEGEND, MAX_LABEL_CHARS, MAX_PIXEL_SCALE};
use super::scene::{Anchor, Area, Raster, RasterKind, Scene, Text};
use super::text;
use super::{RenderError, checked_figure_size, checked_size};

/// Blank space around the whole figure, in pixels.
const MARGIN: u64 = 10;
/// Space between an axis title and the token labels.
const AXIS_GAP: u64 = 4;
/// Space between token labels and the cells.
const LABEL_GAP: u64 = 4;

/// Everything [`heatmap_figure`] needs besides the matrix.
#[derive(Clone, Debug)]
pub struct FigureOptions {
    /// Text centred above the figure, e.g. `"layer 3 · head 5 · demo"`; empty for none.
    pub title: String,
    /// One label per row (query token). Missing labels are shown as the row index.
    pub query_labels: Vec<String>,
    /// One label per column (key token). Missing labels are shown as the column index.
    pub key_labels: Vec<String>,
    /// Colormap for the cells and the colorbar.
    pub colormap: Colormap,
    /// Values mapped to the ends of the colormap.
    pub range: ValueRange,
    /// Linear or logarithmic mapping.
    pub scale: ValueScale,
    /// Side of one cell in pixels at pixel scale 1 (0 is treated as 1).
    pub cell_px: u32,
    /// `false` draws just the cells: exactly the output of `heatmap_image`.
    pub labels: bool,
    /// Cells the mask forbids (true), shape `[query, key]` like the matrix: drawn in the
    /// colormap's [`masked_color`](Colormap::masked_color), with a "masked" legend entry below
    /// the colorbar. `None` (or no true cell) draws no legend.
    pub masked: Option<Array2<bool>>,
    /// Every length (cells, text, margins) is multiplied by this, for high-resolution output;
    /// 0 is treated as 1, and values over [`MAX_PIXEL_SCALE`] are lowered to it.
    pub pixel_scale: u32,
}

impl Default for FigureOptions {
    fn default() -> Self {
        FigureOptions {
            title: String::new(),
            query_labels: Vec::new(),
            key_labels: Vec::new(),
            colormap: Colormap::default(),
            range: ValueRange::unit(),
            scale: ValueScale::default(),
            cell_px: 12,
            labels: true,
            masked: None,
            pixel_scale: 1,
        }
    }
}

impl FigureOptions {
    /// The pixel scale in use: `pixel_scale` within 1..=[`MAX_PIXEL_SCALE`].
    pub fn effective_pixel_scale(&self) -> u32 {
        self.pixel_scale.clamp(1, MAX_PIXEL_SCALE)
    }

    /// Side of one cell in output pixels: `cell_px` (at least 1) times the pixel scale.
    pub fn cell_pixels(&self) -> u64 {
        u64::from(self.cell_px.max(1)) * u64::from(self.effective_pixel_scale())
    }

    /// The masked cells, when they fit a `rows` x `cols` matrix and at least one is masked.
    pub(crate) fn masked_view(&self, rows: usize, cols: usize) -> Option<ArrayView2<'_, bool>> {
        self.masked
            .as_ref()
            .filter(|m| m.dim() == (rows, cols) && m.iter().any(|&b| b))
            .map(|m| m.view())
    }
}

/// Draws a labelled figure of `m` (shape `[query, key]`).
///
/// Title on top, the axis title "key" over the key labels along the top axis (rotated to read
/// upward), the axis title "query" (reading upward) left of the query labels (right-aligned),
/// the cells, and a vertical colorbar with 3–5 ticks on the right, with a "masked" legend entry
/// below it when cells are masked; white background, dark text. When cells are smaller than the
/// text, only every k-th label is drawn so labels never overlap. Labels longer than
/// [`MAX_LABEL_CHARS`] are shortened.
///
/// With `opts.labels == false` the result is exactly
/// [`heatmap_image_masked`](super::heatmap::heatmap_image_masked)'s output at
/// [`FigureOptions::cell_pixels`].
///
/// Errors: [`RenderError::Empty`] for a matrix without rows or columns,
/// [`RenderError::TooLarge`] when the figure would exceed
/// [`MAX_SIDE`](super::MAX_SIDE) pixels per side (checked before allocating).
pub fn heatmap_figure(m: ArrayView2<f32>, opts: &FigureOptions) -> Result<RgbaImage, RenderError> {
    let raster_cell = checked_cells(m, opts, checked_figure_size)?;
    heatmap_scene(m, opts, opts, raster_cell).png(1)
}

/// The pixels per cell of `m`'s raster (`opts.cell_pixels()`), once `m` has cells and they fit
/// `check` (the PNG's size and pixel budget, or the side limit of an SVG's embedded raster).
/// Checking the cells alone first avoids laying out millions of labels for a figure that
/// cannot be drawn anyway.
fn checked_cells(
    m: ArrayView2<f32>,
    opts: &FigureOptions,
    check: fn(u64, u64) -> Result<(u32, u32), RenderError>,
) -> Result<u32, RenderError> {
    let (rows, cols) = m.dim();
    if rows == 0 || cols == 0 {
        return Err(RenderError::Empty);
    }
    let cell = opts.cell_pixels();
    check(cols as u64 * cell, rows as u64 * cell)?;
    Ok(u32::try_from(cell).unwrap_or(u32::MAX))
}

/// Writes a labelled heatmap of `m` (shape `[query, key]`) as an SVG document: the figure of
/// [`heatmap_figure`] laid out at pixel scale 1 (SVG units are those pixels, so the SVG and a
/// PNG of the same options line up), with vector text (title, axis titles, token labels, tick
/// values, the "masked" legend) and a vector colorbar. Cells are rectangles when the map has at
/// most [`MAX_RECT_CELLS`](super::svg::MAX_RECT_CELLS) cells, else one embedded PNG: the PNG
/// figure's cells at `cell_px × pixel_scale` pixels each, so `pixel_scale` sharpens the raster
/// without changing the figure's size. With `opts.labels == false` the SVG holds only the
/// cells.
///
/// Errors: as [`heatmap_figure`] (empty matrix, too large).
pub fn heatmap_svg(m: ArrayView2<f32>, opts: &FigureOptions) -> Result<String, RenderError> {
    let raster_cell = checked_cells(m, opts, checked_size)?;
    let logical = FigureOptions {
        pixel_scale: 1,
        ..opts.clone()
    };
    heatmap_scene(m, &logical, opts, raster_cell).svg()
}

/// The heatmap figure of `m` laid out with `layout` (its pixel scale is the scene's unit), the
/// cells painted `raster_cell` pixels each with `opts`' colours and mask. Drawn at scale 1:
/// the PNG figure; written as SVG: the vector figure.
fn heatmap_scene<'a>(
    m: ArrayView2<'a, f32>,
    layout: &FigureOptions,
    opts: &'a FigureOptions,
    raster_cell: u32,
) -> Scene<'a> {
    let (rows, cols) = m.dim();
    let cells = |area: Area| {
        (
            area,
            Raster {
                m,
                masked: opts.masked_view(rows, cols),
                colormap: opts.colormap,
                range: opts.range,
                scale: opts.scale,
                kind: RasterKind::Cells { cell: raster_cell },
            },
        )
    };
    if !layout.labels {
        let cell = layout.cell_pixels();
        let (w, h) = ((cols as u64 * cell) as f32, (rows as u64 * cell) as f32);
        let mut scene = Scene::new(w, h);
        let (area, raster) = cells(Area::new(0.0, 0.0, w, h));
        scene.image(area, raster);
        return scene;
    }
    let l = Layout::new(rows, cols, layout);
    let mut scene = Scene::new(l.width as f32, l.height as f32);
    let (area, raster) = cells(Area::of(l.cells));
    scene.image(area, raster);
    l.add_decorations(&mut scene, layout);
    scene
}

/// Where the cells sit inside the figure drawn by [`heatmap_figure`] for a
/// matrix of `n_queries` x `n_keys`: `(x, y, width, height)` in pixels.
///
/// Values are saturated to `u32::MAX` for figures too large to draw.
pub fn figure_cells_rect(
    n_queries: usize,
    n_keys: usize,
    opts: &FigureOptions,
) -> (u32, u32, u32, u32) {
    let rect = if opts.labels {
        Layout::new(n_queries, n_keys, opts).cells
    } else {
        let cell = opts.cell_pixels();
        Rect {
            x: 0,
            y: 0,
            w: n_keys as u64 * cell,
            h: n_queries as u64 * cell,
        }
    };
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(rect.x), clamp(rect.y), clamp(rect.w), clamp(rect.h))
}

/// The size in pixels, `(width, height)`, of the figure [`heatmap_figure`] draws for a matrix of
/// `n_queries` x `n_keys` with `opts` (saturated to `u32::MAX`; nothing is drawn).
pub fn figure_size(n_queries: usize, n_keys: usize, opts: &FigureOptions) -> (u32, u32) {
    let (w, h) = if opts.labels {
        let layout = Layout::new(n_queries, n_keys, opts);
        (layout.width, layout.height)
    } else {
        let cell = opts.cell_pixels();
        (n_keys as u64 * cell, n_queries as u64 * cell)
    };
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(w), clamp(h))
}

/// The largest `cell_px` in `1..=max_cell_px` for which the figure of a `n_queries` x `n_keys`
/// matrix, labels and colorbar included, fits in `max_width` x `max_height` output pixels; 1
/// when even that does not fit. For views that draw a labelled figure at its own pixel size.
pub fn fit_cell_px(
    n_queries: usize,
    n_keys: usize,
    opts: &FigureOptions,
    max_width: u32,
    max_height: u32,
    max_cell_px: u32,
) -> u32 {
    let mut probe = opts.clone();
    let mut fits = |cell_px: u32| {
        probe.cell_px = cell_px;
        let (w, h) = figure_size(n_queries, n_keys, &probe);
        w <= max_width && h <= max_height
    };
    // The size grows with the cell (labels change font only between 10 and 13 px): bisect.
    let (mut lo, mut hi) = (1u32, max_cell_px.max(1));
    if !fits(lo) {
        return 1;
    }
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) { lo = mid } else { hi = mid - 1 }
    }
    lo
}

/// A labelled figure drawn to fit a view: its pixels, the options it was drawn with (the cell
/// size chosen) and where its cells lie in it, `(x, y, width, height)` in pixels.
#[derive(Clone, Debug)]
pub struct FittedFigure {
    /// The figure, exactly [`heatmap_figure`]`(drawn matrix, &options)`.
    pub image: RgbaImage,
    /// The options drawn with: the caller's, with `cell_px` from [`fit_cell_px`] (and the
    /// labels and mask of the pooled matrix when it was pooled).
    pub options: FigureOptions,
    /// The cells' rectangle ([`figure_cells_rect`]).
    pub cells: (u32, u32, u32, u32),
    /// Rows and columns of the matrix drawn: the input's, or fewer when it was max-pooled to
    /// fit (see [`super::pool::pool_block`] for which input indices each holds).
    pub shape: (usize, usize),
}

/// [`heatmap_figure`] of `m` (shape `[query, key]`) with `opts` at the largest cell size up to
/// `max_cell_px` whose figure fits `max_width` x `max_height` pixels: the labelled figure
/// (token labels, colorbar with ticks, masked legend) a view shows at one texel per pixel.
/// When even one-pixel cells do not fit, the matrix and its mask are max-pooled
/// ([`super::max_pool`], [`super::pool_mask`]) until they do, and each pooled row and column is
/// labelled with the range of token indices it holds (`12–19`). Errors as [`heatmap_figure`].
pub fn fitted_figure(
    m: ArrayView2<f32>,
    opts: &FigureOptions,
    max_width: u32,
    max_height: u32,
    max_cell_px: u32,
) -> Result<FittedFigure, RenderError> {
    let (rows, cols) = m.dim();
    let s = u64::from(opts.effective_pixel_scale());
    let fits = |o: &FigureOptions, r: usize, c: usize| {
        let (w, h) = figure_size(r, c, o);
        w <= max_width && h <= max_height
    };
    let one = FigureOptions {
        cell_px: 1,
        ..opts.clone()
    };
    if rows == 0 || cols == 0 || fits(&one, rows, cols) {
        let cell_px = fit_cell_px(rows, cols, opts, max_width, max_height, max_cell_px);
        let options = FigureOptions {
            cell_px,
            ..opts.clone()
        };
        return Ok(FittedFigure {
            image: heatmap_figure(m, &options)?,
            cells: figure_cells_rect(rows, cols, &options),
            options,
            shape: (rows, cols),
        });
    }
    // Pool to the cells the room leaves beside the labels and the colorbar; labels of ranges
    // can be wider than the tokens', so shrink until the figure fits.
    let (w1, h1) = figure_size(rows, cols, &one);
    let room = |max: u32, size: u32, n: usize| {
        let overhead = u64::from(size).saturating_sub(n as u64 * s);
        (u64::from(max).saturating_sub(overhead) / s) as usize
    };
    let mut side = room(max_width, w1, cols)
        .min(room(max_height, h1, rows))
        .max(MIN_POOLED_SIDE);
    loop {
        let pooled = super::pool::max_pool(m, side);
        let (r, c) = pooled.dim();
        let options = FigureOptions {
            cell_px: 1,
            query_labels: pooled_labels(&opts.query_labels, rows, r),
            key_labels: pooled_labels(&opts.key_labels, cols, c),
            masked: opts
                .masked
                .as_ref()
                .filter(|x| x.dim() == (rows, cols))
                .map(|x| super::pool::pool_mask(x.view(), side)),
            ..opts.clone()
        };
        if side <= MIN_POOLED_SIDE || fits(&options, r, c) {
            let cell_px = fit_cell_px(r, c, &options, max_width, max_height, max_cell_px);
            let options = FigureOptions { cell_px, ..options };
            return Ok(FittedFigure {
                image: heatmap_figure(pooled.view(), &options)?,
                cells: figure_cells_rect(r, c, &options),
                options,
                shape: (r, c),
            });
        }
        side = (side * 9 / 10).max(MIN_POOLED_SIDE);
    }
}

/// The fewest cells per side [`fitted_figure`] pools to.
const MIN_POOLED_SIDE: usize = 16;

/// Labels of a side of `n` pooled to `pooled`: the range of indices each block holds (`12–13`,
/// or `12` for a block of one), so that a thinned axis reads as one scale.
fn pooled_labels(labels: &[String], n: usize, pooled: usize) -> Vec<String> {
    if pooled >= n {
        return labels.to_vec();
    }
    (0..pooled)
        .map(|b| {
            let block = super::pool::pool_block(b, n, pooled);
            match block.len() {
                0 | 1 => block.start.to_string(),
                _ => format!("{}–{}", block.start, block.end - 1),
            }
        })
        .collect()
}

/// Shortens `label` to [`MAX_LABEL_CHARS`] characters, ending in '…' when cut.
pub fn truncate_label(label: &str) -> Cow<'_, str> {
    if label.chars().nth(MAX_LABEL_CHARS).is_none() {
        return Cow::Borrowed(label);
    }
    let mut short: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    short.push('…');
    Cow::Owned(short)
}

/// A label ready to draw: which row or column it belongs to, its text and width.
#[derive(Clone, Debug)]
pub(crate) struct Label {
    pub(crate) index: usize,
    pub(crate) text: String,
    pub(crate) width: u64,
}

/// The geometry of a labelled figure, in output pixels (pixel scale applied).
#[derive(Clone, Debug)]
pub(crate) struct Layout {
    pub(crate) width: u64,
    pub(crate) height: u64,
    pub(crate) cell: u64,
    pub(crate) cells: Rect,
    /// Top of the area holding the title (the figure's top margin).
    pub(crate) title_y: u64,
    pub(crate) title_x: u64,
    pub(crate) title_px: f32,
    pub(crate) label_px: f32,
    /// Pixel height of one label line.
    pub(crate) label_line: u64,
    pub(crate) label_gap: u64,
    pub(crate) query_labels: Vec<Label>,
    pub(crate) key_labels: Vec<Label>,
    pub(crate) axis_px: f32,
    /// Top-left corner of the "key" axis title (horizontal, centred over the cells).
    pub(crate) key_title: (u64, u64),
    /// Top-left corner of the drawn box of the "query" axis title (reading upward, centred on
    /// the cells' height).
    pub(crate) query_title: (u64, u64),
    pub(crate) colorbar: Colorbar,
}

impl Layout {
    /// Computes the geometry for a `rows` x `cols` matrix. All arithmetic is in
    /// `u64`; the caller checks the final size.
    pub(crate) fn new(rows: usize, cols: usize, opts: &FigureOptions) -> Layout {
        let s = u64::from(opts.effective_pixel_scale());
        let sf = s as f32;
        let cell = opts.cell_pixels();
        let label_px = label_font_px(cell, sf);
        let label_line = u64::from(text::line_height(label_px));
        let query_labels = prepare_labels(&opts.query_labels, rows, cell, label_line, label_px);
        let key_labels = prepare_labels(&opts.key_labels, cols, cell, label_line, label_px);
        let widest = |labels: &[Label]| labels.iter().map(|l| l.width).max().unwrap_or(0);
        let (margin, label_gap) = (MARGIN * s, LABEL_GAP * s);

        let title_px = TITLE_PX * sf;
        let title_w = u64::from(text::text_width(&opts.title, title_px));
        let title_h = if opts.title.is_empty() {
            0
        } else {
            u64::from(text::line_height(title_px)) + TITLE_GAP * s
        };
        let axis_px = AXIS_PX * sf;
        let axis_h = u64::from(text::line_height(axis_px)) + AXIS_GAP * s;

        let cells_x = margin + axis_h + widest(&query_labels) + label_gap;
        let key_title_y = margin + title_h;
        let cells_y = key_title_y + axis_h + widest(&key_labels) + label_gap;
        let cells = Rect {
            x: cells_x,
            y: cells_y,
            w: cols as u64 * cell,
            h: rows as u64 * cell,
        };
        let key_title_w = u64::from(text::text_width("key", axis_px));
        let query_title_w = u64::from(text::text_width("query", axis_px));

        let bar = Rect {
            x: cells.x + cells.w + BAR_GAP * s,
            y: cells.y,
            w: BAR_WIDTH * s,
            h: cells.h.max(MIN_BAR_HEIGHT * s),
        };
        let tick_line = u64::from(text::line_height(TICK_PX * sf));
        let ticks = place_ticks(opts.range, opts.scale, bar, tick_line);
        let masked = opts.masked_view(rows, cols).is_some();
        let colorbar = Colorbar::new(bar, ticks, s, masked);
        let content_right = colorbar.right() + margin;
        let width = content_right.max(title_w + 2 * margin);
        let height = colorbar.bottom().max(cells.y + cells.h) + margin;

        Layout {
            width,
            height,
            cell,
            cells,
            title_y: margin,
            title_x: (width - title_w) / 2,
            title_px,
            label_px,
            label_line,
            label_gap,
            query_labels,
            key_labels,
            axis_px,
            key_title: (
                (cells.x + cells.w / 2).saturating_sub(key_title_w / 2),
                key_title_y,
            ),
            query_title: (
                margin,
                (cells.y + cells.h / 2).saturating_sub(query_title_w / 2),
            ),
            colorbar,
        }
    }

    /// Adds the title, the axis titles, the labels and the colorbar (everything except the
    /// cells) to `scene`.
    fn add_decorations(&self, scene: &mut Scene<'_>, opts: &FigureOptions) {
        if !opts.title.is_empty() {
            let w = u64::from(text::text_width(&opts.title, self.title_px));
            let title = Text::centred(&opts.title, self.title_px, self.title_x, w);
            scene.label(title.top(self.title_y as f32));
        }
        let (kx, ky) = self.key_title;
        let key_w = u64::from(text::text_width("key", self.axis_px));
        scene.label(Text::centred("key", self.axis_px, kx, key_w).top(ky as f32));
        // "query" reads upward, centred on the cells' height: its box is `query_w` tall at qy.
        let (qx, qy) = self.query_title;
        let query_w = text::text_width("query", self.axis_px) as f32;
        let query = Text::new("query", self.axis_px, qx as f32, qy as f32 + query_w / 2.0);
        scene.label(query.anchor(Anchor::Middle).up());
        let half_line = self.label_line as f32 / 2.0;
        let half_cell = self.cell as f32 / 2.0;
        let right = (self.cells.x - self.label_gap) as f32;
        for label in &self.query_labels {
            let center = (self.cells.y + label.index as u64 * self.cell) as f32 + half_cell;
            let text = Text::new(&label.text, self.label_px, right, center - half_line);
            scene.label(text.anchor(Anchor::End));
        }
        // Key labels read upward from just above the cells.
        let bottom = (self.cells.y - self.label_gap) as f32;
        for label in &self.key_labels {
            let center = (self.cells.x + label.index as u64 * self.cell) as f32 + half_cell;
            scene.label(Text::new(&label.text, self.label_px, center - half_line, bottom).up());
        }
        self.colorbar.add_to(scene, opts.colormap);
    }
}

/// Font size for token labels: a little smaller than the cell, within 10–13 px (times the
/// pixel scale `s`).
fn label_font_px(cell: u64, s: f32) -> f32 {
    (cell as f32 * 0.8).clamp(10.0 * s, 13.0 * s)
}

/// Every how many rows (or columns) a label is drawn so that labels of
/// `line` pixels never overlap on cells of `cell` pixels.
fn label_step(cell: u64, line: u64) -> usize {
    usize::try_from(line.div_ceil(cell.max(1)))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// The labels to draw along one axis of `count` cells: every k-th one,
/// truncated, with missing labels replaced by the index.
fn prepare_labels(labels: &[String], count: usize, cell: u64, line: u64, px: f32) -> Vec<Label> {
    (0..count)
        .step_by(label_step(cell, line))
        .map(|index| {
            let text = match labels.get(index) {
                Some(label) => truncate_label(label).into_owned(),
                None => index.to_string(),
            };
            let width = u64::from(text::text_width(&text, px));
            Label { index, text, width }
        })
        .collect()
}

/// Positions tick values along `bar`, dropping ticks that would overlap an
/// earlier (higher-priority) one, and returns them top to bottom.
fn place_ticks(range: ValueRange, scale: ValueScale, bar: Rect, line: u64) -> Vec<Tick> {
    let last = bar.h.saturating_sub(1) as f32;
    colorbar_ticks(range, scale, last, line as f32)
        .into_iter()
        // Offsets are whole numbers in 0..=last.
        .map(|t| Tick {
            y: bar.y + t.offset as u64,
            text: t.text,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::heatmap::heatmap_image;
    use image::Rgba;
    use ndarray::Array2;

    fn sample(rows: usize, cols: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(q, k)| ((q * 7 + k * 3) % 11) as f32 / 10.0)
    }

    fn options(rows: usize, cols: usize, cell_px: u32) -> FigureOptions {
        FigureOptions {
            title: "layer 3 · head 5 · demo".to_owned(),
            query_labels: (0..rows).map(|i| format!("q{i}")).collect(),
            key_labels: (0..cols).map(|i| format!("key{i}")).collect(),
            colormap: Colormap::Inferno,
            range: ValueRange::unit(),
            scale: ValueScale::Linear,
            cell_px,
            labels: true,
            ..FigureOptions::default()
        }
    }

    fn is_dark(p: &Rgba<u8>) -> bool {
        p.0[..3].iter().all(|&c| c < 110)
    }

    fn crop(img: &RgbaImage, (x, y, w, h): (u32, u32, u32, u32)) -> RgbaImage {
        image::imageops::crop_imm(img, x, y, w, h).to_image()
    }

    #[test]
    fn labelled_figure_embeds_the_exact_heatmap() {
        let m = sample(6, 8);
        for scale in ValueScale::ALL {
            let opts = FigureOptions {
                scale,
                ..options(6, 8, 10)
            };
            let fig = heatmap_figure(m.view(), &opts).unwrap();
            let rect = figure_cells_rect(6, 8, &opts);
            assert_eq!((rect.2, rect.3), (80, 60));
            assert!(fig.width() > rect.0 + rect.2 && fig.height() > rect.1 + rect.3);
            let cells = heatmap_image(m.view(), opts.colormap, opts.range, scale, 10);
            assert_eq!(crop(&fig, rect), cells);
            let first = fig.get_pixel(0, 0);
            assert!(fig.pixels().any(|p| p != first), "figure is uniform");
        }
    }

    #[test]
    fn unlabelled_figure_is_exactly_the_heatmap() {
        let m = sample(5, 9);
        let opts = FigureOptions {
            labels: false,
            ..options(5, 9, 7)
        };
        let fig = heatmap_figure(m.view(), &opts).unwrap();
        let cells = heatmap_image(m.view(), opts.colormap, opts.range, opts.scale, 7);
        assert_eq!(fig, cells);
        assert_eq!(figure_cells_rect(5, 9, &opts), (0, 0, 63, 35));
    }

    #[test]
    fn title_is_drawn_only_when_present() {
        let m = sample(4, 4);
        let with_title = options(4, 4, 12);
        let without_title = FigureOptions {
            title: String::new(),
            ..with_title.clone()
        };
        for (opts, expect_ink) in [(with_title, true), (without_title, false)] {
            let fig = heatmap_figure(m.view(), &opts).unwrap();
            let layout = Layout::new(4, 4, &opts);
            // Everything above the "key" axis title (which sits above the key labels).
            let band_h = layout.key_title.1;
            assert!(band_h >= MARGIN);
            let band = crop(&fig, (0, 0, fig.width(), band_h as u32));
            let ink = band.pixels().filter(|p| is_dark(p)).count();
            assert_eq!(
                ink > 0,
                expect_ink,
                "title {:?}: {ink} dark pixels",
                opts.title
            );
        }
    }

    #[test]
    fn key_labels_are_rotated_and_query_labels_right_aligned() {
        let m = sample(2, 1);
        let mut opts = options(2, 1, 16);
        opts.title.clear();
        opts.key_labels = vec!["abcdefghijkl".to_owned()];
        opts.query_labels = vec!["x".to_owned(), "a much longer one".to_owned()];
        let fig = heatmap_figure(m.view(), &opts).unwrap();
        let (cx, cy, _, _) = figure_cells_rect(2, 1, &opts);

        // Key label band: above the cells; its ink is much taller than wide.
        let key_ink: Vec<(u32, u32)> = fig
            .enumerate_pixels()
            .filter(|&(x, y, p)| y < cy && x < cx + 30 && is_dark(p))
            .map(|(x, y, _)| (x, y))
            .collect();
        let (w, h) = extent(&key_ink);
        assert!(h > 3 * w, "key label ink is {w}x{h}");

        // Query labels: both end just left of the cells.
        for row in 0..2u32 {
            let right_edge = fig
                .enumerate_pixels()
                .filter(|&(x, y, p)| {
                    x < cx && y >= cy + row * 16 && y < cy + (row + 1) * 16 && is_dark(p)
                })
                .map(|(x, _, _)| x)
                .max()
                .unwrap();
            assert!(
                right_edge + 12 >= cx && right_edge < cx,
                "row {row}: ink ends at {right_edge}, cells at {cx}"
            );
        }
    }

    #[test]
    fn small_cells_elide_labels_without_overlap() {
        let opts = options(200, 300, 2);
        let layout = Layout::new(200, 300, &opts);
        let step = label_step(2, layout.label_line);
        assert!(step > 1);
        assert_eq!(layout.query_labels.len(), 200usize.div_ceil(step));
        assert_eq!(layout.key_labels.len(), 300usize.div_ceil(step));
        for labels in [&layout.query_labels, &layout.key_labels] {
            for pair in labels.windows(2) {
                let gap = (pair[1].index - pair[0].index) as u64 * layout.cell;
                assert!(gap >= layout.label_line, "labels {} px apart", gap);
            }
        }
        // Large cells draw every label.
        let layout = Layout::new(20, 30, &options(20, 30, 14));
        assert_eq!(
            (layout.query_labels.len(), layout.key_labels.len()),
            (20, 30)
        );
    }

    #[test]
    fn long_labels_are_truncated_and_missing_ones_numbered() {
        assert_eq!(truncate_label("short"), "short");
        assert_eq!(truncate_label("exactly16chars!!"), "exactly16chars!!");
        let cut = truncate_label("abcdefghijklmnopqrstuvwxyz");
        assert_eq!(cut, "abcdefghijklmno…");
        assert_eq!(cut.chars().count(), MAX_LABEL_CHARS);
        let opts = FigureOptions {
            query_labels: vec!["only one".to_owned()],
            ..options(3, 3, 14)
        };
        let layout = Layout::new(3, 3, &opts);
        let texts: Vec<&str> = layout
            .query_labels
            .iter()
            .map(|l| l.text.as_str())
            .collect();
        assert_eq!(texts, ["only one", "1", "2"]);
    }

    #[test]
    fn odd_characters_do_not_panic() {
        let m = sample(3, 3);
        let opts = FigureOptions {
            title: "注意 🦀 \u{7}".to_owned(),
            query_labels: vec!["".to_owned(), " ".to_owned(), "\u{0}\n\t".to_owned()],
            key_labels: vec![
                "Ġthe".to_owned(),
                "日本".to_owned(),
                "\u{10FFFF}".to_owned(),
            ],
            ..options(3, 3, 12)
        };
        assert!(heatmap_figure(m.view(), &opts).is_ok());
    }

    #[test]
    fn colorbar_shows_the_colormap_top_high() {
        let m = sample(20, 20);
        let opts = options(20, 20, 8);
        let fig = heatmap_figure(m.view(), &opts).unwrap();
        let layout = Layout::new(20, 20, &opts);
        let x = (layout.colorbar.bar.x + layout.colorbar.bar.w / 2) as u32;
        assert_eq!(
            fig.get_pixel(x, layout.colorbar.bar.y as u32).0,
            opts.colormap.color(1.0)
        );
        let bottom = (layout.colorbar.bar.y + layout.colorbar.bar.h - 1) as u32;
        assert_eq!(fig.get_pixel(x, bottom).0, opts.colormap.color(0.0));
        assert!(
            (3..=5).contains(&layout.colorbar.ticks.len()),
            "{:?}",
            layout.colorbar.ticks
        );
    }

    #[test]
    fn figure_errors() {
        let empty = Array2::<f32>::zeros((0, 0));
        assert!(matches!(
            heatmap_figure(empty.view(), &options(0, 0, 4)),
            Err(RenderError::Empty)
        ));
        let m = sample(4, 4);
        for labels in [true, false] {
            let opts = FigureOptions {
                labels,
                ..options(4, 4, u32::MAX)
            };
            assert!(matches!(
                heatmap_figure(m.view(), &opts),
                Err(RenderError::TooLarge { .. })
            ));
        }
    }

    fn texts(ticks: &[(f64, String)]) -> Vec<&str> {
        let mut sorted: Vec<&(f64, String)> = ticks.iter().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        sorted.into_iter().map(|(_, t)| t.as_str()).collect()
    }

    #[test]
    fn linear_ticks_are_nice() {
        assert_eq!(
            texts(&linear_ticks(0.0, 1.0)),
            ["0.00", "0.25", "0.50", "0.75", "1.00"]
        );
        assert_eq!(
            texts(&linear_ticks(0.013, 0.87)),
            ["0.2", "0.4", "0.6", "0.8"]
        );
        assert_eq!(
            texts(&linear_ticks(-1.0, 1.0)),
            ["-1.0", "-0.5", "0.0", "0.5", "1.0"]
        );
        assert_eq!(texts(&linear_ticks(0.0, 300.0)), ["0", "100", "200", "300"]);
        for (lo, hi) in [
            (0.0, 1.0),
            (0.013, 0.87),
            (-3.7, 12.9),
            (1e-7, 3e-7),
            (0.0, 2e6),
            (5.0, 5.0001),
        ] {
            let n = linear_ticks(lo, hi).len();
            assert!((3..=5).contains(&n), "{lo}..{hi}: {n} ticks");
        }
        assert_eq!(linear_ticks(1.0, 1.0).len(), 1);
        // Tiny spans and huge values switch to distinct scientific labels.
        assert_eq!(texts(&linear_ticks(1e-7, 3e-7))[0], "1.0e-7");
        assert_eq!(
            texts(&linear_ticks(0.0, 2e6)),
            ["0.0e0", "5.0e5", "1.0e6", "1.5e6", "2.0e6"]
        );
        let close = linear_ticks(5.0, 5.0001);
        let labels = texts(&close);
        let mut unique = labels.clone();
        unique.dedup();
        assert_eq!(labels, unique, "tick labels must differ");
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        assert_eq!(
            texts(&log_ticks(ValueRange::unit())),
            ["0.0001", "0.001", "0.01", "0.1", "1"]
        );
        let wide = log_ticks(ValueRange {
            min: 1e-9,
            max: 1e9,
        });
        assert!(
            wide.len() <= 5 && wide.iter().any(|(_, t)| t == "1e9"),
            "{wide:?}"
        );
        let narrow = log_ticks(ValueRange {
            min: 0.05,
            max: 0.9,
        });
        assert_eq!(texts(&narrow), ["0.05", "0.1", "0.9"]);
    }

    #[test]
    fn colorbar_ticks_for_screen_and_png_alike() {
        // Linear 0..1 on a 100-unit bar: 0, 0.25, …, 1 at offsets 100, 75, …, 0.
        let ticks = colorbar_ticks(ValueRange::unit(), ValueScale::Linear, 100.0, 10.0);
        let got: Vec<(f32, &str)> = ticks.iter().map(|t| (t.offset, t.text.as_str())).collect();
        assert_eq!(
            got,
            [
                (0.0, "1.00"),
                (25.0, "0.75"),
                (50.0, "0.50"),
                (75.0, "0.25"),
                (100.0, "0.00")
            ]
        );
        // A 30-unit bar with 10-unit lines keeps only ticks at least 10 apart.
        let short = colorbar_ticks(ValueRange::unit(), ValueScale::Linear, 30.0, 10.0);
        for pair in short.windows(2) {
            assert!(pair[1].offset - pair[0].offset >= 10.0, "{short:?}");
        }
        // Log 0..1: the floor is 1e-4 (four decades), so 1e-4 sits at the bottom, never "0.000".
        let log = colorbar_ticks(ValueRange::unit(), ValueScale::Log, 100.0, 10.0);
        let texts: Vec<&str> = log.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["1", "0.1", "0.01", "0.001", "0.0001"]);
        assert_eq!(log.last().map(|t| t.offset), Some(100.0));
        // A small range in log: the bottom end has significant digits.
        let small = ValueRange {
            min: 2e-6,
            max: 3e-5,
        };
        let texts: Vec<String> = colorbar_ticks(small, ValueScale::Log, 200.0, 10.0)
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert!(texts.iter().all(|t| t != "0.000" && t != "0"), "{texts:?}");
    }

    #[test]
    fn colorbar_image_runs_from_last_to_first_colour() {
        let img = colorbar_image(Colormap::Grays, 3, 11);
        assert_eq!(img.dimensions(), (3, 11));
        assert_eq!(img.get_pixel(0, 0).0, Colormap::Grays.color(1.0));
        assert_eq!(img.get_pixel(2, 10).0, Colormap::Grays.color(0.0));
        // Row 5 of 0..=10 is the middle.
        assert_eq!(img.get_pixel(1, 5).0, Colormap::Grays.color(0.5));
    }

    #[test]
    fn format_helpers() {
        assert_eq!(format_fixed(-0.0001, 2), "0.00");
        assert_eq!(format_fixed(-0.5, 2), "-0.50");
        assert_eq!(format_significant(4.56789), "4.57");
        assert_eq!(format_significant(0.5), "0.5");
        assert_eq!(format_significant(-20.0), "-20");
        assert_eq!(format_significant(1234.5), "1234");
        assert_eq!(format_significant(2.5e-7), "2.50e-7");
        assert_eq!(format_power_of_ten(-2), "0.01");
        assert_eq!(format_power_of_ten(3), "1000");
        assert_eq!(format_power_of_ten(-7), "1e-7");
    }

    fn extent(points: &[(u32, u32)]) -> (u32, u32) {
        let xs = points.iter().map(|p| p.0);
        let ys = points.iter().map(|p| p.1);
        let w = xs.clone().max().unwrap_or(0) - xs.min().unwrap_or(0) + 1;
        let h = ys.clone().max().unwrap_or(0) - ys.min().unwrap_or(0) + 1;
        (w, h)
    }
}

/// The SVG figure: the same layout as the PNG's at pixel scale 1.
#[cfg(test)]
mod svg_tests {
    use super::*;
    use crate::render::heatmap::heatmap_image_masked;

    fn hex(c: [u8; 4]) -> String {
        format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
    }

    fn causal(n: usize) -> (Array2<f32>, Array2<bool>) {
        let m = Array2::from_shape_fn(
            (n, n),
            |(q, k)| {
                if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 }
            },
        );
        (m, Array2::from_shape_fn((n, n), |(q, k)| k > q))
    }

    fn options(n: usize, masked: Option<Array2<bool>>) -> FigureOptions {
        FigureOptions {
            title: "layer 0 · head 1 · <demo> & co".to_owned(),
            query_labels: (0..n).map(|i| format!("q{i}")).collect(),
            key_labels: (0..n).map(|i| format!("k{i}")).collect(),
            cell_px: 10,
            masked,
            ..FigureOptions::default()
        }
    }

    /// The value of attribute `name` in each element `<tag ...>` of `svg`.
    fn attributes(svg: &str, tag: &str, name: &str) -> Vec<String> {
        svg.split(&format!("<{tag} "))
            .skip(1)
            .filter_map(|element| {
                let element = &element[..element.find('>').unwrap_or(element.len())];
                let element = format!(" {element}");
                let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
                let rest = element[start..].to_owned();
                rest.find('"').map(|end| rest[..end].to_owned())
            })
            .collect()
    }

    #[test]
    fn a_small_map_is_vector_text_and_rects() {
        let (m, masked) = causal(4);
        let svg = heatmap_svg(m.view(), &options(4, Some(masked))).unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        for text in [
            ">layer 0 · head 1 · &lt;demo&gt; &amp; co</text>",
            ">query</text>",
            ">key</text>",
            ">q3</text>",
            ">k2</text>",
            ">masked</text>",
            ">1.00</text>",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("<image"), "4x4 cells are rects");
        // Rows merge runs of equal colour: the masked cells of rows 0, 1 and 2 (three, two and
        // one cells) are one rect each, row 3 has none; plus the legend's swatch: 4 grey rects.
        let grey = hex(Colormap::Viridis.masked_color());
        let fills = attributes(&svg, "rect", "fill");
        let greys = fills.iter().filter(|f| **f == grey).count();
        assert_eq!(greys, 4, "{fills:?}");
        // The colorbar is a vector gradient, top colour first.
        assert!(svg.contains("fill=\"url(#colorbar)\""));
        let stops = attributes(&svg, "stop", "stop-color");
        assert_eq!(stops.len(), 33);
        assert_eq!(stops[0], hex(Colormap::Viridis.color(1.0)));
        assert_eq!(stops[33 - 1], hex(Colormap::Viridis.color(0.0)));
    }

    #[test]
    fn a_large_map_embeds_the_png_figures_cells() {
        let (m, masked) = causal(80);
        let opts = FigureOptions {
            cell_px: 3,
            pixel_scale: 2,
            ..options(80, Some(masked.clone()))
        };
        let svg = heatmap_svg(m.view(), &opts).unwrap();
        let hrefs = attributes(&svg, "image", "xlink:href");
        assert_eq!(hrefs.len(), 1);
        let data = hrefs[0].strip_prefix("data:image/png;base64,").unwrap();
        let png = image::load_from_memory(&crate::render::svg::tests::unbase64(data))
            .unwrap()
            .to_rgba8();
        // The raster is the PNG figure's cells at 3 × 2 pixels per cell.
        let expected = heatmap_image_masked(
            m.view(),
            Some(masked.view()),
            opts.colormap,
            ValueRange::unit(),
            ValueScale::Linear,
            6,
        );
        assert!(png == expected, "the embedded raster differs");
        // ... stretched over the logical cells (3 units each) at the PNG layout's place.
        let layout = Layout::new(
            80,
            80,
            &FigureOptions {
                pixel_scale: 1,
                ..opts.clone()
            },
        );
        assert_eq!(attributes(&svg, "image", "width"), [&*(80 * 3).to_string()]);
        assert_eq!(
            attributes(&svg, "image", "x"),
            [&*layout.cells.x.to_string()]
        );
        assert_eq!(
            attributes(&svg, "svg", "width"),
            [&*layout.width.to_string()]
        );
    }

    #[test]
    fn an_unlabelled_svg_is_just_the_cells() {
        let (m, _) = causal(3);
        let opts = FigureOptions {
            labels: false,
            ..options(3, None)
        };
        let svg = heatmap_svg(m.view(), &opts).unwrap();
        assert!(!svg.contains("<text"));
        assert_eq!(attributes(&svg, "svg", "width"), ["30"]);
        assert!(matches!(
            heatmap_svg(Array2::<f32>::zeros((0, 0)).view(), &opts),
            Err(RenderError::Empty)
        ));
    }

    #[test]
    fn vector_cells_have_the_png_cells_colours_non_finite_ones_too() {
        // NaN at (0, 0) and +∞ at (1, 1): the PNG paints both in the non-finite colour; the
        // SVG's rectangles are the same colours (before the scene, its writer coloured them as
        // the colormap's bottom).
        let m = ndarray::array![[f32::NAN, 1.0], [0.25, f32::INFINITY]];
        let opts = FigureOptions {
            cell_px: 4,
            labels: false,
            ..FigureOptions::default()
        };
        let png = heatmap_figure(m.view(), &opts).unwrap();
        let svg = heatmap_svg(m.view(), &opts).unwrap();
        // The background, then one rect per cell (no two neighbours share a colour).
        let fills = attributes(&svg, "rect", "fill");
        let cells: Vec<String> = [(0, 0), (1, 0), (0, 1), (1, 1)]
            .iter()
            .map(|&(x, y)| hex(png.get_pixel(x * 4, y * 4).0))
            .collect();
        assert_eq!(fills[1..], cells[..]);
        let magenta = hex(Colormap::Viridis.non_finite_color());
        assert_eq!((&cells[0], &cells[3]), (&magenta, &magenta));
    }
}
