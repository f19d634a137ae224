//! Position inside attention: rotary embeddings (RoPE) and ALiBi biases.
//!
//! Additive encodings (sinusoidal, learned) are added to the embeddings by the model, not here.

use ndarray::{ArrayViewMut2, Axis};

/// How attention itself sees positions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttentionPosition {
    /// Attention is position-blind (the model may still add positions to its embeddings).
    None,
    /// Rotary embeddings in rotate-half form (as in HF Llama), with base `theta`.
    Rope {
        /// The frequency base, usually 10000.
        theta: f32,
    },
    /// ALiBi: a bias of −m_h·|query − key| per head, with the slopes from the ALiBi paper.
    Alibi,
}

/// RoPE frequencies for a head of width `d_head`: θ_k = base^(−2k/d_head) for k < d_head/2.
pub fn rope_frequencies(d_head: usize, theta: f32) -> Vec<f32> {
    let half = d_head / 2;
    (0..half)
        .map(|k| (f64::from(theta).powf(-(2.0 * k as f64) / d_head as f64)) as f32)
        .collect()
}

/// Rotates one head's queries or keys in place, rotate-half form.
///
/// Dimension k pairs with k + d_head/2; at position t the pair turns by t·θ_k.
/// Shape of `x`: [token, d_head].
pub fn apply_rope(mut x: ArrayViewMut2<'_, f32>, frequencies: &[f32]) {
    let half = frequencies.len();
    for (pos, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        for (k, &freq) in frequencies.iter().enumerate() {
            // Angles in f64: pos·θ grows large for long inputs.
            let angle = pos as f64 * f64::from(freq);
            let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
            let a = row[k];
            let b = row[k + half];
            row[k] = a * cos - b * sin;
            row[k + half] = b * cos + a * sin;
        }
    }
}

/// ALiBi slopes for `heads` heads: the geometric sequence 2^(−8/n), 2^(−16/n), … for the nearest
/// power of two n ≤ heads, interleaved with the next power's odd terms when heads is not a power
/// of two (as in the ALiBi paper's reference code).
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    fn power_of_two_slopes(n: usize) -> Vec<f64> {
        let start = 2f64.powf(-8.0 / n as f64);
        (1..=n).map(|i| start.powi(i as i32)).collect()
    }
    if heads == 0 {
        return Vec::new();
    }
    let closest = 1usize << (usize::BITS - 1 - heads.leading_zeros());
    let mut slopes = power_of_two_slopes(closest);
    if closest < heads {
        let extra = power_of_two_slopes(2 * closest);
        slopes.extend(extra.iter().step_by(2).take(heads - closest));
    }
    slopes.into_iter().map(|s| s as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn alibi_slopes_match_the_paper() {
        // 8 heads: 2^-1, 2^-2, ..., 2^-8.
        let s = alibi_slopes(8);
        assert_eq!(s[0], 0.5);
        assert_eq!(s[7], 1.0 / 256.0);
        // 6 heads: the 4-head slopes 2^-2..2^-8 in steps of 2, then every other 8-head slope: 2^-1, 2^-3.
        assert_eq!(
            alibi_slopes(6),
            [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
        );
    }

    #[test]
    fn rope_rotates_pairs_by_position() {
        // d_head 2, θ_0 = 1: position 1 turns (1, 0) by 1 radian to (cos 1, sin 1).
        let mut x = array![[1.0f32, 0.0], [1.0, 0.0]];
        apply_rope(x.view_mut(), &rope_frequencies(2, 10_000.0));
        assert_eq!(x.row(0).to_vec(), [1.0, 0.0]);
        assert!((x[(1, 0)] - 1f32.cos()).abs() < 1e-7 && (x[(1, 1)] - 1f32.sin()).abs() < 1e-7);
        // d_head 4: the second pair turns at 10000^(-1/2) = 0.01 rad per step.
        assert_eq!(rope_frequencies(4, 10_000.0), [1.0, 0.01]);
    }
}
