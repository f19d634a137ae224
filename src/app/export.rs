//! Exports from the app: PNGs through the same `render` path as `attnviz render`, every head
//! into a folder, and the raw tensors. Kept apart from the file dialogs so they can be tested.
//!
//! Figures label tokens as the views do ([`Token::label`](crate::tokenize::Token::label) under
//! the model's [`VocabStyle`]); tensors keep the raw vocabulary strings (the file contract).

use super::state::{AppState, HeadMode, ViewKind};
use crate::analysis::{HeadSelection, LayerSelection, ViewSpec};
use crate::pipeline::Run;
use crate::render;
use crate::render::FigureContext;
use image::RgbaImage;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Pixels per cell when exporting (`render::ExportStyle`, as the CLI).
fn default_cell(len: usize) -> u32 {
    render::ExportStyle::for_tokens(len).cell_px
}

/// Thumbnail side of exported grids (`render::ExportStyle`, as the CLI).
const GRID_THUMB_PX: u32 = render::ExportStyle::THUMB_PX;

/// The image File → Export PNG writes for the current view: the grid in the grid view, the
/// heatmap otherwise, with the labels, model, applied mask, text and KV groups of `ctx`. Same
/// function and options as `attnviz render`, so the same pixels.
pub fn current_view_png(
    run: &Run,
    state: &AppState,
    ctx: &FigureContext,
) -> Result<RgbaImage, String> {
    if state.view == ViewKind::Grid {
        return render::grid_view_figure(
            &run.maps,
            ctx,
            &state.render_style(GRID_THUMB_PX, true, run.kind),
        );
    }
    if rollout_shown(state) {
        let (matrix, opts) = rollout_figure_options(run, state, ctx)?;
        return render::heatmap_figure(matrix.view(), &opts).map_err(|e| e.to_string());
    }
    let style = state.render_style(default_cell(run.maps.len()), true, run.kind);
    render::view_figure(&run.maps, ctx, &state.view_spec(), &style)
}

/// True when the Heatmap view shows the rollout map.
fn rollout_shown(state: &AppState) -> bool {
    state.view == ViewKind::Heatmap && state.analyze.rollout.on
}

/// The rollout map of `run` under `state`'s settings (`analysis::rollout`, as the view and
/// `attnviz analyze --what rollout`), special tokens hidden as the view hides them, and its
/// figure options: titled `rollout α=… fusion=… layers A–B · model`, the view's colours.
pub fn rollout_figure_options(
    run: &Run,
    state: &AppState,
    ctx: &FigureContext,
) -> Result<(ndarray::Array2<f32>, render::FigureOptions), String> {
    if run.kind != crate::analysis::MapsKind::Attention {
        return Err("the rollout multiplies attention maps, not their differences".to_owned());
    }
    let layers = run.maps.layers();
    let settings = &state.analyze.rollout;
    let full =
        crate::analysis::rollout::rollout(&run.maps, &settings.options(layers))?.mapv(|v| v as f32);
    let (matrix, kept) = if state.hide_special {
        crate::analysis::without_special(&full, &ctx.is_special)?
    } else {
        let n = full.nrows();
        (full, (0..n).collect())
    };
    let labels: Vec<String> = kept
        .iter()
        .map(|&i| ctx.labels.get(i).cloned().unwrap_or_else(|| i.to_string()))
        .collect();
    let style = state.render_style(
        default_cell(run.maps.len()),
        true,
        crate::analysis::MapsKind::Attention,
    );
    let opts = render::FigureOptions {
        title: format!(
            "{} · {}{}",
            settings.title(layers),
            ctx.model_name,
            ctx.settings_title()
        ),
        query_labels: labels.clone(),
        key_labels: labels,
        colormap: style.colormap,
        range: render::ValueRange::of(matrix.view()),
        scale: style.scale,
        cell_px: style.cell_px,
        labels: true,
        masked: None,
        pixel_scale: style.pixel_scale,
    };
    Ok((matrix, opts))
}

