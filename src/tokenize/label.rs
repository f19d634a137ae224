//! Readable labels for vocabulary strings, for the views and figures only.
//!
//! Tokens keep their vocabulary strings as `convert_ids_to_tokens` gives them (`Ġquick`, `##ing`,
//! `▁the`, `<0x0A>`); exports write those. Labels are for people: a space becomes `␣`, a newline
//! `↵`, a tab `⇥`, GPT-2's byte alphabet is decoded back to text, a WordPiece continuation is
//! marked with `·`. Which rules apply is the [`VocabStyle`] of the tokenizer, decided once from
//! its `tokenizer.json`, never guessed from a token.
//!
//! `␣` rather than a bare leading space: a space is invisible at the start of a narrow,
//! right-aligned axis label, and "␣the" against "the" is exactly the word-start/word-piece
//! distinction the reader needs. The markers are ones a reader maps back to spaces without
//! thinking, and the embedded DejaVu Sans (figures and, as a fallback, the app) has all of them.
//!
//! Pure functions: nothing here touches files or the UI, and nothing panics on any input.

use serde::Deserialize;

/// Shown for a space.
pub const SPACE_MARK: char = '␣';
/// Shown for a newline.
pub const NEWLINE_MARK: char = '↵';
/// Shown for a tab.
pub const TAB_MARK: char = '⇥';
/// Put before a WordPiece continuation (`##ing` is shown `·ing`).
pub const CONTINUATION_MARK: char = '·';

/// How a tokenizer spells its vocabulary, which decides how its strings are labelled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VocabStyle {
    /// Labels are the strings themselves: the demo tokenizers, raw ids, attention files.
    #[default]
    Plain,
    /// GPT-2's byte-level BPE (GPT-2, Llama 3, Qwen2, RoBERTa): every byte is one character of
    /// a 256-character alphabet (`Ġ` is a space, `Ċ` a newline).
    ByteLevel,
    /// WordPiece (BERT): pieces that continue a word start with `prefix` (usually `##`).
    WordPiece {
        /// The continuing-subword prefix.
        prefix: String,
    },
    /// SentencePiece-style pieces (Llama 2, T5, Mistral): `replacement` (usually `▁`) stands for
    /// a space; with `byte_fallback`, pieces `<0xNN>` stand for one byte.
    SentencePiece {
        /// The character that stands for a space.
        replacement: char,
        /// Whether `<0xNN>` pieces are bytes.
        byte_fallback: bool,
    },
}

/// The parts of a tokenizer.json node that decide the style; everything else is skipped.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Node {
    #[serde(rename = "type")]
    kind: Option<String>,
    prefix: Option<serde_json::Value>,
    continuing_subword_prefix: Option<serde_json::Value>,
    replacement: Option<serde_json::Value>,
    byte_fallback: Option<serde_json::Value>,
    pattern: Option<serde_json::Value>,
    content: Option<serde_json::Value>,
    decoders: Option<Vec<Node>>,
    pretokenizers: Option<Vec<Node>>,
    normalizers: Option<Vec<Node>>,
}

impl Node {
    fn is(&self, kind: &str) -> bool {
        self.kind.as_deref() == Some(kind)
    }

    /// This node and, for a `Sequence`, its members.
    fn flat(&self) -> Vec<&Node> {
        let mut out = vec![self];
        let children = [&self.decoders, &self.pretokenizers, &self.normalizers];
        for child in children.into_iter().flatten().flatten() {
            out.extend(child.flat());
        }
        out
    }

