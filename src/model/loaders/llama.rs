//! The Llama family (Llama 2/3, Mistral, Qwen-style biases), following transformers'
//! `models/llama/modeling_llama.py`: RMSNorm, rotate-half RoPE, grouped-query attention and a
//! SiLU-gated MLP, `down(silu(gate(x)) * up(x))`.
//!
//! Source: <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/llama/modeling_llama.py>

use super::{Vb, rms_norm};
use crate::engine::{
    Activation, AttentionPosition, Block, Mlp, NormPlacement, SelfAttention, TransformerParts,
};
use crate::model::config::ModelConfig;
use crate::model::parts::Embeddings;
use crate::model::weights::{LoadError, WeightFile};

/// `class LlamaModel` (`model.` prefix or none): embed_tokens, the decoder layers, norm.
pub(in crate::model) fn load(
    w: &WeightFile,
    c: &ModelConfig,
) -> Result<(Embeddings, TransformerParts), LoadError> {
    let vb = Vb::root(w).first_with("embed_tokens.weight", &["model"]);
    let d = c.d_model;
    let embeddings = Embeddings {
        word: vb.matrix("embed_tokens.weight", c.vocab, d)?,
        position: None,
        segment: None,
        norm: None,
    };
    let blocks = (0..c.layers)
        .map(|i| LlamaDecoderLayer::load(&vb.pp("layers").pp(i), c))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = TransformerParts {
        d_model: d,
        heads: c.heads,
        kv_heads: c.kv_heads,
        d_head: c.d_head,
        placement: NormPlacement::Pre,
        position: match c.rope_llama3 {
            Some(scaling) => AttentionPosition::RopeLlama3 {
                theta: c.rope_theta,
                scaling,
            },
            None => AttentionPosition::Rope {
                theta: c.rope_theta,
            },
        },
        causal: true,
        sliding_window: c.sliding_window,
        blocks,
        final_norm: Some(rms_norm(&vb.pp("norm"), d, c.norm_eps)?),
    };
    Ok((embeddings, parts))
}

/// `class LlamaDecoderLayer`: input_layernorm, LlamaAttention, post_attention_layernorm,
/// LlamaMLP.
struct LlamaDecoderLayer;

impl LlamaDecoderLayer {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Block, LoadError> {
        let d = c.d_model;
        Ok(Block {
            attention: LlamaAttention::load(&vb.pp("self_attn"), c)?,
            mlp: LlamaMlp::load(&vb.pp("mlp"), c)?,
            attention_norm: rms_norm(&vb.pp("input_layernorm"), d, c.norm_eps)?,
            mlp_norm: rms_norm(&vb.pp("post_attention_layernorm"), d, c.norm_eps)?,
        })
    }
}

/// `class LlamaAttention`: q/k/v/o projections, with biases on q, k and v only when
/// `attention_bias` is set; k and v have `kv_heads` heads.
struct LlamaAttention;

impl LlamaAttention {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<SelfAttention, LoadError> {
        let d = c.d_model;
        let (q_out, kv_out) = (c.heads * c.d_head, c.kv_heads * c.d_head);
        let bias = |proj: &Vb<'_>, len: usize| {
            if c.attention_bias {
                proj.bias(len)
            } else {
                Ok(None)
            }
        };
        let (q, k, v) = (vb.pp("q_proj"), vb.pp("k_proj"), vb.pp("v_proj"));
        Ok(SelfAttention {
            wq: q.linear_weight(d, q_out)?,
            bq: bias(&q, q_out)?,
            wk: k.linear_weight(d, kv_out)?,
            bk: bias(&k, kv_out)?,
            wv: v.linear_weight(d, kv_out)?,
            bv: bias(&v, kv_out)?,
            wo: vb.pp("o_proj").linear_weight(q_out, d)?,
            bo: None,
        })
    }
}

/// `class LlamaMLP`: gate_proj, up_proj, down_proj, SiLU on the gate.
struct LlamaMlp;

impl LlamaMlp {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Mlp, LoadError> {
        let d = c.d_model;
        Ok(Mlp {
            w_in: vb.pp("up_proj").linear_weight(d, c.d_ff)?,
            b_in: None,
            w_gate: Some(vb.pp("gate_proj").linear_weight(d, c.d_ff)?),
            w_out: vb.pp("down_proj").linear_weight(c.d_ff, d)?,
            b_out: None,
            activation: Activation::Silu,
        })
    }
}
