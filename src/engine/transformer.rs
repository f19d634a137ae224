//! A generic transformer stack that records every head's attention.
//!
//! Models (the demo, BERT, GPT-2, Llama) build a [`Transformer`] from their weights and hand it
//! embeddings; this module runs the blocks and returns the probabilities of every layer and head.
//! Nothing is dropped: capturing attention is the point.

use super::gemm::PackedMatrix;
use super::math::{layer_norm_row, rms_norm_row};
use super::options::RunOptions;
use super::position::{
    AttentionPosition, alibi_slopes, apply_rope, llama3_frequencies, rope_frequencies,
};
use super::run::{AttentionMaps, HeadTrace, Trace};
use super::simd;
use super::{EngineError, MaskPart, MaskSpec};
use ndarray::{Array1, Array2, ArrayView2, ArrayViewMut2, Axis, s};
use std::sync::{Arc, OnceLock};

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
        self.apply_rows(x.view_mut());
    }

    /// [`Self::apply`] on a view (a block of rows).
    pub fn apply_rows(&self, mut x: ArrayViewMut2<'_, f32>) {
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
    fn forward(
        &self,
        x: &Array2<f32>,
        packed: &PackedBlock,
        epilogue: Epilogue<'_>,
        threads: usize,
    ) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((x.nrows(), self.w_out.ncols()));
        par_rows(&mut out, threads, &|row0, mut block| {
            let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
            // Scratch kept per pool thread: fresh megabyte arrays on every call cost page faults.
            let (mut hidden_buf, mut gate_buf) = MLP_SCRATCH.take();
            let size = rows.nrows() * self.w_in.ncols();
            if hidden_buf.len() < size {
                hidden_buf.resize(size, 0.0);
            }
            let h = &mut hidden_buf[..size];
            let mut hidden = scratch_view(h, rows.nrows(), self.w_in.ncols());
            simd::matmul(rows, &packed.w_in, hidden.view_mut(), false);
            if let Some(b) = &self.b_in {
                hidden += b;
            }
            match &packed.w_gate {
                Some(w_gate) => {
                    if gate_buf.len() < size {
                        gate_buf.resize(size, 0.0);
                    }
                    let g = &mut gate_buf[..size];
                    simd::matmul(
                        rows,
                        w_gate,
                        scratch_view(g, rows.nrows(), self.w_in.ncols()),
                        false,
                    );
                    simd::activate_gated(
                        &mut hidden_buf[..size],
                        &gate_buf[..size],
                        self.activation,
                    );
                }
                None => simd::activate(&mut hidden_buf[..size], self.activation),
            }
            let hidden = scratch_view(&mut hidden_buf, rows.nrows(), self.w_in.ncols());
            simd::matmul(hidden.view(), &packed.w_out, block.view_mut(), false);
            if let Some(b) = &self.b_out {
                block += b;
            }
            epilogue.apply(row0, block);
            MLP_SCRATCH.set((hidden_buf, gate_buf));
        });
        out
    }
}

thread_local! {
    /// The MLP's hidden and gate activations, reused between calls on the same thread.
    static MLP_SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The first `rows · cols` values as a `[rows, cols]` matrix.
fn scratch_view(values: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), &mut values[..rows * cols])
        .unwrap_or_else(|_| unreachable!("the length is rows · cols"))
}

/// What a sublayer does to its output rows before returning them: add the residual stream,
/// then (post-LN) normalise. Done inside the row blocks, so it runs in parallel.
#[derive(Clone, Copy)]
struct Epilogue<'a> {
    /// The residual stream, shape [token, d_model].
    residual: &'a Array2<f32>,
    /// A norm applied after the residual add (post-LN models).
    norm: Option<&'a Norm>,
}

impl Epilogue<'_> {
    fn apply(&self, row0: usize, mut block: ArrayViewMut2<'_, f32>) {
        block += &self.residual.slice(s![row0..row0 + block.nrows(), ..]);
        if let Some(norm) = self.norm {
            norm.apply_rows(block);
        }
    }
}

/// x · w + b, then the epilogue, with row blocks of x on `threads` threads.
/// Shapes: x [rows, in], w [in, out].
fn linear(
    x: &Array2<f32>,
    w: &PackedMatrix,
    b: Option<&Array1<f32>>,
    epilogue: Epilogue<'_>,
    threads: usize,
) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((x.nrows(), w.cols()));
    par_rows(&mut out, threads, &|row0, mut block| {
        let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, w, block.view_mut(), false);
        if let Some(b) = b {
            block += b;
        }
        epilogue.apply(row0, block);
    });
    out
}

