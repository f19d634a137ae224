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
use super::attention::{HeadParams, HeadShape, run_head, score_block};
use super::gemm::PackedMatrix;
use super::layers::{Activation, Epilogue, Mlp, Norm, NormPlacement, linear, normalized};
use super::math;
use super::options::RunOptions;
use super::parallel::{par_rows, parallel_map, threads_for};
use super::simd;
use super::transformer::{Block, Transformer, check_finite, effective_mask};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis, s};

/// One block's weights transposed and packed: the right operands of the backward products.
pub(super) struct TransposedBlock {
    /// [wq | wk | wv]ᵀ: [(heads + 2 · kv_heads) · d_head, d_model].
    qkv: PackedMatrix,
    /// woᵀ: [d_model, heads · d_head].
    wo: PackedMatrix,
    /// w_outᵀ: [d_model, d_ff].
    w_out: PackedMatrix,
    /// w_inᵀ ([d_ff, d_model]), or [w_in | w_gate]ᵀ ([2 · d_ff, d_model]) for a gated MLP.
    w_in_gate: PackedMatrix,
}

impl TransposedBlock {
    pub(super) fn new(block: &Block) -> Self {
        let a = &block.attention;
        let qkv = ndarray::concatenate(Axis(1), &[a.wq.view(), a.wk.view(), a.wv.view()])
            .unwrap_or_else(|_| Array2::zeros((0, 0)));
        let m = &block.mlp;
        let w_in_gate = match &m.w_gate {
            Some(g) => PackedMatrix::pack_transposed(
                ndarray::concatenate(Axis(1), &[m.w_in.view(), g.view()])
                    .unwrap_or_else(|_| Array2::zeros((0, 0)))
                    .view(),
            ),
            None => PackedMatrix::pack_transposed(m.w_in.view()),
        };
        Self {
            qkv: PackedMatrix::pack_transposed(qkv.view()),
            wo: PackedMatrix::pack_transposed(a.wo.view()),
            w_out: PackedMatrix::pack_transposed(m.w_out.view()),
            w_in_gate,
        }
    }
}

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

    /// [`Transformer::forward_taped`] keeping the probabilities only when all of them fit in
    /// `probs_budget` bytes (0: never, so the backward pass recomputes them).
    pub fn forward_taped_with(
        &self,
        mut x: Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
        probs_budget: usize,
    ) -> Result<(Array2<f32>, Tape), EngineError> {
        let len = x.nrows();
        if len == 0 {
            return Err(EngineError::NoTokens);
        }
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
        let allowed = effective_mask(&opts.mask, self.causal()).build(len, is_pad)?;
        let threads = threads_for(len, opts);
        let shape = self.head_shape(opts);
        let placement = self.placement();
        let probs_bytes = self
            .blocks()
            .len()
            .saturating_mul(shape.heads)
            .saturating_mul(len.saturating_mul(len))
            .saturating_mul(std::mem::size_of::<f32>());
        let keep_probs = probs_bytes <= probs_budget;
        let mut layers = Vec::with_capacity(self.blocks().len());
        for (layer_idx, (block, packed)) in
            self.blocks().iter().zip(self.packed_blocks()).enumerate()
        {
            let x_in = x;
            let h1 = (placement == NormPlacement::Pre)
                .then(|| normalized(&x_in, &block.attention_norm, threads));
            let attn_in = h1.as_ref().unwrap_or(&x_in);
            let qkv = block
                .attention
                .project_qkv(&packed.attention, &shape, attn_in, threads);
            let (concat, probs) = head_outputs(
                &qkv,
                &shape,
                layer_idx,
                allowed.as_ref(),
                opts,
                threads,
                keep_probs,
            );
            let residual = Epilogue {
                residual: &x_in,
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
                residual: &x_mid,
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
            },
        ))
    }

    /// The gradient with respect to the input of the forward pass that wrote `tape`, given
    /// `d_hidden` = ∂T/∂(final hidden states) (shape [token, d_model]). With `relevance`, also
    /// every layer's mean over heads of max(0, ∂T/∂A ⊙ A), reduced layer by layer.
    pub fn backward(
        &self,
        tape: &Tape,
        d_hidden: Array2<f32>,
        relevance: bool,
    ) -> Result<Backward, EngineError> {
        let len = tape.layers.first().map_or(0, |l| l.x_in.nrows());
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
                    let mut dx_in = norm_backward(&block.attention_norm, &lt.x_in, &dh1, threads);
                    dx_in += &dx_mid;
                    (dx_in, map)
                }
                NormPlacement::Post => {
                    let (Some(u1), Some(u2)) = (&lt.u1, &lt.u2) else {
                        return Err(EngineError::BadWeights("post-LN tape without sums".into()));
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
        maps.reverse();
        Ok(Backward {
            d_input: d,
            relevance: relevance.then_some(maps),
        })
    }
}

