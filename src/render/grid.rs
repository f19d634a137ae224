//! An overview grid: one thumbnail per (layer, head).
//!
//! Rows are layers and columns are heads. Each thumbnail is [`thumbnail_image`]: the head's
//! matrix max-pooled to at most `thumb_px` cells per side (so a one-cell diagonal survives) and
//! then scaled to `thumb_px` x `thumb_px`, with an `L{layer}·H{head}` caption above it when
//! labels are on. The app's grid view uploads the very same images as textures.
//!
//! A labelled grid also carries the title, the start of the input text, a colorbar (with the
//! shared range's values, or "head max"/"head min" when each head has its own range), a
//! "masked" legend entry when the mask forbids cells, and, for grouped-query attention, the
//! app's KV grouping: the query heads sharing a key/value head as adjacent columns under a
//! bracket labelled `KV g` ([`kv_column_groups`] decides, for the app and the figure alike).

use image::{Rgba, RgbaImage};
use ndarray::{Array2, ArrayView2};

use super::colorbar::{Colorbar, Tick};
use super::colormap::Colormap;
use super::figure::{
    BAR_GAP, BAR_WIDTH, MIN_BAR_HEIGHT, Rect, TICK_PX, TITLE_GAP, TITLE_PX, colorbar_ticks,
};
use super::heatmap::{ValueRange, ValueScale};
#[cfg(test)]
use super::pool::nearest_indices;
pub use super::pool::thumbnail_image;
use super::scene::{Area, Raster, RasterKind, Scene, Text};
use super::text::{self, TEXT_COLOR};
use super::{RenderError, checked_figure_size, checked_size};

/// Space between thumbnails, and around them when there are no labels.
const GAP: u64 = 8;
/// Extra space between two KV groups.
const GROUP_GAP: u64 = 10;
/// Space around the whole grid when labels are on.
const MARGIN: u64 = 10;
/// Font size of the thumbnail captions and KV group labels.
pub(crate) const CAPTION_PX: f32 = 11.0;
/// Space between a caption and its thumbnail.
const CAPTION_GAP: u64 = 2;
/// Font size of the input text line.
pub(crate) const TEXT_PX: f32 = 12.0;
/// Height of a KV bracket's end ticks.
const BRACKET_H: u64 = 5;
/// Largest colorbar height of a grid (a 24-layer grid need not have a bar as tall).
const MAX_BAR_HEIGHT: u64 = 360;

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
    /// Each head's own range is centred on 0 ([`ValueRange::centred`]): signed maps.
    pub centred: bool,
    /// Side of each thumbnail in pixels at pixel scale 1 (0 is treated as 1).
    pub thumb_px: u32,
    /// Draw the title, the input text, the captions, the KV brackets and the colorbar.
    pub labels: bool,
    /// Cells the mask forbids (true), shape `[query, key]` of every head (one mask per run).
    pub masked: Option<Array2<bool>>,
    /// Per key/value head, the query heads that share it (`Checkpoint::kv_groups`); drawn as
    /// in the app when [`kv_column_groups`] accepts them, else ignored.
    pub kv_groups: Vec<Vec<usize>>,
    /// The input text; its start is drawn under the title (one line, cut with '…').
    pub text: String,
    /// Every length is multiplied by this (0 is treated as 1, at most
    /// [`MAX_PIXEL_SCALE`](super::figure::MAX_PIXEL_SCALE)).
    pub pixel_scale: u32,
}

impl GridOptions {
    /// The range head map `m` is coloured with: the shared one, else its own (centred when
    /// asked).
    pub fn head_range(&self, m: ndarray::ArrayView2<'_, f32>) -> ValueRange {
        match self.shared_range {
            Some(range) => range,
            None if self.centred => ValueRange::of(m).centred(),
            None => ValueRange::of(m),
        }
    }
}

impl Default for GridOptions {
    fn default() -> Self {
        GridOptions {
            title: String::new(),
            colormap: Colormap::default(),
            scale: ValueScale::default(),
            shared_range: None,
            centred: false,
            thumb_px: super::ExportStyle::THUMB_PX,
            labels: true,
            masked: None,
            kv_groups: Vec::new(),
            text: String::new(),
            pixel_scale: 1,
        }
    }
}

impl GridOptions {
    /// The pixel scale in use.
    pub(crate) fn s(&self) -> u64 {
        u64::from(self.pixel_scale.clamp(1, super::figure::MAX_PIXEL_SCALE))
    }

