//! Multi-head self-attention: the sublayer (q/k/v projection, RoPE, heads in parallel, output
//! projection) and the per-head kernel that computes scores, softmax and the weighted sum in
//! blocks of query rows.
// Unsafe only to take a score matrix as written once the product has written all of it (the
// maps are fresh memory, not zeroed first).
#![allow(unsafe_code)]

use super::gemm::PackedMatrix;
use super::intervene::{Ablation, AblationMode, Captured, FrozenRows, Interventions, Site};
use super::layers::{Epilogue, linear};
use super::options::{Mistake, RunOptions};
use super::parallel::{Split, par_fresh, parallel_map, split_columns, threads_for};
use super::position::{
    AttentionPosition, RopeAngles, alibi_slopes, llama3_frequencies, rope_frequencies,
};
use super::run::HeadTrace;
use super::simd;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};
use std::mem::MaybeUninit;

/// Query rows per block of [`run_head`]: a multiple of the matrix kernel's strip whose scores
/// (at 512 keys, 96 KB) stay in the L2 cache between the product, the softmax and the sum.
const ATTENTION_BLOCK_ROWS: usize = 48;

/// Multi-head self-attention weights, with grouped-query attention when kv_heads < heads.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfAttention {
    /// Shape: [d_model, heads · d_head].
    pub wq: Array2<f32>,
    /// Shape: [heads · d_head].
    pub bq: Option<Array1<f32>>,
    /// Shape: [d_model, kv_heads · d_head].
    pub wk: Array2<f32>,
    /// Shape: [kv_heads · d_head].
    pub bk: Option<Array1<f32>>,
    /// Shape: [d_model, kv_heads · d_head].
    pub wv: Array2<f32>,
    /// Shape: [kv_heads · d_head].
    pub bv: Option<Array1<f32>>,
    /// Shape: [heads · d_head, d_model].
    pub wo: Array2<f32>,
    /// Shape: [d_model].
    pub bo: Option<Array1<f32>>,
}

/// How a layer's heads are laid out: the dimensions attention runs with.
#[derive(Clone, Copy, Debug)]
pub(super) struct HeadShape {
    /// Query heads.
    pub(super) heads: usize,
    /// Key/value heads; `heads` is a multiple of it.
    pub(super) kv_heads: usize,
    /// Width of one head.
    pub(super) d_head: usize,
    /// RoPE, ALiBi or nothing.
    pub(super) position: AttentionPosition,
}

/// An attention sublayer's matrices, packed for the matrix kernel.
pub(super) struct PackedAttention {
    /// wq, wk and wv side by side: [d_model, (heads + 2 · kv_heads) · d_head].
    pub(super) qkv: PackedMatrix,
    pub(super) wo: PackedMatrix,
}

impl PackedAttention {
    pub(super) fn new(a: &SelfAttention) -> Self {
        let qkv = ndarray::concatenate(Axis(1), &[a.wq.view(), a.wk.view(), a.wv.view()])
            .unwrap_or_else(|_| Array2::zeros((0, 0)));
        Self {
            qkv: PackedMatrix::pack(qkv.view()),
            wo: PackedMatrix::pack(a.wo.view()),
        }
    }
}

/// Per-head results of one attention sublayer.
pub(super) struct HeadResult {
    pub(super) probs: Array2<f32>,
    pub(super) output: Array2<f32>,
    pub(super) trace: Option<HeadTrace>,
}

