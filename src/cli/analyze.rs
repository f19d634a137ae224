//! `attnviz analyze`: analyses of every head. `--what rollout` writes the attention rollout
//! (`analysis::rollout`) as `attnviz.rollout/v1`; `--what metrics` writes each head's metrics
//! (`analysis::metrics`) as `attnviz.metrics/v1` JSON: the model, the applied mask, the options,
//! the tokens, each metric as a layers × heads array (`null` where no query qualifies) and the
//! number of sink heads per layer.

use super::args::{AnalyzeArgs, AnalyzeWhat};
use super::{Timings, compute, ms_since, print_timings};
use crate::analysis::metrics::{
    HeadMetrics, MetricInput, head_metrics, is_punctuation, sink_heads,
};
use crate::analysis::rollout::{RolloutOptions, rollout};
use crate::io::OutputFormat;
use crate::pipeline::answer_json::Header;
use anyhow::{Result, anyhow};
use serde::Serialize;
use std::time::Instant;

/// The format tag of `attnviz analyze --what metrics` files.
pub const METRICS_FORMAT: &str = "attnviz.metrics/v1";

/// The metrics file.
#[derive(Serialize)]
struct MetricsFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    metrics: serde_json::Map<String, serde_json::Value>,
    sink_heads: Vec<usize>,
}

/// The format tag of `attnviz analyze --what rollout` files.
pub const ROLLOUT_FORMAT: &str = "attnviz.rollout/v1";

/// The rollout file: R as rows of output positions over columns of input tokens.
#[derive(Serialize)]
struct RolloutFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    alpha: f64,
    head_fusion: &'static str,
    layers: [usize; 2],
    rollout: Vec<Vec<f32>>,
}

/// `A-B` (or `A`) as an inclusive layer range.
fn parse_range(spec: &str) -> Result<(usize, usize)> {
    let bad = || anyhow!("bad --layer-range {spec:?}: expected A-B (0-based, inclusive)");
    let (a, b) = spec.split_once('-').unwrap_or((spec, spec));
    let a: usize = a.trim().parse().map_err(|_| bad())?;
    let b: usize = b.trim().parse().map_err(|_| bad())?;
    Ok((a, b))
}

/// Writes `value` as one line of JSON to `path`, atomically.
pub(super) fn write_json(path: &std::path::Path, value: &impl Serialize) -> Result<()> {
    crate::pipeline::answer_json::write_document(path, value)?;
    Ok(())
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
    let answer = super::answer::AnswerWhat::of(args.what);
    // The answer analyses also draw their figures.
    let formats: &[OutputFormat] = match answer {
        Some(_) => &[OutputFormat::Json, OutputFormat::Png, OutputFormat::Svg],
        None => &[OutputFormat::Json],
    };
    let format = OutputFormat::of(&args.out, formats).map_err(|e| anyhow!(e))?;
    if let Some(what) = answer {
        return super::answer::analyze(what, &args, format);
    }
    let mut timings = Timings::default();
    let (run, _) = compute(&args.common, &mut timings, false)?;
    let start = Instant::now();
    match args.what {
        AnalyzeWhat::Rollout => {
            let layers = match &args.layer_range {
                None => None,
                Some(spec) => Some(parse_range(spec)?),
            };
            let opts = RolloutOptions {
                fusion: args.fusion,
                alpha: args.alpha,
                layers,
            };
            let r = rollout(&run.maps, &opts).map_err(|e| anyhow!(e))?;
            let (first, last) = layers.unwrap_or((0, run.maps.layers().saturating_sub(1)));
            let file = RolloutFile {
                header: Header::of(ROLLOUT_FORMAT, &run),
                alpha: args.alpha,
                head_fusion: args.fusion.name(),
                layers: [first, last],
                rollout: r
                    .rows()
                    .into_iter()
                    .map(|row| row.iter().map(|&v| v as f32).collect())
                    .collect(),
            };
            write_json(&args.out, &file)?;
        }
        // Answered above, before any run of the maps.
        what @ (AnalyzeWhat::LogitLens
        | AnalyzeWhat::Contributions
        | AnalyzeWhat::Routes
        | AnalyzeWhat::Patching) => {
            return Err(anyhow!("analyze --what {what:?} reads no attention maps"));
        }
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
                header: Header::of(METRICS_FORMAT, &run),
                metrics,
                sink_heads: per_head.iter().map(|layer| sink_heads(layer)).collect(),
            };
            write_json(&args.out, &file)?;
        }
    }
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}
