//! BERT, following transformers' `models/bert/modeling_bert.py`: learned positions and one
//! segment embedding summed and LayerNormed, post-LN blocks, erf GELU.
//!
//! Source: <https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/models/bert/modeling_bert.py>

use super::{Vb, layer_norm};
use crate::engine::{
    Activation, AttentionPosition, Block, Mlp, NormPlacement, SelfAttention, TransformerParts,
};
use crate::model::config::ModelConfig;
use crate::model::lm_head::MlmHead;
use crate::model::parts::Embeddings;
use crate::model::weights::{LoadError, WeightFile};

/// A BERT checkpoint's embeddings and blocks (`bert.` prefix or none).
pub(in crate::model) fn load(
    w: &WeightFile,
    c: &ModelConfig,
) -> Result<(Embeddings, TransformerParts), LoadError> {
    let vb = Vb::root(w).first_with("embeddings.word_embeddings.weight", &["bert"]);
    let embeddings = BertEmbeddings::load(&vb.pp("embeddings"), c)?;
    let layers = vb.pp("encoder").pp("layer");
    let blocks = (0..c.layers)
        .map(|i| BertLayer::load(&layers.pp(i), c))
        .collect::<Result<Vec<_>, _>>()?;
    let parts = TransformerParts {
        d_model: c.d_model,
        heads: c.heads,
        kv_heads: c.heads,
        d_head: c.d_head,
        placement: NormPlacement::Post,
        position: AttentionPosition::None,
        causal: false,
        sliding_window: None,
        blocks,
        final_norm: None,
    };
    Ok((embeddings, parts))
}

/// `class BertEmbeddings`: word + position + token type (segment 0 for every token), then
/// LayerNorm.
struct BertEmbeddings;

impl BertEmbeddings {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Embeddings, LoadError> {
        let d = c.d_model;
        Ok(Embeddings {
            word: vb.matrix("word_embeddings.weight", c.vocab, d)?,
            position: Some(vb.matrix("position_embeddings.weight", c.max_positions, d)?),
            segment: Some(
                vb.matrix("token_type_embeddings.weight", c.type_vocab, d)?
                    .row(0)
                    .to_owned(),
            ),
            norm: Some(layer_norm(&vb.pp("LayerNorm"), d, c.norm_eps)?),
        })
    }
}

/// `class BertLayer`: BertAttention (BertSelfAttention + BertSelfOutput, whose LayerNorm
/// follows the residual add: post-LN), BertIntermediate (dense + erf GELU) and BertOutput
/// (dense, residual, LayerNorm).
struct BertLayer;

impl BertLayer {
    fn load(vb: &Vb<'_>, c: &ModelConfig) -> Result<Block, LoadError> {
        let d = c.d_model;
        let inner = c.heads * c.d_head;
        let attn = vb.pp("attention").pp("self");
        let (q, k, v) = (attn.pp("query"), attn.pp("key"), attn.pp("value"));
        let self_output = vb.pp("attention").pp("output");
        let out = self_output.pp("dense");
        let intermediate = vb.pp("intermediate").pp("dense");
        let output = vb.pp("output");
        Ok(Block {
            attention: SelfAttention {
                wq: q.linear_weight(d, inner)?,
                bq: q.bias(inner)?,
                wk: k.linear_weight(d, inner)?,
                bk: k.bias(inner)?,
                wv: v.linear_weight(d, inner)?,
                bv: v.bias(inner)?,
                wo: out.linear_weight(inner, d)?,
                bo: out.bias(d)?,
            },
            mlp: Mlp {
                w_in: intermediate.linear_weight(d, c.d_ff)?,
                b_in: intermediate.bias(c.d_ff)?,
                w_gate: None,
                w_out: output.pp("dense").linear_weight(c.d_ff, d)?,
                b_out: output.pp("dense").bias(d)?,
                activation: Activation::Gelu,
            },
            attention_norm: layer_norm(&self_output.pp("LayerNorm"), d, c.norm_eps)?,
            mlp_norm: layer_norm(&output.pp("LayerNorm"), d, c.norm_eps)?,
        })
    }
}

/// `class BertOnlyMLMHead` (`cls.predictions.*`), when the checkpoint holds it (a
/// `BertForMaskedLM`; MiniLM and other encoders do not). The decoder is tied to the word
/// embeddings, as transformers ties it; its bias is `cls.predictions.bias` (or the
/// `decoder.bias` some checkpoints store instead).
pub(in crate::model) fn load_mlm_head(
    w: &WeightFile,
    c: &ModelConfig,
) -> Result<Option<MlmHead>, LoadError> {
    let vb = Vb::root(w).pp("cls").pp("predictions");
    if !vb.contains("transform.dense.weight") {
        return Ok(None);
    }
    let d = c.d_model;
    let dense = vb.pp("transform").pp("dense");
    let bias = if vb.contains("bias") {
        vb.vector("bias", c.vocab)?
    } else {
        vb.pp("decoder").vector("bias", c.vocab)?
    };
    Ok(Some(MlmHead {
        dense: dense.linear_weight(d, d)?,
        dense_bias: dense.vector("bias", d)?,
        norm: layer_norm(&vb.pp("transform").pp("LayerNorm"), d, c.norm_eps)?,
        bias,
    }))
}
