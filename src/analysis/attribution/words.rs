//! Word aggregation: the scores of a word's pieces summed into one.

use crate::tokenize::{CONTINUATION_MARK, Token, VocabStyle};

/// Groups of token indices that form one word each, in order.
///
/// Special tokens are words of their own. Otherwise, when both tokens have byte spans, a token
/// continues the previous one's word when its span starts where the previous one ended (no
/// space between: `mat` `.`, `play` `##ing`). Without spans the vocabulary style decides:
/// WordPiece pieces starting with the prefix (`##`) continue, byte-level pieces continue unless
/// they start with an encoded space, newline or tab (`Ġ`, `Ċ`, `ĉ`), SentencePiece pieces
/// continue unless they start with the replacement character (`▁`), and plain tokens (the demo
/// without spans) are words of their own.
pub fn word_groups(tokens: &[Token], style: &VocabStyle) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let continues = i > 0 && {
            let prev = &tokens[i - 1];
            !t.is_special
                && !prev.is_special
                && match (prev.byte_span, t.byte_span) {
                    (Some((_, end)), Some((start, _))) => start == end,
                    _ => continues_by_style(&t.text, style),
                }
        };
        match groups.last_mut() {
            Some(g) if continues => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    groups
}

/// Whether a piece spelled `text` continues a word, by the vocabulary's spelling alone.
fn continues_by_style(text: &str, style: &VocabStyle) -> bool {
    match style {
        VocabStyle::Plain => false,
        VocabStyle::WordPiece { prefix } => !prefix.is_empty() && text.starts_with(prefix.as_str()),
        VocabStyle::ByteLevel => !text.starts_with(['Ġ', 'Ċ', 'ĉ']),
        VocabStyle::SentencePiece { replacement, .. } => !text.starts_with(*replacement),
    }
}

/// Sums `scores` (one per token) per word, and labels each word by joining its pieces' labels
/// (a WordPiece continuation's `·` dropped). Returns (scores, labels).
pub fn aggregate_words(
    tokens: &[Token],
    scores: &[f32],
    style: &VocabStyle,
) -> (Vec<f32>, Vec<String>) {
    let groups = word_groups(tokens, style);
    let mut out_scores = Vec::with_capacity(groups.len());
    let mut labels = Vec::with_capacity(groups.len());
    for g in groups {
        let sum: f64 = g
            .iter()
            .filter_map(|&i| scores.get(i))
            .map(|&s| f64::from(s))
            .sum();
        out_scores.push(sum as f32);
        let mut label = String::new();
        for (k, &i) in g.iter().enumerate() {
            let piece = tokens[i].label(style);
            if k == 0 {
                label.push_str(&piece);
            } else {
                label.push_str(piece.strip_prefix(CONTINUATION_MARK).unwrap_or(&piece));
            }
        }
        labels.push(label);
    }
    (out_scores, labels)
}
