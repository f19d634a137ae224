//! The command line: `export`, `render`, `attribute`, `info` and `next`. Thin glue over the library modules:
//! arguments in [`args`], one file per subcommand, and every model run through
//! [`crate::pipeline`].
//!
//! Errors come back as `anyhow` errors with context; `main` prints them as one `error:` line and
//! exits with status 1. clap's own usage errors exit with 2.

mod analyze;
mod answer;
mod args;
mod attribute;
mod explain;
mod export;
mod info;
mod next;
mod render;

pub use args::{
    AttributeArgs, Cli, Command, CommonArgs, DemoArgs, ExplainArgs, ExportArgs, ExportFormat,
    InfoArgs, NextArgs, RenderArgs, View,
};

use crate::analysis::attribution::RequestSetting;
use crate::engine::{DimSubset, MaskSpec, RunOptions, ScoreScale};
use crate::io::{self, InputFile, TokenInput};
use crate::model::LoadedModel;
use crate::pipeline::{self, Run, RunInput};
use anyhow::{Result, anyhow, bail};
use std::time::Instant;

/// Runs a subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Export(args) => export::export(args),
        Command::Render(args) => render::render_cmd(args),
        Command::Info(args) => info::info(args),
        Command::Next(args) => next::next(args),
        Command::Explain(args) => explain::explain_cmd(args),
        Command::Attribute(args) => attribute::attribute(*args),
        Command::Analyze(args) => analyze::analyze(args),
    }
}

/// Wall-clock phases for `--timings`.
#[derive(Default, serde::Serialize)]
struct Timings {
    load_ms: f64,
    tokenize_ms: f64,
    forward_ms: f64,
    /// `analyze`: the analysis after the run (flow, value zeroing, metrics, probes).
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis_ms: Option<f64>,
    /// `attribute`: packing the transposed weights the backward pass reads (paid once per
    /// process, part of the load).
    #[serde(skip_serializing_if = "Option::is_none")]
    prepare_backward_ms: Option<f64>,
    /// `attribute`: the attribution alone (the gradients, forwards or steps of the method).
    #[serde(skip_serializing_if = "Option::is_none")]
    attribution_ms: Option<f64>,
    /// `export --warm-runs N`: the median forward of N repeats after the first (`forward_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    forward_warm_ms: Option<f64>,
    write_ms: f64,
}

fn ms_since(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// Writes `text` to standard output and flushes it. A reader that closed the pipe early
/// (`attnviz next --json | head`) comes back as an [`std::io::Error`] of kind
/// [`std::io::ErrorKind::BrokenPipe`], which `main` turns into a quiet exit 0, as Unix tools do.
pub fn print_stdout(text: &str) -> Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// True when `e` (or anything in its chain) is a closed standard output: the reader went away.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Prints `timings` as one JSON line on stderr, with the instruction set the kernels ran on
/// (`isa`: portable, avx2 or avx512; `ATTNVIZ_ISA` lowers it).
fn print_timings(enabled: bool, timings: &Timings) {
    if !enabled {
        return;
    }
    if let Ok(serde_json::Value::Object(mut line)) = serde_json::to_value(timings) {
        let isa = crate::engine::simd::Isa::detect().name();
        line.insert("isa".into(), isa.into());
        eprintln!("{}", serde_json::Value::Object(line));
    }
}

/// The run options of `common` (mask, score scale, dimension subsets, mistakes), checked before anything
/// heavy so that a bad spec fails fast.
fn run_options(common: &CommonArgs, keep_hidden: bool) -> Result<RunOptions> {
    let mask = MaskSpec::parse(&common.mask).map_err(|e| anyhow!("{e}"))?;
    let scale: ScoreScale = common.scale.parse().map_err(|e: String| anyhow!(e))?;
    let dims = common
        .dims
        .iter()
        .map(|d| d.parse::<DimSubset>())
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow!(e))?;
    Ok(RunOptions {
        mask,
        scale,
        dims,
        ablations: common.ablate.clone(),
        mistakes: common.mistakes.clone(),
        keep_hidden,
        keep_maps: !keep_hidden,
        ..RunOptions::default()
    })
}

/// Where the tokens of `common` come from: token input, or an attention file.
enum Source {
    Tokens(TokenInput),
    Attention(Box<io::AttentionFile>),
}