impl SelfAttention {
    /// One attention sublayer: returns its output after the epilogue (shape [token, d_model]), each head's
    /// probabilities and, when asked, each head's trace.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn forward(
        &self,
        packed: &PackedAttention,
        shape: &HeadShape,
        h: &Array2<f32>,
        epilogue: Epilogue<'_>,
        layer_idx: usize,
        allowed: Option<&Array2<bool>>,
        opts: &RunOptions,
        want_trace: bool,
        hooks: &mut Hooks<'_>,
    ) -> (Array2<f32>, Vec<Array2<f32>>, Option<Vec<HeadTrace>>) {
        let a = self;
        let threads = threads_for(h.nrows(), opts);
        let qkv = self.project_qkv(packed, shape, h, h.nrows(), threads);
        let (q_width, kv_width) = (a.wq.ncols(), a.wk.ncols());
        let (q, rest) = qkv.view().split_at(Axis(1), q_width);
        let (k, v) = rest.split_at(Axis(1), kv_width);
        // With frozen rows, queries (and everything after them) from `from` on only.
        let from = hooks.from;
        let q = q.slice_move(s![from.., ..]);
        let dh = shape.d_head;
        let slopes = shape.alibi_slopes();
        let group = shape.heads / shape.kv_heads;
        let factor = opts.scale_factor(dh);
        let wrong_axis = opts.has(Mistake::SoftmaxWrongAxis);
        let iv = hooks.interventions;
        let head_fn = |head_idx: usize| -> HeadResult {
            let pattern = Site::Pattern(layer_idx, head_idx);
            let pattern_override = iv.override_of(pattern);
            let kv = head_idx / group;
            let keep = opts
                .dims
                .iter()
                .find(|d| d.layer_idx == layer_idx && d.head_idx == head_idx)
                .map(|d| d.dims.as_slice());
            let q_h = q.slice(s![.., head_idx * dh..(head_idx + 1) * dh]);
            let k_h = k.slice(s![.., kv * dh..(kv + 1) * dh]);
            let v_h = v.slice(s![.., kv * dh..(kv + 1) * dh]);
            let elementwise = opts.has(Mistake::ElementwiseValues);
            let mut r = run_head(
                q_h,
                k_h,
                v_h,
                HeadParams {
                    factor,
                    keep,
                    alibi_slope: slopes.get(head_idx).copied(),
                    query_offset: from,
                    allowed,
                    want_trace,
                    // The wrong-axis softmax needs every query row of a column at once.
                    keep_probs: opts.keep_maps
                        || want_trace
                        || wrong_axis
                        || pattern_override.is_some()
                        || iv.captures(pattern),
                    kv_head: kv,
                    wrong_axis,
                    elementwise,
                },
            );
            if let Some(o) = pattern_override {
                o.write(r.probs.view_mut());
                rewrite_output_rows(&mut r, v_h, o.positions.as_deref(), elementwise);
            }
            r
        };
        let results = parallel_map(shape.heads, threads, &head_fn);

        let mut concat = Array2::<f32>::zeros((h.nrows() - from, shape.heads * dh));
        let mut probs = Vec::with_capacity(shape.heads);
        let mut traces = want_trace.then(Vec::new);
        for (head_idx, r) in results.into_iter().enumerate() {
            let mut z =
                place_head_output(concat.view_mut(), head_idx, dh, &r.output, opts, layer_idx);
            let head = Site::Head(layer_idx, head_idx);
            if let Some(o) = iv.override_of(head) {
                o.write_from(from, z.view_mut());
            }
            if iv.captures(head) {
                hooks.captured.put(head, z.to_owned());
            }
            let pattern = Site::Pattern(layer_idx, head_idx);
            if iv.captures(pattern) {
                hooks.captured.put(pattern, r.probs.clone());
            }
            probs.push(r.probs);
            if let (Some(traces), Some(t)) = (traces.as_mut(), r.trace) {
                traces.push(t);
            }
        }
        let site = Site::Attn(layer_idx);
        let out = if iv.touches(site) {
            // The projection alone, then the residual and the norm: the same operations in
            // the same order as the fused epilogue, so nothing changes but the hook.
            let mut out = linear(&concat, &packed.wo, a.bo.as_ref(), Epilogue::NONE, threads);
            hooks.visit(site, &mut out);
            epilogue.apply(0, out.view_mut());
            out
        } else {
            linear(&concat, &packed.wo, a.bo.as_ref(), epilogue, threads)
        };
        (out, probs, traces)
    }
    /// q, k and v side by side ([token, (heads + 2 · kv_heads) · d_head]), biases added and q
    /// and k rotated for RoPE, computed per row block in one pass over the threads. The rows
    /// are sequences of `seq_len` tokens one after another (a batch; one sequence when it is
    /// `h`'s row count), each starting at position 0.
    pub(super) fn project_qkv(
        &self,
        packed: &PackedAttention,
        shape: &HeadShape,
        h: &Array2<f32>,
        seq_len: usize,
        threads: usize,
    ) -> Array2<f32> {
        let a = self;
        let (q_width, kv_width) = (a.wq.ncols(), a.wk.ncols());
        let width = q_width + 2 * kv_width;
        // Each bias added to its columns of a block that starts at column `first`.
        let add_biases = |mut block: ArrayViewMut2<'_, f32>, first: usize| {
            let biases = [(&a.bq, 0), (&a.bk, q_width), (&a.bv, q_width + kv_width)];
            let end = first + block.ncols();
            for (b, col0) in biases {
                if let Some(b) = b {
                    let (from, to) = (col0.max(first), (col0 + b.len()).min(end));
                    if from < to {
                        let mut dst = block.slice_mut(s![.., from - first..to - first]);
                        dst += &b.slice(s![from - col0..to - col0]);
                    }
                }
            }
        };
        let mut qkv = if split_columns(h.nrows(), threads) {
            par_fresh(Split::Columns, h.nrows(), width, threads, &|col0, block| {
                add_biases(block.product_of_columns(h.view(), &packed.qkv, col0), col0);
            })
        } else {
            par_fresh(Split::Rows, h.nrows(), width, threads, &|row0, block| {
                let rows = h.slice(s![row0..row0 + block.nrows(), ..]);
                add_biases(block.product(rows, &packed.qkv), 0);
            })
        };
        let (mut q, rest) = qkv.view_mut().split_at(Axis(1), q_width);
        let (mut k, _) = rest.split_at(Axis(1), kv_width);
        let dh = shape.d_head;
        if let Some(freqs) = shape.rope_frequencies() {
            // Every sequence of a batch starts at position 0.
            let seq_len = seq_len.clamp(1, q.nrows().max(1));
            let angles = RopeAngles::new(seq_len, &freqs);
            for row0 in (0..q.nrows()).step_by(seq_len) {
                let rows = row0..(row0 + seq_len).min(q.nrows());
                for head in 0..shape.heads {
                    angles.rotate(q.slice_mut(s![rows.clone(), head * dh..(head + 1) * dh]));
                }
                for head in 0..shape.kv_heads {
                    angles.rotate(k.slice_mut(s![rows.clone(), head * dh..(head + 1) * dh]));
                }
            }
        }
        qkv
    }
}

