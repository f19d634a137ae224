//! The attention-only methods: the last layer's attention row and the attention rollout,
//! read from a forward pass's maps.

use super::target_row;
use crate::engine::AttentionMaps;
use crate::grad::ResolvedTarget;
use ndarray::Array2;

/// The mean over heads of layer `l`, in f64. Shape: [query, key].
fn head_mean(maps: &AttentionMaps, l: usize) -> Array2<f64> {
    let n = maps.len();
    let mut mean = Array2::<f64>::zeros((n, n));
    let heads = maps.heads().max(1) as f64;
    for h in 0..maps.heads() {
        if let Some(m) = maps.head(l, h) {
            mean.zip_mut_with(&m, |a, &b| *a += f64::from(b) / heads);
        }
    }
    mean
}

/// Row P of the last layer's head-mean attention (the mean of its rows for `similarity`).
/// Empty when the maps have no layers.
pub fn attention(maps: &AttentionMaps, target: &ResolvedTarget) -> Vec<f32> {
    match maps.layers().checked_sub(1) {
        Some(last) => target_row(&head_mean(maps, last), target),
        None => Vec::new(),
    }
}

/// Row P of the attention rollout (Abnar & Zuidema 2020), the mean of its rows for
/// `similarity`: W_l = 0.5·mean_h A_l + 0.5·I with rows renormalised to sum to 1, and
/// R = W_{L−1} ⋯ W_0.
pub fn rollout(maps: &AttentionMaps, target: &ResolvedTarget) -> Vec<f32> {
    let n = maps.len();
    let mut r = Array2::<f64>::eye(n);
    for l in 0..maps.layers() {
        let mut w = head_mean(maps, l) * 0.5 + Array2::<f64>::eye(n) * 0.5;
        for mut row in w.rows_mut() {
            let sum = row.sum();
            if sum > 0.0 {
                row /= sum;
            }
        }
        r = w.dot(&r);
    }
    target_row(&r, target)
}
