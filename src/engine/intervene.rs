//! Interventions: read any site of a forward pass, overwrite it, and resume a pass from a layer.
//!
//! A [`Site`] names one tensor inside the stack (0-based): the residual stream entering a block,
//! a sublayer's output before the residual add, one query head's output z_h before the output
//! projection, or one head's probabilities. [`Interventions`] asks a pass to **capture** sites
//! (copied into [`Captured`]) and to **override** them (rows replaced before the pass goes on).
//! [`Resume`] starts a pass at block l from a stored residual, with the maps of the blocks
//! before it, so an edit in layer l recomputes only layers ≥ l.
//!
//! Head ablations ([`Ablation`]) are part of [`super::RunOptions`] rather than overrides: they
//! are settings of the run (recorded in files, followed by the backward pass), while an
//! override carries a tensor from somewhere else (activation patching).

use super::run::HeadMap;
use ndarray::{Array2, ArrayViewMut2, Axis, s};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How an ablated head's output z_h is replaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AblationMode {
    /// z_h = 0 at every position.
    #[default]
    Zero,
    /// z_h replaced at every position by its mean over the positions of this run.
    Mean,
}

impl AblationMode {
    /// Both modes, for pickers.
    pub const ALL: [AblationMode; 2] = [AblationMode::Zero, AblationMode::Mean];

    /// `zero` or `mean`.
    pub fn name(self) -> &'static str {
        match self {
            AblationMode::Zero => "zero",
            AblationMode::Mean => "mean",
        }
    }
}

/// One ablated head: layer, query head and how its output is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ablation {
    /// The layer (0-based).
    pub layer_idx: usize,
    /// The query head (0-based); with grouped-query attention its K/V head is untouched.
    pub head_idx: usize,
    /// Zero or mean.
    pub mode: AblationMode,
}

impl Ablation {
    /// Zero-ablates (layer, head).
    pub fn zero(layer_idx: usize, head_idx: usize) -> Self {
        Self {
            layer_idx,
            head_idx,
            mode: AblationMode::Zero,
        }
    }

    /// Mean-ablates (layer, head).
    pub fn mean(layer_idx: usize, head_idx: usize) -> Self {
        Self {
            layer_idx,
            head_idx,
            mode: AblationMode::Mean,
        }
    }

    /// The mode `list` ablates (layer, head) with, if any.
    pub fn find(list: &[Ablation], layer_idx: usize, head_idx: usize) -> Option<AblationMode> {
        list.iter()
            .find(|a| a.layer_idx == layer_idx && a.head_idx == head_idx)
            .map(|a| a.mode)
    }

    /// The list in its one order (layer, head), each head once; `Err` names a head given twice
    /// with two modes. The same head twice with the same mode counts once.
    pub fn normalized(list: &[Ablation]) -> Result<Vec<Ablation>, String> {
        let mut out = list.to_vec();
        out.sort();
        out.dedup();
        if let Some(w) = out
            .windows(2)
            .find(|w| (w[0].layer_idx, w[0].head_idx) == (w[1].layer_idx, w[1].head_idx))
        {
            return Err(format!(
                "head {}.{} is ablated twice, as {} and as {}",
                w[0].layer_idx, w[0].head_idx, w[0], w[1]
            ));
        }
        Ok(out)
    }

    /// The first layer whose ablations differ between `a` and `b` (both in
    /// [`Self::normalized`] order), or `None` when they are the same.
    pub fn first_difference(a: &[Ablation], b: &[Ablation]) -> Option<usize> {
        let layers = a.iter().chain(b).map(|x| x.layer_idx);
        let mut candidates: Vec<usize> = layers.collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates.into_iter().find(|&l| {
            let of = |list: &[Ablation]| -> Vec<Ablation> {
                list.iter().copied().filter(|x| x.layer_idx == l).collect()
            };
            of(a) != of(b)
        })
    }

    /// Writes this ablation into a head's output `z` ([token, d_head]): zeros, or each
    /// column's mean over the rows (summed in f64) at every row.
    pub(super) fn apply(mode: AblationMode, mut z: ArrayViewMut2<'_, f32>) {
        match mode {
            AblationMode::Zero => z.fill(0.0),
            AblationMode::Mean => {
                let n = z.nrows().max(1) as f64;
                for mut column in z.axis_iter_mut(Axis(1)) {
                    let mean = column.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                    column.fill(mean as f32);
                }
            }
        }
    }
}

