//! An overview grid: one thumbnail per (layer, head).
//!
//! Rows are layers and columns are heads. Each thumbnail is [`thumbnail_image`]: the head's
//! matrix max-pooled to at most `thumb_px` cells per side (so a one-cell diagonal survives) and
//! then scaled to `thumb_px` x `thumb_px`, with an `L{layer}·H{head}` caption above it when
//! labels are on. The app's grid view uploads the very same images as textures.

use image::{Rgba, RgbaImage};
use ndarray::ArrayView2;

use super::colormap::Colormap;
use super::figure::{TITLE_GAP, TITLE_PX};
use super::heatmap::{Normalizer, Target, ValueRange, ValueScale, paint_resampled};
use super::pool::max_pool;
use super::text;
use super::{RenderError, checked_figure_size};

/// Space between thumbnails, and around them when there are no labels.
const GAP: u64 = 8;
/// Space around the whole grid when labels are on.
const MARGIN: u64 = 10;
/// Font size of the thumbnail captions.
const CAPTION_PX: f32 = 11.0;
/// Space between a caption and its thumbnail.
const CAPTION_GAP: u64 = 2;

/// White, the figure background.
const BACKGROUND: Rgba<u8> = Rgba([255, 255, 255, 255]);
/// Light grey drawn where a head is missing or its matrix is empty.
const MISSING: Rgba<u8> = Rgba([0xe4, 0xe4, 0xe4, 255]);

/// Everything [`grid_figure`] needs besides the matrices.
#[derive(Clone, Debug)]
pub struct GridOptions {
    /// Text centred above the grid (drawn only when `labels` is on); empty for none.
    pub title: String,
    /// Colormap for every thumbnail.
    pub colormap: Colormap,
    /// Linear or logarithmic mapping.
    pub scale: ValueScale,
    /// One range for all heads, or `None` for each head's own [`ValueRange::of`].
    pub shared_range: Option<ValueRange>,
    /// Side of each thumbnail in pixels (0 is treated as 1).
    pub thumb_px: u32,
    /// Draw the title and the `L{layer}·H{head}` captions.
    pub labels: bool,
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            title: String::new(),
            colormap: Colormap::default(),
            scale: ValueScale::default(),
            shared_range: None,
            thumb_px: 96,
            labels: true,
        }
    }
}

/// Draws one thumbnail per (layer, head): `maps[layer][head]` is a
/// `[query, key]` matrix.
///
/// Layers may have different numbers of heads; missing heads and empty
/// matrices are drawn as light grey squares.
///
/// Errors: [`RenderError::Empty`] when there are no heads at all,
/// [`RenderError::TooLarge`] when the grid would exceed
/// [`MAX_SIDE`](super::MAX_SIDE) pixels per side (checked before allocating).
pub fn grid_figure(
    maps: &[Vec<ArrayView2<f32>>],
    opts: &GridOptions,
) -> Result<RgbaImage, RenderError> {
    let n_layers = maps.len();
    let n_heads = maps.iter().map(Vec::len).max().unwrap_or(0);
    if n_heads == 0 {
        return Err(RenderError::Empty);
    }
    let layout = GridLayout::new(n_layers, n_heads, opts);
    let (width, height) = checked_figure_size(layout.width, layout.height)?;
    let mut img = RgbaImage::from_pixel(width, height, BACKGROUND);

    if let Some((x, y)) = layout.title_pos {
        text::draw_text(&mut img, &opts.title, TITLE_PX, x as i64, y as i64);
    }
    let thumb = layout.thumb as usize;
    let lut = opts.colormap.lut();
    for (layer, layer_maps) in maps.iter().enumerate() {
        for head in 0..n_heads {
            // Coordinates lie inside the checked size, so they fit in u32 and usize.
            let (x, y) = layout.thumb_origin(layer, head);
            if opts.labels {
                let caption = caption(layer, head);
                let caption_w = u64::from(text::text_width(&caption, CAPTION_PX));
                let cx = x + layout.thumb / 2;
                let cap_x = cx as i64 - (caption_w / 2) as i64;
                let cap_y = (y - layout.caption_h) as i64;
                text::draw_text(&mut img, &caption, CAPTION_PX, cap_x, cap_y);
            }
            match layer_maps.get(head) {
                Some(m) if !m.is_empty() => {
                    let range = opts.shared_range.unwrap_or_else(|| ValueRange::of(*m));
                    let target = Target::new(&mut img, x as usize, y as usize);
                    let norm = Normalizer::new(range, opts.scale);
                    paint_thumbnail(target, *m, thumb, lut, &norm);
                }
                _ => fill(&mut img, x, y, layout.thumb, MISSING),
            }
        }
    }
    Ok(img)
}

