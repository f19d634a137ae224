//! Differences of attention: the maps of an ablated run minus those of the run without the
//! ablations, what the Heatmap and Grid show in their difference view.

use crate::engine::AttentionMaps;
use std::sync::Arc;

/// What a run's maps hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MapsKind {
    /// Attention probabilities: every row sums to 1 (or is all zeros).
    #[default]
    Attention,
    /// Ablated minus unablated probabilities: values in [−1, 1], every row summing to 0.
    AblationDifference,
}

/// `a − b` head by head. Shape: [layer, head, query, key], as both; `Err` says how they differ.
pub fn difference_maps(a: &AttentionMaps, b: &AttentionMaps) -> Result<AttentionMaps, String> {
    if a.shape() != b.shape() {
        return Err(format!(
            "cannot subtract maps of shape {:?} from maps of shape {:?}",
            b.shape(),
            a.shape()
        ));
    }
    let [layers, heads, n, _] = a.shape();
    let mut maps = Vec::with_capacity(layers * heads);
    for l in 0..layers {
        for h in 0..heads {
            let (Some(x), Some(y)) = (a.head(l, h), b.head(l, h)) else {
                return Err(format!("head {l}.{h} is missing"));
            };
            // The same map (a layer before the first ablation shares it): zeros, no subtraction.
            let diff = if Arc::ptr_eq(&x, &y) {
                ndarray::Array2::zeros(x.raw_dim())
            } else {
                &*x - &*y
            };
            maps.push(Arc::new(diff));
        }
    }
    AttentionMaps::from_shared(layers, heads, n, maps).ok_or_else(|| "inconsistent shapes".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn differences_are_head_by_head() {
        // One layer, two heads, two tokens: a − b cell by cell; rows of a difference sum to 0.
        let a = AttentionMaps::from_heads(
            1,
            2,
            2,
            vec![
                array![[1.0, 0.0], [0.25, 0.75]],
                array![[1.0, 0.0], [0.5, 0.5]],
            ],
        )
        .unwrap();
        let b = AttentionMaps::from_heads(
            1,
            2,
            2,
            vec![
                array![[1.0, 0.0], [0.5, 0.5]],
                array![[1.0, 0.0], [0.5, 0.5]],
            ],
        )
        .unwrap();
        let d = difference_maps(&a, &b).unwrap();
        assert_eq!(*d.head(0, 0).unwrap(), array![[0.0, 0.0], [-0.25, 0.25]]);
        assert_eq!(*d.head(0, 1).unwrap(), array![[0.0, 0.0], [0.0, 0.0]]);
        let short =
            AttentionMaps::from_heads(1, 1, 2, vec![array![[1.0, 0.0], [0.5, 0.5]]]).unwrap();
        assert!(
            difference_maps(&a, &short)
                .unwrap_err()
                .contains("[1, 1, 2, 2]")
        );
    }
}
