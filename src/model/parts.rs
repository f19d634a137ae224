//! The parts of a checkpoint outside the engine's [`Transformer`](crate::engine::Transformer):
//! the embeddings and the next-token head. The per-family loaders (`loaders`) build them and
//! the [`Checkpoint`](super::Checkpoint) holds them, so they sit below both.

use crate::engine::Norm;
use ndarray::{Array1, Array2};

/// How token ids become vectors.
pub(super) struct Embeddings {
    /// Shape: [vocab, d_model].
    pub(super) word: Array2<f32>,
    /// Learned absolute positions (BERT, GPT-2). Shape: [max_positions, d_model].
    pub(super) position: Option<Array2<f32>>,
    /// BERT's segment-0 embedding, added to every token. Shape: [d_model].
    pub(super) segment: Option<Array1<f32>>,
    /// BERT's LayerNorm over the summed embeddings.
    pub(super) norm: Option<Norm>,
}

/// The next-token head's weights.
pub(super) enum HeadWeight {
    /// The input embedding matrix (`Embeddings::word`), shared.
    Tied,
    /// A matrix of its own (`lm_head.weight`). Shape: [vocab, d_model].
    Own(Array2<f32>),
}

/// A checkpoint's LM head: logits = final hidden state · Wᵀ.
pub(super) struct LmHead {
    pub(super) weight: HeadWeight,
    /// The tensor it came from, for messages and `info`.
    pub(super) tensor: String,
}
