//! `tokenizer.json` through the `tokenizers` crate, as transformers' `tokenizer(text)` does it:
//! special tokens added by the post-processor, and no padding or truncation, even when the file
//! stores settings for them (transformers does not apply them on a plain call either).

use super::Token;
use std::path::Path;

/// A Hugging Face tokenizer.
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
}

impl HfTokenizer {
    /// Reads `path` (a tokenizer.json). The error names the file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let mut inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| format!("cannot read the tokenizer ({e}) in {}", path.display()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| format!("cannot turn off truncation ({e}) in {}", path.display()))?;
        Ok(Self { inner })
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
