//! `attnviz analyze`: analyses of every head. `--what metrics` writes each head's metrics
//! (`analysis::metrics`) as `attnviz.metrics/v1` JSON: the model, the applied mask, the options,
//! the tokens, each metric as a layers × heads array (`null` where no query qualifies) and the
//! number of sink heads per layer.

use super::args::{AnalyzeArgs, AnalyzeWhat};
use super::{Timings, compute, ms_since, print_timings};
use crate::analysis::metrics::{
    HeadMetrics, MetricInput, head_metrics, is_punctuation, sink_heads,
};
use crate::io::{self, ModelMeta, OutputFormat};
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::time::Instant;

/// The format tag of `attnviz analyze --what metrics` files.
pub const METRICS_FORMAT: &str = "attnviz.metrics/v1";

/// The metrics file.
#[derive(Serialize)]
struct MetricsFile<'a> {
    format: &'static str,
    model: &'a ModelMeta,
    mask: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<crate::engine::OptionsRecord>,
    tokens: Vec<&'a str>,
    metrics: serde_json::Map<String, serde_json::Value>,
    sink_heads: Vec<usize>,
}

/// Every metric by name, with how to read it from a head's metrics.
type Metric = (&'static str, fn(&HeadMetrics) -> Option<f64>);
const METRICS: [Metric; 10] = [
    ("entropy", |m| m.entropy),
    ("entropy_norm", |m| m.entropy_norm),
    ("prev_token", |m| m.prev_token),
    ("self", |m| m.self_attention),
    ("first_token", |m| m.first_token),
    ("special", |m| m.special),
    ("punctuation", |m| m.punctuation),
    ("mean_distance", |m| m.mean_distance),
    ("confidence", |m| m.confidence),
    ("duplicate_token", |m| m.duplicate_token),
];

/// Runs `attnviz analyze`.
pub(super) fn analyze(args: AnalyzeArgs) -> Result<()> {
    OutputFormat::of(&args.out, &[OutputFormat::Json]).map_err(|e| anyhow!(e))?;
    let mut timings = Timings::default();
    let (run, _) = compute(&args.common, &mut timings, false)?;
    let start = Instant::now();
    match args.what {
        AnalyzeWhat::Metrics => {
            let n = run.tokens.len();
            let is_pad: Vec<bool> = run
                .tokens
                .iter()
                .map(crate::tokenize::Token::is_pad)
                .collect();
            let allowed = run.mask.allowed(n, &is_pad).map_err(|e| anyhow!("{e}"))?;
            let ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
            let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
            let labels = crate::tokenize::display_labels(&run.tokens, &run.vocab_style);
            let punctuation: Vec<bool> = labels.iter().map(|l| is_punctuation(l)).collect();
            let input = MetricInput {
                allowed: allowed.as_ref().map(|a| a.view()),
                ids: &ids,
                special: &special,
                punctuation: &punctuation,
            };
            let [layers, heads, _, _] = run.maps.shape();
            let per_head: Vec<Vec<HeadMetrics>> = (0..layers)
                .map(|l| {
                    (0..heads)
                        .map(|h| match run.maps.head(l, h) {
                            Some(map) => head_metrics(map.view(), &input),
                            None => HeadMetrics::default(),
                        })
                        .collect()
                })
                .collect();
            let mut metrics = serde_json::Map::new();
            for (name, read) in METRICS {
                let table: Vec<Vec<Option<f64>>> = per_head
                    .iter()
                    .map(|layer| layer.iter().map(read).collect())
                    .collect();
                metrics.insert(name.to_owned(), serde_json::json!(table));
            }
            let file = MetricsFile {
                format: METRICS_FORMAT,
                model: &run.model,
                mask: run.mask.to_string(),
                options: run.options.as_ref().map(crate::engine::OptionsRecord::of),
                tokens: run.tokens.iter().map(|t| t.text.as_str()).collect(),
                metrics,
                sink_heads: per_head.iter().map(|layer| sink_heads(layer)).collect(),
            };
            io::write_atomic(&args.out, |out| {
                serde_json::to_writer(&mut *out, &file).map_err(std::io::Error::other)?;
                out.write_all(b"\n")
            })?;
        }
    }
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}
