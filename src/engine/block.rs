//! One transformer block's weights, as the model gives them ([`Block`]) and as the kernels use
//! them: packed for the forward products ([`PackedBlock`]) and transposed and packed for the
//! backward ones ([`TransposedBlock`]).
//!
//! The transformer packs and keeps both forms (the transposes on first use, shared by clones);
//! the forward pass, value zeroing and the backward pass read them. Holding them here, below
//! all three, keeps the transformer from importing the backward pass that imports it.

use super::attention::{PackedAttention, SelfAttention};
use super::gemm::PackedMatrix;
use super::layers::{Mlp, Norm, PackedMlp};
use ndarray::{Array2, Axis};

/// One transformer block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The attention sublayer.
    pub attention: SelfAttention,
    /// The feed-forward sublayer.
    pub mlp: Mlp,
    /// The norm around the attention sublayer (unused with [`NormPlacement::None`]).
    ///
    /// [`NormPlacement::None`]: super::NormPlacement::None
    pub attention_norm: Norm,
    /// The norm around the MLP sublayer (unused with [`NormPlacement::None`]).
    ///
    /// [`NormPlacement::None`]: super::NormPlacement::None
    pub mlp_norm: Norm,
}

/// One block's weight matrices, packed.
pub(super) struct PackedBlock {
    pub(super) attention: PackedAttention,
    pub(super) mlp: PackedMlp,
}

impl PackedBlock {
    pub(super) fn new(block: &Block) -> Self {
        Self {
            attention: PackedAttention::new(&block.attention),
            mlp: PackedMlp::new(&block.mlp),
        }
    }
}

/// One block's weights transposed and packed: the right operands of the backward products.
pub(super) struct TransposedBlock {
    /// [wq | wk | wv]ᵀ: [(heads + 2 · kv_heads) · d_head, d_model].
    pub(super) qkv: PackedMatrix,
    /// woᵀ: [d_model, heads · d_head].
    pub(super) wo: PackedMatrix,
    /// w_outᵀ: [d_model, d_ff].
    pub(super) w_out: PackedMatrix,
    /// w_inᵀ ([d_ff, d_model]), or [w_in | w_gate]ᵀ ([2 · d_ff, d_model]) for a gated MLP.
    pub(super) w_in_gate: PackedMatrix,
}

impl TransposedBlock {
    pub(super) fn new(block: &Block) -> Self {
        let a = &block.attention;
        let qkv = ndarray::concatenate(Axis(1), &[a.wq.view(), a.wk.view(), a.wv.view()])
            .unwrap_or_else(|_| Array2::zeros((0, 0)));
        let m = &block.mlp;
        let w_in_gate = match &m.w_gate {
            Some(g) => PackedMatrix::pack_transposed(
                ndarray::concatenate(Axis(1), &[m.w_in.view(), g.view()])
                    .unwrap_or_else(|_| Array2::zeros((0, 0)))
                    .view(),
            ),
            None => PackedMatrix::pack_transposed(m.w_in.view()),
        };
        Self {
            qkv: PackedMatrix::pack_transposed(qkv.view()),
            wo: PackedMatrix::pack_transposed(a.wo.view()),
            w_out: PackedMatrix::pack_transposed(m.w_out.view()),
            w_in_gate,
        }
    }
}
