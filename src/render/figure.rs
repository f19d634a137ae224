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
//! The cells are painted by the same code as [`heatmap_image`], so they are
//! bit-identical to it. All geometry comes from one private `Layout`, shared by
//! [`heatmap_figure`] and [`figure_cells_rect`].
//!
//! [`heatmap_image`]: super::heatmap::heatmap_image

use std::borrow::Cow;

use image::{Rgba, RgbaImage};
use ndarray::ArrayView2;

use super::colormap::Colormap;
use super::heatmap::{
    ValueRange, ValueScale, log_floor, normalize, paint_cells, try_heatmap_image,
};
use super::text::{self, Mask, Orientation, TEXT_COLOR};
use super::{RenderError, checked_figure_size};

/// Blank space around the whole figure, in pixels.
const MARGIN: u64 = 10;
/// Font size of the title, in pixels.
pub(crate) const TITLE_PX: f32 = 16.0;
/// Space between the title and what is below it.
pub(crate) const TITLE_GAP: u64 = 8;
/// Space between token labels and the cells.
const LABEL_GAP: u64 = 4;
/// Space between the cells and the colorbar.
const BAR_GAP: u64 = 14;
/// Width of the colorbar.
const BAR_WIDTH: u64 = 16;
/// Smallest colorbar height, so tiny matrices still get a readable bar.
const MIN_BAR_HEIGHT: u64 = 120;
/// Length of the tick marks right of the colorbar.
const TICK_LEN: u64 = 4;
/// Space between a tick mark and its value.
const TICK_GAP: u64 = 3;
/// Font size of the tick values.
const TICK_PX: f32 = 11.0;
/// Labels longer than this many characters are shortened with '…'.
pub const MAX_LABEL_CHARS: usize = 16;

/// White, the figure background.
const BACKGROUND: Rgba<u8> = Rgba([255, 255, 255, 255]);
/// Mid grey for the colorbar frame.
const FRAME: Rgba<u8> = Rgba([0x88, 0x88, 0x88, 255]);

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
    /// Side of one cell in pixels (0 is treated as 1).
    pub cell_px: u32,
    /// `false` draws just the cells: exactly the output of `heatmap_image`.
    pub labels: bool,
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
        }
    }
}

/// Draws a labelled figure of `m` (shape `[query, key]`).
///
/// Title on top, key labels along the top axis (rotated to read upward),
/// query labels on the left (right-aligned), the cells, and a vertical
/// colorbar with 3–5 ticks on the right; white background, dark text. When
/// cells are smaller than the text, only every k-th label is drawn so labels
/// never overlap. Labels longer than [`MAX_LABEL_CHARS`] are shortened.
///
/// With `opts.labels == false` the result is exactly
/// [`heatmap_image`](super::heatmap::heatmap_image)'s output.
///
/// Errors: [`RenderError::Empty`] for a matrix without rows or columns,
/// [`RenderError::TooLarge`] when the figure would exceed
/// [`MAX_SIDE`](super::MAX_SIDE) pixels per side (checked before allocating).
pub fn heatmap_figure(m: ArrayView2<f32>, opts: &FigureOptions) -> Result<RgbaImage, RenderError> {
    let (rows, cols) = m.dim();
    if rows == 0 || cols == 0 {
        return Err(RenderError::Empty);
    }
    // The cells alone must fit (within the pixel budget too, labels or not); checking this
    // first avoids laying out millions of labels for a figure that cannot be drawn anyway.
    let cell = u64::from(opts.cell_px.max(1));
    checked_figure_size(cols as u64 * cell, rows as u64 * cell)?;
    if !opts.labels {
        return try_heatmap_image(m, opts.colormap, opts.range, opts.scale, opts.cell_px);
    }
    let layout = Layout::new(rows, cols, opts);
    let (width, height) = checked_figure_size(layout.width, layout.height)?;
    let mut img = RgbaImage::from_pixel(width, height, BACKGROUND);

    // All coordinates below lie inside the checked size, so they fit in u32 and usize.
    paint_cells(
        &mut img,
        layout.cells.x as usize,
        layout.cells.y as usize,
        m,
        opts.colormap,
        opts.range,
        opts.scale,
        layout.cell as usize,
    );
    layout.draw_decorations(&mut img, opts);
    Ok(img)
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
        let cell = u64::from(opts.cell_px.max(1));
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

/// Shortens `label` to [`MAX_LABEL_CHARS`] characters, ending in '…' when cut.
pub fn truncate_label(label: &str) -> Cow<'_, str> {
    if label.chars().nth(MAX_LABEL_CHARS).is_none() {
        return Cow::Borrowed(label);
    }
    let mut short: String = label.chars().take(MAX_LABEL_CHARS - 1).collect();
    short.push('…');
    Cow::Owned(short)
}

