//! Value zeroing (Mohebbi et al. 2023) inside one block: how much each token's output changes
//! when another token's value vectors are zeroed in every head of that block.
//!
//! Zeroing token j's values leaves every attention probability as it is, so the attention
//! output of query i changes by exactly −Σ_h w_h[i, j] · (v_{kv(h), j} W_O^h), where w_h is
//! the weight with which v_j enters head h's output at i (the probability p_h[i, j]; under an
//! ablation 0 or its mean over the positions; under the elementwise-values mistake only the
//! diagonal) and kv(h) the head's key/value group. The rest of the block (residual add, norms,
//! MLP) works row by row, so every changed row (i, j) is one more row through it: the rows of
//! many j are stacked and run through the block's tail together, with the engine's own kernels,
//! as the forward pass runs them.

use super::Block;
use super::EngineError;
use super::attention::Hooks;
use super::block::PackedBlock;
use super::intervene::{Ablation, AblationMode, Captured, Interventions};
use super::layers::{Epilogue, NormPlacement, normalized};
use super::options::{Mistake, RunOptions};
use super::parallel::{on_pool, threads_for};
use super::transformer::Transformer;
use ndarray::{Array2, Axis, s};

/// Rows sent through the block's tail at once: 1024 rows of a 1536-wide MLP hold 6 MB of
/// hidden activations.
const TAIL_ROWS: usize = 1024;

impl Transformer {
    /// The value-zeroing matrix of block `layer_idx` on its input `x` (`Resid(layer_idx)` of
    /// a pass on the same tokens under `opts`): C[i, j] = 1 − cos(out_i with token j's values
    /// zeroed, out_i), where out is the block's output (its residual stream after the MLP).
    /// Raw, not normalised. Shape: [query i, zeroed token j].
    ///
    /// Follows the run's mask, ablations, score scale, dimension subsets and mistakes.
    /// `progress` gets the fraction of the layer done; returning false cancels.
    pub fn value_zeroing_layer(
        &self,
        layer_idx: usize,
        x: &Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
        progress: &mut dyn FnMut(f32) -> bool,
    ) -> Result<Array2<f64>, EngineError> {
        let parts = self.parts();
        let (Some(block), Some(packed)) = (
            parts.blocks.get(layer_idx),
            self.packed_blocks().get(layer_idx),
        ) else {
            return Err(EngineError::OutOfRange(format!(
                "layer {layer_idx} does not exist ({} layers)",
                parts.blocks.len()
            )));
        };
        let n = x.nrows();
        if n == 0 {
            return Err(EngineError::NoTokens);
        }
        if x.ncols() != parts.d_model {
            return Err(EngineError::BadWeights(format!(
                "the residual has width {}, expected {}",
                x.ncols(),
                parts.d_model
            )));
        }
        self.check_options(opts)?;
        let opts = RunOptions {
            keep_maps: true,
            trace_layer: None,
            ..opts.clone()
        };
        let threads = threads_for(n, &opts);
        let placement = if opts.has(Mistake::NoLayerNorm) {
            NormPlacement::None
        } else {
            parts.placement
        };
        let mask = self.applied_mask(&opts, n);
        let allowed = mask.allowed(n, is_pad)?;
        // The attention pass and every chunk of rows run on one team of threads led by this
        // one (see `parallel::on_pool`), which hears about each chunk for `progress`.
        on_pool(threads, || -> Result<Array2<f64>, EngineError> {
            let attn_input = match placement {
                NormPlacement::Pre => normalized(x, &block.attention_norm, threads),
                NormPlacement::Post | NormPlacement::None => x.clone(),
            };
            let shape = self.head_shape(&opts);
            let iv = Interventions::default();
            let mut captured = Captured::default();
            let (attn_out, probs, _) = block.attention.forward(
                &packed.attention,
                &shape,
                &attn_input,
                Epilogue::NONE,
                layer_idx,
                allowed.as_ref(),
                &opts,
                false,
                &mut Hooks {
                    interventions: &iv,
                    captured: &mut captured,
                    from: 0,
                    frozen: None,
                },
            );
            let weights = value_weights(&probs, layer_idx, &opts);
            let moved = value_moves(
                block,
                &attn_input,
                parts.heads,
                parts.kv_heads,
                parts.d_head,
            );
            let baseline = block_tail(block, packed, placement, x, &attn_out, threads);
            // Every (i, j) whose attention output changes; the others keep out_i and score 0.
            let mut rows: Vec<(usize, usize)> = Vec::new();
            for j in 0..n {
                for i in 0..n {
                    if weights.iter().any(|w| w[(i, j)] != 0.0) {
                        rows.push((i, j));
                    }
                }
            }
            let mut c = Array2::<f64>::zeros((n, n));
            let d = parts.d_model;
            for (chunk_idx, chunk) in rows.chunks(TAIL_ROWS).enumerate() {
                let mut resid = Array2::<f32>::zeros((chunk.len(), d));
                let mut attn = Array2::<f32>::zeros((chunk.len(), d));
                for (r, &(i, j)) in chunk.iter().enumerate() {
                    resid.row_mut(r).assign(&x.row(i));
                    let mut row = attn.row_mut(r);
                    row.assign(&attn_out.row(i));
                    for (w, u) in weights.iter().zip(&moved) {
                        let wij = w[(i, j)];
                        if wij != 0.0 {
                            row.scaled_add(-wij, &u.row(j));
                        }
                    }
                }
                let out = block_tail(block, packed, placement, &resid, &attn, threads);
                for (r, &(i, j)) in chunk.iter().enumerate() {
                    c[(i, j)] = cosine_distance(out.row(r), baseline.row(i));
                }
                let done =
                    ((chunk_idx * TAIL_ROWS + chunk.len()) as f32) / rows.len().max(1) as f32;
                if !progress(done) {
                    return Err(EngineError::Cancelled);
                }
            }
            Ok(c)
        })
    }
}

