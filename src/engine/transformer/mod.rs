//! A generic transformer stack that records every head's attention.
//!
//! Models (the demo, BERT, GPT-2, Llama) build a [`Transformer`] from their weights and hand it
//! embeddings; this module runs the blocks and returns the probabilities of every layer and head.
//! Nothing is dropped: capturing attention is the point.
//!
//! [`Transformer::new`] checks every weight's shape and packs the matrices once; the weights
//! cannot be reached mutably afterwards, so the packed copies always match them.

mod checks;

use super::EngineError;
use super::attention::{HeadShape, Hooks};
use super::block::{Block, PackedBlock, TransposedBlock};
use super::intervene::{Captured, Interventions, Resume, Site};
use super::layers::{Epilogue, Norm, NormPlacement, normalized};
use super::mask::{AppliedMask, ArchitectureMask};
use super::memory;
use super::options::{Mistake, RunOptions};
use super::parallel::{
    MAX_THREADS, PARALLEL_MIN_TOKENS, on_every_member, on_pool, parallel_map, threads_for,
};
use super::position::AttentionPosition;
use super::run::{AttentionMaps, HeadMap, PositionKind, Trace};
use ndarray::{Array2, Axis, s};
use std::sync::Arc;

/// Short passes [`Transformer::warm_up`] runs: after five, a fresh process's next passes no
/// longer got faster (see there).
const WARM_UP_PASSES: usize = 5;

/// Everything a [`Transformer`] is built from; [`Transformer::new`] checks it and packs it.
#[derive(Clone, Debug, PartialEq)]
pub struct TransformerParts {
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
    /// Mistral's sliding window: a query sees the W most recent keys, itself included.
    pub sliding_window: Option<usize>,
    /// The blocks, first to last.
    pub blocks: Vec<Block>,
    /// A norm after the last block (GPT-2's ln_f, Llama's norm), applied to the hidden output.
    pub final_norm: Option<Norm>,
}

/// A stack of blocks plus how attention sees positions, with its weights checked and packed.
///
/// Built by [`Transformer::new`]; read-only from then on. To change weights, take the parts
/// back with [`Transformer::into_parts`] (or clone them from [`Transformer::parts`]), edit them
/// and build again.
#[derive(Clone)]
pub struct Transformer {
    parts: TransformerParts,
    /// The weights packed for the matrix kernel, one entry per block; shared by clones.
    packed: Arc<Vec<PackedBlock>>,
    /// Their transposes, for the backward pass: packed on its first use, shared by clones.
    transposed: Arc<std::sync::OnceLock<Vec<TransposedBlock>>>,
}

impl PartialEq for Transformer {
    /// Two transformers are equal when their weights are (the packed copies follow from them).
    fn eq(&self, other: &Self) -> bool {
        self.parts == other.parts
    }
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

impl Transformer {
    /// Checks that every weight has the shape the dimensions promise (q/k/v/o and their
    /// biases, the MLP's matrices, gate and biases, every norm including the final one), then
    /// packs the matrices for the kernel (in parallel over the blocks).
    pub fn new(parts: TransformerParts) -> Result<Self, EngineError> {
        Self::validate(&parts)?;
        let packed = Arc::new(parallel_map(parts.blocks.len(), MAX_THREADS, &|i| {
            PackedBlock::new(&parts.blocks[i])
        }));
        Ok(Self {
            parts,
            packed,
            transposed: Arc::default(),
        })
    }

    /// The packed weights, one entry per block (for the backward pass).
    pub(super) fn packed_blocks(&self) -> &[PackedBlock] {
        &self.packed
    }

    /// Runs [`WARM_UP_PASSES`] short forward passes and drops them: `PARALLEL_MIN_TOKENS` (32)
    /// rows of a constant embedding, the shortest input the threads share. The first passes in
    /// a process cost more than later ones whatever their length (MiniLM, Zen 5, 128 tokens:
    /// 9.7–17.7 ms, median 13.3, in fresh processes against 8.9 warm; after one warm-up pass of
    /// about 3 ms the first 128-token pass took 9.4–12.7 ms, median 9.6). One pass was not
    /// enough at 32 tokens on the Xeon of session 16: in fresh processes the next passes still
    /// got faster for three or four more (5.5, 5.2, 5.1, 4.9, 4.9 ms), and the first 32-token
    /// forward took a median 1.10 times the process's warm one after one warm-up pass, 1.03
    /// after three and 0.96 after six. A one-shot process (the CLI) calls this as part of its
    /// load, where it is paid once (about 20 ms for MiniLM) and reported.
    pub fn warm_up(&self) {
        let len = PARALLEL_MIN_TOKENS;
        let x = Array2::from_elem((len, self.parts.d_model), 0.01);
        for _ in 0..WARM_UP_PASSES {
            // Nothing to report: the passes only warm the threads, caches and scratch buffers.
            let _ = self.forward(
                x.clone(),
                &vec![false; len],
                &RunOptions::default(),
                &mut |_| true,
            );
        }
    }