    /// A `Replace` of `from` by `to` (patterns of the `{"String": ...}` form).
    fn replaces(&self, from: &str, to: &str) -> bool {
        self.is("Replace")
            && self.pattern.as_ref().and_then(|p| p.get("String")) == Some(&from.into())
            && self.content.as_ref() == Some(&to.into())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenizerJson {
    model: Option<Node>,
    normalizer: Option<Node>,
    pre_tokenizer: Option<Node>,
    decoder: Option<Node>,
}

impl VocabStyle {
    /// The style of a tokenizer.json's text: from its decoder (which says how tokens become
    /// text), else its pre-tokenizer, normalizer and model. Unreadable JSON or an unknown
    /// scheme gives [`VocabStyle::Plain`].
    pub fn from_tokenizer_json(json: &str) -> VocabStyle {
        serde_json::from_str::<serde_json::Value>(json)
            .map_or(VocabStyle::Plain, |v| Self::from_tokenizer_value(&v))
    }

    /// [`Self::from_tokenizer_json`] on an already parsed tokenizer.json.
    pub fn from_tokenizer_value(json: &serde_json::Value) -> VocabStyle {
        let Ok(t) = TokenizerJson::deserialize(json) else {
            return VocabStyle::Plain;
        };
        let model = t.model.unwrap_or_default();
        let decoder: Vec<&Node> = t.decoder.as_ref().map(Node::flat).unwrap_or_default();
        let pre: Vec<&Node> = t.pre_tokenizer.as_ref().map(Node::flat).unwrap_or_default();
        let norm: Vec<&Node> = t.normalizer.as_ref().map(Node::flat).unwrap_or_default();
        let byte_fallback = model.byte_fallback == Some(true.into())
            || decoder.iter().any(|d| d.is("ByteFallback"));
        let metaspace = |nodes: &[&Node]| {
            nodes.iter().find(|n| n.is("Metaspace")).map(|n| {
                n.replacement
                    .as_ref()
                    .and_then(|r| r.as_str())
                    .and_then(|r| r.chars().next())
                    .unwrap_or('▁')
            })
        };
        let sentence_piece = |replacement| VocabStyle::SentencePiece {
            replacement,
            byte_fallback,
        };
        let word_piece = |node: &Node| VocabStyle::WordPiece {
            prefix: [&node.prefix, &model.continuing_subword_prefix]
                .into_iter()
                .find_map(|p| {
                    p.as_ref()
                        .and_then(|p| p.as_str())
                        .filter(|p| !p.is_empty())
                })
                .map(str::to_owned)
                .unwrap_or_else(|| "##".to_owned()),
        };
        if decoder.iter().any(|d| d.is("ByteLevel")) {
            return VocabStyle::ByteLevel;
        }
        if let Some(d) = decoder.iter().find(|d| d.is("WordPiece")) {
            return word_piece(d);
        }
        if let Some(r) = metaspace(&decoder) {
            return sentence_piece(r);
        }
        if decoder.iter().any(|d| d.replaces("▁", " ")) {
            return sentence_piece('▁');
        }
        if pre.iter().any(|p| p.is("ByteLevel")) {
            return VocabStyle::ByteLevel;
        }
        if let Some(r) = metaspace(&pre) {
            return sentence_piece(r);
        }
        if norm.iter().any(|n| n.replaces(" ", "▁")) {
            return sentence_piece('▁');
        }
        if model.is("WordPiece") {
            return word_piece(&model);
        }
        VocabStyle::Plain
    }
}

/// Whether GPT-2's byte-level alphabet writes byte `b` as the character with the same code:
/// the visible Latin-1 bytes 33–126, 161–172 and 174–255.
const fn maps_to_itself(b: u32) -> bool {
    matches!(b, 33..=126 | 161..=172 | 174..=255)
}

/// The 68 bytes that do not map to themselves, in increasing order; the k-th is written as the
/// character U+0100 + k.
const SHIFTED_BYTES: [u8; 68] = {
    let mut table = [0u8; 68];
    let (mut b, mut k) = (0u32, 0usize);
    while b < 256 {
        if !maps_to_itself(b) {
            table[k] = b as u8;
            k += 1;
        }
        b += 1;
    }
    table
};

/// The byte that GPT-2's byte-level alphabet writes as `c`, if `c` is in the alphabet.
pub fn byte_from_byte_level_char(c: char) -> Option<u8> {
    let code = u32::from(c);
    if maps_to_itself(code) {
        return u8::try_from(code).ok();
    }
    let k = code.checked_sub(0x100)?;
    SHIFTED_BYTES.get(usize::try_from(k).ok()?).copied()
}

/// The bytes of a byte-level vocabulary string, or `None` if a character is outside the alphabet.
pub fn bytes_from_byte_level(raw: &str) -> Option<Vec<u8>> {
    raw.chars().map(byte_from_byte_level_char).collect()
}

/// Appends `c` with whitespace and control characters made visible.
fn push_visible(out: &mut String, c: char) {
    match c {
        ' ' => out.push(SPACE_MARK),
        '\n' => out.push(NEWLINE_MARK),
        '\t' => out.push(TAB_MARK),
        c if c.is_ascii_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
        c if c.is_control() || (c.is_whitespace() && c != ' ') => {
            out.push_str(&format!("\\u{{{:X}}}", u32::from(c)));
        }
        c => out.push(c),
    }
}

/// Appends `bytes` as text where they are valid UTF-8 and as `\xNN` where they are not (half of
/// a character split between tokens).
fn push_bytes(out: &mut String, bytes: &[u8]) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_visible(out, c);
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
}

/// The byte of a SentencePiece byte-fallback piece `<0xNN>`.
fn fallback_byte(raw: &str) -> Option<u8> {
    let hex = raw.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A readable label for the vocabulary string `raw` of a tokenizer of `style`. Examples:
/// `Ġquick` → `␣quick`, `Ċ` → `↵`, `Ã©` → `é`, `Ã` → `\xC3` (byte-level); `##ing` → `·ing`
/// (WordPiece); `▁the` → `␣the`, `<0x0A>` → `↵`, `<0xE6>` → `\xE6` (SentencePiece).
/// [`VocabStyle::Plain`] returns `raw` unchanged.
pub fn display_label(raw: &str, style: &VocabStyle) -> String {
    let mut out = String::with_capacity(raw.len() + 2);
    match style {
        VocabStyle::Plain => return raw.to_owned(),
        VocabStyle::ByteLevel => match bytes_from_byte_level(raw) {
            Some(bytes) => push_bytes(&mut out, &bytes),
            // Not from the byte alphabet (an added token): its characters as they are.
            None => raw.chars().for_each(|c| push_visible(&mut out, c)),
        },
        VocabStyle::WordPiece { prefix } => {
            let rest = match raw.strip_prefix(prefix.as_str()) {
                Some(rest) if !rest.is_empty() && !prefix.is_empty() => {
                    out.push(CONTINUATION_MARK);
                    rest
                }
                _ => raw,
            };
            rest.chars().for_each(|c| push_visible(&mut out, c));
        }
        VocabStyle::SentencePiece {
            replacement,
            byte_fallback,
        } => match fallback_byte(raw).filter(|_| *byte_fallback) {
            Some(b) => push_bytes(&mut out, &[b]),
            None => {
                for c in raw.chars() {
                    if c == *replacement {
                        out.push(SPACE_MARK);
                    } else {
                        push_visible(&mut out, c);
                    }
                }
            }
        },
    }
    out
}

impl super::Token {
    /// This token's label under `style`: special tokens (`[CLS]`, `<s>`, `<|endoftext|>`) as
    /// they are, others through [`display_label`].
    pub fn label(&self, style: &VocabStyle) -> String {
        if self.is_special {
            self.text.clone()
        } else {
            display_label(&self.text, style)
        }
    }
}

/// The labels of `tokens` under `style`, in order.
pub fn display_labels(tokens: &[super::Token], style: &VocabStyle) -> Vec<String> {
    tokens.iter().map(|t| t.label(style)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenize::{HfTokenizer, Token};
    use std::path::{Path, PathBuf};

    fn byte_level(raw: &str) -> String {
        display_label(raw, &VocabStyle::ByteLevel)
    }

    /// The bytes a label stands for: markers back to whitespace, `\xNN` and `\u{..}` escapes
    /// back to what they escape, everything else as UTF-8. Well defined for labels of text that
    /// has no `␣↵⇥` and no backslash of its own.
    fn bytes_from_label(label: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = label;
        while let Some(c) = rest.chars().next() {
            if let Some(hex) = rest.strip_prefix("\\x").and_then(|r| r.get(..2))
                && let Ok(b) = u8::from_str_radix(hex, 16)
            {
                out.push(b);
                rest = &rest[4..];
                continue;
            }
            if let Some(r) = rest.strip_prefix("\\u{")
                && let Some(end) = r.find('}')
                && let Some(c) = u32::from_str_radix(&r[..end], 16)
                    .ok()
                    .and_then(char::from_u32)
            {
                out.extend_from_slice(c.to_string().as_bytes());
                rest = &r[end + 1..];
                continue;
            }
            let c = match c {
                SPACE_MARK => ' ',
                NEWLINE_MARK => '\n',
                TAB_MARK => '\t',
                c => c,
            };
            out.extend_from_slice(c.to_string().as_bytes());
            rest = &rest[rest.chars().next().map_or(1, char::len_utf8)..];
        }
        out
    }

    #[test]
    fn byte_alphabet_inverse() {
        // Space is the 33rd byte that is not written as itself (0..=32), so U+0100 + 32 = Ġ.
        assert_eq!(byte_from_byte_level_char('Ġ'), Some(b' '));
        assert_eq!(byte_from_byte_level_char('Ċ'), Some(b'\n'));
        assert_eq!(byte_from_byte_level_char('ĉ'), Some(b'\t'));
        assert_eq!(byte_from_byte_level_char('Ā'), Some(0));
        // 127 comes right after 0..=32: U+0100 + 33 = ġ. 128..=160 follow (ĢU+0122 = 128), then
        // 173 (soft hyphen) is the 68th and last: U+0100 + 67 = Ń.
        assert_eq!(byte_from_byte_level_char('ġ'), Some(127));
        assert_eq!(byte_from_byte_level_char('Ģ'), Some(128));
        assert_eq!(byte_from_byte_level_char('Ń'), Some(173));
        assert_eq!(byte_from_byte_level_char('ń'), None);
        assert_eq!(byte_from_byte_level_char('a'), Some(b'a'));
        assert_eq!(byte_from_byte_level_char('Ã'), Some(0xC3));
        assert_eq!(byte_from_byte_level_char('é'), Some(0xE9));
        assert_eq!(byte_from_byte_level_char('東'), None);
        // Every byte has exactly one character: 188 written as themselves + 68 shifted.
        let mut seen = [false; 256];
        for code in 0..0x200u32 {
            if let Some(b) = char::from_u32(code).and_then(byte_from_byte_level_char) {
                assert!(!seen[usize::from(b)], "byte {b} twice");
                seen[usize::from(b)] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn byte_level_labels() {
        assert_eq!(byte_level("Ġquick"), "␣quick");
        assert_eq!(byte_level("quick"), "quick");
        assert_eq!(byte_level("Ċ"), "↵");
        assert_eq!(byte_level("ĊĊ"), "↵↵");
        assert_eq!(byte_level("ĉ"), "⇥");
        assert_eq!(byte_level("ĠĠĠ"), "␣␣␣");
        assert_eq!(byte_level("Ġ&["), "␣&[");
        // é is C3 A9, written Ã©; alone, each half is not UTF-8.
        assert_eq!(byte_level("cafÃ©"), "café");
        assert_eq!(byte_level("Ã"), "\\xC3");
        assert_eq!(byte_level("©"), "\\xA9");
        assert_eq!(byte_level("ĠcafÃ"), "␣caf\\xC3");
        // 東 is E6 9D B1, written æĿ± (9D lies in 128..=160: U+0100 + 33 + (0x9D - 127) = Ŀ).
        assert_eq!(byte_level("æĿ±"), "東");
        assert_eq!(byte_level("æĿ"), "\\xE6\\x9D");
        // Carriage return and NUL are escaped; a no-break space (C2 A0, written Âł: A0 is
        // U+0100 + 33 + (0xA0 - 127) = ł) is an escape, not an invisible blank.
        assert_eq!(byte_level("č"), "\\x0D");
        assert_eq!(byte_level("Ā"), "\\x00");
        assert_eq!(byte_level("Âł"), "\\u{A0}");
        // Characters outside the alphabet (added tokens) are kept.
        assert_eq!(byte_level("<|endoftext|>"), "<|endoftext|>");
        assert_eq!(byte_level("東 x"), "東␣x");
        assert_eq!(byte_level(""), "");
    }

    #[test]
    fn word_piece_labels() {
        let style = VocabStyle::WordPiece {
            prefix: "##".to_owned(),
        };
        assert_eq!(display_label("##ing", &style), "·ing");
        assert_eq!(display_label("walk", &style), "walk");
        assert_eq!(display_label("##", &style), "##");
        assert_eq!(display_label("#", &style), "#");
        assert_eq!(display_label("[CLS]", &style), "[CLS]");
        assert_eq!(display_label("", &style), "");
        let odd = VocabStyle::WordPiece {
            prefix: String::new(),
        };
        assert_eq!(display_label("ing", &odd), "ing");
    }

    #[test]
    fn sentence_piece_labels() {
        let style = VocabStyle::SentencePiece {
            replacement: '▁',
            byte_fallback: true,
        };
        assert_eq!(display_label("▁the", &style), "␣the");
        assert_eq!(display_label("▁▁", &style), "␣␣");
        assert_eq!(display_label("ing", &style), "ing");
        assert_eq!(display_label("<0x0A>", &style), "↵");
        assert_eq!(display_label("<0x41>", &style), "A");
        assert_eq!(display_label("<0x20>", &style), "␣");
        assert_eq!(display_label("<0xE6>", &style), "\\xE6");
        assert_eq!(display_label("<0x00>", &style), "\\x00");
        for not_a_byte in ["<0x>", "<0xABC>", "<0xZZ>", "<0x0A", "<s>", "</s>", "<unk>"] {
            assert_eq!(display_label(not_a_byte, &style), not_a_byte);
        }
        let no_fallback = VocabStyle::SentencePiece {
            replacement: '▁',
            byte_fallback: false,
        };
        assert_eq!(display_label("<0x0A>", &no_fallback), "<0x0A>");
    }

    #[test]
    fn plain_labels_and_specials_are_unchanged() {
        for raw in ["Ġquick", "##ing", "▁the", "a b", "\n", "", "[CLS]"] {
            assert_eq!(display_label(raw, &VocabStyle::Plain), raw);
        }
        let mut special = Token::from_text("ĠĠ");
        special.is_special = true;
        assert_eq!(special.label(&VocabStyle::ByteLevel), "ĠĠ");
        special.is_special = false;
        assert_eq!(special.label(&VocabStyle::ByteLevel), "␣␣");
        // The demo's tokens look exactly as before.
        let demo = crate::tokenize::tokenize(
            "[CLS] Größe ĠĊ ##ing ▁x",
            crate::tokenize::DemoTokenizer::Words,
        )
        .unwrap();
        let raw: Vec<&str> = demo.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(display_labels(&demo, &VocabStyle::Plain), raw);
    }

    #[test]
    fn arbitrary_strings_never_panic() {
        let styles = [
            VocabStyle::Plain,
            VocabStyle::ByteLevel,
            VocabStyle::WordPiece {
                prefix: "##".to_owned(),
            },
            VocabStyle::SentencePiece {
                replacement: '▁',
                byte_fallback: true,
            },
        ];
        let mut samples: Vec<String> = (0..0x3000u32)
            .step_by(7)
            .filter_map(char::from_u32)
            .map(|c| format!("{c}<0x{c}>##{c}▁"))
            .collect();
        samples.extend(["\u{0}", "\u{7f}\u{85}", "<0x", "##", "▁", "\\x"].map(str::to_owned));
        for s in &samples {
            for style in &styles {
                let _ = display_label(s, style);
            }
        }
    }

    #[test]
    fn style_from_tokenizer_json() {
        let style = |json: &str| VocabStyle::from_tokenizer_json(json);
        assert_eq!(
            style(r#"{"model":{"type":"BPE"},"decoder":{"type":"ByteLevel"}}"#),
            VocabStyle::ByteLevel
        );
        // Llama 3: the byte level is inside a Sequence of pre-tokenizers.
        assert_eq!(
            style(
                r#"{"model":{"type":"BPE"},"pre_tokenizer":{"type":"Sequence","pretokenizers":
                [{"type":"Split","pattern":{"Regex":"x"}},{"type":"ByteLevel"}]},"decoder":null}"#
            ),
            VocabStyle::ByteLevel
        );
        assert_eq!(
            style(
                r###"{"model":{"type":"WordPiece"},"decoder":{"type":"WordPiece","prefix":"##"}}"###
            ),
            VocabStyle::WordPiece {
                prefix: "##".to_owned()
            }
        );
        assert_eq!(
            style(r#"{"model":{"type":"WordPiece","continuing_subword_prefix":"@@"}}"#),
            VocabStyle::WordPiece {
                prefix: "@@".to_owned()
            }
        );
        // Llama 2 as transformers converts it: BPE with byte fallback, decoded by Replace.
        assert_eq!(
            style(
                r#"{"model":{"type":"BPE","byte_fallback":true},
                "normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},
                  {"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
                "pre_tokenizer":null,
                "decoder":{"type":"Sequence","decoders":[
                  {"type":"Replace","pattern":{"String":"▁"},"content":" "},
                  {"type":"ByteFallback"},{"type":"Fuse"},
                  {"type":"Strip","content":" ","start":1,"stop":0}]}}"#
            ),
            VocabStyle::SentencePiece {
                replacement: '▁',
                byte_fallback: true
            }
        );
        // T5: Unigram with Metaspace, no byte fallback.
        assert_eq!(
            style(
                r#"{"model":{"type":"Unigram"},"pre_tokenizer":{"type":"Metaspace","replacement":"▁"},
                "decoder":{"type":"Metaspace","replacement":"▁"}}"#
            ),
            VocabStyle::SentencePiece {
                replacement: '▁',
                byte_fallback: false
            }
        );
        for plain in [
            "",
            "not json",
            "[]",
            "{}",
            r#"{"model":{"type":"BPE"}}"#,
            r#"{"decoder":{"type":"ByteLevel","decoders":7}}"#,
        ] {
            assert_eq!(style(plain), VocabStyle::Plain, "{plain}");
        }
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    fn golden_texts(name: &str) -> Vec<(String, Vec<String>)> {
        let golden = std::fs::read_to_string(fixture(name).join("golden.json")).unwrap();
        let golden: serde_json::Value = serde_json::from_str(&golden).unwrap();
        golden
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let tokens = r["tokens"].as_array().unwrap();
                let tokens = tokens.iter().map(|t| t.as_str().unwrap().to_owned());
                (r["text"].as_str().unwrap().to_owned(), tokens.collect())
            })
            .collect()
    }

    /// Byte-level fixtures: the labels of the non-special tokens, turned back into bytes by
    /// [`bytes_from_label`], concatenate to the text, for the golden inputs and for text whose
    /// multi-byte characters the tiny vocabularies split into single bytes.
    #[test]
    fn byte_level_fixture_labels_give_back_the_text() {
        let extra = "naïve café — 東京\n\tend  x";
        for name in ["gpt2", "llama", "llama3"] {
            let tokenizer = HfTokenizer::from_file(&fixture(name).join("tokenizer.json")).unwrap();
            let style = tokenizer.vocab_style().clone();
            assert_eq!(style, VocabStyle::ByteLevel, "{name}");
            assert_eq!(crate::tokenize::vocab_style_of_dir(&fixture(name)), style);
            let mut texts = golden_texts(name);
            texts.push((extra.to_owned(), Vec::new()));
            let mut split_chars = 0;
            for (text, golden) in texts {
                let tokens = tokenizer.encode(&text).unwrap();
                let raw: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
                if !golden.is_empty() {
                    assert_eq!(raw, golden, "{name}: not the golden tokens");
                }
                let labels = display_labels(&tokens, &style);
                let mut bytes = Vec::new();
                for (token, label) in tokens.iter().zip(&labels) {
                    if token.is_special {
                        assert_eq!(*label, token.text);
                        continue;
                    }
                    assert!(!label.contains(['Ġ', 'Ċ', 'ĉ']), "{name}: {label}");
                    bytes.extend(bytes_from_label(label));
                    split_chars += usize::from(label.contains("\\x"));
                }
                assert_eq!(String::from_utf8_lossy(&bytes), text, "{name}: {labels:?}");
                // Where every token is whole UTF-8, the labels are the text with marked blanks.
                if !labels.iter().any(|l| l.contains('\\')) {
                    let shown: String = labels
                        .iter()
                        .zip(&tokens)
                        .filter(|(_, t)| !t.is_special)
                        .map(|(l, _)| l.as_str())
                        .collect();
                    let marked = text.replace(' ', "␣").replace('\n', "↵").replace('\t', "⇥");
                    assert_eq!(shown, marked);
                }
            }
            // The tiny vocabularies do split é and 東 into bytes: the escapes were exercised.
            assert!(split_chars > 0, "{name}");
        }
    }

    /// WordPiece (BERT): each token's label without the continuation mark is its (lower-cased,
    /// as the normaliser does) slice of the text, and the mark is there exactly on `##` tokens.
    #[test]
    fn word_piece_fixture_labels_match_the_text() {
        let tokenizer = HfTokenizer::from_file(&fixture("bert").join("tokenizer.json")).unwrap();
        let style = tokenizer.vocab_style().clone();
        assert_eq!(
            style,
            VocabStyle::WordPiece {
                prefix: "##".to_owned()
            }
        );
        let mut texts = golden_texts("bert");
        texts.push(("unbelievably walking quickly".to_owned(), Vec::new()));
        let mut continuations = 0;
        for (text, golden) in texts {
            let tokens = tokenizer.encode(&text).unwrap();
            if !golden.is_empty() {
                let raw: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
                assert_eq!(raw, golden);
            }
            for token in &tokens {
                let label = token.label(&style);
                let Some((start, end)) = token.byte_span else {
                    assert!(token.is_special);
                    assert_eq!(label, token.text);
                    continue;
                };
                let continued = token.text.starts_with("##");
                continuations += usize::from(continued);
                assert_eq!(label.starts_with(CONTINUATION_MARK), continued, "{label}");
                let word = label.strip_prefix(CONTINUATION_MARK).unwrap_or(&label);
                assert_eq!(word, text[start..end].to_lowercase());
            }
        }
        assert!(continuations > 0, "no ## token was checked");
    }
}
