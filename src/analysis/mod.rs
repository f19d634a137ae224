//! Pure functions of attention runs: head fusion now; rollout, flow, metrics and saliency later.
//!
//! Nothing here touches files or the UI.

use crate::engine::AttentionMaps;
use ndarray::Array2;

/// Which heads of a layer to show.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeadSelection {
    /// One head.
    Head(usize),
    /// The mean over all heads.
    Mean,
    /// The elementwise maximum over all heads.
    Max,
}

impl std::str::FromStr for HeadSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            other => other
                .parse()
                .map(Self::Head)
                .map_err(|_| format!("bad head {other:?}; expected an index, mean or max")),
        }
    }
}

impl std::fmt::Display for HeadSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadSelection::Head(h) => write!(f, "head {h}"),
            HeadSelection::Mean => write!(f, "mean of heads"),
            HeadSelection::Max => write!(f, "max of heads"),
        }
    }
}

/// The map of `selection` in layer `layer_idx`, or an error naming what does not exist.
/// Shape: [query, key].
pub fn select_heads(
    maps: &AttentionMaps,
    layer_idx: usize,
    selection: &HeadSelection,
) -> Result<Array2<f32>, String> {
    let [layers, heads, n, _] = maps.shape();
    if layer_idx >= layers {
        return Err(format!(
            "layer {layer_idx} does not exist (the model has {layers} layers, 0..{})",
            layers - 1
        ));
    }
    let head = |h: usize| {
        maps.head(layer_idx, h)
            .ok_or_else(|| format!("head {h} does not exist"))
    };
    match selection {
        HeadSelection::Head(h) => {
            if *h >= heads {
                return Err(format!(
                    "head {h} does not exist (the model has {heads} heads, 0..{})",
                    heads - 1
                ));
            }
            Ok(head(*h)?.as_ref().clone())
        }
        HeadSelection::Mean => {
            let mut acc = Array2::<f32>::zeros((n, n));
            for h in 0..heads {
                acc += head(h)?.as_ref();
            }
            acc /= heads as f32;
            Ok(acc)
        }
        HeadSelection::Max => {
            let mut acc = Array2::<f32>::zeros((n, n));
            for h in 0..heads {
                ndarray::Zip::from(&mut acc)
                    .and(head(h)?.as_ref())
                    .for_each(|a, &b| *a = a.max(b));
            }
            Ok(acc)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn mean_and_max_fuse_heads() {
        let maps = AttentionMaps::from_heads(
            1,
            2,
            2,
            vec![
                array![[1.0, 0.0], [0.5, 0.5]],
                array![[0.0, 1.0], [0.9, 0.1]],
            ],
        )
        .unwrap();
        assert_eq!(
            select_heads(&maps, 0, &HeadSelection::Mean).unwrap(),
            array![[0.5, 0.5], [0.7, 0.3]]
        );
        assert_eq!(
            select_heads(&maps, 0, &HeadSelection::Max).unwrap(),
            array![[1.0, 1.0], [0.9, 0.5]]
        );
        assert!(select_heads(&maps, 0, &HeadSelection::Head(2)).is_err());
        assert!(select_heads(&maps, 1, &HeadSelection::Mean).is_err());
    }
}
