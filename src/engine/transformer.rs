//! A generic transformer stack that records every head's attention.
//!
//! Models (the demo, BERT, GPT-2, Llama) build a [`Transformer`] from their weights and hand it
//! embeddings; this module runs the blocks and returns the probabilities of every layer and head.
//! Nothing is dropped: capturing attention is the point.

use super::math::{gelu, gelu_tanh, layer_norm_row, rms_norm_row, silu, softmax_row};
use super::options::RunOptions;
use super::position::{
    AttentionPosition, alibi_slopes, apply_rope, llama3_frequencies, rope_frequencies,
};
use super::run::{AttentionMaps, HeadTrace, Trace};
use super::{EngineError, MaskPart, MaskSpec};
use ndarray::linalg::general_mat_mul;
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};

/// A normalisation layer.
#[derive(Clone, Debug, PartialEq)]
pub enum Norm {
    /// LayerNorm with a learned scale and shift.
    LayerNorm {
        /// Scale. Shape: [d_model].
        gamma: Array1<f32>,
        /// Shift. Shape: [d_model].
        beta: Array1<f32>,
        /// Added to the variance.
        eps: f32,
    },
    /// RMSNorm with a learned scale.
    RmsNorm {
        /// Scale. Shape: [d_model].
        gamma: Array1<f32>,
        /// Added to the mean square.
        eps: f32,
    },
}

impl Norm {
    /// A LayerNorm with gamma 1 and beta 0.
    pub fn identity_layer_norm(d_model: usize, eps: f32) -> Self {
        Norm::LayerNorm {
            gamma: Array1::ones(d_model),
            beta: Array1::zeros(d_model),
            eps,
        }
    }

    /// Normalises every row of `x` in place. Shape of `x`: [token, d_model].
    pub fn apply(&self, x: &mut Array2<f32>) {
        for mut row in x.axis_iter_mut(Axis(0)) {
            let Some(row) = row.as_slice_mut() else {
                continue;
            };
            match self {
                Norm::LayerNorm { gamma, beta, eps } => {
                    if let (Some(g), Some(b)) = (gamma.as_slice(), beta.as_slice()) {
                        layer_norm_row(row, g, b, *eps);
                    }
                }
                Norm::RmsNorm { gamma, eps } => {
                    if let Some(g) = gamma.as_slice() {
                        rms_norm_row(row, g, *eps);
                    }
                }
            }
        }
    }

    fn width(&self) -> usize {
        match self {
            Norm::LayerNorm { gamma, .. } | Norm::RmsNorm { gamma, .. } => gamma.len(),
        }
    }
}

/// Where the norms sit in each block.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum NormPlacement {
    /// x + f(norm(x)), as in GPT-2 and Llama.
    #[default]
    Pre,
    /// norm(x + f(x)), as in BERT and the original Transformer.
    Post,
    /// x + f(x): no normalisation at all.
    None,
}

impl NormPlacement {
    /// All placements, for pickers.
    pub const ALL: [NormPlacement; 3] =
        [NormPlacement::Pre, NormPlacement::Post, NormPlacement::None];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NormPlacement::Pre => "pre",
            NormPlacement::Post => "post",
            NormPlacement::None => "none",
        }
    }
}

impl std::str::FromStr for NormPlacement {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pre" => Ok(Self::Pre),
            "post" => Ok(Self::Post),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown LayerNorm placement {other:?}; expected pre, post or none"
            )),
        }
    }
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU.
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
    /// SiLU, used gated in Llama: silu(x·W_gate) ⊙ (x·W_in).
    Silu,
}

impl Activation {
    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::Silu => silu(x),
        }
    }
}

/// The feed-forward block.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// Shape: [d_model, d_ff].
    pub w_in: Array2<f32>,
    /// Shape: [d_ff].
    pub b_in: Option<Array1<f32>>,
    /// For gated MLPs: the activation applies to x·w_gate and multiplies x·w_in. Shape: [d_model, d_ff].
    pub w_gate: Option<Array2<f32>>,
    /// Shape: [d_ff, d_model].
    pub w_out: Array2<f32>,
    /// Shape: [d_model].
    pub b_out: Option<Array1<f32>>,
    /// The nonlinearity.
    pub activation: Activation,
}

