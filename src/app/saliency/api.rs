//! The attribution API the Saliency view uses, in one place: `analysis::attribution`'s types,
//! ranks and serializers, and the pipeline entry shared with `attnviz attribute`.

pub use crate::analysis::attribution::{
    Aggregate, AttributeRequest, Attribution, Baseline, Generated, Method, Occlude,
    rank_correlation, to_csv, to_json,
};

pub use crate::pipeline::{attribute, supported_targets};
