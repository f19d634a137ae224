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
    /// Rotary embeddings with Llama 3's frequency scaling (`rope_type: "llama3"`).
    RopeLlama3 {
        /// The RoPE base.
        theta: f32,
        /// How the frequencies are rescaled.
        scaling: Llama3Scaling,
    },
}

/// Llama 3's RoPE frequency scaling: low frequencies are divided by `factor`, high ones kept,
/// and those in between interpolated smoothly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Llama3Scaling {
    /// Divisor of the low frequencies.
    pub factor: f32,
    /// Wavelengths above original_max_positions / low_freq_factor count as low.
    pub low_freq_factor: f32,
    /// Wavelengths below original_max_positions / high_freq_factor count as high.
    pub high_freq_factor: f32,
    /// The context length the model was pre-trained with.
    pub original_max_positions: f32,
}

/// RoPE frequencies with Llama 3 scaling, as transformers' `_compute_llama3_parameters`.
pub fn llama3_frequencies(d_head: usize, theta: f32, s: Llama3Scaling) -> Vec<f32> {
    let (factor, low, high, old) = (
        f64::from(s.factor),
        f64::from(s.low_freq_factor),
        f64::from(s.high_freq_factor),
        f64::from(s.original_max_positions),
    );
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    rope_frequencies(d_head, theta)
        .into_iter()
        .map(|f| {
            let f = f64::from(f);
            let wavelen = std::f64::consts::TAU / f;
            let scaled = if wavelen > low_wavelen { f / factor } else { f };
            let medium = wavelen >= high_wavelen && wavelen <= low_wavelen;
            let out = if medium {
                let smooth = (old / wavelen - low) / (high - low);
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            };
            out as f32
        })
        .collect()
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
pub fn apply_rope(x: ArrayViewMut2<'_, f32>, frequencies: &[f32]) {
    RopeAngles::new(x.nrows(), frequencies).rotate(x);
}

/// The cosines and sines of every position's RoPE angles t·θ_k (in f64, rounded to f32),
/// computed once and shared by every head a layer rotates: the same for all of them, and
/// computing them per head was 12 of every 13 `sin`/`cos` calls in a SmolLM2 layer.
pub struct RopeAngles {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeAngles {
    /// The angles of positions `0..positions` for `frequencies` (d_head/2 of them).
    pub fn new(positions: usize, frequencies: &[f32]) -> Self {
        let half = frequencies.len();
        let mut cos = Vec::with_capacity(positions * half);
        let mut sin = Vec::with_capacity(positions * half);
        for pos in 0..positions {
            for &freq in frequencies {
                // Angles in f64: pos·θ grows large for long inputs.
                let angle = pos as f64 * f64::from(freq);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Self { half, cos, sin }
    }

    /// Turns each pair of `x` ([token, d_head], at most as many tokens as the angles have
    /// positions) by its angle: [`apply_rope`].
    pub fn rotate(&self, x: ArrayViewMut2<'_, f32>) {
        self.turn(x, 1.0);
    }

    /// Turns each pair back by its angle: the adjoint of [`Self::rotate`] (its inverse).
    pub fn unrotate(&self, x: ArrayViewMut2<'_, f32>) {
        self.turn(x, -1.0);
    }

    /// `(a, b) → (a·cos − b·s, b·cos + a·s)` with `s = direction · sin`: the flip of the sine's
    /// sign is exact, so backwards is exactly `(a·cos + b·sin, b·cos − a·sin)`.
    fn turn(&self, mut x: ArrayViewMut2<'_, f32>, direction: f32) {
        let half = self.half;
        for (pos, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
            for k in 0..half {
                let (cos, sin) = (
                    self.cos[pos * half + k],
                    direction * self.sin[pos * half + k],
                );
                let a = row[k];
                let b = row[k + half];
                row[k] = a * cos - b * sin;
                row[k + half] = b * cos + a * sin;
            }
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
    fn llama3_scaling_matches_transformers() {
        // From transformers 5.24 ROPE_INIT_FUNCTIONS["llama3"] with head width 64, theta 500000,
        // factor 8, low 1, high 4, original context 8192: high frequencies are kept, low ones
        // divided by 8, and the band between is interpolated.
        let want: [f64; 32] = [
            1.0,
            0.663601279,
            0.440366626,
            0.292227834,
            0.193922758,
            0.128687382,
            0.0853971019,
            0.0566696189,
            0.0376060307,
            0.0249554086,
            0.0165604409,
            0.0109895291,
            0.00729266508,
            0.00483942125,
            0.00321144611,
            0.00137189368,
            0.000524846022,
            0.000178507791,
            7.78465546e-05,
            5.16590699e-05,
            3.42810235e-05,
            2.2748929e-05,
            1.50962178e-05,
            1.00178686e-05,
            6.64786967e-06,
            4.41153452e-06,
            2.92749974e-06,
            1.94269251e-06,
            1.28917316e-06,
            8.55496921e-07,
            5.6770881e-07,
            3.7673226e-07,
        ];
        let s = Llama3Scaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_positions: 8192.0,
        };
        let got = llama3_frequencies(64, 500_000.0, s);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!(((f64::from(*g) - w) / w).abs() < 2e-6, "{g} vs {w}");
        }
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