impl std::fmt::Display for Ablation {
    /// `L.H` for zero, `L.H:mean` for mean: the `--ablate` spelling.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.layer_idx, self.head_idx)?;
        if self.mode == AblationMode::Mean {
            f.write_str(":mean")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Ablation {
    type Err = String;

    /// Reads `L.H`, `L.H:zero` or `L.H:mean` (0-based layer and head).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("expected LAYER.HEAD or LAYER.HEAD:mean (0-based), got {s:?}");
        let (head, mode) = match s.split_once(':') {
            None => (s, AblationMode::Zero),
            Some((head, "zero")) => (head, AblationMode::Zero),
            Some((head, "mean")) => (head, AblationMode::Mean),
            Some((_, other)) => {
                return Err(format!(
                    "unknown ablation mode {other:?} in {s:?}; expected zero or mean"
                ));
            }
        };
        let (layer, head) = head.split_once('.').ok_or_else(bad)?;
        let index = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
        Ok(Self {
            layer_idx: index(layer)?,
            head_idx: index(head)?,
            mode,
        })
    }
}

impl Serialize for Ablation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ablation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One tensor inside a forward pass (0-based layers and heads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The input of block l, [token, d_model]; `Resid(0)` is the embeddings (position
    /// embeddings included) and `Resid(L)` the last block's output before the final norm.
    Resid(usize),
    /// Block l's attention sublayer output: the output projection with its bias, before the
    /// residual add. [token, d_model].
    Attn(usize),
    /// Block l's MLP output before the residual add. [token, d_model].
    Mlp(usize),
    /// Query head h's output z_h in layer l, as the output projection reads it (after any
    /// ablation). [token, d_head].
    Head(usize, usize),
    /// The probabilities of head h in layer l. [query, key].
    Pattern(usize, usize),
}

impl Site {
    /// The block the site belongs to (`Resid(l)` belongs to block l, the one it enters).
    pub fn layer(self) -> usize {
        match self {
            Site::Resid(l)
            | Site::Attn(l)
            | Site::Mlp(l)
            | Site::Head(l, _)
            | Site::Pattern(l, _) => l,
        }
    }
}

impl std::fmt::Display for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Site::Resid(l) => write!(f, "resid({l})"),
            Site::Attn(l) => write!(f, "attn({l})"),
            Site::Mlp(l) => write!(f, "mlp({l})"),
            Site::Head(l, h) => write!(f, "head({l}, {h})"),
            Site::Pattern(l, h) => write!(f, "pattern({l}, {h})"),
        }
    }
}

/// A site's value replaced: rows `positions` (all rows when `None`) are taken from `value`,
/// which has the site's full shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Where.
    pub site: Site,
    /// The replacement, in the site's full shape ([token, width], or [query, key] for a
    /// pattern).
    pub value: Array2<f32>,
    /// The rows (token positions; query rows for a pattern) to replace; `None` for all.
    pub positions: Option<Vec<usize>>,
}

impl Override {
    /// Copies the chosen rows of the replacement into `target`. Checked shapes and positions
    /// beforehand ([`Interventions::check`]).
    pub(super) fn write(&self, target: ArrayViewMut2<'_, f32>) {
        self.write_from(0, target);
    }

    /// [`Self::write`] into the rows from `from` on (`target` row 0 is position `from`): a pass
    /// with [`FrozenRows`] holds only those. Rows before `from` are the frozen pass's.
    pub(super) fn write_from(&self, from: usize, mut target: ArrayViewMut2<'_, f32>) {
        match &self.positions {
            None => target.assign(&self.value.slice(s![from.., ..])),
            Some(rows) => {
                for &r in rows.iter().filter(|&&r| r >= from) {
                    target.row_mut(r - from).assign(&self.value.row(r));
                }
            }
        }
    }
}

/// What a pass captures and overrides. The default asks for nothing and costs nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Interventions {
    /// Sites to copy out.
    pub capture: Vec<Site>,
    /// Sites to overwrite, applied where the pass computes them.
    pub overrides: Vec<Override>,
}