    /// Faults in the memory a forward over `tokens` tokens will allocate, on the threads that
    /// will allocate it ([`memory::fault_in`]): a one-shot process's first forward then finds
    /// its maps' pages mapped, as every later forward in a process does. Without it the first
    /// MiniLM forward at 512 tokens faults in 72 MB of maps and takes about 1.35 times as long
    /// as a warm one. Does nothing unless the process keeps freed memory
    /// ([`memory::keep_freed_memory`]). Returns the bytes touched, on every thread together.
    pub fn reserve(&self, tokens: usize) -> usize {
        const F32: usize = std::mem::size_of::<f32>();
        let p = &self.parts;
        let d_ff = p
            .blocks
            .iter()
            .map(|b| b.mlp.w_in.ncols())
            .max()
            .unwrap_or(0);
        let maps = p.blocks.len() * p.heads * tokens * tokens * F32;
        // One layer's activations, generously: q, k and v, the MLP's hidden rows (two when
        // gated), the residual, the norm and the sublayers' outputs.
        let qkv = (p.heads + 2 * p.kv_heads) * p.d_head;
        let activations = tokens * (qkv + 2 * d_ff + 4 * p.d_model) * F32;
        let threads = threads_for(tokens, &RunOptions::default());
        if threads <= 1 {
            return memory::fault_in(maps + activations);
        }
        // The heads split about evenly between the team's threads, and each thread allocates
        // about half of a layer's activations. MiniLM at 512 tokens on two threads:
        // this touches 87 MB in about 15 ms, after which the whole process takes only about
        // 1,100 more page faults than without it (where the forward alone took about 20,000);
        // a quarter more took longer and saved no more.
        let per_thread = maps / threads + activations / 2;
        let touched = std::sync::atomic::AtomicUsize::new(0);
        on_every_member(threads, &|| {
            let bytes = memory::fault_in(per_thread);
            touched.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        });
        touched.into_inner()
    }

    /// Packs the transposed weights the backward pass reads, now rather than inside the first
    /// gradient (a one-shot process reports it with the load).
    pub fn prepare_backward(&self) {
        self.transposed_blocks();
    }

    /// The transposed weights, one entry per block, packed on first use (backward pass only).
    pub(super) fn transposed_blocks(&self) -> &[TransposedBlock] {
        self.transposed.get_or_init(|| {
            parallel_map(self.parts.blocks.len(), MAX_THREADS, &|i| {
                TransposedBlock::new(&self.parts.blocks[i])
            })
        })
    }

    /// The weights and dimensions this transformer was built from.
    pub fn parts(&self) -> &TransformerParts {
        &self.parts
    }

    /// Gives the parts back (to edit weights and build again with [`Self::new`]).
    pub fn into_parts(self) -> TransformerParts {
        self.parts
    }

    /// Width of the residual stream.
    pub fn d_model(&self) -> usize {
        self.parts.d_model
    }

    /// Query heads per layer.
    pub fn heads(&self) -> usize {
        self.parts.heads
    }

    /// Key/value heads per layer.
    pub fn kv_heads(&self) -> usize {
        self.parts.kv_heads
    }

    /// Width of one head.
    pub fn d_head(&self) -> usize {
        self.parts.d_head
    }

    /// Where the norms sit.
    pub fn placement(&self) -> NormPlacement {
        self.parts.placement
    }

    /// How attention sees positions.
    pub fn position(&self) -> AttentionPosition {
        self.parts.position
    }

    /// True for models that are causal by construction.
    pub fn causal(&self) -> bool {
        self.parts.causal
    }

