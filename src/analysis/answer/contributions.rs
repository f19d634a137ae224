//! Direct contributions (direct logit attribution): every part added to the residual stream,
//! read through the final norm frozen at the real run.
//!
//! x_L[P] = embeddings + Σ_l (Σ_h z_h W_O^h + b_O + mlp_l) in a pre-norm model. The final norm
//! is affine once its denominator σ_P (from the real x_L[P]) is held fixed: LayerNorm is
//! γ ⊙ (x − mean x)/σ + β and centring is linear, RMSNorm is γ ⊙ x/σ. So with the read-out
//! direction u = W_U[T] − W_U[F] (or W_U[T] alone):
//!
//! contribution(c) = u · (γ ⊙ centre(c) / σ_P),  norm_term = u · β + b_U[T] − b_U[F],
//!
//! and the contributions plus `norm_term` equal the metric logit(T) − logit(F) (or logit(T))
//! up to float error.

use super::{AnswerError, Readout, ReadoutNorm, Target};
use crate::engine::Norm;
use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

/// The final norm frozen at one residual row: a linear read-out plus a constant.
#[derive(Clone, Debug, PartialEq)]
pub struct FrozenReadout {
    /// g = γ ⊙ u / σ_P (u itself without a norm).
    gain: Array1<f64>,
    /// Σ_d g_d, for the centring of LayerNorm.
    gain_sum: f64,
    /// True for LayerNorm: each part is centred on its own mean first.
    centred: bool,
    /// u · β + b_U[T] − b_U[F].
    pub norm_term: f64,
}

impl FrozenReadout {
    /// The read-out of `target` through `readout`'s norm frozen at the residual row `x`
    /// (x_L[P] of the real run).
    pub fn new(
        readout: &Readout<'_>,
        x: ArrayView1<'_, f32>,
        target: &Target,
    ) -> Result<Self, AnswerError> {
        readout.check(target)?;
        let u = readout.direction(target);
        let n = x.len() as f64;
        let (gain, centred, beta_term) = match readout.norm {
            ReadoutNorm::Mlm(_) => {
                return Err(AnswerError::PostNorm {
                    what: "direct contributions",
                });
            }
            ReadoutNorm::None => (u, false, 0.0),
            ReadoutNorm::Norm(Norm::LayerNorm { gamma, beta, eps }) => {
                let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
                let var = x
                    .iter()
                    .map(|&v| (f64::from(v) - mean).powi(2))
                    .sum::<f64>()
                    / n;
                let sigma = (var + f64::from(*eps)).sqrt();
                let gain =
                    Array1::from_iter(u.iter().zip(gamma).map(|(&u, &g)| u * f64::from(g) / sigma));
                let beta_term = u.iter().zip(beta).map(|(&u, &b)| u * f64::from(b)).sum();
                (gain, true, beta_term)
            }
            ReadoutNorm::Norm(Norm::RmsNorm { gamma, eps }) => {
                let mean_sq = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
                let sigma = (mean_sq + f64::from(*eps)).sqrt();
                let gain =
                    Array1::from_iter(u.iter().zip(gamma).map(|(&u, &g)| u * f64::from(g) / sigma));
                (gain, false, 0.0)
            }
        };
        if gain.len() != x.len() {
            return Err(AnswerError::Bad(format!(
                "the residual is {} wide, but the read-out expects {}",
                x.len(),
                gain.len()
            )));
        }
        Ok(Self {
            gain_sum: gain.sum(),
            gain,
            centred,
            norm_term: beta_term + readout.bias_term(target),
        })
    }

    /// The contribution of one part c (a d_model row) to the metric.
    pub fn of(&self, c: ArrayView1<'_, f32>) -> f64 {
        let dot: f64 = c
            .iter()
            .zip(&self.gain)
            .map(|(&c, &g)| f64::from(c) * g)
            .sum();
        if self.centred {
            let mean = c.iter().map(|&v| f64::from(v)).sum::<f64>() / c.len() as f64;
            dot - mean * self.gain_sum
        } else {
            dot
        }
    }
}

/// What was added to the residual stream at P, part by part.
pub struct Parts<'a> {
    /// x_0[P]: the embeddings, position embeddings included.
    pub embeddings: ArrayView1<'a, f32>,
    /// Per layer and query head, z_h W_O^h at P. [layer][head] rows of d_model.
    pub heads: Vec<Array2<f32>>,
    /// Per layer, the output projection's bias (zero rows for none).
    pub attn_bias: Vec<Option<ArrayView1<'a, f32>>>,
    /// Per layer, the MLP's output at P.
    pub mlp: Vec<ArrayView1<'a, f32>>,
}

/// Direct contributions to the target's logit (difference), as `attnviz.contributions/v1`
/// records them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Contributions {
    /// The real metric: logit(T) − logit(F), or logit(T).
    pub metric: f64,
    /// The embeddings' contribution.
    pub embeddings: f64,
    /// Each head's, [layer][head].
    pub heads: Vec<Vec<f64>>,
    /// Each layer's output-projection bias's.
    pub attn_bias: Vec<f64>,
    /// Each MLP's.
    pub mlp: Vec<f64>,
    /// u · β + b_U[T] − b_U[F].
    pub norm_term: f64,
    /// All of the above added: equals `metric` up to float error.
    pub sum: f64,
}

