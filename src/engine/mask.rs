//! Attention masks: which (query, key) pairs may attend.
//!
//! A [`MaskSpec`] is parsed from the `+`-joined spelling in ARCHITECTURE.md
//! (`causal+window:4+drop-keys:0`) and turned into a boolean matrix for a given sequence.
//!
//! The rules, in order:
//! 1. Sparsity patterns (`window:W`, `strided:S`, `block:B`) intersect. With none, every pair is
//!    allowed.
//! 2. `global:I,J` grants those tokens their whole row and column on top of step 1.
//! 3. Hard constraints apply last and always win: `causal`, `padding`, `drop-keys`,
//!    `drop-queries` and `drop-cells`.

use ndarray::Array2;

/// One part of a mask spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MaskPart {
    /// Key index ≤ query index.
    Causal,
    /// Pad tokens are not attendable as keys.
    Padding,
    /// |query − key| ≤ W.
    Window(usize),
    /// (query − key) mod S = 0, or |query − key| < S.
    Strided(usize),
    /// Query and key fall in the same chunk of B consecutive tokens.
    Block(usize),
    /// These tokens see and are seen by every token.
    Global(Vec<usize>),
    /// These keys are unattendable.
    DropKeys(Vec<usize>),
    /// These query rows are masked entirely.
    DropQueries(Vec<usize>),
    /// These (query, key) cells are masked.
    DropCells(Vec<(usize, usize)>),
}

/// A full mask: a list of parts combined by the rules in the module docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaskSpec {
    /// The parts in the order they were written. Empty means `none`.
    pub parts: Vec<MaskPart>,
}

/// Errors in a mask spec, or a spec that does not fit the sequence.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    /// The spelling could not be parsed.
    #[error("bad mask spec {spec:?}: {reason}")]
    Parse {
        /// The whole spec as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An index in the spec is past the end of the sequence.
    #[error("mask {part} names token {index}, but there are only {len} tokens")]
    OutOfRange {
        /// The part that holds the index, as spelled.
        part: String,
        /// The offending index.
        index: usize,
        /// The sequence length.
        len: usize,
    },
}

impl MaskSpec {
    /// No mask: every pair attends.
    pub fn none() -> Self {
        Self::default()
    }

    /// True when no part is present.
    pub fn is_none(&self) -> bool {
        self.parts.is_empty()
    }

    /// True when the spec contains `causal`.
    pub fn is_causal(&self) -> bool {
        self.parts.contains(&MaskPart::Causal)
    }

    /// Parses the `+`-joined spelling, for example `global:0+window:3` or `none`.
    pub fn parse(spec: &str) -> Result<Self, MaskError> {
        let err = |reason: String| MaskError::Parse {
            spec: spec.to_owned(),
            reason,
        };
        let trimmed = spec.trim();
        if trimmed.is_empty() || trimmed == "none" {
            return Ok(Self::none());
        }
        let mut parts = Vec::new();
        for raw in trimmed.split('+') {
            let raw = raw.trim();
            let (name, arg) = match raw.split_once(':') {
                Some((name, arg)) => (name.trim(), Some(arg.trim())),
                None => (raw, None),
            };
            let need_arg =
                || arg.ok_or_else(|| err(format!("{name} needs a value, as in {name}:3")));
            let positive = |what: &str| -> Result<usize, MaskError> {
                let value = need_arg()?;
                match value.parse::<usize>() {
                    Ok(v) if v > 0 => Ok(v),
                    _ => Err(err(format!(
                        "{what} must be a positive integer, got {value:?}"
                    ))),
                }
            };
            let part = match name {
                "none" => continue,
                "causal" | "padding" if arg.is_some() => {
                    return Err(err(format!("{name} takes no value")));
                }
                "causal" => MaskPart::Causal,
                "padding" => MaskPart::Padding,
                // A window of 0 is meaningful: only the diagonal.
                "window" => {
                    let value = need_arg()?;
                    MaskPart::Window(value.parse().map_err(|_| {
                        err(format!(
                            "window must be a non-negative integer, got {value:?}"
                        ))
                    })?)
                }
                "strided" => MaskPart::Strided(positive("strided")?),
                "block" => MaskPart::Block(positive("block")?),
                "global" => MaskPart::Global(parse_list(need_arg()?).map_err(err)?),
                "drop-keys" => MaskPart::DropKeys(parse_list(need_arg()?).map_err(err)?),
                "drop-queries" => MaskPart::DropQueries(parse_list(need_arg()?).map_err(err)?),
                "drop-cells" => MaskPart::DropCells(parse_cells(need_arg()?).map_err(err)?),
                "" => return Err(err("empty part between '+' signs".to_owned())),
                other => {
                    return Err(err(format!(
                        "unknown part {other:?}; expected none, causal, padding, window:W, strided:S, \
                         block:B, global:I,J, drop-keys:I,J, drop-queries:I,J or drop-cells:Q.K,Q.K"
                    )));
                }
            };
            parts.push(part);
        }
        Ok(Self { parts })
    }