/// A copy of `x` with every row normalised, in row blocks on `threads` threads.
fn normalized(x: &Array2<f32>, norm: &Norm, threads: usize) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros(x.raw_dim());
    par_rows(&mut out, threads, &|row0, mut block| {
        let rows = block.nrows();
        block.assign(&x.slice(s![row0..row0 + rows, ..]));
        norm.apply_rows(block);
    });
    out
}

/// Calls `f(first_row, block)` on disjoint row blocks of `out`, one per thread, on the engine's
/// thread pool. Blocks are whole multiples of the matrix kernel's row strip.
fn par_rows(
    out: &mut Array2<f32>,
    threads: usize,
    f: &(dyn Fn(usize, ArrayViewMut2<'_, f32>) + Sync),
) {
    let rows = out.nrows();
    let threads = threads.clamp(1, rows.div_ceil(super::gemm::MR).max(1));
    let pool = if threads > 1 { pool() } else { None };
    let Some(pool) = pool else {
        f(0, out.view_mut());
        return;
    };
    let chunk = rows.div_ceil(threads).next_multiple_of(super::gemm::MR);
    pool.scope(|scope| {
        for (i, block) in out.axis_chunks_iter_mut(Axis(0), chunk).enumerate() {
            scope.spawn(move |_| f(i * chunk, block));
        }
    });
}

/// The engine's worker threads (`attn-pool-N`), started on first use; `None` if the system
/// refuses them, and then everything runs on the calling thread.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("attn-pool-{i}"))
            .build()
            .ok()
    })
    .as_ref()
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
    /// The weights packed for the matrix kernel, built by the first forward pass. The weights
    /// must not change after that; edit a clone instead (a clone starts with an empty cache).
    pub packed: PackCache,
}

/// The packed copies of a [`Transformer`]'s weight matrices; see [`Transformer::packed`].
#[derive(Default)]
pub struct PackCache(OnceLock<Arc<Vec<PackedBlock>>>);

impl Clone for PackCache {
    fn clone(&self) -> Self {
        // The clone's weights may be edited, so it packs its own.
        Self::default()
    }
}

impl PartialEq for PackCache {
    /// A cache never makes two transformers differ.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for PackCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "PackCache(packed)"
        } else {
            "PackCache(empty)"
        })
    }
}

/// One block's weight matrices, packed.
pub struct PackedBlock {
    /// wq, wk and wv side by side: [d_model, (heads + 2 · kv_heads) · d_head].
    qkv: PackedMatrix,
    wo: PackedMatrix,
    w_in: PackedMatrix,
    w_gate: Option<PackedMatrix>,
    w_out: PackedMatrix,
}