/// One grid thumbnail on its own: `m` max-pooled to at most `side` cells per side, coloured with
/// `range` (the whole map's range, or one shared by all heads) and scaled (nearest neighbour) to
/// `side` x `side` pixels. [`grid_figure`] paints exactly these pixels (with each head's own
/// [`ValueRange::of`] unless a shared range is given). An empty matrix gives an empty image;
/// `side` of 0 is treated as 1, and a side over [`MAX_SIDE`](super::MAX_SIDE) is lowered to it.
pub fn thumbnail_image(
    m: ArrayView2<f32>,
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
    paint_thumbnail(target, m, side as usize, colormap.lut(), &norm);
    img
}

/// Paints the `side` x `side` thumbnail of the non-empty `m` at `target`: max-pooled to at most
/// `side` cells per side, then each pooled cell repeated (nearest neighbour) to fill the square.
fn paint_thumbnail(
    target: Target<'_>,
    m: ArrayView2<f32>,
    side: usize,
    lut: &super::colormap::Lut,
    norm: &Normalizer,
) {
    let pooled = max_pool(m, side);
    let src_rows = nearest_indices(pooled.nrows(), side);
    let src_cols = nearest_indices(pooled.ncols(), side);
    paint_resampled(target, pooled.view(), &src_rows, &src_cols, lut, norm);
}

/// Where thumbnail `(layer, head)` sits in the image drawn by [`grid_figure`]
/// for `n_layers` x `n_heads` heads: `(x, y, width, height)` in pixels.
///
/// Useful for hit-testing clicks on the grid. Values are saturated to
/// `u32::MAX` for grids too large to draw.
pub fn grid_thumb_rect(
    n_layers: usize,
    n_heads: usize,
    layer: usize,
    head: usize,
    opts: &GridOptions,
) -> (u32, u32, u32, u32) {
    let layout = GridLayout::new(n_layers, n_heads, opts);
    let (x, y) = layout.thumb_origin(layer, head);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(x), clamp(y), clamp(layout.thumb), clamp(layout.thumb))
}

/// The caption of thumbnail `(layer, head)`, 0-based.
fn caption(layer: usize, head: usize) -> String {
    format!("L{layer}·H{head}")
}

/// For each of `out` output pixels, the source index (of `n`) whose centre
/// is nearest: `floor((i + 0.5) * n / out)`.
fn nearest_indices(n: usize, out: usize) -> Vec<usize> {
    let (n64, out64) = (n as u64, out.max(1) as u64);
    (0..out as u64)
        .map(|i| (((2 * i + 1) * n64) / (2 * out64)) as usize)
        .map(|i| i.min(n.saturating_sub(1)))
        .collect()
}

/// Fills a `side` x `side` square at `(x, y)` with `color`.
fn fill(img: &mut RgbaImage, x: u64, y: u64, side: u64, color: Rgba<u8>) {
    for py in y..y + side {
        for px in x..x + side {
            img.put_pixel(px as u32, py as u32, color);
        }
    }
}