/// Every head's output side by side ([token, heads · d_head]), ablated heads zero: what the
/// output projection of [`super::SelfAttention::forward`] multiplies.
fn head_outputs(
    qkv: &Array2<f32>,
    shape: &HeadShape,
    layer_idx: usize,
    allowed: Option<&Array2<bool>>,
    opts: &RunOptions,
    threads: usize,
    keep_probs: bool,
) -> (Array2<f32>, Vec<Array2<f32>>) {
    let dh = shape.d_head;
    let (q_width, kv_width) = (shape.heads * dh, shape.kv_heads * dh);
    let group = shape.heads / shape.kv_heads;
    let factor = opts.scale_factor(dh);
    let slopes = shape.alibi_slopes();
    let results = parallel_map(shape.heads, threads, &|head_idx| {
        let kv = head_idx / group;
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        run_head(
            qkv.slice(s![.., head_idx * dh..(head_idx + 1) * dh]),
            qkv.slice(s![.., k0..k0 + dh]),
            qkv.slice(s![.., v0..v0 + dh]),
            HeadParams {
                factor,
                keep: kept_dims(opts, layer_idx, head_idx),
                alibi_slope: slopes.get(head_idx).copied(),
                allowed,
                want_trace: false,
                keep_probs,
                kv_head: kv,
                wrong_axis: false,
                elementwise: false,
            },
        )
    });
    let mut concat = Array2::<f32>::zeros((qkv.nrows(), q_width));
    let mut probs = Vec::new();
    for (head_idx, r) in results.into_iter().enumerate() {
        if !opts.ablated_heads.contains(&(layer_idx, head_idx)) {
            concat
                .slice_mut(s![.., head_idx * dh..(head_idx + 1) * dh])
                .assign(&r.output);
        }
        if keep_probs {
            probs.push(r.probs);
        }
    }
    (concat, probs)
}

/// The `--dims` subset of one head, if any.
fn kept_dims(opts: &RunOptions, layer_idx: usize, head_idx: usize) -> Option<&[usize]> {
    opts.dims
        .iter()
        .find(|d| d.layer_idx == layer_idx && d.head_idx == head_idx)
        .map(|d| d.dims.as_slice())
}

/// The MLP up to its output projection: (x·w_in + b_in, x·w_gate for a gated MLP, the
/// activated hidden units), each [token, d_ff]. Same kernels as `Mlp::forward`.
fn mlp_hidden(
    mlp: &Mlp,
    packed: &super::layers::PackedMlp,
    x: &Array2<f32>,
    threads: usize,
) -> (Array2<f32>, Option<Array2<f32>>, Array2<f32>) {
    let ff = mlp.w_in.ncols();
    let mut hidden = Array2::<f32>::zeros((x.nrows(), ff));
    par_rows(&mut hidden, threads, &|row0, mut block| {
        let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, &packed.w_in, block.view_mut(), false);
        if let Some(b) = &mlp.b_in {
            block += b;
        }
    });
    let gate = packed.w_gate.as_ref().map(|w_gate| {
        let mut gate = Array2::<f32>::zeros((x.nrows(), ff));
        par_rows(&mut gate, threads, &|row0, mut block| {
            let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
            simd::matmul(rows, w_gate, block.view_mut(), false);
        });
        gate
    });
    let mut activated = hidden.clone();
    if let Some(values) = activated.as_slice_mut() {
        match (&gate, gate.as_ref().and_then(|g| g.as_slice())) {
            (Some(_), Some(g)) => simd::activate_gated(values, g, mlp.activation),
            _ => simd::activate(values, mlp.activation),
        }
    }
    (hidden, gate, activated)
}

/// The derivative of the activation at `x`.
fn activation_slope(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Gelu => math::gelu_slope(x),
        Activation::GeluTanh => math::gelu_tanh_slope(x),
        Activation::Silu => math::silu_slope(x),
    }
}

/// The activation itself (for the gated MLP's up-projection gradient).
fn activation_value(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Gelu => math::gelu(x),
        Activation::GeluTanh => math::gelu_tanh(x),
        Activation::Silu => math::silu(x),
    }
}

