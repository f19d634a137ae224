//! From a run and view options to a finished image: the glue that the CLI's `render` and the
//! app's PNG export share, so that the same options give the same pixels.

use super::{
    Colormap, FigureOptions, GridOptions, RenderError, ValueRange, ValueScale, grid_figure,
    heatmap_figure,
};
use crate::analysis::{MapsKind, ViewSpec, view_matrix};
use crate::engine::{AppliedMask, AttentionMaps};
use image::RgbaImage;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Which value range the colours span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RangeMode {
    /// The shown map's own minimum and maximum.
    #[default]
    PerHead,
    /// The minimum and maximum over every head of every layer, so maps compare directly.
    Shared,
}

impl RangeMode {
    /// Both modes, for pickers.
    pub const ALL: [RangeMode; 2] = [RangeMode::PerHead, RangeMode::Shared];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            RangeMode::PerHead => "per-head",
            RangeMode::Shared => "shared",
        }
    }
}

impl std::str::FromStr for RangeMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "per-head" => Ok(Self::PerHead),
            "shared" => Ok(Self::Shared),
            other => Err(format!(
                "unknown range {other:?}; expected per-head or shared"
            )),
        }
    }
}

/// The sizes of an exported figure, decided once for `attnviz render` and the app's exports:
/// pixels per heatmap cell, the grid's thumbnail side, and the pixel scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportStyle {
    /// Pixels per heatmap cell.
    pub cell_px: u32,
    /// Side of a grid thumbnail, in pixels.
    pub thumb_px: u32,
    /// Every length is multiplied by this.
    pub pixel_scale: u32,
}

impl ExportStyle {
    /// The grid's thumbnail side by default (and the side the app's thumbnails are pooled to).
    pub const THUMB_PX: u32 = 96;

    /// The defaults for `tokens` tokens: heatmap cells of about 768 pixels across in all, 1 to
    /// 32 pixels each; 96-pixel thumbnails; scale 1.
    pub fn for_tokens(tokens: usize) -> ExportStyle {
        ExportStyle {
            cell_px: (768 / tokens.max(1)).clamp(1, 32) as u32,
            thumb_px: Self::THUMB_PX,
            pixel_scale: 1,
        }
    }
}

/// How a view is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderStyle {
    /// The colormap.
    pub colormap: Colormap,
    /// Linear or log colours.
    pub scale: ValueScale,
    /// Per-head or shared value range.
    pub range: RangeMode,
    /// Pixels per cell (heatmap) or per thumbnail side (grid), at pixel scale 1.
    pub cell_px: u32,
    /// Title, token labels and colorbar, or just the cells.
    pub labels: bool,
    /// Every length (cells, text, margins) times this, for high-resolution PNGs; 1 is normal.
    pub pixel_scale: u32,
    /// The value range is centred on 0 (±max|v|): for signed maps such as differences.
    pub centred: bool,
}

impl RenderStyle {
    /// This style fitted to what maps of `kind` hold: a difference of attention is drawn on the
    /// diverging colormap, linearly, over a range centred on 0, so that white is "no change"
    /// (log colours and a one-signed colormap would hide the sign). Attention is unchanged.
    pub fn fitted_to(mut self, kind: MapsKind) -> Self {
        if kind == MapsKind::AblationDifference {
            self.colormap = Colormap::Diverging;
            self.scale = ValueScale::Linear;
            self.centred = true;
        }
        self
    }

    /// The value range a view of `matrix` (from `maps`) is coloured with under this style.
    pub fn value_range(&self, maps: &AttentionMaps, matrix: ArrayView2<'_, f32>) -> ValueRange {
        let range = range_for(maps, matrix, self.range);
        if self.centred { range.centred() } else { range }
    }
}