/// Writes head `head_idx`'s output into its columns of `concat` ([token, heads · d_head]),
/// ablated as `opts` says for this layer, and returns those columns.
pub(super) fn place_head_output<'a>(
    concat: ArrayViewMut2<'a, f32>,
    head_idx: usize,
    d_head: usize,
    output: &Array2<f32>,
    opts: &RunOptions,
    layer_idx: usize,
) -> ArrayViewMut2<'a, f32> {
    let mut z = concat.slice_move(s![.., head_idx * d_head..(head_idx + 1) * d_head]);
    match Ablation::find(&opts.ablations, layer_idx, head_idx) {
        Some(AblationMode::Zero) => {}
        Some(mode) => {
            z.assign(output);
            Ablation::apply(mode, z.view_mut());
        }
        None => z.assign(output),
    }
    z
}

/// A head's output recomputed from its (overridden) probabilities at `rows` (all when `None`),
/// with the kernel [`run_head`] uses.
fn rewrite_output_rows(
    r: &mut HeadResult,
    v_h: ArrayView2<'_, f32>,
    rows: Option<&[usize]>,
    elementwise: bool,
) {
    let v_packed = PackedMatrix::pack(v_h);
    let all: Vec<usize>;
    let rows = match rows {
        Some(rows) => rows,
        None => {
            all = (0..r.probs.nrows()).collect();
            &all
        }
    };
    for &row in rows {
        weighted_values(
            r.probs.slice(s![row..row + 1, ..]),
            v_h,
            &v_packed,
            row,
            elementwise,
            r.output.slice_mut(s![row..row + 1, ..]),
        );
    }
}

