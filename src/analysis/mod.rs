//! Pure functions of attention runs: head fusion, rollout, flow, value zeroing, head metrics and
//! saliency.
//!
//! Nothing here touches files or the UI.

pub mod answer;
pub mod attribution;
pub mod claims;
mod difference;
pub mod explain;
pub mod flow;
pub mod head_view;
pub mod metrics;
pub mod rollout;
pub mod sampling;
pub mod special;
pub mod teach;
pub mod value_zeroing;

pub use difference::{MapsKind, difference_maps};

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
    /// The mean over a chosen set of heads.
    Set(Vec<usize>),
}

impl std::str::FromStr for HeadSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Self::Mean),
            "max" => Ok(Self::Max),
            other if other.contains(',') => other
                .split(',')
                .map(|h| h.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Set)
                .map_err(|_| format!("bad head set {other:?}; expected indices such as 0,2,5")),
            other => other.parse().map(Self::Head).map_err(|_| {
                format!("bad head {other:?}; expected an index, a set such as 0,2,5, mean or max")
            }),
        }
    }
}

impl std::fmt::Display for HeadSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadSelection::Head(h) => write!(f, "head {h}"),
            HeadSelection::Mean => write!(f, "mean of heads"),
            HeadSelection::Max => write!(f, "max of heads"),
            HeadSelection::Set(set) => {
                let list: Vec<String> = set.iter().map(usize::to_string).collect();
                write!(f, "mean of heads {}", list.join(","))
            }
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
        HeadSelection::Set(set) => {
            if set.is_empty() {
                return Err("the head set is empty".to_owned());
            }
            let mut acc = Array2::<f32>::zeros((n, n));
            for &h in set {
                if h >= heads {
                    return Err(format!(
                        "head {h} does not exist (the model has {heads} heads, 0..{})",
                        heads - 1
                    ));
                }
                acc += head(h)?.as_ref();
            }
            acc /= set.len() as f32;
            Ok(acc)
        }
    }
}

/// Which layer to show: one, or the mean over all layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum LayerSelection {
    /// One layer.
    One(usize),
    /// The mean over every layer.
    Mean,
}

impl std::str::FromStr for LayerSelection {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mean" => Ok(Self::Mean),
            other => other
                .parse()
                .map(Self::One)
                .map_err(|_| format!("bad layer {other:?}; expected an index or mean")),
        }
    }
}

impl std::fmt::Display for LayerSelection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayerSelection::One(l) => write!(f, "layer {l}"),
            LayerSelection::Mean => write!(f, "mean of layers"),
        }
    }
}

/// What a heatmap shows: the layer and heads, and whether special tokens are hidden.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewSpec {
    /// The layer, or the mean over layers.
    pub layer: LayerSelection,
    /// The head, or a combination of heads.
    pub heads: HeadSelection,
    /// Drop special tokens ([CLS], [SEP], [PAD], …) from both axes and renormalise each row, so
    /// that an attention sink does not wash out everything else.
    pub hide_special: bool,
}

/// The matrix a [`ViewSpec`] asks for, and the token index of each of its rows and columns.
/// Shape: [query, key].
pub fn view_matrix(
    maps: &AttentionMaps,
    is_special: &[bool],
    spec: &ViewSpec,
) -> Result<(Array2<f32>, Vec<usize>), String> {
    let matrix = match spec.layer {
        LayerSelection::One(layer_idx) => select_heads(maps, layer_idx, &spec.heads)?,
        LayerSelection::Mean => {
            let n = maps.len();
            let mut acc = Array2::<f32>::zeros((n, n));
            for layer_idx in 0..maps.layers() {
                acc += &select_heads(maps, layer_idx, &spec.heads)?;
            }
            acc /= maps.layers().max(1) as f32;
            acc
        }
    };
    if !spec.hide_special {
        let n = matrix.nrows();
        return Ok((matrix, (0..n).collect()));
    }
    without_special(&matrix, is_special)
}