/// What a figure says about the run besides its maps: token labels, the model, the mask that
/// was applied, the input text and the KV grouping. The CLI's `render` and the app's export
/// fill it from the same run, so they draw the same figure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FigureContext {
    /// Display label of each token (`Token::label`), one per token.
    pub labels: Vec<String>,
    /// Which tokens are special (`[CLS]`, BOS, …), for "hide special tokens".
    pub is_special: Vec<bool>,
    /// Which tokens are padding, for a `padding` mask.
    pub is_pad: Vec<bool>,
    /// The model's name, for titles.
    pub model_name: String,
    /// The mask that was applied (the user's spec plus what the architecture adds). Named in
    /// titles; its forbidden cells are drawn in the masked colour.
    pub mask: AppliedMask,
    /// The input text (the grid shows its start); empty when unknown.
    pub text: String,
    /// Per key/value head, the query heads sharing it (empty when unknown or not shared).
    pub kv_groups: Vec<Vec<usize>>,
    /// The heads the run ablated, named in titles.
    pub ablations: Vec<crate::engine::Ablation>,
    /// What the maps hold (a difference is titled as one).
    pub kind: MapsKind,
    /// How the numbers were made besides the mask (scale, dims, mistakes, ablations), when the
    /// run records it (an attention file read back does not).
    pub options: Option<crate::engine::OptionsRecord>,
}

impl FigureContext {
    /// What a figure of `run` says besides its maps: its tokens labelled in the model's style,
    /// the model's name, the applied mask, the input text and the KV groups, all as the run
    /// decided them. The CLI's `render` and the app's export both build it here.
    pub fn from_run(run: &crate::pipeline::Run) -> FigureContext {
        FigureContext {
            labels: crate::tokenize::display_labels(&run.tokens, &run.vocab_style),
            is_special: run.tokens.iter().map(|t| t.is_special).collect(),
            is_pad: run
                .tokens
                .iter()
                .map(crate::tokenize::Token::is_pad)
                .collect(),
            model_name: run.model.name.clone(),
            mask: run.mask.clone(),
            text: run.text.clone().unwrap_or_default(),
            kv_groups: run.kv_groups.clone(),
            ablations: run.ablations.clone(),
            kind: run.kind,
            options: run.options.as_ref().map(crate::engine::OptionsRecord::of),
        }
    }

    /// What a title says after the selection and the model: ` · mask SPEC` when a mask was
    /// applied, the options that change the numbers when they are not the defaults
    /// ([`crate::engine::OptionsRecord::title`]: scale, dims, mistakes) and ` · ablated 0.1,
    /// 2.3:mean` when heads were ablated; empty otherwise.
    pub fn settings_title(&self) -> String {
        let mut out = String::new();
        if let Some(mask) = self.mask_title() {
            out.push_str(&format!(" · mask {mask}"));
        }
        if let Some(options) = &self.options {
            out.push_str(&options.title());
        }
        if !self.ablations.is_empty() {
            let names: Vec<String> = self.ablations.iter().map(ToString::to_string).collect();
            let what = match self.kind {
                MapsKind::Attention => "ablated",
                MapsKind::AblationDifference => "ablated − unablated,",
            };
            out.push_str(&format!(" · {what} {}", names.join(", ")));
        }
        out
    }

    /// The applied mask's spelling for titles: `None` for no mask, else the spec (cut with '…'
    /// past [`MAX_TITLE_MASK_CHARS`] characters).
    pub fn mask_title(&self) -> Option<String> {
        if self.mask.is_none() {
            return None;
        }
        let mask = self.mask.to_string();
        if mask.chars().count() <= MAX_TITLE_MASK_CHARS {
            return Some(mask);
        }
        let cut: String = mask.chars().take(MAX_TITLE_MASK_CHARS - 1).collect();
        Some(format!("{cut}…"))
    }
}

/// Longest mask spelling a title shows in full.
pub const MAX_TITLE_MASK_CHARS: usize = 60;

/// The cells of a `kept.len()`-square view that `mask` forbids (true = masked), for a run of
/// `n_tokens` tokens whose padding is `is_pad`; `kept` maps view rows and columns to tokens (see
/// `analysis::view_matrix`). Every head and layer shares the mask, so fused views share it too.
/// `None` when the mask is `none`, masks nothing here, or does not fit the tokens (a mask that
/// names a token past the end: the run would have refused it).
pub fn masked_cells(
    mask: &AppliedMask,
    n_tokens: usize,
    is_pad: &[bool],
    kept: &[usize],
) -> Option<Array2<bool>> {
    let allowed = mask.allowed(n_tokens, is_pad).ok()??;
    let masked = Array2::from_shape_fn((kept.len(), kept.len()), |(r, c)| {
        match (kept.get(r), kept.get(c)) {
            (Some(&q), Some(&k)) => !allowed.get((q, k)).copied().unwrap_or(true),
            _ => false,
        }
    });
    masked.iter().any(|&b| b).then_some(masked)
}