/// The interventions of a pass and what it captured so far.
pub(super) struct Hooks<'a> {
    pub(super) interventions: &'a Interventions,
    pub(super) captured: &'a mut Captured,
    /// The first row the pass computes (0 unless rows are frozen).
    pub(super) from: usize,
    /// The rows before `from`, when frozen.
    pub(super) frozen: Option<&'a FrozenRows>,
}

impl Hooks<'_> {
    /// Applies the override of `site` to `value` (the rows from `from` on), then captures it
    /// when asked, whole (a residual's frozen rows put back in front).
    pub(super) fn visit(&mut self, site: Site, value: &mut Array2<f32>) {
        if let Some(o) = self.interventions.override_of(site) {
            o.write_from(self.from, value.view_mut());
        }
        if self.interventions.captures(site) {
            let whole = match (self.frozen, site) {
                (Some(f), Site::Resid(l)) => {
                    let prefix = f.resid[l].slice(s![..self.from, ..]);
                    ndarray::concatenate(Axis(0), &[prefix, value.view()])
                        .unwrap_or_else(|_| value.clone())
                }
                _ => value.clone(),
            };
            self.captured.put(site, whole);
        }
    }
}

impl HeadShape {
    /// The RoPE frequencies of one head, or `None` without RoPE.
    pub(super) fn rope_frequencies(&self) -> Option<Vec<f32>> {
        match self.position {
            AttentionPosition::Rope { theta } => Some(rope_frequencies(self.d_head, theta)),
            AttentionPosition::RopeLlama3 { theta, scaling } => {
                Some(llama3_frequencies(self.d_head, theta, scaling))
            }
            AttentionPosition::None | AttentionPosition::Alibi => None,
        }
    }

    /// The ALiBi slope of every head (empty without ALiBi).
    pub(super) fn alibi_slopes(&self) -> Vec<f32> {
        match self.position {
            AttentionPosition::Alibi => alibi_slopes(self.heads),
            _ => Vec::new(),
        }
    }
}

pub(super) struct HeadParams<'a> {
    pub(super) factor: f32,
    pub(super) keep: Option<&'a [usize]>,
    pub(super) alibi_slope: Option<f32>,
    /// The position of query row 0 (rows before it frozen), for ALiBi's distances.
    pub(super) query_offset: usize,
    pub(super) allowed: Option<&'a Array2<bool>>,
    pub(super) want_trace: bool,
    /// Return the whole [query, key] probabilities; when false they are computed one block of
    /// query rows at a time in a reused buffer and an empty matrix is returned.
    pub(super) keep_probs: bool,
    /// The key/value head read (recorded in the trace).
    pub(super) kv_head: usize,
    /// [`Mistake::SoftmaxWrongAxis`]: normalise each key's column over the queries.
    pub(super) wrong_axis: bool,
    /// [`Mistake::ElementwiseValues`]: output_i = p[i][i] · v_i.
    pub(super) elementwise: bool,
}

/// The head output of one block of probability rows starting at query `row0`: the matrix
/// product with V, or under [`Mistake::ElementwiseValues`] each row's own value scaled by its
/// diagonal weight (no sum over keys, as `weights * value` gives).
fn weighted_values(
    probs: ArrayView2<'_, f32>,
    v_h: ArrayView2<'_, f32>,
    v_packed: &PackedMatrix,
    row0: usize,
    elementwise: bool,
    mut out: ndarray::ArrayViewMut2<'_, f32>,
) {
    if !elementwise {
        simd::matmul(probs, v_packed, out, false);
        return;
    }
    for (i, mut out_row) in out.axis_iter_mut(Axis(0)).enumerate() {
        let query_idx = row0 + i;
        let w = probs.get((i, query_idx)).copied().unwrap_or(0.0);
        out_row.assign(&(&v_h.row(query_idx.min(v_h.nrows().saturating_sub(1))) * w));
    }
}

/// Softmax over the query axis (the wrong axis): every key's column of `scores` sums to 1
/// over the queries the mask lets see it, or is all zeros when none can.
fn softmax_columns(
    mut scores: ndarray::ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
) {
    let mut t = scores.t().as_standard_layout().into_owned();
    let allowed_t = allowed.map(|a| a.t().as_standard_layout().into_owned());
    simd::softmax_rows(t.view_mut(), allowed_t.as_ref().map(|a| a.view()));
    scores.assign(&t.t());
}