    /// The masked cells, when they fit a `rows` x `cols` matrix and at least one is masked.
    pub(crate) fn masked_view(&self, dim: (usize, usize)) -> Option<ArrayView2<'_, bool>> {
        self.masked
            .as_ref()
            .filter(|m| m.dim() == dim && m.iter().any(|&b| b))
            .map(|m| m.view())
    }
}

/// Layers, the most heads in a layer, and the masked cells (when the mask forbids any) of a
/// grid of `maps`; the PNG and the SVG grid start from it. Errors: no heads at all.
pub(crate) fn grid_shape<'a>(
    maps: &[Vec<ArrayView2<f32>>],
    opts: &'a GridOptions,
) -> Result<(usize, usize, Option<ArrayView2<'a, bool>>), RenderError> {
    let n_heads = maps.iter().map(Vec::len).max().unwrap_or(0);
    if n_heads == 0 {
        return Err(RenderError::Empty);
    }
    let dim = maps
        .iter()
        .flatten()
        .map(|m| m.dim())
        .next()
        .unwrap_or((0, 0));
    Ok((maps.len(), n_heads, opts.masked_view(dim)))
}

/// One key/value head's query heads, as the grids (app and figure) draw them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvGroup {
    /// The key/value head.
    pub kv_idx: usize,
    /// Its query heads, ascending; drawn as adjacent columns.
    pub heads: Vec<usize>,
}

/// The key/value groups to draw: `Some` only when `kv_groups` (per KV head, the query heads
/// that share it) lists every one of `heads` heads exactly once and some KV head is shared.
/// Anything else (no GQA, or groups that do not fit the run) draws the plain grid.
pub fn kv_column_groups(kv_groups: &[Vec<usize>], heads: usize) -> Option<Vec<KvGroup>> {
    if !kv_groups.iter().any(|g| g.len() > 1) {
        return None;
    }
    let mut seen = vec![false; heads];
    for &h in kv_groups.iter().flatten() {
        match seen.get_mut(h) {
            Some(s) if !*s => *s = true,
            _ => return None,
        }
    }
    if !seen.iter().all(|&s| s) {
        return None;
    }
    let groups = kv_groups
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.is_empty())
        .map(|(kv_idx, g)| {
            let mut heads = g.clone();
            heads.sort_unstable();
            KvGroup { kv_idx, heads }
        })
        .collect();
    Some(groups)
}

/// The start of `text` on one line that fits `width` pixels at `px`: whitespace runs become
/// single spaces, quoted, and cut with '…' when it does not fit. Empty for an empty text.
pub fn text_start(text: &str, px: f32, width: u64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return String::new();
    }
    let whole = format!("“{}”", words.join(" "));
    if u64::from(text::text_width(&whole, px)) <= width {
        return whole;
    }
    let chars: Vec<char> = words.join(" ").chars().collect();
    // The longest prefix that fits, by bisection on the character count.
    let (mut lo, mut hi) = (0usize, chars.len());
    let candidate = |n: usize| format!("“{}…”", chars[..n].iter().collect::<String>().trim_end());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if u64::from(text::text_width(&candidate(mid), px)) <= width {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    candidate(lo)
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
    let (n_layers, n_heads, masked) = grid_shape(maps, opts)?;
    let layout = GridLayout::new(n_layers, n_heads, opts, masked.is_some());
    checked_figure_size(layout.width, layout.height)?;
    let raster = u32::try_from(layout.thumb).unwrap_or(u32::MAX);
    grid_scene(maps, &layout, opts, masked, raster).png(1)
}

/// Writes the grid of [`grid_figure`] as an SVG document: laid out at pixel scale 1, with vector
/// title, input text, captions, KV brackets, colorbar and legend, and each thumbnail an embedded
/// PNG (the very [`thumbnail_image`], at `thumb_px × pixel_scale` pixels). Without labels, only
/// the thumbnails.
///
/// Errors: as [`grid_figure`].
pub fn grid_svg(maps: &[Vec<ArrayView2<f32>>], opts: &GridOptions) -> Result<String, RenderError> {
    let (n_layers, n_heads, masked) = grid_shape(maps, opts)?;
    let logical = GridOptions {
        pixel_scale: 1,
        ..opts.clone()
    };
    let layout = GridLayout::new(n_layers, n_heads, &logical, masked.is_some());
    checked_size(layout.width, layout.height)?;
    let raster = u32::try_from(u64::from(opts.thumb_px.max(1)) * opts.s()).unwrap_or(u32::MAX);
    grid_scene(maps, &layout, opts, masked, raster).svg()
}