fn source(common: &CommonArgs) -> Result<Source> {
    Ok(match (&common.input, &common.text, &common.ids) {
        (Some(path), _, _) => match io::load_input(path)? {
            InputFile::Input(input) => Source::Tokens(input),
            InputFile::Attention(file) => Source::Attention(file),
            InputFile::Lesson => bail!(
                "this is a lesson ({:?}), not a token input; open it in the app (attnviz \
                 LESSON.json): {}",
                io::LESSON_FORMAT,
                path.display()
            ),
            InputFile::Session(_) => bail!(
                "session files open in the app (attnviz {}), not here: {}",
                path.display(),
                path.display()
            ),
        },
        (None, Some(text), _) => Source::Tokens(TokenInput::Text(text.clone())),
        (None, None, Some(ids)) => Source::Tokens(TokenInput::Ids(ids.clone())),
        (None, None, None) => bail!("no input: give an INPUT file, --text or --ids"),
    })
}

/// The memory budget of `common`: `--memory-budget`, or the default.
fn budget(common: &CommonArgs) -> u64 {
    common
        .memory_budget
        .map_or_else(pipeline::default_memory_budget, |b| b.0)
}

/// The model of `common` (`--model`, the demo's settings), the demo within the memory budget;
/// errors in the CLI's words. It is warmed up with one short pass (`Transformer::warm_up`): a
/// CLI process runs one forward, and the first in a process would otherwise pay the warm-up.
fn load_model(common: &CommonArgs) -> Result<LoadedModel> {
    let model = LoadedModel::load(
        &common.model,
        common.demo.config(),
        common.demo.tokenizer,
        budget(common),
    )
    .map_err(|e| worded(e.into()))?;
    model.model().transformer().warm_up();
    Ok(model)
}

/// The pipeline's input for `input` under `common` (file, --truncate, --memory-budget).
fn run_input(common: &CommonArgs, input: TokenInput) -> RunInput {
    RunInput {
        input,
        file: common.input.clone(),
        truncate: common.truncate,
        memory_budget: budget(common),
    }
}

/// A pipeline error in the CLI's words: the token limit with the hint to pass `--truncate`,
/// the memory budget and options that do not fit named by their flags; other errors as they
/// are.
fn worded(e: pipeline::PipelineError) -> anyhow::Error {
    use crate::analysis::attribution::AttributionError;
    use crate::model::OpenError;
    use pipeline::{OptionMisfit, PipelineError};
    match e {
        PipelineError::TooLong {
            which,
            count,
            generated,
            limit,
            truncate,
            config,
            file,
        } => {
            // The hint fits what was asked: cutting the input cannot make room for a second
            // text or for a continuation as long as the model's whole window.
            let hint = match which {
                pipeline::TextRole::TextB => "; give a shorter --text-b".to_owned(),
                pipeline::TextRole::Input if generated >= limit => format!(
                    "; --generate {generated} leaves no room for the input: at most {} fit",
                    limit.saturating_sub(1)
                ),
                pipeline::TextRole::Input if !truncate => {
                    "; pass --truncate to cut the input".to_owned()
                }
                pipeline::TextRole::Input => String::new(),
            };
            // The message as the pipeline words it, the hint before the file (path last).
            let text = pipeline::too_long_text(which, count, generated, limit, config.as_deref());
            anyhow!("{text}{hint}{}", pipeline::in_file(file.as_deref()))
        }
        PipelineError::OverBudget { .. } | PipelineError::Open(OpenError::OverBudget { .. }) => {
            anyhow!("{e} (--memory-budget)")
        }
        PipelineError::OutputTooLarge {
            estimate,
            at_least,
            limit,
            file,
        } => anyhow!(
            "the export would take {}, more than the {} allowed (raise it with \
             --max-output); nothing was written to {}",
            pipeline::output_size(estimate, at_least),
            pipeline::ByteSize(limit),
            file.display()
        ),
        PipelineError::Predict(p @ crate::model::PredictError::Position { .. }) => {
            anyhow!("--{p}")
        }
        PipelineError::Misfit(misfit) => {
            let flag = match misfit {
                OptionMisfit::DimsHead { .. } | OptionMisfit::DimsDimension { .. } => "--dims",
                OptionMisfit::TraceLayer { .. } => "--layer",
                OptionMisfit::AblatedHead { .. } | OptionMisfit::AblatedTwice(_) => "--ablate",
            };
            anyhow!("{flag}: {misfit}")
        }
        PipelineError::Attribution(AttributionError::Setting { setting, reason }) => {
            anyhow!("{reason} ({})", request_flag(setting))
        }
        PipelineError::Attribution(
            e @ AttributionError::NoSpecialToken {
                setting: Some(setting),
                ..
            },
        ) => anyhow!("{e} ({})", request_flag(setting)),
        e => e.into(),
    }
}