/// The scaled scores of query rows `rows` against every key, ALiBi bias included, written
/// into `block` (fresh memory: the product writes every element, so nothing zeroes it first)
/// and returned as values.
pub(super) fn score_block<'a>(
    q_scaled: &Array2<f32>,
    k_packed: &PackedMatrix,
    p: &HeadParams<'_>,
    rows: std::ops::Range<usize>,
    mut block: ArrayViewMut2<'a, MaybeUninit<f32>>,
) -> ArrayViewMut2<'a, f32> {
    let row0 = rows.start + p.query_offset;
    simd::matmul_fresh(q_scaled.slice(s![rows, ..]), k_packed, block.view_mut());
    // SAFETY: `matmul_fresh` wrote every element of `block`.
    let mut block = unsafe { block.assume_init() };
    if let Some(slope) = p.alibi_slope {
        for ((i, key_idx), s) in block.indexed_iter_mut() {
            *s -= slope * (row0 + i).abs_diff(key_idx) as f32;
        }
    }
    block
}

/// [`score_block`] for every query row: the whole scaled score matrix.
pub(super) fn scores(
    q_scaled: &Array2<f32>,
    k_packed: &PackedMatrix,
    p: &HeadParams<'_>,
) -> Array2<f32> {
    let mut scores = Array2::<f32>::uninit((q_scaled.nrows(), k_packed.cols()));
    score_block(
        q_scaled,
        k_packed,
        p,
        0..q_scaled.nrows(),
        scores.view_mut(),
    );
    // SAFETY: `score_block` wrote every element.
    unsafe { scores.assume_init() }
}

