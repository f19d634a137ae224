//! The attention-only methods: the last layer's attention row and the attention rollout,
//! read from a forward pass's maps.

use super::target_row;
use crate::engine::AttentionMaps;
use crate::grad::ResolvedTarget;
use ndarray::Array2;

/// The mean over heads of layer `l`, in f64. Shape: [query, key].
fn head_mean(maps: &AttentionMaps, l: usize) -> Array2<f64> {
    crate::analysis::rollout::fuse_heads(maps, l, crate::analysis::rollout::HeadFusion::Mean)
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
/// `similarity`: `analysis::rollout` with its defaults (heads by mean, α = 0.5, every layer).
/// Empty when the maps have no layers.
pub fn rollout(maps: &AttentionMaps, target: &ResolvedTarget) -> Vec<f32> {
    match crate::analysis::rollout::rollout(
        maps,
        &crate::analysis::rollout::RolloutOptions::default(),
    ) {
        Ok(r) => target_row(&r, target),
        Err(_) => Vec::new(),
    }
}
