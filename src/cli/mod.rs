//! The command line: `export`, `render`, `info` and `next`. Thin glue over the library modules:
//! arguments in [`args`], one file per subcommand, and every model run through
//! [`crate::pipeline`].
//!
//! Errors come back as `anyhow` errors with context; `main` prints them as one `error:` line and
//! exits with status 1. clap's own usage errors exit with 2.

mod args;
mod explain;
mod export;
mod info;
mod next;
mod render;

pub use args::{
    Cli, Command, CommonArgs, DemoArgs, ExplainArgs, ExportArgs, ExportFormat, InfoArgs, NextArgs,
    RenderArgs, View,
};

use crate::engine::{AttentionMaps, DimSubset, MaskSpec, RunOptions, ScoreScale};
use crate::io::{self, InputFile, ModelMeta, TokenInput};
use crate::pipeline::{self, LoadedModel, RunInput};
use crate::tokenize::Token;
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
    }
}

/// Wall-clock phases for `--timings`.
#[derive(Default, serde::Serialize)]
struct Timings {
    load_ms: f64,
    tokenize_ms: f64,
    forward_ms: f64,
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

fn print_timings(enabled: bool, timings: &Timings) {
    if enabled && let Ok(line) = serde_json::to_string(timings) {
        eprintln!("{line}");
    }
}

/// Attention that came either from running the model or from a file.
struct Computed {
    meta: ModelMeta,
    tokens: Vec<Token>,
    /// The mask that was applied, as a spec string.
    mask: String,
    /// The input text, when the input was text (figures show its start); else empty.
    text: String,
    maps: AttentionMaps,
    /// The model that ran, when one did.
    model: Option<LoadedModel>,
    /// Final hidden states, when asked for and a model ran. Shape: [token, d_model].
    hidden: Option<ndarray::Array2<f32>>,
}

/// The run options `common` spells (mask, scale, dims, mistakes), checked.
fn run_options(common: &CommonArgs) -> Result<RunOptions> {
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
        mistakes: common.mistakes.clone(),
        ..RunOptions::default()
    })
}

/// The input, model and run of `common`, through the pipeline. `next` asks for the hidden
/// states and no maps (`keep_hidden`); the others for the maps.
fn compute(common: &CommonArgs, timings: &mut Timings, keep_hidden: bool) -> Result<Computed> {
    let start = Instant::now();
    // Options are checked before anything heavy, so that a bad spec fails fast.
    let opts = RunOptions {
        keep_hidden,
        keep_maps: !keep_hidden,
        ..run_options(common)?
    };
    let input = match (&common.input, &common.text, &common.ids) {
        (Some(path), _, _) => match io::load_input(path)? {
            InputFile::Input(input) => input,
            InputFile::Attention(file) => {
                timings.load_ms = ms_since(start);
                let (run, meta) = pipeline::from_attention_file(*file);
                return Ok(Computed {
                    meta,
                    tokens: run.attention.tokens,
                    mask: run.mask,
                    text: String::new(),
                    maps: run.attention.maps,
                    model: None,
                    hidden: None,
                });
            }
            InputFile::Session(_) => bail!(
                "session files open in the app (attnviz {}), not here: {}",
                path.display(),
                path.display()
            ),
        },
        (None, Some(text), _) => TokenInput::Text(text.clone()),
        (None, None, Some(ids)) => TokenInput::Ids(ids.clone()),
        (None, None, None) => bail!("no input: give an INPUT file, --text or --ids"),
    };
    let text = match &input {
        TokenInput::Text(text) => text.clone(),
        _ => String::new(),
    };
    let model = LoadedModel::load(&common.model, common.demo.config(), common.demo.tokenizer)?;
    timings.load_ms = ms_since(start);
    let request = RunInput {
        input,
        file: common.input.clone(),
        truncate: common.truncate,
        memory_budget: common
            .memory_budget
            .map_or_else(pipeline::default_memory_budget, |b| b.0),
    };
    let run = match pipeline::run(&model, &request, &opts, &mut |_| true) {
        Ok(run) => run,
        Err(pipeline::PipelineError::TooLong {
            count,
            limit,
            config,
            file,
        }) => bail!(
            "{count} tokens exceed the model's limit of {limit}{}; pass --truncate to cut the input{}",
            config.map_or_else(String::new, |c| format!(" (set by {})", c.display())),
            file.map_or_else(String::new, |f| format!(" in {}", f.display()))
        ),
        Err(e) => return Err(e.into()),
    };
    timings.tokenize_ms = run.timings.tokenize_ms;
    timings.forward_ms = run.timings.forward_ms;
    Ok(Computed {
        meta: ModelMeta::from(&model.info()),
        tokens: run.attention.tokens,
        mask: run.mask,
        text,
        maps: run.attention.maps,
        hidden: run.attention.hidden,
        model: Some(model),
    })
}