    /// The spec for the same input with token `removed` taken out (occlusion by removal): the
    /// indices after it move down by one and its own entries go (a dropped key stays dropped,
    /// a cell of the removed token disappears); window, stride and block are relative and stay.
    pub fn without_token(&self, removed: usize) -> MaskSpec {
        let shift = |i: usize| (i != removed).then(|| if i > removed { i - 1 } else { i });
        let list = |v: &[usize]| v.iter().filter_map(|&i| shift(i)).collect::<Vec<_>>();
        let parts = self
            .parts
            .iter()
            .filter_map(|part| {
                let mapped = match part {
                    MaskPart::Global(v) => MaskPart::Global(list(v)),
                    MaskPart::DropKeys(v) => MaskPart::DropKeys(list(v)),
                    MaskPart::DropQueries(v) => MaskPart::DropQueries(list(v)),
                    MaskPart::DropCells(cells) => MaskPart::DropCells(
                        cells
                            .iter()
                            .filter_map(|&(q, k)| Some((shift(q)?, shift(k)?)))
                            .collect(),
                    ),
                    other => other.clone(),
                };
                let empty = matches!(
                    &mapped,
                    MaskPart::Global(v) | MaskPart::DropKeys(v) | MaskPart::DropQueries(v)
                        if v.is_empty()
                ) || matches!(&mapped, MaskPart::DropCells(c) if c.is_empty());
                (!empty).then_some(mapped)
            })
            .collect();
        MaskSpec { parts }
    }

    /// Builds the allowed matrix for `len` tokens. `is_pad[k]` says whether key k is padding.
    ///
    /// Returns `None` when every pair is allowed, which lets the engine skip masking.
    /// Shape: [query, key].
    pub fn build(&self, len: usize, is_pad: &[bool]) -> Result<Option<Array2<bool>>, MaskError> {
        if self.parts.is_empty() {
            return Ok(None);
        }
        self.check_indices(len)?;
        let sparse: Vec<&MaskPart> = self
            .parts
            .iter()
            .filter(|p| {
                matches!(
                    p,
                    MaskPart::Window(_) | MaskPart::Strided(_) | MaskPart::Block(_)
                )
            })
            .collect();
        let mut allowed = Array2::from_shape_fn((len, len), |(query_idx, key_idx)| {
            sparse
                .iter()
                .all(|part| sparse_allows(part, query_idx, key_idx))
        });
        for part in &self.parts {
            if let MaskPart::Global(indices) = part {
                for &g in indices {
                    allowed.row_mut(g).fill(true);
                    allowed.column_mut(g).fill(true);
                }
            }
        }
        for part in &self.parts {
            match part {
                MaskPart::Causal => {
                    for ((query_idx, key_idx), cell) in allowed.indexed_iter_mut() {
                        if key_idx > query_idx {
                            *cell = false;
                        }
                    }
                }
                MaskPart::Padding => {
                    for (key_idx, _) in is_pad.iter().enumerate().filter(|(_, pad)| **pad) {
                        if key_idx < len {
                            allowed.column_mut(key_idx).fill(false);
                        }
                    }
                }
                MaskPart::DropKeys(indices) => {
                    for &k in indices {
                        allowed.column_mut(k).fill(false);
                    }
                }
                MaskPart::DropQueries(indices) => {
                    for &q in indices {
                        allowed.row_mut(q).fill(false);
                    }
                }
                MaskPart::DropCells(cells) => {
                    for &(q, k) in cells {
                        allowed[(q, k)] = false;
                    }
                }
                MaskPart::Window(_)
                | MaskPart::Strided(_)
                | MaskPart::Block(_)
                | MaskPart::Global(_) => {}
            }
        }
        Ok(Some(allowed))
    }