/// The grid of `maps` laid out by `layout`, each thumbnail painted `raster` pixels a side with
/// `opts`' colours: the title, the input's start, the KV brackets, each head's caption and
/// thumbnail (a grey square for a missing or empty head), and the colorbar.
fn grid_scene<'a>(
    maps: &[Vec<ArrayView2<'a, f32>>],
    layout: &GridLayout,
    opts: &GridOptions,
    masked: Option<ArrayView2<'a, bool>>,
    raster: u32,
) -> Scene<'a> {
    let mut scene = Scene::new(layout.width as f32, layout.height as f32);
    if let Some((x, y)) = layout.title_pos {
        let w = u64::from(text::text_width(&opts.title, layout.title_px));
        let title = Text::centred(&opts.title, layout.title_px, x, w);
        scene.label(title.top(y as f32));
    }
    if let Some((x, y, line)) = &layout.text_line {
        let w = u64::from(text::text_width(line, layout.text_px));
        let line = Text::centred(line, layout.text_px, *x, w);
        scene.label(line.top(*y as f32));
    }
    layout.add_brackets(&mut scene);
    let thumb = layout.thumb as f32;
    for (layer, layer_maps) in maps.iter().enumerate() {
        for head in 0..layout.column_x.len() {
            let (x, y) = layout.thumb_origin(layer, head);
            if opts.labels {
                let caption = caption(layer, head);
                let w = u64::from(text::text_width(&caption, layout.caption_px));
                let left = (x + layout.thumb / 2).saturating_sub(w / 2);
                let caption = Text::centred(caption, layout.caption_px, left, w);
                scene.label(caption.top((y - layout.caption_h) as f32));
            }
            let area = Area::new(x as f32, y as f32, thumb, thumb);
            match layer_maps.get(head) {
                Some(m) if !m.is_empty() => scene.image(
                    area,
                    Raster {
                        m: *m,
                        masked: masked.filter(|mask| mask.dim() == m.dim()),
                        colormap: opts.colormap,
                        range: opts.head_range(*m),
                        scale: opts.scale,
                        kind: RasterKind::Thumbnail { side: raster },
                    },
                ),
                _ => scene.fill(area, MISSING.0),
            }
        }
    }
    if let Some(bar) = &layout.colorbar {
        bar.add_to(&mut scene, opts.colormap);
    }
    scene
}

/// Where thumbnail `(layer, head)` sits in the image drawn by [`grid_figure`]
/// for `n_layers` x `n_heads` heads: `(x, y, width, height)` in pixels.
///
/// Depends on the options' layout (thumbnail side, labels, title, text, KV groups, pixel
/// scale), not on the maps. Values are saturated to `u32::MAX` for grids too large to draw.
pub fn grid_thumb_rect(
    n_layers: usize,
    n_heads: usize,
    layer: usize,
    head: usize,
    opts: &GridOptions,
) -> (u32, u32, u32, u32) {
    let layout = GridLayout::new(n_layers, n_heads, opts, false);
    let (x, y) = layout.thumb_origin(layer, head);
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    (clamp(x), clamp(y), clamp(layout.thumb), clamp(layout.thumb))
}

/// The caption of thumbnail `(layer, head)`, 0-based.
pub(crate) fn caption(layer: usize, head: usize) -> String {
    format!("L{layer}·H{head}")
}

/// A KV bracket: the group's label and the span of its thumbnails.
#[derive(Clone, Debug)]
pub(crate) struct Bracket {
    pub(crate) label: String,
    pub(crate) left: u64,
    pub(crate) right: u64,
}

