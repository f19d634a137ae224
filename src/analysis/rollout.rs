//! Attention rollout (Abnar & Zuidema 2020), the one implementation: the Heatmap's rollout map,
//! `attnviz analyze --what rollout` and `attnviz attribute --method rollout` all read it.
//!
//! For each layer l of a chosen range, the heads are fused (mean, max or min) into A_l; then
//! W′_l = α·A_l + (1 − α)·I with every row renormalised to sum to 1 (a row of zeros stays
//! zero), and R = W′_last ⋯ W′_first: row i of R is how much output position i draws, through
//! the residual stream, on each input token.

use crate::engine::AttentionMaps;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// How the heads of a layer are fused into one map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadFusion {
    /// The mean over heads (the paper's choice).
    #[default]
    Mean,
    /// The cell-wise maximum.
    Max,
    /// The cell-wise minimum.
    Min,
}

impl HeadFusion {
    /// The CLI's spelling.
    pub fn name(self) -> &'static str {
        match self {
            HeadFusion::Mean => "mean",
            HeadFusion::Max => "max",
            HeadFusion::Min => "min",
        }
    }
}

impl std::str::FromStr for HeadFusion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "mean" => Ok(HeadFusion::Mean),
            "max" => Ok(HeadFusion::Max),
            "min" => Ok(HeadFusion::Min),
            other => Err(format!(
                "unknown head fusion {other:?}; expected mean, max or min"
            )),
        }
    }
}

/// How a rollout is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RolloutOptions {
    /// How heads are fused.
    pub fusion: HeadFusion,
    /// The weight of the attention against the identity (the residual), in [0, 1].
    pub alpha: f64,
    /// The first and last layer (inclusive, 0-based); `None`: every layer.
    pub layers: Option<(usize, usize)>,
}

impl Default for RolloutOptions {
    fn default() -> Self {
        RolloutOptions {
            fusion: HeadFusion::Mean,
            alpha: 0.5,
            layers: None,
        }
    }
}

/// The fused map of layer `l` (queries × keys), in f64.
pub fn fuse_heads(maps: &AttentionMaps, l: usize, fusion: HeadFusion) -> Array2<f64> {
    let n = maps.len();
    let heads = maps.heads();
    let mut fused = match fusion {
        HeadFusion::Mean => Array2::<f64>::zeros((n, n)),
        HeadFusion::Max => Array2::from_elem((n, n), f64::NEG_INFINITY),
        HeadFusion::Min => Array2::from_elem((n, n), f64::INFINITY),
    };
    for h in 0..heads {
        if let Some(m) = maps.head(l, h) {
            fused.zip_mut_with(&m, |a, &b| {
                let b = f64::from(b);
                *a = match fusion {
                    HeadFusion::Mean => *a + b / heads.max(1) as f64,
                    HeadFusion::Max => a.max(b),
                    HeadFusion::Min => a.min(b),
                };
            });
        }
    }
    if heads == 0 {
        fused.fill(0.0);
    }
    fused
}

/// The first and last layer (inclusive) `opts` covers in `maps`; an error for an α outside
/// [0, 1], a range outside the maps or maps without layers.
pub fn layer_span(maps: &AttentionMaps, opts: &RolloutOptions) -> Result<(usize, usize), String> {
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(format!("alpha {} is outside [0, 1]", opts.alpha));
    }
    let layers = maps.layers();
    match opts.layers {
        Some((a, b)) if a <= b && b < layers => Ok((a, b)),
        Some((a, b)) => Err(format!(
            "layers {a}-{b} are not a range of the {layers} layers (0-based, first ≤ last)"
        )),
        None if layers == 0 => Err("the maps have no layers".to_owned()),
        None => Ok((0, layers - 1)),
    }
}

/// W′ of layer `l`: the heads fused by `fusion` into A, then α·A + (1 − α)·I with every row
/// renormalised to sum to 1 (a row of zeros stays zero). Shape: [query, key]. The one W′ of the
/// rollout and of the attention flow (`analysis::flow`).
pub fn mixing_matrix(
    maps: &AttentionMaps,
    l: usize,
    fusion: HeadFusion,
    alpha: f64,
) -> Array2<f64> {
    let n = maps.len();
    let mut w = fuse_heads(maps, l, fusion) * alpha;
    for i in 0..n {
        w[(i, i)] += 1.0 - alpha;
    }
    for mut row in w.rows_mut() {
        let sum = row.sum();
        if sum > 0.0 {
            row /= sum;
        }
    }
    w
}

/// The rollout matrix R (output positions × input tokens) of `maps` under `opts`; an error for
/// an α outside [0, 1] or a layer range outside the maps.
pub fn rollout(maps: &AttentionMaps, opts: &RolloutOptions) -> Result<Array2<f64>, String> {
    rollout_observed(maps, opts, &mut |_, _| true)
        .map(|r| r.unwrap_or_else(|| unreachable!("never cancelled")))
}

