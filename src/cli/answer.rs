//! `attnviz analyze --what logit-lens|contributions|routes|patching`: where the answer forms,
//! through `pipeline::answer`, written as `attnviz.logit_lens/v1`, `attnviz.contributions/v1`,
//! `attnviz.routes/v1` and `attnviz.patching/v1` (`pipeline::answer_json`, each with the
//! model, mask and options header every analysis file has), or drawn as the analysis's figure
//! (`render::answer`) in PNG or SVG.

use super::args::{AnalyzeArgs, AnalyzeWhat};
use super::{Source, Timings, load_model, ms_since, print_timings, run_input, run_options, worded};
use crate::io::{OutputFormat, TokenInput};
use crate::model::LoadedModel;
use crate::pipeline::Run;
use crate::pipeline::answer::{self as answers, LensPositions};
use crate::pipeline::answer_json as docs;
use crate::render::FigureContext;
use crate::render::answer::{AnswerPlot, AnswerStyle};
use anyhow::{Result, anyhow, bail};
use std::time::Instant;

/// The analyses this file answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AnswerWhat {
    Lens,
    Contributions,
    Routes,
    Patching,
}

impl AnswerWhat {
    /// `what` when it is one of these.
    pub(super) fn of(what: AnalyzeWhat) -> Option<Self> {
        match what {
            AnalyzeWhat::LogitLens => Some(Self::Lens),
            AnalyzeWhat::Contributions => Some(Self::Contributions),
            AnalyzeWhat::Routes => Some(Self::Routes),
            AnalyzeWhat::Patching => Some(Self::Patching),
            _ => None,
        }
    }
}

/// The vocabulary string of `id`, as the files spell tokens.
fn token_text(model: &LoadedModel, id: u32) -> String {
    docs::vocab_strings(model, [id])
        .pop()
        .map_or_else(|| id.to_string(), |(_, t)| t)
}

/// The display label of `id`, as figures show tokens.
fn token_label(model: &LoadedModel, id: u32) -> String {
    model
        .tokens(&TokenInput::Ids(vec![id]), None)
        .ok()
        .and_then(|t| t.into_iter().next())
        .map_or_else(|| id.to_string(), |t| t.label(&model.vocab_style()))
}

/// Draws `plot` of `run` to `--out` (PNG or SVG by its extension).
fn write_figure(
    args: &AnalyzeArgs,
    model: &LoadedModel,
    run: &Run,
    plot: AnswerPlot<'_>,
) -> Result<()> {
    let ctx = FigureContext::from_run(run);
    let label = |id: u32| token_label(model, id);
    let style = AnswerStyle {
        ctx: &ctx,
        token_label: &label,
        pixel_scale: args.pixel_scale,
    };
    plot.write(&style, &args.out)?;
    Ok(())
}

/// Reads `--position`: `all`, or one 0-based index.
fn lens_positions(spec: Option<&str>) -> Result<LensPositions> {
    match spec.map(str::trim) {
        None | Some("all") => Ok(LensPositions::All),
        Some(p) => Ok(LensPositions::These(vec![p.parse().map_err(|_| {
            anyhow!("bad --position {p:?}: expected a 0-based index or `all`")
        })?])),
    }
}

