//! The backward pass: the gradient of a scalar with respect to the transformer's input, by
//! hand-written adjoints of the engine's own operations.
//!
//! [`Transformer::forward_taped`] runs the same kernels as [`Transformer::forward`] (the same
//! products, softmax and activations, so the hidden states are the same bits) and keeps a small
//! [`Tape`] per layer: the layer's input, q/k/v after RoPE, the residual stream between the
//! sublayers, the MLP's pre-activations, and, post-LN, the sums before each norm. Attention
//! probabilities are kept while all of them fit in [`PROBS_BUDGET`] (256 MiB); above that the
//! backward pass recomputes each head's from q and k (one product and a softmax), so long
//! inputs hold no layers × heads × tokens² memory.
//!
//! [`Transformer::backward`] then walks the layers in reverse. Weights are constants: only
//! input gradients are computed, so every backward product is dX = dY · Wᵀ, through the packed
//! kernel with the transposed weights (packed once per model on first use and shared by
//! clones). Work splits into row blocks and heads exactly as the forward does; no reduction
//! crosses a row block, and grouped-query heads add their key/value gradients in head order,
//! so the result does not depend on the thread count.

use super::EngineError;
use super::layers::{Epilogue, NormPlacement, linear, normalized};
use super::options::RunOptions;
use super::parallel::{on_pool, threads_for};
use super::transformer::{Transformer, check_finite};
use ndarray::Array2;

mod attention;
mod mlp;
mod norm;

use attention::{attention_backward, head_outputs};
use mlp::{mlp_backward, mlp_hidden};
use norm::norm_backward;

/// What the backward pass needs from one layer of the forward pass.
struct LayerTape {
    /// The block's input (pre-LN: the attention norm's input). Shape: [token, d_model].
    x_in: Array2<f32>,
    /// q, k and v after RoPE, before any scale or dimension subset.
    /// Shape: [token, (heads + 2 · kv_heads) · d_head].
    qkv: Array2<f32>,
    /// Post-LN: x_in + attention, the attention norm's input.
    u1: Option<Array2<f32>>,
    /// The residual stream between the sublayers (pre-LN: the MLP norm's input).
    x_mid: Array2<f32>,
    /// The MLP's x·w_in + b_in. Shape: [token, d_ff].
    hidden_pre: Array2<f32>,
    /// The gated MLP's x·w_gate. Shape: [token, d_ff].
    gate_pre: Option<Array2<f32>>,
    /// Post-LN: x_mid + MLP, the MLP norm's input.
    u2: Option<Array2<f32>>,
    /// Each head's post-softmax probabilities [query, key], when the tape keeps them (see
    /// [`PROBS_BUDGET`]); empty when the backward pass recomputes them.
    probs: Vec<Array2<f32>>,
}

/// The most bytes of attention probabilities a tape keeps (every layer and head together).
/// Within it the backward pass reuses the forward's probabilities instead of recomputing
/// them (one product and a softmax per head saved); above it, as for long inputs, it
/// recomputes them so that no layers × heads × tokens² memory is held.
pub const PROBS_BUDGET: usize = 256 << 20;

/// What [`Transformer::backward`] needs from [`Transformer::forward_taped`].
pub struct Tape {
    layers: Vec<LayerTape>,
    /// The final norm's input, when there is a final norm.
    final_input: Option<Array2<f32>>,
    allowed: Option<Array2<bool>>,
    opts: RunOptions,
    threads: usize,
    /// Tokens per sequence: the rows are `rows / seq_len` sequences one after another.
    seq_len: usize,
}

/// The result of a backward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Backward {
    /// ∂T/∂x, the gradient with respect to the transformer's input. Shape: [token, d_model].
    pub d_input: Array2<f32>,
    /// When asked for, per layer (first to last): the mean over query heads of
    /// max(0, ∂T/∂A ⊙ A), A the post-softmax probabilities. Shape of each: [query, key].
    pub relevance: Option<Vec<Array2<f32>>>,
}

impl Transformer {
    /// Runs every block over `x` like [`Transformer::forward`] (same kernels, same hidden
    /// states) and returns the final hidden states (after the final norm) with the tape that
    /// [`Transformer::backward`] needs. The attention probabilities are kept when they fit in
    /// [`PROBS_BUDGET`].
    pub fn forward_taped(
        &self,
        x: Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
    ) -> Result<(Array2<f32>, Tape), EngineError> {
        self.forward_taped_with(x, is_pad, opts, PROBS_BUDGET)
    }