impl Interventions {
    /// Captures `sites`, overrides nothing.
    pub fn capture(sites: impl IntoIterator<Item = Site>) -> Self {
        Self {
            capture: sites.into_iter().collect(),
            overrides: Vec::new(),
        }
    }

    /// True when nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.capture.is_empty() && self.overrides.is_empty()
    }

    /// True when `site` is captured.
    pub(super) fn captures(&self, site: Site) -> bool {
        !self.capture.is_empty() && self.capture.contains(&site)
    }

    /// The override of `site`, if any (the last one given wins).
    pub(super) fn override_of(&self, site: Site) -> Option<&Override> {
        if self.overrides.is_empty() {
            return None;
        }
        self.overrides.iter().rev().find(|o| o.site == site)
    }

    /// True when anything touches block `layer_idx`'s sublayer outputs (`Attn`/`Mlp`): the
    /// pass then adds the residual outside the kernel's epilogue.
    pub(super) fn touches(&self, site: Site) -> bool {
        self.captures(site) || self.override_of(site).is_some()
    }

    /// Checks every site against a stack of `layers` blocks of `heads` heads of width
    /// `d_head` on `len` tokens of width `d_model`, and every override's shape and positions.
    pub(super) fn check(
        &self,
        layers: usize,
        heads: usize,
        d_head: usize,
        d_model: usize,
        len: usize,
    ) -> Result<(), String> {
        let shape = |site: Site| -> Result<(usize, usize), String> {
            let (l, head) = match site {
                Site::Resid(l) => {
                    if l > layers {
                        return Err(format!(
                            "site {site} does not exist (residual sites 0..={layers})"
                        ));
                    }
                    return Ok((len, d_model));
                }
                Site::Attn(l) | Site::Mlp(l) => (l, None),
                Site::Head(l, h) | Site::Pattern(l, h) => (l, Some(h)),
            };
            if l >= layers {
                return Err(format!("site {site} does not exist ({layers} layers)"));
            }
            if let Some(h) = head
                && h >= heads
            {
                return Err(format!("site {site} does not exist ({heads} heads)"));
            }
            Ok(match site {
                Site::Head(..) => (len, d_head),
                Site::Pattern(..) => (len, len),
                _ => (len, d_model),
            })
        };
        for &site in &self.capture {
            shape(site)?;
        }
        for o in &self.overrides {
            let want = shape(o.site)?;
            if o.value.dim() != want {
                return Err(format!(
                    "the override of {} has shape {:?}, expected {want:?}",
                    o.site,
                    o.value.dim()
                ));
            }
            if let Some(&bad) = o.positions.iter().flatten().find(|&&p| p >= len) {
                return Err(format!(
                    "the override of {} names position {bad}, past the last of {len} tokens",
                    o.site
                ));
            }
            if o.value.iter().any(|v| !v.is_finite()) {
                return Err(format!("the override of {} is not finite", o.site));
            }
        }
        Ok(())
    }
}

/// What a pass captured, by site.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Captured {
    values: Vec<(Site, Array2<f32>)>,
}

impl Captured {
    /// The captured value of `site`.
    pub fn get(&self, site: Site) -> Option<&Array2<f32>> {
        self.values.iter().find(|(s, _)| *s == site).map(|(_, v)| v)
    }

    /// Takes the captured value of `site` out.
    pub fn take(&mut self, site: Site) -> Option<Array2<f32>> {
        let i = self.values.iter().position(|(s, _)| *s == site)?;
        Some(self.values.swap_remove(i).1)
    }

    /// Every captured site, in capture order.
    pub fn sites(&self) -> impl Iterator<Item = Site> + '_ {
        self.values.iter().map(|(s, _)| *s)
    }

    pub(super) fn put(&mut self, site: Site, value: Array2<f32>) {
        self.values.push((site, value));
    }
}

