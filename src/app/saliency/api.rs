//! TEMPORARY stand-in for `analysis::attribution` and `pipeline::attribute` (helper ATTR),
//! written from SHARED_API.md so the view compiles before the merge; replaced by re-exports.

#![allow(missing_docs, dead_code)]

use crate::engine::RunOptions;
use crate::grad::{ResolvedTarget, TargetSpec};
use crate::pipeline::{LoadedModel, PipelineError, RunInput};
use crate::tokenize::Token;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Gradient,
    InputXGradient,
    IntegratedGradients,
    AttentionGradient,
    Occlusion,
    Attention,
    Rollout,
}
impl Method {
    pub const ALL: [Method; 7] = [
        Method::Gradient,
        Method::InputXGradient,
        Method::IntegratedGradients,
        Method::AttentionGradient,
        Method::Occlusion,
        Method::Attention,
        Method::Rollout,
    ];
    pub fn is_signed(self) -> bool {
        matches!(
            self,
            Method::InputXGradient | Method::IntegratedGradients | Method::Occlusion
        )
    }
}
impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Gradient => "gradient",
            Method::InputXGradient => "input-x-gradient",
            Method::IntegratedGradients => "integrated-gradients",
            Method::AttentionGradient => "attention-gradient",
            Method::Occlusion => "occlusion",
            Method::Attention => "attention",
            Method::Rollout => "rollout",
        })
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    Zero,
    Pad,
    Mask,
}
impl std::fmt::Display for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", format!("{self:?}").to_lowercase())
    }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Occlude {
    Mask,
    Unk,
    Remove,
}
impl std::fmt::Display for Occlude {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", format!("{self:?}").to_lowercase())
    }
}
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aggregate {
    #[default]
    Token,
    Word,
}
impl std::fmt::Display for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", format!("{self:?}").to_lowercase())
    }
}
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeRequest {
    pub method: Method,
    pub target: TargetSpec,
    pub text_b: Option<String>,
    pub steps: Option<usize>,
    pub baseline: Option<Baseline>,
    pub occlude: Option<Occlude>,
    pub aggregate: Aggregate,
    pub generate: Option<usize>,
}
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub tokens: Vec<Token>,
    pub method: Method,
    pub target: ResolvedTarget,
    pub steps: Option<usize>,
    pub baseline: Option<Baseline>,
    pub completeness_gap: Option<f64>,
    pub scores: Vec<f32>,
    pub labels: Vec<String>,
    pub generated: Option<Generated>,
}
#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub from: usize,
    pub targets: Vec<ResolvedTarget>,
    pub scores: Vec<Vec<Option<f32>>>,
}
pub fn rank_correlation(_a: &[f32], _b: &[f32]) -> Option<f64> {
    None
}
pub fn attribute(
    _model: &LoadedModel,
    _input: &RunInput,
    _opts: &RunOptions,
    _req: &AttributeRequest,
    _progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Attribution, PipelineError> {
    Err(PipelineError::Cancelled)
}
pub fn to_json(
    _a: &Attribution,
    _meta: &crate::io::ModelMeta,
    _mask: &str,
) -> Result<String, String> {
    Err("not merged".into())
}
pub fn to_csv(_a: &Attribution) -> String {
    String::new()
}
pub fn saliency_figure(_a: &Attribution) -> Result<image::RgbaImage, String> {
    Err("not merged".into())
}
pub fn saliency_svg(_a: &Attribution) -> Result<String, String> {
    Err("not merged".into())
}
