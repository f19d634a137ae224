//! `tokenizer.json` through the `tokenizers` crate, as transformers' `tokenizer(text)` does it:
//! special tokens added by the post-processor, and no padding or truncation, even when the file
//! stores settings for them (transformers does not apply them on a plain call either).
//!
//! The file is read and parsed once per load: the tokenizer, its vocabulary (id → string and
//! back), its special ids and its [`VocabStyle`] all come from that one parse. The `tokenizers`
//! crate panics on some malformed files (an empty `Replace` pattern, a template naming an
//! undefined special token); loading and encoding run under [`catch_quietly`], so such a file
//! gives an error naming tokenizer.json instead of a crash.

use super::{Token, VocabStyle};
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Largest id kept in the id → string table; larger ids in a file are ignored (no real
/// vocabulary comes near 4 million entries).
const MAX_VOCAB_ID: usize = 1 << 22;

/// Most normalized bytes measured at once by [`HfTokenizer::check_normalized_len`]: with the
/// crate's per-byte alignments (16 bytes each) a chunk holds at most about 70 MB.
const NORMALIZE_CHUNK_BYTES: u64 = 4 << 20;

/// Largest tokenizer.json read (real ones are a few MB; the largest public ones near 30 MB).
const MAX_FILE_BYTES: u64 = 512 << 20;

thread_local! {
    /// True while this thread runs code under [`catch_quietly`].
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// True while the current thread runs foreign code whose panics are caught and reported as
/// errors; the binary's panic hook stays silent then.
pub fn panic_is_caught() -> bool {
    CATCHING.with(Cell::get)
}

/// Runs `f`, turning a panic inside it into `Err` with the panic's message.
pub fn catch_quietly<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned())
    })
}

/// Why a tokenizer.json could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{reason} in {}", path.display())]
pub struct TokenizerError {
    /// The tokenizer.json.
    pub path: PathBuf,
    /// What went wrong, without the path.
    pub reason: String,
}

/// A Hugging Face tokenizer, with its vocabulary.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    style: VocabStyle,
    /// Token string of each id (empty where the file has none).
    id_to_text: Vec<String>,
    /// Id of each token string, added tokens included.
    text_to_id: HashMap<String, u32>,
    /// Ids of special added tokens.
    special: Vec<u32>,
    /// An upper bound on how many bytes the normalizer makes of one input byte (see
    /// [`normalizer_expansion`]).
    expansion: u64,
}

/// The [`VocabStyle`] of `dir/tokenizer.json`; [`VocabStyle::Plain`] when there is none or it
/// cannot be read (then tokens are ids or their strings are shown as they are). For callers that
/// know a checkpoint folder but not its tokenizer.
pub fn vocab_style_of_dir(dir: &Path) -> VocabStyle {
    crate::fs::read_regular_file(&dir.join("tokenizer.json"), MAX_FILE_BYTES)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .map_or(VocabStyle::Plain, |json| {
            VocabStyle::from_tokenizer_json(&json)
        })
}

