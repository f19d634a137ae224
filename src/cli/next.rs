//! `attnviz next`: a checkpoint's most likely next tokens.

use super::args::NextArgs;
use super::{Timings, compute, ms_since, print_timings};
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
    if args.common.model == "demo" {
        bail!("the demo model has no LM head; give --model DIR with a GPT-2 or Llama checkpoint");
    }
    // The position is checked before the model runs, once the length is known (below).
    let positions = args.position.as_deref().map(str::trim);
    let parsed: Option<Option<usize>> = match positions {
        None => None,
        Some("all") => Some(None),
        Some(p) => Some(Some(p.parse::<usize>().map_err(|_| {
            anyhow!("bad --position {p:?}; expected a 0-based token index or all")
        })?)),
    };
    let mut timings = Timings::default();
    let computed = compute(&args.common, &mut timings, true)?;
    let (Some(ckpt), Some(hidden)) = (
        computed
            .model
            .as_ref()
            .and_then(crate::pipeline::LoadedModel::as_checkpoint),
        &computed.hidden,
    ) else {
        bail!(
            "next-token predictions need a model run: give text or token ids, not an attention file"
        );
    };
    let dir = &args.common.model;
    let head = ckpt.lm_head().ok_or_else(|| {
        anyhow!(
            "the model has no next-token LM head (a BERT model, or no lm_head.weight and untied embeddings) in {dir}"
        )
    })?;
    let n = computed.tokens.len();
    let start = Instant::now();
    let wanted: Vec<usize> = match parsed {
        None => vec![n.saturating_sub(1)],
        Some(None) => (0..n).collect(),
        Some(Some(p)) if p >= n => {
            bail!("--position {p} is out of range: the input has {n} tokens (0-based)")
        }
        Some(Some(p)) => vec![p],
    };
    let mut predictions = Vec::with_capacity(wanted.len());
    for &position in &wanted {
        let top = ckpt.top_next_tokens(hidden.view(), position, args.top as usize)?;
        predictions.push(PositionJson {
            position,
            token: computed.tokens[position].text.as_str(),
            top,
        });
    }
    timings.write_ms = ms_since(start);
    if args.json {
        let out = NextJson {
            format: "attnviz.next/v1",
            model: &computed.meta.name,
            lm_head: &head,
            tokens: computed.tokens.iter().map(|t| t.text.as_str()).collect(),
            token_ids: computed.tokens.iter().map(|t| t.id).collect(),
            mask: &computed.mask,
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
