//! Max-pooling: shrinking a matrix without losing its peaks.
//!
//! Whenever a map has more cells than there are pixels to show it (grid thumbnails, the exported
//! grid, the on-screen heatmap of a long input), it is max-pooled here first, so a one-cell-wide
//! pattern such as the previous-token diagonal stays visible at every size. Nearest-neighbour
//! sampling would keep only one cell in every k and can leave a diagonal almost blank.

use image::RgbaImage;
use ndarray::{Array2, ArrayView2};

use super::colormap::Colormap;
use super::heatmap::{
    Masked, Normalizer, Target, ValueRange, ValueScale, heatmap_image_masked, paint_resampled,
};

/// Max-pools `m` (shape `[query, key]`) so that neither side exceeds `max_side`.
///
/// Input row `i` of `rows` lands in output row `i * out_rows / rows` (columns alike), so every
/// output cell covers a non-empty, contiguous block and holds that block's maximum: a single
/// bright cell stays as bright after pooling. Rows and columns are pooled independently; a side
/// already within `max_side` is kept, so a matrix with both sides within `max_side` is returned
/// unchanged. A `max_side` of 0 is treated as 1. NaN inputs are ignored unless a whole block is
/// NaN.
pub fn max_pool(m: ArrayView2<'_, f32>, max_side: usize) -> Array2<f32> {
    let (rows, cols) = m.dim();
    let max_side = max_side.max(1);
    if rows <= max_side && cols <= max_side {
        return m.to_owned();
    }
    let (out_rows, out_cols) = (rows.min(max_side), cols.min(max_side));
    let col_bin: Vec<usize> = (0..cols).map(|j| j * out_cols / cols).collect();
    let mut out = Array2::from_elem((out_rows, out_cols), f32::NAN);
    for (i, row) in m.rows().into_iter().enumerate() {
        let mut dst = out.row_mut(i * out_rows / rows);
        for (&v, &b) in row.iter().zip(&col_bin) {
            if let Some(d) = dst.get_mut(b) {
                *d = d.max(v);
            }
        }
    }
    out
}

/// The input indices [`max_pool`] puts in output row (or column) `pooled_idx` when a side of
/// `n` is pooled to `pooled` (the `i` with `i * pooled / n == pooled_idx`). Empty when
/// `pooled_idx` is out of range.
pub fn pool_block(pooled_idx: usize, n: usize, pooled: usize) -> std::ops::Range<usize> {
    if pooled == 0 || pooled_idx >= pooled {
        return 0..0;
    }
    let first = |b: usize| (b * n).div_ceil(pooled).min(n);
    first(pooled_idx)..first(pooled_idx + 1)
}

/// Pools a mask (true = masked) with the blocks of [`max_pool`]: a pooled cell is masked only
/// when every cell of its block is, so a pooled block that holds any allowed cell shows that
/// cell's (maximum) value, and a masked band stays visible as one.
pub fn pool_mask(masked: ArrayView2<'_, bool>, max_side: usize) -> Array2<bool> {
    let (rows, cols) = masked.dim();
    let max_side = max_side.max(1);
    if rows <= max_side && cols <= max_side {
        return masked.to_owned();
    }
    let (out_rows, out_cols) = (rows.min(max_side), cols.min(max_side));
    let col_bin: Vec<usize> = (0..cols).map(|j| j * out_cols / cols).collect();
    let mut out = Array2::from_elem((out_rows, out_cols), true);
    for (i, row) in masked.rows().into_iter().enumerate() {
        let mut dst = out.row_mut(i * out_rows / rows);
        for (&v, &b) in row.iter().zip(&col_bin) {
            if let Some(d) = dst.get_mut(b) {
                *d &= v;
            }
        }
    }
    out
}

