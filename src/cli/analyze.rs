//! `attnviz analyze`: analyses of every head. `--what rollout` writes the attention rollout
//! (`analysis::rollout`) as `attnviz.rollout/v1`; `--what flow` the attention flow into one
//! position (`analysis::flow`) as `attnviz.flow/v1`; `--what value-zeroing` every layer's
//! value-zeroing map and their product (`analysis::value_zeroing`) as
//! `attnviz.value_zeroing/v1`; `--what metrics` each head's metrics (`analysis::metrics`) as
//! `attnviz.metrics/v1` JSON: each metric as a layers × heads array (`null` where no query
//! qualifies), the number of sink heads per layer, the heads in clustered order and, with
//! `--probe induction`, each head's induction score. Every file starts with the model, the
//! applied mask, the options and the tokens.

use super::args::{AnalyzeArgs, AnalyzeWhat, Probe};
use super::attribute::Bar;
use super::{Timings, compute, ms_since, print_timings};
use crate::analysis::flow::{FlowOptions, attention_flow};
use crate::analysis::metrics::{METRICS, head_order, sink_heads};
use crate::analysis::rollout::{RolloutOptions, rollout};
use crate::io::OutputFormat;
use crate::model::LoadedModel;
use crate::pipeline::answer_json::Header;
use crate::pipeline::{self, Run};
use anyhow::{Result, anyhow, bail};
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
    head_order: Vec<[usize; 2]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    induction_probe: Option<ProbeRecord>,
}

/// What the induction probe ran on: where the repeated sequence starts, its length, the seed
/// and every token id (the sequence twice, with the tokenizer's special tokens around it).
#[derive(Serialize)]
struct ProbeRecord {
    start: usize,
    period: usize,
    seed: u64,
    token_ids: Vec<u32>,
}

/// The format tag of `attnviz analyze --what flow` files.
pub const FLOW_FORMAT: &str = "attnviz.flow/v1";

/// The flow file: the raw maximum flow from every input token into the query position.
#[derive(Serialize)]
struct FlowFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    query: usize,
    alpha: f64,
    head_fusion: &'static str,
    layers: [usize; 2],
    flow: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow_normalized: Option<Vec<f64>>,
}

/// The format tag of `attnviz analyze --what value-zeroing` files.
pub const VALUE_ZEROING_FORMAT: &str = "attnviz.value_zeroing/v1";

/// The value-zeroing file: per layer the row-normalised map (query rows, zeroed-token columns)
/// and each row's raw sum, and the maps' product across layers.
#[derive(Serialize)]
struct ValueZeroingFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    maps: Vec<Vec<Vec<f32>>>,
    row_sums: Vec<Vec<f64>>,
    product: Vec<Vec<f32>>,
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

