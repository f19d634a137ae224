//! What a lesson step says about the numbers on screen, as claims a test can check on the
//! lesson's own run: a lesson whose words contradict its figures is worse than no lesson.
//!
//! A claim is about the step's selection: its layer and head (the head map), and its query
//! (one row; claims that need the scores before the softmax read the layer's trace, which the
//! app records while the walkthrough is shown).

use crate::analysis::explain::Explanation;
use crate::engine::{AttentionMaps, Trace};
use crate::tokenize::Token;
use serde::{Deserialize, Serialize};

/// The largest standard deviation of the scaled scores of a softmax "that does not saturate".
pub const MAX_UNSATURATED_STD: f32 = 5.0;
/// The largest weight of a softmax "that does not saturate".
pub const MAX_UNSATURATED_WEIGHT: f32 = 0.9;
/// The smallest top weight of a softmax that "picks one key".
pub const MIN_SATURATED_WEIGHT: f32 = 0.99;
/// How far a row of weights may sum from 1.
const SUM_TOLERANCE: f32 = 1e-4;

/// One checkable statement of a lesson step (`"claims"` in `attnviz.lesson/v1`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Claim {
    /// The query's softmax does not saturate: its scaled scores (the unmasked ones) have a
    /// standard deviation of at most [`MAX_UNSATURATED_STD`] and no weight exceeds
    /// [`MAX_UNSATURATED_WEIGHT`]. Needs the trace.
    NotSaturated,
    /// The query's softmax picks one key: its largest weight is at least
    /// [`MIN_SATURATED_WEIGHT`].
    Saturated,
    /// The query gives key `key` its largest weight, at least `at_least`.
    Attends {
        /// The key (0-based).
        key: usize,
        /// The smallest weight.
        at_least: f32,
    },
    /// Every row of the head puts its largest weight on the key `back` places before it
    /// (1: the previous token, 0: itself), from row `back` on.
    LooksBack {
        /// How many places back.
        back: usize,
    },
    /// Every row of the head puts its largest weight on the first token.
    FirstToken,
    /// The rows of the other tokens give keys spelled `token`, on average, a total weight in
    /// [`at_least`, `at_most`] (either bound may be left out).
    WeightOn {
        /// The key's text, e.g. `[PAD]`.
        token: String,
        /// The smallest mean weight.
        #[serde(default)]
        at_least: Option<f32>,
        /// The largest mean weight.
        #[serde(default)]
        at_most: Option<f32>,
    },
    /// No weight above the diagonal: no query reads a later key.
    Causal,
    /// Every query reads only keys at most `window` places away (a band along the diagonal).
    WithinWindow {
        /// The largest distance |query − key| with weight.
        window: usize,
    },
    /// The query's masked keys get exactly zero weight (shown as −∞ before the softmax) and
    /// the others sum to 1; at least one key is masked. Needs the trace.
    MaskedZero,
    /// At least one row has nothing left to attend to, and such rows are all zero.
    EmptyRowsZero,
}

/// What a claim is checked against: the run's maps and tokens, the selection, and the trace of
/// the selected layer when the run recorded one.
pub struct ClaimCx<'a> {
    /// Every head's weights.
    pub maps: &'a AttentionMaps,
    /// The tokens (key and row names).
    pub tokens: &'a [Token],
    /// The selected layer's trace, if recorded.
    pub trace: Option<&'a Trace>,
    /// The queries with no key left after the mask.
    pub fully_masked_queries: &'a [usize],
    /// The selected layer (0-based).
    pub layer: usize,
    /// The selected head.
    pub head: usize,
    /// The selected query.
    pub query: usize,
}

