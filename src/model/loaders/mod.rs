//! Weight loading per Hugging Face model family, written to read like candle's models: one
//! `load` per `transformers` module (`BertEmbeddings::load`, `BertLayer::load`, ...), each
//! taking a [`Vb`] that already points at the module's weight names.
//!
//! Every loader checks each tensor's shape against the validated config and converts weights
//! to the engine's [in, out] layout once; the engine's [`Transformer::new`] then checks that the
//! parts fit together.
//!
//! [`Transformer::new`]: crate::engine::Transformer::new

pub(super) mod bert;
pub(super) mod gpt2;
pub(super) mod llama;

use super::config::{Family, ModelConfig};
use super::parts::{HeadWeight, LmHead};
use super::weights::{LoadError, WeightFile};
use crate::engine::Norm;
use ndarray::{Array1, Array2};

/// The weight file seen under a name prefix, like candle's `VarBuilder`: [`Vb::pp`] goes one
/// module deeper (`vb.pp("encoder").pp("layer").pp(3)` names `encoder.layer.3.*`).
#[derive(Clone)]
pub(super) struct Vb<'a> {
    file: &'a WeightFile,
    /// Dotted path of the current module; empty at the root.
    prefix: String,
}

impl<'a> Vb<'a> {
    /// The root of `file`: names are used as they are.
    pub(super) fn root(file: &'a WeightFile) -> Self {
        Self {
            file,
            prefix: String::new(),
        }
    }

    /// The submodule `name` of this one.
    pub(super) fn pp(&self, name: impl std::fmt::Display) -> Self {
        Self {
            file: self.file,
            prefix: self.name(&name.to_string()),
        }
    }

    /// The full name of `leaf` in this module.
    pub(super) fn name(&self, leaf: &str) -> String {
        match (self.prefix.is_empty(), leaf.is_empty()) {
            (true, _) => leaf.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}.{leaf}", self.prefix),
        }
    }

    /// The first of `prefixes` under which `probe` exists (checkpoints saved from a task model
    /// carry `bert.` or `model.`, bare ones do not); the root when none does.
    pub(super) fn first_with(&self, probe: &str, prefixes: &[&str]) -> Self {
        prefixes
            .iter()
            .map(|p| self.pp(p))
            .find(|vb| vb.contains(probe))
            .unwrap_or_else(|| self.clone())
    }

    /// True when `leaf` exists in this module.
    pub(super) fn contains(&self, leaf: &str) -> bool {
        self.file.contains(&self.name(leaf))
    }

    /// A 1-D tensor of length `len`.
    pub(super) fn vector(&self, leaf: &str, len: usize) -> Result<Array1<f32>, LoadError> {
        self.file.vector(&self.name(leaf), len)
    }

    /// A 2-D tensor stored [rows, cols], used as it is.
    pub(super) fn matrix(
        &self,
        leaf: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Array2<f32>, LoadError> {
        self.file.matrix(&self.name(leaf), rows, cols)
    }

    /// This module as an `nn.Linear(d_in, d_out)`: its `weight` (stored [out, in]) transposed
    /// to the engine's [in, out].
    pub(super) fn linear_weight(
        &self,
        d_in: usize,
        d_out: usize,
    ) -> Result<Array2<f32>, LoadError> {
        self.file.linear(&self.name("weight"), d_in, d_out)
    }

    /// This module's `bias` of length `len`.
    pub(super) fn bias(&self, len: usize) -> Result<Option<Array1<f32>>, LoadError> {
        self.vector("bias", len).map(Some)
    }
}

/// This module as an `nn.LayerNorm(d)`: `weight` and `bias`.
pub(super) fn layer_norm(vb: &Vb<'_>, d: usize, eps: f32) -> Result<Norm, LoadError> {
    Ok(Norm::LayerNorm {
        gamma: vb.vector("weight", d)?,
        beta: vb.vector("bias", d)?,
        eps,
    })
}

/// This module as an RMSNorm of width `d`: `weight` only.
pub(super) fn rms_norm(vb: &Vb<'_>, d: usize, eps: f32) -> Result<Norm, LoadError> {
    Ok(Norm::RmsNorm {
        gamma: vb.vector("weight", d)?,
        eps,
    })
}

/// The LM head as transformers' `*ForCausalLM` / `GPT2LMHeadModel` would load it from this
/// checkpoint: its own `lm_head.weight` when present (transformers does not tie a head that the
/// file holds with different values), else the input embedding when `tie_word_embeddings`,
/// else none. BERT's masked-LM head (`cls.predictions.*`) is not a next-token head: none.
// https://github.com/huggingface/transformers/blob/v4.46.0/src/transformers/modeling_utils.py
// (PreTrainedModel.tie_weights); modeling_llama.py LlamaForCausalLM
// (`lm_head = nn.Linear(hidden_size, vocab_size, bias=False)`); modeling_gpt2.py
// GPT2LMHeadModel (`_tied_weights_keys = ["lm_head.weight"]`, tied to `transformer.wte.weight`).
pub(super) fn load_lm_head(w: &WeightFile, c: &ModelConfig) -> Result<Option<LmHead>, LoadError> {
    let root = Vb::root(w);
    let embedding = match c.family {
        Family::Bert => return Ok(None),
        Family::Gpt2 => root
            .first_with("wte.weight", &["transformer"])
            .name("wte.weight"),
        Family::Llama => root
            .first_with("embed_tokens.weight", &["model"])
            .name("embed_tokens.weight"),
    };
    let own = root.pp("lm_head");
    if own.contains("weight") {
        // nn.Linear(d_model, vocab): stored [out, in] = [vocab, d_model], used as it is.
        return Ok(Some(LmHead {
            weight: HeadWeight::Own(own.matrix("weight", c.vocab, c.d_model)?),
            tensor: own.name("weight"),
        }));
    }
    Ok(c.tie_word_embeddings.then_some(LmHead {
        weight: HeadWeight::Tied,
        tensor: embedding,
    }))
}