    /// How many (query, key) cells of a `len`-token input the mask allows, with no padding
    /// tokens: the work a sparse kernel would do. Equals the count of `true` in
    /// [`Self::build`]'s matrix, computed one row at a time (memory O(len), time O(len²)).
    pub fn count_allowed(&self, len: usize) -> Result<u64, MaskError> {
        if self.parts.is_empty() {
            return Ok((len as u64) * (len as u64));
        }
        self.check_indices(len)?;
        let mut globals = vec![false; len];
        let mut dropped_keys = vec![false; len];
        let mut dropped_queries = vec![false; len];
        let mut cells: Vec<(usize, usize)> = Vec::new();
        for part in &self.parts {
            match part {
                MaskPart::Global(v) => v.iter().for_each(|&g| globals[g] = true),
                MaskPart::DropKeys(v) => v.iter().for_each(|&k| dropped_keys[k] = true),
                MaskPart::DropQueries(v) => v.iter().for_each(|&q| dropped_queries[q] = true),
                MaskPart::DropCells(c) => cells.extend(c),
                _ => {}
            }
        }
        cells.sort_unstable();
        cells.dedup();
        let causal = self.is_causal();
        let allows = |q: usize, k: usize| {
            let sparse =
                globals[q] || globals[k] || self.parts.iter().all(|p| sparse_allows(p, q, k));
            let hard = dropped_queries[q] || dropped_keys[k] || (causal && k > q);
            sparse && !hard
        };
        let mut total = 0u64;
        for query_idx in 0..len {
            total += (0..len)
                .filter(|&key_idx| allows(query_idx, key_idx))
                .count() as u64;
        }
        // Dropped cells that were otherwise allowed.
        total -= cells.iter().filter(|&&(q, k)| allows(q, k)).count() as u64;
        Ok(total)
    }

    fn check_indices(&self, len: usize) -> Result<(), MaskError> {
        for part in &self.parts {
            let indices: Vec<usize> = match part {
                MaskPart::Global(v) | MaskPart::DropKeys(v) | MaskPart::DropQueries(v) => v.clone(),
                MaskPart::DropCells(cells) => cells.iter().flat_map(|&(q, k)| [q, k]).collect(),
                _ => continue,
            };
            if let Some(&index) = indices.iter().find(|&&i| i >= len) {
                return Err(MaskError::OutOfRange {
                    part: part.to_string(),
                    index,
                    len,
                });
            }
        }
        Ok(())
    }
}

fn sparse_allows(part: &MaskPart, query_idx: usize, key_idx: usize) -> bool {
    let distance = query_idx.abs_diff(key_idx);
    match part {
        MaskPart::Window(w) => distance <= *w,
        MaskPart::Strided(s) => distance.is_multiple_of(*s) || distance < *s,
        MaskPart::Block(b) => query_idx / b == key_idx / b,
        _ => true,
    }
}

fn parse_list(arg: &str) -> Result<Vec<usize>, String> {
    arg.split(',')
        .map(|s| {
            let s = s.trim();
            s.parse::<usize>()
                .map_err(|_| format!("expected a token index, got {s:?}"))
        })
        .collect()
}