/// An axis-aligned rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rect {
    x: u64,
    y: u64,
    w: u64,
    h: u64,
}

/// A label ready to draw: which row or column it belongs to, its text and width.
#[derive(Clone, Debug)]
struct Label {
    index: usize,
    text: String,
    width: u64,
}

/// One colorbar tick: its vertical position and its text.
#[derive(Clone, Debug, PartialEq)]
struct Tick {
    y: u64,
    text: String,
}

/// The geometry of a labelled figure.
#[derive(Clone, Debug)]
struct Layout {
    width: u64,
    height: u64,
    cell: u64,
    cells: Rect,
    /// Top of the area holding the title (the figure's top margin).
    title_y: u64,
    title_x: u64,
    label_px: f32,
    /// Pixel height of one label line.
    label_line: u64,
    query_labels: Vec<Label>,
    key_labels: Vec<Label>,
    bar: Rect,
    ticks: Vec<Tick>,
}

impl Layout {
    /// Computes the geometry for a `rows` x `cols` matrix. All arithmetic is in
    /// `u64`; the caller checks the final size.
    fn new(rows: usize, cols: usize, opts: &FigureOptions) -> Layout {
        let cell = u64::from(opts.cell_px.max(1));
        let label_px = label_font_px(cell);
        let label_line = u64::from(text::line_height(label_px));
        let query_labels = prepare_labels(&opts.query_labels, rows, cell, label_line, label_px);
        let key_labels = prepare_labels(&opts.key_labels, cols, cell, label_line, label_px);
        let widest = |labels: &[Label]| labels.iter().map(|l| l.width).max().unwrap_or(0);

        let title_w = u64::from(text::text_width(&opts.title, TITLE_PX));
        let title_h = if opts.title.is_empty() {
            0
        } else {
            u64::from(text::line_height(TITLE_PX)) + TITLE_GAP
        };

        let cells_x = MARGIN + widest(&query_labels) + LABEL_GAP;
        let key_labels_top = MARGIN + title_h;
        let cells_y = key_labels_top + widest(&key_labels) + LABEL_GAP;
        let cells = Rect {
            x: cells_x,
            y: cells_y,
            w: cols as u64 * cell,
            h: rows as u64 * cell,
        };

        let bar = Rect {
            x: cells.x + cells.w + BAR_GAP,
            y: cells.y,
            w: BAR_WIDTH,
            h: cells.h.max(MIN_BAR_HEIGHT),
        };
        let tick_line = u64::from(text::line_height(TICK_PX));
        let ticks = place_ticks(opts.range, opts.scale, bar, tick_line);
        let ticks_w = ticks
            .iter()
            .map(|t| u64::from(text::text_width(&t.text, TICK_PX)))
            .max()
            .unwrap_or(0);
        let content_right = bar.x + bar.w + TICK_LEN + TICK_GAP + ticks_w + MARGIN;
        let width = content_right.max(title_w + 2 * MARGIN);
        let height = bar.y + bar.h + tick_line / 2 + 1 + MARGIN;

        Layout {
            width,
            height,
            cell,
            cells,
            title_y: MARGIN,
            title_x: (width - title_w) / 2,
            label_px,
            label_line,
            query_labels,
            key_labels,
            bar,
            ticks,
        }
    }

    /// Draws the title, labels and colorbar (everything except the cells).
    fn draw_decorations(&self, img: &mut RgbaImage, opts: &FigureOptions) {
        if !opts.title.is_empty() {
            text::draw_text(
                img,
                &opts.title,
                TITLE_PX,
                self.title_x as i64,
                self.title_y as i64,
            );
        }
        let half_line = self.label_line as f64 / 2.0;
        let half_cell = self.cell as f64 / 2.0;
        for label in &self.query_labels {
            let center = (self.cells.y + label.index as u64 * self.cell) as f64 + half_cell;
            let x = self.cells.x as i64 - LABEL_GAP as i64 - label.width as i64;
            let y = (center - half_line).round() as i64;
            text::draw_text(img, &label.text, self.label_px, x, y);
        }
        for label in &self.key_labels {
            let center = (self.cells.x + label.index as u64 * self.cell) as f64 + half_cell;
            let mask = Mask::render(&label.text, self.label_px);
            let x = (center - half_line).round() as i64;
            let y = self.cells.y as i64 - LABEL_GAP as i64 - label.width as i64;
            text::draw_mask(img, &mask, x, y, Orientation::Up, TEXT_COLOR);
        }
        self.draw_colorbar(img, opts.colormap);
    }