/// ∂T/∂(MLP input) from ∂T/∂(MLP output) `d_out`. Shape of both: [token, d_model].
fn mlp_backward(
    mlp: &Mlp,
    tb: &TransposedBlock,
    lt: &LayerTape,
    d_out: &Array2<f32>,
    threads: usize,
) -> Array2<f32> {
    let ff = mlp.w_in.ncols();
    let gated = lt.gate_pre.is_some();
    let width = if gated { 2 * ff } else { ff };
    // [d_up | d_gate] (or d_pre), one row block per thread.
    let mut d_pre = Array2::<f32>::zeros((d_out.nrows(), width));
    par_rows(&mut d_pre, threads, &|row0, mut block| {
        let rows = row0..row0 + block.nrows();
        let d_rows = d_out.slice(s![rows.clone(), ..]);
        simd::matmul(d_rows, &tb.w_out, block.slice_mut(s![.., ..ff]), false);
        let pre = lt.hidden_pre.slice(s![rows.clone(), ..]);
        match &lt.gate_pre {
            Some(gate) => {
                let gate = gate.slice(s![rows, ..]);
                let (mut d_up, mut d_gate) = block.view_mut().split_at(Axis(1), ff);
                ndarray::Zip::from(&mut d_up)
                    .and(&mut d_gate)
                    .and(&pre)
                    .and(&gate)
                    .for_each(|du, dg, &up, &g| {
                        let d_act = *du;
                        *du = d_act * activation_value(mlp.activation, g);
                        *dg = d_act * up * activation_slope(mlp.activation, g);
                    });
            }
            None => {
                for (mut d_row, pre_row) in block.rows_mut().into_iter().zip(pre.rows()) {
                    match (d_row.as_slice_mut(), pre_row.as_slice()) {
                        (Some(d), Some(x)) => simd::scale_by_slope(d, x, mlp.activation),
                        _ => ndarray::Zip::from(&mut d_row)
                            .and(&pre_row)
                            .for_each(|d, &x| *d *= activation_slope(mlp.activation, x)),
                    }
                }
            }
        }
    });
    let mut d_in = Array2::<f32>::zeros(d_out.raw_dim());
    par_rows(&mut d_in, threads, &|row0, mut block| {
        let rows = d_pre.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, &tb.w_in_gate, block.view_mut(), false);
    });
    d_in
}

/// ∂T/∂(attention input) from ∂T/∂(attention output) `d_out`, and the layer's relevance map
/// when asked for.
fn attention_backward(
    model: &Transformer,
    tape: &Tape,
    layer_idx: usize,
    tb: &TransposedBlock,
    d_out: &Array2<f32>,
    relevance: bool,
) -> (Array2<f32>, Option<Array2<f32>>) {
    let shape = model.head_shape(&tape.opts);
    let lt = &tape.layers[layer_idx];
    let threads = tape.threads;
    let opts = &tape.opts;
    let n = d_out.nrows();
    let dh = shape.d_head;
    let (q_width, kv_width) = (shape.heads * dh, shape.kv_heads * dh);
    let group = shape.heads / shape.kv_heads;
    let factor = opts.scale_factor(dh);
    let slopes = shape.alibi_slopes();

    let mut d_concat = Array2::<f32>::zeros((n, q_width));
    par_rows(&mut d_concat, threads, &|row0, mut block| {
        let rows = d_out.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, &tb.wo, block.view_mut(), false);
    });
    let qkv = &lt.qkv;
    let results = parallel_map(shape.heads, threads, &|head_idx| {
        let kv = head_idx / group;
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        let ablated = opts.ablated_heads.contains(&(layer_idx, head_idx));
        head_backward(
            lt.probs.get(head_idx).map(|p| p.view()),
            qkv.slice(s![.., head_idx * dh..(head_idx + 1) * dh]),
            qkv.slice(s![.., k0..k0 + dh]),
            qkv.slice(s![.., v0..v0 + dh]),
            (!ablated).then(|| d_concat.slice(s![.., head_idx * dh..(head_idx + 1) * dh])),
            &HeadParams {
                factor,
                keep: kept_dims(opts, layer_idx, head_idx),
                alibi_slope: slopes.get(head_idx).copied(),
                allowed: tape.allowed.as_ref(),
                want_trace: false,
                keep_probs: false,
                kv_head: kv,
                wrong_axis: false,
                elementwise: false,
            },
            relevance,
        )
    });
    drop(d_concat);
    let mut d_qkv = Array2::<f32>::zeros(qkv.raw_dim());
    let mut map = relevance.then(|| Array2::<f32>::zeros((n, n)));
    // Heads in order: a key/value head's gradient is the sum over its query heads, always
    // added in the same order.
    for (head_idx, r) in results.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let kv = head_idx / group;
        d_qkv
            .slice_mut(s![.., head_idx * dh..(head_idx + 1) * dh])
            .assign(&r.dq);
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        let mut dk = d_qkv.slice_mut(s![.., k0..k0 + dh]);
        dk += &r.dk;
        let mut dv = d_qkv.slice_mut(s![.., v0..v0 + dh]);
        dv += &r.dv;
        if let (Some(map), Some(rel)) = (map.as_mut(), r.relevance) {
            *map += &rel;
        }
    }
    if let Some(map) = map.as_mut() {
        *map /= shape.heads as f32;
    }
    if let Some(freqs) = shape.rope_frequencies() {
        for head in 0..shape.heads {
            unrotate(d_qkv.slice_mut(s![.., head * dh..(head + 1) * dh]), &freqs);
        }
        for head in 0..shape.kv_heads {
            let k0 = q_width + head * dh;
            unrotate(d_qkv.slice_mut(s![.., k0..k0 + dh]), &freqs);
        }
    }
    let mut d_in = Array2::<f32>::zeros((n, model.d_model()));
    par_rows(&mut d_in, threads, &|row0, mut block| {
        let rows = d_qkv.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, &tb.qkv, block.view_mut(), false);
    });
    (d_in, map)
}