impl HfTokenizer {
    /// Reads `path` (a tokenizer.json) once. The error names the file, once.
    pub fn from_file(path: &Path) -> Result<Self, TokenizerError> {
        let fail = |reason: String| TokenizerError {
            path: path.to_owned(),
            reason,
        };
        // Only a regular file of bounded size: a FIFO would block and /dev/zero never ends.
        let bytes = crate::fs::read_regular_file(path, MAX_FILE_BYTES).map_err(|e| {
            fail(match e {
                crate::fs::IoError::NotRegular { kind, .. } => {
                    format!("{kind} is not a readable file")
                }
                crate::fs::IoError::TooLarge { limit, .. } => {
                    format!(
                        "the tokenizer is larger than the {} MiB allowed",
                        limit >> 20
                    )
                }
                crate::fs::IoError::Read { cause, .. }
                | crate::fs::IoError::Write { cause, .. } => {
                    format!("cannot read the tokenizer ({cause})")
                }
                crate::fs::IoError::Invalid { reason, .. } => reason,
            })
        })?;
        let json = String::from_utf8(bytes)
            .map_err(|e| fail(format!("cannot read the tokenizer (not UTF-8: {e})")))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| fail(format!("cannot read the tokenizer ({e})")))?;
        Self::from_json_value(value, path)
    }

    /// A tokenizer from the parsed JSON of a tokenizer.json (or one built from a GGUF's
    /// metadata); `path` is the file it came from, for messages.
    pub fn from_json_value(value: serde_json::Value, path: &Path) -> Result<Self, TokenizerError> {
        let fail = |reason: String| TokenizerError {
            path: path.to_owned(),
            reason,
        };
        let style = VocabStyle::from_tokenizer_value(&value);
        let special_in_file = added_special_ids(&value);
        let expansion = value.get("normalizer").map_or(1, normalizer_expansion);
        let built = catch_quietly(move || -> Result<_, String> {
            let mut inner: tokenizers::Tokenizer =
                serde_json::from_value(value).map_err(|e| e.to_string())?;
            inner.with_padding(None);
            inner
                .with_truncation(None)
                .map_err(|e| format!("cannot turn off truncation ({e})"))?;
            let text_to_id = inner.get_vocab(true);
            Ok((inner, text_to_id))
        });
        let (inner, text_to_id) = match built {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return Err(fail(format!("cannot read the tokenizer ({e})"))),
            Err(panic) => {
                return Err(fail(format!(
                    "the tokenizer crashed while loading ({panic})"
                )));
            }
        };
        let mut id_to_text: Vec<String> = Vec::new();
        for (text, &id) in &text_to_id {
            let id = id as usize;
            if id < MAX_VOCAB_ID {
                if id_to_text.len() <= id {
                    id_to_text.resize(id + 1, String::new());
                }
                id_to_text[id] = text.clone();
            }
        }
        Ok(Self {
            inner,
            path: path.to_owned(),
            style,
            id_to_text,
            text_to_id,
            special: special_in_file,
            expansion,
        })
    }

    /// An upper bound on the bytes the normalizer makes of one input byte, from the
    /// tokenizer.json's normalizer (1 without one).
    pub fn expansion(&self) -> u64 {
        self.expansion
    }

    /// Refuses `text` when its normalized form is longer than `max_bytes`, before anything
    /// that large is built (issue 10 item 3: a `Replace` of "l" by a megabyte made 3.6 GB of a
    /// 41-character text). The text is normalized in chunks small enough that each chunk's
    /// output stays within [`NORMALIZE_CHUNK_BYTES`] even at the worst expansion the file
    /// allows, and the count stops as soon as it passes `max_bytes`. A pattern spanning two
    /// chunks is counted in neither, so the bound is approximate by at most one replacement
    /// per chunk. The error is the reason alone, naming the tokenizer.json.
    pub fn check_normalized_len(&self, text: &str, max_bytes: usize) -> Result<(), String> {
        use tokenizers::Normalizer as _;
        let Some(normalizer) = self.inner.get_normalizer() else {
            return if text.len() > max_bytes {
                Err(self.too_long(text.len(), max_bytes))
            } else {
                Ok(())
            };
        };
        if self.expansion > NORMALIZE_CHUNK_BYTES {
            return Err(format!(
                "the normalizer of {} can turn one character into more than {} MiB; refusing to \
                 run it",
                self.path.display(),
                NORMALIZE_CHUNK_BYTES >> 20
            ));
        }
        let chunk = usize::try_from(NORMALIZE_CHUNK_BYTES / self.expansion.max(1)).unwrap_or(1);
        let mut total = 0usize;
        let mut rest = text;
        while !rest.is_empty() {
            let mut end = chunk.clamp(1, rest.len());
            while !rest.is_char_boundary(end) {
                end += 1;
            }
            let (piece, tail) = rest.split_at(end);
            rest = tail;
            let mut normalized = tokenizers::NormalizedString::from(piece);
            self.guarded(|| normalizer.normalize(&mut normalized))?;
            total = total.saturating_add(normalized.get().len());
            if total > max_bytes {
                return Err(self.too_long(text.len(), max_bytes));
            }
        }
        Ok(())
    }

    fn too_long(&self, input: usize, max_bytes: usize) -> String {
        format!(
            "the {input}-byte text normalizes to more than {max_bytes} bytes, the most this \
             model's position limit allows (tokenizer {})",
            self.path.display()
        )
    }

    /// How this tokenizer spells its vocabulary, decided once from its tokenizer.json.
    pub fn vocab_style(&self) -> &VocabStyle {
        &self.style
    }

    /// The tokenizer.json this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The vocabulary string of `id`, if the file has one.
    pub fn id_to_text(&self, id: u32) -> Option<&str> {
        self.id_to_text
            .get(id as usize)
            .map(String::as_str)
            .filter(|t| !t.is_empty())
    }

    /// The id of a vocabulary string (added tokens included), if it is in the vocabulary.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.text_to_id.get(text).copied()
    }

    /// True for the ids of special added tokens (`[CLS]`, `<s>`, …).
    pub fn is_special(&self, id: u32) -> bool {
        self.special.contains(&id)
    }

    /// Runs a call into the `tokenizers` crate with its panics caught: an error or a panic
    /// becomes one message naming tokenizer.json.
    fn guarded<T, E: std::fmt::Display>(
        &self,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, String> {
        match catch_quietly(f) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!(
                "the tokenizer failed ({e}) with {}",
                self.path.display()
            )),
            Err(panic) => Err(format!(
                "the tokenizer crashed ({panic}) with {}",
                self.path.display()
            )),
        }
    }

    /// Tokens with their vocabulary texts (`##ing`, `Ġquick`), ids, special flags and byte spans.
    /// The error is the reason alone; callers add the input's file name.
    pub fn encode(&self, text: &str) -> Result<Vec<Token>, String> {
        let enc = self.guarded(|| self.inner.encode(text, true))?;
        let tokens: Vec<Token> = enc
            .get_ids()
            .iter()
            .zip(enc.get_tokens())
            .zip(enc.get_special_tokens_mask())
            .zip(enc.get_offsets())
            .map(|(((&id, text), &special), &(start, end))| Token {
                text: text.clone(),
                id,
                is_special: special == 1,
                byte_span: (special == 0).then_some((start, end)),
            })
            .collect();
        if tokens.is_empty() {
            return Err(super::TokenizeError::Empty.to_string());
        }
        Ok(tokens)
    }
}

