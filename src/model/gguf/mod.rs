//! GGUF checkpoints (llama.cpp's format) of the Llama family: a `.gguf` file alone gives the
//! config, the weights and the tokenizer, and runs on the same loaders and engine as a Hugging
//! Face folder.
//!
//! - [`file`] parses the container (header, metadata, tensor infos; every size checked against
//!   the file);
//! - [`quant`] de-quantizes F32, F16, BF16, Q8_0, Q4_0 and Q4_1 to f32 and refuses every other
//!   type by name;
//! - [`tokenizer`] writes the tokenizer.json the metadata describes;
//! - this file turns the metadata into a [`ModelConfig`] and serves tensors under the Hugging
//!   Face names the loaders ask for ([`GgufWeights`], behind a
//!   [`WeightFile`](super::weights::WeightFile)), undoing llama.cpp's conventions: dims stored
//!   innermost first, and the rows of Q and K permuted for llama.cpp's interleaved RoPE.
//!
//! The architectures are `llama` (SmolLM2, and Llama-3.0-style files) and `qwen2`, the ones whose
//! tensors the Llama loader reads as they are. Nothing here touches the UI.

pub mod file;
pub mod quant;
pub mod tokenizer;

use super::config::{ModelConfig, RawConfig};
use super::weights::{FileBytes, LoadError, TensorSource};
use file::{Header, TensorInfo, Value};
use std::path::{Path, PathBuf};

/// True when `path` names a GGUF file (by its extension), rather than a checkpoint folder.
pub fn is_gguf_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// An open GGUF file: its bytes (memory-mapped) and its parsed header.
pub struct GgufFile {
    path: PathBuf,
    bytes: FileBytes,
    header: Header,
}

impl GgufFile {
    /// Maps `path` and parses its header. Errors name the file.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let bytes = super::weights::file_bytes(path)?;
        let header = Header::parse(&bytes).map_err(|reason| LoadError::Weights {
            path: path.to_owned(),
            reason,
        })?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
            header,
        })
    }

    /// The parsed header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tensor `name` as f32 in row-major order (outermost dim first). Refuses a type that is
    /// not read, naming the type and the tensor.
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, &TensorInfo), LoadError> {
        let info = self
            .header
            .tensor(name)
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.to_owned(),
                path: self.path.clone(),
            })?;
        let weights = |reason: String| LoadError::Weights {
            path: self.path.clone(),
            reason,
        };
        let ty = info.ggml_type;
        if !ty.is_read() {
            return Err(weights(format!(
                "tensor {name:?} is {}, a ggml type attnviz does not read (it reads {})",
                ty.name(),
                quant::READ_TYPES.join(", ")
            )));
        }
        // The range was checked against the file when the header was parsed.
        let data = self
            .bytes
            .get(info.range.clone())
            .ok_or_else(|| weights(format!("tensor {name:?} lies outside the file")))?;
        let values = quant::dequantize(ty, data, info.elements()).ok_or_else(|| {
            weights(format!(
                "tensor {name:?}: {} bytes do not hold {} {} values",
                data.len(),
                info.elements(),
                ty.name()
            ))
        })?;
        Ok((values, info))
    }
}

/// What a GGUF checkpoint gives besides its weights.
pub struct GgufModel {
    /// The validated config, from the metadata.
    pub config: ModelConfig,
    /// `general.name`, when the file has one.
    pub general_name: Option<String>,
    /// The tokenizer.json its metadata describes.
    pub tokenizer_json: serde_json::Value,
    /// The tensors, under Hugging Face names.
    pub weights: GgufWeights,
}

/// Opens the GGUF at `path`: config, tokenizer and tensors, with every metadata key checked.
pub fn open(path: &Path) -> Result<GgufModel, LoadError> {
    let file = GgufFile::open(path)?;
    let config_err = |reason: String| LoadError::Config {
        path: path.to_owned(),
        reason,
    };
    let (config, permute_qk) = model_config(&file).map_err(config_err)?;
    let tokenizer_json = tokenizer::tokenizer_json(file.header()).map_err(config_err)?;
    let general_name = file
        .header()
        .get("general.name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(GgufModel {
        weights: GgufWeights {
            heads: config.heads,
            kv_heads: config.kv_heads,
            permute_qk,
            file,
        },
        config,
        general_name,
        tokenizer_json,
    })
}