impl Mlp {
    /// Shape of `x` and the result: [token, d_model]. Row blocks run on `threads` threads.
    fn forward(&self, x: &Array2<f32>, threads: usize) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((x.nrows(), self.w_out.ncols()));
        par_rows(&mut out, threads, &|row0, mut block| {
            let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
            let mut hidden = rows.dot(&self.w_in);
            if let Some(b) = &self.b_in {
                hidden += b;
            }
            match &self.w_gate {
                Some(w_gate) => {
                    let gate = rows.dot(w_gate);
                    let act = self.activation;
                    ndarray::Zip::from(&mut hidden)
                        .and(&gate)
                        .for_each(|h, &g| *h *= act.apply(g));
                }
                None => match (self.activation, hidden.as_slice_mut()) {
                    // Monomorphic loops over contiguous memory vectorise.
                    (Activation::Gelu, Some(h)) => h.iter_mut().for_each(|v| *v = gelu(*v)),
                    (Activation::GeluTanh, Some(h)) => {
                        h.iter_mut().for_each(|v| *v = gelu_tanh(*v))
                    }
                    (act, _) => hidden.mapv_inplace(|v| act.apply(v)),
                },
            }
            general_mat_mul(1.0, &hidden, &self.w_out, 0.0, &mut block);
            if let Some(b) = &self.b_out {
                block += b;
            }
        });
        out
    }
}

/// x · w + b, with row blocks of x on `threads` threads. Shapes: x [rows, in], w [in, out].
fn linear(
    x: &Array2<f32>,
    w: &Array2<f32>,
    b: Option<&Array1<f32>>,
    threads: usize,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((x.nrows(), w.ncols()));
    par_rows(&mut out, threads, &|row0, mut block| {
        let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
        general_mat_mul(1.0, &rows, w, 0.0, &mut block);
        if let Some(b) = b {
            block += b;
        }
    });
    out
}

/// Calls `f(first_row, block)` on disjoint row blocks of `out`, one per thread, on named
/// scoped threads. The blocks sit in a queue that the caller's thread also drains, so a thread
/// that fails to start only costs speed.
fn par_rows(
    out: &mut Array2<f32>,
    threads: usize,
    f: &(dyn Fn(usize, ArrayViewMut2<'_, f32>) + Sync),
) {
    let rows = out.nrows();
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 {
        f(0, out.view_mut());
        return;
    }
    let chunk = rows.div_ceil(threads);
    let queue = std::sync::Mutex::new(
        out.axis_chunks_iter_mut(Axis(0), chunk)
            .enumerate()
            .collect::<Vec<_>>(),
    );
    let work = || {
        while let Some((i, block)) = queue.lock().ok().and_then(|mut q| q.pop()) {
            f(i * chunk, block);
        }
    };
    std::thread::scope(|scope| {
        for t in 1..threads {
            // A refused spawn leaves its block in the queue for the caller.
            let _ = std::thread::Builder::new()
                .name(format!("attn-rows-{t}"))
                .spawn_scoped(scope, work);
        }
        work();
    });
}

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

/// One transformer block.
#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    /// The attention sublayer.
    pub attention: SelfAttention,
    /// The feed-forward sublayer.
    pub mlp: Mlp,
    /// The norm around the attention sublayer (unused with [`NormPlacement::None`]).
    pub attention_norm: Norm,
    /// The norm around the MLP sublayer (unused with [`NormPlacement::None`]).
    pub mlp_norm: Norm,
}

/// A stack of blocks plus how attention sees positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Transformer {
    /// Width of the residual stream.
    pub d_model: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer; `heads` must be a multiple of it.
    pub kv_heads: usize,
    /// Width of one head.
    pub d_head: usize,
    /// Where the norms sit.
    pub placement: NormPlacement,
    /// RoPE, ALiBi or nothing inside attention.
    pub position: AttentionPosition,
    /// True for models that are causal by construction (GPT-2, Llama): `causal` is always added.
    pub causal: bool,
    /// The blocks, first to last.
    pub blocks: Vec<Block>,
    /// A norm after the last block (GPT-2's ln_f, Llama's norm), applied to the hidden output.
    pub final_norm: Option<Norm>,
}

