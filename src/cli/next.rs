//! `attnviz next`: a checkpoint's most likely next tokens.

use super::args::NextArgs;
use super::{Timings, ms_since, print_timings};
use crate::pipeline::{self, Positions};
use anyhow::{Context as _, Result, anyhow, bail};
use std::time::Instant;

/// `attnviz next`'s JSON: `attnviz.next/v1`.
#[derive(serde::Serialize)]
struct NextJson<'a> {
    format: &'static str,
    model: &'a str,
    lm_head: &'a crate::model::LmHeadInfo,
    tokens: Vec<&'a str>,
    token_ids: Vec<u32>,
    mask: &'a str,
    predictions: Vec<PositionJson<'a>>,
}

/// The top next tokens after one position.
#[derive(serde::Serialize)]
struct PositionJson<'a> {
    position: usize,
    token: &'a str,
    top: Vec<crate::model::Prediction>,
}

/// Runs `attnviz next`.
pub(super) fn next(args: NextArgs) -> Result<()> {
    // The position is checked against the input once it is tokenized (in the pipeline).
    let positions =
        match args.position.as_deref().map(str::trim) {
            None => Positions::Last,
            Some("all") => Positions::All,
            Some(p) => Positions::One(p.parse::<usize>().map_err(|_| {
                anyhow!("bad --position {p:?}; expected a 0-based token index or all")
            })?),
        };
    let mut timings = Timings::default();
    let start = Instant::now();
    let opts = super::run_options(&args.common, true)?;
    let input = match super::source(&args.common)? {
        super::Source::Tokens(input) => input,
        super::Source::Attention(_) => bail!(
            "next-token predictions need a model run: give text or token ids, not an attention file"
        ),
    };
    let model = super::load_model(&args.common)?;
    // Refuse a model without an LM head before anything runs.
    pipeline::lm_head(&model).map_err(super::worded)?;
    timings.load_ms = ms_since(start);
    let request = super::run_input(&args.common, input);
    let start = Instant::now();
    let (run, head, predictions) = pipeline::next_tokens(
        &model,
        &request,
        &opts,
        positions,
        args.top as usize,
        &mut |_| true,
    )
    .map_err(super::worded)?;
    timings.tokenize_ms = run.timings.tokenize_ms;
    timings.forward_ms = run.timings.forward_ms;
    timings.write_ms =
        (ms_since(start) - run.timings.tokenize_ms - run.timings.forward_ms).max(0.0);
    let predictions: Vec<PositionJson<'_>> = predictions
        .into_iter()
        .map(|p| PositionJson {
            token: run.tokens.get(p.position).map_or("", |t| t.text.as_str()),
            position: p.position,
            top: p.top,
        })
        .collect();
    if args.json {
        let mask = run.mask.to_string();
        let out = NextJson {
            format: "attnviz.next/v1",
            model: &run.model.name,
            lm_head: &head,
            tokens: run.tokens.iter().map(|t| t.text.as_str()).collect(),
            token_ids: run.tokens.iter().map(|t| t.id).collect(),
            mask: &mask,
            predictions,
        };
        let json = serde_json::to_string(&out).context("serialising predictions")?;
        super::print_stdout(&format!("{json}\n"))?;
    } else {
        super::print_stdout(&next_text(&head, &predictions))?;
    }
    print_timings(args.common.timings, &timings);
    Ok(())
}

fn next_text(head: &crate::model::LmHeadInfo, predictions: &[PositionJson<'_>]) -> String {
    let mut s = format!("lm head {}\n", super::info::lm_head_text(Some(head)));
    for p in predictions {
        s.push_str(&format!("after position {} {:?}:\n", p.position, p.token));
        for (rank, t) in p.top.iter().enumerate() {
            s.push_str(&format!(
                "  {:>2}. {:<20} id {:<7} log-prob {:>9.4}  p {:.4}\n",
                rank + 1,
                format!("{:?}", t.token),
                t.id,
                t.logprob,
                t.logprob.exp()
            ));
        }
    }
    s
}