/// The architectures read, and whether llama.cpp's converter permuted their Q/K rows (it does
/// for `llama`, whose RoPE it runs interleaved; `qwen2` runs the NEOX form, which is Hugging
/// Face's rotate-half, so its rows are as they were).
const ARCHITECTURES: &[(&str, bool)] = &[("llama", true), ("qwen2", false)];

/// The [`ModelConfig`] the metadata describes (validated by the same
/// [`RawConfig::into_config`] as a config.json), and whether Q and K rows must be un-permuted.
/// The error names the key or tensor at fault.
fn model_config(file: &GgufFile) -> Result<(ModelConfig, bool), String> {
    let h = file.header();
    let arch = match h.get("general.architecture") {
        Some(Value::Str(a)) => a.as_str(),
        Some(v) => {
            return Err(format!(
                "metadata key \"general.architecture\" is a {}, not a string",
                v.type_name()
            ));
        }
        None => return Err("metadata key \"general.architecture\" is missing".to_owned()),
    };
    let Some(&(_, permute_qk)) = ARCHITECTURES.iter().find(|(a, _)| *a == arch) else {
        return Err(format!(
            "general.architecture {arch:?} is not supported; supported: {}",
            ARCHITECTURES
                .iter()
                .map(|(a, _)| *a)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let key = |k: &str| format!("{arch}.{k}");
    let uint = |k: &str| -> Result<Option<usize>, String> {
        match h.get(&key(k)) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    format!(
                        "metadata key {:?} is {}, not a count{}",
                        key(k),
                        short(v),
                        if v.as_array().is_some() {
                            " (per-layer values are not supported)"
                        } else {
                            ""
                        }
                    )
                }),
        }
    };
    let need = |k: &str| -> Result<usize, String> {
        uint(k)?.ok_or_else(|| format!("metadata key {:?} is missing", key(k)))
    };
    let float = |k: &str| -> Result<Option<f64>, String> {
        match h.get(&key(k)) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("metadata key {:?} is {}, not a float", key(k), short(v))),
        }
    };
    let d_model = need("embedding_length")?;
    let layers = need("block_count")?;
    let heads = need("attention.head_count")?;
    let kv_heads = uint("attention.head_count_kv")?.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(format!(
            "metadata keys {:?} = {heads} and {:?} = {kv_heads}: the heads cannot share the \
             key/value heads",
            key("attention.head_count"),
            key("attention.head_count_kv")
        ));
    }
    let d_head = match uint("attention.key_length")? {
        Some(k) => k,
        None if d_model.is_multiple_of(heads) => d_model / heads,
        None => {
            return Err(format!(
                "metadata key {:?} = {d_model} is not a multiple of {:?} = {heads}",
                key("embedding_length"),
                key("attention.head_count")
            ));
        }
    };
    if let Some(v) = uint("attention.value_length")?
        && v != d_head
    {
        return Err(format!(
            "metadata key {:?} = {v} differs from the key width {d_head}",
            key("attention.value_length")
        ));
    }
    if let Some(r) = uint("rope.dimension_count")?
        && r != d_head
    {
        return Err(format!(
            "metadata key {:?} = {r}: RoPE over part of the {d_head}-wide heads is not supported",
            key("rope.dimension_count")
        ));
    }
    if let Some(v) = h.get(&key("rope.scaling.type"))
        && v.as_str() != Some("none")
    {
        return Err(format!(
            "metadata key {:?} is {}: RoPE scaling is not supported",
            key("rope.scaling.type"),
            short(v)
        ));
    }
    if h.tensor("rope_freqs.weight").is_some() {
        return Err(
            "tensor \"rope_freqs.weight\" (Llama 3.1-style RoPE frequency scaling) is not supported"
                .to_owned(),
        );
    }
    if let Some(n) = uint("expert_count")?
        && n > 0
    {
        return Err(format!(
            "metadata key {:?} = {n}: mixture-of-experts models are not supported",
            key("expert_count")
        ));
    }
    let tokens = h
        .get("tokenizer.ggml.tokens")
        .and_then(Value::as_array)
        .map(<[Value]>::len);
    let vocab = match (uint("vocab_size")?, tokens) {
        (Some(v), Some(t)) if v != t => {
            return Err(format!(
                "metadata key {:?} = {v} but \"tokenizer.ggml.tokens\" holds {t} tokens",
                key("vocab_size")
            ));
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => {
            return Err(format!(
                "neither {:?} nor \"tokenizer.ggml.tokens\" gives the vocabulary size",
                key("vocab_size")
            ));
        }
    };
    let eps = float("attention.layer_norm_rms_epsilon")?.ok_or_else(|| {
        format!(
            "metadata key {:?} is missing",
            key("attention.layer_norm_rms_epsilon")
        )
    })?;
    let raw = RawConfig {
        // `llama` or `qwen2`, as config.json would say.
        model_type: Some(arch.to_owned()),
        hidden_size: Some(d_model),
        num_hidden_layers: Some(layers),
        num_attention_heads: Some(heads),
        num_key_value_heads: Some(kv_heads),
        head_dim: Some(d_head),
        intermediate_size: Some(need("feed_forward_length")?),
        max_position_embeddings: Some(need("context_length")?),
        vocab_size: Some(vocab),
        rms_norm_eps: Some(eps),
        // llama.cpp's default base when the key is absent.
        rope_theta: Some(float("rope.freq_base")?.unwrap_or(10_000.0)),
        // Qwen2 always has q/k/v biases (a file without them is refused by tensor name).
        attention_bias: Some(arch == "qwen2" || h.tensor("blk.0.attn_q.bias").is_some()),
        // transformers ties the head to the embedding exactly when `output.weight` is absent.
        tie_word_embeddings: Some(h.tensor("output.weight").is_none()),
        dtype: Some(stored_types(h)),
        ..RawConfig::default()
    };
    let config = raw.into_config(file.path()).map_err(|e| match e {
        LoadError::Config { reason, .. } => format!("{reason} (from the GGUF metadata)"),
        other => other.to_string(),
    })?;
    Ok((config, permute_qk))
}

