//! Turning text into tokens.
//!
//! The built-in demo model uses the two tokenizers here: words plus punctuation (the default) and
//! single characters. Every token gets a stable id from a hash of its text, so any Unicode string
//! works and nothing is ever out of vocabulary. Real checkpoints bring their own `tokenizer.json`
//! (`hf`); they produce the same [`Token`] type, whose text is the vocabulary string as
//! transformers' `convert_ids_to_tokens` gives it. Views and figures show [`Token::label`]s
//! instead (`label`): `Ġquick` as `␣quick`, `##ing` as `·ing`; exports keep the raw strings.
//!
//! This module must not touch the UI; only `hf` reads files (a tokenizer.json).

mod hf;
mod label;

pub use hf::{HfTokenizer, TokenizerError, catch_quietly, panic_is_caught, vocab_style_of_dir};
pub use label::{
    CONTINUATION_MARK, NEWLINE_MARK, SPACE_MARK, TAB_MARK, VocabStyle, byte_from_byte_level_char,
    bytes_from_byte_level, display_label, display_labels,
};
use serde::{Deserialize, Serialize};

/// One token of the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// The token's text, as the vocabulary stores it.
    pub text: String,
    /// The token id. For the demo tokenizers this is [`demo_id`] of the text.
    pub id: u32,
    /// True for special tokens such as `[CLS]`, `[SEP]` or `[PAD]`.
    pub is_special: bool,
    /// Byte range `start..end` of this token in the source text, when there is one.
    pub byte_span: Option<(usize, usize)>,
}

impl Token {
    /// A token built from its text alone, with the demo id and no span.
    pub fn from_text(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            id: demo_id(text),
            is_special: is_special_text(text),
            byte_span: None,
        }
    }

    /// True when this is a padding token (the literal text `[PAD]`).
    pub fn is_pad(&self) -> bool {
        self.text == PAD_TEXT
    }
}

/// The literal text that the demo treats as a padding token.
pub const PAD_TEXT: &str = "[PAD]";

/// Bracketed special tokens that the word tokenizer keeps whole.
const SPECIAL_TEXTS: [&str; 7] = [
    "[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[BOS]", "[EOS]",
];

fn is_special_text(text: &str) -> bool {
    SPECIAL_TEXTS.contains(&text)
}

/// Which demo tokenizer to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoTokenizer {
    /// Runs of letters and digits are words; every other visible character is its own token.
    #[default]
    Words,
    /// Every non-whitespace character is a token.
    Chars,
}

impl DemoTokenizer {
    /// Both tokenizers, for pickers.
    pub const ALL: [DemoTokenizer; 2] = [DemoTokenizer::Words, DemoTokenizer::Chars];

    /// The name used on the command line and in session files.
    pub fn name(self) -> &'static str {
        match self {
            DemoTokenizer::Words => "words",
            DemoTokenizer::Chars => "chars",
        }
    }
}

impl std::str::FromStr for DemoTokenizer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "words" => Ok(Self::Words),
            "chars" => Ok(Self::Chars),
            other => Err(format!(
                "unknown tokenizer {other:?}; expected words or chars"
            )),
        }
    }
}

/// Errors from tokenizing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizeError {
    /// The input held no tokens at all (empty or only whitespace).
    #[error("nothing to tokenize: the input is empty")]
    Empty,
}

/// Tokenizes `text` with the chosen demo tokenizer.
pub fn tokenize(text: &str, kind: DemoTokenizer) -> Result<Vec<Token>, TokenizeError> {
    let tokens = match kind {
        DemoTokenizer::Words => words(text),
        DemoTokenizer::Chars => chars(text),
    };
    if tokens.is_empty() {
        return Err(TokenizeError::Empty);
    }
    Ok(tokens)
}

fn token_at(text: &str, start: usize, end: usize) -> Token {
    let piece = &text[start..end];
    Token {
        text: piece.to_owned(),
        id: demo_id(piece),
        is_special: is_special_text(piece),
        byte_span: Some((start, end)),
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '\''
}

fn words(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        if c.is_whitespace() {
            continue;
        }
        if c == '['
            && let Some(special) = SPECIAL_TEXTS
                .iter()
                .find(|s| text[start..].starts_with(**s))
        {
            let end = start + special.len();
            while rest.peek().is_some_and(|(i, _)| *i < end) {
                rest.next();
            }
            tokens.push(token_at(text, start, end));
            continue;
        }
        if is_word_char(c) {
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = rest.peek() {
                if !is_word_char(next) {
                    break;
                }
                end = i + next.len_utf8();
                rest.next();
            }
            tokens.push(token_at(text, start, end));
        } else {
            tokens.push(token_at(text, start, start + c.len_utf8()));
        }
    }
    tokens
}

fn chars(text: &str) -> Vec<Token> {
    text.char_indices()
        .filter(|(_, c)| !c.is_whitespace())
        .map(|(start, c)| token_at(text, start, start + c.len_utf8()))
        .collect()
}

/// Stable 31-bit id of a token text: FNV-1a over the UTF-8 bytes.
///
/// It never changes between runs or platforms, so the demo's embeddings (seeded by the id) do not
/// either.
pub fn demo_id(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash & 0x7fff_ffff
}

/// Tokens for raw ids when there is no vocabulary: the text of each token is its id.
pub fn tokens_from_ids(ids: &[u32]) -> Vec<Token> {
    ids.iter()
        .map(|&id| Token {
            text: id.to_string(),
            id,
            is_special: false,
            byte_span: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(tokens: &[Token]) -> Vec<&str> {
        tokens.iter().map(|t| t.text.as_str()).collect()
    }

    #[test]
    fn words_split_punctuation_and_keep_specials() {
        let tokens = tokenize("[CLS] Hello, world! don't [PAD]", DemoTokenizer::Words).unwrap();
        assert_eq!(
            texts(&tokens),
            ["[CLS]", "Hello", ",", "world", "!", "don't", "[PAD]"]
        );
        assert!(tokens[0].is_special && tokens[6].is_pad());
        assert!(!tokens[1].is_special);
        assert_eq!(tokens[3].byte_span, Some((13, 18)));
    }

    #[test]
    fn unicode_text_has_byte_spans_on_char_boundaries() {
        let text = "Größe 東京タワー ok";
        let tokens = tokenize(text, DemoTokenizer::Words).unwrap();
        assert_eq!(texts(&tokens), ["Größe", "東京タワー", "ok"]);
        for t in &tokens {
            let (a, b) = t.byte_span.unwrap();
            assert_eq!(&text[a..b], t.text);
        }
        let chars = tokenize("東 京", DemoTokenizer::Chars).unwrap();
        assert_eq!(texts(&chars), ["東", "京"]);
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(
            tokenize("  \n\t", DemoTokenizer::Words),
            Err(TokenizeError::Empty)
        );
        assert_eq!(
            tokenize("", DemoTokenizer::Chars),
            Err(TokenizeError::Empty)
        );
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        // FNV-1a of "a": (0x811c9dc5 ^ 0x61) * 0x01000193 mod 2^32 = 0xe40c292c; top bit cleared.
        assert_eq!(demo_id("a"), 0xe40c_292c & 0x7fff_ffff);
        assert_ne!(demo_id("the"), demo_id("The"));
    }
}