/// [`rollout`] with progress: `keep_going(layers done, layers)` after each layer of the range;
/// returning false stops the product, and the result is `Ok(None)`.
pub fn rollout_observed(
    maps: &AttentionMaps,
    opts: &RolloutOptions,
    keep_going: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Option<Array2<f64>>, String> {
    let (first, last) = layer_span(maps, opts)?;
    let mut r = Array2::<f64>::eye(maps.len());
    for l in first..=last {
        r = mixing_matrix(maps, l, opts.fusion, opts.alpha).dot(&r);
        if !keep_going(l + 1 - first, last + 1 - first) {
            return Ok(None);
        }
    }
    Ok(Some(r))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    fn maps(layers: Vec<Vec<Array2<f32>>>) -> AttentionMaps {
        let (l, h, n) = (layers.len(), layers[0].len(), layers[0][0].nrows());
        AttentionMaps::from_heads(l, h, n, layers.into_iter().flatten().collect()).unwrap()
    }

    #[test]
    fn one_layer_by_hand() {
        // (The maps are f32: 0.2 and 0.3 are not exact, hence the 1e-7.)
        // One head, causal, 3 tokens: A = [[1,0,0],[0.5,0.5,0],[0.2,0.3,0.5]].
        // W′ = 0.5·A + 0.5·I = [[1,0,0],[0.25,0.75,0],[0.1,0.15,0.75]] (rows already sum to 1).
        let a = array![[1.0f32, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]];
        let r = rollout(&maps(vec![vec![a]]), &RolloutOptions::default()).unwrap();
        let want = array![[1.0, 0.0, 0.0], [0.25, 0.75, 0.0], [0.1, 0.15, 0.75]];
        assert!((&r - &want).iter().all(|d| d.abs() < 1e-7), "{r}");
    }

    #[test]
    fn two_layers_multiply_last_times_first_and_rows_sum_to_one() {
        // Layer 0: W′0 = [[1,0,0],[0.25,0.75,0],[0.1,0.15,0.75]] (as above).
        // Layer 1: A = previous token [[1,0,0],[1,0,0],[0,1,0]] → W′1 = [[1,0,0],[0.5,0.5,0],
        // [0,0.5,0.5]]. R = W′1·W′0: row 2 = 0.5·[0.25,0.75,0] + 0.5·[0.1,0.15,0.75]
        // = [0.175, 0.45, 0.375].
        let a0 = array![[1.0f32, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]];
        let a1 = array![[1.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let m = maps(vec![vec![a0], vec![a1]]);
        let r = rollout(&m, &RolloutOptions::default()).unwrap();
        let row2 = [0.175, 0.45, 0.375];
        for (k, want) in row2.iter().enumerate() {
            assert!((r[[2, k]] - want).abs() < 1e-7, "{r}");
        }
        for row in r.rows() {
            assert!((row.sum() - 1.0).abs() < 1e-9);
        }
        // Only layer 1: W′1 itself.
        let only = rollout(
            &m,
            &RolloutOptions {
                layers: Some((1, 1)),
                ..RolloutOptions::default()
            },
        )
        .unwrap();
        assert_eq!(only[[2, 1]], 0.5);
        // α = 1 (no residual): the plain product of the maps.
        let plain = rollout(
            &m,
            &RolloutOptions {
                alpha: 1.0,
                ..RolloutOptions::default()
            },
        )
        .unwrap();
        // Row 2 of A1·A0 = row 1 of A0 = [0.5, 0.5, 0].
        assert_eq!(plain.row(2).to_vec(), vec![0.5, 0.5, 0.0]);
        // Bad options are errors.
        let bad = RolloutOptions {
            layers: Some((1, 2)),
            ..RolloutOptions::default()
        };
        assert!(rollout(&m, &bad).unwrap_err().contains("layers 1-2"));
        let bad = RolloutOptions {
            alpha: 1.5,
            ..RolloutOptions::default()
        };
        assert!(rollout(&m, &bad).is_err());
        // Observed: one call per layer, and false stops the product.
        let mut calls = Vec::new();
        let all = rollout_observed(&m, &RolloutOptions::default(), &mut |d, t| {
            calls.push((d, t));
            true
        });
        assert_eq!(all.unwrap().unwrap(), r);
        assert_eq!(calls, vec![(1, 2), (2, 2)]);
        let stopped = rollout_observed(&m, &RolloutOptions::default(), &mut |_, _| false);
        assert_eq!(stopped, Ok(None));
    }

    #[test]
    fn heads_fuse_by_mean_max_or_min() {
        let h0 = array![[1.0f32, 0.0], [0.2, 0.8]];
        let h1 = array![[1.0f32, 0.0], [0.6, 0.4]];
        let m = maps(vec![vec![h0, h1]]);
        assert_eq!(
            fuse_heads(&m, 0, HeadFusion::Mean)[[1, 0]],
            (0.2f32 as f64 + 0.6f32 as f64) / 2.0
        );
        assert_eq!(
            fuse_heads(&m, 0, HeadFusion::Max)[[1, 0]],
            f64::from(0.6f32)
        );
        assert_eq!(
            fuse_heads(&m, 0, HeadFusion::Min)[[1, 1]],
            f64::from(0.4f32)
        );
        assert_eq!("max".parse::<HeadFusion>(), Ok(HeadFusion::Max));
        assert!("median".parse::<HeadFusion>().is_err());
    }
}