    /// The bytes the tape of one sequence of `tokens` tokens holds (with its probabilities
    /// when they fit in [`PROBS_BUDGET`]): what each more sequence of a batched pass adds.
    pub fn tape_bytes(&self, tokens: usize) -> u64 {
        let (n, d) = (tokens as u64, self.d_model() as u64);
        let qkv = ((self.heads() + 2 * self.kv_heads()) * self.d_head()) as u64;
        let post = if self.placement() == NormPlacement::Post {
            2 * d
        } else {
            0
        };
        let per_token: u64 = self
            .blocks()
            .iter()
            .map(|b| {
                let ff = b.mlp.w_in.ncols() as u64;
                let gate = b.mlp.w_gate.as_ref().map_or(0, |_| ff);
                2 * d + qkv + ff + gate + post
            })
            .sum::<u64>()
            .saturating_add(d);
        let probs = (self.blocks().len() * self.heads()) as u64 * n.saturating_mul(n) * 4;
        let probs = if probs <= PROBS_BUDGET as u64 {
            probs
        } else {
            0
        };
        n.saturating_mul(per_token)
            .saturating_mul(4)
            .saturating_add(probs)
    }

    /// [`Transformer::forward_taped`], over a batch when `x` holds `x.nrows() / is_pad.len()`
    /// sequences of the same tokens one after another (integrated gradients' points), every one
    /// masked alike. The row-wise work (norms, projections, the MLP) runs on all rows at once,
    /// so each weight is read once per batch instead of once per sequence; attention runs per
    /// sequence and head. Each row's values are the same bits as in a pass over its sequence
    /// alone. The probabilities are kept only when all of them, for every sequence, fit in
    /// `probs_budget` bytes (0: never, so the backward pass recomputes them).
    pub fn forward_taped_with(
        &self,
        mut x: Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
        probs_budget: usize,
    ) -> Result<(Array2<f32>, Tape), EngineError> {
        let len = is_pad.len();
        if len == 0 || x.nrows() == 0 {
            return Err(EngineError::NoTokens);
        }
        if !x.nrows().is_multiple_of(len) {
            return Err(EngineError::BadWeights(format!(
                "{} embedding rows are not whole sequences of {len} tokens",
                x.nrows()
            )));
        }
        let sequences = x.nrows() / len;
        if x.ncols() != self.d_model() {
            return Err(EngineError::BadWeights(format!(
                "embeddings have width {}, expected {}",
                x.ncols(),
                self.d_model()
            )));
        }
        self.check_options(opts)?;
        if let Some(mistake) = opts.mistakes.first() {
            return Err(EngineError::Unsupported(format!(
                "gradients run on the model as it is: switch off the teaching mistake {mistake}"
            )));
        }
        let allowed = self.applied_mask(opts, len).allowed(len, is_pad)?;
        let threads = threads_for(x.nrows(), opts);
        let shape = self.head_shape(opts);
        let placement = self.placement();
        let probs_bytes = self
            .blocks()
            .len()
            .saturating_mul(sequences)
            .saturating_mul(shape.heads)
            .saturating_mul(len.saturating_mul(len))
            .saturating_mul(std::mem::size_of::<f32>());
        let keep_probs = probs_bytes <= probs_budget;
        let mut layers = Vec::with_capacity(self.blocks().len());
        // The blocks run on one team of threads led by this one (see `parallel::on_pool`).
        on_pool(threads, || -> Result<(), EngineError> {
            for (layer_idx, (block, packed)) in
                self.blocks().iter().zip(self.packed_blocks()).enumerate()
            {
                // Taken out of `x`, which gets the block's output below.
                let x_in = std::mem::replace(&mut x, Array2::zeros((0, 0)));
                let h1 = (placement == NormPlacement::Pre)
                    .then(|| normalized(&x_in, &block.attention_norm, threads));
                let attn_in = h1.as_ref().unwrap_or(&x_in);
                let qkv =
                    block
                        .attention
                        .project_qkv(&packed.attention, &shape, attn_in, len, threads);
                let (concat, probs) = head_outputs(
                    &qkv,
                    len,
                    &shape,
                    layer_idx,
                    allowed.as_ref(),
                    opts,
                    threads,
                    keep_probs,
                );
                let residual = Epilogue {
                    residual: Some(&x_in),
                    norm: None,
                };
                let sum = linear(
                    &concat,
                    &packed.attention.wo,
                    block.attention.bo.as_ref(),
                    residual,
                    threads,
                );
                check_finite(&sum, layer_idx, "attention")?;
                let (u1, x_mid) = match placement {
                    NormPlacement::Post => {
                        let normed = normalized(&sum, &block.attention_norm, threads);
                        (Some(sum), normed)
                    }
                    NormPlacement::Pre | NormPlacement::None => (None, sum),
                };
                let h2 = (placement == NormPlacement::Pre)
                    .then(|| normalized(&x_mid, &block.mlp_norm, threads));
                let mlp_in = h2.as_ref().unwrap_or(&x_mid);
                let (hidden_pre, gate_pre, activated) =
                    mlp_hidden(&block.mlp, &packed.mlp, mlp_in, threads);
                let residual = Epilogue {
                    residual: Some(&x_mid),
                    norm: None,
                };
                let out = linear(
                    &activated,
                    &packed.mlp.w_out,
                    block.mlp.b_out.as_ref(),
                    residual,
                    threads,
                );
                check_finite(&out, layer_idx, "MLP")?;
                let (u2, x_out) = match placement {
                    NormPlacement::Post => {
                        let normed = normalized(&out, &block.mlp_norm, threads);
                        (Some(out), normed)
                    }
                    NormPlacement::Pre | NormPlacement::None => (None, out),
                };
                layers.push(LayerTape {
                    x_in,
                    qkv,
                    u1,
                    x_mid,
                    hidden_pre,
                    gate_pre,
                    u2,
                    probs,
                });
                x = x_out;
            }
            Ok(())
        })?;
        let final_input = self.final_norm().map(|norm| {
            let input = x.clone();
            norm.apply(&mut x);
            input
        });
        Ok((
            x,
            Tape {
                layers,
                final_input,
                allowed,
                opts: opts.clone(),
                threads,
                seq_len: len,
            },
        ))
    }