    /// Draws the colorbar (high values on top), its frame, tick marks and values.
    fn draw_colorbar(&self, img: &mut RgbaImage, colormap: Colormap) {
        let bar = self.bar;
        // The bar lies inside the checked figure size, so its sides fit in u32.
        let gradient = colorbar_image(colormap, bar.w as u32, bar.h as u32);
        image::imageops::replace(img, &gradient, bar.x as i64, bar.y as i64);
        // A one-pixel frame just outside the bar.
        let (left, right) = (bar.x - 1, bar.x + bar.w);
        let (top, bottom) = (bar.y - 1, bar.y + bar.h);
        for x in left..=right {
            img.put_pixel(x as u32, top as u32, FRAME);
            img.put_pixel(x as u32, bottom as u32, FRAME);
        }
        for y in top..=bottom {
            img.put_pixel(left as u32, y as u32, FRAME);
            img.put_pixel(right as u32, y as u32, FRAME);
        }
        let tick_line = u64::from(text::line_height(TICK_PX));
        let mark = Rgba([TEXT_COLOR[0], TEXT_COLOR[1], TEXT_COLOR[2], 255]);
        for tick in &self.ticks {
            for x in right..right + TICK_LEN {
                img.put_pixel(x as u32, tick.y as u32, mark);
            }
            let x = (right + TICK_LEN + TICK_GAP) as i64;
            let y = tick.y as i64 - (tick_line / 2) as i64;
            text::draw_text(img, &tick.text, TICK_PX, x, y);
        }
    }
}

/// Font size for token labels: a little smaller than the cell, within 10–13 px.
fn label_font_px(cell: u64) -> f32 {
    (cell as f32 * 0.8).clamp(10.0, 13.0)
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

/// One tick of a vertical colorbar.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorbarTick {
    /// Distance from the top of the bar (the range's maximum), a whole number in `0..=length`.
    pub offset: f32,
    /// The value as text: nice round numbers, powers of ten on a log scale, significant digits
    /// (or scientific notation) for small ends.
    pub text: String,
}

/// The ticks of a vertical colorbar `length` units long (pixels in a PNG, points on screen)
/// whose top shows `range.max`: 3–5 nice values (powers of ten on a log scale), placed where
/// [`normalize`] puts them, most important first kept, and any tick closer than `min_gap` to
/// a kept one dropped. Sorted top to bottom. The PNG figure and the app's colorbar both use it.
pub fn colorbar_ticks(
    range: ValueRange,
    scale: ValueScale,
    length: f32,
    min_gap: f32,
) -> Vec<ColorbarTick> {
    let length = length.max(0.0);
    let mut placed: Vec<ColorbarTick> = Vec::new();
    for (value, text) in tick_values(range, scale) {
        let t = normalize(value as f32, range, scale);
        let offset = ((1.0 - t) * length).round();
        if placed.iter().all(|p| (p.offset - offset).abs() >= min_gap) {
            placed.push(ColorbarTick { offset, text });
        }
    }
    placed.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    placed
}

/// The colorbar's gradient: `width` x `height` pixels, the colormap's last colour in the top
/// row and its first in the bottom row, linear in between (the values' scale lives in the
/// ticks). The PNG figure draws it and the app uploads it as a texture.
pub fn colorbar_image(colormap: Colormap, width: u32, height: u32) -> RgbaImage {
    let last = height.saturating_sub(1).max(1) as f32;
    RgbaImage::from_fn(width, height, |_, row| {
        Rgba(colormap.color(1.0 - row as f32 / last))
    })
}

/// Tick values and their texts, most important first.
fn tick_values(range: ValueRange, scale: ValueScale) -> Vec<(f64, String)> {
    match scale {
        ValueScale::Linear => linear_ticks(f64::from(range.min), f64::from(range.max)),
        ValueScale::Log => log_ticks(range),
    }
}

