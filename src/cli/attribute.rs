//! `attnviz attribute`: saliency scores through `pipeline::attribute`, written as
//! `attnviz.attribution/v1` JSON, CSV, or the saliency figure (PNG or SVG).

use super::args::AttributeArgs;
use super::{Source, Timings, ms_since, print_timings, run_input, run_options};
use crate::analysis::attribution::{self, AttributeRequest, Attribution};
use crate::io::OutputFormat;
use crate::io::{ModelMeta, TokenInput};
use crate::model::LoadedModel;
use crate::pipeline;
use crate::render::{self, saliency};
use anyhow::{Context as _, Result, bail};
use std::io::IsTerminal as _;
use std::path::Path;
use std::time::Instant;

/// What `--out` asks for, from its extension (`io::OutputFormat::of`: anything but .json, .csv,
/// .png or .svg is refused, naming them).
fn out_kind(path: &Path) -> Result<OutputFormat> {
    OutputFormat::of(
        path,
        &[
            OutputFormat::Json,
            OutputFormat::Csv,
            OutputFormat::Png,
            OutputFormat::Svg,
        ],
    )
    .map_err(|e| anyhow::anyhow!(e))
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub(super) struct Bar {
    label: &'static str,
    enabled: bool,
    last: i32,
}

impl Bar {
    /// A bar that says `label` (`attributing`, `value zeroing`).
    pub(super) fn new(label: &'static str) -> Self {
        Self {
            label,
            enabled: std::io::stderr().is_terminal(),
            last: -1,
        }
    }

    /// Shows `fraction` done.
    pub(super) fn update(&mut self, fraction: f32) {
        if !self.enabled {
            return;
        }
        let pct = (fraction.clamp(0.0, 1.0) * 100.0).round() as i32;
        if pct == self.last {
            return;
        }
        self.last = pct;
        let filled = (pct / 4) as usize;
        eprint!(
            "\r{} [{}{}] {pct:3}%",
            self.label,
            "#".repeat(filled),
            " ".repeat(25 - filled.min(25))
        );
    }

    /// Clears the bar.
    pub(super) fn finish(&self) {
        if self.enabled && self.last >= 0 {
            eprint!("\r{}\r", " ".repeat(self.label.len() + 35));
        }
    }
}

/// Runs `attnviz attribute`.
pub(super) fn attribute(args: AttributeArgs) -> Result<()> {
    let kind = out_kind(&args.out)?;
    let req = AttributeRequest {
        method: args.method,
        target: args.target.clone(),
        text_b: args.text_b.clone(),
        steps: args.steps,
        baseline: args.baseline,
        occlude: args.occlude,
        aggregate: args.aggregate,
        generate: args.generate,
    };
    req.validate()
        .map_err(|e| super::worded(pipeline::PipelineError::Attribution(e)))?;
    let common = &args.common;
    let opts = run_options(common, false)?;
    let input = match super::source(common)? {
        Source::Tokens(input) => input,
        Source::Attention(_) => bail!(
            "attribution needs a model run, not an attention file: give text, token strings or \
             ids{}",
            common
                .input
                .as_ref()
                .map_or_else(String::new, |p| format!(" (not {})", p.display()))
        ),
    };
    let mut timings = Timings::default();
    let start = Instant::now();
    let model = super::load_model(common)?;
    timings.load_ms = ms_since(start);
    if req.method.needs_gradient() {
        let start = Instant::now();
        model.model().transformer().prepare_backward();
        timings.prepare_backward_ms = Some(ms_since(start));
    }
    let request = run_input(common, input);
    let mut bar = Bar::new("attributing");
    let start = Instant::now();
    let result = pipeline::attribute(&model, &request, &opts, &req, &mut |f| {
        bar.update(f);
        true
    });
    bar.finish();
    timings.attribution_ms = Some(ms_since(start));
    let a = result.map_err(super::worded)?;
    let start = Instant::now();
    let meta = ModelMeta::from(&model.info());
    // The mask the attribution's runs on the prompt applied, as the pipeline recorded it.
    let mask = a.mask.to_string();
    match kind {
        OutputFormat::Json => {
            let record = crate::engine::OptionsRecord::of(&opts);
            write_text(
                &args.out,
                &attribution::to_json(&a, &meta, &mask, Some(&record)),
            )?
        }
        OutputFormat::Csv => write_text(&args.out, &attribution::to_csv(&a))?,
        OutputFormat::Png | OutputFormat::Svg => write_figure(&args, &model, &a, kind)?,
        // `out_kind` accepts only the four above.
        OutputFormat::Npy => bail!("attribute does not write NPY: {}", args.out.display()),
    }
    timings.write_ms = ms_since(start);
    print_timings(common.timings, &timings);
    Ok(())
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    crate::fs::write_atomic(path, |out| out.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The figure: the token strip and bars, or the generated × tokens matrix with `--generate`.
fn write_figure(
    args: &AttributeArgs,
    model: &LoadedModel,
    a: &Attribution,
    kind: OutputFormat,
) -> Result<()> {
    let style = model.vocab_style();
    let token_text = |id: u32| -> String {
        model
            .tokens(&TokenInput::Ids(vec![id]), None)
            .ok()
            .and_then(|t| t.into_iter().next())
            .map_or_else(|| id.to_string(), |t| t.label(&style))
    };
    let name = model.info().name;
    let title = saliency::saliency_title(a, &name, &token_text);
    if let Some((m, mut fig)) = saliency::generated_matrix(a, &title) {
        fig.pixel_scale = args.pixel_scale;
        match kind {
            OutputFormat::Svg => {
                let svg = render::heatmap_svg(m.view(), &fig)?;
                render::write_svg(&svg, &args.out)?;
            }
            _ => {
                let img = render::heatmap_figure(m.view(), &fig)?;
                render::write_png(&img, &args.out)?;
            }
        }
        return Ok(());
    }
    let opts = saliency::SaliencyOptions {
        title,
        pixel_scale: args.pixel_scale,
        ..saliency::SaliencyOptions::default()
    };
    match kind {
        OutputFormat::Svg => render::write_svg(&saliency::saliency_svg(a, &opts)?, &args.out)?,
        _ => render::write_png(&saliency::saliency_figure(a, &opts)?, &args.out)?,
    }
    Ok(())
}
