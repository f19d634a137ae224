//! The tokenizer a GGUF describes in its metadata (`tokenizer.ggml.*`), written out as the
//! tokenizer.json that Hugging Face's `tokenizers` would hold for it, so that it goes through the
//! same [`HfTokenizer`](crate::tokenize::HfTokenizer) path as a checkpoint folder's file.
//!
//! Two tokenizer models are built, as transformers' `integrations/gguf/gguf_tokenizer_mapping.py`
//! builds them:
//! - `tokenizer.ggml.model = "gpt2"`, byte-level BPE (GPT-2, SmolLM, Llama 3, Qwen2): the
//!   vocabulary (tokens not spelled in GPT-2's byte alphabet are re-spelled into it), the merges,
//!   and a byte-level pre-tokenizer whose split regex follows `tokenizer.ggml.pre`;
//! - `"llama"`, SentencePiece BPE (Llama 2, Mistral, TinyLlama), as transformers'
//!   `LlamaTokenizer`: Metaspace with a "▁" before the first word (unless `add_space_prefix` is
//!   false), byte fallback to the `<0xXX>` tokens, and the merges of the file or, when it has
//!   none, those its scores imply (`generate_merges`).
//!
//! In both, tokens of type CONTROL (3) are special added tokens and USER_DEFINED (4) plain ones,
//! the BOS, EOS, UNK and PAD tokens are special, and BOS/EOS are added when
//! `tokenizer.ggml.add_bos_token` / `add_eos_token` say so (BOS by default for SentencePiece).
//! Unigram (`t5`) and other models are refused by name.

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
    let meta = Meta { header };
    let model = match meta.get("model") {
        Some(Value::Str(m)) => m.as_str(),
        Some(v) => return Err(wrong_type(&key("model"), "string", v)),
        None => return Err(format!("metadata key {:?} is missing", key("model"))),
    };
    let byte_level = match model {
        "gpt2" => true,
        "llama" => false,
        other => {
            return Err(format!(
                "metadata key \"tokenizer.ggml.model\" is {other:?}; only \"gpt2\" (byte-level \
                 BPE) and \"llama\" (SentencePiece BPE) tokenizers are built from a GGUF"
            ));
        }
    };
    let tokens = string_array(header, &key("tokens"))?;
    let types: Vec<i64> = match meta.get("token_type") {
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
    // GPT-2's vocabularies are spelled in its byte alphabet (a token that is not is re-spelled
    // into it); SentencePiece's are used as they are.
    let alphabet = byte_alphabet();
    let in_alphabet = |t: &str| !byte_level || t.chars().all(|c| alphabet.contains(&c));
    let spelled: Vec<String> = tokens
        .iter()
        .map(|t| {
            if in_alphabet(t) {
                (*t).to_owned()
            } else {
                t.bytes().map(|b| alphabet[usize::from(b)]).collect()
            }
        })
        .collect();
    let mut vocab = serde_json::Map::with_capacity(tokens.len());
    for (id, text) in spelled.iter().enumerate() {
        vocab.insert(text.clone(), json!(id));
    }
    let merges: Vec<Json> = match (header.get(&key("merges")), byte_level) {
        (Some(_), _) | (None, true) => split_merges(&string_array(header, &key("merges"))?)?,
        // SentencePiece files carry scores instead: the merges they imply.
        (None, false) => {
            let scores = float_array(header, &key("scores"))?;
            if scores.len() != tokens.len() {
                return Err(format!(
                    "metadata key \"tokenizer.ggml.scores\" has {} entries for {} tokens",
                    scores.len(),
                    tokens.len()
                ));
            }
            merges_from_scores(&tokens, &scores)
        }
    };
    // Added tokens, by id: CONTROL tokens special and USER_DEFINED ones plain, as transformers'
    // `add_gguf_special_tokens` adds them (a byte-level control token spelled outside the byte
    // alphabet is a llama.cpp mislabel, skipped), then the BOS, EOS, UNK and PAD tokens special,
    // as the tokenizer classes register them.
    let mut added: std::collections::BTreeMap<usize, bool> = std::collections::BTreeMap::new();
    for (id, (token, ty)) in tokens.iter().zip(&types).enumerate() {
        match *ty {
            CONTROL if in_alphabet(token) => {
                added.insert(id, true);
            }
            USER_DEFINED if vocab.contains_key(*token) => {
                added.insert(id, false);
            }
            _ => {}
        }
    }
    let bos = meta.token_id("bos_token_id", tokens.len())?;
    let eos = meta.token_id("eos_token_id", tokens.len())?;
    for id in [
        bos,
        eos,
        meta.token_id("unknown_token_id", tokens.len())?,
        meta.token_id("padding_token_id", tokens.len())?,
    ]
    .into_iter()
    .flatten()
    {
        added.insert(id, true);
    }
    let added: Vec<Json> = added
        .into_iter()
        .map(|(id, special)| {
            json!({
                "id": id, "content": tokens[id], "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": special,
            })
        })
        .collect();
    // SentencePiece tokenizers add BOS unless the file says otherwise (as llama.cpp and
    // transformers do for older files without the flag).
    let add_bos = meta.flag("add_bos_token")?.unwrap_or(!byte_level);
    let add_eos = meta.flag("add_eos_token")?.unwrap_or(false);
    let add_prefix_space = meta.flag("add_space_prefix")?;
    let mut special_tokens = serde_json::Map::new();
    let mut wrap = |name: &str, add: bool, id: Option<usize>| -> Result<Vec<Json>, String> {
        if !add {
            return Ok(Vec::new());
        }
        let id = id.ok_or_else(|| {
            format!(
                "metadata key {:?} is missing",
                key(&format!("{name}_token_id"))
            )
        })?;
        let text = &spelled[id];
        special_tokens.insert(
            text.clone(),
            json!({"id": text, "ids": [id], "tokens": [text]}),
        );
        Ok(vec![json!({"SpecialToken": {"id": text, "type_id": 0}})])
    };
    let mut single = wrap("bos", add_bos, bos)?;
    single.push(json!({"Sequence": {"id": "A", "type_id": 0}}));
    single.extend(wrap("eos", add_eos, eos)?);
    let post_processor = json!({"type": "TemplateProcessing", "single": single,
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": special_tokens});
    let (pre_tokenizer, decoder, model) = if byte_level {
        let byte_level = |use_regex: bool| {
            json!({"type": "ByteLevel", "add_prefix_space": add_prefix_space.unwrap_or(false),
                   "trim_offsets": true, "use_regex": use_regex})
        };
        let pre_tokenizer = match meta.split()? {
            None => byte_level(true),
            Some(regex) => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]}),
        };
        (
            pre_tokenizer,
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                   "use_regex": true}),
            json!({"type": "BPE", "dropout": null, "unk_token": null,
                   "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
                   "byte_fallback": false, "ignore_merges": false,
                   "vocab": vocab, "merges": merges}),
        )
    } else {
        // transformers' `LlamaTokenizer`: Metaspace (a "▁" before the first word unless
        // `add_space_prefix` is false), byte fallback, fused unknowns.
        let prefix = add_prefix_space.unwrap_or(true);
        let mut decoders = vec![
            json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            json!({"type": "ByteFallback"}),
            json!({"type": "Fuse"}),
        ];
        if prefix {
            decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
        }
        (
            json!({"type": "Metaspace", "replacement": "\u{2581}",
                   "prepend_scheme": if prefix { "first" } else { "never" }, "split": false}),
            json!({"type": "Sequence", "decoders": decoders}),
            json!({"type": "BPE", "dropout": null, "unk_token": null,
                   "continuing_subword_prefix": null, "end_of_word_suffix": null,
                   "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                   "vocab": vocab, "merges": merges}),
        )
    };
    Ok(json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model,
    }))
}

