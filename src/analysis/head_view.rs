//! The lines of the head view (BertViz style): a head's attention weights as links from query
//! rows to key rows, strongest first, down to a threshold and at most a cap. The app extracts
//! them once per (run, layer) and draws any higher threshold as a prefix.

use ndarray::ArrayView2;

/// One line of the head view: query row, key row and weight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// The query (left column) row.
    pub query: u32,
    /// The key (right column) row.
    pub key: u32,
    /// The attention weight.
    pub weight: f32,
}

/// Fills `out` with the links of `map` (shape [query, key]) whose weight is positive and at least
/// `threshold`, strongest first, at most `cap` of them. Returns true when some were cut by the cap.
pub fn extract_links(
    map: ArrayView2<'_, f32>,
    threshold: f32,
    cap: usize,
    out: &mut Vec<Link>,
) -> bool {
    out.clear();
    for (q, row) in map.outer_iter().enumerate() {
        let mut push = |k: usize, w: f32| {
            // NaN fails both comparisons and is skipped.
            if w >= threshold && w > 0.0 {
                out.push(Link {
                    query: q as u32,
                    key: k as u32,
                    weight: w,
                });
            }
        };
        match row.as_slice() {
            Some(slice) => slice.iter().enumerate().for_each(|(k, &w)| push(k, w)),
            None => row.iter().enumerate().for_each(|(k, &w)| push(k, w)),
        }
    }
    let strongest_first = |a: &Link, b: &Link| b.weight.total_cmp(&a.weight);
    let capped = out.len() > cap;
    if capped {
        out.select_nth_unstable_by(cap, strongest_first);
        out.truncate(cap);
    }
    out.sort_unstable_by(strongest_first);
    capped
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn links_keep_weights_above_threshold_strongest_first() {
        // Weights ≥ 0.3: (0,0)=0.6, (1,2)=0.7, (2,1)=0.3 → sorted 0.7, 0.6, 0.3.
        let map = array![[0.6, 0.2, 0.2], [0.1, 0.2, 0.7], [0.0, 0.3, 0.0]];
        let mut out = Vec::new();
        let capped = extract_links(map.view(), 0.3, 10, &mut out);
        assert!(!capped);
        let got: Vec<(u32, u32)> = out.iter().map(|l| (l.query, l.key)).collect();
        assert_eq!(got, [(1, 2), (0, 0), (2, 1)]);
    }

    #[test]
    fn links_skip_zeros_and_respect_the_cap() {
        // Threshold 0 still skips the three zeros; the cap of 2 keeps 0.7 and 0.6.
        let map = array![[0.6, 0.2, 0.2], [0.1, 0.2, 0.7], [0.0, 0.3, 0.0]];
        let mut out = Vec::new();
        assert!(!extract_links(map.view(), 0.0, 100, &mut out));
        assert_eq!(out.len(), 7);
        assert!(extract_links(map.view(), 0.0, 2, &mut out));
        let weights: Vec<f32> = out.iter().map(|l| l.weight).collect();
        assert_eq!(weights, [0.7, 0.6]);
    }
}
