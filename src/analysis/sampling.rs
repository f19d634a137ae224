//! Sampling the next token from a model's logits, as generation does it: temperature, then
//! top-k, then top-p (nucleus), then a seeded draw. The walkthrough's sampling step shows each
//! stage on the model's real next-token distribution.
//!
//! Pure functions: nothing here touches files, models or the UI, and nothing panics on any
//! input (NaN or infinite logits, k = 0 or larger than the vocabulary, p outside (0, 1],
//! a temperature of 0, below 0 or infinite).
//!
//! Log-probabilities work as well as logits: they differ by one constant per row, which the
//! softmax cancels at every temperature.

/// How the next-token distribution is reshaped before the draw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingSettings {
    /// Divides the logits before the softmax: below 1 sharpens, above 1 flattens. 0 (or below,
    /// or NaN) is greedy decoding: all the probability on the most likely token.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps them all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability adds up to at least
    /// `top_p`; 1 (or more, or NaN) keeps them all, 0 or below keeps the most likely one.
    pub top_p: f32,
}

impl Default for SamplingSettings {
    /// Plain sampling from the model's distribution: T = 1, no top-k, no top-p.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        }
    }
}

/// A row of logits sorted once, most likely first; every later stage works on this ranking,
/// which temperature, top-k and top-p never change. NaN logits rank with −∞, last.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RankedLogits {
    /// Vocabulary ids by rank.
    ids: Vec<u32>,
    /// Their logits, largest first.
    logits: Vec<f32>,
}

/// A distribution over the ranks of a [`RankedLogits`], after temperature, top-k and top-p.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Distribution {
    /// Probability of each rank (same length as the ranking). Sums to 1 unless empty.
    pub probs: Vec<f64>,
    /// How many tokens have a probability above 0: the ones a draw can give.
    pub kept: usize,
}

/// NaN ranks with −∞.
fn rank_key(v: f32) -> f32 {
    if v.is_nan() { f32::NEG_INFINITY } else { v }
}

impl RankedLogits {
    /// Sorts `logits` (indexed by vocabulary id), largest first; equal logits by id.
    pub fn new(logits: &[f32]) -> Self {
        let mut order: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(id, &v)| (u32::try_from(id).unwrap_or(u32::MAX), v))
            .collect();
        order.sort_by(|a, b| rank_key(b.1).total_cmp(&rank_key(a.1)).then(a.0.cmp(&b.0)));
        Self {
            ids: order.iter().map(|&(id, _)| id).collect(),
            logits: order.iter().map(|&(_, v)| v).collect(),
        }
    }

    /// The number of tokens ranked.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is ranked.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vocabulary id at `rank` (0 = most likely).
    pub fn id(&self, rank: usize) -> Option<u32> {
        self.ids.get(rank).copied()
    }

    /// The logit at `rank`.
    pub fn logit(&self, rank: usize) -> Option<f32> {
        self.logits.get(rank).copied()
    }

    /// softmax(logits / `temperature`) by rank, in f64. Greedy (one-hot on rank 0) when the
    /// temperature is not above 0; uniform over the finite logits when it is +∞. Logits of −∞
    /// or NaN get 0; when some are +∞, they share all the probability. All zeros when no
    /// logit is finite or +∞ (there is nothing to choose).
    pub fn softmax(&self, temperature: f32) -> Vec<f64> {
        let mut probs = vec![0.0; self.logits.len()];
        let Some(&top) = self.logits.first() else {
            return probs;
        };
        if top.is_nan() || top == f32::NEG_INFINITY {
            return probs;
        }
        if top == f32::INFINITY {
            let tied = self.logits.iter().take_while(|&&v| v == top).count();
            for p in probs.iter_mut().take(tied) {
                *p = 1.0 / tied as f64;
            }
            return probs;
        }
        // Not above 0, or NaN: greedy.
        if temperature.is_nan() || temperature <= 0.0 {
            probs[0] = 1.0;
            return probs;
        }
        let (top, t) = (f64::from(top), f64::from(temperature));
        let mut sum = 0.0;
        for (p, &v) in probs.iter_mut().zip(&self.logits) {
            if v.is_finite() {
                // ≤ 0, so exp never overflows; rank 0 gives exactly 1, so sum ≥ 1.
                *p = ((f64::from(v) - top) / t).exp();
                sum += *p;
            }
        }
        probs.iter_mut().for_each(|p| *p /= sum);
        probs
    }

    /// The distribution a draw is made from: [`Self::softmax`] at the temperature, then only
    /// the `top_k` most likely tokens, then the nucleus of `top_p` of what is left,
    /// renormalised after each cut (the order of Hugging Face's logits warpers).
    pub fn distribution(&self, settings: &SamplingSettings) -> Distribution {
        let mut probs = self.softmax(settings.temperature);
        let k = settings.top_k;
        if k > 0 && k < probs.len() {
            probs[k..].iter_mut().for_each(|p| *p = 0.0);
        }
        let sum: f64 = probs.iter().sum();
        if sum > 0.0 && settings.top_p < 1.0 {
            // The nucleus: ranks until the (renormalised) sum reaches p; at least one token.
            let wanted = f64::from(settings.top_p.max(0.0)) * sum;
            let mut cumulative = 0.0;
            let mut end = probs.len();
            for (rank, &p) in probs.iter().enumerate() {
                cumulative += p;
                if cumulative >= wanted {
                    end = rank + 1;
                    break;
                }
            }
            probs[end..].iter_mut().for_each(|p| *p = 0.0);
        }
        let sum: f64 = probs.iter().sum();
        if sum > 0.0 {
            probs.iter_mut().for_each(|p| *p /= sum);
        }
        let kept = probs.iter().filter(|&&p| p > 0.0).count();
        Distribution { probs, kept }
    }
}