/// One head's gradients with respect to its q, k and v (as [`run_head`] received them).
struct HeadGrad {
    dq: Array2<f32>,
    dk: Array2<f32>,
    dv: Array2<f32>,
    /// max(0, ∂T/∂A ⊙ A) of this head. Shape: [query, key].
    relevance: Option<Array2<f32>>,
}

/// The adjoint of [`run_head`]: recomputes the head's probabilities A from q and k, then
/// dA = dO·vᵀ, dS = A ⊙ (dA − rowsum(A ⊙ dA)), dq = s·dS·k, dk = dSᵀ·(s·q), dv = Aᵀ·dO.
/// `None` for an ablated head (`d_out` is `None`): it contributes nothing, and its relevance
/// is zero, added as such by the caller.
fn head_backward(
    kept_probs: Option<ArrayView2<'_, f32>>,
    q_h: ArrayView2<'_, f32>,
    k_h: ArrayView2<'_, f32>,
    v_h: ArrayView2<'_, f32>,
    d_out: Option<ArrayView2<'_, f32>>,
    p: &HeadParams<'_>,
    relevance: bool,
) -> Option<HeadGrad> {
    let d_out = d_out?;
    let n = q_h.nrows();
    let mut q_scaled = q_h.to_owned();
    let mut k_used = k_h.to_owned();
    let zero_dropped = |m: &mut Array2<f32>| {
        if let Some(keep) = p.keep {
            for dim in 0..m.ncols() {
                if !keep.contains(&dim) {
                    m.column_mut(dim).fill(0.0);
                }
            }
        }
    };
    zero_dropped(&mut q_scaled);
    zero_dropped(&mut k_used);
    q_scaled *= p.factor;
    // The probabilities: the forward's, or recomputed as the forward computed them.
    let recomputed;
    let probs = match kept_probs {
        Some(probs) => probs,
        None => {
            let mut probs = Array2::<f32>::zeros((n, n));
            let k_packed = PackedMatrix::pack_transposed(k_used.view());
            score_block(&q_scaled, &k_packed, p, 0..n, probs.view_mut());
            simd::softmax_rows(probs.view_mut(), p.allowed.map(|a| a.view()));
            recomputed = probs;
            recomputed.view()
        }
    };
    // dA = dO · vᵀ, then dS in place.
    let mut ds = Array2::<f32>::zeros((n, n));
    simd::matmul(
        d_out,
        &PackedMatrix::pack_transposed(v_h),
        ds.view_mut(),
        false,
    );
    let relevance = relevance.then(|| {
        let mut r = Array2::<f32>::zeros((n, n));
        ndarray::Zip::from(&mut r)
            .and(&ds)
            .and(probs)
            .for_each(|r, &g, &a| *r = (g * a).max(0.0));
        r
    });
    softmax_backward_rows(ds.view_mut(), probs);
    let mut dv = Array2::<f32>::zeros(v_h.raw_dim());
    simd::matmul(probs.t(), &PackedMatrix::pack(d_out), dv.view_mut(), false);
    let mut dq = Array2::<f32>::zeros(q_h.raw_dim());
    simd::matmul(
        ds.view(),
        &PackedMatrix::pack(k_used.view()),
        dq.view_mut(),
        false,
    );
    dq *= p.factor;
    let mut dk = Array2::<f32>::zeros(k_h.raw_dim());
    simd::matmul(
        ds.t(),
        &PackedMatrix::pack(q_scaled.view()),
        dk.view_mut(),
        false,
    );
    zero_dropped(&mut dq);
    zero_dropped(&mut dk);
    Some(HeadGrad {
        dq,
        dk,
        dv,
        relevance,
    })
}

