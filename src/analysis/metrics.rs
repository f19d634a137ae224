//! Per-head metrics of attention maps (the head-metrics dashboard of issue 23): pure functions
//! of one head's map, the keys each query may attend to and the tokens. Rows with a single
//! allowed key say nothing about a head (its softmax has no choice) and are left out of every
//! mean; a metric with no qualifying query is `None`.

use ndarray::ArrayView2;
use serde::Serialize;

/// What the metrics need besides the map: the applied mask's allowed pairs (`None`: every pair)
/// and, per token, its id, whether the tokenizer marks it special and whether its readable
/// label is entirely punctuation.
#[derive(Clone, Copy, Debug)]
pub struct MetricInput<'a> {
    /// Allowed (query, key) pairs, or `None` when nothing is masked.
    pub allowed: Option<ArrayView2<'a, bool>>,
    /// Token ids (for `duplicate_token`).
    pub ids: &'a [u32],
    /// Special tokens ([CLS], <s>, …).
    pub special: &'a [bool],
    /// Tokens whose label is entirely Unicode punctuation.
    pub punctuation: &'a [bool],
}

/// One head's metrics; `None` where no query qualifies.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HeadMetrics {
    /// Mean over queries of −Σ p ln p, in nats.
    pub entropy: Option<f64>,
    /// The entropy divided by ln(number of allowed keys): 1 for a uniform row.
    pub entropy_norm: Option<f64>,
    /// Mean over queries q ≥ 1 of A[q, q−1].
    pub prev_token: Option<f64>,
    /// Mean of A[q, q].
    #[serde(rename = "self")]
    pub self_attention: Option<f64>,
    /// Mean over queries q ≥ 1 of A[q, 0]: the weight on the first token (the sink).
    pub first_token: Option<f64>,
    /// Mean share of a row on special tokens.
    pub special: Option<f64>,
    /// Mean share of a row on punctuation.
    pub punctuation: Option<f64>,
    /// Mean over queries of Σ_k p·|q − k|, in tokens.
    pub mean_distance: Option<f64>,
    /// Mean row maximum.
    pub confidence: Option<f64>,
    /// Over queries whose token id occurred earlier, the mean summed weight on the earlier
    /// copies.
    pub duplicate_token: Option<f64>,
}

/// A running mean that is `None` until something is added.
#[derive(Default)]
struct Mean {
    sum: f64,
    count: usize,
}

impl Mean {
    fn add(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
    }

