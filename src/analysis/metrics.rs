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
    /// The offset o = key − query with the largest mean weight A[q, q + o] (see
    /// [`offset_profile`]); −1 for a previous-token head, 0 for a self head.
    pub offset_peak: Option<i64>,
    /// That largest mean weight.
    pub offset_share: Option<f64>,
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
    let offsets = offset_peak(a, input.allowed);
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
        offset_peak: offsets.map(|(o, _)| o),
        offset_share: offsets.map(|(_, v)| v),
    }
}

/// True when query `q` of a map with `keys` keys has at least two allowed keys: the rows every
/// metric reads.
fn qualifies(allowed: Option<ArrayView2<'_, bool>>, q: usize, keys: usize) -> bool {
    match allowed {
        None => keys >= 2,
        Some(m) => {
            (0..keys)
                .filter(|&k| m.get((q, k)).copied().unwrap_or(false))
                .take(2)
                .count()
                == 2
        }
    }
}

/// The mean weight at each offset o = key − query, from −(N − 1) to N − 1: entry o + N − 1 is
/// Σ A[q, q + o] over the qualifying queries q whose q + o is a key, divided by the number of
/// qualifying queries (so a perfect previous-token head scores 1 at o = −1). `None` when no
/// query qualifies.
pub fn offset_profile(
    a: ArrayView2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
) -> Option<Vec<f64>> {
    let (n, keys) = a.dim();
    let span = n.max(keys);
    if span == 0 {
        return None;
    }
    let mut sums = vec![0.0f64; 2 * span - 1];
    let mut count = 0usize;
    for q in (0..n).filter(|&q| qualifies(allowed, q, keys)) {
        count += 1;
        for (k, &p) in a.row(q).iter().enumerate() {
            sums[k + span - 1 - q] += f64::from(p);
        }
    }
    (count > 0).then(|| sums.into_iter().map(|s| s / count as f64).collect())
}