/// `tokenizer.ggml.<k>`.
fn key(k: &str) -> String {
    format!("tokenizer.ggml.{k}")
}

/// The `tokenizer.ggml.*` keys of one header.
struct Meta<'h> {
    header: &'h Header,
}

impl Meta<'_> {
    fn get(&self, k: &str) -> Option<&Value> {
        self.header.get(&key(k))
    }

    /// A bool key, if present.
    fn flag(&self, k: &str) -> Result<Option<bool>, String> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(wrong_type(&key(k), "bool", v)),
        }
    }

    /// A token id key, if present, checked against the `count` tokens.
    fn token_id(&self, k: &str, count: usize) -> Result<Option<usize>, String> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let id = v
            .as_u64()
            .and_then(|id| usize::try_from(id).ok())
            .ok_or_else(|| wrong_type(&key(k), "token id", v))?;
        if id >= count {
            return Err(format!(
                "metadata key {:?} is {id}, outside the {count} tokens",
                key(k)
            ));
        }
        Ok(Some(id))
    }

    /// The split regex `tokenizer.ggml.pre` names for a byte-level tokenizer; `None` for GPT-2's
    /// own (the byte-level pre-tokenizer's built-in regex).
    fn split(&self) -> Result<Option<&'static str>, String> {
        let pre = match self.get("pre") {
            None => return Ok(None),
            Some(Value::Str(p)) => p.as_str(),
            Some(v) => return Err(wrong_type(&key("pre"), "string", v)),
        };
        match pre {
            p if GPT2_PRE.contains(&p) => Ok(None),
            p if LLAMA3_PRE.contains(&p) => Ok(Some(LLAMA3_SPLIT)),
            "qwen2" => Ok(Some(QWEN2_SPLIT)),
            p => Err(format!(
                "metadata key \"tokenizer.ggml.pre\" is {p:?}, a pre-tokenizer attnviz does not \
                 know; known: {}, qwen2",
                [GPT2_PRE, LLAMA3_PRE].concat().join(", ")
            )),
        }
    }
}