/// A sensible file name for the current view, such as `attn_L3_H5.png`.
pub fn default_png_name(state: &AppState) -> String {
    if state.view == ViewKind::Grid {
        return "attn_grid.png".to_owned();
    }
    if rollout_shown(state) {
        let r = &state.analyze.rollout;
        let layers = match r.layers {
            Some((a, b)) => format!("_L{a}-{b}"),
            None => String::new(),
        };
        return format!("rollout_a{}_{}{layers}.png", r.alpha, r.fusion.name());
    }
    let layer = if state.all_layers {
        "Lmean".to_owned()
    } else {
        format!("L{}", state.layer_idx)
    };
    let heads = match state.head_mode {
        HeadMode::Single => format!("H{}", state.head_idx),
        HeadMode::Mean => "Hmean".to_owned(),
        HeadMode::Max => "Hmax".to_owned(),
        HeadMode::Set => {
            let list: Vec<String> = state.head_set.iter().map(usize::to_string).collect();
            format!("H{}", list.join("-"))
        }
    };
    format!("attn_{layer}_{heads}.png")
}

/// The SVG of the current view (see [`current_view_png`]): the same function as `attnviz render
/// --out fig.svg`.
pub fn current_view_svg(
    run: &Run,
    state: &AppState,
    ctx: &FigureContext,
) -> Result<String, String> {
    if state.view == ViewKind::Grid {
        return render::grid_view_svg(
            &run.maps,
            ctx,
            &state.render_style(GRID_THUMB_PX, true, run.kind),
        );
    }
    if rollout_shown(state) {
        let (matrix, opts) = rollout_figure_options(run, state, ctx)?;
        return render::heatmap_svg(matrix.view(), &opts).map_err(|e| e.to_string());
    }
    let style = state.render_style(default_cell(run.maps.len()), true, run.kind);
    render::view_svg(&run.maps, ctx, &state.view_spec(), &style)
}

/// Writes the current view to `path`: an SVG when `path` ends in `.svg`, else a PNG (see
/// [`current_view_png`]).
pub fn export_png(
    path: &Path,
    run: &Run,
    state: &AppState,
    ctx: &FigureContext,
) -> Result<(), String> {
    let svg = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        let doc = current_view_svg(run, state, ctx)?;
        return render::write_svg(&doc, path).map_err(|e| e.to_string());
    }
    let image = current_view_png(run, state, ctx)?;
    render::write_png(&image, path).map_err(|e| e.to_string())
}

/// Writes one labelled PNG per layer and head into `dir` (`attn_L{l}_H{h}.png`). Counts finished
/// files in `progress` and stops early when `cancel` is set. Labels, model and mask come from
/// `ctx`. Returns the number written.
pub fn export_all_heads(
    dir: &Path,
    run: &Run,
    state: &AppState,
    ctx: &FigureContext,
    progress: &AtomicUsize,
    cancel: &AtomicBool,
) -> Result<usize, String> {
    let [layers, heads, n, _] = run.maps.shape();
    std::fs::create_dir_all(dir).map_err(|e| format!("{e} while creating {}", dir.display()))?;
    let style = state.render_style(default_cell(n), true, run.kind);
    let mut written = 0;
    for layer_idx in 0..layers {
        for head_idx in 0..heads {
            if cancel.load(Ordering::SeqCst) {
                return Ok(written);
            }
            let spec = ViewSpec {
                layer: LayerSelection::One(layer_idx),
                heads: HeadSelection::Head(head_idx),
                hide_special: state.hide_special,
            };
            let image = render::view_figure(&run.maps, ctx, &spec, &style)?;
            let path: PathBuf = dir.join(format!("attn_L{layer_idx}_H{head_idx}.png"));
            render::write_png(&image, &path).map_err(|e| e.to_string())?;
            written += 1;
            progress.store(written, Ordering::SeqCst);
        }
    }
    Ok(written)
}