/// The value range of every map in the run.
pub fn shared_range(maps: &AttentionMaps) -> ValueRange {
    let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
    maps.for_each_head(|_, _, m| {
        let r = ValueRange::of(m);
        lo = lo.min(r.min);
        hi = hi.max(r.max);
    });
    if lo.is_finite() && hi.is_finite() && hi > lo {
        ValueRange { min: lo, max: hi }
    } else {
        ValueRange::unit()
    }
}

/// The range a map is drawn with under `mode`.
pub fn range_for(maps: &AttentionMaps, matrix: ArrayView2<'_, f32>, mode: RangeMode) -> ValueRange {
    match mode {
        RangeMode::PerHead => ValueRange::of(matrix),
        RangeMode::Shared => shared_range(maps),
    }
}

/// The matrix of `spec`, its token indices, its labelled figure options and its masked cells:
/// what [`view_figure`] draws and the SVG writer writes.
pub(crate) fn view_figure_options(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    spec: &ViewSpec,
    style: &RenderStyle,
) -> Result<(Array2<f32>, FigureOptions), String> {
    let (matrix, kept) = view_matrix(maps, &ctx.is_special, spec)?;
    let labels: Vec<String> = kept
        .iter()
        .map(|&i| ctx.labels.get(i).cloned().unwrap_or_else(|| i.to_string()))
        .collect();
    let mut title = format!("{} · {} · {}", spec.layer, spec.heads, ctx.model_name);
    title.push_str(&ctx.settings_title());
    let opts = FigureOptions {
        title,
        query_labels: labels.clone(),
        key_labels: labels,
        colormap: style.colormap,
        range: style.value_range(maps, matrix.view()),
        scale: style.scale,
        cell_px: style.cell_px,
        labels: style.labels,
        masked: masked_cells(&ctx.mask, maps.len(), &ctx.is_pad, &kept),
        pixel_scale: style.pixel_scale,
    };
    Ok((matrix, opts))
}

/// A heatmap figure of `spec`, titled with the selection, the model and the applied mask, its
/// masked cells in the masked colour.
pub fn view_figure(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    spec: &ViewSpec,
    style: &RenderStyle,
) -> Result<RgbaImage, String> {
    let (matrix, opts) = view_figure_options(maps, ctx, spec, style)?;
    heatmap_figure(matrix.view(), &opts).map_err(|e: RenderError| e.to_string())
}

/// The heatmap figure of `spec` as an SVG document (see [`heatmap_svg`](super::heatmap_svg)):
/// the same title, labels, colorbar and masked cells as [`view_figure`], in vector form.
pub fn view_svg(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    spec: &ViewSpec,
    style: &RenderStyle,
) -> Result<String, String> {
    let (matrix, opts) = view_figure_options(maps, ctx, spec, style)?;
    super::heatmap_svg(matrix.view(), &opts).map_err(|e| e.to_string())
}