/// `"a b"` merges as `["a", "b"]` pairs.
fn split_merges(merges: &[&str]) -> Result<Vec<Json>, String> {
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
    Ok(pairs)
}

/// The merges a SentencePiece vocabulary implies, as transformers' `generate_merges` derives
/// them: every split of a token into two tokens of the vocabulary is a merge ranked by the
/// merged token's score (higher first, then longer left and right parts), ties kept in
/// vocabulary order (by the ids of the left, then the right part, within one token).
fn merges_from_scores(tokens: &[&str], scores: &[f64]) -> Vec<Json> {
    // Later duplicates win the id, as in a Python dict built in order; a token keeps its first
    // place in the score order but takes its last score.
    let mut vocab: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let mut score_of: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (id, (&token, &score)) in tokens.iter().zip(scores).enumerate() {
        if vocab.insert(token, id).is_none() {
            order.push(token);
        }
        score_of.insert(token, score);
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let score = score_of.get(token).copied().unwrap_or(0.0);
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(l, r)| vocab.contains_key(l) && vocab.contains_key(r))
            .map(|(l, r)| (l, r, score))
            .collect();
        local.sort_by_key(|(l, r, _)| (vocab.get(l).copied(), vocab.get(r).copied()));
        merges.extend(local);
    }
    // Stable, descending: equal keys keep their order, as Python's `sorted(reverse=True)`.
    merges.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| b.0.chars().count().cmp(&a.0.chars().count()))
            .then_with(|| b.1.chars().count().cmp(&a.1.chars().count()))
    });
    merges.into_iter().map(|(l, r, _)| json!([l, r])).collect()
}

/// The floats of array key `key`.
fn float_array(header: &Header, key: &str) -> Result<Vec<f64>, String> {
    let value = header
        .get(key)
        .ok_or_else(|| format!("metadata key {key:?} is missing"))?;
    let items = value
        .as_array()
        .ok_or_else(|| wrong_type(key, "array of floats", value))?;
    items
        .iter()
        .map(Value::as_f64)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("metadata key {key:?} holds a non-float"))
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