/// What [`Transformer::forward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardOutput {
    /// Every layer's and head's probabilities.
    pub maps: AttentionMaps,
    /// Query rows the mask left empty.
    pub fully_masked_queries: Vec<usize>,
    /// The traced layer, when asked for.
    pub trace: Option<Trace>,
    /// Final hidden states. Shape: [token, d_model].
    pub hidden: Array2<f32>,
}

/// Per-head results of one attention sublayer.
struct HeadResult {
    probs: Array2<f32>,
    output: Array2<f32>,
    trace: Option<HeadTrace>,
}

/// Sequences at least this long split the heads across threads; below it the thread start-up
/// costs more than it saves (measured in `benches/engine.rs`).
const PARALLEL_MIN_TOKENS: usize = 48;
/// More threads than this rarely pays for a dozen heads.
const MAX_THREADS: usize = 8;

/// How many threads a sequence of `len` tokens gets, unless the options say.
fn threads_for(len: usize, opts: &RunOptions) -> usize {
    opts.threads.unwrap_or_else(|| {
        if len >= PARALLEL_MIN_TOKENS {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            1
        }
    })
}

impl Transformer {
    /// Checks that every weight has the shape the dimensions promise.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |what: String| Err(EngineError::BadWeights(what));
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!(
                "{} heads cannot share {} kv heads",
                self.heads, self.kv_heads
            ));
        }
        let rope = matches!(
            self.position,
            AttentionPosition::Rope { .. } | AttentionPosition::RopeLlama3 { .. }
        );
        if rope && !self.d_head.is_multiple_of(2) {
            return bad(format!(
                "RoPE needs an even head width, got {}",
                self.d_head
            ));
        }
        let (d, q, kv) = (
            self.d_model,
            self.heads * self.d_head,
            self.kv_heads * self.d_head,
        );
        for (i, b) in self.blocks.iter().enumerate() {
            let a = &b.attention;
            let checks = [
                ("wq", a.wq.dim(), (d, q)),
                ("wk", a.wk.dim(), (d, kv)),
                ("wv", a.wv.dim(), (d, kv)),
                ("wo", a.wo.dim(), (q, d)),
                ("mlp.w_out", (b.mlp.w_out.ncols(), 0), (d, 0)),
                (
                    "mlp.w_in",
                    (b.mlp.w_in.nrows(), b.mlp.w_in.ncols()),
                    (d, b.mlp.w_out.nrows()),
                ),
            ];
            for (name, got, want) in checks {
                if got != want {
                    return bad(format!(
                        "layer {i} {name} has shape {got:?}, expected {want:?}"
                    ));
                }
            }
            let biases = [
                ("bq", &a.bq, q),
                ("bk", &a.bk, kv),
                ("bv", &a.bv, kv),
                ("bo", &a.bo, d),
            ];
            for (name, bias, want) in biases {
                if let Some(bias) = bias
                    && bias.len() != want
                {
                    return bad(format!(
                        "layer {i} {name} has length {}, expected {want}",
                        bias.len()
                    ));
                }
            }
            if b.attention_norm.width() != d || b.mlp_norm.width() != d {
                return bad(format!("layer {i} norm width differs from d_model {d}"));
            }
        }
        Ok(())
    }

    /// Runs every block over the embeddings `x` (shape [token, d_model]).
    ///
    /// `is_pad[t]` marks padding tokens for the `padding` mask. `progress` is called after each
    /// layer with the number of layers done; returning false cancels the run.
    pub fn forward(
        &self,
        mut x: Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ForwardOutput, EngineError> {
        let len = x.nrows();
        if len == 0 {
            return Err(EngineError::NoTokens);
        }
        if x.ncols() != self.d_model {
            return Err(EngineError::BadWeights(format!(
                "embeddings have width {}, expected {}",
                x.ncols(),
                self.d_model
            )));
        }
        self.check_options(opts)?;
        let allowed = effective_mask(&opts.mask, self.causal).build(len, is_pad)?;
        let fully_masked_queries = match &allowed {
            Some(a) => a
                .axis_iter(Axis(0))
                .enumerate()
                .filter(|(_, row)| !row.iter().any(|&ok| ok))
                .map(|(q, _)| q)
                .collect(),
            None => Vec::new(),
        };

        let mut all_probs = Vec::with_capacity(self.blocks.len() * self.heads);
        let mut trace = None;
        let threads = threads_for(len, opts);
        for (layer_idx, block) in self.blocks.iter().enumerate() {
            let want_trace = opts.trace_layer == Some(layer_idx);
            let attn_input = match self.placement {
                NormPlacement::Pre => {
                    let mut h = x.clone();
                    block.attention_norm.apply(&mut h);
                    h
                }
                NormPlacement::Post | NormPlacement::None => x.clone(),
            };
            let (attn_out, probs, head_traces) = self.attention(
                block,
                &attn_input,
                layer_idx,
                allowed.as_ref(),
                opts,
                want_trace,
            );
            all_probs.extend(probs);
            if let Some(heads) = head_traces {
                trace = Some(Trace {
                    layer_idx,
                    input: attn_input,
                    heads,
                });
            }
            x += &attn_out;
            match self.placement {
                NormPlacement::Pre => {
                    let mut h = x.clone();
                    block.mlp_norm.apply(&mut h);
                    x += &block.mlp.forward(&h, threads);
                }
                NormPlacement::Post => {
                    block.attention_norm.apply(&mut x);
                    let mlp_out = block.mlp.forward(&x, threads);
                    x += &mlp_out;
                    block.mlp_norm.apply(&mut x);
                }
                NormPlacement::None => {
                    let mlp_out = block.mlp.forward(&x, threads);
                    x += &mlp_out;
                }
            }
            if !progress(layer_idx + 1) {
                return Err(EngineError::Cancelled);
            }
        }
        if let Some(norm) = &self.final_norm {
            norm.apply(&mut x);
        }
        let maps = AttentionMaps::from_heads(self.blocks.len(), self.heads, len, all_probs)
            .ok_or_else(|| EngineError::BadWeights("head maps have inconsistent shapes".into()))?;
        Ok(ForwardOutput {
            maps,
            fully_masked_queries,
            trace,
            hidden: x,
        })
    }

    /// Runs [`Self::forward`] on the embeddings `x` of `tokens` and packages the result as an
    /// [`AttentionRun`]: what every model's `forward` returns.
    pub fn run(
        &self,
        tokens: &[crate::tokenize::Token],
        x: Array2<f32>,
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<super::AttentionRun, EngineError> {
        let is_pad: Vec<bool> = tokens.iter().map(crate::tokenize::Token::is_pad).collect();
        let out = self.forward(x, &is_pad, opts, progress)?;
        Ok(super::AttentionRun {
            tokens: tokens.to_vec(),
            maps: out.maps,
            fully_masked_queries: out.fully_masked_queries,
            trace: out.trace,
            hidden: opts.keep_hidden.then_some(out.hidden),
        })
    }

    fn check_options(&self, opts: &RunOptions) -> Result<(), EngineError> {
        let layers = self.blocks.len();
        let out_of_range = |what: String| Err(EngineError::OutOfRange(what));
        for &(layer_idx, head_idx) in &opts.ablated_heads {
            if layer_idx >= layers || head_idx >= self.heads {
                return out_of_range(format!(
                    "ablated head {layer_idx}.{head_idx} does not exist ({layers} layers × {} heads)",
                    self.heads
                ));
            }
        }
        for d in &opts.dims {
            if d.layer_idx >= layers || d.head_idx >= self.heads {
                return out_of_range(format!(
                    "--dims names head {}.{}, which does not exist ({layers} layers × {} heads)",
                    d.layer_idx, d.head_idx, self.heads
                ));
            }
            if let Some(&bad) = d.dims.iter().find(|&&dim| dim >= self.d_head) {
                return out_of_range(format!(
                    "--dims names dimension {bad} of head {}.{}, but heads have {} dimensions",
                    d.layer_idx, d.head_idx, self.d_head
                ));
            }
        }
        if let Some(t) = opts.trace_layer
            && t >= layers
        {
            return out_of_range(format!("trace layer {t} does not exist ({layers} layers)"));
        }
        Ok(())
    }

    /// One attention sublayer: returns its output (shape [token, d_model]), each head's
    /// probabilities and, when asked, each head's trace.
    fn attention(
        &self,
        block: &Block,
        h: &Array2<f32>,
        layer_idx: usize,
        allowed: Option<&Array2<bool>>,
        opts: &RunOptions,
        want_trace: bool,
    ) -> (Array2<f32>, Vec<Array2<f32>>, Option<Vec<HeadTrace>>) {
        let a = &block.attention;
        let threads = threads_for(h.nrows(), opts);
        // q, k and v side by side, computed per row block in one pass over the threads.
        let (q_width, kv_width) = (a.wq.ncols(), a.wk.ncols());
        let mut qkv = Array2::<f32>::zeros((h.nrows(), q_width + 2 * kv_width));
        par_rows(&mut qkv, threads, &|row0, mut block| {
            let rows = h.slice(s![row0..row0 + block.nrows(), ..]);
            let parts = [
                (&a.wq, &a.bq, 0),
                (&a.wk, &a.bk, q_width),
                (&a.wv, &a.bv, q_width + kv_width),
            ];
            for (w, b, col0) in parts {
                let mut dst = block.slice_mut(s![.., col0..col0 + w.ncols()]);
                general_mat_mul(1.0, &rows, w, 0.0, &mut dst);
                if let Some(b) = b {
                    dst += b;
                }
            }
        });
        let (mut q, rest) = qkv.view_mut().split_at(Axis(1), q_width);
        let (mut k, v) = rest.split_at(Axis(1), kv_width);
        let dh = self.d_head;
        let freqs = match self.position {
            AttentionPosition::Rope { theta } => Some(rope_frequencies(dh, theta)),
            AttentionPosition::RopeLlama3 { theta, scaling } => {
                Some(llama3_frequencies(dh, theta, scaling))
            }
            AttentionPosition::None | AttentionPosition::Alibi => None,
        };
        if let Some(freqs) = freqs {
            for head in 0..self.heads {
                apply_rope(q.slice_mut(s![.., head * dh..(head + 1) * dh]), &freqs);
            }
            for head in 0..self.kv_heads {
                apply_rope(k.slice_mut(s![.., head * dh..(head + 1) * dh]), &freqs);
            }
        }
        let slopes = match self.position {
            AttentionPosition::Alibi => alibi_slopes(self.heads),
            _ => Vec::new(),
        };
        let group = self.heads / self.kv_heads;
        let factor = opts.scale.factor(dh);
        let head_fn = |head_idx: usize| -> HeadResult {
            let kv = head_idx / group;
            let keep = opts
                .dims
                .iter()
                .find(|d| d.layer_idx == layer_idx && d.head_idx == head_idx)
                .map(|d| d.dims.as_slice());
            let q_h = q.slice(s![.., head_idx * dh..(head_idx + 1) * dh]);
            let k_h = k.slice(s![.., kv * dh..(kv + 1) * dh]);
            let v_h = v.slice(s![.., kv * dh..(kv + 1) * dh]);
            run_head(
                q_h,
                k_h,
                v_h,
                HeadParams {
                    factor,
                    keep,
                    alibi_slope: slopes.get(head_idx).copied(),
                    allowed,
                    want_trace,
                },
            )
        };
        let results = parallel_map(self.heads, threads, &head_fn);

        let mut concat = Array2::<f32>::zeros((h.nrows(), self.heads * dh));
        let mut probs = Vec::with_capacity(self.heads);
        let mut traces = want_trace.then(Vec::new);
        for (head_idx, r) in results.into_iter().enumerate() {
            if !opts.ablated_heads.contains(&(layer_idx, head_idx)) {
                concat
                    .slice_mut(s![.., head_idx * dh..(head_idx + 1) * dh])
                    .assign(&r.output);
            }
            probs.push(r.probs);
            if let (Some(traces), Some(t)) = (traces.as_mut(), r.trace) {
                traces.push(t);
            }
        }
        let out = linear(&concat, &a.wo, a.bo.as_ref(), threads);
        (out, probs, traces)
    }
}

struct HeadParams<'a> {
    factor: f32,
    keep: Option<&'a [usize]>,
    alibi_slope: Option<f32>,
    allowed: Option<&'a Array2<bool>>,
    want_trace: bool,
}