fn parse_cells(arg: &str) -> Result<Vec<(usize, usize)>, String> {
    arg.split(',')
        .map(|cell| {
            let cell = cell.trim();
            let (q, k) = cell
                .split_once('.')
                .ok_or_else(|| format!("expected a cell as QUERY.KEY, got {cell:?}"))?;
            let parse = |s: &str| {
                s.parse::<usize>()
                    .map_err(|_| format!("expected a token index in cell {cell:?}, got {s:?}"))
            };
            Ok((parse(q)?, parse(k)?))
        })
        .collect()
}

fn join(indices: &[usize]) -> String {
    indices
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

impl std::fmt::Display for MaskPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaskPart::Causal => write!(f, "causal"),
            MaskPart::Padding => write!(f, "padding"),
            MaskPart::Window(w) => write!(f, "window:{w}"),
            MaskPart::Strided(s) => write!(f, "strided:{s}"),
            MaskPart::Block(b) => write!(f, "block:{b}"),
            MaskPart::Global(v) => write!(f, "global:{}", join(v)),
            MaskPart::DropKeys(v) => write!(f, "drop-keys:{}", join(v)),
            MaskPart::DropQueries(v) => write!(f, "drop-queries:{}", join(v)),
            MaskPart::DropCells(cells) => {
                let cells: Vec<String> = cells.iter().map(|(q, k)| format!("{q}.{k}")).collect();
                write!(f, "drop-cells:{}", cells.join(","))
            }
        }
    }
}

/// What a model adds to every run's mask, from its architecture: the causal mask of a causal
/// model (GPT-2, Llama), Mistral's sliding window, and the head count that the `chunk-by-heads`
/// mistake turns into a block size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchitectureMask {
    /// Causal by construction.
    pub causal: bool,
    /// A query sees the W most recent keys, itself included (Mistral's `sliding_window`).
    pub sliding_window: Option<usize>,
    /// Query heads per layer.
    pub heads: usize,
}

/// The mask a run applied: the user's spec combined with what the architecture adds and any
/// teaching mistake, for one input length. Decided once, by [`AppliedMask::decide`] (the engine
/// calls it at the start of every forward and backward pass); everyone downstream reads this
/// value, its spelling ([`std::fmt::Display`]) and the grid derived from it
/// ([`AppliedMask::allowed`]), and never re-derives it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedMask {
    spec: MaskSpec,
}

impl AppliedMask {
    /// The one decision: `user` plus the architecture's causal mask (unless the
    /// [`Mistake::NoCausalMask`](super::Mistake::NoCausalMask) mistake drops it; a `causal` the
    /// user wrote stays), the sliding window once the input of `len` tokens is longer than it
    /// (query − key < W, which `window:W−1` spells), and `block:2^heads` under
    /// [`Mistake::ChunkByHeads`](super::Mistake::ChunkByHeads).
    pub fn decide(
        user: &MaskSpec,
        arch: ArchitectureMask,
        mistakes: &[super::Mistake],
        len: usize,
    ) -> Self {
        use super::Mistake;
        let mut spec = user.clone();
        if arch.causal && !mistakes.contains(&Mistake::NoCausalMask) && !spec.is_causal() {
            spec.parts.push(MaskPart::Causal);
        }
        if let Some(window) = arch.sliding_window
            && window > 0
            && len > window
        {
            spec.parts.push(MaskPart::Window(window - 1));
        }
        if mistakes.contains(&Mistake::ChunkByHeads) {
            let block = MaskPart::Block(chunk_by_heads_size(arch.heads));
            if !spec.parts.contains(&block) {
                spec.parts.push(block);
            }
        }
        Self { spec }
    }

    /// The mask an attention file records (its `mask` field, parsed by the file's reader).
    pub fn recorded(spec: MaskSpec) -> Self {
        Self { spec }
    }

    /// The mask as parts.
    pub fn spec(&self) -> &MaskSpec {
        &self.spec
    }

    /// True when nothing is masked by the spec (`none`).
    pub fn is_none(&self) -> bool {
        self.spec.is_none()
    }

    /// True when the causal mask is part of it.
    pub fn is_causal(&self) -> bool {
        self.spec.is_causal()
    }

