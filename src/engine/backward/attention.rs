//! The attention sublayer's adjoint: per head, the softmax and the three products, with
//! grouped-query heads summed in head order and RoPE undone.

use super::Tape;
use super::norm::slice;
use crate::engine::attention::{HeadParams, HeadShape, place_head_output, run_head, scores};
use crate::engine::block::TransposedBlock;
use crate::engine::gemm::PackedMatrix;
use crate::engine::intervene::{Ablation, AblationMode};
use crate::engine::options::RunOptions;
use crate::engine::parallel::{Split, par_fresh, parallel_map};
use crate::engine::position::RopeAngles;
use crate::engine::simd;
use crate::engine::transformer::Transformer;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, CowArray, Ix2, s};

/// Every head's output side by side ([token, heads · d_head]), ablated as the options say: what the
/// output projection of [`crate::engine::SelfAttention::forward`] multiplies. The rows are
/// sequences of `seq_len` tokens (see [`Transformer::forward_taped_with`]); each sequence's
/// heads run on its own rows, and the probabilities come sequence by sequence, heads in order.
#[allow(clippy::too_many_arguments)]
pub(super) fn head_outputs(
    qkv: &Array2<f32>,
    seq_len: usize,
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
    let tasks = qkv.nrows() / seq_len * shape.heads;
    let results = parallel_map(tasks, threads, &|task| {
        let (rows, head_idx) = task_rows(task, seq_len, shape.heads);
        let kv = head_idx / group;
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        run_head(
            qkv.slice(s![rows.clone(), head_idx * dh..(head_idx + 1) * dh]),
            qkv.slice(s![rows.clone(), k0..k0 + dh]),
            qkv.slice(s![rows, v0..v0 + dh]),
            HeadParams {
                factor,
                keep: kept_dims(opts, layer_idx, head_idx),
                alibi_slope: slopes.get(head_idx).copied(),
                query_offset: 0,
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
    for (task, r) in results.into_iter().enumerate() {
        let (rows, head_idx) = task_rows(task, seq_len, shape.heads);
        let sequence = concat.slice_mut(s![rows, ..]);
        place_head_output(sequence, head_idx, dh, &r.output, opts, layer_idx);
        if keep_probs {
            probs.push(r.probs);
        }
    }
    (concat, probs)
}

/// Task `task` of a batched layer's head work (sequence-major, heads in order): the rows of
/// its sequence and its head.
fn task_rows(task: usize, seq_len: usize, heads: usize) -> (std::ops::Range<usize>, usize) {
    let sequence = task / heads;
    (sequence * seq_len..(sequence + 1) * seq_len, task % heads)
}

/// The `--dims` subset of one head, if any.
fn kept_dims(opts: &RunOptions, layer_idx: usize, head_idx: usize) -> Option<&[usize]> {
    opts.dims
        .iter()
        .find(|d| d.layer_idx == layer_idx && d.head_idx == head_idx)
        .map(|d| d.dims.as_slice())
}

/// ∂T/∂(attention input) from ∂T/∂(attention output) `d_out`, and the layer's relevance map
/// when asked for.
pub(super) fn attention_backward(
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

    let d_concat = par_fresh(Split::Rows, n, q_width, threads, &|row0, block| {
        let rows = d_out.slice(s![row0..row0 + block.nrows(), ..]);
        block.product(rows, &tb.wo);
    });
    let qkv = &lt.qkv;
    let seq_len = tape.seq_len;
    let tasks = n / seq_len * shape.heads;
    let results = parallel_map(tasks, threads, &|task| {
        let (rows, head_idx) = task_rows(task, seq_len, shape.heads);
        let kv = head_idx / group;
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        // The adjoint of the ablation: zero passes nothing back; the mean passes every row
        // the mean of the rows' gradients (each output row is 1/N of every input row).
        let d_head = d_concat.slice(s![rows.clone(), head_idx * dh..(head_idx + 1) * dh]);
        let d_head: Option<CowArray<'_, f32, Ix2>> =
            match Ablation::find(&opts.ablations, layer_idx, head_idx) {
                None => Some(d_head.into()),
                Some(AblationMode::Zero) => None,
                Some(AblationMode::Mean) => {
                    let mut mean = d_head.to_owned();
                    Ablation::apply(AblationMode::Mean, mean.view_mut());
                    Some(mean.into())
                }
            };
        head_backward(
            lt.probs.get(task).map(|p| p.view()),
            qkv.slice(s![rows.clone(), head_idx * dh..(head_idx + 1) * dh]),
            qkv.slice(s![rows.clone(), k0..k0 + dh]),
            qkv.slice(s![rows, v0..v0 + dh]),
            d_head.as_ref().map(|d| d.view()),
            &HeadParams {
                factor,
                keep: kept_dims(opts, layer_idx, head_idx),
                alibi_slope: slopes.get(head_idx).copied(),
                query_offset: 0,
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
    // One sequence's map (the backward pass asks for it only then).
    let mut map = relevance.then(|| Array2::<f32>::zeros((seq_len, seq_len)));
    // Heads in order: a key/value head's gradient is the sum over its query heads, always
    // added in the same order.
    for (task, r) in results.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let (rows, head_idx) = task_rows(task, seq_len, shape.heads);
        let kv = head_idx / group;
        d_qkv
            .slice_mut(s![rows.clone(), head_idx * dh..(head_idx + 1) * dh])
            .assign(&r.dq);
        let k0 = q_width + kv * dh;
        let v0 = q_width + kv_width + kv * dh;
        let mut dk = d_qkv.slice_mut(s![rows.clone(), k0..k0 + dh]);
        dk += &r.dk;
        let mut dv = d_qkv.slice_mut(s![rows, v0..v0 + dh]);
        dv += &r.dv;
        if let (Some(map), Some(rel)) = (map.as_mut(), r.relevance) {
            *map += &rel;
        }
    }
    if let Some(map) = map.as_mut() {
        *map /= shape.heads as f32;
    }
    if let Some(freqs) = shape.rope_frequencies() {
        let angles = RopeAngles::new(seq_len, &freqs);
        for row0 in (0..n).step_by(seq_len) {
            let rows = row0..row0 + seq_len;
            for head in 0..shape.heads {
                angles.unrotate(d_qkv.slice_mut(s![rows.clone(), head * dh..(head + 1) * dh]));
            }
            for head in 0..shape.kv_heads {
                let k0 = q_width + head * dh;
                angles.unrotate(d_qkv.slice_mut(s![rows.clone(), k0..k0 + dh]));
            }
        }
    }
    let d_in = par_fresh(Split::Rows, n, model.d_model(), threads, &|row0, block| {
        let rows = d_qkv.slice(s![row0..row0 + block.nrows(), ..]);
        block.product(rows, &tb.qkv);
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
            let k_packed = PackedMatrix::pack_transposed(k_used.view());
            let mut probs = scores(&q_scaled, &k_packed, p);
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

/// Turns dA into dS = A ⊙ (dA − Σ_k A_k dA_k) row by row (the softmax's adjoint,
/// [`simd::softmax_backward_row`]). Masked cells have A = 0, so they get no gradient.
fn softmax_backward_rows(mut d: ArrayViewMut2<'_, f32>, probs: ArrayView2<'_, f32>) {
    for (mut d_row, p_row) in d.rows_mut().into_iter().zip(probs.rows()) {
        let a = slice(p_row);
        match d_row.as_slice_mut() {
            Some(g) => simd::softmax_backward_row(g, &a),
            None => {
                let mut g = d_row.to_vec();
                simd::softmax_backward_row(&mut g, &a);
                d_row.assign(&ndarray::ArrayView1::from(&g[..]));
            }
        }
    }
}