/// The geometry of a grid figure, in output pixels.
#[derive(Clone, Debug)]
pub(crate) struct GridLayout {
    pub(crate) width: u64,
    pub(crate) height: u64,
    pub(crate) thumb: u64,
    /// Left edge of each head's column (the thumbnail is `inset_x` further right).
    pub(crate) column_x: Vec<u64>,
    /// Distance between the top edges of neighbouring rows.
    pub(crate) pitch_y: u64,
    /// Offset of the thumbnail inside its (possibly wider) column.
    pub(crate) inset_x: u64,
    /// Height reserved for a caption above each thumbnail (0 without labels).
    pub(crate) caption_h: u64,
    /// Top of the first caption or thumbnail.
    pub(crate) top: u64,
    /// Top-left corner of the title, if one is drawn.
    pub(crate) title_pos: Option<(u64, u64)>,
    /// The input text line and its top-left corner.
    pub(crate) text_line: Option<(u64, u64, String)>,
    /// KV brackets, and the top of the band holding them.
    pub(crate) brackets: Vec<Bracket>,
    pub(crate) bracket_top: u64,
    pub(crate) title_px: f32,
    pub(crate) text_px: f32,
    pub(crate) caption_px: f32,
    /// Line width at this pixel scale.
    pub(crate) line: u64,
    pub(crate) colorbar: Option<Colorbar>,
}

impl GridLayout {
    pub(crate) fn new(
        n_layers: usize,
        n_heads: usize,
        opts: &GridOptions,
        masked: bool,
    ) -> GridLayout {
        let s = opts.s();
        let sf = s as f32;
        let thumb = u64::from(opts.thumb_px.max(1)) * s;
        let n_layers64 = n_layers as u64;
        let (caption_px, title_px, text_px) = (CAPTION_PX * sf, TITLE_PX * sf, TEXT_PX * sf);
        if !opts.labels {
            let (gap, pitch) = (GAP * s, thumb + GAP * s);
            return GridLayout {
                width: gap + n_heads as u64 * pitch,
                height: gap + n_layers64 * pitch,
                thumb,
                column_x: (0..n_heads as u64).map(|h| gap + h * pitch).collect(),
                pitch_y: pitch,
                inset_x: 0,
                caption_h: 0,
                top: gap,
                title_pos: None,
                text_line: None,
                brackets: Vec::new(),
                bracket_top: 0,
                title_px,
                text_px,
                caption_px,
                line: s,
                colorbar: None,
            };
        }
        let (margin, gap) = (MARGIN * s, GAP * s);
        // Captions differ only in their digits; the widest is among the
        // largest indices, but measuring a handful of candidates is cheap.
        let widest_caption = (0..n_layers)
            .rev()
            .take(10)
            .flat_map(|l| (0..n_heads).rev().take(10).map(move |h| caption(l, h)))
            .map(|c| u64::from(text::text_width(&c, caption_px)))
            .max()
            .unwrap_or(0);
        let column_w = thumb.max(widest_caption);
        let caption_h = u64::from(text::line_height(caption_px)) + CAPTION_GAP * s;
        let title_w = u64::from(text::text_width(&opts.title, title_px));
        let line_gap = |px: f32| u64::from(text::line_height(px)) + TITLE_GAP * s;
        let mut y = margin;
        let title_y = y;
        if !opts.title.is_empty() {
            y += line_gap(title_px);
        }
        let text_y = y;
        let has_text = !opts.text.trim().is_empty();
        if has_text {
            y += line_gap(text_px);
        }

        // Columns: heads in KV-group order, groups set apart.
        let groups = kv_column_groups(&opts.kv_groups, n_heads);
        let order: Vec<Vec<usize>> = match &groups {
            Some(groups) => groups.iter().map(|g| g.heads.clone()).collect(),
            None => vec![(0..n_heads).collect()],
        };
        let mut column_x = vec![0; n_heads];
        let mut x = margin;
        let mut brackets = Vec::new();
        for (g, heads) in order.iter().enumerate() {
            if g > 0 {
                x += GROUP_GAP * s;
            }
            let left = x;
            for &h in heads {
                if let Some(slot) = column_x.get_mut(h) {
                    *slot = x;
                }
                x += column_w + gap;
            }
            if let Some(group) = groups.as_ref().and_then(|gs| gs.get(g)) {
                brackets.push(Bracket {
                    label: format!("KV {}", group.kv_idx),
                    left,
                    right: x - gap,
                });
            }
        }
        let content_right = x.saturating_sub(gap);
        let bracket_top = y;
        if !brackets.is_empty() {
            y += u64::from(text::line_height(caption_px)) + (2 + BRACKET_H) * s + gap;
        }
        let top = y;
        let pitch_y = caption_h + thumb + gap;
        let rows_h = (n_layers64 * pitch_y).saturating_sub(gap);

        let bar_h = rows_h
            .saturating_sub(caption_h)
            .clamp(MIN_BAR_HEIGHT * s, MAX_BAR_HEIGHT * s);
        let bar = Rect {
            x: content_right + BAR_GAP * s,
            y: top + caption_h,
            w: BAR_WIDTH * s,
            h: bar_h,
        };
        let tick_line = u64::from(text::line_height(TICK_PX * sf));
        let ticks = match opts.shared_range {
            Some(range) => colorbar_ticks(
                range,
                opts.scale,
                bar.h.saturating_sub(1) as f32,
                tick_line as f32,
            )
            .into_iter()
            .map(|t| Tick {
                y: bar.y + t.offset as u64,
                text: t.text,
            })
            .collect(),
            None => vec![
                Tick {
                    y: bar.y,
                    text: "head max".to_owned(),
                },
                Tick {
                    y: bar.y + bar.h.saturating_sub(1),
                    text: "head min".to_owned(),
                },
            ],
        };
        let colorbar = Colorbar::new(bar, ticks, s, masked);
        let width = (colorbar.right() + margin).max(title_w + 2 * margin);
        let height = (top + rows_h).max(colorbar.bottom()) + margin;
        let text_line = has_text.then(|| {
            let line = text_start(&opts.text, text_px, width - 2 * margin);
            let w = u64::from(text::text_width(&line, text_px));
            ((width - w) / 2, text_y, line)
        });
        GridLayout {
            width,
            height,
            thumb,
            column_x,
            pitch_y,
            inset_x: (column_w - thumb) / 2,
            caption_h,
            top,
            title_pos: (!opts.title.is_empty()).then(|| ((width - title_w) / 2, title_y)),
            text_line,
            brackets,
            bracket_top,
            title_px,
            text_px,
            caption_px,
            line: s,
            colorbar: Some(colorbar),
        }
    }

