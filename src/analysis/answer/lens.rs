//! The logit lens: what the model would predict if the residual stream stopped at block l.
//!
//! For every l in 0..=L and each chosen position, logprobs = log_softmax(W_U · norm_f(x_l) +
//! b_U). At l = L this is the model's own output, computed by the same operations as `attnviz
//! next` (an f32 product with W_Uᵀ, then the row's log-softmax).

use super::{AnswerError, Readout};
use crate::model::lm_head::{MAX_LOGPROBS, log_softmax_rows, top_k};
use ndarray::{Array2, ArrayView1, ArrayView2, Axis};

/// One cell of the lens: one layer at one position.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LensCell {
    /// The k most likely tokens, largest first: (id, natural-log probability).
    pub top: Vec<(u32, f32)>,
    /// log p(T) here, with a target.
    pub target_logprob: Option<f32>,
    /// T's rank here (1 = the most likely), with a target: one plus the number of tokens with a
    /// strictly larger log-probability.
    pub target_rank: Option<usize>,
}

/// The lens table: `cells[layer][i]` is layer `layer` (0..=L) at `positions[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Lens {
    /// The positions, in the order of each layer's cells.
    pub positions: Vec<usize>,
    /// One row of cells per layer, L + 1 rows.
    pub cells: Vec<Vec<LensCell>>,
}

