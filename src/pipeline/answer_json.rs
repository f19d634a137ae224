//! The JSON documents of "where the answer forms": `attnviz.logit_lens/v1`,
//! `attnviz.contributions/v1`, `attnviz.routes/v1` and `attnviz.patching/v1`, each after the
//! header every analysis file starts with ([`Header`]: format, model, applied mask, options,
//! tokens). `attnviz analyze` and the app's Answer view export both build them here and write
//! them with [`write_document`], so the two files are the same bytes.
//!
//! Token ids are spelled as vocabulary strings (`Ġquick`, as every attnviz file records
//! tokens) by a function the caller passes: the CLI asks the model, the app the strings its
//! worker looked up ([`vocab_strings`]).

use super::Run;
use crate::analysis::answer::Target;
use crate::analysis::answer::contributions::Contributions;
use crate::analysis::answer::lens::LensCell;
use crate::analysis::answer::patching::{PatchSite, Patching};
use crate::analysis::answer::routes::{Edge, Node, Routes, Stage};
use crate::fs::IoError;
use crate::io::{ModelMeta, TokenInput};
use crate::model::LoadedModel;
use serde::Serialize;
use std::path::Path;

/// The format tag of the logit lens.
pub const LENS_FORMAT: &str = "attnviz.logit_lens/v1";
/// The format tag of direct contributions.
pub const CONTRIBUTIONS_FORMAT: &str = "attnviz.contributions/v1";
/// The format tag of the routes graph.
pub const ROUTES_FORMAT: &str = "attnviz.routes/v1";
/// The format tag of activation patching.
pub const PATCHING_FORMAT: &str = "attnviz.patching/v1";

/// What every analysis file starts with: its format, the model, the applied mask, the options
/// and the tokens (vocabulary strings).
#[derive(Serialize)]
pub struct Header<'a> {
    format: &'static str,
    model: &'a ModelMeta,
    mask: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<crate::engine::OptionsRecord>,
    tokens: Vec<&'a str>,
}

impl<'a> Header<'a> {
    /// The header of a `format` file about `run`.
    pub fn of(format: &'static str, run: &'a Run) -> Header<'a> {
        Header {
            format,
            model: &run.model,
            mask: run.mask.to_string(),
            options: run.options.as_ref().map(crate::engine::OptionsRecord::of),
            tokens: run.tokens.iter().map(|t| t.text.as_str()).collect(),
        }
    }
}

/// Writes `doc` as one line of JSON to `path`, atomically.
pub fn write_document(path: &Path, doc: &impl Serialize) -> Result<(), IoError> {
    crate::fs::write_atomic(path, |out| {
        serde_json::to_writer(&mut *out, doc).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    })
}

/// The vocabulary string of each of `ids` (sorted, without repeats), as the files spell
/// tokens; an id the model cannot spell is written as its number.
pub fn vocab_strings(
    model: &LoadedModel,
    ids: impl IntoIterator<Item = u32>,
) -> Vec<(u32, String)> {
    let mut ids: Vec<u32> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    match model.tokens(&TokenInput::Ids(ids.clone()), None) {
        Ok(tokens) if tokens.len() == ids.len() => ids
            .into_iter()
            .zip(tokens)
            .map(|(id, t)| (id, t.text))
            .collect(),
        _ => ids.into_iter().map(|id| (id, id.to_string())).collect(),
    }
}

/// A target as the files record it: position, ids and vocabulary strings.
#[derive(Serialize)]
pub struct TargetRecord {
    position: usize,
    id: u32,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    foil_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    foil: Option<String>,
}

impl TargetRecord {
    /// `t`, its tokens spelled by `token`.
    pub fn of(t: &Target, token: &dyn Fn(u32) -> String) -> Self {
        TargetRecord {
            position: t.position,
            id: t.token,
            token: token(t.token),
            foil_id: t.foil,
            foil: t.foil.map(token),
        }
    }
}

