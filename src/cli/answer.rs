//! `attnviz analyze --what logit-lens|contributions|routes|patching`: where the answer forms,
//! through `pipeline::answer`, written as `attnviz.logit_lens/v1`, `attnviz.contributions/v1`,
//! `attnviz.routes/v1` and `attnviz.patching/v1` (each with the model, mask and options header
//! every analysis file has).

use super::analyze::{Header, write_json};
use super::args::{AnalyzeArgs, AnalyzeWhat};
use super::{Source, Timings, load_model, ms_since, print_timings, run_input, run_options, worded};
use crate::analysis::answer::Target;
use crate::analysis::answer::routes::{Node, Stage};
use crate::io::TokenInput;
use crate::model::LoadedModel;
use crate::pipeline::answer::{self as answers, LensPositions};
use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use std::time::Instant;

/// The format tags.
pub const LENS_FORMAT: &str = "attnviz.logit_lens/v1";
/// See [`LENS_FORMAT`].
pub const CONTRIBUTIONS_FORMAT: &str = "attnviz.contributions/v1";
/// See [`LENS_FORMAT`].
pub const ROUTES_FORMAT: &str = "attnviz.routes/v1";
/// See [`LENS_FORMAT`].
pub const PATCHING_FORMAT: &str = "attnviz.patching/v1";

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

/// A target as the files record it: position, ids and vocabulary strings.
#[derive(Serialize)]
struct TargetRecord {
    position: usize,
    id: u32,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    foil_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    foil: Option<String>,
}

/// The vocabulary string of `id`.
fn token_text(model: &LoadedModel, id: u32) -> String {
    model
        .tokens(&TokenInput::Ids(vec![id]), None)
        .ok()
        .and_then(|t| t.into_iter().next())
        .map_or_else(|| id.to_string(), |t| t.text)
}

fn target_record(model: &LoadedModel, t: &Target) -> TargetRecord {
    TargetRecord {
        position: t.position,
        id: t.token,
        token: token_text(model, t.token),
        foil_id: t.foil,
        foil: t.foil.map(|f| token_text(model, f)),
    }
}

#[derive(Serialize)]
struct Candidate {
    id: u32,
    token: String,
    logprob: f32,
}

#[derive(Serialize)]
struct LensFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    layers: usize,
    positions: Vec<usize>,
    top: Vec<Vec<Vec<Candidate>>>,
    target: TargetRecord,
    target_logprob: Vec<f32>,
    target_rank: Vec<usize>,
}

#[derive(Serialize)]
struct ContributionsFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    target: TargetRecord,
    #[serde(flatten)]
    contributions: &'a crate::analysis::answer::contributions::Contributions,
}

#[derive(Serialize)]
struct NodeRecord {
    layer: usize,
    position: usize,
    stage: Stage,
}

impl From<Node> for NodeRecord {
    fn from(Node(layer, position, stage): Node) -> Self {
        Self {
            layer,
            position,
            stage,
        }
    }
}

#[derive(Serialize)]
struct RoutesFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    position: usize,
    threshold: f64,
    nodes: Vec<NodeRecord>,
    edges: &'a [crate::analysis::answer::routes::Edge],
}

#[derive(Serialize)]
struct PatchingFile<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    tokens_b: Vec<&'a str>,
    target: TargetRecord,
    metric_clean: f64,
    metric_corrupted: f64,
    site: crate::analysis::answer::patching::PatchSite,
    recovery: &'a [Vec<f64>],
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

/// Runs one of the answer analyses of `attnviz analyze`.
pub(super) fn analyze(what: AnswerWhat, args: &AnalyzeArgs) -> Result<()> {
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
    match what {
        AnswerWhat::Lens => {
            let positions = lens_positions(args.position.as_deref())?;
            if args.top == 0 {
                bail!("--top must be at least 1");
            }
            let report = answers::logit_lens(
                &model,
                &request,
                &opts,
                args.target.as_ref(),
                &positions,
                args.top,
                &mut progress,
            )
            .map_err(worded)?;
            write_lens(args, &model, &report)?;
        }
        AnswerWhat::Contributions => {
            let report = answers::contributions(
                &model,
                &request,
                &opts,
                args.target.as_ref(),
                &mut progress,
            )
            .map_err(worded)?;
            let file = ContributionsFile {
                header: Header::of(CONTRIBUTIONS_FORMAT, &report.run),
                target: target_record(&model, &report.target),
                contributions: &report.contributions,
            };
            write_json(&args.out, &file)?;
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
            let file = RoutesFile {
                header: Header::of(ROUTES_FORMAT, &run),
                position,
                threshold: args.threshold,
                nodes: routes.nodes.iter().map(|&n| n.into()).collect(),
                edges: &routes.edges,
            };
            write_json(&args.out, &file)?;
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
            let report = answers::patching(
                &model,
                &request,
                &corrupted,
                &opts,
                args.target.as_ref(),
                args.site,
                &mut progress,
            )
            .map_err(worded)?;
            let file = PatchingFile {
                header: Header::of(PATCHING_FORMAT, &report.clean),
                tokens_b: report
                    .corrupted
                    .tokens
                    .iter()
                    .map(|t| t.text.as_str())
                    .collect(),
                target: target_record(&model, &report.target),
                metric_clean: report.patching.metric_clean,
                metric_corrupted: report.patching.metric_corrupted,
                site: report.patching.site,
                recovery: &report.patching.recovery,
            };
            write_json(&args.out, &file)?;
        }
    }
    timings.forward_ms = ms_since(start);
    print_timings(common.timings, &timings);
    Ok(())
}

/// Writes the lens file.
fn write_lens(args: &AnalyzeArgs, model: &LoadedModel, report: &answers::LensReport) -> Result<()> {
    let file = LensFile {
        header: Header::of(LENS_FORMAT, &report.run),
        layers: report.lens.cells.len(),
        positions: report.lens.positions.clone(),
        top: report
            .lens
            .cells
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|cell| {
                        cell.top
                            .iter()
                            .map(|&(id, logprob)| Candidate {
                                id,
                                token: token_text(model, id),
                                logprob,
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect(),
        target: target_record(model, &report.target),
        target_logprob: report
            .at_target
            .iter()
            .map(|c| c.target_logprob.unwrap_or(f32::NAN))
            .collect(),
        target_rank: report
            .at_target
            .iter()
            .map(|c| c.target_rank.unwrap_or(0))
            .collect(),
    };
    write_json(&args.out, &file)
}