/// The rank that a uniform number `u` in [0, 1) picks from `probs`: the first rank whose
/// cumulative probability exceeds `u`. `None` when every probability is 0.
pub fn rank_from_uniform(probs: &[f64], u: f64) -> Option<usize> {
    let total: f64 = probs.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return None;
    }
    let target = u.clamp(0.0, 1.0) * total;
    let mut cumulative = 0.0;
    let mut last_kept = None;
    for (rank, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            cumulative += p;
            last_kept = Some(rank);
            if cumulative > target {
                return Some(rank);
            }
        }
    }
    // Rounding left u at or above the sum: the last token that can be drawn.
    last_kept
}

/// A uniform number in [0, 1) from `seed`: the same seed always gives the same number.
pub fn uniform_from_seed(seed: u64) -> f64 {
    // Purpose 0x5a4d ("sampling") keeps this stream apart from the demo weights'.
    let bits = crate::model::rng::Rng::new(seed, 0x5a4d, 0).next_u64();
    // The top 53 bits: every f64 in [0, 1) with that spacing, equally likely.
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// Draws a rank from `distribution` with `seed`; `None` when nothing can be drawn.
pub fn draw(distribution: &Distribution, seed: u64) -> Option<usize> {
    rank_from_uniform(&distribution.probs, uniform_from_seed(seed))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
    }

    fn dist(logits: &[f32], temperature: f32, top_k: usize, top_p: f32) -> Vec<f64> {
        RankedLogits::new(logits)
            .distribution(&SamplingSettings {
                temperature,
                top_k,
                top_p,
            })
            .probs
    }

    #[test]
    fn ranks_largest_first_with_ties_by_id_and_nan_last() {
        let r = RankedLogits::new(&[0.0, 2.0, f32::NAN, 2.0, f32::NEG_INFINITY]);
        let ids: Vec<u32> = (0..r.len()).map(|i| r.id(i).unwrap()).collect();
        // 2.0 (id 1), 2.0 (id 3), 0.0 (id 0), then −∞ (id 2 is NaN, id 4 is −∞: equal, by id).
        assert_eq!(ids, vec![1, 3, 0, 2, 4]);
        assert_eq!(r.id(5), None);
        assert!(RankedLogits::new(&[]).is_empty());
    }

    #[test]
    fn temperature_reshapes_the_softmax() {
        let r = RankedLogits::new(&[0.0, 2.0, 1.0]);
        // T = 1: e^0, e^-1, e^-2 = 1, 0.367879, 0.135335; sum 1.503214
        //   → 0.665241, 0.244728, 0.090031 (ranks: logit 2, 1, 0).
        close(&r.softmax(1.0), &[0.665_241, 0.244_728, 0.090_031]);
        // T = 2: e^0, e^-0.5, e^-1 = 1, 0.606531, 0.367879; sum 1.974410
        //   → 0.506480, 0.307196, 0.186324.
        close(&r.softmax(2.0), &[0.506_480, 0.307_196, 0.186_324]);
        // T = 0.5: e^0, e^-2, e^-4 = 1, 0.135335, 0.018316; sum 1.153651
        //   → 0.866819, 0.117310, 0.015876.
        close(&r.softmax(0.5), &[0.866_819, 0.117_310, 0.015_876]);
        // T → 0 is greedy; T = 0, negative or NaN is greedy by definition.
        close(&r.softmax(1e-30), &[1.0, 0.0, 0.0]);
        for t in [0.0, -1.0, f32::NAN] {
            close(&r.softmax(t), &[1.0, 0.0, 0.0]);
        }
        // T = ∞: every finite logit equally likely.
        close(&r.softmax(f32::INFINITY), &[1.0 / 3.0; 3]);
        close(&r.softmax(f32::MAX), &[1.0 / 3.0; 3]);
    }

    #[test]
    fn top_k_keeps_the_k_most_likely_renormalised() {
        let logits = [2.0, 1.0, 0.0];
        // Top-2 of [1, 0.367879, 0.135335]: [1, 0.367879] / 1.367879 = 0.731059, 0.268941.
        close(&dist(&logits, 1.0, 2, 1.0), &[0.731_059, 0.268_941, 0.0]);
        close(&dist(&logits, 1.0, 1, 1.0), &[1.0, 0.0, 0.0]);
        // k = 0 is off; k ≥ the vocabulary keeps everything.
        for k in [0, 3, 4, usize::MAX] {
            close(
                &dist(&logits, 1.0, k, 1.0),
                &[0.665_241, 0.244_728, 0.090_031],
            );
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus_reaching_p() {
        let logits = [2.0, 1.0, 0.0];
        // Cumulative 0.665241, 0.909969, 1: p = 0.7 needs two tokens → 0.731059, 0.268941.
        close(&dist(&logits, 1.0, 0, 0.7), &[0.731_059, 0.268_941, 0.0]);
        // p = 0.6: the first token alone reaches it.
        close(&dist(&logits, 1.0, 0, 0.6), &[1.0, 0.0, 0.0]);
        // p = 0.95: all three.
        close(
            &dist(&logits, 1.0, 0, 0.95),
            &[0.665_241, 0.244_728, 0.090_031],
        );
        // p ≤ 0 keeps the most likely token; p ≥ 1 and NaN are off.
        close(&dist(&logits, 1.0, 0, 0.0), &[1.0, 0.0, 0.0]);
        close(&dist(&logits, 1.0, 0, -3.0), &[1.0, 0.0, 0.0]);
        for p in [1.0, 7.0, f32::NAN] {
            close(
                &dist(&logits, 1.0, 0, p),
                &[0.665_241, 0.244_728, 0.090_031],
            );
        }
    }

    #[test]
    fn temperature_then_top_k_then_top_p() {
        // T = 2: 0.506480, 0.307196, 0.186324. Top-2 renormalised: [1, 0.606531] / 1.606531
        //   = 0.622459, 0.377541. Top-p 0.6 of that: 0.622459 ≥ 0.6 → the first token alone.
        let logits = [2.0, 1.0, 0.0];
        close(&dist(&logits, 2.0, 2, 1.0), &[0.622_459, 0.377_541, 0.0]);
        close(&dist(&logits, 2.0, 2, 0.6), &[1.0, 0.0, 0.0]);
        // Top-p 0.6 without top-k at T = 2: 0.506480 < 0.6, +0.307196 = 0.813676 → two tokens,
        //   [1, 0.606531] / 1.606531 again.
        close(&dist(&logits, 2.0, 0, 0.6), &[0.622_459, 0.377_541, 0.0]);
        let d = RankedLogits::new(&logits).distribution(&SamplingSettings {
            temperature: 2.0,
            top_k: 2,
            top_p: 0.6,
        });
        assert_eq!(d.kept, 1);
    }

    #[test]
    fn non_finite_logits_never_panic() {
        // −∞ and NaN get nothing; the rest is the softmax of [1, 0]: 0.731059, 0.268941.
        close(
            &dist(&[1.0, f32::NEG_INFINITY, f32::NAN, 0.0], 1.0, 0, 1.0),
            &[0.731_059, 0.268_941, 0.0, 0.0],
        );
        // +∞ takes everything, shared between ties, at any temperature.
        close(
            &dist(&[f32::INFINITY, 5.0, f32::INFINITY], 0.3, 0, 1.0),
            &[0.5, 0.5, 0.0],
        );
        // Nothing finite: nothing to draw.
        let d = RankedLogits::new(&[f32::NAN, f32::NEG_INFINITY]).distribution(&SamplingSettings {
            temperature: 1.0,
            top_k: 1,
            top_p: 0.5,
        });
        assert_eq!(d.kept, 0);
        assert_eq!(draw(&d, 7), None);
        let empty = RankedLogits::new(&[]).distribution(&SamplingSettings::default());
        assert_eq!(empty.kept, 0);
        assert_eq!(draw(&empty, 7), None);
        // Huge logits do not overflow: softmax of [3e38, −3e38] at T = 1e-3 is one-hot.
        close(&dist(&[-3e38, 3e38], 1e-3, 0, 1.0), &[1.0, 0.0]);
    }

    #[test]
    fn a_uniform_number_picks_by_cumulative_probability() {
        // Cumulative 0.665241, 0.909969, 1.
        let probs = [0.665_241, 0.244_728, 0.090_031];
        assert_eq!(rank_from_uniform(&probs, 0.0), Some(0));
        assert_eq!(rank_from_uniform(&probs, 0.5), Some(0));
        assert_eq!(rank_from_uniform(&probs, 0.7), Some(1));
        assert_eq!(rank_from_uniform(&probs, 0.95), Some(2));
        // u at or past the sum (rounding) is the last token that can be drawn, never rank 3.
        assert_eq!(rank_from_uniform(&[0.5, 0.5, 0.0], 1.0), Some(1));
        assert_eq!(rank_from_uniform(&[0.0, 0.0], 0.5), None);
        assert_eq!(rank_from_uniform(&[], 0.5), None);
    }

    #[test]
    fn seeded_draws_are_reproducible_and_follow_the_distribution() {
        let d = RankedLogits::new(&[2.0, 1.0, 0.0]).distribution(&SamplingSettings::default());
        assert_eq!(draw(&d, 42), draw(&d, 42));
        let mut counts = [0usize; 3];
        for seed in 0..20_000 {
            let u = uniform_from_seed(seed);
            assert!((0.0..1.0).contains(&u));
            counts[draw(&d, seed).unwrap()] += 1;
        }
        // 20,000 draws: each share within 0.01 of 0.665, 0.245, 0.090 (σ ≤ 0.0034).
        for (count, want) in counts.iter().zip([0.665_241, 0.244_728, 0.090_031]) {
            let share = *count as f64 / 20_000.0;
            assert!((share - want).abs() < 0.01, "{counts:?}");
        }
        // Top-k 1: every seed gives the most likely token.
        let greedy = RankedLogits::new(&[2.0, 1.0, 0.0]).distribution(&SamplingSettings {
            top_k: 1,
            ..SamplingSettings::default()
        });
        assert!((0..100).all(|seed| draw(&greedy, seed) == Some(0)));
    }
}
