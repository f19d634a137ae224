//! GPT-2, following transformers' `models/gpt2/modeling_gpt2.py`: learned positions, pre-LN
//! blocks, tanh GELU, a final `ln_f`. Its `Conv1D` weights are stored [in, out], already the
//! engine's layout, so they are used as they are (no transpose).
//!
//! Source: <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/gpt2/modeling_gpt2.py>

use super::{Vb, layer_norm};
use crate::engine::{
    Activation, AttentionPosition, Block, Mlp, NormPlacement, SelfAttention, TransformerParts,
};
use crate::model::config::ModelConfig;
use crate::model::parts::Embeddings;
use crate::model::weights::{LoadError, WeightFile};
use ndarray::s;

/// `class GPT2Model` (`transformer.` prefix or none): wte, wpe, the blocks `h.N`, ln_f.
pub(in crate::model) fn load(
    w: &WeightFile,
    c: &ModelConfig,
) -> Result<(Embeddings, TransformerParts), LoadError> {
    let vb = Vb::root(w).first_with("wte.weight", &["transformer"]);
    let d = c.d_model;
    let embeddings = Embeddings {
        word: vb.matrix("wte.weight", c.vocab, d)?,
        position: Some(vb.matrix("wpe.weight", c.max_positions, d)?),
        segment: None,
        norm: None,
    };
    let blocks = (0..c.layers)
        .map(|i| Gpt2Block::load(&vb.pp("h").pp(i), c))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = TransformerParts {
        d_model: d,
        heads: c.heads,
        kv_heads: c.heads,
        d_head: c.d_head,
        placement: NormPlacement::Pre,
        position: AttentionPosition::None,
        causal: true,
        sliding_window: None,
        blocks,
        final_norm: Some(layer_norm(&vb.pp("ln_f"), d, c.norm_eps)?),
    };
    Ok((embeddings, parts))
}

/// `class GPT2Block`: ln_1, GPT2Attention, ln_2, GPT2MLP.
struct Gpt2Block;

impl Gpt2Block {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Block, LoadError> {
        let d = c.d_model;
        Ok(Block {
            attention: Gpt2Attention::load(&vb.pp("attn"), c)?,
            mlp: Gpt2Mlp::load(&vb.pp("mlp"), c)?,
            attention_norm: layer_norm(&vb.pp("ln_1"), d, c.norm_eps)?,
            mlp_norm: layer_norm(&vb.pp("ln_2"), d, c.norm_eps)?,
        })
    }
}

/// `class GPT2Attention`: `c_attn` holds q, k and v side by side ([d, 3d]); `c_proj` is the
/// output projection.
struct Gpt2Attention;

impl Gpt2Attention {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<SelfAttention, LoadError> {
        let d = c.d_model;
        let c_attn = vb.matrix("c_attn.weight", d, 3 * d)?;
        let c_attn_b = vb.vector("c_attn.bias", 3 * d)?;
        let third = |k: usize| c_attn.slice(s![.., k * d..(k + 1) * d]).to_owned();
        let third_b = |k: usize| Some(c_attn_b.slice(s![k * d..(k + 1) * d]).to_owned());
        Ok(SelfAttention {
            wq: third(0),
            bq: third_b(0),
            wk: third(1),
            bk: third_b(1),
            wv: third(2),
            bv: third_b(2),
            wo: vb.matrix("c_proj.weight", d, d)?,
            bo: Some(vb.vector("c_proj.bias", d)?),
        })
    }
}

/// `class GPT2MLP`: c_fc, tanh GELU (`gelu_new`), c_proj.
struct Gpt2Mlp;

impl Gpt2Mlp {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Mlp, LoadError> {
        let d = c.d_model;
        Ok(Mlp {
            w_in: vb.matrix("c_fc.weight", d, c.d_ff)?,
            b_in: Some(vb.vector("c_fc.bias", c.d_ff)?),
            w_gate: None,
            w_out: vb.matrix("c_proj.weight", c.d_ff, d)?,
            b_out: Some(vb.vector("c_proj.bias", d)?),
            activation: Activation::GeluTanh,
        })
    }
}