    /// Top-left corner of thumbnail `(layer, head)` (below its caption).
    pub(crate) fn thumb_origin(&self, layer: usize, head: usize) -> (u64, u64) {
        let x = self.column_x.get(head).copied().unwrap_or(0) + self.inset_x;
        let y = self.top + layer as u64 * self.pitch_y + self.caption_h;
        (x, y)
    }

    /// Adds each KV group's label over a bracket spanning its columns.
    fn add_brackets(&self, scene: &mut Scene<'_>) {
        let ink = [TEXT_COLOR[0], TEXT_COLOR[1], TEXT_COLOR[2], 255];
        let label_h = u64::from(text::line_height(self.caption_px));
        let s = self.line;
        let bar_y = self.bracket_top + label_h + 2 * s;
        for b in &self.brackets {
            let w = u64::from(text::text_width(&b.label, self.caption_px));
            let left = ((b.left + b.right) / 2).saturating_sub(w / 2);
            let label = Text::centred(&b.label, self.caption_px, left, w);
            scene.label(label.top(self.bracket_top as f32));
            let stroke = Rect {
                x: b.left,
                y: bar_y,
                w: b.right - b.left,
                h: s,
            };
            scene.fill(Area::of(stroke), ink);
            for x in [b.left, b.right.saturating_sub(s)] {
                let end = Rect {
                    x,
                    y: bar_y,
                    w: s,
                    h: BRACKET_H * s,
                };
                scene.fill(Area::of(end), ink);
            }
        }
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
                None,
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
            None,
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
            None,
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

    #[test]
    fn kv_groups_put_sharing_heads_side_by_side_under_brackets() {
        let owned = heads(1, 4, 4);
        let maps = views(&owned, 4);
        let opts = GridOptions {
            thumb_px: 30,
            kv_groups: vec![vec![0, 2], vec![1, 3]],
            ..GridOptions::default()
        };
        let x = |h| grid_thumb_rect(1, 4, 0, h, &opts).0;
        // Columns in group order: 0, 2 | 1, 3, the groups set apart by a wider gap.
        assert!(x(0) < x(2) && x(2) < x(1) && x(1) < x(3));
        assert_eq!(x(1) - x(2), x(2) - x(0) + GROUP_GAP as u32);
        let img = grid_figure(&maps, &opts).unwrap();
        // Each bracket's horizontal stroke spans its group's thumbnails: the row just above the
        // band's bottom has ink over head 0's and head 3's columns but not between the groups.
        let layout = GridLayout::new(1, 4, &opts, false);
        let label_h = u64::from(text::line_height(CAPTION_PX));
        let stroke_y = (layout.bracket_top + label_h + 2) as u32;
        let ink = |x: u32| img.get_pixel(x, stroke_y).0[..3].iter().all(|&c| c < 110);
        assert!(ink(x(0) + 2) && ink(x(2) + 28) && ink(x(3) + 15));
        assert!(!ink(x(1) - 5), "the gap between groups has no stroke");
        // The plain grid (no shared KV head, or groups that do not fit) keeps head order.
        for kv_groups in [
            vec![vec![0], vec![1], vec![2], vec![3]],
            vec![vec![0, 1, 2]],
        ] {
            let plain = GridOptions {
                kv_groups,
                ..opts.clone()
            };
            let xs: Vec<u32> = (0..4)
                .map(|h| grid_thumb_rect(1, 4, 0, h, &plain).0)
                .collect();
            assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        }
    }

    #[test]
    fn the_labelled_grid_has_a_colorbar_the_text_and_masked_cells() {
        let n = 4;
        let causal = Array2::from_shape_fn(
            (n, n),
            |(q, k)| if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 },
        );
        let maps = vec![vec![causal.view(), causal.view()]];
        let opts = GridOptions {
            title: "demo".to_owned(),
            text: "the   cat\nsat".to_owned(),
            thumb_px: 40,
            shared_range: Some(ValueRange::unit()),
            masked: Some(Array2::from_shape_fn((n, n), |(q, k)| k > q)),
            ..GridOptions::default()
        };
        let img = grid_figure(&maps, &opts).unwrap();
        let layout = GridLayout::new(1, 2, &opts, true);
        let bar = layout.colorbar.as_ref().unwrap();
        // The gradient: the top row is the colormap's top colour, the bottom row its bottom.
        let mid_x = (bar.bar.x + bar.bar.w / 2) as u32;
        assert_eq!(
            img.get_pixel(mid_x, bar.bar.y as u32).0,
            opts.colormap.color(1.0)
        );
        let bottom = (bar.bar.y + bar.bar.h - 1) as u32;
        assert_eq!(img.get_pixel(mid_x, bottom).0, opts.colormap.color(0.0));
        let texts: Vec<&str> = bar.ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts.first(), Some(&"1.00"));
        assert_eq!(texts.last(), Some(&"0.00"));
        // The masked legend below it, and the masked cells in both thumbnails.
        let swatch = bar.legend.unwrap();
        let grey = opts.colormap.masked_color();
        assert_eq!(
            img.get_pixel((swatch.x + 2) as u32, (swatch.y + 2) as u32)
                .0,
            grey
        );
        for head in 0..2 {
            let (x, y, w, _) = grid_thumb_rect(1, 2, 0, head, &opts);
            // 10 px per cell: (0, 3) masked, (3, 0) allowed.
            assert_eq!(img.get_pixel(x + w - 5, y + 5).0, grey);
            assert_ne!(img.get_pixel(x + 5, y + w - 5).0, grey);
        }
        // The text line, whitespace collapsed, quoted.
        let (_, ty, line) = layout.text_line.as_ref().unwrap();
        assert_eq!(line, "“the cat sat”");
        assert!(*ty > layout.title_pos.unwrap().1);
        // Per-head ranges: the bar says so instead of numbers.
        let per_head = GridOptions {
            shared_range: None,
            ..opts.clone()
        };
        let layout = GridLayout::new(1, 2, &per_head, true);
        let texts: Vec<String> = layout
            .colorbar
            .unwrap()
            .ticks
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(texts, ["head max", "head min"]);
    }

    #[test]
    fn the_text_start_fits_its_width() {
        assert_eq!(text_start("", 12.0, 500), "");
        assert_eq!(text_start(" a  b ", 12.0, 500), "“a b”");
        let long = "word ".repeat(200);
        let cut = text_start(&long, 12.0, 300);
        assert!(
            cut.ends_with("…”") && cut.starts_with("“word word"),
            "{cut}"
        );
        assert!(text::text_width(&cut, 12.0) <= 300);
        // The longest prefix: two more characters would not fit (one may be a trimmed space).
        let chars = cut.chars().count() - 3;
        let longer = format!("“{}…”", &long[..chars + 2]);
        assert!(text::text_width(&longer, 12.0) > 300, "{longer}");
    }
}