/// Runs one of the answer analyses of `attnviz analyze`, writing `format` (JSON, PNG or SVG).
pub(super) fn analyze(what: AnswerWhat, args: &AnalyzeArgs, format: OutputFormat) -> Result<()> {
    let common = &args.common;
    let mut timings = Timings::default();
    let start = Instant::now();
    let opts = run_options(common, false)?;
    let input = match super::source(common)? {
        Source::Tokens(input) => input,
        Source::Attention(_) => bail!(
            "{what:?} needs a model run, not an attention file: give text, token strings or ids"
        ),
    };
    let model = load_model(common)?;
    timings.load_ms = ms_since(start);
    let request = run_input(common, input);
    let start = Instant::now();
    let mut progress = |_: usize, _: usize| true;
    let json = format == OutputFormat::Json;
    let text = |id: u32| token_text(&model, id);
    let out = &args.out;
    match what {
        AnswerWhat::Lens => {
            let positions = lens_positions(args.position.as_deref())?;
            if args.top == 0 {
                bail!("--top must be at least 1");
            }
            let r = answers::logit_lens(
                &model,
                &request,
                &opts,
                args.target.as_ref(),
                &positions,
                args.top,
                &mut progress,
            )
            .map_err(worded)?;
            timings.forward_ms = ms_since(start);
            let start = Instant::now();
            let (positions, cells) = (&r.lens.positions, &r.lens.cells);
            if json {
                let doc =
                    docs::lens_document(&r.run, &r.target, positions, cells, &r.at_target, &text);
                write_json(out, &doc)?;
            } else {
                let plot = AnswerPlot::Lens {
                    target: r.target,
                    positions,
                    cells,
                    at_target: &r.at_target,
                };
                write_figure(args, &model, &r.run, plot)?;
            }
            timings.write_ms = ms_since(start);
        }
        AnswerWhat::Contributions => {
            let r = answers::contributions(
                &model,
                &request,
                &opts,
                args.target.as_ref(),
                &mut progress,
            )
            .map_err(worded)?;
            timings.forward_ms = ms_since(start);
            let start = Instant::now();
            let c = &r.contributions;
            if json {
                write_json(
                    out,
                    &docs::contributions_document(&r.run, &r.target, c, &text),
                )?;
            } else {
                let plot = AnswerPlot::Contributions {
                    target: r.target,
                    contributions: c,
                };
                write_figure(args, &model, &r.run, plot)?;
            }
            timings.write_ms = ms_since(start);
        }
        AnswerWhat::Routes => {
            let (run, graph) =
                answers::routes(&model, &request, &opts, &mut progress).map_err(worded)?;
            let position = match args.position.as_deref() {
                Some(p) => p
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("bad --position {p:?}: expected a 0-based index"))?,
                None => args
                    .target
                    .as_ref()
                    .and_then(|t| t.position)
                    .unwrap_or(run.tokens.len().saturating_sub(1)),
            };
            let routes = graph
                .routes(position, args.threshold)
                .map_err(|e| worded(e.into()))?;
            timings.forward_ms = ms_since(start);
            let start = Instant::now();
            if json {
                write_json(out, &docs::routes_document(&run, &routes))?;
            } else {
                let plot = AnswerPlot::Routes {
                    routes: &routes,
                    layers: graph.layers(),
                };
                write_figure(args, &model, &run, plot)?;
            }
            timings.write_ms = ms_since(start);
        }
        AnswerWhat::Patching => {
            let Some(text_b) = &args.text_b else {
                bail!("--what patching needs the corrupted input in --text-b");
            };
            let corrupted = run_input(common, TokenInput::Text(text_b.clone()));
            let corrupted = crate::pipeline::RunInput {
                file: None,
                ..corrupted
            };
            let r = crate::pipeline::patching::patching(
                &model,
                &request,
                &corrupted,
                &opts,
                args.target.as_ref(),
                args.site,
                &mut progress,
            )
            .map_err(worded)?;
            timings.forward_ms = ms_since(start);
            let start = Instant::now();
            let b = &r.corrupted.tokens;
            if json {
                let tokens_b: Vec<String> = b.iter().map(|t| t.text.clone()).collect();
                let doc =
                    docs::patching_document(&r.clean, &tokens_b, &r.target, &r.patching, &text);
                write_json(out, &doc)?;
            } else {
                let labels_b = crate::tokenize::display_labels(b, &r.corrupted.vocab_style);
                let plot = AnswerPlot::Patching {
                    target: r.target,
                    patching: &r.patching,
                    labels_b: &labels_b,
                };
                write_figure(args, &model, &r.clean, plot)?;
            }
            timings.write_ms = ms_since(start);
        }
    }
    print_timings(common.timings, &timings);
    Ok(())
}

/// Writes a document as one line of JSON.
fn write_json(path: &std::path::Path, doc: &impl serde::Serialize) -> Result<()> {
    docs::write_document(path, doc)?;
    Ok(())
}