/// An upper bound on the bytes a tokenizer.json `normalizer` makes of one input byte: a
/// `Sequence` multiplies its members' bounds; a `Replace` can put its content at every byte
/// (1 + its length, for patterns that match empty strings), `Prepend` likewise; `Precompiled`
/// (SentencePiece maps) counts 32; every other normalizer (Unicode forms, BERT's, lowercase,
/// byte-level) 18, the longest NFKC expansion in bytes per byte. Saturates instead of
/// overflowing.
pub fn normalizer_expansion(normalizer: &serde_json::Value) -> u64 {
    let len_of = |key: &str| {
        normalizer
            .get(key)
            .and_then(|v| v.as_str())
            .map_or(0, |s| s.len() as u64)
    };
    match normalizer.get("type").and_then(|t| t.as_str()) {
        None => 1,
        Some("Sequence") => normalizer
            .get("normalizers")
            .and_then(|v| v.as_array())
            .map_or(1, |all| {
                all.iter()
                    .map(normalizer_expansion)
                    .fold(1u64, u64::saturating_mul)
            }),
        Some("Replace") => 1 + len_of("content"),
        Some("Prepend") => 1 + len_of("prepend"),
        Some("Precompiled") => 32,
        Some(_) => 18,
    }
}

/// Ids of the added tokens that tokenizer.json marks special.
fn added_special_ids(json: &serde_json::Value) -> Vec<u32> {
    json.get("added_tokens")
        .and_then(|v| v.as_array())
        .map(|added| {
            added
                .iter()
                .filter(|t| t.get("special").and_then(|v| v.as_bool()) == Some(true))
                .filter_map(|t| t.get("id").and_then(|v| v.as_u64()))
                .filter_map(|id| u32::try_from(id).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn special_files_are_refused_with_their_name() {
        let err = HfTokenizer::from_file(Path::new("/dev/zero"))
            .err()
            .expect("/dev/zero is not a tokenizer");
        assert_eq!(
            err.to_string(),
            "a character device is not a readable file in /dev/zero"
        );
        let dir = std::env::temp_dir().join(format!("attnviz-hf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = HfTokenizer::from_file(&dir).err().expect("a folder");
        assert!(
            err.to_string()
                .starts_with("a folder is not a readable file in "),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn expansion_bounds_multiply_through_sequences() {
        let json = serde_json::json!({"type": "Sequence", "normalizers": [
            {"type": "Replace", "pattern": {"String": "l"}, "content": "abc"},
            {"type": "Prepend", "prepend": "\u{2581}"},
            {"type": "NFC"},
        ]});
        // Replace: 1 + 3; Prepend: 1 + 3 bytes of U+2581; NFC: 18. 4 · 4 · 18 = 288.
        assert_eq!(normalizer_expansion(&json), 288);
        assert_eq!(normalizer_expansion(&serde_json::Value::Null), 1);
    }

    #[test]
    fn a_panic_inside_is_an_error() {
        let caught = catch_quietly(|| -> u32 { panic!("boom") });
        assert_eq!(caught, Err("boom".to_owned()));
        assert!(!panic_is_caught());
        assert_eq!(catch_quietly(|| 7), Ok(7));
    }
}