/// Where a resumed pass starts: block `layer`'s input, and what the blocks before it gave.
#[derive(Clone, Debug)]
pub struct Resume {
    /// The first block to run.
    pub layer: usize,
    /// Its input, `Resid(layer)` of an earlier pass on the same tokens. [token, d_model].
    pub resid: Array2<f32>,
    /// The earlier pass's maps of the blocks before `layer`, layer-major (empty when the pass
    /// keeps no maps).
    pub maps: Vec<HeadMap>,
    /// The earlier pass's residual norms after each block before `layer` (with
    /// `keep_layer_norms`).
    pub layer_norms: Vec<f32>,
    /// Rows the pass takes from the earlier pass instead of recomputing them, if any.
    pub frozen: Option<FrozenRows>,
}

/// The rows before `from` of every block's input, taken from an earlier pass on the same
/// tokens instead of recomputed: a pass with them computes queries, projections and MLPs only
/// for rows `from..` (keys and values for every row). Sound only when no row before `from`
/// can see one at or after it, as under a causal mask, and when nothing mixes rows (mean
/// ablations, the wrong-axis softmax): the pass refuses otherwise
/// ([`super::Transformer::can_freeze_rows`]). An override changes nothing before `from`.
#[derive(Clone, Debug)]
pub struct FrozenRows {
    /// The first recomputed row (at least 1, below the token count).
    pub from: usize,
    /// The earlier pass's `Resid(l)` for every l in 0..=L, each [token, d_model]; rows from
    /// `from` on are not read.
    pub resid: Arc<Vec<Array2<f32>>>,
}

impl Resume {
    /// Block 0 on the embeddings `x`: a whole pass.
    pub fn embeddings(x: Array2<f32>) -> Self {
        Self {
            layer: 0,
            resid: x,
            maps: Vec::new(),
            layer_norms: Vec::new(),
            frozen: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ablations_parse_print_and_normalize() {
        let a: Ablation = "2.3".parse().unwrap();
        assert_eq!(a, Ablation::zero(2, 3));
        assert_eq!(
            "2.3:mean".parse::<Ablation>().unwrap(),
            Ablation::mean(2, 3)
        );
        assert_eq!("2.3:zero".parse::<Ablation>().unwrap(), a);
        assert_eq!(Ablation::mean(2, 3).to_string(), "2.3:mean");
        assert_eq!(a.to_string(), "2.3");
        for bad in ["2", "2.x", "2.3:half", "", ".1", "1.-1"] {
            assert!(bad.parse::<Ablation>().is_err(), "{bad}");
        }
        let err = "2.3:half".parse::<Ablation>().unwrap_err();
        assert!(err.contains("zero or mean"), "{err}");
        let list = [
            Ablation::zero(1, 0),
            Ablation::zero(0, 2),
            Ablation::zero(1, 0),
        ];
        assert_eq!(
            Ablation::normalized(&list).unwrap(),
            vec![Ablation::zero(0, 2), Ablation::zero(1, 0)]
        );
        let err = Ablation::normalized(&[Ablation::zero(1, 0), Ablation::mean(1, 0)]).unwrap_err();
        assert_eq!(err, "head 1.0 is ablated twice, as 1.0 and as 1.0:mean");
        let json = serde_json::to_string(&[Ablation::mean(0, 1)]).unwrap();
        assert_eq!(json, r#"["0.1:mean"]"#);
    }

    #[test]
    fn the_first_difference_is_the_lowest_layer_that_changed() {
        let a = [Ablation::zero(1, 0), Ablation::zero(3, 1)];
        let b = [Ablation::zero(1, 0), Ablation::mean(3, 1)];
        assert_eq!(Ablation::first_difference(&a, &b), Some(3));
        assert_eq!(Ablation::first_difference(&a, &a), None);
        assert_eq!(Ablation::first_difference(&[], &a), Some(1));
        assert_eq!(Ablation::first_difference(&a[1..], &a), Some(1));
    }

    #[test]
    fn mean_ablation_writes_each_columns_mean() {
        // Rows (1, 10), (2, 20), (6, 0): column means 3 and 10.
        let mut z = ndarray::array![[1.0f32, 10.0], [2.0, 20.0], [6.0, 0.0]];
        Ablation::apply(AblationMode::Mean, z.view_mut());
        assert_eq!(z, ndarray::array![[3.0f32, 10.0], [3.0, 10.0], [3.0, 10.0]]);
        Ablation::apply(AblationMode::Zero, z.view_mut());
        assert!(z.iter().all(|&v| v == 0.0));
    }
}
