//! Matrix to pixels: value normalisation and the bare heatmap image.
//!
//! A matrix has shape `[query, key]`: rows are queries, drawn top to bottom,
//! and columns are keys, drawn left to right. Each value is normalised to
//! `[0, 1]` (see [`normalize`]) and looked up in the colormap's table.

use std::fmt;
use std::str::FromStr;

use image::RgbaImage;
use ndarray::ArrayView2;

use super::colormap::{Colormap, Lut, lut_index_u8};
use super::{MAX_SIDE, RenderError, checked_size};

/// How values are mapped onto the colormap.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum ValueScale {
    /// Straight linear interpolation between the range ends.
    #[default]
    Linear,
    /// Base-10 logarithm, so small values stay distinguishable.
    Log,
}

impl ValueScale {
    /// Every scale, in menu order.
    pub const ALL: [ValueScale; 2] = [ValueScale::Linear, ValueScale::Log];

    /// The lowercase name used on the command line: `"linear"` or `"log"`.
    pub fn name(self) -> &'static str {
        match self {
            ValueScale::Linear => "linear",
            ValueScale::Log => "log",
        }
    }
}

impl fmt::Display for ValueScale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ValueScale {
    type Err = String;

    /// Parses `"linear"` or `"log"`, ignoring case and surrounding whitespace.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        ValueScale::ALL
            .into_iter()
            .find(|v| v.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| format!("unknown value scale '{wanted}'; expected one of: linear, log"))
    }
}

/// The values that map to the two ends of the colormap.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    /// Value drawn with the colormap's first color.
    pub min: f32,
    /// Value drawn with the colormap's last color.
    pub max: f32,
}

impl ValueRange {
    /// The range of the finite values in `m`, never empty.
    ///
    /// Non-finite values are ignored. When there are no finite values the
    /// result is [`ValueRange::unit`]. When all finite values equal some `v`,
    /// the range is widened: to `0..1` if `v` lies in `[0, 1]` (attention
    /// probabilities), otherwise to `v ± max(|v| / 2, 0.5)`.
    pub fn of(m: ArrayView2<f32>) -> ValueRange {
        let mut min = f32::INFINITY;
        let mut max = f32::NEG_INFINITY;
        for &v in m.iter().filter(|v| v.is_finite()) {
            min = min.min(v);
            max = max.max(v);
        }
        if min > max {
            return ValueRange::unit();
        }
        if min < max {
            return ValueRange { min, max };
        }
        if (0.0..=1.0).contains(&min) {
            return ValueRange::unit();
        }
        let half = (min.abs() * 0.5).max(0.5);
        ValueRange {
            min: min - half,
            max: min + half,
        }
    }

    /// The range `0..1`, natural for attention probabilities.
    pub fn unit() -> ValueRange {
        ValueRange { min: 0.0, max: 1.0 }
    }

    /// The symmetric range ±max(|min|, |max|) around 0, so that 0 sits at the colormap's middle
    /// (signed values such as differences); `-1..1` when both ends are 0.
    pub fn centred(self) -> ValueRange {
        let m = self.min.abs().max(self.max.abs());
        if m > 0.0 && m.is_finite() {
            ValueRange { min: -m, max: m }
        } else {
            ValueRange {
                min: -1.0,
                max: 1.0,
            }
        }
    }
}

impl Default for ValueRange {
    fn default() -> Self {
        ValueRange::unit()
    }
}

/// How far below the maximum the log scale reaches: values under `max * LOG_FLOOR_RATIO`
/// share the colormap's first colour.
pub const LOG_FLOOR_RATIO: f32 = 1e-4;

/// The smallest value the log scale tells apart for a range whose maximum is `max`:
/// `max * `[`LOG_FLOOR_RATIO`], or `1e-6` when `max <= 0`. Values (and the range's `min`) are
/// raised to it before taking the log, in the images, the colorbar ticks and the app alike.
pub fn log_floor(max: f32) -> f32 {
    if max > 0.0 {
        max * LOG_FLOOR_RATIO
    } else {
        1e-6
    }
}

/// Maps a value to `[0, 1]`.
///
/// Linear: `(value - min) / (max - min)`. Log: the same on `log10` of the
/// values, after raising values (and `min`) to [`log_floor`]`(max)`. Results are clamped to `[0, 1]` and NaN maps to 0.
/// A degenerate range (`max <= min`) acts as a step: values at or above
/// `max` map to 1, everything else to 0.
pub fn normalize(value: f32, range: ValueRange, scale: ValueScale) -> f32 {
    Normalizer::new(range, scale).apply(value)
}