/// A metadata value for a message: its type, and the value when it is short.
fn short(v: &Value) -> String {
    match v {
        Value::Array(items) => format!("an array of {}", items.len()),
        Value::Str(s) if s.chars().count() > 40 => "a long string".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The tensor types in the file, most frequent first: `GGUF Q4_1, F32, Q8_0`.
fn stored_types(h: &Header) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (_, t) in &h.tensors {
        match counts.iter_mut().find(|(n, _)| *n == t.ggml_type.name()) {
            Some((_, c)) => *c += 1,
            None => counts.push((t.ggml_type.name(), 1)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let names: Vec<&str> = counts.iter().map(|(n, _)| *n).collect();
    format!("GGUF {}", names.join(", "))
}

/// A GGUF's tensors under the Hugging Face names the Llama loader asks for
/// (`model.layers.3.self_attn.q_proj.weight` is `blk.3.attn_q.weight`), de-quantized to f32 in
/// Hugging Face's row-major layout.
pub struct GgufWeights {
    file: GgufFile,
    heads: usize,
    kv_heads: usize,
    /// llama.cpp's converter permuted the rows of Q and K (`LlamaModel.permute`).
    permute_qk: bool,
}

/// Which permutation a tensor's rows carry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rows {
    AsStored,
    /// Q or K rows over this many heads.
    Rope(usize),
}

impl GgufWeights {
    /// The GGUF name of a Hugging Face name, and how its rows are permuted.
    fn gguf_name(&self, hf: &str) -> Option<(String, Rows)> {
        let hf = hf.strip_prefix("model.").unwrap_or(hf);
        let fixed = match hf {
            "embed_tokens.weight" => Some("token_embd.weight"),
            "norm.weight" => Some("output_norm.weight"),
            "lm_head.weight" => Some("output.weight"),
            _ => None,
        };
        if let Some(name) = fixed {
            return Some((name.to_owned(), Rows::AsStored));
        }
        let rest = hf.strip_prefix("layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (module, leaf) = rest.rsplit_once('.')?;
        let (gguf, rows) = match module {
            "self_attn.q_proj" => ("attn_q", Rows::Rope(self.heads)),
            "self_attn.k_proj" => ("attn_k", Rows::Rope(self.kv_heads)),
            "self_attn.v_proj" => ("attn_v", Rows::AsStored),
            "self_attn.o_proj" => ("attn_output", Rows::AsStored),
            "mlp.gate_proj" => ("ffn_gate", Rows::AsStored),
            "mlp.up_proj" => ("ffn_up", Rows::AsStored),
            "mlp.down_proj" => ("ffn_down", Rows::AsStored),
            "input_layernorm" => ("attn_norm", Rows::AsStored),
            "post_attention_layernorm" => ("ffn_norm", Rows::AsStored),
            _ => return None,
        };
        let rows = if self.permute_qk {
            rows
        } else {
            Rows::AsStored
        };
        Some((format!("blk.{layer}.{gguf}.{leaf}"), rows))
    }
}

impl TensorSource for GgufWeights {
    fn stored_name(&self, hf: &str) -> String {
        self.gguf_name(hf)
            .map_or_else(|| hf.to_owned(), |(name, _)| name)
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn total_bytes(&self) -> u64 {
        self.file
            .header()
            .tensors
            .iter()
            .map(|(_, t)| t.range.len() as u64)
            .sum()
    }

    /// True when the tensor the Hugging Face name `hf` stands for is in the file.
    fn contains(&self, hf: &str) -> bool {
        self.gguf_name(hf)
            .is_some_and(|(name, _)| self.file.header().tensor(&name).is_some())
    }

    /// The tensor the Hugging Face name `hf` stands for, de-quantized, rows un-permuted.
    /// Errors name the GGUF tensor.
    fn tensor(&self, hf: &str, shape: &[usize]) -> Result<(Vec<f32>, u64), LoadError> {
        let (name, rows) = self.gguf_name(hf).ok_or_else(|| LoadError::MissingTensor {
            name: hf.to_owned(),
            path: self.path().to_owned(),
        })?;
        let info = self
            .file
            .header()
            .tensor(&name)
            .ok_or_else(|| LoadError::MissingTensor {
                name: name.clone(),
                path: self.path().to_owned(),
            })?;
        // Checked before any conversion: ggml's [in, out] is the engine's [out, in].
        if info.shape() != shape {
            return Err(LoadError::ShapeMismatch {
                name,
                expected: shape.to_vec(),
                got: info.shape(),
                path: self.path().to_owned(),
            });
        }
        let (values, info) = self.file.tensor_f32(&name)?;
        super::weights::check_finite(&name, &values, self.path())?;
        let bytes = info.range.len() as u64;
        let values = match rows {
            Rows::AsStored => values,
            Rows::Rope(heads) => {
                let rows = shape.first().copied().unwrap_or(1);
                unpermute_rope_rows(&values, rows, heads).ok_or_else(|| LoadError::Weights {
                    path: self.path().to_owned(),
                    reason: format!(
                        "tensor {name:?} has {rows} rows, which {heads} heads of an even width \
                         cannot share"
                    ),
                })?
            }
        };
        Ok((values, bytes))
    }
}

/// Undoes llama.cpp's `LlamaModel.permute` of the rows of Q or K (and their biases), as
/// transformers' `LlamaTensorProcessor._reverse_permute_weights` does.
///
/// Within each head of width d, the converter moved Hugging Face's row `j·d/2 + i` (half j of
/// the rotate-half layout, pair i) to row `2i + j`, so that RoPE's pairs sit side by side for
/// llama.cpp. Row `h·d + j·d/2 + i` of the result is row `h·d + 2i + j` of `values`, which
/// holds `rows` rows (the remaining dims flattened into each row). `None` when the rows do not
/// split into `heads` heads of an even width.
// https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py (LlamaModel.permute)
fn unpermute_rope_rows(values: &[f32], rows: usize, heads: usize) -> Option<Vec<f32>> {
    if heads == 0 || rows == 0 || !rows.is_multiple_of(heads) || !values.len().is_multiple_of(rows)
    {
        return None;
    }
    let d = rows / heads;
    if !d.is_multiple_of(2) {
        return None;
    }
    let cols = values.len() / rows;
    let half = d / 2;
    let mut out = vec![0f32; values.len()];
    for (r, dst) in out.chunks_exact_mut(cols).enumerate() {
        let (h, within) = (r / d, r % d);
        let (j, i) = (within / half, within % half);
        let src = h * d + 2 * i + j;
        dst.copy_from_slice(values.get(src * cols..(src + 1) * cols)?);
    }
    Some(out)
}

#[cfg(test)]
mod tests;
