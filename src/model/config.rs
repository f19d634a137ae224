//! `config.json` of a Hugging Face checkpoint: a raw serde mirror with the field names of every
//! family, turned into a validated [`ModelConfig`] by [`RawConfig::into_config`].

use super::weights::LoadError;
use serde::Deserialize;
use std::path::Path;

/// The architectures attnviz can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// BERT and its heads (`BertModel`, `BertFor*`).
    Bert,
    /// GPT-2.
    Gpt2,
    /// Llama and families with the same shape (Mistral, Qwen2, SmolLM).
    Llama,
}

impl Family {
    /// The `architecture` string of attention files.
    pub fn name(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Gpt2 => "gpt2",
            Family::Llama => "llama",
        }
    }
}

/// `rope_parameters` (newer transformers) or `rope_scaling`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RawRope {
    /// The RoPE base.
    pub rope_theta: Option<f64>,
    /// `default`, `llama3`, …
    pub rope_type: Option<String>,
    /// Llama 3 scaling: divisor of low frequencies.
    pub factor: Option<f64>,
    /// Llama 3 scaling: low-frequency boundary factor.
    pub low_freq_factor: Option<f64>,
    /// Llama 3 scaling: high-frequency boundary factor.
    pub high_freq_factor: Option<f64>,
    /// Llama 3 scaling: the pre-training context length.
    pub original_max_position_embeddings: Option<f64>,
}

/// config.json as written, with every family's spelling.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    /// `bert`, `gpt2`, `llama`, `mistral`, `qwen2`, …
    pub model_type: Option<String>,
    /// hidden_size aka n_embd.
    pub hidden_size: Option<usize>,
    /// GPT-2's name for hidden_size.
    pub n_embd: Option<usize>,
    /// num_hidden_layers aka n_layer.
    pub num_hidden_layers: Option<usize>,
    /// GPT-2's name for num_hidden_layers.
    pub n_layer: Option<usize>,
    /// num_attention_heads aka n_head.
    pub num_attention_heads: Option<usize>,
    /// GPT-2's name for num_attention_heads.
    pub n_head: Option<usize>,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: Option<usize>,
    /// An explicit head width (some Llama-family models).
    pub head_dim: Option<usize>,
    /// intermediate_size aka n_inner.
    pub intermediate_size: Option<usize>,
    /// GPT-2's name for intermediate_size (null means 4·n_embd).
    pub n_inner: Option<usize>,
    /// max_position_embeddings aka n_positions.
    pub max_position_embeddings: Option<usize>,
    /// GPT-2's name for max_position_embeddings.
    pub n_positions: Option<usize>,
    /// Vocabulary size.
    pub vocab_size: Option<usize>,
    /// BERT's segment vocabulary.
    pub type_vocab_size: Option<usize>,
    /// BERT's LayerNorm epsilon.
    pub layer_norm_eps: Option<f64>,
    /// GPT-2's LayerNorm epsilon.
    pub layer_norm_epsilon: Option<f64>,
    /// Llama's RMSNorm epsilon.
    pub rms_norm_eps: Option<f64>,
    /// BERT/Llama activation name.
    pub hidden_act: Option<String>,
    /// GPT-2 activation name.
    pub activation_function: Option<String>,
    /// Top-level RoPE base (older configs).
    pub rope_theta: Option<f64>,
    /// RoPE settings (newer configs).
    pub rope_parameters: Option<RawRope>,
    /// RoPE scaling (older configs; null or a dict).
    pub rope_scaling: Option<RawRope>,
    /// q/k/v biases in Llama-family models (Qwen2 has them).
    pub attention_bias: Option<bool>,
    /// Whether the output head shares the input embedding matrix. Defaults differ by family
    /// (transformers' config classes): true for BERT and GPT-2, false for Llama, Mistral, Qwen2.
    pub tie_word_embeddings: Option<bool>,
    /// Mistral's sliding attention window (null or absent: none).
    pub sliding_window: Option<usize>,
    /// Qwen2's switch for its (per-layer) sliding window.
    pub use_sliding_window: Option<bool>,
    /// Stored dtype (older name).
    pub torch_dtype: Option<String>,
    /// Stored dtype (newer name).
    pub dtype: Option<String>,
}