/// The geometry of a grid figure.
#[derive(Clone, Debug)]
struct GridLayout {
    width: u64,
    height: u64,
    thumb: u64,
    /// Distance between the left edges of neighbouring columns.
    pitch_x: u64,
    /// Distance between the top edges of neighbouring rows.
    pitch_y: u64,
    /// Offset of the thumbnail inside its (possibly wider) column.
    inset_x: u64,
    /// Height reserved for a caption above each thumbnail (0 without labels).
    caption_h: u64,
    /// Top-left corner of the first caption or thumbnail.
    origin: (u64, u64),
    /// Top-left corner of the title, if one is drawn.
    title_pos: Option<(u64, u64)>,
}

impl GridLayout {
    fn new(n_layers: usize, n_heads: usize, opts: &GridOptions) -> GridLayout {
        let thumb = u64::from(opts.thumb_px.max(1));
        let (n_layers64, n_heads64) = (n_layers as u64, n_heads as u64);
        if !opts.labels {
            let pitch = thumb + GAP;
            return GridLayout {
                width: GAP + n_heads64 * pitch,
                height: GAP + n_layers64 * pitch,
                thumb,
                pitch_x: pitch,
                pitch_y: pitch,
                inset_x: 0,
                caption_h: 0,
                origin: (GAP, GAP),
                title_pos: None,
            };
        }
        // Captions differ only in their digits; the widest is among the
        // largest indices, but measuring a handful of candidates is cheap.
        let widest_caption = (0..n_layers)
            .rev()
            .take(10)
            .flat_map(|l| (0..n_heads).rev().take(10).map(move |h| caption(l, h)))
            .map(|c| u64::from(text::text_width(&c, CAPTION_PX)))
            .max()
            .unwrap_or(0);
        let column_w = thumb.max(widest_caption);
        let caption_h = u64::from(text::line_height(CAPTION_PX)) + CAPTION_GAP;
        let title_w = u64::from(text::text_width(&opts.title, TITLE_PX));
        let title_h = if opts.title.is_empty() {
            0
        } else {
            u64::from(text::line_height(TITLE_PX)) + TITLE_GAP
        };
        let pitch_x = column_w + GAP;
        let pitch_y = caption_h + thumb + GAP;
        let content_w = (n_heads64 * pitch_x).saturating_sub(GAP);
        let width = (content_w + 2 * MARGIN).max(title_w + 2 * MARGIN);
        let height = 2 * MARGIN + title_h + (n_layers64 * pitch_y).saturating_sub(GAP);
        GridLayout {
            width,
            height,
            thumb,
            pitch_x,
            pitch_y,
            inset_x: (column_w - thumb) / 2,
            caption_h,
            origin: (MARGIN, MARGIN + title_h),
            title_pos: (!opts.title.is_empty()).then(|| ((width - title_w) / 2, MARGIN)),
        }
    }

