//! `attnviz explain`: one query of one head, step by step, as `attnviz.explain/v1` JSON (the
//! contract is in ARCHITECTURE.md). The numbers come from [`crate::pipeline::explain`], the
//! same call the app's walkthrough makes.

use super::args::ExplainArgs;
use super::{Source, Timings, ms_since, print_timings, run_input, run_options, source};
use crate::analysis::explain::Explanation;
use crate::io::ModelMeta;
use crate::pipeline;
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
    ablations: &'a [crate::engine::Ablation],
    /// How the numbers were made (scale, dims, mistakes, ablations).
    options: crate::engine::OptionsRecord,
    tokens: Vec<&'a str>,
    token_ids: Vec<u32>,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

/// Runs `attnviz explain`.
pub(super) fn explain_cmd(args: ExplainArgs) -> Result<()> {
    // It writes JSON only: refuse `--out e.png` before any work, rather than write JSON into it.
    crate::io::OutputFormat::of(&args.out, &[crate::io::OutputFormat::Json])
        .map_err(|e| anyhow::anyhow!(e))?;
    let mut timings = Timings::default();
    let start = Instant::now();
    let common = &args.common;
    let opts = run_options(common, false)?;
    let input = match source(common)? {
        Source::Tokens(input) => input,
        Source::Attention(_) => bail!(
            "explain needs a model run, and this is an attention file: {}",
            common
                .input
                .as_deref()
                .map_or_else(String::new, |p| p.display().to_string())
        ),
    };
    let model = super::load_model(common)?;
    timings.load_ms = ms_since(start);
    let request = run_input(common, input);
    let (run, explanation) =
        pipeline::explain(&model, &request, &opts, args.layer, args.head, args.query)
            .map_err(super::worded)?;
    timings.tokenize_ms = run.timings.tokenize_ms;
    timings.forward_ms = run.timings.forward_ms;
    let start = Instant::now();
    let tokens = &run.tokens;
    let mask = run.mask.to_string();
    let file = ExplainFile {
        format: EXPLAIN_FORMAT,
        model: run.model.clone(),
        mask: &mask,
        ablations: &run.ablations,
        options: crate::engine::OptionsRecord::of(&opts),
        tokens: tokens.iter().map(|t| t.text.as_str()).collect(),
        token_ids: tokens.iter().map(|t| t.id).collect(),
        explanation: &explanation,
    };
    crate::fs::write_atomic(&args.out, |out| {
        serde_json::to_writer(&mut *out, &file).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })?;
    timings.write_ms = ms_since(start);
    print_timings(common.timings, &timings);
    Ok(())
}
