//! Value zeroing (Mohebbi et al. 2023): a context-mixing map per layer that accounts for the
//! value vectors and the residual stream.
//!
//! For layer l and token j, token j's value vectors are zeroed in every head of layer l only,
//! that block's output is recomputed for every token i (attention, residual, norms, MLP: the
//! engine's [`Transformer::value_zeroing_layer`](crate::engine::Transformer::value_zeroing_layer)),
//! and C[i, j] = 1 − cos(out_i with j zeroed, out_i). Each row is then divided by its sum. The
//! across-layer map is the plain product C_last ⋯ C_first (no α·I: the residual is already in
//! C). The run follows the options' mask, ablations and the rest.
//!
//! A row whose raw sum is tiny (such as [CLS] in BERT's early layers, which barely moves when
//! any one value is zeroed) is noise after normalisation: see [`ValueZeroing::row_sums`].

use crate::engine::{EngineError, Interventions, RunOptions, Site};
use crate::model::Model;
use crate::tokenize::Token;
use ndarray::Array2;

/// Every layer's value-zeroing map and their product.
#[derive(Clone, Debug, PartialEq)]
pub struct ValueZeroing {
    /// Per layer, C with every row divided by its sum (a zero row stays zero).
    /// Shape: [layer][query i, zeroed token j].
    pub maps: Vec<Array2<f64>>,
    /// Per layer and query, the row's sum before normalising: how much the row moved at all.
    /// Rows with a sum near f32's resolution (below about 1e-7) are not resolved.
    /// Shape: [layer][query].
    pub row_sums: Vec<Vec<f64>>,
    /// The maps multiplied across layers, last times first. Shape: [query, input token].
    pub product: Array2<f64>,
}

/// Value zeroing of `model` on `tokens` under `opts`. `progress` gets the fraction done (after
/// each batch of rows of each layer); returning false cancels ([`EngineError::Cancelled`]).
pub fn value_zeroing(
    model: &dyn Model,
    tokens: &[Token],
    opts: &RunOptions,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<ValueZeroing, EngineError> {
    let transformer = model.transformer();
    let layers = transformer.blocks().len();
    let plain = RunOptions {
        keep_maps: false,
        trace_layer: None,
        keep_hidden: false,
        ..opts.clone()
    };
    let iv = Interventions::capture((0..layers).map(Site::Resid));
    let (_, mut captured) = model.forward_intervened(tokens, &plain, &iv, None, &mut |_| true)?;
    let is_pad: Vec<bool> = tokens.iter().map(Token::is_pad).collect();
    let n = tokens.len();
    let mut maps = Vec::with_capacity(layers);
    let mut row_sums = Vec::with_capacity(layers);
    let mut product = Array2::<f64>::eye(n);
    for l in 0..layers {
        let x = captured.take(Site::Resid(l)).ok_or_else(|| {
            EngineError::Unsupported(format!("the input of layer {l} was not captured"))
        })?;
        let mut c = transformer.value_zeroing_layer(l, &x, &is_pad, &plain, &mut |f| {
            progress((l as f32 + f) / layers as f32)
        })?;
        let mut sums = Vec::with_capacity(n);
        for mut row in c.rows_mut() {
            let sum = row.sum();
            if sum > 0.0 {
                row /= sum;
            }
            sums.push(sum);
        }
        product = c.dot(&product);
        maps.push(c);
        row_sums.push(sums);
    }
    Ok(ValueZeroing {
        maps,
        row_sums,
        product,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{DemoConfig, DemoModel};

    #[test]
    fn rows_sum_to_one_the_product_is_the_maps_product_and_cancel_stops() {
        let model = DemoModel::new(DemoConfig {
            layers: 2,
            ..DemoConfig::default()
        })
        .unwrap();
        let tokens = crate::tokenize::tokenize(
            "the cat sat on the mat",
            crate::tokenize::DemoTokenizer::Words,
        )
        .unwrap();
        let opts = RunOptions::default();
        let vz = value_zeroing(&model, &tokens, &opts, &mut |_| true).unwrap();
        assert_eq!(vz.maps.len(), 2);
        for (map, sums) in vz.maps.iter().zip(&vz.row_sums) {
            for (row, &sum) in map.rows().into_iter().zip(sums) {
                assert!(sum > 0.0);
                assert!((row.sum() - 1.0).abs() < 1e-12);
                assert!(row.iter().all(|&v| v >= 0.0));
            }
        }
        let want = vz.maps[1].dot(&vz.maps[0]);
        assert!((&vz.product - &want).iter().all(|d| d.abs() < 1e-15));
        let mut calls = 0;
        let err = value_zeroing(&model, &tokens, &opts, &mut |_| {
            calls += 1;
            false
        })
        .unwrap_err();
        assert!(matches!(err, EngineError::Cancelled));
        assert_eq!(calls, 1);
    }

    #[test]
    fn with_elementwise_values_each_token_only_moves_itself() {
        // Under the mistake, z_i = p_ii · v_i: zeroing v_j changes out_j alone, so every
        // layer's normalised map is the identity.
        let model = DemoModel::new(DemoConfig {
            layers: 2,
            ..DemoConfig::default()
        })
        .unwrap();
        let tokens =
            crate::tokenize::tokenize("a b c d", crate::tokenize::DemoTokenizer::Words).unwrap();
        let opts = RunOptions {
            mistakes: vec![crate::engine::Mistake::ElementwiseValues],
            ..RunOptions::default()
        };
        let vz = value_zeroing(&model, &tokens, &opts, &mut |_| true).unwrap();
        for map in &vz.maps {
            assert_eq!(map, &Array2::<f64>::eye(4));
        }
    }
}