/// The peak of [`offset_profile`]: the offset with the largest mean weight and that weight.
/// Ties go to the smaller |o|, then to the negative (earlier) offset.
pub fn offset_peak(
    a: ArrayView2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
) -> Option<(i64, f64)> {
    let profile = offset_profile(a, allowed)?;
    let span = profile.len().div_ceil(2);
    let offset = |i: usize| i as i64 - (span as i64 - 1);
    let mut best: Option<(i64, f64)> = None;
    for (i, &v) in profile.iter().enumerate() {
        let o = offset(i);
        let better = match best {
            None => true,
            Some((bo, bv)) => v > bv || (v == bv && (o.abs(), o) < (bo.abs(), bo)),
        };
        if better {
            best = Some((o, v));
        }
    }
    best
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

/// The mean over rows of the Jensen–Shannon divergence (base 2, in [0, 1]) between two heads'
/// maps (queries × keys). Rows that do not qualify (fewer than two allowed keys) or that are
/// empty in either map are left out; 0 when no row is left. `entropies` are the rows' base-2
/// entropies of each map ([`row_entropies_bits`]).
fn mean_jsd(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    entropies: (&[Option<f64>], &[Option<f64>]),
    rows: &[usize],
) -> f64 {
    let mut sum = 0.0;
    let mut count = 0usize;
    for &q in rows {
        let (Some(ha), Some(hb)) = (entropies.0[q], entropies.1[q]) else {
            continue;
        };
        // JSD = H(M) − (H(A) + H(B)) / 2 with M = (A + B) / 2.
        let hm: f64 = a
            .row(q)
            .iter()
            .zip(b.row(q))
            .map(|(&x, &y)| 0.5 * (f64::from(x.max(0.0)) + f64::from(y.max(0.0))))
            .filter(|&m| m > 0.0)
            .map(|m| -m * m.log2())
            .sum();
        sum += (hm - 0.5 * (ha + hb)).max(0.0);
        count += 1;
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

/// Each row's entropy in bits, `None` for a row that sums to 0.
fn row_entropies_bits(a: ArrayView2<'_, f32>) -> Vec<Option<f64>> {
    a.rows()
        .into_iter()
        .map(|row| {
            let total: f64 = row.iter().map(|&p| f64::from(p.max(0.0))).sum();
            (total > 0.0).then(|| {
                row.iter()
                    .map(|&p| f64::from(p))
                    .filter(|&p| p > 0.0)
                    .map(|p| -p * p.log2())
                    .sum()
            })
        })
        .collect()
}

/// Every pair of heads' mean row-wise Jensen–Shannon divergence (base 2): a symmetric
/// (layers·heads)² matrix, heads numbered layer-major (layer · heads + head). Rows with fewer
/// than two allowed keys are left out.
pub fn head_distances(
    maps: &crate::engine::AttentionMaps,
    allowed: Option<ArrayView2<'_, bool>>,
) -> ndarray::Array2<f64> {
    head_distances_observed(maps, allowed, &|_, _| true)
        .unwrap_or_else(|| unreachable!("never cancelled"))
}

/// [`head_distances`] with progress: `keep_going(heads done, heads)` is called (from several
/// threads) after each head's row of pairs; once it returns false the remaining rows are
/// skipped and the result is `None`.
pub fn head_distances_observed(
    maps: &crate::engine::AttentionMaps,
    allowed: Option<ArrayView2<'_, bool>>,
    keep_going: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Option<ndarray::Array2<f64>> {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let [layers, heads, n, _] = maps.shape();
    let count = layers * heads;
    let all: Vec<Option<crate::engine::HeadMap>> = (0..count)
        .map(|i| maps.head(i / heads.max(1), i % heads.max(1)))
        .collect();
    let entropies: Vec<Vec<Option<f64>>> = all
        .iter()
        .map(|m| {
            m.as_ref()
                .map_or_else(Vec::new, |m| row_entropies_bits(m.view()))
        })
        .collect();
    let rows: Vec<usize> = (0..n).filter(|&q| qualifies(allowed, q, n)).collect();
    let (done, stopped) = (AtomicUsize::new(0), AtomicBool::new(false));
    let upper: Vec<Vec<f64>> = (0..count)
        .into_par_iter()
        .map(|i| {
            if stopped.load(Ordering::Relaxed) {
                return Vec::new();
            }
            let row = (i + 1..count)
                .map(|j| match (&all[i], &all[j]) {
                    (Some(a), Some(b)) => {
                        mean_jsd(a.view(), b.view(), (&entropies[i], &entropies[j]), &rows)
                    }
                    _ => 0.0,
                })
                .collect();
            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
            if !keep_going(finished, count) {
                stopped.store(true, Ordering::Relaxed);
            }
            row
        })
        .collect();
    if stopped.load(Ordering::Relaxed) {
        return None;
    }
    let mut d = ndarray::Array2::<f64>::zeros((count, count));
    for (i, row) in upper.iter().enumerate() {
        for (k, &v) in row.iter().enumerate() {
            let j = i + 1 + k;
            d[(i, j)] = v;
            d[(j, i)] = v;
        }
    }
    Some(d)
}

/// The leaves of an average-linkage (UPGMA) clustering of `distances` (symmetric, items
/// 0..n), left to right. Each step merges the two closest clusters (ties: the pair whose
/// smallest members are smallest, compared as pairs); the cluster with the smaller smallest
/// member goes left. Cluster distances are the mean of the pairwise distances of their items.
pub fn average_linkage_order(distances: ndarray::ArrayView2<'_, f64>) -> Vec<usize> {
    let n = distances.nrows();
    // Active clusters: (smallest item, items in order).
    let mut clusters: Vec<(usize, Vec<usize>)> = (0..n).map(|i| (i, vec![i])).collect();
    let mut d: Vec<Vec<f64>> = (0..n).map(|i| distances.row(i).to_vec()).collect();
    while clusters.len() > 1 {
        let mut best: Option<(f64, (usize, usize), usize, usize)> = None;
        for a in 0..clusters.len() {
            for b in a + 1..clusters.len() {
                let v = d[a][b];
                let key = {
                    let (x, y) = (clusters[a].0, clusters[b].0);
                    (x.min(y), x.max(y))
                };
                let better = match best {
                    None => true,
                    Some((bv, bkey, _, _)) => v < bv || (v == bv && key < bkey),
                };
                if better {
                    best = Some((v, key, a, b));
                }
            }
        }
        let Some((_, _, a, b)) = best else { break };
        let (size_a, size_b) = (clusters[a].1.len() as f64, clusters[b].1.len() as f64);
        // Lance–Williams for average linkage: the size-weighted mean of the two distances.
        let merged_row: Vec<f64> = (0..clusters.len())
            .map(|k| (size_a * d[a][k] + size_b * d[b][k]) / (size_a + size_b))
            .collect();
        let cb = clusters.remove(b);
        let ca = &mut clusters[a];
        if cb.0 < ca.0 {
            let mut items = cb.1;
            items.append(&mut ca.1);
            *ca = (cb.0, items);
        } else {
            ca.1.extend(cb.1);
        }
        d.remove(b);
        for row in d.iter_mut() {
            row.remove(b);
        }
        let mut merged_row = merged_row;
        merged_row.remove(b);
        merged_row[a] = 0.0;
        for (k, &v) in merged_row.iter().enumerate() {
            d[a][k] = v;
            d[k][a] = v;
        }
    }
    clusters.pop().map(|(_, items)| items).unwrap_or_default()
}

/// Heads clustered by how alike their maps are (issue 23's `head_order`): the mean row-wise
/// Jensen–Shannon divergence ([`head_distances`]), average linkage
/// ([`average_linkage_order`]), the leaves left to right as (layer, head), ties broken by
/// (layer, head).
pub fn head_order(
    maps: &crate::engine::AttentionMaps,
    allowed: Option<ArrayView2<'_, bool>>,
) -> Vec<(usize, usize)> {
    head_order_observed(maps, allowed, &|_, _| true).unwrap_or_default()
}

/// [`head_order`] with the progress and cancellation of [`head_distances_observed`] (the
/// divergences are nearly all of the work); `None` when cancelled.
pub fn head_order_observed(
    maps: &crate::engine::AttentionMaps,
    allowed: Option<ArrayView2<'_, bool>>,
    keep_going: &(dyn Fn(usize, usize) -> bool + Sync),
) -> Option<Vec<(usize, usize)>> {
    let heads = maps.heads().max(1);
    let distances = head_distances_observed(maps, allowed, keep_going)?;
    Some(
        average_linkage_order(distances.view())
            .into_iter()
            .map(|i| (i / heads, i % heads))
            .collect(),
    )
}

/// The mean weight at each distance d = |key − query|, from 0 to N − 1: [`offset_profile`]
/// with the offsets −d and +d added (the attention-distance histogram of a head: its entries
/// sum to 1 when the qualifying rows do). `None` when no query qualifies.
pub fn distance_profile(
    a: ArrayView2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
) -> Option<Vec<f64>> {
    let profile = offset_profile(a, allowed)?;
    let span = profile.len().div_ceil(2);
    Some(
        (0..span)
            .map(|d| {
                let after = profile[span - 1 + d];
                if d == 0 {
                    after
                } else {
                    after + profile[span - 1 - d]
                }
            })
            .collect(),
    )
}

/// How a metric is read from a head's metrics.
pub type MetricReader = fn(&HeadMetrics) -> Option<f64>;

/// Every real-valued metric of [`HeadMetrics`] by its name in `attnviz.metrics/v1`, in file
/// order (`offset_peak`, an offset, is not among them).
pub const METRICS: [(&str, MetricReader); 11] = [
    ("entropy", |m| m.entropy),
    ("entropy_norm", |m| m.entropy_norm),
    ("prev_token", |m| m.prev_token),
    ("self", |m| m.self_attention),
    ("first_token", |m| m.first_token),
    ("special", |m| m.special),
    ("punctuation", |m| m.punctuation),
    ("mean_distance", |m| m.mean_distance),
    ("confidence", |m| m.confidence),
    ("duplicate_token", |m| m.duplicate_token),
    ("offset_share", |m| m.offset_share),
];

/// Where the induction probe's repeated sequence sits in its tokens: `period` tokens from
/// `start`, then the same tokens again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InductionProbe {
    /// The first token of the first copy (after any BOS or [CLS]).
    pub start: usize,
    /// The length of one copy.
    pub period: usize,
}

/// The induction score of one head's map on the probe: over the second copy's queries q, the
/// mean weight on the token right after q's earlier occurrence (key q − period + 1). `None`
/// when the map is too short for the probe or the probe is empty.
pub fn induction_score(a: ArrayView2<'_, f32>, probe: &InductionProbe) -> Option<f64> {
    let (n, keys) = a.dim();
    let first = probe.start.checked_add(probe.period)?;
    let end = first.checked_add(probe.period)?;
    if probe.period == 0 || end > n || end > keys {
        return None;
    }
    let sum: f64 = (first..end)
        .map(|q| f64::from(a[(q, q + 1 - probe.period)]))
        .sum();
    Some(sum / probe.period as f64)
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
    #[test]
    fn offsets_peak_where_the_head_looks() {
        // The perfect previous-token head above: rows 1–3 qualify, each puts 1 on o = −1, so
        // the mean at −1 is 3/3 = 1 and every other offset 0.
        let prev = array![
            [1.0f32, 0.0, 0.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0]
        ];
        let mask = causal(4);
        let m = head_metrics(prev.view(), &input(Some(mask.view()), &[1, 2, 3, 4]));
        assert_eq!((m.offset_peak, m.offset_share), (Some(-1), Some(1.0)));
        // No mask, 3 tokens, each row [0.5, 0.25, 0.25]: offset o collects A[q, q + o] over
        // the rows where q + o is a key, divided by 3: o = 0 gets 0.5 + 0.25 + 0.25 = 1 → 1/3;
        // o = −1 gets A[1,0] + A[2,1] = 0.5 + 0.25 → 0.25; o = −2 gets A[2,0] = 0.5 → 1/6;
        // o = 1 gets A[0,1] + A[1,2] = 0.5 → 1/6; o = 2 gets A[0,2] = 0.25 → 1/12.
        let a = array![[0.5f32, 0.25, 0.25], [0.5, 0.25, 0.25], [0.5, 0.25, 0.25]];
        let profile = offset_profile(a.view(), None).unwrap();
        let want = [1.0 / 6.0, 0.25, 1.0 / 3.0, 1.0 / 6.0, 1.0 / 12.0];
        for (g, w) in profile.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{profile:?}");
        }
        assert_eq!(offset_peak(a.view(), None).map(|p| p.0), Some(0));
        // A tie between o = −1 and o = 1 (rows 1 and 0 put everything on each other in a
        // 2-token map: o = 1 gets A[0,1] = 1, o = −1 gets A[1,0] = 1): the earlier wins.
        let swap = array![[0.0f32, 1.0], [1.0, 0.0]];
        assert_eq!(offset_peak(swap.view(), None), Some((-1, 0.5)));
    }

    #[test]
    fn jensen_shannon_by_hand_and_the_average_linkage_order() {
        // p = [1, 0], q = [0.5, 0.5]: m = [0.75, 0.25], H(m) = −0.75·log2 0.75 − 0.25·log2 0.25
        // = 0.311278 + 0.5 = 0.811278; H(p) = 0, H(q) = 1; JSD = 0.811278 − 0.5 = 0.311278.
        let p = array![[1.0f32, 0.0]];
        let q = array![[0.5f32, 0.5]];
        let (ep, eq) = (row_entropies_bits(p.view()), row_entropies_bits(q.view()));
        let jsd = mean_jsd(p.view(), q.view(), (&ep, &eq), &[0]);
        assert!((jsd - 0.311_278).abs() < 1e-6, "{jsd}");
        // Disjoint supports: 1 bit, the maximum; identical rows: exactly 0.
        let r = array![[0.0f32, 1.0]];
        let er = row_entropies_bits(r.view());
        assert_eq!(mean_jsd(p.view(), r.view(), (&ep, &er), &[0]), 1.0);
        assert_eq!(mean_jsd(q.view(), q.view(), (&eq, &eq), &[0]), 0.0);
        // Four items: 0 and 2 close (0.1), 1 and 3 close (0.2), the groups 0.9 apart except
        // d(0,1) = 0.8. Merges: {0,2} at 0.1, {1,3} at 0.2; then the two groups. Leaves:
        // [0, 2, 1, 3] (the cluster holding 0 goes left).
        let d = array![
            [0.0, 0.8, 0.1, 0.9],
            [0.8, 0.0, 0.9, 0.2],
            [0.1, 0.9, 0.0, 0.9],
            [0.9, 0.2, 0.9, 0.0]
        ];
        assert_eq!(average_linkage_order(d.view()), vec![0, 2, 1, 3]);
        // Average linkage, not single: item 3 is 0.5 from 1 but 0.9 from 0, so its mean
        // distance to {0,1} (merged first at 0.1) is 0.7 > 0.6 = d(2,3), and {2,3} forms next.
        let d = array![
            [0.0, 0.1, 0.8, 0.9],
            [0.1, 0.0, 0.8, 0.5],
            [0.8, 0.8, 0.0, 0.6],
            [0.9, 0.5, 0.6, 0.0]
        ];
        assert_eq!(average_linkage_order(d.view()), vec![0, 1, 2, 3]);
        // All equal: ties by the smallest members, so the order is 0, 1, 2.
        let flat = Array2::<f64>::from_elem((3, 3), 0.5);
        assert_eq!(average_linkage_order(flat.view()), vec![0, 1, 2]);
        assert!(average_linkage_order(Array2::<f64>::zeros((0, 0)).view()).is_empty());
    }

    #[test]
    fn heads_with_the_same_map_sit_side_by_side() {
        // Two layers of two heads: L0·H0 and L1·H1 are previous-token heads, L0·H1 and L1·H0
        // self heads. Their JSDs are 0 within a kind and 1 bit across (rows 1 and 2 put
        // everything on different keys; row 0 has one allowed key and is left out).
        let prev = array![[1.0f32, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        let own = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let maps = crate::engine::AttentionMaps::from_heads(
            2,
            2,
            3,
            vec![prev.clone(), own.clone(), own, prev],
        )
        .unwrap();
        let mask = causal(3);
        let d = head_distances(&maps, Some(mask.view()));
        assert_eq!((d[(0, 3)], d[(1, 2)], d[(0, 1)]), (0.0, 0.0, 1.0));
        assert_eq!(
            head_order(&maps, Some(mask.view())),
            vec![(0, 0), (1, 1), (0, 1), (1, 0)]
        );
    }

    #[test]
    fn the_induction_score_reads_the_token_after_the_earlier_copy() {
        // [BOS] a b c a b c: start 1, period 3. Queries 4, 5, 6 (second copy) should look at
        // 2, 3, 4. A head that does so scores 1; one that looks at the earlier copy itself
        // (a duplicate-token head: keys 1, 2, 3) scores 0.
        let n = 7;
        let probe = InductionProbe {
            start: 1,
            period: 3,
        };
        let at = |offset: usize| {
            Array2::from_shape_fn((n, n), |(q, k)| {
                let target = if q >= 4 { q - offset } else { 0 };
                if k == target { 1.0f32 } else { 0.0 }
            })
        };
        assert_eq!(induction_score(at(2).view(), &probe), Some(1.0));
        assert_eq!(induction_score(at(3).view(), &probe), Some(0.0));
        let short = InductionProbe {
            start: 2,
            period: 3,
        };
        assert_eq!(induction_score(at(2).view(), &short), None);
    }

    #[test]
    fn the_distance_profile_folds_the_offsets() {
        // Causal, 3 tokens. Rows 1 and 2 qualify (row 0 has one allowed key).
        // Row 1 = [0.25, 0.75, 0]: distance 1 gets 0.25, distance 0 gets 0.75.
        // Row 2 = [0.5, 0.25, 0.25]: distance 2 gets 0.5, 1 gets 0.25, 0 gets 0.25.
        // Means over the 2 rows: d0 = (0.75 + 0.25) / 2 = 0.5, d1 = (0.25 + 0.25) / 2 = 0.25,
        // d2 = 0.5 / 2 = 0.25; they sum to 1.
        let a = ndarray::array![[1.0f32, 0.0, 0.0], [0.25, 0.75, 0.0], [0.5, 0.25, 0.25]];
        let mask = causal(3);
        let d = distance_profile(a.view(), Some(mask.view())).unwrap();
        assert_eq!(d, vec![0.5, 0.25, 0.25]);
        // A cancelled head order is `None`; an uncancelled one lists every head.
        let maps = crate::engine::AttentionMaps::from_heads(1, 2, 3, vec![a.clone(), a]).unwrap();
        assert!(head_order_observed(&maps, None, &|_, _| false).is_none());
        assert_eq!(
            head_order_observed(&maps, None, &|_, _| true)
                .unwrap()
                .len(),
            2
        );
    }
}
