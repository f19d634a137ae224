//! `attnviz explain`: one query of one head, step by step, as `attnviz.explain/v1` JSON (the
//! contract is in ARCHITECTURE.md). The numbers come from [`crate::pipeline::explain`], the
//! same call the app's walkthrough makes.

use super::args::ExplainArgs;
use super::{Timings, ms_since, print_timings, run_options};
use crate::analysis::explain::Explanation;
use crate::io::{self, InputFile, ModelMeta, TokenInput};
use crate::pipeline::{self, LoadedModel, RunInput};
use anyhow::{Result, bail};
use serde::Serialize;
use std::time::Instant;

/// The format tag of `attnviz explain` files.
pub const EXPLAIN_FORMAT: &str = "attnviz.explain/v1";

/// The file `attnviz explain` writes: the run's context, then the explanation's fields.
#[derive(Serialize)]
struct ExplainFile<'a> {
    format: &'static str,
    model: ModelMeta,
    mask: &'a str,
    tokens: Vec<&'a str>,
    token_ids: Vec<u32>,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

/// Runs `attnviz explain`.
pub(super) fn explain_cmd(args: ExplainArgs) -> Result<()> {
    let mut timings = Timings::default();
    let start = Instant::now();
    let common = &args.common;
    let opts = run_options(common)?;
    let input = match (&common.input, &common.text, &common.ids) {
        (Some(path), _, _) => match io::load_input(path)? {
            InputFile::Input(input) => input,
            InputFile::Attention(_) | InputFile::Session(_) => bail!(
                "explain needs a model run, and this is an attention or session file: {}",
                path.display()
            ),
        },
        (None, Some(text), _) => TokenInput::Text(text.clone()),
        (None, None, Some(ids)) => TokenInput::Ids(ids.clone()),
        (None, None, None) => bail!("no input: give an INPUT file, --text or --ids"),
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
    let (run, explanation) =
        pipeline::explain(&model, &request, &opts, args.layer, args.head, args.query)?;
    timings.tokenize_ms = run.timings.tokenize_ms;
    timings.forward_ms = run.timings.forward_ms;
    let start = Instant::now();
    let tokens = &run.attention.tokens;
    let file = ExplainFile {
        format: EXPLAIN_FORMAT,
        model: ModelMeta::from(&model.info()),
        mask: &run.mask,
        tokens: tokens.iter().map(|t| t.text.as_str()).collect(),
        token_ids: tokens.iter().map(|t| t.id).collect(),
        explanation: &explanation,
    };
    io::write_atomic(&args.out, |out| {
        serde_json::to_writer(&mut *out, &file).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })?;
    timings.write_ms = ms_since(start);
    print_timings(common.timings, &timings);
    Ok(())
}
