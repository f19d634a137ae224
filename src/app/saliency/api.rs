//! The attribution API the Saliency view uses, in one place: `analysis::attribution`'s types,
//! ranks and serializers, and the pipeline entry shared with `attnviz attribute`.

pub use crate::analysis::attribution::{
    Aggregate, AttributeRequest, Attribution, Baseline, Generated, Method, Occlude,
    rank_correlation, to_csv, to_json,
};

pub use crate::pipeline::{attribute, supported_targets};

// TEMPORARY until ATTR's render::saliency lands.
#[allow(missing_docs)]
pub fn saliency_figure(_a: &Attribution) -> Result<image::RgbaImage, String> {
    Err("not merged".into())
}
#[allow(missing_docs)]
pub fn saliency_svg(_a: &Attribution) -> Result<String, String> {
    Err("not merged".into())
}