/// The contributions of `parts` to `target`, the norm frozen at the real final residual `x_l`
/// (x_L[P]).
pub fn contributions(
    readout: &Readout<'_>,
    x_l: ArrayView1<'_, f32>,
    parts: &Parts<'_>,
    target: &Target,
) -> Result<Contributions, AnswerError> {
    let frozen = FrozenReadout::new(readout, x_l, target)?;
    let normed = readout.normed(x_l.insert_axis(ndarray::Axis(0)));
    let logits = readout.logits_f64(normed.row(0));
    let metric = logits[target.token as usize] - target.foil.map_or(0.0, |f| logits[f as usize]);
    let embeddings = frozen.of(parts.embeddings);
    let heads: Vec<Vec<f64>> = parts
        .heads
        .iter()
        .map(|layer| layer.rows().into_iter().map(|r| frozen.of(r)).collect())
        .collect();
    let attn_bias: Vec<f64> = parts
        .attn_bias
        .iter()
        .map(|b| b.map_or(0.0, |b| frozen.of(b)))
        .collect();
    let mlp: Vec<f64> = parts.mlp.iter().map(|m| frozen.of(*m)).collect();
    let sum = embeddings
        + heads.iter().flatten().sum::<f64>()
        + attn_bias.iter().sum::<f64>()
        + mlp.iter().sum::<f64>()
        + frozen.norm_term;
    Ok(Contributions {
        metric,
        embeddings,
        heads,
        attn_bias,
        mlp,
        norm_term: frozen.norm_term,
        sum,
    })
}

/// One head's contribution split by key: Σ_j of p_{P,j} · (v_j W_O^h) through the frozen
/// read-out. `pattern_row` is the head's attention row at P ([key]); `values_out` holds v_j W_O^h
/// for every key ([key, d_model]). The entries add up to the head's contribution.
pub fn key_split(
    frozen: &FrozenReadout,
    pattern_row: ArrayView1<'_, f32>,
    values_out: ArrayView2<'_, f32>,
) -> Vec<f64> {
    pattern_row
        .iter()
        .zip(values_out.rows())
        .map(|(&p, v)| f64::from(p) * frozen.of(v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn layer_norm_by_hand_and_the_sum_is_the_metric() {
        // d = 2, W_U = I, T = 0, F = 1: u = (1, −1). γ = (2, 1), β = (0.5, 0), ε = 0.
        // Parts a = (1, 0), b = (0, 3): x = (1, 3), mean 2, var 1, σ = 1.
        // centre(a) = (0.5, −0.5) → g = γ⊙u/σ = (2, −1) → 1 + 0.5 = 1.5.
        // centre(b) = (−1.5, 1.5) → −3 − 1.5 = −4.5. norm_term = u·β = 0.5.
        // Real: LN(x) = ((−1)·2 + 0.5, 1·1 + 0) = (−1.5, 1): logit diff −2.5 = 1.5 − 4.5 + 0.5.
        let norm = Norm::LayerNorm {
            gamma: array![2.0f32, 1.0],
            beta: array![0.5f32, 0.0],
            eps: 0.0,
        };
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let readout = Readout {
            norm: ReadoutNorm::Norm(&norm),
            weight: w.view(),
            bias: None,
        };
        let target = Target {
            position: 0,
            token: 0,
            foil: Some(1),
        };
        let x = array![1.0f32, 3.0];
        let frozen = FrozenReadout::new(&readout, x.view(), &target).unwrap();
        assert!((frozen.of(array![1.0f32, 0.0].view()) - 1.5).abs() < 1e-12);
        assert!((frozen.of(array![0.0f32, 3.0].view()) + 4.5).abs() < 1e-12);
        assert!((frozen.norm_term - 0.5).abs() < 1e-12);
        let a = array![1.0f32, 0.0];
        let b = array![0.0f32, 3.0];
        let parts = Parts {
            embeddings: a.view(),
            heads: vec![Array2::zeros((1, 2))],
            attn_bias: vec![None],
            mlp: vec![b.view()],
        };
        let c = contributions(&readout, x.view(), &parts, &target).unwrap();
        assert!((c.metric + 2.5).abs() < 1e-6, "{}", c.metric);
        assert!((c.sum - c.metric).abs() < 1e-6);
    }

    #[test]
    fn rms_norm_and_the_key_split_add_up() {
        // RMSNorm γ = (1, 1), ε = 0, x = (3, 4): mean square 12.5, σ = √12.5.
        // T = 1 alone: u = (0, 1), g = (0, 1/σ). A head's row p = (0.25, 0.75) over values
        // (0, 2) and (0, 4) gives 0.25·2/σ + 0.75·4/σ = 3.5/σ, its output (0, 3.5) the same.
        let norm = Norm::RmsNorm {
            gamma: array![1.0f32, 1.0],
            eps: 0.0,
        };
        let w = array![[1.0f32, 0.0], [0.0, 1.0]];
        let readout = Readout {
            norm: ReadoutNorm::Norm(&norm),
            weight: w.view(),
            bias: None,
        };
        let target = Target {
            position: 0,
            token: 1,
            foil: None,
        };
        let x = array![3.0f32, 4.0];
        let frozen = FrozenReadout::new(&readout, x.view(), &target).unwrap();
        let sigma = 12.5f64.sqrt();
        let split = key_split(
            &frozen,
            array![0.25f32, 0.75].view(),
            array![[0.0f32, 2.0], [0.0, 4.0]].view(),
        );
        assert!((split[0] - 0.5 / sigma).abs() < 1e-12);
        assert!((split[1] - 3.0 / sigma).abs() < 1e-12);
        let whole = frozen.of(array![0.0f32, 3.5].view());
        assert!((split.iter().sum::<f64>() - whole).abs() < 1e-12);
    }
}