pub(super) fn run_head(
    q_h: ArrayView2<'_, f32>,
    k_h: ArrayView2<'_, f32>,
    v_h: ArrayView2<'_, f32>,
    p: HeadParams<'_>,
) -> HeadResult {
    // Fold the scale into q: n·d multiplies instead of n².
    let mut q_scaled = q_h.to_owned();
    let mut k_used = None;
    if let Some(keep) = p.keep {
        let mut k_owned = k_h.to_owned();
        for dim in 0..q_scaled.ncols() {
            if !keep.contains(&dim) {
                q_scaled.column_mut(dim).fill(0.0);
                k_owned.column_mut(dim).fill(0.0);
            }
        }
        k_used = Some(k_owned);
    }
    let k_view = k_used.as_ref().map_or(k_h, |k| k.view());
    let raw_scores = p.want_trace.then(|| q_scaled.dot(&k_view.t()));
    q_scaled *= p.factor;
    let k_packed = PackedMatrix::pack_transposed(k_view);
    let v_packed = PackedMatrix::pack(v_h);
    let (n_q, n_k) = (q_scaled.nrows(), k_view.nrows());
    let mut output = Array2::<f32>::zeros((n_q, v_h.ncols()));
    if !p.keep_probs {
        // One block of rows at a time, in one buffer: no tokens² memory per head.
        let mut block_buf = Array2::<f32>::uninit((ATTENTION_BLOCK_ROWS.min(n_q), n_k));
        for (block_idx, out_block) in output
            .axis_chunks_iter_mut(Axis(0), ATTENTION_BLOCK_ROWS)
            .enumerate()
        {
            let row0 = block_idx * ATTENTION_BLOCK_ROWS;
            let rows = row0..row0 + out_block.nrows();
            let fresh = block_buf.slice_mut(s![..out_block.nrows(), ..]);
            let mut block = score_block(&q_scaled, &k_packed, &p, rows.clone(), fresh);
            let allowed = p.allowed.map(|a| a.slice(s![rows, ..]));
            simd::softmax_rows(block.view_mut(), allowed);
            weighted_values(block.view(), v_h, &v_packed, row0, p.elementwise, out_block);
        }
        return HeadResult {
            probs: Array2::zeros((0, 0)),
            output,
            trace: None,
        };
    }
    // Fresh memory: every block below is written whole by `score_block`.
    let mut scores = Array2::<f32>::uninit((n_q, n_k));
    let mut masked_scores = None;
    // Scores, softmax and the weighted sum run block by block of query rows, so that each
    // block of probabilities is still in cache when it is used (the whole map is a megabyte
    // at 512 tokens). A trace needs the whole masked score matrix, so it takes one block.
    let whole = p.want_trace || p.wrong_axis;
    let block_rows = if whole {
        n_q.max(1)
    } else {
        ATTENTION_BLOCK_ROWS
    };
    // Blocks of rows are computed in one reused buffer, which stays in cache, and streamed
    // into the map once done (`simd::stream_rows`): written in place, every line of the map
    // was first read from memory.
    let mut buffer = (!whole).then(|| Array2::<f32>::uninit((block_rows.min(n_q), n_k)));
    for (block_idx, (fresh, out_block)) in scores
        .axis_chunks_iter_mut(Axis(0), block_rows)
        .zip(output.axis_chunks_iter_mut(Axis(0), block_rows))
        .enumerate()
    {
        let row0 = block_idx * block_rows;
        let rows = row0..row0 + fresh.nrows();
        let (mut block, map_rows) = match buffer.as_mut() {
            Some(buffer) => {
                let in_buffer = buffer.slice_mut(s![..fresh.nrows(), ..]);
                let block = score_block(&q_scaled, &k_packed, &p, rows.clone(), in_buffer);
                (block, Some(fresh))
            }
            None => (
                score_block(&q_scaled, &k_packed, &p, rows.clone(), fresh),
                None,
            ),
        };
        let allowed = p.allowed.map(|a| a.slice(s![rows, ..]));
        if p.want_trace {
            let mut m = block.to_owned();
            if let Some(allowed) = allowed {
                ndarray::Zip::from(&mut m).and(allowed).for_each(|s, &ok| {
                    if !ok {
                        *s = f32::NEG_INFINITY;
                    }
                });
            }
            masked_scores = Some(m);
        }
        match map_rows {
            // A block in the buffer: its probabilities go into the map by the softmax's last
            // pass (or by streaming stores, see `softmax_rows_into`), read from where it says.
            Some(mut map_rows) if !p.wrong_axis => {
                let at = simd::softmax_rows_into(block.view_mut(), allowed, map_rows.view_mut());
                // SAFETY: `softmax_rows_into` wrote every element of `map_rows`.
                let map_rows = unsafe { map_rows.assume_init() };
                let probs = match at {
                    simd::ProbsIn::Dst => map_rows.view(),
                    simd::ProbsIn::Scores => block.view(),
                };
                weighted_values(probs, v_h, &v_packed, row0, p.elementwise, out_block);
            }
            map_rows => {
                if p.wrong_axis {
                    softmax_columns(block.view_mut(), allowed);
                } else {
                    simd::softmax_rows(block.view_mut(), allowed);
                }
                weighted_values(block.view(), v_h, &v_packed, row0, p.elementwise, out_block);
                if let Some(map_rows) = map_rows {
                    simd::stream_rows(block.view(), map_rows);
                }
            }
        }
    }
    // SAFETY: the blocks above cover every row, and each was written whole, by `score_block`,
    // `softmax_rows_into` or `stream_rows`.
    let scores = unsafe { scores.assume_init() };
    let trace = match (raw_scores, masked_scores) {
        (Some(raw_scores), Some(masked_scores)) => {
            // The trace records the q and k that were dotted, without the scale folded in.
            let mut q = q_h.to_owned();
            if let Some(keep) = p.keep {
                for dim in 0..q.ncols() {
                    if !keep.contains(&dim) {
                        q.column_mut(dim).fill(0.0);
                    }
                }
            }
            Some(HeadTrace {
                kv_head: p.kv_head,
                scale: p.factor,
                alibi_slope: p.alibi_slope,
                q,
                k: k_view.to_owned(),
                v: v_h.to_owned(),
                raw_scores,
                masked_scores,
                probs: scores.clone(),
                output: output.clone(),
            })
        }
        _ => None,
    };
    HeadResult {
        probs: scores,
        output,
        trace,
    }
}