#[derive(Serialize)]
struct Candidate {
    id: u32,
    token: String,
    logprob: f32,
}

/// `attnviz.logit_lens/v1`.
#[derive(Serialize)]
pub struct LensDocument<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    layers: usize,
    positions: Vec<usize>,
    top: Vec<Vec<Vec<Candidate>>>,
    target: TargetRecord,
    target_logprob: Vec<f32>,
    target_rank: Vec<usize>,
}

/// The lens of `run` at `positions`: `cells[layer][i]` at `positions[i]`, and `at_target` the
/// cell of each layer at the target's position.
pub fn lens_document<'a>(
    run: &'a Run,
    target: &Target,
    positions: &[usize],
    cells: &[Vec<LensCell>],
    at_target: &[LensCell],
    token: &dyn Fn(u32) -> String,
) -> LensDocument<'a> {
    let top = cells
        .iter()
        .map(|layer| {
            layer
                .iter()
                .map(|cell| {
                    cell.top
                        .iter()
                        .map(|&(id, logprob)| Candidate {
                            id,
                            token: token(id),
                            logprob,
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    LensDocument {
        header: Header::of(LENS_FORMAT, run),
        layers: cells.len(),
        positions: positions.to_vec(),
        top,
        target: TargetRecord::of(target, token),
        target_logprob: at_target
            .iter()
            .map(|c| c.target_logprob.unwrap_or(f32::NAN))
            .collect(),
        target_rank: at_target
            .iter()
            .map(|c| c.target_rank.unwrap_or(0))
            .collect(),
    }
}

/// `attnviz.contributions/v1`.
#[derive(Serialize)]
pub struct ContributionsDocument<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    target: TargetRecord,
    #[serde(flatten)]
    contributions: &'a Contributions,
}

/// The direct contributions of `run`'s components to `target`.
pub fn contributions_document<'a>(
    run: &'a Run,
    target: &Target,
    contributions: &'a Contributions,
    token: &dyn Fn(u32) -> String,
) -> ContributionsDocument<'a> {
    ContributionsDocument {
        header: Header::of(CONTRIBUTIONS_FORMAT, run),
        target: TargetRecord::of(target, token),
        contributions,
    }
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

/// `attnviz.routes/v1`.
#[derive(Serialize)]
pub struct RoutesDocument<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    position: usize,
    threshold: f64,
    nodes: Vec<NodeRecord>,
    edges: &'a [Edge],
}

/// The routes of `run` to the output at `routes.position`.
pub fn routes_document<'a>(run: &'a Run, routes: &'a Routes) -> RoutesDocument<'a> {
    RoutesDocument {
        header: Header::of(ROUTES_FORMAT, run),
        position: routes.position,
        threshold: routes.threshold,
        nodes: routes.nodes.iter().map(|&n| n.into()).collect(),
        edges: &routes.edges,
    }
}

/// `attnviz.patching/v1`.
#[derive(Serialize)]
pub struct PatchingDocument<'a> {
    #[serde(flatten)]
    header: Header<'a>,
    tokens_b: &'a [String],
    target: TargetRecord,
    metric_clean: f64,
    metric_corrupted: f64,
    site: PatchSite,
    recovery: &'a [Vec<f64>],
}

/// Patching of the clean run `clean` into the corrupted input of tokens `tokens_b`
/// (vocabulary strings).
pub fn patching_document<'a>(
    clean: &'a Run,
    tokens_b: &'a [String],
    target: &Target,
    patching: &'a Patching,
    token: &dyn Fn(u32) -> String,
) -> PatchingDocument<'a> {
    PatchingDocument {
        header: Header::of(PATCHING_FORMAT, clean),
        tokens_b,
        target: TargetRecord::of(target, token),
        metric_clean: patching.metric_clean,
        metric_corrupted: patching.metric_corrupted,
        site: patching.site,
        recovery: &patching.recovery,
    }
}