/// Any of the files, written as the file itself.
#[derive(Serialize)]
#[serde(untagged)]
enum AnalysisFile<'a> {
    Rollout(RolloutFile<'a>),
    Flow(FlowFile<'a>),
    ValueZeroing(ValueZeroingFile<'a>),
    Metrics(MetricsFile<'a>),
}

/// Refuses flags that do not apply to `--what`, before any work.
fn check_flags(args: &AnalyzeArgs) -> Result<()> {
    let what = args.what;
    let flow = what == AnalyzeWhat::Flow;
    if args.query.is_some() && !flow {
        bail!("--query applies to --what flow only");
    }
    if args.normalize_flow && !flow {
        bail!("--normalize-flow applies to --what flow only");
    }
    if args.probe.is_some() && what != AnalyzeWhat::Metrics {
        bail!("--probe applies to --what metrics only");
    }
    let answer = super::answer::AnswerWhat::of(what).is_some();
    if args.target.is_some() && !answer {
        bail!("--target applies to --what logit-lens, contributions, routes and patching only");
    }
    if args.position.is_some() && !matches!(what, AnalyzeWhat::LogitLens | AnalyzeWhat::Routes) {
        bail!("--position applies to --what logit-lens and routes only");
    }
    if args.text_b.is_some() && what != AnalyzeWhat::Patching {
        bail!("--text-b applies to --what patching only (the corrupted input)");
    }
    if args.layer_range.is_some() && !matches!(what, AnalyzeWhat::Rollout | AnalyzeWhat::Flow) {
        bail!("--layer-range applies to --what rollout and flow only");
    }
    Ok(())
}

/// Rows as f32 lists.
fn rows_f32(m: &ndarray::Array2<f64>) -> Vec<Vec<f32>> {
    m.rows()
        .into_iter()
        .map(|row| row.iter().map(|&v| v as f32).collect())
        .collect()
}

/// The model a run came from, or an error naming what needs one.
fn model_of<'a>(model: Option<&'a LoadedModel>, what: &str) -> Result<&'a LoadedModel> {
    model.ok_or_else(|| {
        anyhow!("{what} needs a model run, not an attention file: give text, token strings or ids")
    })
}

/// Runs `attnviz analyze`.
pub(super) fn analyze(args: AnalyzeArgs) -> Result<()> {
    let answer = super::answer::AnswerWhat::of(args.what);
    // The answer analyses also draw their figures.
    let formats: &[OutputFormat] = match answer {
        Some(_) => &[OutputFormat::Json, OutputFormat::Png, OutputFormat::Svg],
        None => &[OutputFormat::Json],
    };
    let format = OutputFormat::of(&args.out, formats).map_err(|e| anyhow!(e))?;
    check_flags(&args)?;
    if let Some(what) = answer {
        return super::answer::analyze(what, &args, format);
    }
    let layers = match &args.layer_range {
        None => None,
        Some(spec) => Some(parse_range(spec)?),
    };
    let rollout_opts = RolloutOptions {
        fusion: args.fusion,
        alpha: args.alpha,
        layers,
    };
    let mut timings = Timings::default();
    let (run, model) = compute(&args.common, &mut timings, false, 0, &|_, _, _| Ok(()))?;
    let start = Instant::now();
    let span = |run: &Run| layers.unwrap_or((0, run.maps.layers().saturating_sub(1)));
    let file = match args.what {
        AnalyzeWhat::Rollout => {
            let r = rollout(&run.maps, &rollout_opts).map_err(|e| anyhow!(e))?;
            let (first, last) = span(&run);
            AnalysisFile::Rollout(RolloutFile {
                header: Header::of(ROLLOUT_FORMAT, &run),
                alpha: args.alpha,
                head_fusion: args.fusion.name(),
                layers: [first, last],
                rollout: rows_f32(&r),
            })
        }
        // Answered above, before any run of the maps.
        what @ (AnalyzeWhat::LogitLens
        | AnalyzeWhat::Contributions
        | AnalyzeWhat::Routes
        | AnalyzeWhat::Patching) => {
            return Err(anyhow!("analyze --what {what:?} reads no attention maps"));
        }
        AnalyzeWhat::Flow => {
            let opts = FlowOptions {
                rollout: rollout_opts,
                query: args.query,
            };
            let mut bar = Bar::new("flow");
            let flow = attention_flow(&run.maps, &opts, &mut |done, total| {
                bar.update(done as f32 / total.max(1) as f32);
                true
            });
            bar.finish();
            let flow = flow.map_err(|e| anyhow!("{e}"))?;
            let (first, last) = span(&run);
            AnalysisFile::Flow(FlowFile {
                header: Header::of(FLOW_FORMAT, &run),
                query: flow.query,
                alpha: args.alpha,
                head_fusion: args.fusion.name(),
                layers: [first, last],
                flow_normalized: args.normalize_flow.then(|| flow.normalized()),
                flow: flow.flow,
            })
        }
        AnalyzeWhat::ValueZeroing => {
            let model = model_of(model.as_ref(), "value zeroing")?;
            let mut bar = Bar::new("value zeroing");
            let vz = pipeline::value_zeroing_of(model, &run, &mut |f| {
                bar.update(f);
                true
            });
            bar.finish();
            let vz = vz.map_err(super::worded)?;
            AnalysisFile::ValueZeroing(ValueZeroingFile {
                header: Header::of(VALUE_ZEROING_FORMAT, &run),
                maps: vz.maps.iter().map(rows_f32).collect(),
                row_sums: vz.row_sums,
                product: rows_f32(&vz.product),
            })
        }
        AnalyzeWhat::Metrics => AnalysisFile::Metrics(metrics_file(&args, &run, model.as_ref())?),
    };
    timings.analysis_ms = Some(ms_since(start));
    let start = Instant::now();
    write_json(&args.out, &file)?;
    timings.write_ms = ms_since(start);
    print_timings(args.common.timings, &timings);
    Ok(())
}

/// The metrics file of `run` (with the induction probe's scores when asked, run on `model`).
fn metrics_file<'a>(
    args: &AnalyzeArgs,
    run: &'a Run,
    model: Option<&LoadedModel>,
) -> Result<MetricsFile<'a>> {
    let data = pipeline::MetricData::of(run).map_err(|e| anyhow!("{e}"))?;
    let per_head = pipeline::head_metrics_of(run, &data, &mut |_, _| true)
        .ok_or_else(|| anyhow!("the metrics stopped"))?;
    let mut metrics = serde_json::Map::new();
    for (name, read) in METRICS {
        let table: Vec<Vec<Option<f64>>> = per_head
            .iter()
            .map(|layer| layer.iter().map(read).collect())
            .collect();
        metrics.insert(name.to_owned(), serde_json::json!(table));
    }
    let peaks: Vec<Vec<Option<i64>>> = per_head
        .iter()
        .map(|layer| layer.iter().map(|m| m.offset_peak).collect())
        .collect();
    metrics.insert("offset_peak".to_owned(), serde_json::json!(peaks));
    let mut induction_probe = None;
    if args.probe == Some(Probe::Induction) {
        let model = model_of(model, "the induction probe")?;
        let opts = run.options.clone().unwrap_or_default();
        let (probe_run, probe, scores) =
            pipeline::induction_scores(model, &opts, &mut |_| true).map_err(super::worded)?;
        metrics.insert("induction".to_owned(), serde_json::json!(scores));
        induction_probe = Some(ProbeRecord {
            start: probe.start,
            period: probe.period,
            seed: pipeline::PROBE_SEED,
            token_ids: probe_run.tokens.iter().map(|t| t.id).collect(),
        });
    }
    let order = head_order(&run.maps, data.allowed());
    Ok(MetricsFile {
        header: Header::of(METRICS_FORMAT, run),
        metrics,
        sink_heads: per_head.iter().map(|layer| sink_heads(layer)).collect(),
        head_order: order.into_iter().map(|(l, h)| [l, h]).collect(),
        induction_probe,
    })
}
