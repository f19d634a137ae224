//! `attnviz render`: one head, a head combination, or the layer × head grid as a PNG.

use super::args::{RenderArgs, View};
use super::{Timings, compute, ms_since, print_timings};
use crate::analysis::{HeadSelection, LayerSelection, ViewSpec};
use crate::render::{self, RenderStyle, ValueScale};
use crate::tokenize;
use anyhow::{Result, anyhow};
use std::time::Instant;

/// Pixels per cell when `--cell` is not given: about 768 pixels across, 1 to 32 per cell.
fn default_cell(len: usize) -> u32 {
    (768 / len.max(1)).clamp(1, 32) as u32
}

/// Runs `attnviz render`.
pub(super) fn render_cmd(args: RenderArgs) -> Result<()> {
    let heads: HeadSelection = args.head.parse().map_err(|e: String| anyhow!(e))?;
    let layer: LayerSelection = args.layer.parse().map_err(|e: String| anyhow!(e))?;
    render::set_max_pixels(args.max_pixels);
    let mut timings = Timings::default();
    let computed = compute(&args.common, &mut timings, false)?;
    let start = Instant::now();
    // Figures show labels as the app does: the checkpoint tokenizer's style; the demo and
    // attention files (which name no tokenizer) show the strings as they are.
    let vocab = computed
        .model
        .as_ref()
        .map(crate::pipeline::LoadedModel::vocab_style)
        .unwrap_or_default();
    let texts = tokenize::display_labels(&computed.tokens, &vocab);
    let special: Vec<bool> = computed.tokens.iter().map(|t| t.is_special).collect();
    let style = RenderStyle {
        colormap: args.colormap,
        scale: if args.log {
            ValueScale::Log
        } else {
            ValueScale::Linear
        },
        range: args.range,
        cell_px: args.cell.unwrap_or(match args.view {
            View::Heatmap => default_cell(computed.maps.len()),
            View::Grid => 96,
        }),
        labels: !args.no_labels,
    };
    let image = match args.view {
        View::Heatmap => {
            let spec = ViewSpec {
                layer,
                heads,
                hide_special: args.hide_special,
            };
            render::view_figure(
                &computed.maps,
                &texts,
                &special,
                &computed.meta.name,
                &spec,
                &style,
            )
        }
        View::Grid => render::grid_view_figure(&computed.maps, &computed.meta.name, &style),
    }
    .map_err(|e| {
        // Name the input file where there is one ("every token is special" is about it).
        match &args.common.input {
            Some(path) => anyhow!("{e} in {}", path.display()),
            None => anyhow!(e),
        }
    })?;
    render::write_png(&image, &args.out)?;
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}