/// The sides of a pooled pyramid of a map whose longer side is `n`: `n`, then halved (rounding
/// up) while the previous side exceeds `min_side`. For example `n = 2000, min_side = 256` gives
/// 2000, 1000, 500, 250.
pub fn pyramid_sides(n: usize, min_side: usize) -> Vec<usize> {
    let mut sides = vec![n];
    let mut side = n;
    while side > min_side.max(1) {
        side = side.div_ceil(2);
        sides.push(side);
    }
    sides
}

/// Heatmap images of `m` at one pixel per cell, max-pooled to each of [`pyramid_sides`]`(n,
/// min_side)` where `n` is the longer side of `m`: level 0 is exactly
/// [`heatmap_image`](super::heatmap::heatmap_image)`(m, …, 1)`, level k is `m` max-pooled to at most `sides[k]` cells per side.
///
/// A viewer picks the finest level with no more cells across than it has pixels, so no cell is
/// skipped by the GPU's nearest-neighbour sampling. Every level is pooled from `m` itself, so its
/// blocks are as even as [`max_pool`] makes them. Cells where `masked` is true (shape of `m`)
/// take the masked colour; pooled levels pool the mask with [`pool_mask`].
pub fn heatmap_pyramid(
    m: ArrayView2<'_, f32>,
    masked: Option<ArrayView2<'_, bool>>,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
    min_side: usize,
) -> Vec<RgbaImage> {
    let n = m.nrows().max(m.ncols());
    pyramid_sides(n, min_side)
        .into_iter()
        .map(|side| {
            if side >= n {
                heatmap_image_masked(m, masked, colormap, range, scale, 1)
            } else {
                let pooled_mask = masked.map(|mask| pool_mask(mask, side));
                heatmap_image_masked(
                    max_pool(m, side).view(),
                    pooled_mask.as_ref().map(|m| m.view()),
                    colormap,
                    range,
                    scale,
                    1,
                )
            }
        })
        .collect()
}

/// One grid thumbnail on its own: `m` max-pooled to at most `side` cells per side, coloured with
/// `range` (the whole map's range, or one shared by all heads) and scaled (nearest neighbour) to
/// `side` x `side` pixels; cells where `masked` is true (pooled with
/// [`pool_mask`]) in the masked colour. [`grid_figure`](super::grid_figure) paints exactly these pixels (with each
/// head's own [`ValueRange::of`] unless a shared range is given). An empty matrix gives an empty
/// image; `side` of 0 is treated as 1, and a side over [`MAX_SIDE`](super::MAX_SIDE) is lowered
/// to it.
pub fn thumbnail_image(
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    side: u32,
    colormap: Colormap,
    range: ValueRange,
    scale: ValueScale,
) -> RgbaImage {
    if m.is_empty() {
        return RgbaImage::new(0, 0);
    }
    let side = side.clamp(1, super::MAX_SIDE);
    let mut img = RgbaImage::new(side, side);
    let target = Target::new(&mut img, 0, 0);
    let norm = Normalizer::new(range, scale);
    let lut = colormap.lut();
    paint_thumbnail(target, m, masked, side as usize, colormap, lut, &norm);
    img
}

/// Paints the `side` x `side` thumbnail of the non-empty `m` at `target`: max-pooled to at most
/// `side` cells per side, then each pooled cell repeated (nearest neighbour) to fill the square.
pub(crate) fn paint_thumbnail(
    target: Target<'_>,
    m: ArrayView2<f32>,
    masked: Option<ArrayView2<bool>>,
    side: usize,
    colormap: Colormap,
    lut: &super::colormap::Lut,
    norm: &Normalizer,
) {
    let pooled = max_pool(m, side);
    let pooled_mask = masked
        .filter(|mask| mask.dim() == m.dim())
        .map(|mask| pool_mask(mask, side));
    let masked = Masked::new(
        pooled_mask.as_ref().map(|mask| mask.view()),
        pooled.dim(),
        colormap,
    );
    let src_rows = nearest_indices(pooled.nrows(), side);
    let src_cols = nearest_indices(pooled.ncols(), side);
    paint_resampled(
        target,
        pooled.view(),
        masked,
        &src_rows,
        &src_cols,
        lut,
        norm,
    );
}