/// `matrix` (shape [query, key], one row and column per token) without the rows and columns
/// of special tokens, each row renormalised to sum to 1, and the token index of each row and
/// column kept: "hide special tokens" of the heatmap, for attention and rollout maps alike.
pub fn without_special(
    matrix: &Array2<f32>,
    is_special: &[bool],
) -> Result<(Array2<f32>, Vec<usize>), String> {
    let n = matrix.nrows();
    let kept: Vec<usize> = (0..n)
        .filter(|&i| !is_special.get(i).copied().unwrap_or(false))
        .collect();
    if kept.is_empty() {
        return Err("every token is special; nothing is left to show".to_owned());
    }
    let mut out = Array2::<f32>::zeros((kept.len(), kept.len()));
    for (r, &q) in kept.iter().enumerate() {
        let sum: f32 = kept.iter().map(|&k| matrix[(q, k)]).sum();
        for (c, &k) in kept.iter().enumerate() {
            out[(r, c)] = if sum > 0.0 { matrix[(q, k)] / sum } else { 0.0 };
        }
    }
    Ok((out, kept))
}

/// The sum of the given rows of `matrix`, or their mean when `mean` is true. Shape of `matrix`:
/// [query, key]; the result has one value per column.
///
/// Rows out of range are ignored (a repeated row counts each time); with no valid row the result
/// is all zeros.
pub fn combine_rows(matrix: ndarray::ArrayView2<'_, f32>, rows: &[usize], mean: bool) -> Vec<f32> {
    let mut acc = vec![0.0_f32; matrix.ncols()];
    let mut used = 0_usize;
    for &r in rows {
        if r >= matrix.nrows() {
            continue;
        }
        for (a, &v) in acc.iter_mut().zip(matrix.row(r)) {
            *a += v;
        }
        used += 1;
    }
    if mean && used > 1 {
        let count = used as f32;
        for a in &mut acc {
            *a /= count;
        }
    }
    acc
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
        assert_eq!(
            select_heads(&maps, 0, &HeadSelection::Set(vec![1])).unwrap(),
            array![[0.0, 1.0], [0.9, 0.1]]
        );
        assert_eq!(
            "0,1".parse::<HeadSelection>().unwrap(),
            HeadSelection::Set(vec![0, 1])
        );
    }

    #[test]
    fn hiding_special_tokens_renormalises_rows() {
        // Row 1 of the first head is [0.5, 0.5]; hiding token 0 leaves [0.5] → renormalised to [1].
        // Row 0 of the mean over layers: only one layer, so the same as the head.
        let maps = AttentionMaps::from_heads(
            1,
            1,
            3,
            vec![array![[0.6, 0.2, 0.2], [0.5, 0.25, 0.25], [0.8, 0.0, 0.2]]],
        )
        .unwrap();
        let spec = ViewSpec {
            layer: LayerSelection::Mean,
            heads: HeadSelection::Head(0),
            hide_special: true,
        };
        let (m, kept) = view_matrix(&maps, &[true, false, false], &spec).unwrap();
        assert_eq!(kept, [1, 2]);
        assert_eq!(m, array![[0.5, 0.5], [0.0, 1.0]]);
        let all_special = view_matrix(&maps, &[true, true, true], &spec);
        assert!(all_special.is_err());
    }
}

#[cfg(test)]
mod combine_rows_tests {
    use super::combine_rows;
    use ndarray::array;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    #[test]
    fn sums_and_averages_rows() {
        let m = array![[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.0, 0.0, 1.0]];
        // Rows 0 and 1: sum [0.5+0.1, 0.5+0.2, 0.0+0.7] = [0.6, 0.7, 0.7]; mean = half = [0.3, 0.35, 0.35].
        assert!(close(
            &combine_rows(m.view(), &[0, 1], false),
            &[0.6, 0.7, 0.7]
        ));
        assert!(close(
            &combine_rows(m.view(), &[0, 1], true),
            &[0.3, 0.35, 0.35]
        ));
        // Rows 0, 1, 2: sum [0.6, 0.7, 1.7]; mean = third = [0.2, 0.23333, 0.56667].
        assert!(close(
            &combine_rows(m.view(), &[2, 1, 0], true),
            &[0.2, 0.7 / 3.0, 1.7 / 3.0]
        ));
    }

    #[test]
    fn ignores_rows_out_of_range() {
        let m = array![[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.0, 0.0, 1.0]];
        // Row 9 does not exist, so the mean is over row 2 alone: [0, 0, 1].
        assert!(close(
            &combine_rows(m.view(), &[2, 9], true),
            &[0.0, 0.0, 1.0]
        ));
        // No valid rows: zeros, one per column.
        assert!(close(&combine_rows(m.view(), &[], true), &[0.0, 0.0, 0.0]));
        assert!(close(
            &combine_rows(m.view(), &[3], false),
            &[0.0, 0.0, 0.0]
        ));
    }
}