/// Calls `draw` with every head of `maps` as views, layer by layer.
fn with_head_views<R>(
    maps: &AttentionMaps,
    draw: impl FnOnce(&[Vec<ArrayView2<'_, f32>>]) -> R,
) -> R {
    let [layers, heads, _, _] = maps.shape();
    let owned: Vec<Vec<crate::engine::HeadMap>> = (0..layers)
        .map(|l| (0..heads).filter_map(|h| maps.head(l, h)).collect())
        .collect();
    let views: Vec<Vec<ArrayView2<'_, f32>>> = owned
        .iter()
        .map(|row| row.iter().map(|m| m.view()).collect())
        .collect();
    draw(&views)
}

/// The grid's options for `maps` under `ctx` and `style`.
pub(crate) fn grid_view_options(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    style: &RenderStyle,
) -> GridOptions {
    let [layers, heads, n, _] = maps.shape();
    let mut title = format!("{} · {layers} layers × {heads} heads", ctx.model_name);
    title.push_str(&ctx.settings_title());
    let all: Vec<usize> = (0..n).collect();
    GridOptions {
        title,
        colormap: style.colormap,
        scale: style.scale,
        shared_range: match style.range {
            RangeMode::PerHead => None,
            RangeMode::Shared if style.centred => Some(shared_range(maps).centred()),
            RangeMode::Shared => Some(shared_range(maps)),
        },
        centred: style.centred,
        thumb_px: style.cell_px,
        labels: style.labels,
        masked: masked_cells(&ctx.mask, n, &ctx.is_pad, &all),
        kv_groups: ctx.kv_groups.clone(),
        text: ctx.text.clone(),
        pixel_scale: style.pixel_scale,
    }
}

/// Every layer × head as thumbnails, with the title, the input's start, the KV grouping, a
/// colorbar and the masked cells.
pub fn grid_view_figure(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    style: &RenderStyle,
) -> Result<RgbaImage, String> {
    let opts = grid_view_options(maps, ctx, style);
    with_head_views(maps, |views| grid_figure(views, &opts)).map_err(|e| e.to_string())
}

/// The grid of [`grid_view_figure`] as an SVG document (see
/// [`grid_svg`](super::grid_svg)).
pub fn grid_view_svg(
    maps: &AttentionMaps,
    ctx: &FigureContext,
    style: &RenderStyle,
) -> Result<String, String> {
    let opts = grid_view_options(maps, ctx, style);
    with_head_views(maps, |views| super::grid_svg(views, &opts)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{HeadSelection, LayerSelection};
    use crate::render::figure::figure_cells_rect;

    /// One layer, two heads over `n` tokens: uniform over the causally allowed keys.
    fn causal_maps(n: usize) -> AttentionMaps {
        let head = Array2::from_shape_fn(
            (n, n),
            |(q, k)| {
                if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 }
            },
        );
        AttentionMaps::from_heads(1, 2, n, vec![head.clone(), head]).expect("maps")
    }

    /// The mask `spec` as a run records it.
    fn recorded(spec: &str) -> AppliedMask {
        AppliedMask::recorded(crate::engine::MaskSpec::parse(spec).unwrap())
    }

    fn context(n: usize, mask: &str) -> FigureContext {
        FigureContext {
            labels: (0..n).map(|i| format!("t{i}")).collect(),
            is_special: (0..n).map(|i| i == 0).collect(),
            is_pad: vec![false; n],
            model_name: "demo".to_owned(),
            mask: recorded(mask),
            ..FigureContext::default()
        }
    }

    fn style(cell_px: u32) -> RenderStyle {
        RenderStyle {
            colormap: Colormap::Viridis,
            scale: ValueScale::Linear,
            range: RangeMode::PerHead,
            cell_px,
            labels: true,
            pixel_scale: 1,
            centred: false,
        }
    }

    #[test]
    fn masked_cells_follow_the_spec_and_the_kept_tokens() {
        // causal over 4 tokens: (q, k) masked when k > q.
        let all = [0, 1, 2, 3];
        let m = masked_cells(&recorded("causal"), 4, &[false; 4], &all).unwrap();
        assert_eq!(m, Array2::from_shape_fn((4, 4), |(q, k)| k > q));
        // Hiding token 0 keeps tokens 1..4: view cell (0, 1) is token pair (1, 2), masked.
        let m = masked_cells(
            &recorded("causal+drop-cells:3.1"),
            4,
            &[false; 4],
            &[1, 2, 3],
        )
        .unwrap();
        assert_eq!(
            m,
            ndarray::array![
                [false, true, true],
                [false, false, true],
                [true, false, false]
            ]
        );
        // Padding keys (token 2 is [PAD]) are masked in every row.
        let m = masked_cells(&recorded("padding"), 3, &[false, false, true], &[0, 1, 2]).unwrap();
        assert!((0..3).all(|q| m[(q, 2)]) && !m[(0, 1)]);
        // No mask, a mask that forbids nothing or out-of-range indices: nothing.
        assert_eq!(masked_cells(&recorded("none"), 4, &[false; 4], &all), None);
        assert_eq!(
            masked_cells(&recorded("window:9"), 4, &[false; 4], &all),
            None
        );
        assert_eq!(
            masked_cells(&recorded("drop-keys:7"), 4, &[false; 4], &all),
            None
        );
    }

    #[test]
    fn the_view_figure_names_the_mask_and_paints_its_cells() {
        let n = 5;
        let maps = causal_maps(n);
        let spec = ViewSpec {
            layer: LayerSelection::One(0),
            heads: HeadSelection::Mean,
            hide_special: false,
        };
        let ctx = context(n, "causal");
        let (_, opts) = view_figure_options(&maps, &ctx, &spec, &style(10)).unwrap();
        assert_eq!(opts.title, "layer 0 · mean of heads · demo · mask causal");
        let fig = view_figure(&maps, &ctx, &spec, &style(10)).unwrap();
        let (x, y, _, _) = figure_cells_rect(n, n, &opts);
        let grey = Colormap::Viridis.masked_color();
        for q in 0..n as u32 {
            for k in 0..n as u32 {
                let px = fig.get_pixel(x + k * 10 + 5, y + q * 10 + 5).0;
                assert_eq!(px == grey, k > q, "cell ({q}, {k})");
            }
        }
        // The legend's swatch sits below the colorbar, in the masked colour.
        let layout = crate::render::figure::Layout::new(n, n, &opts);
        let swatch = layout.colorbar.legend.expect("a legend entry");
        let centre = (
            (swatch.x + swatch.w / 2) as u32,
            (swatch.y + swatch.h / 2) as u32,
        );
        assert_eq!(fig.get_pixel(centre.0, centre.1).0, grey);
        assert!(swatch.y > layout.colorbar.bar.y + layout.colorbar.bar.h);

        // Without a mask: no legend, no masked colour anywhere, no mask in the title.
        let plain = context(n, "none");
        let (_, opts) = view_figure_options(&maps, &plain, &spec, &style(10)).unwrap();
        assert_eq!(opts.title, "layer 0 · mean of heads · demo");
        assert!(
            crate::render::figure::Layout::new(n, n, &opts)
                .colorbar
                .legend
                .is_none()
        );
        let fig = view_figure(&maps, &plain, &spec, &style(10)).unwrap();
        let cells = image::imageops::crop_imm(&fig, x, y, 50, 50).to_image();
        assert!(cells.pixels().all(|p| p.0 != grey));
        assert_eq!(fig.get_pixel(x + 45, y + 5).0, Colormap::Viridis.color(0.0));
    }

    #[test]
    fn long_masks_are_cut_in_titles() {
        let cells: Vec<String> = (0..40).map(|i| format!("{i}.{i}")).collect();
        let ctx = context(3, &format!("causal+drop-cells:{}", cells.join(",")));
        let title = ctx.mask_title().unwrap();
        assert_eq!(title.chars().count(), MAX_TITLE_MASK_CHARS);
        assert!(title.starts_with("causal+drop-cells:0.0,1.1") && title.ends_with('…'));
    }

    #[test]
    fn pixel_scale_two_doubles_every_length() {
        let n = 6;
        let maps = causal_maps(n);
        let spec = ViewSpec {
            layer: LayerSelection::One(0),
            heads: HeadSelection::Head(1),
            hide_special: false,
        };
        let ctx = context(n, "causal");
        let one = view_figure(&maps, &ctx, &spec, &style(12)).unwrap();
        let two_style = RenderStyle {
            pixel_scale: 2,
            ..style(12)
        };
        let two = view_figure(&maps, &ctx, &spec, &two_style).unwrap();
        // Text is rasterised at twice the size, so sizes are within a few pixels of double.
        assert!(
            two.width().abs_diff(2 * one.width()) <= 4,
            "{} vs {}",
            two.width(),
            one.width()
        );
        assert!(two.height().abs_diff(2 * one.height()) <= 4);
        let (_, opts2) = view_figure_options(&maps, &ctx, &spec, &two_style).unwrap();
        let (x, y, w, h) = figure_cells_rect(n, n, &opts2);
        assert_eq!((w, h), (6 * 24, 6 * 24));
        // Each cell is a 24-pixel block of the 1x figure's colour.
        let (_, opts1) = view_figure_options(&maps, &ctx, &spec, &style(12)).unwrap();
        let (x1, y1, _, _) = figure_cells_rect(n, n, &opts1);
        for (q, k) in [(0, 0), (3, 1), (1, 4), (5, 5)] {
            let a = one.get_pixel(x1 + k * 12 + 6, y1 + q * 12 + 6);
            let b = two.get_pixel(x + k * 24 + 12, y + q * 24 + 12);
            assert_eq!(a, b, "cell ({q}, {k})");
        }
        // Without labels: exactly the cells at 24 pixels each.
        let bare = RenderStyle {
            labels: false,
            ..two_style
        };
        let cells = view_figure(&maps, &ctx, &spec, &bare).unwrap();
        assert_eq!(cells.dimensions(), (6 * 24, 6 * 24));
    }
}