fn run_head(
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
    let mut scores = q_scaled.dot(&k_view.t());
    if let Some(slope) = p.alibi_slope {
        for ((query_idx, key_idx), s) in scores.indexed_iter_mut() {
            *s -= slope * query_idx.abs_diff(key_idx) as f32;
        }
    }
    let masked_scores = p.want_trace.then(|| {
        let mut m = scores.clone();
        if let Some(allowed) = p.allowed {
            ndarray::Zip::from(&mut m).and(allowed).for_each(|s, &ok| {
                if !ok {
                    *s = f32::NEG_INFINITY;
                }
            });
        }
        m
    });
    for (query_idx, mut row) in scores.axis_iter_mut(Axis(0)).enumerate() {
        let allowed_row = p.allowed.and_then(|a| a.row(query_idx).to_slice());
        if let Some(row) = row.as_slice_mut() {
            softmax_row(row, allowed_row);
        }
    }
    let output = scores.dot(&v_h);
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

/// Maps `f` over 0..count on up to `threads` named scoped threads, keeping the order.
fn parallel_map<T: Send>(count: usize, threads: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    let threads = threads.clamp(1, count.max(1));
    if threads == 1 {
        return (0..count).map(f).collect();
    }
    let mut slots: Vec<Option<T>> = (0..count).map(|_| None).collect();
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for t in 1..threads {
            let spawned = std::thread::Builder::new()
                .name(format!("attn-head-{t}"))
                .spawn_scoped(scope, move || {
                    (t..count)
                        .step_by(threads)
                        .map(|i| (i, f(i)))
                        .collect::<Vec<_>>()
                });
            handles.push((t, spawned));
        }
        // The calling thread takes the first share; any share whose thread failed to start is
        // also done here, so a refused spawn only costs speed.
        let mut done: Vec<(usize, T)> = (0..count).step_by(threads).map(|i| (i, f(i))).collect();
        for (t, handle) in handles {
            match handle.map(|h| h.join()) {
                Ok(Ok(part)) => done.extend(part),
                Ok(Err(panic)) => std::panic::resume_unwind(panic),
                Err(_) => done.extend((t..count).step_by(threads).map(|i| (i, f(i)))),
            }
        }
        for (i, value) in done {
            slots[i] = Some(value);
        }
    });
    slots.into_iter().flatten().collect()
}

/// The mask a model really applies: the user's spec, plus `causal` for causal models.
pub fn effective_mask(mask: &MaskSpec, causal: bool) -> MaskSpec {
    let mut mask = mask.clone();
    if causal && !mask.is_causal() {
        mask.parts.push(MaskPart::Causal);
    }
    mask
}