/// [`normalize`] with its per-range work done once, for use in pixel loops.
///
/// The log scale uses `log2` internally: the normalised value is a ratio of
/// logarithms, so the base cancels out and `log2` is the cheaper function.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Normalizer {
    log: bool,
    /// Values below this are raised to it before taking the log (log only).
    floor: f32,
    /// Start of the (possibly logarithmic) range.
    offset: f32,
    /// `1 / span`, or 0 when the range is degenerate.
    inv_span: f32,
    /// Step threshold for degenerate ranges.
    max: f32,
}

impl Normalizer {
    /// Precomputes the mapping for `range` and `scale`.
    pub(crate) fn new(range: ValueRange, scale: ValueScale) -> Normalizer {
        let log = scale == ValueScale::Log;
        let floor = log_floor(range.max);
        let (lo, hi) = if log {
            (range.min.max(floor).log2(), range.max.max(floor).log2())
        } else {
            (range.min, range.max)
        };
        let span = hi - lo;
        let inv_span = if span > 0.0 && span.is_finite() {
            1.0 / span
        } else {
            0.0
        };
        Normalizer {
            log,
            floor,
            offset: lo,
            inv_span,
            max: range.max,
        }
    }

    /// The normalised value before clamping; NaN stays NaN.
    #[inline]
    fn unclamped(&self, value: f32) -> f32 {
        if self.inv_span == 0.0 {
            return if value >= self.max { 1.0 } else { 0.0 };
        }
        let x = if self.log {
            // `max` ignores NaN, so NaN becomes the floor (and then 0).
            value.max(self.floor).log2()
        } else {
            value
        };
        (x - self.offset) * self.inv_span
    }

    /// The normalised value in `[0, 1]`; NaN maps to 0.
    #[inline]
    pub(crate) fn apply(&self, value: f32) -> f32 {
        let t = self.unclamped(value);
        if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) }
    }

    /// Replaces `out` with the lookup-table index of each value: the same as
    /// `lut_index(self.apply(v))`, in loops simple enough to vectorise.
    pub(crate) fn lut_indices(&self, values: &[f32], out: &mut Vec<u8>) {
        out.clear();
        if self.inv_span == 0.0 {
            out.extend(values.iter().map(|&v| lut_index_u8(self.unclamped(v))));
        } else if self.log {
            let (floor, offset, inv_span) = (self.floor, self.offset, self.inv_span);
            out.extend(
                values
                    .iter()
                    .map(|&v| lut_index_u8((v.max(floor).log2() - offset) * inv_span)),
            );
        } else {
            let (offset, inv_span) = (self.offset, self.inv_span);
            out.extend(
                values
                    .iter()
                    .map(|&v| lut_index_u8((v - offset) * inv_span)),
            );
        }
    }
}

/// Draws `m` with each cell as a `cell_px` x `cell_px` block.
///
/// The image is `n_keys * cell_px` wide and `n_queries * cell_px` high. This
/// function never fails: `cell_px` of 0 is treated as 1, and a `cell_px` that
/// would exceed [`MAX_SIDE`] pixels per side is reduced
/// until the image fits (an empty matrix gives an empty image). Use
/// [`try_heatmap_image`] to get an error instead.
pub fn heatmap_image(
    m: ArrayView2<f32>,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
    cell_px: u32,
) -> RgbaImage {
    heatmap_image_masked(m, None, colormap, range, scale, cell_px)
}

/// [`heatmap_image`] with masked cells: where `masked` (shape `[query, key]`, the shape of `m`)
/// is true, the cell is painted in [`Colormap::masked_color`] instead of its value's colour, so
/// a pair the mask forbids never looks like zero attention. `None` masks nothing; a mask of
/// another shape is ignored.
pub fn heatmap_image_masked(
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
    cell_px: u32,
) -> RgbaImage {
    let (rows, cols) = m.dim();
    let Some(cell) = fitting_cell(rows, cols, cell_px) else {
        // Even one pixel per cell is too large; there is nothing sensible to draw.
        return RgbaImage::new(0, 0);
    };
    // Both sides are at most MAX_SIDE here, so the casts are lossless.
    let mut img = RgbaImage::new((cols * cell) as u32, (rows * cell) as u32);
    paint_cells(&mut img, 0, 0, m, masked, colormap, range, scale, cell);
    img
}