    /// Top-left corner of thumbnail `(layer, head)` (below its caption).
    fn thumb_origin(&self, layer: usize, head: usize) -> (u64, u64) {
        let x = self.origin.0 + head as u64 * self.pitch_x + self.inset_x;
        let y = self.origin.1 + layer as u64 * self.pitch_y + self.caption_h;
        (x, y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::heatmap::heatmap_image;
    use ndarray::Array2;

    fn heads(n_layers: usize, n_heads: usize, n: usize) -> Vec<Array2<f32>> {
        (0..n_layers * n_heads)
            .map(|i| Array2::from_shape_fn((n, n), |(q, k)| ((q + 2 * k + i) % 5) as f32 / 4.0))
            .collect()
    }

    fn views(owned: &[Array2<f32>], n_heads: usize) -> Vec<Vec<ArrayView2<'_, f32>>> {
        owned
            .chunks(n_heads)
            .map(|layer| layer.iter().map(|m| m.view()).collect())
            .collect()
    }

    fn crop(img: &RgbaImage, (x, y, w, h): (u32, u32, u32, u32)) -> RgbaImage {
        image::imageops::crop_imm(img, x, y, w, h).to_image()
    }

    #[test]
    fn grid_dimensions_for_2_layers_by_3_heads() {
        let owned = heads(2, 3, 4);
        let maps = views(&owned, 3);
        let opts = GridOptions {
            thumb_px: 40,
            labels: false,
            ..GridOptions::default()
        };
        let img = grid_figure(&maps, &opts).unwrap();
        let gap = GAP as u32;
        assert_eq!(
            img.dimensions(),
            (gap + 3 * (40 + gap), gap + 2 * (40 + gap))
        );
        assert_eq!(
            grid_thumb_rect(2, 3, 1, 2, &opts),
            (gap + 2 * (40 + gap), gap + 40 + gap, 40, 40)
        );

        let labelled = GridOptions {
            title: "all heads".to_owned(),
            labels: true,
            ..opts
        };
        let img2 = grid_figure(&maps, &labelled).unwrap();
        assert!(img2.width() >= img.width() && img2.height() > img.height());
        // Thumbnails never overlap and all lie inside the image.
        let rects: Vec<_> = (0..2)
            .flat_map(|l| (0..3).map(move |h| (l, h)))
            .map(|(l, h)| grid_thumb_rect(2, 3, l, h, &labelled))
            .collect();
        for (i, a) in rects.iter().enumerate() {
            assert!(a.0 + a.2 <= img2.width() && a.1 + a.3 <= img2.height());
            for b in &rects[i + 1..] {
                let apart =
                    a.0 + a.2 <= b.0 || b.0 + b.2 <= a.0 || a.1 + a.3 <= b.1 || b.1 + b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }

    #[test]
    fn thumbnails_are_scaled_heatmaps() {
        // 4x4 matrices at 40 px per side: exactly 10 px per cell.
        let owned = heads(2, 3, 4);
        let maps = views(&owned, 3);
        let opts = GridOptions {
            thumb_px: 40,
            scale: ValueScale::Log,
            ..GridOptions::default()
        };
        let img = grid_figure(&maps, &opts).unwrap();
        for (i, m) in owned.iter().enumerate() {
            let (layer, head) = (i / 3, i % 3);
            let expected = heatmap_image(
                m.view(),
                opts.colormap,
                ValueRange::of(m.view()),
                opts.scale,
                10,
            );
            assert_eq!(
                crop(&img, grid_thumb_rect(2, 3, layer, head, &opts)),
                expected,
                "L{layer}H{head}"
            );
        }
    }

    #[test]
    fn long_maps_are_max_pooled_so_a_diagonal_survives() {
        // 300 tokens at 96 px: nearest-neighbour sampling would keep only the cells whose row
        // and column both land on sampled indices, and a one-hot diagonal shifted by one
        // (previous token) would vanish almost entirely.
        let n = 300;
        let prev =
            Array2::from_shape_fn((n, n), |(q, k)| f32::from(q == k + 1 || (q, k) == (0, 0)));
        let maps = vec![vec![prev.view()]];
        let opts = GridOptions {
            thumb_px: 96,
            colormap: Colormap::Grays,
            labels: false,
            ..GridOptions::default()
        };
        let img = grid_figure(&maps, &opts).unwrap();
        let thumb = crop(&img, grid_thumb_rect(1, 1, 0, 0, &opts));
        assert_eq!(
            thumb,
            thumbnail_image(
                prev.view(),
                96,
                Colormap::Grays,
                ValueRange::unit(),
                ValueScale::Linear
            )
        );
        // Every row of the thumbnail has a white pixel (pooled 1.0), near the diagonal.
        for y in 0..96 {
            let white: Vec<u32> = (0..96)
                .filter(|&x| thumb.get_pixel(x, y).0 == [255, 255, 255, 255])
                .collect();
            assert!(!white.is_empty(), "row {y} lost the diagonal");
            assert!(
                white.iter().all(|&x| x.abs_diff(y) <= 1),
                "row {y}: {white:?}"
            );
        }
    }

    #[test]
    fn thumbnails_of_small_maps_are_upsampled_and_empty_maps_give_nothing() {
        let m = Array2::from_shape_fn((2, 2), |(q, k)| (q * 2 + k) as f32 / 3.0);
        let t = thumbnail_image(
            m.view(),
            4,
            Colormap::Grays,
            ValueRange::unit(),
            ValueScale::Linear,
        );
        // Each cell becomes a 2x2 block: cell (1, 0) = 2/3 covers pixels (0..2, 2..4).
        assert_eq!(t.dimensions(), (4, 4));
        assert_eq!(t.get_pixel(0, 2), t.get_pixel(1, 3));
        assert_ne!(t.get_pixel(0, 2), t.get_pixel(2, 2));
        let empty = Array2::<f32>::zeros((0, 0));
        let t = thumbnail_image(
            empty.view(),
            4,
            Colormap::Grays,
            ValueRange::unit(),
            ValueScale::Linear,
        );
        assert_eq!(t.dimensions(), (0, 0));
    }

    #[test]
    fn captions_and_title_are_drawn() {
        let owned = heads(1, 2, 3);
        let maps = views(&owned, 2);
        let dark = |img: &RgbaImage| {
            img.pixels()
                .filter(|p| p.0[..3].iter().all(|&c| c < 110))
                .count()
        };
        let plain = GridOptions {
            thumb_px: 24,
            colormap: Colormap::Grays,
            shared_range: Some(ValueRange {
                min: -10.0,
                max: 0.0,
            }), // all cells white
            labels: false,
            ..GridOptions::default()
        };
        assert_eq!(dark(&grid_figure(&maps, &plain).unwrap()), 0);
        let labelled = GridOptions {
            labels: true,
            ..plain.clone()
        };
        let captions_only = dark(&grid_figure(&maps, &labelled).unwrap());
        assert!(captions_only > 0);
        let titled = GridOptions {
            title: "overview".to_owned(),
            ..labelled
        };
        assert!(dark(&grid_figure(&maps, &titled).unwrap()) > captions_only);
    }

    #[test]
    fn downsampling_and_missing_heads() {
        let big = Array2::from_shape_fn((100, 100), |(q, k)| (q * k) as f32);
        let empty = Array2::<f32>::zeros((0, 0));
        let maps = vec![vec![big.view(), empty.view()], vec![big.view()]];
        let opts = GridOptions {
            thumb_px: 16,
            labels: false,
            ..GridOptions::default()
        };
        let img = grid_figure(&maps, &opts).unwrap();
        assert_eq!(
            img.get_pixel(GAP as u32 + 16 + GAP as u32, GAP as u32),
            &MISSING
        );
        let (x, y, _, _) = grid_thumb_rect(2, 2, 1, 1, &opts);
        assert_eq!(img.get_pixel(x, y), &MISSING);
    }

    #[test]
    fn nearest_indices_cover_the_source() {
        assert_eq!(nearest_indices(2, 4), [0, 0, 1, 1]);
        assert_eq!(nearest_indices(4, 2), [1, 3]);
        assert_eq!(nearest_indices(3, 3), [0, 1, 2]);
        assert_eq!(nearest_indices(0, 2), [0, 0]);
    }

    #[test]
    fn grid_errors() {
        assert!(matches!(
            grid_figure(&[], &GridOptions::default()),
            Err(RenderError::Empty)
        ));
        assert!(matches!(
            grid_figure(&[vec![], vec![]], &GridOptions::default()),
            Err(RenderError::Empty)
        ));
        let m = Array2::<f32>::zeros((2, 2));
        let maps = vec![vec![m.view(); 3]];
        let opts = GridOptions {
            thumb_px: u32::MAX,
            ..GridOptions::default()
        };
        assert!(matches!(
            grid_figure(&maps, &opts),
            Err(RenderError::TooLarge { .. })
        ));
    }
}