/// A validated config: every size present and consistent.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    /// The architecture.
    pub family: Family,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head width.
    pub d_head: usize,
    /// MLP width.
    pub d_ff: usize,
    /// Longest input.
    pub max_positions: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Segment vocabulary (BERT).
    pub type_vocab: usize,
    /// Norm epsilon.
    pub norm_eps: f32,
    /// RoPE base (Llama).
    pub rope_theta: f32,
    /// Llama 3 frequency scaling, when the config asks for it.
    pub rope_llama3: Option<crate::engine::Llama3Scaling>,
    /// q/k/v biases (Llama family).
    pub attention_bias: bool,
    /// The LM head is the input embedding matrix when the checkpoint has no head of its own.
    pub tie_word_embeddings: bool,
    /// Each query attends to at most this many keys, itself included (Mistral's
    /// `sliding_window`).
    pub sliding_window: Option<usize>,
    /// Stored dtype, for display.
    pub dtype: String,
}

/// Sizes beyond these are treated as corrupt configs, before anything is allocated.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 512;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 20;

impl RawConfig {
    /// Reads and parses `config.json` in `dir`.
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).map_err(|cause| LoadError::Read {
            path: path.clone(),
            cause,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| LoadError::Config {
            path,
            reason: format!("malformed config.json ({e})"),
        })
    }

    /// Checks and completes the config. `path` is only for messages.
    pub fn into_config(self, path: &Path) -> Result<ModelConfig, LoadError> {
        let err = |reason: String| LoadError::Config {
            path: path.to_owned(),
            reason,
        };
        let model_type = self.model_type.clone().unwrap_or_default();
        let family = match model_type.as_str() {
            "bert" => Family::Bert,
            "gpt2" => Family::Gpt2,
            "llama" | "mistral" | "qwen2" => Family::Llama,
            other => {
                return Err(err(format!(
                    "unsupported model_type {other:?}; supported: bert, gpt2, llama, mistral, qwen2"
                )));
            }
        };
        let need = |value: Option<usize>, name: &str, max: usize| -> Result<usize, LoadError> {
            match value {
                Some(v) if (1..=max).contains(&v) => Ok(v),
                Some(v) => Err(err(format!("{name} = {v} is out of range (1..={max})"))),
                None => Err(err(format!("{name} is missing"))),
            }
        };
        let d_model = need(self.hidden_size.or(self.n_embd), "hidden_size", MAX_DIM)?;
        let layers = need(
            self.num_hidden_layers.or(self.n_layer),
            "num_hidden_layers",
            MAX_LAYERS,
        )?;
        let heads = need(
            self.num_attention_heads.or(self.n_head),
            "num_attention_heads",
            MAX_DIM,
        )?;
        let kv_heads = need(
            self.num_key_value_heads.or(Some(heads)),
            "num_key_value_heads",
            heads,
        )?;
        if heads % kv_heads != 0 {
            return Err(err(format!(
                "{heads} attention heads cannot share {kv_heads} key/value heads"
            )));
        }
        let d_head = match self.head_dim {
            Some(h) => need(Some(h), "head_dim", MAX_DIM)?,
            None if d_model % heads == 0 => d_model / heads,
            None => {
                return Err(err(format!(
                    "hidden_size {d_model} is not a multiple of {heads} heads"
                )));
            }
        };
        let d_ff = match family {
            Family::Gpt2 => need(self.n_inner.or(Some(4 * d_model)), "n_inner", 4 * MAX_DIM)?,
            _ => need(self.intermediate_size, "intermediate_size", 4 * MAX_DIM)?,
        };
        let max_positions = need(
            self.max_position_embeddings.or(self.n_positions),
            "max_position_embeddings",
            MAX_POSITIONS,
        )?;
        let vocab = need(self.vocab_size, "vocab_size", MAX_VOCAB)?;
        let type_vocab = match family {
            Family::Bert => need(self.type_vocab_size.or(Some(2)), "type_vocab_size", 1024)?,
            _ => 0,
        };
        let norm_eps = match family {
            Family::Bert => self.layer_norm_eps.unwrap_or(1e-12),
            Family::Gpt2 => self.layer_norm_epsilon.unwrap_or(1e-5),
            Family::Llama => self.rms_norm_eps.unwrap_or(1e-6),
        };
        if !(norm_eps.is_finite() && norm_eps > 0.0) {
            return Err(err(format!("norm epsilon {norm_eps} must be positive")));
        }
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_llama3 = match rope.and_then(|r| r.rope_type.as_deref()) {
            None | Some("default") => None,
            Some("llama3") => {
                let r = rope.cloned().unwrap_or_default();
                let field = |v: Option<f64>, name: &str| -> Result<f32, LoadError> {
                    match v {
                        Some(v) if v.is_finite() && v > 0.0 => Ok(v as f32),
                        _ => Err(err(format!("rope scaling llama3 needs a positive {name}"))),
                    }
                };
                let scaling = crate::engine::Llama3Scaling {
                    factor: field(r.factor, "factor")?,
                    low_freq_factor: field(r.low_freq_factor, "low_freq_factor")?,
                    high_freq_factor: field(r.high_freq_factor, "high_freq_factor")?,
                    original_max_positions: field(
                        r.original_max_position_embeddings,
                        "original_max_position_embeddings",
                    )?,
                };
                if scaling.high_freq_factor <= scaling.low_freq_factor {
                    return Err(err(
                        "rope scaling llama3 needs high_freq_factor > low_freq_factor".to_owned(),
                    ));
                }
                Some(scaling)
            }
            Some(kind) => {
                return Err(err(format!(
                    "rope_type {kind:?} is not supported; supported: default, llama3"
                )));
            }
        };
        let rope_theta = self
            .rope_theta
            .or(self.rope_parameters.as_ref().and_then(|r| r.rope_theta))
            .unwrap_or(10_000.0);
        let act = self
            .hidden_act
            .clone()
            .or(self.activation_function.clone())
            .unwrap_or_default();
        let expected_act = match family {
            Family::Bert => "gelu",
            Family::Gpt2 => "gelu_new",
            Family::Llama => "silu",
        };
        if !act.is_empty() && act != expected_act {
            return Err(err(format!(
                "activation {act:?} is not supported for {model_type}; expected {expected_act:?}"
            )));
        }
        let sliding_window = match model_type.as_str() {
            "mistral" => match self.sliding_window {
                Some(0) => return Err(err("sliding_window is 0".to_owned())),
                window => window,
            },
            "qwen2" if self.use_sliding_window == Some(true) => {
                return Err(err(
                    "use_sliding_window: true (Qwen2's per-layer sliding window) is not supported"
                        .to_owned(),
                ));
            }
            _ => None,
        };
        Ok(ModelConfig {
            family,
            d_model,
            layers,
            heads,
            kv_heads,
            d_head,
            d_ff,
            max_positions,
            vocab,
            type_vocab,
            norm_eps: norm_eps as f32,
            rope_theta: rope_theta as f32,
            rope_llama3,
            attention_bias: self.attention_bias.unwrap_or(model_type == "qwen2"),
            // BertConfig and GPT2Config default to true; LlamaConfig, MistralConfig and
            // Qwen2Config to false.
            tie_word_embeddings: self
                .tie_word_embeddings
                .unwrap_or(matches!(family, Family::Bert | Family::Gpt2)),
            sliding_window,
            dtype: self
                .dtype
                .or(self.torch_dtype)
                .unwrap_or_else(|| "float32".to_owned()),
        })
    }
}