/// Turns dA into dS = A ⊙ (dA − Σ_k A_k dA_k) row by row (the softmax's adjoint), the sum in
/// f64. Masked cells have A = 0, so they get no gradient.
fn softmax_backward_rows(mut d: ArrayViewMut2<'_, f32>, probs: ArrayView2<'_, f32>) {
    for (mut d_row, p_row) in d.rows_mut().into_iter().zip(probs.rows()) {
        let dot: f64 = d_row
            .iter()
            .zip(p_row.iter())
            .map(|(&g, &a)| f64::from(g) * f64::from(a))
            .sum();
        let dot = dot as f32;
        for (g, &a) in d_row.iter_mut().zip(p_row.iter()) {
            *g = a * (*g - dot);
        }
    }
}

/// The adjoint of [`super::apply_rope`]: rotates each pair back by the same angle.
fn unrotate(mut x: ArrayViewMut2<'_, f32>, frequencies: &[f32]) {
    let half = frequencies.len();
    for (pos, mut row) in x.axis_iter_mut(Axis(0)).enumerate() {
        for (k, &freq) in frequencies.iter().enumerate() {
            let angle = pos as f64 * f64::from(freq);
            let (sin, cos) = (angle.sin() as f32, angle.cos() as f32);
            let a = row[k];
            let b = row[k + half];
            row[k] = a * cos + b * sin;
            row[k + half] = b * cos - a * sin;
        }
    }
}

/// ∂T/∂(norm input) from ∂T/∂(norm output) `d_out`, row blocks on `threads` threads.
fn norm_backward(
    norm: &Norm,
    input: &Array2<f32>,
    d_out: &Array2<f32>,
    threads: usize,
) -> Array2<f32> {
    let mut d_in = Array2::<f32>::zeros(input.raw_dim());
    par_rows(&mut d_in, threads, &|row0, mut block| {
        let rows = row0..row0 + block.nrows();
        for ((mut d_row, x), dy) in block
            .rows_mut()
            .into_iter()
            .zip(input.slice(s![rows.clone(), ..]).rows())
            .zip(d_out.slice(s![rows.clone(), ..]).rows())
        {
            norm_backward_row(norm, x, dy, d_row.view_mut());
        }
    });
    d_in
}

impl Norm {
    /// The adjoint of [`Norm::apply`]: ∂T/∂input from ∂T/∂output `d_out`, given the rows the
    /// norm was applied to. Shapes: [token, width].
    pub fn backward(&self, input: ArrayView2<'_, f32>, d_out: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut d_in = Array2::<f32>::zeros(input.raw_dim());
        for ((mut d_row, x), dy) in d_in
            .rows_mut()
            .into_iter()
            .zip(input.rows())
            .zip(d_out.rows())
        {
            norm_backward_row(self, x, dy, d_row.view_mut());
        }
        d_in
    }
}

/// One row of [`norm_backward`], in f64.
fn norm_backward_row(
    norm: &Norm,
    x: ndarray::ArrayView1<'_, f32>,
    dy: ndarray::ArrayView1<'_, f32>,
    mut dx: ndarray::ArrayViewMut1<'_, f32>,
) {
    let n = x.len() as f64;
    match norm {
        Norm::LayerNorm { gamma, eps, .. } => {
            // y = x̂·γ + β with x̂ = (x − μ)·r: dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ.
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let r = 1.0 / (var + f64::from(*eps)).sqrt();
            let (mut mean_g, mut mean_gx) = (0.0, 0.0);
            for ((&v, &d), &g) in x.iter().zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                mean_g += g;
                mean_gx += g * (f64::from(v) - mean) * r;
            }
            mean_g /= n;
            mean_gx /= n;
            for (((out, &v), &d), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                let xhat = (f64::from(v) - mean) * r;
                *out = (r * (g - mean_g - xhat * mean_gx)) as f32;
            }
        }
        Norm::RmsNorm { gamma, eps } => {
            // y = x·r·γ with r = (mean(x²) + ε)^−½: dx = r·g − x·r³·mean(g·x), g = dy·γ.
            let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
            let r = 1.0 / (ms + f64::from(*eps)).sqrt();
            let mean_gx = x
                .iter()
                .zip(dy)
                .zip(gamma)
                .map(|((&v, &d), &g)| f64::from(d) * f64::from(g) * f64::from(v))
                .sum::<f64>()
                / n;
            for (((out, &v), &d), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                *out = (r * g - f64::from(v) * r * r * r * mean_gx) as f32;
            }
        }
    }
}