/// The cell size [`heatmap_image`] uses: `cell_px` raised to at least 1 and
/// lowered until `rows` x `cols` cells fit within [`MAX_SIDE`] pixels per side.
/// `None` when even one pixel per cell does not fit.
fn fitting_cell(rows: usize, cols: usize, cell_px: u32) -> Option<usize> {
    let limit = MAX_SIDE as usize;
    let longest = rows.max(cols);
    if longest > limit {
        return None;
    }
    let fit = limit / longest.max(1);
    Some((cell_px.max(1) as usize).min(fit))
}

/// Like [`heatmap_image_masked`], but reports problems instead of adapting.
///
/// Errors: [`RenderError::Empty`] when `m` has no rows or no columns, and
/// [`RenderError::TooLarge`] when the image would exceed
/// [`MAX_SIDE`] pixels on a side. `cell_px` of 0 is treated as 1.
pub fn try_heatmap_image(
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
    cell_px: u32,
) -> Result<RgbaImage, RenderError> {
    let (rows, cols) = m.dim();
    if rows == 0 || cols == 0 {
        return Err(RenderError::Empty);
    }
    let cell = u64::from(cell_px.max(1));
    let (width, height) = checked_size(cols as u64 * cell, rows as u64 * cell)?;
    let mut img = RgbaImage::new(width, height);
    paint_cells(
        &mut img,
        0,
        0,
        m,
        masked,
        colormap,
        range,
        scale,
        cell as usize,
    );
    Ok(img)
}

/// Paints `m` as `cell` x `cell` blocks into `img` with the top-left corner at
/// `(x0, y0)`, cells where `masked` is true in the colormap's masked colour. The caller
/// guarantees that the cells fit inside `img`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn paint_cells(
    img: &mut RgbaImage,
    x0: usize,
    y0: usize,
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
    cell: usize,
) {
    let (rows, cols) = m.dim();
    let src_rows: Vec<usize> = (0..rows * cell).map(|y| y / cell).collect();
    let src_cols: Vec<usize> = (0..cols * cell).map(|x| x / cell).collect();
    let target = Target::new(img, x0, y0);
    paint_resampled(
        target,
        m,
        Masked::new(masked, m.dim(), colormap),
        &src_rows,
        &src_cols,
        colormap.lut(),
        &Normalizer::new(range, scale),
    );
    paint_non_finite(img, x0, y0, m, masked, colormap, cell);
}

/// Repaints the cells of `m` that hold NaN or an infinity (and are not masked) in the
/// colormap's [`Colormap::non_finite_color`], over what [`paint_cells`] drew there.
fn paint_non_finite(
    img: &mut RgbaImage,
    x0: usize,
    y0: usize,
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    colormap: Colormap,
    cell: usize,
) {
    // The common case, every value finite, costs one branch-free pass (no early exit, so it
    // vectorises): a value is finite unless all its exponent bits are set.
    let all_finite = |values: &[f32]| {
        values.iter().fold(0u32, |acc, v| {
            acc | u32::from(v.to_bits() & 0x7f80_0000 == 0x7f80_0000)
        }) == 0
    };
    let finite = match m.as_slice() {
        Some(values) => all_finite(values),
        None => m.rows().into_iter().all(|row| match row.as_slice() {
            Some(values) => all_finite(values),
            None => row.iter().all(|v| v.is_finite()),
        }),
    };
    if finite {
        return;
    }
    let color = image::Rgba(colormap.non_finite_color());
    for ((r, c), v) in m.indexed_iter() {
        if v.is_finite() || masked.and_then(|mk| mk.get((r, c)).copied()) == Some(true) {
            continue;
        }
        for y in 0..cell {
            for x in 0..cell {
                img.put_pixel(
                    (x0 + c * cell + x) as u32,
                    (y0 + r * cell + y) as u32,
                    color,
                );
            }
        }
    }
}

/// Masked cells and their colour, for the pixel loops.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Masked<'a> {
    cells: ArrayView2<'a, bool>,
    color: [u8; 4],
}

