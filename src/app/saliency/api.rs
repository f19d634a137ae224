//! The attribution API the Saliency view uses, in one place: `analysis::attribution`'s types,
//! ranks and serializers, and the pipeline entry shared with `attnviz attribute`.

pub use crate::analysis::attribution::{
    Aggregate, AttributeRequest, Attribution, Baseline, Generated, Method, Occlude,
    rank_correlation, to_csv, to_json,
};

// TEMPORARY until ATTR's pipeline::attribute and render::saliency land.
#[allow(missing_docs)]
pub fn attribute(
    _model: &crate::pipeline::LoadedModel,
    _input: &crate::pipeline::RunInput,
    _opts: &crate::engine::RunOptions,
    _req: &AttributeRequest,
    _progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Attribution, crate::pipeline::PipelineError> {
    Err(crate::pipeline::PipelineError::Cancelled)
}
#[allow(missing_docs)]
pub fn saliency_figure(_a: &Attribution) -> Result<image::RgbaImage, String> {
    Err("not merged".into())
}
#[allow(missing_docs)]
pub fn saliency_svg(_a: &Attribution) -> Result<String, String> {
    Err("not merged".into())
}
