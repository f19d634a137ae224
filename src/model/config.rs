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
    /// The Hugging Face id (or the local path) the checkpoint was saved from.
    #[serde(rename = "_name_or_path")]
    pub name_or_path: Option<String>,
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

/// The most a config.json may hold: 16 MiB.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;

/// Sizes beyond these are treated as corrupt configs, before anything is allocated.
const MAX_DIM: usize = 1 << 16;
const MAX_LAYERS: usize = 512;
const MAX_VOCAB: usize = 1 << 22;
const MAX_POSITIONS: usize = 1 << 20;

/// Norm epsilons must lie in (0, MAX_NORM_EPS]: a larger one flattens every activation.
pub const MAX_NORM_EPS: f64 = 0.1;
/// `rope_theta` must lie in [MIN_ROPE_THETA, MAX_ROPE_THETA]: below 1 the rotation frequencies
/// grow with the dimension and positions alias.
pub const MIN_ROPE_THETA: f64 = 1.0;
/// See [`MIN_ROPE_THETA`]; the largest base in use is around 1e7.
pub const MAX_ROPE_THETA: f64 = 1e12;
/// RoPE scaling factors (`factor`, `low_freq_factor`, `high_freq_factor`) must lie in
/// [1, MAX_ROPE_FACTOR].
pub const MAX_ROPE_FACTOR: f64 = 1024.0;