impl<'a> Masked<'a> {
    /// `masked` if it has the matrix's shape `dim` and masks at least one cell, else `None`.
    pub(crate) fn new(
        masked: Option<ArrayView2<'a, bool>>,
        dim: (usize, usize),
        colormap: Colormap,
    ) -> Option<Masked<'a>> {
        let cells = masked?;
        (cells.dim() == dim && cells.iter().any(|&b| b)).then_some(Masked {
            cells,
            color: colormap.masked_color(),
        })
    }

    /// Whether cell (`query_idx`, `key_idx`) is masked.
    pub(crate) fn is_masked(&self, query_idx: usize, key_idx: usize) -> bool {
        self.cells
            .get((query_idx, key_idx))
            .copied()
            .unwrap_or(false)
    }

    /// The colour masked cells take.
    pub(crate) fn color(&self) -> [u8; 4] {
        self.color
    }
}

/// A place to paint: an image and the top-left corner of the painted area.
pub(crate) struct Target<'a> {
    buf: &'a mut [u8],
    stride: usize,
    x0: usize,
    y0: usize,
}

impl<'a> Target<'a> {
    /// Paints into `img` starting at pixel `(x0, y0)`.
    pub(crate) fn new(img: &'a mut RgbaImage, x0: usize, y0: usize) -> Target<'a> {
        let stride = img.width() as usize * 4;
        Target {
            buf: img,
            stride,
            x0,
            y0,
        }
    }
}

/// Paints a resampled matrix: output pixel `(x, y)` shows cell
/// `(src_rows[y], src_cols[x])`. The output is `src_cols.len()` x
/// `src_rows.len()` pixels and must fit inside the target image; indices must
/// be within the matrix.
///
/// Output rows that repeat the previous source row are copied, not
/// recomputed. When the output is at least as wide as the matrix, each cell of
/// a row is normalised once and repeated; when it is narrower, only the
/// sampled cells are normalised.
pub(crate) fn paint_resampled(
    target: Target<'_>,
    m: ArrayView2<f32>,
    masked: Option<Masked<'_>>,
    src_rows: &[usize],
    src_cols: &[usize],
    lut: &Lut,
    norm: &Normalizer,
) {
    let Target {
        buf,
        stride,
        x0,
        y0,
    } = target;
    let row_bytes = src_cols.len() * 4;
    let upsampling = src_cols.len() >= m.ncols();
    let mut values: Vec<f32> = Vec::with_capacity(m.ncols().min(src_cols.len()));
    let mut indices: Vec<u8> = Vec::with_capacity(values.capacity());
    let mut previous: Option<(usize, usize)> = None; // (source row, byte offset)
    for (y, &r) in src_rows.iter().enumerate() {
        let start = (y0 + y) * stride + x0 * 4;
        if let Some((prev_row, prev_start)) = previous
            && prev_row == r
        {
            buf.copy_within(prev_start..prev_start + row_bytes, start);
            continue;
        }
        let row = m.row(r);
        match row.as_slice() {
            Some(contiguous) if upsampling => norm.lut_indices(contiguous, &mut indices),
            _ => {
                values.clear();
                if upsampling {
                    values.extend(row.iter().copied());
                } else {
                    values.extend(src_cols.iter().map(|&c| row[c]));
                }
                norm.lut_indices(&values, &mut indices);
            }
        }
        let pixels = buf[start..start + row_bytes].chunks_exact_mut(4);
        if upsampling {
            for (pixel, &c) in pixels.zip(src_cols) {
                pixel.copy_from_slice(&lut[usize::from(indices[c])]);
            }
        } else {
            for (pixel, &i) in pixels.zip(&indices) {
                pixel.copy_from_slice(&lut[usize::from(i)]);
            }
        }
        if let Some(Masked { cells, color }) = masked {
            let mask_row = cells.row(r);
            let pixels = buf[start..start + row_bytes].chunks_exact_mut(4);
            for (pixel, &c) in pixels.zip(src_cols) {
                if mask_row[c] {
                    pixel.copy_from_slice(&color);
                }
            }
        }
        previous = Some((r, start));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array};

    fn approx(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-5
    }

    #[test]
    fn normalize_linear_hand_checked() {
        let r = ValueRange { min: 2.0, max: 6.0 };
        assert!(approx(normalize(2.0, r, ValueScale::Linear), 0.0));
        assert!(approx(normalize(3.0, r, ValueScale::Linear), 0.25));
        assert!(approx(normalize(5.0, r, ValueScale::Linear), 0.75));
        assert!(approx(normalize(6.0, r, ValueScale::Linear), 1.0));
        assert!(approx(normalize(-10.0, r, ValueScale::Linear), 0.0));
        assert!(approx(normalize(10.0, r, ValueScale::Linear), 1.0));
        assert_eq!(normalize(f32::NAN, r, ValueScale::Linear), 0.0);
    }

    #[test]
    fn the_log_floor_is_one_ten_thousandth_of_the_maximum() {
        assert_eq!(log_floor(1.0), 1e-4);
        assert_eq!(log_floor(0.5), 0.5 * 1e-4);
        assert_eq!(log_floor(0.0), 1e-6);
        assert_eq!(log_floor(-2.0), 1e-6);
        // Values at or under the floor share the first colour.
        let r = ValueRange { min: 0.0, max: 0.5 };
        assert_eq!(normalize(log_floor(0.5), r, ValueScale::Log), 0.0);
        assert_eq!(normalize(log_floor(0.5) / 10.0, r, ValueScale::Log), 0.0);
    }

    #[test]
    fn normalize_log_hand_checked() {
        // Range 0..1: floor 1e-4, so log10 runs from -4 to 0.
        let r = ValueRange::unit();
        assert!(approx(normalize(1.0, r, ValueScale::Log), 1.0));
        assert!(approx(normalize(0.1, r, ValueScale::Log), 0.75));
        assert!(approx(normalize(0.01, r, ValueScale::Log), 0.5));
        assert!(approx(normalize(1e-4, r, ValueScale::Log), 0.0));
        assert!(approx(normalize(0.0, r, ValueScale::Log), 0.0));
        assert!(approx(normalize(-5.0, r, ValueScale::Log), 0.0));
        // Range 1..100: no flooring at the bottom, log10 runs from 0 to 2.
        let r = ValueRange {
            min: 1.0,
            max: 100.0,
        };
        assert!(approx(normalize(10.0, r, ValueScale::Log), 0.5));
        assert_eq!(normalize(f32::NAN, r, ValueScale::Log), 0.0);
    }

    #[test]
    fn normalize_degenerate_range_is_a_step() {
        let r = ValueRange { min: 1.0, max: 1.0 };
        assert_eq!(normalize(0.5, r, ValueScale::Linear), 0.0);
        assert_eq!(normalize(1.0, r, ValueScale::Linear), 1.0);
        assert_eq!(normalize(3.0, r, ValueScale::Log), 1.0);
    }

    #[test]
    fn value_range_of_ignores_non_finite_and_widens() {
        let m = array![[0.2f32, f32::NAN], [f32::INFINITY, -0.5]];
        assert_eq!(
            ValueRange::of(m.view()),
            ValueRange {
                min: -0.5,
                max: 0.2
            }
        );
        let constant = Array2::from_elem((3, 3), 0.25f32);
        assert_eq!(ValueRange::of(constant.view()), ValueRange::unit());
        let constant = Array2::from_elem((2, 2), 10.0f32);
        assert_eq!(
            ValueRange::of(constant.view()),
            ValueRange {
                min: 5.0,
                max: 15.0
            }
        );
        let empty = Array2::<f32>::zeros((0, 0));
        assert_eq!(ValueRange::of(empty.view()), ValueRange::unit());
        let nans = Array2::from_elem((2, 2), f32::NAN);
        assert_eq!(ValueRange::of(nans.view()), ValueRange::unit());
    }

    #[test]
    fn heatmap_size_is_cells_times_cell_px() {
        let m = Array2::<f32>::zeros((5, 7));
        let img = heatmap_image(
            m.view(),
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            4,
        );
        assert_eq!(img.dimensions(), (28, 20));
        let img = heatmap_image(
            m.view(),
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            0,
        );
        assert_eq!(img.dimensions(), (7, 5));
    }

    #[test]
    fn heatmap_blocks_have_the_right_colors() {
        let m = array![[0.0f32, 1.0], [1.0, 0.0]];
        let cmap = Colormap::Magma;
        let img = heatmap_image(m.view(), cmap, ValueRange::unit(), ValueScale::Linear, 3);
        assert_eq!(img.dimensions(), (6, 6));
        let lo = cmap.color(0.0);
        let hi = cmap.color(1.0);
        assert_ne!(lo, hi);
        for y in 0..6 {
            for x in 0..6 {
                let expected = if (x / 3 + y / 3) % 2 == 0 { lo } else { hi };
                assert_eq!(img.get_pixel(x, y).0, expected, "pixel ({x}, {y})");
            }
        }
    }

    #[test]
    fn heatmap_matches_colormap_of_normalize_for_every_cell() {
        let m = Array2::from_shape_fn((9, 11), |(q, k)| ((q * 11 + k) as f32 * 0.37).sin());
        let range = ValueRange::of(m.view());
        for scale in ValueScale::ALL {
            let img = heatmap_image(m.view(), Colormap::Plasma, range, scale, 2);
            for ((q, k), &v) in m.indexed_iter() {
                let want = Colormap::Plasma.color(normalize(v, range, scale));
                assert_eq!(img.get_pixel(k as u32 * 2 + 1, q as u32 * 2 + 1).0, want);
            }
        }
    }

    #[test]
    fn masked_cells_take_the_masked_colour_not_the_zero_colour() {
        // Causal 3x3: cells above the diagonal are masked and hold 0, as a run would.
        let m = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]];
        let masked = Array2::from_shape_fn((3, 3), |(q, k)| k > q);
        let cmap = Colormap::Viridis;
        let r = ValueRange::unit();
        for cell in [1u32, 4] {
            let img = heatmap_image_masked(
                m.view(),
                Some(masked.view()),
                cmap,
                r,
                ValueScale::Linear,
                cell,
            );
            for ((q, k), &v) in m.indexed_iter() {
                let px = img.get_pixel(k as u32 * cell, q as u32 * cell).0;
                if k > q {
                    assert_eq!(px, cmap.masked_color(), "({q}, {k}) is masked");
                } else {
                    // (1, 0) and (2, 1) are allowed zeros: the colormap's first colour.
                    assert_eq!(px, cmap.color(v), "({q}, {k}) = {v}");
                }
            }
        }
        // No mask, or a mask of the wrong shape, paints the plain image.
        let plain = heatmap_image(m.view(), cmap, r, ValueScale::Linear, 2);
        let wrong = Array2::from_elem((2, 3), true);
        assert_eq!(
            heatmap_image_masked(m.view(), Some(wrong.view()), cmap, r, ValueScale::Linear, 2),
            plain
        );
        assert_eq!(plain.get_pixel(2, 0).0, cmap.color(0.0));
    }

    #[test]
    fn heatmap_handles_non_standard_layout() {
        let m = array![[0.0f32, 0.5], [1.0, 0.25]];
        let t = m.t();
        let img = heatmap_image(
            t,
            Colormap::Grays,
            ValueRange::unit(),
            ValueScale::Linear,
            1,
        );
        let owned = t.to_owned();
        let img2 = heatmap_image(
            owned.view(),
            Colormap::Grays,
            ValueRange::unit(),
            ValueScale::Linear,
            1,
        );
        assert_eq!(img, img2);
        assert_eq!(img.get_pixel(1, 0).0, Colormap::Grays.color(1.0));
    }

    #[test]
    fn try_heatmap_rejects_empty_and_huge() {
        let empty = Array2::<f32>::zeros((0, 0));
        let r = try_heatmap_image(
            empty.view(),
            None,
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            1,
        );
        assert!(matches!(r, Err(RenderError::Empty)));
        let m = Array2::<f32>::zeros((4, 4));
        let r = try_heatmap_image(
            m.view(),
            None,
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            u32::MAX,
        );
        assert!(
            matches!(r, Err(RenderError::TooLarge { width, .. }) if width == 4 * u64::from(u32::MAX))
        );
    }

    #[test]
    fn infallible_heatmap_shrinks_huge_cells_to_fit() {
        let limit = MAX_SIDE as usize;
        assert_eq!(fitting_cell(4, 2, u32::MAX), Some(limit / 4));
        assert_eq!(fitting_cell(4, 2, 0), Some(1));
        assert_eq!(fitting_cell(4, 2, 7), Some(7));
        assert_eq!(fitting_cell(0, 0, 7), Some(7));
        assert_eq!(fitting_cell(limit + 1, 1, 1), None);
        let tall = Array2::<f32>::zeros((limit + 1, 1));
        let img = heatmap_image(
            tall.view(),
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            1,
        );
        assert_eq!(img.dimensions(), (0, 0));
        let empty = Array2::<f32>::zeros((0, 3));
        let img = heatmap_image(
            empty.view(),
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            5,
        );
        assert_eq!(img.dimensions(), (15, 0));
    }
}