/// The index of the largest value (the first of equal ones); `None` for an empty row.
fn argmax(row: impl Iterator<Item = f32>) -> Option<(usize, f32)> {
    row.enumerate()
        .fold(None, |best: Option<(usize, f32)>, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
}

impl Claim {
    /// Checks the claim; the error says, with the numbers, why it does not hold.
    pub fn check(&self, cx: &ClaimCx<'_>) -> Result<(), String> {
        let map = cx
            .maps
            .head(cx.layer, cx.head)
            .ok_or_else(|| format!("layer {} head {} does not exist", cx.layer, cx.head))?;
        let n = map.nrows();
        if cx.query >= n {
            return Err(format!("query {} does not exist ({n} tokens)", cx.query));
        }
        let row = map.row(cx.query);
        let explain = || -> Result<Explanation, String> {
            let trace = cx
                .trace
                .filter(|t| t.layer_idx == cx.layer)
                .ok_or("the run has no trace of the selected layer")?;
            Explanation::from_trace(trace, cx.head, cx.query).map_err(|e| e.to_string())
        };
        match self {
            Claim::NotSaturated => {
                let e = explain()?;
                let kept: Vec<f32> = e
                    .scaled
                    .iter()
                    .zip(&e.masked)
                    .filter(|(_, m)| m.is_some())
                    .map(|(&s, _)| s)
                    .collect();
                let std = std_dev(&kept);
                let top = e.weights.iter().copied().fold(0.0, f32::max);
                if std <= MAX_UNSATURATED_STD && top <= MAX_UNSATURATED_WEIGHT {
                    Ok(())
                } else {
                    Err(format!(
                        "saturated: the scaled scores' standard deviation is {std} (at most \
                         {MAX_UNSATURATED_STD}) and the largest weight {top} (at most \
                         {MAX_UNSATURATED_WEIGHT})"
                    ))
                }
            }
            Claim::Saturated => {
                let top = row.iter().copied().fold(0.0, f32::max);
                (top >= MIN_SATURATED_WEIGHT).then_some(()).ok_or_else(|| {
                    format!("not saturated: the largest weight is {top} (at least {MIN_SATURATED_WEIGHT})")
                })
            }
            Claim::Attends { key, at_least } => {
                let (top, w) = argmax(row.iter().copied()).ok_or("an empty row")?;
                let on_key = row.get(*key).copied().unwrap_or(f32::NAN);
                if top == *key && on_key >= *at_least {
                    Ok(())
                } else {
                    Err(format!(
                        "key {key} gets {on_key} (at least {at_least}); the largest weight, \
                         {w}, goes to key {top}"
                    ))
                }
            }
            Claim::LooksBack { back } => {
                for i in *back..n {
                    let (top, w) = argmax(map.row(i).iter().copied()).ok_or("an empty row")?;
                    if top != i - back {
                        return Err(format!(
                            "row {i} puts its largest weight, {w}, on key {top}, not {}",
                            i - back
                        ));
                    }
                }
                Ok(())
            }
            Claim::FirstToken => {
                for i in 0..n {
                    let (top, w) = argmax(map.row(i).iter().copied()).ok_or("an empty row")?;
                    if top != 0 {
                        return Err(format!(
                            "row {i} puts its largest weight, {w}, on key {top}, not 0"
                        ));
                    }
                }
                Ok(())
            }
            Claim::WeightOn {
                token,
                at_least,
                at_most,
            } => {
                let keys: Vec<usize> = (0..n).filter(|&j| cx.tokens[j].text == *token).collect();
                let rows: Vec<usize> = (0..n).filter(|&i| cx.tokens[i].text != *token).collect();
                if keys.is_empty() || rows.is_empty() {
                    return Err(format!("no key, or no other row, spelled {token:?}"));
                }
                let total: f32 = rows
                    .iter()
                    .map(|&i| keys.iter().map(|&j| map[[i, j]]).sum::<f32>())
                    .sum();
                let mean = total / rows.len() as f32;
                let low = at_least.is_none_or(|a| mean >= a);
                let high = at_most.is_none_or(|a| mean <= a);
                if low && high {
                    Ok(())
                } else {
                    Err(format!(
                        "the other rows give {token:?} {mean} on average (wanted at least \
                         {at_least:?}, at most {at_most:?})"
                    ))
                }
            }
            Claim::Causal => {
                for i in 0..n {
                    for j in i + 1..n {
                        if map[[i, j]] != 0.0 {
                            return Err(format!(
                                "query {i} reads the later key {j} with weight {}",
                                map[[i, j]]
                            ));
                        }
                    }
                }
                Ok(())
            }
            Claim::WithinWindow { window } => {
                for i in 0..n {
                    for j in 0..n {
                        if i.abs_diff(j) > *window && map[[i, j]] != 0.0 {
                            return Err(format!(
                                "query {i} reads key {j}, {} places away, with weight {}",
                                i.abs_diff(j),
                                map[[i, j]]
                            ));
                        }
                    }
                }
                Ok(())
            }
            Claim::MaskedZero => {
                let e = explain()?;
                let masked: Vec<usize> = (0..e.masked.len())
                    .filter(|&j| e.masked[j].is_none())
                    .collect();
                if masked.is_empty() {
                    return Err("no key of this query is masked".to_owned());
                }
                if let Some(&j) = masked.iter().find(|&&j| e.weights[j] != 0.0) {
                    return Err(format!("masked key {j} gets weight {}", e.weights[j]));
                }
                let sum: f32 = e.weights.iter().sum();
                if e.fully_masked || (sum - 1.0).abs() <= SUM_TOLERANCE {
                    Ok(())
                } else {
                    Err(format!("the weights sum to {sum}, not 1"))
                }
            }
            Claim::EmptyRowsZero => {
                if cx.fully_masked_queries.is_empty() {
                    return Err("no row is fully masked".to_owned());
                }
                for &i in cx.fully_masked_queries {
                    if i >= n || map.row(i).iter().any(|&w| w != 0.0) {
                        return Err(format!("the fully masked row {i} is not all zero"));
                    }
                }
                Ok(())
            }
        }
    }
}

/// The population standard deviation; 0 for fewer than two values.
fn std_dev(v: &[f32]) -> f32 {
    if v.len() < 2 {
        return 0.0;
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    var.sqrt() as f32
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use ndarray::array;

    fn cx_of<'a>(maps: &'a AttentionMaps, tokens: &'a [Token], query: usize) -> ClaimCx<'a> {
        ClaimCx {
            maps,
            tokens,
            trace: None,
            fully_masked_queries: &[],
            layer: 0,
            head: 0,
            query,
        }
    }

    #[test]
    fn claims_on_a_hand_made_head() {
        // Three tokens; a previous-token head with a causal pattern:
        // row 0 reads itself, rows 1 and 2 put 0.995 and 0.7 on the token before.
        let map = array![[1.0, 0.0, 0.0], [0.995, 0.005, 0.0], [0.2, 0.7, 0.1]];
        let maps = AttentionMaps::from_heads(1, 1, 3, vec![map]).unwrap();
        let tokens: Vec<Token> = ["a", "[PAD]", "b"]
            .iter()
            .map(|t| Token::from_text(t))
            .collect();
        let ok = |c: Claim, q: usize| c.check(&cx_of(&maps, &tokens, q));
        assert!(ok(Claim::LooksBack { back: 1 }, 0).is_ok());
        assert!(ok(Claim::LooksBack { back: 0 }, 0).is_err());
        assert!(ok(Claim::Causal, 0).is_ok());
        // Row 2 reads key 0, two places away.
        assert!(ok(Claim::WithinWindow { window: 2 }, 0).is_ok());
        assert!(ok(Claim::WithinWindow { window: 1 }, 0).is_err());
        assert!(ok(Claim::FirstToken, 0).is_err());
        // Row 1's top weight 0.995 ≥ 0.99; row 2's 0.7 is not.
        assert!(ok(Claim::Saturated, 1).is_ok());
        assert!(ok(Claim::Saturated, 2).is_err());
        assert!(
            ok(
                Claim::Attends {
                    key: 1,
                    at_least: 0.6
                },
                2
            )
            .is_ok()
        );
        let err = ok(
            Claim::Attends {
                key: 0,
                at_least: 0.1,
            },
            2,
        )
        .unwrap_err();
        assert!(err.contains("key 1"), "{err}");
        // "[PAD]" keys: rows 0 and 2 give it 0.0 and 0.7, a mean of 0.35.
        let on_pad = |at_least, at_most| {
            ok(
                Claim::WeightOn {
                    token: "[PAD]".to_owned(),
                    at_least,
                    at_most,
                },
                0,
            )
        };
        assert!(on_pad(Some(0.3), Some(0.4)).is_ok());
        assert!(on_pad(None, Some(0.0)).is_err());
        // Without a trace, claims about the scores are refused, not passed.
        assert!(ok(Claim::NotSaturated, 2).is_err());
        assert!(ok(Claim::EmptyRowsZero, 2).is_err());
        // Out of range is an error, not a panic.
        assert!(ok(Claim::Saturated, 7).is_err());
    }

    #[test]
    fn std_dev_is_the_population_one() {
        // [1, 3]: mean 2, deviations ±1, variance 1.
        assert_eq!(std_dev(&[1.0, 3.0]), 1.0);
        assert_eq!(std_dev(&[5.0]), 0.0);
    }

    #[test]
    fn claims_read_as_the_lesson_format_spells_them() {
        let claims: Vec<Claim> = serde_json::from_str(
            r#"["not-saturated", {"attends": {"key": 5, "at_least": 0.9}},
                {"looks-back": {"back": 1}}, {"weight-on": {"token": "[PAD]", "at_most": 0}}]"#,
        )
        .unwrap();
        assert_eq!(claims.len(), 4);
        assert!(serde_json::from_str::<Claim>(r#""sometimes-true""#).is_err());
    }
}