    /// The allowed (query, key) grid for `len` tokens whose padding is `is_pad`, derived on
    /// demand; `None` when every pair is allowed. Shape: [query, key].
    pub fn allowed(&self, len: usize, is_pad: &[bool]) -> Result<Option<Array2<bool>>, MaskError> {
        self.spec.build(len, is_pad)
    }
}

impl AppliedMask {
    /// The parts that forbid cell (`query_idx`, `key_idx`), as spelled (`causal`,
    /// `window:3`), for hover text; empty when the cell is allowed. `is_pad[k]` says whether
    /// key k is padding. The same rules as [`MaskSpec::build`], for one cell.
    pub fn why_masked(&self, query_idx: usize, key_idx: usize, is_pad: &[bool]) -> Vec<String> {
        let (q, k) = (query_idx, key_idx);
        let mut why = Vec::new();
        let global = self.spec.parts.iter().any(|p| {
            matches!(p, MaskPart::Global(indices) if indices.contains(&q) || indices.contains(&k))
        });
        if !global {
            for part in &self.spec.parts {
                if matches!(
                    part,
                    MaskPart::Window(_) | MaskPart::Strided(_) | MaskPart::Block(_)
                ) && !sparse_allows(part, q, k)
                {
                    why.push(part.to_string());
                }
            }
        }
        for part in &self.spec.parts {
            let forbids = match part {
                MaskPart::Causal => k > q,
                MaskPart::Padding => is_pad.get(k).copied().unwrap_or(false),
                MaskPart::DropKeys(indices) => indices.contains(&k),
                MaskPart::DropQueries(indices) => indices.contains(&q),
                MaskPart::DropCells(cells) => cells.contains(&(q, k)),
                MaskPart::Window(_)
                | MaskPart::Strided(_)
                | MaskPart::Block(_)
                | MaskPart::Global(_) => false,
            };
            if forbids {
                why.push(part.to_string());
            }
        }
        why
    }
}

impl std::fmt::Display for AppliedMask {
    /// The canonical spelling (`causal+window:3`, `none`), as attention files record it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.spec.fmt(f)
    }
}

/// The chunk size of the tutorial's "hierarchical attention": 2^heads tokens (saturating at
/// `usize::MAX`, one chunk for any input, from 64 heads on).
pub fn chunk_by_heads_size(heads: usize) -> usize {
    u32::try_from(heads)
        .ok()
        .and_then(|h| 1usize.checked_shl(h))
        .unwrap_or(usize::MAX)
}

impl std::fmt::Display for MaskSpec {
    /// The canonical spelling, which [`MaskSpec::parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parts.is_empty() {
            return write!(f, "none");
        }
        let parts: Vec<String> = self.parts.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join("+"))
    }
}