impl PackedBlock {
    fn new(block: &Block) -> Self {
        let a = &block.attention;
        let qkv = ndarray::concatenate(Axis(1), &[a.wq.view(), a.wk.view(), a.wv.view()])
            .unwrap_or_else(|_| Array2::zeros((0, 0)));
        Self {
            qkv: PackedMatrix::pack(qkv.view()),
            wo: PackedMatrix::pack(a.wo.view()),
            w_in: PackedMatrix::pack(block.mlp.w_in.view()),
            w_gate: block
                .mlp
                .w_gate
                .as_ref()
                .map(|w| PackedMatrix::pack(w.view())),
            w_out: PackedMatrix::pack(block.mlp.w_out.view()),
        }
    }
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
/// Query rows per block of [`run_head`]: a multiple of the matrix kernel's strip whose scores
/// (at 512 keys, 96 KB) stay in the L2 cache between the product, the softmax and the sum.
const ATTENTION_BLOCK_ROWS: usize = 48;
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
        // Cheap shape checks, so that the packed products below cannot be handed bad shapes.
        self.validate()?;
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
        let packed = self.packed();
        for ((layer_idx, block), packed) in self.blocks.iter().enumerate().zip(packed.iter()) {
            let want_trace = opts.trace_layer == Some(layer_idx);
            let normed;
            let attn_input = match self.placement {
                NormPlacement::Pre => {
                    normed = normalized(&x, &block.attention_norm, threads);
                    &normed
                }
                NormPlacement::Post | NormPlacement::None => &x,
            };
            // The sublayers return their output with the residual added (and, post-LN, normed).
            let (new_x, probs, head_traces) = self.attention(
                block,
                packed,
                attn_input,
                Epilogue {
                    residual: &x,
                    norm: (self.placement == NormPlacement::Post).then_some(&block.attention_norm),
                },
                layer_idx,
                allowed.as_ref(),
                opts,
                want_trace,
            );
            all_probs.extend(probs);
            if let Some(heads) = head_traces {
                trace = Some(Trace {
                    layer_idx,
                    input: attn_input.clone(),
                    heads,
                });
            }
            x = new_x;
            let epilogue = Epilogue {
                residual: &x,
                norm: (self.placement == NormPlacement::Post).then_some(&block.mlp_norm),
            };
            let new_x = match self.placement {
                NormPlacement::Pre => {
                    let h = normalized(&x, &block.mlp_norm, threads);
                    block.mlp.forward(&h, packed, epilogue, threads)
                }
                NormPlacement::Post | NormPlacement::None => {
                    block.mlp.forward(&x, packed, epilogue, threads)
                }
            };
            x = new_x;
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

    /// The weights packed for the matrix kernel: built once (in parallel over the blocks) and
    /// kept. Call it early to move the cost out of the first forward pass.
    pub fn packed(&self) -> Arc<Vec<PackedBlock>> {
        self.packed
            .0
            .get_or_init(|| {
                Arc::new(parallel_map(self.blocks.len(), MAX_THREADS, &|i| {
                    PackedBlock::new(&self.blocks[i])
                }))
            })
            .clone()
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

    /// One attention sublayer: returns its output after the epilogue (shape [token, d_model]), each head's
    /// probabilities and, when asked, each head's trace.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        block: &Block,
        packed: &PackedBlock,
        h: &Array2<f32>,
        epilogue: Epilogue<'_>,
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
            simd::matmul(rows, &packed.qkv, block.view_mut(), false);
            let biases = [(&a.bq, 0), (&a.bk, q_width), (&a.bv, q_width + kv_width)];
            for (b, col0) in biases {
                if let Some(b) = b {
                    let mut dst = block.slice_mut(s![.., col0..col0 + b.len()]);
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
        let out = linear(&concat, &packed.wo, a.bo.as_ref(), epilogue, threads);
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
    let k_packed = PackedMatrix::pack_transposed(k_view);
    let v_packed = PackedMatrix::pack(v_h);
    let mut scores = Array2::<f32>::zeros((q_scaled.nrows(), k_view.nrows()));
    let mut output = Array2::<f32>::zeros((q_scaled.nrows(), v_h.ncols()));
    let mut masked_scores = None;
    // Scores, softmax and the weighted sum run block by block of query rows, so that each
    // block of probabilities is still in cache when it is used (the whole map is a megabyte
    // at 512 tokens). A trace needs the whole masked score matrix, so it takes one block.
    let block_rows = if p.want_trace {
        scores.nrows().max(1)
    } else {
        ATTENTION_BLOCK_ROWS
    };
    for (block_idx, (mut block, out_block)) in scores
        .axis_chunks_iter_mut(Axis(0), block_rows)
        .zip(output.axis_chunks_iter_mut(Axis(0), block_rows))
        .enumerate()
    {
        let row0 = block_idx * block_rows;
        let rows = row0..row0 + block.nrows();
        simd::matmul(
            q_scaled.slice(s![rows.clone(), ..]),
            &k_packed,
            block.view_mut(),
            false,
        );
        if let Some(slope) = p.alibi_slope {
            for ((i, key_idx), s) in block.indexed_iter_mut() {
                *s -= slope * (row0 + i).abs_diff(key_idx) as f32;
            }
        }
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
        simd::softmax_rows(block.view_mut(), allowed);
        simd::matmul(block.view(), &v_packed, out_block, false);
    }
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

/// Maps `f` over 0..count on the engine's thread pool (when `threads` > 1), keeping the order.
fn parallel_map<T: Send>(count: usize, threads: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    use rayon::prelude::*;
    match pool() {
        Some(pool) if threads > 1 && count > 1 => {
            pool.install(|| (0..count).into_par_iter().map(f).collect())
        }
        _ => (0..count).map(f).collect(),
    }
}

/// The mask a model really applies: the user's spec, plus `causal` for causal models.
pub fn effective_mask(mask: &MaskSpec, causal: bool) -> MaskSpec {
    let mut mask = mask.clone();
    if causal && !mask.is_causal() {
        mask.parts.push(MaskPart::Causal);
    }
    mask
}