    /// The gradient with respect to the input of the forward pass that wrote `tape`, given
    /// `d_hidden` = ∂T/∂(final hidden states) (shape [token, d_model]). With `relevance`, also
    /// every layer's mean over heads of max(0, ∂T/∂A ⊙ A), reduced layer by layer (one
    /// sequence only). After a batched pass (see [`Transformer::forward_taped_with`])
    /// `d_hidden` holds every sequence's rows, and so does the gradient.
    pub fn backward(
        &self,
        tape: &Tape,
        d_hidden: Array2<f32>,
        relevance: bool,
    ) -> Result<Backward, EngineError> {
        let len = tape.layers.first().map_or(0, |l| l.x_in.nrows());
        if relevance && len != tape.seq_len {
            return Err(EngineError::Unsupported(
                "attention relevance is computed for one sequence at a time".into(),
            ));
        }
        if d_hidden.dim() != (len, self.d_model()) || tape.layers.len() != self.blocks().len() {
            return Err(EngineError::BadWeights(format!(
                "the gradient has shape {:?}, but the tape holds {len} tokens of width {}",
                d_hidden.dim(),
                self.d_model()
            )));
        }
        let threads = tape.threads;
        let mut d = match (self.final_norm(), &tape.final_input) {
            (Some(norm), Some(input)) => norm_backward(norm, input, &d_hidden, threads),
            _ => d_hidden,
        };
        let transposed = self.transposed_blocks();
        let mut maps = Vec::new();
        on_pool(threads, || -> Result<(), EngineError> {
            for layer_idx in (0..self.blocks().len()).rev() {
                let (block, lt, tb) = (
                    &self.blocks()[layer_idx],
                    &tape.layers[layer_idx],
                    &transposed[layer_idx],
                );
                let attn =
                    |dy: &Array2<f32>| attention_backward(self, tape, layer_idx, tb, dy, relevance);
                let (d_in, map) = match self.placement() {
                    NormPlacement::Pre => {
                        let dh2 = mlp_backward(&block.mlp, tb, lt, &d, threads);
                        let mut dx_mid = norm_backward(&block.mlp_norm, &lt.x_mid, &dh2, threads);
                        dx_mid += &d;
                        let (dh1, map) = attn(&dx_mid);
                        let mut dx_in =
                            norm_backward(&block.attention_norm, &lt.x_in, &dh1, threads);
                        dx_in += &dx_mid;
                        (dx_in, map)
                    }
                    NormPlacement::Post => {
                        let (Some(u1), Some(u2)) = (&lt.u1, &lt.u2) else {
                            return Err(EngineError::BadWeights(
                                "post-LN tape without sums".into(),
                            ));
                        };
                        let du2 = norm_backward(&block.mlp_norm, u2, &d, threads);
                        let mut dx_mid = mlp_backward(&block.mlp, tb, lt, &du2, threads);
                        dx_mid += &du2;
                        let du1 = norm_backward(&block.attention_norm, u1, &dx_mid, threads);
                        let (mut dx_in, map) = attn(&du1);
                        dx_in += &du1;
                        (dx_in, map)
                    }
                    NormPlacement::None => {
                        let mut dx_mid = mlp_backward(&block.mlp, tb, lt, &d, threads);
                        dx_mid += &d;
                        let (mut dx_in, map) = attn(&dx_mid);
                        dx_in += &dx_mid;
                        (dx_in, map)
                    }
                };
                if let Some(map) = map {
                    maps.push(map);
                }
                d = d_in;
            }
            Ok(())
        })?;
        maps.reverse();
        Ok(Backward {
            d_input: d,
            relevance: relevance.then_some(maps),
        })
    }
}
