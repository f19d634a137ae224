//! "Hide special tokens" for views that draw whole runs (the head view): the run without its
//! special tokens, every head renormalised by the same [`view_matrix`] the heatmap uses.

use crate::analysis::{HeadSelection, LayerSelection, ViewSpec, view_matrix};
use crate::engine::{AppliedMask, AttentionMaps};
use crate::pipeline::Run;

/// `run` with its special tokens ([CLS], [SEP], [PAD], …) dropped from both axes of every head
/// and each row renormalised, and the original index of each kept token. `None` when no token
/// is special (the run is shown as it is) or every token is (nothing would be left).
pub fn without_special(run: &Run) -> Option<(Run, Vec<usize>)> {
    let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
    if !special.contains(&true) || !special.contains(&false) {
        return None;
    }
    let [layers, heads, _, _] = run.maps.shape();
    let mut maps = Vec::with_capacity(layers * heads);
    let mut kept = Vec::new();
    for layer_idx in 0..layers {
        for head_idx in 0..heads {
            let spec = ViewSpec {
                layer: LayerSelection::One(layer_idx),
                heads: HeadSelection::Head(head_idx),
                hide_special: true,
            };
            let (matrix, k) = view_matrix(&run.maps, &special, &spec).ok()?;
            maps.push(matrix);
            kept = k;
        }
    }
    let maps = AttentionMaps::from_heads(layers, heads, kept.len(), maps)?;
    let tokens = kept.iter().map(|&i| run.tokens[i].clone()).collect();
    // The mask's token indices name the full run; the head view draws no masked cells.
    let mut filtered = Run::from_maps(tokens, maps, AppliedMask::default(), run.model.clone());
    filtered.fully_masked_queries = run
        .fully_masked_queries
        .iter()
        .filter_map(|q| kept.iter().position(|k| k == q))
        .collect();
    filtered.vocab_style = run.vocab_style.clone();
    filtered.kv_groups = run.kv_groups.clone();
    filtered.text = run.text.clone();
    Some((filtered, kept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::tokenize::Token;
    use ndarray::array;

    #[test]
    fn drops_special_tokens_and_renormalises_every_head() {
        let mut tokens: Vec<Token> = ["[CLS]", "a", "b"]
            .iter()
            .map(|t| Token::from_text(t))
            .collect();
        tokens[0].is_special = true;
        let head = array![[1.0, 0.0, 0.0], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]];
        let maps = AttentionMaps::from_heads(1, 1, 3, vec![head]).unwrap();
        let run = Run::of_maps(tokens, maps);
        let (out, kept) = without_special(&run).unwrap();
        assert_eq!(kept, [1, 2]);
        assert_eq!(out.tokens.len(), 2);
        let m = out.maps.head(0, 0).unwrap();
        // Row "a": 0.25 and 0.25 of the kept keys sum to 0.5 → 0.5 and 0.5.
        // Row "b": 0.2 and 0.6 sum to 0.8 → 0.25 and 0.75.
        assert_eq!(*m, array![[0.5, 0.5], [0.25, 0.75]]);
        // Nothing special: the run is shown as it is.
        let mut plain = run;
        plain.tokens[0].is_special = false;
        assert!(without_special(&plain).is_none());
    }
}