    /// The bytes of the block weights the kernel packs (q/k/v/o and the MLP's matrices, f32):
    /// what the backward pass adds when it packs their transposes on first use.
    pub fn packed_weight_bytes(&self) -> u64 {
        self.parts
            .blocks
            .iter()
            .map(|b| {
                let a = &b.attention;
                let m = &b.mlp;
                (a.wq.len()
                    + a.wk.len()
                    + a.wv.len()
                    + a.wo.len()
                    + m.w_in.len()
                    + m.w_out.len()
                    + m.w_gate.as_ref().map_or(0, |g| g.len())) as u64
            })
            .sum::<u64>()
            .saturating_mul(4)
    }

    /// What the architecture adds to every run's mask.
    pub fn architecture_mask(&self) -> ArchitectureMask {
        ArchitectureMask {
            causal: self.parts.causal,
            sliding_window: self.parts.sliding_window,
            heads: self.parts.heads,
        }
    }

    /// The mask a run of `len` tokens under `opts` applies: see [`AppliedMask::decide`], the one
    /// place it is decided. [`Self::forward`] returns it with the maps.
    pub fn applied_mask(&self, opts: &RunOptions, len: usize) -> AppliedMask {
        AppliedMask::decide(&opts.mask, self.architecture_mask(), &opts.mistakes, len)
    }

    /// The blocks, first to last.
    pub fn blocks(&self) -> &[Block] {
        &self.parts.blocks
    }

    /// The norm after the last block, if any.
    pub fn final_norm(&self) -> Option<&Norm> {
        self.parts.final_norm.as_ref()
    }

    /// The head layout a run uses: the model's, with positions switched off under
    /// [`Mistake::NoPositions`].
    pub(super) fn head_shape(&self, opts: &RunOptions) -> HeadShape {
        HeadShape {
            heads: self.parts.heads,
            kv_heads: self.parts.kv_heads,
            d_head: self.parts.d_head,
            position: if opts.has(Mistake::NoPositions) {
                AttentionPosition::None
            } else {
                self.parts.position
            },
        }
    }

