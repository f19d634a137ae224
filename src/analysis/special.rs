//! "Hide special tokens" for views that draw every head of a run (the head view): the maps
//! without the special tokens' rows and columns, every head renormalised by the same
//! [`view_matrix`] the heatmap uses.

use super::{HeadSelection, LayerSelection, ViewSpec, view_matrix};
use crate::engine::AttentionMaps;

/// `maps` with the tokens flagged in `special` ([CLS], [SEP], [PAD], …) dropped from both axes
/// of every head and each row renormalised, and the original index of each kept token. `None`
/// when no token is special (the maps are shown as they are), every token is (nothing would be
/// left), or `special` does not match the maps.
pub fn without_special(
    maps: &AttentionMaps,
    special: &[bool],
) -> Option<(AttentionMaps, Vec<usize>)> {
    if !special.contains(&true) || !special.contains(&false) {
        return None;
    }
    let [layers, heads, _, _] = maps.shape();
    let mut kept_maps = Vec::with_capacity(layers * heads);
    let mut kept = Vec::new();
    for layer_idx in 0..layers {
        for head_idx in 0..heads {
            let spec = ViewSpec {
                layer: LayerSelection::One(layer_idx),
                heads: HeadSelection::Head(head_idx),
                hide_special: true,
            };
            let (matrix, k) = view_matrix(maps, special, &spec).ok()?;
            kept_maps.push(matrix);
            kept = k;
        }
    }
    let out = AttentionMaps::from_heads(layers, heads, kept.len(), kept_maps)?;
    Some((out, kept))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use ndarray::array;

    #[test]
    fn drops_special_tokens_and_renormalises_every_head() {
        let head = array![[1.0, 0.0, 0.0], [0.5, 0.25, 0.25], [0.2, 0.2, 0.6]];
        let maps = AttentionMaps::from_heads(1, 1, 3, vec![head]).unwrap();
        let (out, kept) = without_special(&maps, &[true, false, false]).unwrap();
        assert_eq!(kept, [1, 2]);
        let m = out.head(0, 0).unwrap();
        // Row "a": 0.25 and 0.25 of the kept keys sum to 0.5 → 0.5 and 0.5.
        // Row "b": 0.2 and 0.6 sum to 0.8 → 0.25 and 0.75.
        assert_eq!(*m, array![[0.5, 0.5], [0.25, 0.75]]);
        // Nothing special, or everything: the maps are shown as they are.
        assert!(without_special(&maps, &[false, false, false]).is_none());
        assert!(without_special(&maps, &[true, true, true]).is_none());
    }
}
