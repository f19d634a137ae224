//! The tokenizer a GGUF describes in its metadata (`tokenizer.ggml.*`), written out as the
//! tokenizer.json that Hugging Face's `tokenizers` would hold for it, so that it goes through the
//! same [`HfTokenizer`](crate::tokenize::HfTokenizer) path as a checkpoint folder's file.
//!
//! Only `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, SmolLM, Llama 3, Qwen2) is built,
//! as transformers' `integrations/gguf/gguf_tokenizer_mapping.py` builds it: the vocabulary
//! (tokens not spelled in GPT-2's byte alphabet are re-spelled into it), the merges, a
//! byte-level pre-tokenizer whose split regex follows `tokenizer.ggml.pre`, tokens of type
//! CONTROL (3) added as special tokens and USER_DEFINED (4) as plain added tokens, BOS/EOS
//! added when `tokenizer.ggml.add_bos_token` / `add_eos_token` say so. SentencePiece (`llama`),
//! unigram (`t5`) and other models are refused by name.

use super::file::{Header, Value};
use serde_json::{Value as Json, json};

/// Llama 3's split (llama.cpp's `llama-bpe` pre-tokenizer).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2's split (llama.cpp's `qwen2` pre-tokenizer).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// `tokenizer.ggml.pre` values whose text split is GPT-2's own regex (the byte-level
/// pre-tokenizer's built-in one); no value at all is read so too, as transformers reads it.
const GPT2_PRE: &[&str] = &["gpt-2", "smollm"];
/// `tokenizer.ggml.pre` values split with Llama 3's regex.
const LLAMA3_PRE: &[&str] = &["llama-bpe", "llama3", "llama-v3", "smaug-bpe", "falcon3"];

