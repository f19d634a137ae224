//! `attnviz render`: one head, a head combination, or the layer × head grid as a PNG or an SVG
//! (chosen by the extension of `--out`).

use super::args::{RenderArgs, View};
use super::{Timings, compute, ms_since, print_timings};
use crate::analysis::{HeadSelection, LayerSelection, ViewSpec};
use crate::io::OutputFormat;
use crate::render::{self, FigureContext, RenderStyle, ValueScale};
use anyhow::{Result, anyhow};
use std::path::Path;
use std::time::Instant;

/// Whether `path` asks for an SVG (`.svg`) or a PNG (`.png`), in any case; any other extension
/// is refused, naming the two (checked before any work).
pub(super) fn is_svg(path: &Path) -> Result<bool> {
    let format =
        OutputFormat::of(path, &[OutputFormat::Png, OutputFormat::Svg]).map_err(|e| anyhow!(e))?;
    Ok(format == OutputFormat::Svg)
}

/// Runs `attnviz render`.
pub(super) fn render_cmd(args: RenderArgs) -> Result<()> {
    let heads: HeadSelection = args.head.parse().map_err(|e: String| anyhow!(e))?;
    let layer: LayerSelection = args.layer.parse().map_err(|e: String| anyhow!(e))?;
    render::set_max_pixels(args.max_pixels);
    let svg = is_svg(&args.out)?;
    let mut timings = Timings::default();
    let (run, _) = compute(&args.common, &mut timings, false, 0, &|_, _, _| Ok(()))?;
    let start = Instant::now();
    // Everything the figure says besides the maps (labels in the model's style, the applied
    // mask, the input text, the KV groups) comes from the run, as in the app's export.
    let ctx = FigureContext::from_run(&run);
    let style = RenderStyle {
        colormap: args.colormap,
        scale: if args.log {
            ValueScale::Log
        } else {
            ValueScale::Linear
        },
        range: args.range,
        cell_px: args.cell.unwrap_or({
            // The defaults the app's exports use too.
            let defaults = render::ExportStyle::for_tokens(run.maps.len());
            match args.view {
                View::Heatmap => defaults.cell_px,
                View::Grid => defaults.thumb_px,
            }
        }),
        labels: !args.no_labels,
        pixel_scale: args.pixel_scale,
        centred: false,
    }
    .fitted_to(run.kind);
    let spec = ViewSpec {
        layer,
        heads,
        hide_special: args.hide_special,
    };
    if svg {
        let svg = match args.view {
            View::Heatmap => render::view_svg(&run.maps, &ctx, &spec, &style),
            View::Grid => render::grid_view_svg(&run.maps, &ctx, &style),
        }
        .map_err(|e| named(e, &args.common.input))?;
        render::write_svg(&svg, &args.out)?;
    } else {
        let image = match args.view {
            View::Heatmap => render::view_figure(&run.maps, &ctx, &spec, &style),
            View::Grid => render::grid_view_figure(&run.maps, &ctx, &style),
        }
        .map_err(|e| named(e, &args.common.input))?;
        render::write_png(&image, &args.out)?;
    }
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

/// A render error, naming the input file where there is one ("every token is special" is
/// about the input).
fn named(e: impl std::fmt::Display, input: &Option<std::path::PathBuf>) -> anyhow::Error {
    match input {
        Some(path) => anyhow!("{e} in {}", path.display()),
        None => anyhow!("{e}"),
    }
}