    fn get(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// The metrics of head map `a` (queries × keys).
pub fn head_metrics(a: ArrayView2<f32>, input: &MetricInput<'_>) -> HeadMetrics {
    let (n, keys) = a.dim();
    let allowed = |q: usize, k: usize| {
        input
            .allowed
            .is_none_or(|m| m.get((q, k)).copied().unwrap_or(false))
    };
    let flag = |flags: &[bool], k: usize| flags.get(k).copied().unwrap_or(false);
    let mut m: [Mean; 10] = Default::default();
    for q in 0..n {
        let allowed_keys = (0..keys).filter(|&k| allowed(q, k)).count();
        if allowed_keys < 2 {
            continue;
        }
        let row = a.row(q);
        let p = |k: usize| f64::from(row[k]);
        let entropy: f64 = (0..keys)
            .map(p)
            .filter(|&v| v > 0.0)
            .map(|v| -v * v.ln())
            .sum();
        m[0].add(entropy);
        m[1].add(entropy / (allowed_keys as f64).ln());
        if q >= 1 && q - 1 < keys {
            m[2].add(p(q - 1));
        }
        if q < keys {
            m[3].add(p(q));
        }
        if q >= 1 {
            m[4].add(p(0));
        }
        m[5].add((0..keys).filter(|&k| flag(input.special, k)).map(p).sum());
        m[6].add(
            (0..keys)
                .filter(|&k| flag(input.punctuation, k))
                .map(p)
                .sum(),
        );
        m[7].add((0..keys).map(|k| p(k) * q.abs_diff(k) as f64).sum());
        m[8].add((0..keys).map(p).fold(0.0, f64::max));
        if let Some(&id) = input.ids.get(q) {
            let earlier: Vec<usize> = (0..q.min(keys))
                .filter(|&k| input.ids.get(k) == Some(&id))
                .collect();
            if !earlier.is_empty() {
                m[9].add(earlier.iter().map(|&k| p(k)).sum());
            }
        }
    }
    HeadMetrics {
        entropy: m[0].get(),
        entropy_norm: m[1].get(),
        prev_token: m[2].get(),
        self_attention: m[3].get(),
        first_token: m[4].get(),
        special: m[5].get(),
        punctuation: m[6].get(),
        mean_distance: m[7].get(),
        confidence: m[8].get(),
        duplicate_token: m[9].get(),
    }
}

/// How many of a layer's heads are sinks: their `first_token` above one half.
pub fn sink_heads(layer: &[HeadMetrics]) -> usize {
    layer
        .iter()
        .filter(|m| m.first_token.is_some_and(|v| v > 0.5))
        .count()
}

/// True when `label` is non-empty and every character is Unicode punctuation (general
/// categories Pc, Pd, Ps, Pe, Pi, Pf, Po, as far as the standard library tells: ASCII
/// punctuation and the common Unicode quotes, dashes and brackets).
pub fn is_punctuation(label: &str) -> bool {
    let label = label.trim();
    !label.is_empty()
        && label.chars().all(|c| {
            c.is_ascii_punctuation()
                || matches!(
                    c,
                    '‘' | '’'
                        | '“'
                        | '”'
                        | '«'
                        | '»'
                        | '–'
                        | '—'
                        | '…'
                        | '·'
                        | '¿'
                        | '¡'
                        | '、'
                        | '。'
                        | '「'
                        | '」'
                        | '（'
                        | '）'
                        | '，'
                        | '：'
                        | '；'
                        | '！'
                        | '？'
                )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::{Array2, array};

    fn causal(n: usize) -> Array2<bool> {
        Array2::from_shape_fn((n, n), |(q, k)| k <= q)
    }

    fn input<'a>(allowed: Option<ArrayView2<'a, bool>>, ids: &'a [u32]) -> MetricInput<'a> {
        MetricInput {
            allowed,
            ids,
            special: &[],
            punctuation: &[],
        }
    }

    #[test]
    fn a_perfect_previous_token_head_scores_one() {
        // Causal, 4 tokens: row 0 has one allowed key (left out); rows 1–3 put 1 on q − 1.
        let a = array![
            [1.0f32, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0]
        ];
        let mask = causal(4);
        let m = head_metrics(a.view(), &input(Some(mask.view()), &[1, 2, 3, 4]));
        assert_eq!(m.prev_token, Some(1.0));
        assert_eq!(m.self_attention, Some(0.0));
        assert_eq!(m.entropy, Some(0.0));
        assert_eq!(m.confidence, Some(1.0));
        // Distances 1, 1, 1.
        assert_eq!(m.mean_distance, Some(1.0));
        // first_token: rows 1, 2, 3 give 1, 0, 0 → 1/3.
        assert!((m.first_token.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        // No id repeats.
        assert_eq!(m.duplicate_token, None);
    }

    #[test]
    fn a_uniform_head_has_normalised_entropy_one_causal_included() {
        let n = 5;
        let mask = causal(n);
        let a = Array2::from_shape_fn(
            (n, n),
            |(q, k)| {
                if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 }
            },
        );
        let m = head_metrics(a.view(), &input(Some(mask.view()), &[0; 5]));
        assert!((m.entropy_norm.unwrap() - 1.0).abs() < 1e-6);
        // Row q's entropy is ln(q + 1): the mean over q = 1..4 of ln 2, ln 3, ln 4, ln 5.
        let want = (2f64.ln() + 3f64.ln() + 4f64.ln() + 5f64.ln()) / 4.0;
        assert!((m.entropy.unwrap() - want).abs() < 1e-6);
    }

    #[test]
    fn duplicates_specials_punctuation_and_empty_heads() {
        // Tokens: [CLS] a , a — ids 0 5 6 5; no mask.
        let a = array![
            [0.5f32, 0.5, 0.0, 0.0],
            [0.25, 0.25, 0.25, 0.25],
            [0.0, 0.0, 1.0, 0.0],
            [0.1, 0.6, 0.2, 0.1]
        ];
        let special = [true, false, false, false];
        let punctuation = [false, false, true, false];
        let m = head_metrics(
            a.view(),
            &MetricInput {
                allowed: None,
                ids: &[0, 5, 6, 5],
                special: &special,
                punctuation: &punctuation,
            },
        );
        // Only query 3 repeats an earlier id (5 at key 1): 0.6.
        assert!((m.duplicate_token.unwrap() - 0.6).abs() < 1e-6);
        // Special share: 0.5, 0.25, 0, 0.1 → mean 0.2125.
        assert!((m.special.unwrap() - 0.2125).abs() < 1e-6);
        // Punctuation share: 0, 0.25, 1, 0.2 → mean 0.3625.
        assert!((m.punctuation.unwrap() - 0.3625).abs() < 1e-6);
        // One token: no query qualifies, every metric is None.
        let one = array![[1.0f32]];
        assert_eq!(
            head_metrics(one.view(), &input(None, &[1])),
            HeadMetrics::default()
        );
        // Sinks: first_token above one half.
        let sink = HeadMetrics {
            first_token: Some(0.9),
            ..HeadMetrics::default()
        };
        assert_eq!(sink_heads(&[sink, HeadMetrics::default()]), 1);
        assert!(is_punctuation("…") && is_punctuation(" ,") && !is_punctuation("a,"));
        assert!(!is_punctuation(""));
    }
}