    /// Runs every block over the embeddings `x` (shape [token, d_model]).
    ///
    /// `is_pad[t]` marks padding tokens for the `padding` mask. `progress` is called after each
    /// layer with the number of layers done; returning false cancels the run.
    pub fn forward(
        &self,
        x: Array2<f32>,
        is_pad: &[bool],
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<ForwardOutput, EngineError> {
        let start = Resume::embeddings(x);
        let (out, _) =
            self.forward_with(start, is_pad, opts, &Interventions::default(), progress)?;
        Ok(out)
    }

    /// [`Self::forward`] from `start` (block 0 on the embeddings, or a later block on a stored
    /// residual, the earlier blocks' maps taken from `start`), capturing and overriding the
    /// sites `iv` names. Only blocks from `start.layer` on run; `progress` counts every block,
    /// the skipped ones included. With nothing to capture or override this is the plain
    /// forward pass, operation for operation.
    pub fn forward_with(
        &self,
        start: Resume,
        is_pad: &[bool],
        opts: &RunOptions,
        iv: &Interventions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(ForwardOutput, Captured), EngineError> {
        let Resume {
            layer: first_layer,
            resid: mut x,
            maps: earlier_maps,
            layer_norms: earlier_norms,
            frozen,
        } = start;
        let len = x.nrows();
        if len == 0 {
            return Err(EngineError::NoTokens);
        }
        if x.ncols() != self.parts.d_model {
            return Err(EngineError::BadWeights(format!(
                "embeddings have width {}, expected {}",
                x.ncols(),
                self.parts.d_model
            )));
        }
        self.check_options(opts)?;
        let layers = self.parts.blocks.len();
        let heads = self.parts.heads;
        self.check_resume(first_layer, &earlier_maps, &earlier_norms, opts, iv)?;
        iv.check(layers, heads, self.parts.d_head, self.parts.d_model, len)
            .map_err(EngineError::OutOfRange)?;
        let mask = self.applied_mask(opts, len);
        let allowed = mask.allowed(len, is_pad)?;
        let fully_masked_queries = match &allowed {
            Some(a) => a
                .axis_iter(Axis(0))
                .enumerate()
                .filter(|(_, row)| !row.iter().any(|&ok| ok))
                .map(|(q, _)| q)
                .collect(),
            None => Vec::new(),
        };

        // With frozen rows, `x` holds the rows from `from` on and every block reads the rows
        // before it from the frozen pass.
        let from = match &frozen {
            Some(f) => {
                self.check_frozen_shapes(f, len)
                    .and_then(|()| {
                        self.check_frozen(f.from, len, allowed.as_ref(), first_layer, opts, iv)
                    })
                    .map_err(EngineError::Unsupported)?;
                x = x.slice(s![f.from.., ..]).to_owned();
                f.from
            }
            None => 0,
        };
        let query_allowed = match (&allowed, from) {
            (Some(a), 1..) => Some(a.slice(s![from.., ..]).to_owned()),
            _ => None,
        };
        let query_allowed = query_allowed.as_ref().or(allowed.as_ref());
        let with_frozen = |x: &Array2<f32>, layer_idx: usize| -> Option<Array2<f32>> {
            let f = frozen.as_ref()?;
            let prefix = f.resid[layer_idx].slice(s![..from, ..]);
            ndarray::concatenate(Axis(0), &[prefix, x.view()]).ok()
        };

        let mut captured = Captured::default();
        let mut hooks = Hooks {
            interventions: iv,
            captured: &mut captured,
            from,
            frozen: frozen.as_ref(),
        };
        let mut all_probs: Vec<HeadMap> = Vec::with_capacity(layers * heads);
        if opts.keep_maps {
            all_probs.extend(earlier_maps);
        }
        let mut trace = None;
        let threads = threads_for(len, opts);
        let shape = self.head_shape(opts);
        // Without norms (the mistake) every block runs as if it had none.
        let placement = if opts.has(Mistake::NoLayerNorm) {
            NormPlacement::None
        } else {
            self.parts.placement
        };
        let position_kind = match shape.position {
            AttentionPosition::None => PositionKind::None,
            AttentionPosition::Alibi => PositionKind::Alibi,
            AttentionPosition::Rope { .. } | AttentionPosition::RopeLlama3 { .. } => {
                PositionKind::Rope
            }
        };
        let mut layer_norms = opts.keep_layer_norms.then_some(earlier_norms);
        // Every block runs on one team of threads (see `parallel::on_pool`): its products and
        // heads split their work over it, and this thread leads it, hearing about each block.
        on_pool(threads, || -> Result<(), EngineError> {
            for ((layer_idx, block), packed) in self
                .parts
                .blocks
                .iter()
                .enumerate()
                .zip(self.packed.iter())
                .skip(first_layer)
            {
                if !iv.is_empty() {
                    hooks.visit(Site::Resid(layer_idx), &mut x);
                }
                {
                    let want_trace = opts.trace_layer == Some(layer_idx);
                    let whole = with_frozen(&x, layer_idx);
                    let whole = whole.as_ref().unwrap_or(&x);
                    let normed;
                    let attn_input = match placement {
                        NormPlacement::Pre => {
                            normed = normalized(whole, &block.attention_norm, threads);
                            &normed
                        }
                        NormPlacement::Post | NormPlacement::None => whole,
                    };
                    // The sublayers return their output with the residual added (and, post-LN, normed).
                    let (new_x, probs, head_traces) = block.attention.forward(
                        &packed.attention,
                        &shape,
                        attn_input,
                        Epilogue {
                            residual: Some(&x),
                            norm: (placement == NormPlacement::Post)
                                .then_some(&block.attention_norm),
                        },
                        layer_idx,
                        query_allowed,
                        opts,
                        want_trace,
                        &mut hooks,
                    );
                    check_finite(&new_x, layer_idx, "attention")?;
                    if opts.keep_maps {
                        all_probs.extend(probs.into_iter().map(Arc::new));
                    }
                    if let Some(heads) = head_traces {
                        trace = Some(Trace {
                            layer_idx,
                            position: position_kind,
                            input: attn_input.clone(),
                            heads,
                        });
                    }
                    x = new_x;
                    let epilogue = Epilogue {
                        residual: Some(&x),
                        norm: (placement == NormPlacement::Post).then_some(&block.mlp_norm),
                    };
                    let mlp_input = match placement {
                        NormPlacement::Pre => Some(normalized(&x, &block.mlp_norm, threads)),
                        NormPlacement::Post | NormPlacement::None => None,
                    };
                    let mlp_input = mlp_input.as_ref().unwrap_or(&x);
                    let site = Site::Mlp(layer_idx);
                    let new_x = if iv.touches(site) {
                        // The MLP alone, then the residual and the norm (the fused epilogue's order).
                        let mut out =
                            block
                                .mlp
                                .forward(mlp_input, &packed.mlp, Epilogue::NONE, threads);
                        hooks.visit(site, &mut out);
                        epilogue.apply(0, out.view_mut());
                        out
                    } else {
                        block.mlp.forward(mlp_input, &packed.mlp, epilogue, threads)
                    };
                    check_finite(&new_x, layer_idx, "MLP")?;
                    x = new_x;
                }
                if let Some(norms) = layer_norms.as_mut() {
                    norms.push(mean_row_norm(&x));
                }
                if !progress(layer_idx + 1) {
                    return Err(EngineError::Cancelled);
                }
            }
            Ok(())
        })?;
        if !iv.is_empty() {
            hooks.visit(Site::Resid(layers), &mut x);
        }
        if let Some(whole) = with_frozen(&x, layers) {
            x = whole;
        }
        if let Some(norm) = &self.parts.final_norm
            && !opts.has(Mistake::NoLayerNorm)
        {
            norm.apply(&mut x);
        }
        // Without kept maps: zero layers of them.
        let map_layers = if opts.keep_maps { layers } else { 0 };
        let maps = AttentionMaps::from_shared(map_layers, heads, len, all_probs)
            .ok_or_else(|| EngineError::BadWeights("head maps have inconsistent shapes".into()))?;
        Ok((
            ForwardOutput {
                maps,
                mask,
                fully_masked_queries,
                trace,
                hidden: x,
                layer_norms,
            },
            captured,
        ))
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
        Ok(Self::attention_run(tokens, out, opts))
    }

    /// [`Self::run`] from `start` with the interventions `iv` (see [`Self::forward_with`]).
    pub fn run_with(
        &self,
        tokens: &[crate::tokenize::Token],
        start: Resume,
        opts: &RunOptions,
        iv: &Interventions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(super::AttentionRun, Captured), EngineError> {
        let is_pad: Vec<bool> = tokens.iter().map(crate::tokenize::Token::is_pad).collect();
        let (out, captured) = self.forward_with(start, &is_pad, opts, iv, progress)?;
        Ok((Self::attention_run(tokens, out, opts), captured))
    }

    fn attention_run(
        tokens: &[crate::tokenize::Token],
        out: ForwardOutput,
        opts: &RunOptions,
    ) -> super::AttentionRun {
        super::AttentionRun {
            tokens: tokens.to_vec(),
            maps: out.maps,
            mask: out.mask,
            fully_masked_queries: out.fully_masked_queries,
            trace: out.trace,
            hidden: opts.keep_hidden.then_some(out.hidden),
            layer_norms: out.layer_norms,
        }
    }
}

/// What [`Transformer::forward`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct ForwardOutput {
    /// Every layer's and head's probabilities.
    pub maps: AttentionMaps,
    /// The mask the pass applied.
    pub mask: AppliedMask,
    /// Query rows the mask left empty.
    pub fully_masked_queries: Vec<usize>,
    /// The traced layer, when asked for.
    pub trace: Option<Trace>,
    /// Final hidden states. Shape: [token, d_model].
    pub hidden: Array2<f32>,
    /// With `keep_layer_norms`, the mean row norm of the residual stream after each block.
    pub layer_norms: Option<Vec<f32>>,
}

/// The mean L2 norm of the rows of `x` (tokens' residual vectors), summed in f64.
fn mean_row_norm(x: &Array2<f32>) -> f32 {
    let rows = x.nrows().max(1) as f64;
    let total: f64 = x
        .rows()
        .into_iter()
        .map(|r| {
            r.iter()
                .map(|&v| f64::from(v) * f64::from(v))
                .sum::<f64>()
                .sqrt()
        })
        .sum();
    (total / rows) as f32
}

/// Fails when the residual stream holds NaN or ±Inf after `layer_idx`'s `sublayer` (finite
/// weights can still overflow f32). One pass over [token, d_model] per sublayer.
pub(super) fn check_finite(
    x: &Array2<f32>,
    layer_idx: usize,
    sublayer: &str,
) -> Result<(), EngineError> {
    let finite = match x.as_slice_memory_order() {
        Some(values) => super::math::all_finite(values),
        None => x.iter().all(|v| v.is_finite()),
    };
    if finite {
        Ok(())
    } else {
        Err(EngineError::BadWeights(format!(
            "non-finite values after layer {layer_idx}'s {sublayer}"
        )))
    }
}