/// 3–5 "nice" ticks (multiples of 1, 2, 2.5 or 5 times a power of ten) inside
/// `min..=max`; falls back to min, middle and max.
fn linear_ticks(min: f64, max: f64) -> Vec<(f64, String)> {
    let span = max - min;
    if !(span > 0.0 && span.is_finite()) {
        return vec![(max, format_significant(max))];
    }
    let magnitude = 10f64.powf((span / 4.0).log10().floor());
    for multiple in [1.0, 2.0, 2.5, 5.0, 10.0] {
        let step = multiple * magnitude;
        let first = (min / step - 1e-9).ceil();
        let last = (max / step + 1e-9).floor();
        let count = last - first + 1.0;
        if count > 5.0 {
            continue;
        }
        if count < 3.0 {
            break;
        }
        let decimals = decimals_for_step(step, multiple);
        let largest = min.abs().max(max.abs());
        // Scientific notation keeps huge or very precise labels short.
        let scientific = largest >= 1e6 || decimals > 6;
        let precision = ((largest.log10().floor() - step.log10().floor()) as i64
            + i64::from(multiple == 2.5))
        .clamp(1, 8) as usize;
        return (first as i64..=last as i64)
            .map(|k| {
                let value = k as f64 * step;
                let text = if scientific {
                    format!("{value:.precision$e}")
                } else {
                    format_fixed(value, decimals)
                };
                (value, text)
            })
            .collect();
    }
    let middle = min + span / 2.0;
    [max, min, middle]
        .into_iter()
        .map(|v| (v, format_significant(v)))
        .collect()
}

/// Decimal places that show every multiple of `step` exactly.
fn decimals_for_step(step: f64, multiple: f64) -> usize {
    let whole = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let extra = usize::from(multiple == 2.5);
    (whole + extra).min(8)
}

/// Formats `value` with a fixed number of decimals, never as "-0.00".
fn format_fixed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => text,
    }
}

/// Formats `value` with up to three significant digits, without trailing zeros: `0.25`,
/// `0.00123`, `1.20e-5`, `0`. Used for the colorbar's range ends and the app's hover values.
pub fn format_significant(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".to_owned()
    } else if (1e-3..1e5).contains(&magnitude) {
        let decimals = (2.0 - magnitude.log10().floor()).max(0.0) as usize;
        let text = format_fixed(value, decimals);
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    } else {
        format!("{value:.2e}")
    }
}

/// Formats 10^exponent: plain decimals for 0.0001..=10000, else "1e{exponent}".
fn format_power_of_ten(exponent: i32) -> String {
    match exponent {
        0..=4 => 10u32.pow(exponent.unsigned_abs()).to_string(),
        -4..=-1 => format!(
            "{:.*}",
            exponent.unsigned_abs() as usize,
            10f64.powi(exponent)
        ),
        _ => format!("1e{exponent}"),
    }
}

/// Powers of ten inside the (floored) range, at most five, anchored at the
/// top; with fewer than three, the range ends are added.
fn log_ticks(range: ValueRange) -> Vec<(f64, String)> {
    let max = f64::from(range.max);
    let floor = f64::from(log_floor(range.max));
    let low = f64::from(range.min).max(floor);
    let high = max.max(floor);
    if !(high > low && high.is_finite()) {
        return vec![(max, format_significant(max))];
    }
    let first = (low.log10() - 1e-6).ceil() as i32;
    let last = (high.log10() + 1e-6).floor() as i32;
    let count = (last - first + 1).max(0);
    let stride = ((count + 4) / 5).max(1);
    let mut ticks: Vec<(f64, String)> = (0..count)
        .step_by(stride as usize)
        .map(|i| last - i)
        .map(|e| (10f64.powi(e), format_power_of_ten(e)))
        .collect();
    if ticks.len() < 3 {
        ticks.push((high, format_significant(high)));
        ticks.push((low, format_significant(low)));
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::heatmap::heatmap_image;
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
            // Everything above the tallest (rotated) key label.
            let key_band = layout.key_labels.iter().map(|l| l.width).max().unwrap();
            let band_h = layout.cells.y - LABEL_GAP - key_band;
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
        let x = (layout.bar.x + layout.bar.w / 2) as u32;
        assert_eq!(
            fig.get_pixel(x, layout.bar.y as u32).0,
            opts.colormap.color(1.0)
        );
        let bottom = (layout.bar.y + layout.bar.h - 1) as u32;
        assert_eq!(fig.get_pixel(x, bottom).0, opts.colormap.color(0.0));
        assert!((3..=5).contains(&layout.ticks.len()), "{:?}", layout.ticks);
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