/// Per query head, the weight w_h[i, j] with which token j's value enters the head's output at
/// query i: the probabilities, the diagonal alone under [`Mistake::ElementwiseValues`], 0 for a
/// zero-ablated head and each column's mean over the queries for a mean-ablated one.
fn value_weights(probs: &[Array2<f32>], layer_idx: usize, opts: &RunOptions) -> Vec<Array2<f32>> {
    let elementwise = opts.has(Mistake::ElementwiseValues);
    probs
        .iter()
        .enumerate()
        .map(|(head_idx, p)| {
            let n = p.nrows();
            let mut w = if elementwise {
                Array2::from_shape_fn(p.dim(), |(i, j)| if i == j { p[(i, i)] } else { 0.0 })
            } else {
                p.clone()
            };
            match Ablation::find(&opts.ablations, layer_idx, head_idx) {
                None => {}
                Some(AblationMode::Zero) => w.fill(0.0),
                Some(AblationMode::Mean) => {
                    for mut column in w.axis_iter_mut(Axis(1)) {
                        let mean =
                            column.iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
                        column.fill(mean as f32);
                    }
                }
            }
            w
        })
        .collect()
}

/// Per query head h, every token's value pushed through the head's slice of the output
/// projection: v_{kv(h), j} W_O^h. Shape of each: [token, d_model].
fn value_moves(
    block: &Block,
    attn_input: &Array2<f32>,
    heads: usize,
    kv_heads: usize,
    d_head: usize,
) -> Vec<Array2<f32>> {
    let a = &block.attention;
    let mut v = attn_input.dot(&a.wv);
    if let Some(bv) = &a.bv {
        v += bv;
    }
    let group = heads / kv_heads.max(1);
    (0..heads)
        .map(|h| {
            let kv = h / group.max(1);
            let v_h = v.slice(s![.., kv * d_head..(kv + 1) * d_head]);
            let wo_h = a.wo.slice(s![h * d_head..(h + 1) * d_head, ..]);
            v_h.dot(&wo_h)
        })
        .collect()
}

/// The block after attention, row by row: the residual add, the norms where `placement` puts
/// them and the MLP, from the block's input `x` and its attention output `attn` (the output
/// projection with its bias). The same kernels and order as the forward pass.
fn block_tail(
    block: &Block,
    packed: &PackedBlock,
    placement: NormPlacement,
    x: &Array2<f32>,
    attn: &Array2<f32>,
    threads: usize,
) -> Array2<f32> {
    let mut h = attn.clone();
    h += x;
    if placement == NormPlacement::Post {
        block.attention_norm.apply(&mut h);
    }
    let epilogue = Epilogue {
        residual: Some(&h),
        norm: (placement == NormPlacement::Post).then_some(&block.mlp_norm),
    };
    match placement {
        NormPlacement::Pre => {
            let mlp_input = normalized(&h, &block.mlp_norm, threads);
            block
                .mlp
                .forward(&mlp_input, &packed.mlp, epilogue, threads)
        }
        NormPlacement::Post | NormPlacement::None => {
            block.mlp.forward(&h, &packed.mlp, epilogue, threads)
        }
    }
}

/// 1 − cos(a, b) in f64, as ‖a/‖a‖ − b/‖b‖‖² / 2 (no cancellation near 1); 0 when either
/// vector is zero.
fn cosine_distance(a: ndarray::ArrayView1<'_, f32>, b: ndarray::ArrayView1<'_, f32>) -> f64 {
    let norm = |v: &ndarray::ArrayView1<'_, f32>| {
        v.iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt()
    };
    let (na, nb) = (norm(&a), norm(&b));
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    let sq: f64 = a
        .iter()
        .zip(b.iter())
        .map(|(&x, &y)| {
            let d = f64::from(x) / na - f64::from(y) / nb;
            d * d
        })
        .sum();
    sq / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn cosine_distance_by_hand() {
        // (1, 0) and (1, 1): cos = 1/√2, 1 − cos = 0.292893.
        let a = array![1.0f32, 0.0];
        let b = array![1.0f32, 1.0];
        assert!((cosine_distance(a.view(), b.view()) - (1.0 - 0.5f64.sqrt())).abs() < 1e-12);
        // Opposite: 2; equal up to scale: 0; a zero vector: 0.
        let c = array![-2.0f32, 0.0];
        assert!((cosine_distance(a.view(), c.view()) - 2.0).abs() < 1e-12);
        assert_eq!(cosine_distance(a.view(), (&a * 3.0).view()), 0.0);
        assert_eq!(cosine_distance(a.view(), array![0.0f32, 0.0].view()), 0.0);
    }
}