/// ggml's token types.
const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The tokenizer.json for the GGUF's tokenizer metadata. The error names the key at fault.
pub fn tokenizer_json(header: &Header) -> Result<Json, String> {
    let key = |k: &str| format!("tokenizer.ggml.{k}");
    let get = |k: &str| header.get(&key(k));
    let model = match get("model") {
        Some(Value::Str(m)) => m.as_str(),
        Some(v) => return Err(wrong_type(&key("model"), "string", v)),
        None => return Err(format!("metadata key {:?} is missing", key("model"))),
    };
    if model != "gpt2" {
        return Err(format!(
            "metadata key \"tokenizer.ggml.model\" is {model:?}; only \"gpt2\" (byte-level BPE) \
             tokenizers are built from a GGUF"
        ));
    }
    let pre = match get("pre") {
        None => None,
        Some(Value::Str(p)) => Some(p.as_str()),
        Some(v) => return Err(wrong_type(&key("pre"), "string", v)),
    };
    let split = match pre {
        None => None,
        Some(p) if GPT2_PRE.contains(&p) => None,
        Some(p) if LLAMA3_PRE.contains(&p) => Some(LLAMA3_SPLIT),
        Some("qwen2") => Some(QWEN2_SPLIT),
        Some(p) => {
            return Err(format!(
                "metadata key \"tokenizer.ggml.pre\" is {p:?}, a pre-tokenizer attnviz does not \
                 know; known: {}, qwen2",
                [GPT2_PRE, LLAMA3_PRE].concat().join(", ")
            ));
        }
    };
    let tokens = string_array(header, &key("tokens"))?;
    let merges = string_array(header, &key("merges"))?;
    let types: Vec<i64> = match get("token_type") {
        None => Vec::new(),
        Some(v) => {
            let items = v
                .as_array()
                .ok_or_else(|| wrong_type(&key("token_type"), "array", v))?;
            let types = items
                .iter()
                .map(Value::as_i64)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    "metadata key \"tokenizer.ggml.token_type\" holds a non-integer".to_owned()
                })?;
            if types.len() != tokens.len() {
                return Err(format!(
                    "metadata key \"tokenizer.ggml.token_type\" has {} entries for {} tokens",
                    types.len(),
                    tokens.len()
                ));
            }
            types
        }
    };
    let alphabet = byte_alphabet();
    let spelled_in_alphabet = |t: &str| t.chars().all(|c| alphabet.contains(&c));
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    let mut spelled = Vec::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let text = if spelled_in_alphabet(token) {
            (*token).to_owned()
        } else {
            token.bytes().map(|b| alphabet[usize::from(b)]).collect()
        };
        vocab.insert(text.clone(), json!(id));
        spelled.push(text);
    }
    let mut pairs = Vec::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        let mut parts = merge.split(' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), None) if !a.is_empty() && !b.is_empty() => pairs.push(json!([a, b])),
            _ => {
                return Err(format!(
                    "merge {i} ({merge:?}) of metadata key \"tokenizer.ggml.merges\" is not two \
                     tokens separated by one space"
                ));
            }
        }
    }
    let mut added = Vec::new();
    for (id, (token, ty)) in tokens.iter().zip(&types).enumerate() {
        // A control token spelled outside the byte alphabet is a llama.cpp mislabel
        // (transformers skips it too); user-defined tokens are added only when in the vocabulary.
        let special = match *ty {
            CONTROL if spelled_in_alphabet(token) => true,
            USER_DEFINED if vocab.contains_key(*token) => false,
            _ => continue,
        };
        added.push(json!({
            "id": id, "content": token, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": special,
        }));
    }
    let special_id = |k: &str| -> Result<Option<(String, usize)>, String> {
        match get(k) {
            None => Ok(None),
            Some(v) => {
                let id = v
                    .as_u64()
                    .and_then(|id| usize::try_from(id).ok())
                    .ok_or_else(|| wrong_type(&key(k), "token id", v))?;
                let text = spelled.get(id).ok_or_else(|| {
                    format!(
                        "metadata key {:?} is {id}, outside the {} tokens",
                        key(k),
                        tokens.len()
                    )
                })?;
                Ok(Some((text.clone(), id)))
            }
        }
    };
    let flag = |k: &str| -> Result<bool, String> {
        match get(k) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(wrong_type(&key(k), "bool", v)),
        }
    };
    let bos = special_id("bos_token_id")?;
    let eos = special_id("eos_token_id")?;
    let add_prefix_space = flag("add_space_prefix")?;
    let mut special_tokens = serde_json::Map::new();
    let mut wrap =
        |name: &str, add: bool, tok: &Option<(String, usize)>| -> Result<Vec<Json>, String> {
            if !add {
                return Ok(Vec::new());
            }
            let (text, id) = tok.as_ref().ok_or_else(|| {
                format!(
                    "metadata key {:?} is missing",
                    key(&format!("{name}_token_id"))
                )
            })?;
            special_tokens.insert(
                text.clone(),
                json!({"id": text, "ids": [id], "tokens": [text]}),
            );
            Ok(vec![json!({"SpecialToken": {"id": text, "type_id": 0}})])
        };
    let mut single = wrap("bos", flag("add_bos_token")?, &bos)?;
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    single.extend(wrap("eos", flag("add_eos_token")?, &eos)?);
    let byte_level = |use_regex: bool| {
        json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space,
               "trim_offsets": true, "use_regex": use_regex})
    };
    let pre_tokenizer = match split {
        None => byte_level(true),
        Some(regex) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            byte_level(false),
        ]}),
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": {"type": "TemplateProcessing", "single": single,
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": special_tokens},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                  "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": pairs},
    }))
}

/// The strings of array key `key`.
fn string_array<'h>(header: &'h Header, key: &str) -> Result<Vec<&'h str>, String> {
    let value = header
        .get(key)
        .ok_or_else(|| format!("metadata key {key:?} is missing"))?;
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type(key, "array of strings", value))?;
    items
        .iter()
        .map(Value::as_str)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("metadata key {key:?} holds a non-string"))
}

fn wrong_type(key: &str, want: &str, got: &Value) -> String {
    format!(
        "metadata key {key:?} is a {}, not a {want}",
        got.type_name()
    )
}

/// GPT-2's byte alphabet (`bytes_to_unicode`): the character each byte is spelled with.
/// Printable bytes stand for themselves; the other 68 take the characters from U+0100 on, in
/// byte order.
fn byte_alphabet() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            let code = if printable(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_alphabet_is_gpt2s() {
        // Space (0x20) is the 33rd non-printable byte (0x00..=0x20): U+0100 + 32 = U+0120 'Ġ';
        // newline (0x0a) is the 11th: U+010A 'Ċ'; 'a' stands for itself; 0xad (soft hyphen)
        // comes after the 33 control bytes and 0x7f..=0xa0 (34 more): U+0100 + 67 = U+0143.
        let a = byte_alphabet();
        assert_eq!(a[0x20], 'Ġ');
        assert_eq!(a[0x0a], 'Ċ');
        assert_eq!(a[usize::from(b'a')], 'a');
        assert_eq!(a[0xad], '\u{143}');
        let mut unique = a.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 256);
    }
}