/// The lens over `states` (x_0 … x_L, each [token, d_model]) at `positions`, the top `k` tokens
/// per cell and, with `target`, its log-probability and rank in every cell. `progress` is
/// called after each layer with the layers done; returning false cancels (`Ok(None)`).
pub fn lens(
    readout: &Readout<'_>,
    states: &[ArrayView2<'_, f32>],
    positions: &[usize],
    k: usize,
    target: Option<u32>,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Option<Lens>, AnswerError> {
    let vocab = readout.vocab();
    if let Some(t) = target
        && t as usize >= vocab
    {
        return Err(AnswerError::Bad(format!(
            "token id {t} is outside the vocabulary (size {vocab})"
        )));
    }
    for x in states {
        let len = x.nrows();
        if let Some(&bad) = positions.iter().find(|&&p| p >= len) {
            return Err(AnswerError::Bad(format!(
                "position {bad} is out of range: the input has {len} tokens (0-based)"
            )));
        }
    }
    // Every (layer, position) row in one matrix, so that W_U is read (and packed for the
    // product) once per chunk of rows rather than once per layer; at most MAX_LOGPROBS
    // log-probabilities at once.
    let np = positions.len();
    let rows: Vec<ArrayView1<'_, f32>> = states
        .iter()
        .flat_map(|x| positions.iter().map(move |&p| x.row(p)))
        .collect();
    let chunk = (MAX_LOGPROBS / vocab.max(1)).clamp(1, 256);
    let mut flat: Vec<LensCell> = Vec::with_capacity(rows.len());
    for part in rows.chunks(chunk) {
        let x = ndarray::stack(Axis(0), part).map_err(|e| AnswerError::Bad(e.to_string()))?;
        let lp = logprobs(readout, x.view());
        for row in lp.rows() {
            let top = top_k(row, k);
            let (target_logprob, target_rank) = match target {
                Some(t) => {
                    let v = row[t as usize];
                    let above = row.iter().filter(|&&o| o > v).count();
                    (Some(v), Some(above + 1))
                }
                None => (None, None),
            };
            flat.push(LensCell {
                top,
                target_logprob,
                target_rank,
            });
        }
        if !progress(flat.len() / np.max(1)) {
            return Ok(None);
        }
    }
    let mut cells = Vec::with_capacity(states.len());
    let mut it = flat.into_iter();
    for _ in states {
        cells.push(it.by_ref().take(np).collect());
    }
    Ok(Some(Lens {
        positions: positions.to_vec(),
        cells,
    }))
}

/// log_softmax(W_U · norm_f(x) + b_U) for each row of `x`. Shape: [row, vocab].
pub fn logprobs(readout: &Readout<'_>, x: ArrayView2<'_, f32>) -> Array2<f32> {
    let normed = readout.normed(x);
    let mut logits = logits(normed.view(), readout.weight);
    if let Some(b) = readout.bias {
        logits += &b;
    }
    log_softmax_rows(&mut logits);
    logits
}

/// x · Wᵀ for rows `x` ([row, d]) and W ([vocab, d]). A few rows are read against each row of
/// W directly (contiguous dot products, in parallel over the vocabulary): a general product
/// would first copy all of W into its packed layout, which costs more than the product itself.
pub fn logits(x: ArrayView2<'_, f32>, w: ArrayView2<'_, f32>) -> Array2<f32> {
    const FEW: usize = 8;
    if x.nrows() > FEW || x.as_slice().is_none() || w.as_slice().is_none() {
        return x.dot(&w.t());
    }
    use rayon::prelude::*;
    let (rows, vocab) = (x.nrows(), w.nrows());
    let xs: Vec<&[f32]> = x.rows().into_iter().filter_map(|r| r.to_slice()).collect();
    let mut out = Array2::zeros((vocab, rows));
    if let Some(flat) = out.as_slice_mut() {
        flat.par_chunks_mut(rows * 512)
            .enumerate()
            .for_each(|(c, block)| {
                for (i, cell) in block.chunks_mut(rows).enumerate() {
                    let wv = w.row(c * 512 + i);
                    let Some(wv) = wv.to_slice() else { continue };
                    for (o, xr) in cell.iter_mut().zip(&xs) {
                        *o = dot(xr, wv);
                    }
                }
            });
    }
    out.reversed_axes().as_standard_layout().into_owned()
}

/// Σ a·b in eight lanes, so that the loop vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((l, x), y) in lanes.iter_mut().zip(xa).zip(xb) {
            *l += x * y;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::answer::ReadoutNorm;
    use ndarray::array;

    #[test]
    fn a_two_word_vocabulary_by_hand() {
        // W_U = [[1, 0], [0, 1]], no norm. x_0 row = (0, 0): logits (0, 0), log p = −ln 2 each;
        // x_1 row = (ln 3, 0): logits (ln 3, 0), p = (3/4, 1/4), log p(1) = ln(1/4).
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let readout = Readout {
            norm: ReadoutNorm::None,
            weight: w.view(),
            bias: None,
        };
        let x0 = array![[0.0f32, 0.0]];
        let x1 = array![[3.0f32.ln(), 0.0]];
        let out = lens(
            &readout,
            &[x0.view(), x1.view()],
            &[0],
            2,
            Some(1),
            &mut |_| true,
        )
        .unwrap()
        .unwrap();
        let c0 = &out.cells[0][0];
        assert!((c0.target_logprob.unwrap() + std::f32::consts::LN_2).abs() < 1e-6);
        // Equal log-probabilities: nothing is strictly above T, so it ranks first.
        assert_eq!(c0.target_rank, Some(1));
        let c1 = &out.cells[1][0];
        assert!((c1.target_logprob.unwrap() - 0.25f32.ln()).abs() < 1e-6);
        assert_eq!(c1.target_rank, Some(2));
        assert_eq!(c1.top[0].0, 0);
        assert!((c1.top[0].1 - 0.75f32.ln()).abs() < 1e-6);
    }

    #[test]
    fn bad_positions_and_tokens_are_refused() {
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let readout = Readout {
            norm: ReadoutNorm::None,
            weight: w.view(),
            bias: None,
        };
        let x = array![[0.0f32, 0.0]];
        let err = lens(&readout, &[x.view()], &[1], 1, None, &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("position 1"), "{err}");
        let err = lens(&readout, &[x.view()], &[0], 1, Some(7), &mut |_| true).unwrap_err();
        assert!(err.to_string().contains("token id 7"), "{err}");
        assert!(
            lens(&readout, &[x.view()], &[0], 1, None, &mut |_| false)
                .unwrap()
                .is_none()
        );
    }
}
