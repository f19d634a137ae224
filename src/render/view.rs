//! From a run and view options to a finished image: the glue that the CLI's `render` and the
//! app's PNG export share, so that the same options give the same pixels.

use super::{
    Colormap, FigureOptions, GridOptions, RenderError, ValueRange, ValueScale, grid_figure,
    heatmap_figure,
};
use crate::analysis::{ViewSpec, view_matrix};
use crate::engine::AttentionMaps;
use image::RgbaImage;
use ndarray::ArrayView2;
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

/// How a view is drawn.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderStyle {
    /// The colormap.
    pub colormap: Colormap,
    /// Linear or log colours.
    pub scale: ValueScale,
    /// Per-head or shared value range.
    pub range: RangeMode,
    /// Pixels per cell (heatmap) or per thumbnail side (grid).
    pub cell_px: u32,
    /// Title, token labels and colorbar, or just the cells.
    pub labels: bool,
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

/// A heatmap figure of `spec`, titled with the selection and `model_name`.
pub fn view_figure(
    maps: &AttentionMaps,
    tokens: &[String],
    is_special: &[bool],
    model_name: &str,
    spec: &ViewSpec,
    style: &RenderStyle,
) -> Result<RgbaImage, String> {
    let (matrix, kept) = view_matrix(maps, is_special, spec)?;
    let labels: Vec<String> = kept
        .iter()
        .map(|&i| tokens.get(i).cloned().unwrap_or_else(|| i.to_string()))
        .collect();
    let opts = FigureOptions {
        title: format!("{} · {} · {}", spec.layer, spec.heads, model_name),
        query_labels: labels.clone(),
        key_labels: labels,
        colormap: style.colormap,
        range: range_for(maps, matrix.view(), style.range),
        scale: style.scale,
        cell_px: style.cell_px,
        labels: style.labels,
    };
    heatmap_figure(matrix.view(), &opts).map_err(|e: RenderError| e.to_string())
}

/// Every layer × head as thumbnails.
pub fn grid_view_figure(
    maps: &AttentionMaps,
    model_name: &str,
    style: &RenderStyle,
) -> Result<RgbaImage, String> {
    let [layers, heads, _, _] = maps.shape();
    let owned: Vec<Vec<crate::engine::HeadMap>> = (0..layers)
        .map(|l| (0..heads).filter_map(|h| maps.head(l, h)).collect())
        .collect();
    let views: Vec<Vec<ArrayView2<'_, f32>>> = owned
        .iter()
        .map(|row| row.iter().map(|m| m.view()).collect())
        .collect();
    let opts = GridOptions {
        title: format!("{model_name} · {layers} layers × {heads} heads"),
        colormap: style.colormap,
        scale: style.scale,
        shared_range: match style.range {
            RangeMode::PerHead => None,
            RangeMode::Shared => Some(shared_range(maps)),
        },
        thumb_px: style.cell_px,
        labels: style.labels,
    };
    grid_figure(&views, &opts).map_err(|e| e.to_string())
}