/// For each of `out` output pixels, the source index (of `n`) whose centre
/// is nearest: `floor((i + 0.5) * n / out)`.
pub(crate) fn nearest_indices(n: usize, out: usize) -> Vec<usize> {
    let (n64, out64) = (n as u64, out.max(1) as u64);
    (0..out as u64)
        .map(|i| (((2 * i + 1) * n64) / (2 * out64)) as usize)
        .map(|i| i.min(n.saturating_sub(1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::heatmap::heatmap_image;
    use ndarray::Array2;

    /// A one-hot diagonal: query i attends only to key i.
    fn diagonal(n: usize) -> Array2<f32> {
        Array2::from_shape_fn((n, n), |(i, j)| if i == j { 1.0 } else { 0.0 })
    }

    #[test]
    fn small_matrices_are_unchanged() {
        let m = Array2::from_shape_fn((7, 7), |(i, j)| (i * 7 + j) as f32 / 49.0);
        assert_eq!(max_pool(m.view(), 96), m);
        assert_eq!(max_pool(m.view(), 7), m);
        let d = diagonal(96);
        assert_eq!(max_pool(d.view(), 96), d);
    }

    #[test]
    fn pooled_shapes() {
        let m = Array2::<f32>::zeros((512, 512));
        assert_eq!(max_pool(m.view(), 96).dim(), (96, 96));
        let m = Array2::<f32>::zeros((97, 97));
        assert_eq!(max_pool(m.view(), 96).dim(), (96, 96));
        let m = Array2::<f32>::zeros((200, 50));
        assert_eq!(max_pool(m.view(), 96).dim(), (96, 50));
        let m = Array2::<f32>::zeros((10, 10));
        assert_eq!(max_pool(m.view(), 0).dim(), (1, 1));
        let m = Array2::<f32>::zeros((0, 0));
        assert_eq!(max_pool(m.view(), 96).dim(), (0, 0));
    }

    #[test]
    fn one_hot_diagonal_stays_bright() {
        let d = diagonal(512);
        let t = max_pool(d.view(), 96);
        assert_eq!(t.dim(), (96, 96));
        for i in 0..96 {
            assert_eq!(t.get((i, i)), Some(&1.0), "diagonal cell {i} lost its peak");
        }
        assert_eq!(t.get((0, 95)), Some(&0.0));
        assert_eq!(t.get((95, 0)), Some(&0.0));
        let bright = t.iter().filter(|&&v| v == 1.0).count();
        assert!(
            bright < 96 * 3,
            "{bright} bright cells: the diagonal smeared"
        );
    }

    #[test]
    fn pooling_takes_block_maxima() {
        // 4x4 pooled to 2x2: each output is the max of a 2x2 block.
        let m = ndarray::array![
            [0.1, 0.2, 0.0, 0.0],
            [0.0, 0.9, 0.3, 0.0],
            [0.5, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.7f32],
        ];
        assert_eq!(
            max_pool(m.view(), 2),
            ndarray::array![[0.9, 0.3], [0.5, 0.7f32]]
        );
    }

    #[test]
    fn every_input_cell_lands_in_a_block() {
        // A single 1.0 anywhere must survive pooling.
        let n = 301;
        for &(i, j) in &[(0, 0), (n - 1, n - 1), (150, 7), (3, 299)] {
            let mut m = Array2::<f32>::zeros((n, n));
            m[(i, j)] = 1.0;
            let t = max_pool(m.view(), 96);
            assert_eq!(
                t.iter().filter(|&&v| v == 1.0).count(),
                1,
                "peak at ({i}, {j})"
            );
        }
    }

    #[test]
    fn nan_is_ignored_unless_the_whole_block_is_nan() {
        let m = ndarray::array![
            [f32::NAN, 0.5, f32::NAN, f32::NAN],
            [0.25, f32::NAN, f32::NAN, f32::NAN]
        ];
        let t = max_pool(m.view(), 2);
        assert_eq!(t.dim(), (2, 2));
        // Columns 0-1 pool to 0.5 (row 0) and 0.25 (row 1); columns 2-3 are all NaN.
        assert_eq!(t[(0, 0)], 0.5);
        assert_eq!(t[(1, 0)], 0.25);
        assert!(t[(0, 1)].is_nan() && t[(1, 1)].is_nan());
    }

    #[test]
    fn non_contiguous_views_pool_the_same() {
        let m = Array2::from_shape_fn((300, 300), |(i, j)| ((i * 31 + j * 17) % 101) as f32);
        let t = m.t().to_owned();
        assert_eq!(max_pool(m.t(), 96), max_pool(t.view(), 96));
    }

    #[test]
    fn pyramid_halves_down_to_the_minimum() {
        assert_eq!(pyramid_sides(2000, 256), [2000, 1000, 500, 250]);
        assert_eq!(pyramid_sides(100, 256), [100]);
        assert_eq!(pyramid_sides(257, 256), [257, 129]);
        assert_eq!(pyramid_sides(3, 0), [3, 2, 1]);
    }

    #[test]
    fn every_pyramid_level_keeps_a_one_cell_diagonal() {
        let d = diagonal(2000);
        let levels = heatmap_pyramid(
            d.view(),
            None,
            Colormap::Grays,
            ValueRange::unit(),
            ValueScale::Linear,
            256,
        );
        let sides: Vec<u32> = levels.iter().map(|l| l.width()).collect();
        assert_eq!(sides, [2000, 1000, 500, 250]);
        assert_eq!(
            levels[0],
            heatmap_image(
                d.view(),
                Colormap::Grays,
                ValueRange::unit(),
                ValueScale::Linear,
                1
            )
        );
        for level in &levels {
            let side = level.width();
            // Grays draws 1.0 white and 0.0 black: every diagonal pixel is white.
            for i in 0..side {
                assert_eq!(
                    level.get_pixel(i, i).0,
                    [255, 255, 255, 255],
                    "level {side}, pixel {i}"
                );
            }
            assert_eq!(level.get_pixel(side - 1, 0).0[..3], [0, 0, 0]);
        }
    }

    #[test]
    fn pooled_masks_keep_a_block_masked_only_when_all_of_it_is() {
        // 4x4 causal (masked above the diagonal) pooled to 2x2: the top-right block is all
        // masked; the diagonal blocks hold allowed cells.
        let causal = Array2::from_shape_fn((4, 4), |(q, k)| k > q);
        assert_eq!(
            pool_mask(causal.view(), 2),
            ndarray::array![[false, true], [false, false]]
        );
        assert_eq!(pool_mask(causal.view(), 4), causal);
        // A 2000-token causal map: each level is masked in its upper triangle, not on or below
        // the diagonal, and painted in the masked colour there.
        let n = 2000;
        let m = Array2::from_shape_fn(
            (n, n),
            |(q, k)| if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 },
        );
        let masked = Array2::from_shape_fn((n, n), |(q, k)| k > q);
        let levels = heatmap_pyramid(
            m.view(),
            Some(masked.view()),
            Colormap::Viridis,
            ValueRange::unit(),
            ValueScale::Linear,
            256,
        );
        let grey = Colormap::Viridis.masked_color();
        for level in &levels {
            let side = level.width();
            assert_eq!(level.get_pixel(side - 1, 0).0, grey, "level {side}");
            assert_ne!(level.get_pixel(0, side - 1).0, grey, "level {side}");
            assert_ne!(level.get_pixel(side / 2, side / 2).0, grey, "level {side}");
        }
    }
}