/// The flag of an attribution request's setting.
fn request_flag(setting: RequestSetting) -> &'static str {
    match setting {
        RequestSetting::Steps => "--steps",
        RequestSetting::Baseline => "--baseline",
        RequestSetting::Occlude => "--occlude",
        RequestSetting::TextB => "--text-b",
        RequestSetting::Generate => "--generate",
        RequestSetting::Aggregate => "--aggregate",
    }
}

/// An attention file's maps are fixed: options that change a model run (a mask, a score scale,
/// dimension subsets, mistakes) would be ignored, so they are refused, named. (`--model` is
/// not one: it names no setting of the run, and scripts pass it to every input.)
fn refuse_run_options_for_file(common: &CommonArgs, opts: &RunOptions) -> Result<()> {
    let mut given = Vec::new();
    if !opts.mask.is_none() {
        given.push("--mask");
    }
    if opts.scale != ScoreScale::default() {
        given.push("--scale");
    }
    if !opts.dims.is_empty() {
        given.push("--dims");
    }
    if !opts.ablations.is_empty() {
        given.push("--ablate");
    }
    if !opts.mistakes.is_empty() {
        given.push("--mistake");
    }
    if given.is_empty() {
        return Ok(());
    }
    let verb = if given.len() == 1 {
        "changes"
    } else {
        "change"
    };
    bail!(
        "{} {verb} a model run, and the input is an attention file whose maps are fixed: {}",
        given.join(", "),
        common
            .input
            .as_ref()
            .map_or_else(String::new, |p| p.display().to_string())
    )
}

/// The input, model and run of `common`, through the pipeline, with the model that ran (none
/// for an attention file). `next` asks for the hidden states and no maps (`keep_hidden`); the
/// others for the maps. `warm_runs` repeats the forward that many times after the first and
/// records their median in `timings.forward_warm_ms` (`export --warm-runs`).
fn compute(
    common: &CommonArgs,
    timings: &mut Timings,
    keep_hidden: bool,
    warm_runs: usize,
    before_run: &dyn Fn(
        &LoadedModel,
        &RunInput,
        &RunOptions,
    ) -> Result<(), pipeline::PipelineError>,
) -> Result<(Run, Option<LoadedModel>)> {
    let start = Instant::now();
    let opts = run_options(common, keep_hidden)?;
    let input = match source(common)? {
        Source::Tokens(input) => input,
        Source::Attention(file) => {
            refuse_run_options_for_file(common, &opts)?;
            // A file saved elsewhere may carry NaN or rows off 1: drawn, but said.
            let from = common
                .input
                .as_deref()
                .map_or_else(String::new, |p| format!(" in {}", p.display()));
            for warning in &file.warnings {
                eprintln!("warning: {warning}{from}");
            }
            timings.load_ms = ms_since(start);
            return Ok((pipeline::from_attention_file(*file), None));
        }
    };
    let model = load_model(common)?;
    let request = run_input(common, input);
    before_run(&model, &request, &opts).map_err(worded)?;
    // This process runs once: map the run's memory now, with the load (see the function).
    pipeline::reserve(&model, &request, &opts);
    timings.load_ms = ms_since(start);
    let run = pipeline::run(&model, &request, &opts, &mut |_| true).map_err(worded)?;
    timings.tokenize_ms = run.timings.tokenize_ms;
    timings.forward_ms = run.timings.forward_ms;
    if warm_runs > 0 {
        let mut warm = Vec::with_capacity(warm_runs);
        for _ in 0..warm_runs {
            let again = pipeline::run(&model, &request, &opts, &mut |_| true).map_err(worded)?;
            warm.push(again.timings.forward_ms);
        }
        warm.sort_by(f64::total_cmp);
        timings.forward_warm_ms = Some(warm[warm.len() / 2]);
    }
    Ok((run, Some(model)))
}
