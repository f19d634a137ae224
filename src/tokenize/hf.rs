//! `tokenizer.json` through the `tokenizers` crate, as transformers' `tokenizer(text)` does it:
//! special tokens added by the post-processor, and no padding or truncation, even when the file
//! stores settings for them (transformers does not apply them on a plain call either).

use super::{Token, VocabStyle};
use std::path::Path;

/// A Hugging Face tokenizer.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    style: VocabStyle,
}

/// The [`VocabStyle`] of `dir/tokenizer.json`; [`VocabStyle::Plain`] when there is none or it
/// cannot be read (then tokens are ids or their strings are shown as they are). For callers that
/// know a checkpoint folder but not its tokenizer: the app's worker and `attnviz render`.
pub fn vocab_style_of_dir(dir: &Path) -> VocabStyle {
    std::fs::read_to_string(dir.join("tokenizer.json")).map_or(VocabStyle::Plain, |json| {
        VocabStyle::from_tokenizer_json(&json)
    })
}

impl HfTokenizer {
    /// Reads `path` (a tokenizer.json). The error names the file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let cannot_read = |e: &dyn std::fmt::Display| {
            format!("cannot read the tokenizer ({e}) in {}", path.display())
        };
        let json = std::fs::read_to_string(path).map_err(|e| cannot_read(&e))?;
        let mut inner: tokenizers::Tokenizer = json.parse().map_err(|e| cannot_read(&e))?;
        let style = VocabStyle::from_tokenizer_json(&json);
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| format!("cannot turn off truncation ({e}) in {}", path.display()))?;
        Ok(Self { inner, style })
    }

    /// How this tokenizer spells its vocabulary, decided once from its tokenizer.json.
    pub fn vocab_style(&self) -> &VocabStyle {
        &self.style
    }

    /// Tokens with their vocabulary texts (`##ing`, `Ġquick`), ids, special flags and byte spans.
    pub fn encode(&self, text: &str) -> Result<Vec<Token>, String> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| format!("tokenizer failed: {e}"))?;
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
