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
}

/// The [`VocabStyle`] of `dir/tokenizer.json`; [`VocabStyle::Plain`] when there is none or it
/// cannot be read (then tokens are ids or their strings are shown as they are). For callers that
/// know a checkpoint folder but not its tokenizer.
pub fn vocab_style_of_dir(dir: &Path) -> VocabStyle {
    std::fs::read_to_string(dir.join("tokenizer.json")).map_or(VocabStyle::Plain, |json| {
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
        let meta = std::fs::metadata(path)
            .map_err(|e| fail(format!("cannot read the tokenizer ({e})")))?;
        if !meta.is_file() {
            return Err(fail("not a regular file".to_owned()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(format!(
                "the tokenizer is {} MB, more than the {} MB allowed",
                meta.len() >> 20,
                MAX_FILE_BYTES >> 20
            )));
        }
        let json = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the tokenizer ({e})")))?;
        let value: serde_json::Value = serde_json::from_str(&json)
            .map_err(|e| fail(format!("cannot read the tokenizer ({e})")))?;
        let style = VocabStyle::from_tokenizer_value(&value);
        let special_in_file = added_special_ids(&value);
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
        })
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

    /// Tokens with their vocabulary texts (`##ing`, `Ġquick`), ids, special flags and byte spans.
    /// The error is the reason alone; callers add the input's file name.
    pub fn encode(&self, text: &str) -> Result<Vec<Token>, String> {
        let enc = match catch_quietly(|| self.inner.encode(text, true)) {
            Ok(Ok(enc)) => enc,
            Ok(Err(e)) => {
                return Err(format!(
                    "the tokenizer failed ({e}) with {}",
                    self.path.display()
                ));
            }
            Err(panic) => {
                return Err(format!(
                    "the tokenizer crashed ({panic}) with {}",
                    self.path.display()
                ));
            }
        };
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
        assert_eq!(err.to_string(), "not a regular file in /dev/zero");
        let dir = std::env::temp_dir().join(format!("attnviz-hf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = HfTokenizer::from_file(&dir).err().expect("a folder");
        assert!(
            err.to_string().starts_with("not a regular file in "),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_panic_inside_is_an_error() {
        let caught = catch_quietly(|| -> u32 { panic!("boom") });
        assert_eq!(caught, Err("boom".to_owned()));
        assert!(!panic_is_caught());
        assert_eq!(catch_quietly(|| 7), Ok(7));
    }
}