impl RawConfig {
    /// Reads and parses `config.json` in `dir`. A folder without one is "not a model folder"
    /// (named once: the message is the folder's, not the missing file's).
    pub fn read(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join("config.json");
        // Regular files only (a FIFO would block, /dev/zero never ends), at most 16 MiB.
        let bytes = crate::fs::read_regular_file(&path, MAX_CONFIG_FILE).map_err(|e| match e {
            crate::fs::IoError::Read { cause, .. }
                if cause.kind() == std::io::ErrorKind::NotFound
                    && dir.is_dir()
                    && path.symlink_metadata().is_err() =>
            {
                LoadError::Config {
                    path: dir.to_owned(),
                    reason: "not a model folder: no config.json".to_owned(),
                }
            }
            crate::fs::IoError::Read { path, cause } => LoadError::Read { path, cause },
            other => LoadError::Config {
                path: path.clone(),
                reason: other
                    .to_string()
                    .replace(&format!(": {}", path.display()), ""),
            },
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
        // Every float must be finite, used or not: a NaN anywhere means a damaged file.
        let floats = [
            ("layer_norm_eps", self.layer_norm_eps),
            ("layer_norm_epsilon", self.layer_norm_epsilon),
            ("rms_norm_eps", self.rms_norm_eps),
            ("rope_theta", self.rope_theta),
        ];
        let rope_params = [self.rope_parameters.as_ref(), self.rope_scaling.as_ref()];
        let rope_floats = rope_params.into_iter().flatten().flat_map(|r| {
            [
                ("rope_theta", r.rope_theta),
                ("factor", r.factor),
                ("low_freq_factor", r.low_freq_factor),
                ("high_freq_factor", r.high_freq_factor),
                (
                    "original_max_position_embeddings",
                    r.original_max_position_embeddings,
                ),
            ]
        });
        for (name, value) in floats.into_iter().chain(rope_floats) {
            if let Some(v) = value.filter(|v| !v.is_finite()) {
                return Err(err(format!("{name} = {v:?} is not a finite number")));
            }
        }
        if !(norm_eps > 0.0 && norm_eps <= MAX_NORM_EPS) {
            return Err(err(format!(
                "norm epsilon {norm_eps:?} is out of range (0, {MAX_NORM_EPS}]"
            )));
        }
        let rope = self.rope_parameters.as_ref().or(self.rope_scaling.as_ref());
        let rope_llama3 = match rope.and_then(|r| r.rope_type.as_deref()) {
            None | Some("default") => None,
            Some("llama3") => {
                let r = rope.cloned().unwrap_or_default();
                let field = |v: Option<f64>, name: &str, max: f64| -> Result<f32, LoadError> {
                    match v {
                        Some(v) if (1.0..=max).contains(&v) => Ok(v as f32),
                        Some(v) => Err(err(format!(
                            "rope scaling llama3 {name} = {v:?} is out of range [1, {max}]"
                        ))),
                        None => Err(err(format!("rope scaling llama3 needs {name}"))),
                    }
                };
                let scaling = crate::engine::Llama3Scaling {
                    factor: field(r.factor, "factor", MAX_ROPE_FACTOR)?,
                    low_freq_factor: field(r.low_freq_factor, "low_freq_factor", MAX_ROPE_FACTOR)?,
                    high_freq_factor: field(
                        r.high_freq_factor,
                        "high_freq_factor",
                        MAX_ROPE_FACTOR,
                    )?,
                    original_max_positions: field(
                        r.original_max_position_embeddings,
                        "original_max_position_embeddings",
                        MAX_POSITIONS as f64,
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
        if !(MIN_ROPE_THETA..=MAX_ROPE_THETA).contains(&rope_theta) {
            return Err(err(format!(
                "rope_theta {rope_theta:?} is out of range [{MIN_ROPE_THETA}, {MAX_ROPE_THETA:e}]"
            )));
        }
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

#[cfg(test)]
mod range_tests {
    use super::*;

    fn llama(extra: serde_json::Value) -> Result<ModelConfig, String> {
        let mut value = serde_json::json!({
            "model_type": "llama", "hidden_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 16,
            "max_position_embeddings": 64, "vocab_size": 32
        });
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        let raw: RawConfig = serde_json::from_value(value).unwrap();
        raw.into_config(Path::new("m/config.json"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn floats_are_range_checked() {
        // The issue's examples: each one used to load and give wrong maps.
        let cases = [
            (
                serde_json::json!({"rope_theta": 0.0}),
                "rope_theta 0.0 is out of range [1, 1e12]",
            ),
            (
                serde_json::json!({"rope_theta": -5.0}),
                "rope_theta -5.0 is out of range [1, 1e12]",
            ),
            (
                serde_json::json!({"rms_norm_eps": 1e300}),
                "norm epsilon 1e300 is out of range (0, 0.1]",
            ),
            (
                serde_json::json!({"rms_norm_eps": 0.0}),
                "norm epsilon 0.0 is out of range (0, 0.1]",
            ),
            (
                serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 1e300, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32.0}}),
                "rope scaling llama3 factor = 1e300 is out of range [1, 1024]",
            ),
            (
                serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 0.5, "high_freq_factor": 4.0, "original_max_position_embeddings": 32.0}}),
                "rope scaling llama3 low_freq_factor = 0.5 is out of range [1, 1024]",
            ),
        ];
        for (extra, expected) in cases {
            let err = llama(extra).unwrap_err();
            assert_eq!(err, format!("{expected} in m/config.json"));
        }
        // The bounds themselves and a real Llama 3 block load.
        assert!(llama(serde_json::json!({"rope_theta": 1.0, "rms_norm_eps": 0.1})).is_ok());
        let ok = llama(
            serde_json::json!({"rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32.0}}),
        );
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[cfg(unix)]
    #[test]
    fn config_must_be_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("attnviz-config-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A symlink to /dev/zero would read forever; a folder cannot be parsed.
        let link = dir.join("config.json");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = RawConfig::read(&dir).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "a character device is not a readable file in {}",
                link.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_folder_without_config_json_is_not_a_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        let err = RawConfig::read(dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "not a model folder: no config.json in {}",
                dir.path().display()
            )
        );
        // A folder that is not there at all keeps the error of the missing file.
        let gone = dir.path().join("gone");
        let err = RawConfig::read(&gone).unwrap_err().to_string();
        assert!(
            err.ends_with(&format!(
                "while reading {}",
                gone.join("config.json").display()
            )),
            "{err}"
        );
        // So does a config.json that is a dangling link: it is there, but cannot be read.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("config.json"))
                .unwrap();
            let err = RawConfig::read(dir.path()).unwrap_err().to_string();
            assert!(!err.contains("not a model folder"), "{err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_or_path_is_read_from_json() {
        let raw: RawConfig = serde_json::from_str(
            r#"{"_name_or_path": "sentence-transformers/x", "model_type": "bert"}"#,
        )
        .unwrap();
        assert_eq!(raw.name_or_path.as_deref(), Some("sentence-transformers/x"));
    }
}
