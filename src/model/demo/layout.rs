//! The residual-band layout of the crafted demo (see the module docs of `demo`) and the
//! vectors written into its bands: content, sinusoid and learned positions.

use super::*;

/// Where the bands of the crafted layout sit.
#[derive(Clone, Copy, Debug)]
pub(super) struct Layout {
    /// Band width, d_model / 4.
    pub(super) band: usize,
    /// Width of the content key.
    pub(super) kc: usize,
    /// Sinusoid pairs in the position band.
    pub(super) pairs: usize,
}

impl Layout {
    pub(super) fn new(cfg: &DemoConfig) -> Option<Self> {
        if !cfg.has_crafted_heads() {
            return None;
        }
        let band = cfg.d_model / 4;
        let dh = cfg.d_head();
        let kc = if dh >= 16 {
            (dh - 8).min(band)
        } else {
            dh.min(band)
        };
        Some(Self {
            band,
            kc,
            pairs: band / 4,
        })
    }
    pub(super) fn position(&self) -> usize {
        self.band
    }
    pub(super) fn previous(&self) -> usize {
        2 * self.band
    }
    pub(super) fn scratch(&self) -> usize {
        2 * self.band + self.kc
    }
    pub(super) fn sin_channel(&self, f: usize) -> usize {
        self.position() + 2 * f
    }
    pub(super) fn frequency(&self, f: usize) -> f64 {
        SLOWEST_FREQUENCY.powf(f as f64 / (self.pairs - 1) as f64)
    }
    /// Width of the learned position vectors inside the position band.
    pub(super) fn learned_width(&self, dh: usize) -> usize {
        dh.min(self.band)
    }
    /// Squared norm of every position vector.
    pub(super) fn position_norm_sq(&self) -> f64 {
        2.0 * self.pairs as f64
    }
}

/// Fills `out` (the content band) with the token's content vector: two blocks, the content key
/// `[0, kc)` and the rest, each zero-mean with a fixed norm (√width).
pub(super) fn content_vector(seed: u64, id: u32, layout: &Layout, out: &mut [f32]) {
    let mut rng = Rng::new(seed, 1, u64::from(id));
    for v in out.iter_mut() {
        *v = rng.normal();
    }
    let (key, rest) = out.split_at_mut(layout.kc);
    normalize_block(key, key.len() as f64);
    normalize_block(rest, rest.len() as f64);
}

/// Makes `block` zero-mean with squared norm `norm_sq` (or all zeros if it is too short).
pub(super) fn normalize_block(block: &mut [f32], norm_sq: f64) {
    if block.len() < 2 {
        block.fill(0.0);
        return;
    }
    let mean = block.iter().map(|&v| f64::from(v)).sum::<f64>() / block.len() as f64;
    for v in block.iter_mut() {
        *v -= mean as f32;
    }
    let norm = block
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let s = (norm_sq.sqrt() / norm) as f32;
        for v in block.iter_mut() {
            *v *= s;
        }
    }
}

/// The position band for position `pos`: (sin ω_f t, cos ω_f t) pairs, then their negatives, so
/// that the band sums to zero.
pub(super) fn sinusoid_band(layout: &Layout, pos: usize, band: &mut [f32]) {
    for f in 0..layout.pairs {
        let angle = pos as f64 * layout.frequency(f);
        let (s, c) = (angle.sin() as f32, angle.cos() as f32);
        band[2 * f] = s;
        band[2 * f + 1] = c;
        band[2 * layout.pairs + 2 * f] = -s;
        band[2 * layout.pairs + 2 * f + 1] = -c;
    }
}

pub(super) fn learned_vector(seed: u64, pos: usize, out: &mut [f32], norm_sq: f64) {
    let mut rng = Rng::new(seed, 2, pos as u64);
    for v in out.iter_mut() {
        *v = rng.normal();
    }
    normalize_block(out, norm_sq);
}

/// m − max over 1 ≤ Δ ≤ MAX_TOKENS of Σ_f cos(ω_f Δ): how far every other offset stays below
/// the peak of a sum of cosines at Δ = 0.
pub(super) fn cosine_sum_gap(frequencies: &[f64]) -> f64 {
    let peak = frequencies.len() as f64;
    let best_other = (1..=MAX_TOKENS)
        .map(|delta| {
            frequencies
                .iter()
                .map(|w| (w * delta as f64).cos())
                .sum::<f64>()
        })
        .fold(f64::NEG_INFINITY, f64::max);
    peak - best_other
}