impl std::str::FromStr for MaskSpec {
    type Err = MaskError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod count_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn count_allowed_equals_the_built_matrix() {
        let specs = [
            "none",
            "causal",
            "window:2",
            "strided:3",
            "block:4",
            "global:0+window:1",
            "causal+block:3+drop-keys:1+drop-queries:5+drop-cells:4.4,4.4,6.0",
            "global:2+strided:2+drop-cells:2.7",
        ];
        for spec in specs {
            let mask = MaskSpec::parse(spec).unwrap();
            let want = mask
                .build(9, &[false; 9])
                .unwrap()
                .map_or(81, |m| m.iter().filter(|&&ok| ok).count() as u64);
            assert_eq!(mask.count_allowed(9).unwrap(), want, "{spec}");
        }
        // Causal over 4 tokens: 4 + 3 + 2 + 1 = 10 cells.
        assert_eq!(
            MaskSpec::parse("causal").unwrap().count_allowed(4).unwrap(),
            10
        );
        // block:2 over 5 tokens: chunks of 2, 2, 1 → 4 + 4 + 1 = 9.
        assert_eq!(
            MaskSpec::parse("block:2")
                .unwrap()
                .count_allowed(5)
                .unwrap(),
            9
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_applied_mask_is_decided_once_from_spec_architecture_and_mistakes() {
        use crate::engine::Mistake;
        let none = MaskSpec::none();
        let mistral = ArchitectureMask {
            causal: true,
            sliding_window: Some(4),
            heads: 2,
        };
        // W = 4: at 4 tokens every key is within the window; at 5, query 4 loses key 0
        // (4 − 0 = 4 is not < 4), which window:3 (|q − k| ≤ 3) expresses.
        assert_eq!(
            AppliedMask::decide(&none, mistral, &[], 4).to_string(),
            "causal"
        );
        assert_eq!(
            AppliedMask::decide(&none, mistral, &[], 5).to_string(),
            "causal+window:3"
        );
        let encoder = ArchitectureMask::default();
        assert_eq!(
            AppliedMask::decide(&none, encoder, &[], 5).to_string(),
            "none"
        );
        // The forgotten causal mask drops the architecture's, not one the user wrote.
        let gpt2 = ArchitectureMask {
            causal: true,
            sliding_window: None,
            heads: 4,
        };
        let forgot = [Mistake::NoCausalMask];
        assert_eq!(
            AppliedMask::decide(&none, gpt2, &forgot, 5).to_string(),
            "none"
        );
        let written = MaskSpec::parse("causal").unwrap();
        assert_eq!(
            AppliedMask::decide(&written, gpt2, &forgot, 5).to_string(),
            "causal"
        );
        // Chunking by 2^heads: 4 heads give blocks of 16, added once.
        let chunked = AppliedMask::decide(&none, gpt2, &[Mistake::ChunkByHeads], 5);
        assert_eq!(chunked.to_string(), "causal+block:16");
        // The grid is derived from the decision: causal over 3 tokens forbids k > q.
        let grid = AppliedMask::decide(&none, gpt2, &[], 3)
            .allowed(3, &[false; 3])
            .unwrap()
            .unwrap();
        assert!(grid[(0, 0)] && !grid[(0, 1)] && grid[(2, 1)]);
    }

    #[test]
    fn removing_a_token_maps_the_mask_onto_the_shortened_input() {
        let spec =
            MaskSpec::parse("causal+drop-keys:1,4+drop-cells:3.2,2.0+global:2+window:1").unwrap();
        // Remove token 2: key 4 becomes 3, key 1 stays; cell 3.2 goes (it names token 2), 2.0
        // goes too; the global token goes; window and causal stay.
        let out = spec.without_token(2);
        assert_eq!(out.to_string(), "causal+drop-keys:1,3+window:1");
        let out = spec.without_token(0);
        assert_eq!(
            out.to_string(),
            "causal+drop-keys:0,3+drop-cells:2.1+global:1+window:1"
        );
        // Checked against the full grid: every kept pair keeps its verdict under the
        // position-bound parts (a window is relative: it applies to the new positions).
        let bound = MaskSpec::parse("causal+drop-keys:1,4+drop-cells:3.2,2.0").unwrap();
        let full = bound.build(5, &[false; 5]).unwrap().unwrap();
        for removed in 0..5 {
            let short = bound.without_token(removed).build(4, &[false; 4]).unwrap();
            let kept: Vec<usize> = (0..5).filter(|&i| i != removed).collect();
            for (r, &q) in kept.iter().enumerate() {
                for (c, &k) in kept.iter().enumerate() {
                    let allowed = short.as_ref().is_none_or(|a| a[(r, c)]);
                    assert_eq!(allowed, full[(q, k)], "remove {removed}: ({q}, {k})");
                }
            }
        }
    }

    #[test]
    fn why_masked_names_the_parts_that_forbid_a_cell_as_build_does() {
        let spec = MaskSpec::parse("causal+window:1+global:0+drop-cells:3.2+padding").unwrap();
        let mask = AppliedMask::recorded(spec);
        let is_pad = [false, false, false, false, true];
        let grid = mask.allowed(5, &is_pad).unwrap().unwrap();
        for q in 0..5 {
            for k in 0..5 {
                let why = mask.why_masked(q, k, &is_pad);
                assert_eq!(why.is_empty(), grid[(q, k)], "({q}, {k}): {why:?}");
            }
        }
        // (0, 2): the future, and global token 0 lifts the window but not causal.
        assert_eq!(mask.why_masked(0, 2, &is_pad), ["causal"]);
        // (3, 1): outside the window.
        assert_eq!(mask.why_masked(3, 1, &is_pad), ["window:1"]);
        // (3, 2): inside the window but dropped.
        assert_eq!(mask.why_masked(3, 2, &is_pad), ["drop-cells:3.2"]);
        // (4, 4): a padding key.
        assert_eq!(mask.why_masked(4, 4, &is_pad), ["padding"]);
    }

    /// Renders an allowed matrix as rows of '1'/'.' for readable assertions.
    fn picture(spec: &str, len: usize, pads: &[bool]) -> Vec<String> {
        let allowed = MaskSpec::parse(spec)
            .unwrap()
            .build(len, pads)
            .unwrap()
            .unwrap();
        allowed
            .rows()
            .into_iter()
            .map(|row| row.iter().map(|&a| if a { '1' } else { '.' }).collect())
            .collect()
    }

    #[test]
    fn none_builds_nothing() {
        assert_eq!(
            MaskSpec::parse("none").unwrap().build(4, &[]).unwrap(),
            None
        );
        assert_eq!(MaskSpec::parse("").unwrap(), MaskSpec::none());
    }

    #[test]
    fn causal_is_lower_triangular() {
        assert_eq!(picture("causal", 3, &[]), ["1..", "11.", "111"]);
    }

    #[test]
    fn window_strided_block() {
        assert_eq!(
            picture("window:1", 4, &[]),
            ["11..", "111.", ".111", "..11"]
        );
        // strided:2 keeps |i-j| < 2 or even distances.
        assert_eq!(
            picture("strided:2", 4, &[]),
            ["111.", "1111", "1111", ".111"]
        );
        // block:2 keeps the 2x2 blocks on the diagonal; 5 tokens leave a 1x1 block at the end.
        assert_eq!(
            picture("block:2", 5, &[]),
            ["11...", "11...", "..11.", "..11.", "....1"]
        );
    }

    #[test]
    fn sparse_patterns_intersect_and_global_adds_rows_and_columns() {
        // window:2 ∩ block:2 is the block diagonal (block is stricter here).
        assert_eq!(
            picture("window:2+block:2", 4, &[]),
            picture("block:2", 4, &[])
        );
        assert_eq!(
            picture("global:0+window:1", 4, &[]),
            ["1111", "111.", "1111", "1.11"]
        );
    }

    #[test]
    fn hard_constraints_win_over_global() {
        assert_eq!(
            picture("global:0+window:1+causal+drop-keys:1", 4, &[]),
            ["1...", "1...", "1.1.", "1.11"]
        );
        assert_eq!(
            picture("drop-queries:1+drop-cells:0.0", 2, &[]),
            [".1", ".."]
        );
        assert_eq!(
            picture("padding", 3, &[false, false, true]),
            ["11.", "11.", "11."]
        );
    }

    #[test]
    fn display_round_trips() {
        for spec in [
            "none",
            "causal+window:4+drop-keys:0,2",
            "global:0+window:3",
            "drop-cells:1.2,3.0",
        ] {
            assert_eq!(MaskSpec::parse(spec).unwrap().to_string(), spec);
        }
    }

    #[test]
    fn bad_specs_are_errors() {
        for spec in [
            "window",
            "window:x",
            "strided:0",
            "block:-1",
            "bogus",
            "causal:3",
            "a++b",
            "drop-cells:1",
        ] {
            assert!(MaskSpec::parse(spec).is_err(), "{spec} parsed");
        }
        let spec = MaskSpec::parse("drop-keys:9").unwrap();
        assert_eq!(
            spec.build(3, &[]).unwrap_err(),
            MaskError::OutOfRange {
                part: "drop-keys:9".into(),
                index: 9,
                len: 3
            }
        );
    }
}
