//! Turning text into tokens.
//!
//! The built-in demo model uses the two tokenizers here: words plus punctuation (the default) and
//! single characters, where a character is a grapheme cluster, so no token splits one. Every
//! token gets a stable id from a hash of its text, so any Unicode string works and nothing is
//! ever out of vocabulary. Real checkpoints bring their own `tokenizer.json`
//! (`hf`); they produce the same [`Token`] type, whose text is the vocabulary string as
//! transformers' `convert_ids_to_tokens` gives it. Views and figures show [`Token::label`]s
//! instead (`label`): `Ġquick` as `␣quick`, `##ing` as `·ing`; exports keep the raw strings.
//!
//! This module must not touch the UI; only `hf` reads files (a tokenizer.json).

mod hf;
mod input;
mod label;

pub use hf::{HfTokenizer, TokenizerError, catch_quietly, panic_is_caught, vocab_style_of_dir};
pub use input::TokenInput;
pub use label::{
    CONTINUATION_MARK, NEWLINE_MARK, SPACE_MARK, TAB_MARK, VocabStyle, byte_from_byte_level_char,
    bytes_from_byte_level, display_label, display_labels,
};
use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation as _;

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
    /// "Character" means a grapheme cluster (a letter with its marks, a ZWJ emoji, a flag).
    #[default]
    Words,
    /// Every non-whitespace character (grapheme cluster) is a token.
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

/// The grapheme clusters of `text` (what a reader sees as one character: न with its vowel
/// sign, an emoji joined by ZWJs, a flag's two regional indicators, e + a combining accent),
/// each with its byte offset.
fn graphemes(text: &str) -> Vec<(usize, &str)> {
    text.grapheme_indices(true).collect()
}

/// A cluster made only of whitespace (a combining mark on a space is visible: a token).
fn is_blank(cluster: &str) -> bool {
    cluster.chars().all(char::is_whitespace)
}

/// A cluster that continues a word: its base character is a letter, digit, `_` or `'`.
fn is_word_cluster(cluster: &str) -> bool {
    cluster.chars().next().is_some_and(is_word_char)
}

/// Words: runs of word clusters, bracketed specials whole, and every other visible cluster alone.
/// Tokens only ever start and end on grapheme cluster boundaries.
fn words(text: &str) -> Vec<Token> {
    let clusters = graphemes(text);
    let boundary =
        |i: usize| i == text.len() || clusters.binary_search_by_key(&i, |&(at, _)| at).is_ok();
    let mut tokens = Vec::new();
    let mut k = 0;
    while let Some(&(start, cluster)) = clusters.get(k) {
        k += 1;
        if is_blank(cluster) {
            continue;
        }
        if cluster == "["
            && let Some(special) = SPECIAL_TEXTS
                .iter()
                .find(|s| text[start..].starts_with(**s) && boundary(start + s.len()))
        {
            let end = start + special.len();
            while clusters.get(k).is_some_and(|&(at, _)| at < end) {
                k += 1;
            }
            tokens.push(token_at(text, start, end));
            continue;
        }
        let mut end = start + cluster.len();
        if is_word_cluster(cluster) {
            while let Some(&(at, next)) = clusters.get(k) {
                if !is_word_cluster(next) {
                    break;
                }
                end = at + next.len();
                k += 1;
            }
        }
        tokens.push(token_at(text, start, end));
    }
    tokens
}

/// Characters: every grapheme cluster that is not whitespace.
fn chars(text: &str) -> Vec<Token> {
    graphemes(text)
        .into_iter()
        .filter(|(_, cluster)| !is_blank(cluster))
        .map(|(start, cluster)| token_at(text, start, start + cluster.len()))
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

    fn spans_match(text: &str, tokens: &[Token]) {
        for t in tokens {
            let (a, b) = t.byte_span.unwrap();
            assert_eq!(&text[a..b], t.text);
            assert_eq!(t.id, demo_id(&t.text));
        }
    }

    #[test]
    fn words_never_break_a_grapheme_cluster() {
        // नमस्ते (with a virama), woman + ZWJ + laptop, the French flag (two regional
        // indicators), and café with e + U+0301 COMBINING ACUTE ACCENT.
        let text = "नमस्ते 👩\u{200D}💻 🇫🇷 cafe\u{301}! [CLS]";
        let tokens = tokenize(text, DemoTokenizer::Words).unwrap();
        assert_eq!(
            texts(&tokens),
            ["नमस्ते", "👩\u{200D}💻", "🇫🇷", "cafe\u{301}", "!", "[CLS]"]
        );
        assert!(tokens[5].is_special);
        spans_match(text, &tokens);
    }

    #[test]
    fn chars_are_grapheme_clusters() {
        let text = "👩\u{200D}💻 🇫🇷e\u{301}x";
        let tokens = tokenize(text, DemoTokenizer::Chars).unwrap();
        assert_eq!(texts(&tokens), ["👩\u{200D}💻", "🇫🇷", "e\u{301}", "x"]);
        spans_match(text, &tokens);
        // Devanagari: each cluster is a consonant with its signs; none starts with the virama
        // (U+094D) or a vowel sign, and together they give the word back.
        let hindi = tokenize("नमस्ते", DemoTokenizer::Chars).unwrap();
        assert!(hindi.len() >= 3 && hindi.len() <= 4, "{:?}", texts(&hindi));
        assert_eq!(texts(&hindi)[..2], ["न", "म"]);
        assert!(
            hindi
                .iter()
                .all(|t| !t.text.starts_with(['\u{94D}', '\u{947}']))
        );
        assert_eq!(texts(&hindi).concat(), "नमस्ते");
        spans_match("नमस्ते", &hindi);
    }

    #[test]
    fn a_special_token_only_counts_on_cluster_boundaries() {
        // "]" followed by a combining mark is one cluster "]́": no special token splits it.
        let text = "[PAD]\u{301} [PAD]";
        let tokens = tokenize(text, DemoTokenizer::Words).unwrap();
        assert_eq!(texts(&tokens), ["[", "PAD", "]\u{301}", "[PAD]"]);
        assert!(tokens[3].is_pad());
        spans_match(text, &tokens);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        // FNV-1a of "a": (0x811c9dc5 ^ 0x61) * 0x01000193 mod 2^32 = 0xe40c292c; top bit cleared.
        assert_eq!(demo_id("a"), 0xe40c_292c & 0x7fff_ffff);
        assert_ne!(demo_id("the"), demo_id("The"));
    }
}
