//! The logit lens: what the model would predict if the residual stream stopped at block l.
//!
//! For every l in 0..=L and each chosen position, logprobs = log_softmax(W_U · norm_f(x_l) +
//! b_U). At l = L this is the model's own output, computed by the same operations as `attnviz
//! next` (an f32 product with W_Uᵀ, then the row's log-softmax).

use super::{AnswerError, Readout};
use crate::model::lm_head::{MAX_LOGPROBS, log_softmax_rows, top_k};
use ndarray::{Array2, ArrayView2, Axis};

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
    let mut cells = Vec::with_capacity(states.len());
    for (l, x) in states.iter().enumerate() {
        let len = x.nrows();
        if let Some(&bad) = positions.iter().find(|&&p| p >= len) {
            return Err(AnswerError::Bad(format!(
                "position {bad} is out of range: the input has {len} tokens (0-based)"
            )));
        }
        let rows = x.select(Axis(0), positions);
        let mut layer = Vec::with_capacity(positions.len());
        // Bounded memory: at most MAX_LOGPROBS log-probabilities at once.
        let chunk = (MAX_LOGPROBS / vocab.max(1)).max(1);
        for part in rows.axis_chunks_iter(Axis(0), chunk) {
            let lp = logprobs(readout, part);
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
                layer.push(LensCell {
                    top,
                    target_logprob,
                    target_rank,
                });
            }
        }
        cells.push(layer);
        if !progress(l + 1) {
            return Ok(None);
        }
    }
    Ok(Some(Lens {
        positions: positions.to_vec(),
        cells,
    }))
}

/// log_softmax(W_U · norm_f(x) + b_U) for each row of `x`. Shape: [row, vocab].
pub fn logprobs(readout: &Readout<'_>, x: ArrayView2<'_, f32>) -> Array2<f32> {
    let normed = readout.normed(x);
    let mut logits = normed.dot(&readout.weight.t());
    if let Some(b) = readout.bias {
        logits += &b;
    }
    log_softmax_rows(&mut logits);
    logits
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
