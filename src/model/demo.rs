//! The built-in demo model: seeded weights, no files, and a few heads crafted to show readable
//! patterns at once.
//!
//! # Residual layout
//!
//! When d_model ≥ 64 and d_head ≥ 8, the residual stream is split into four bands of width
//! q = d_model/4:
//!
//! | band | channels | holds |
//! |---|---|---|
//! | content | `[0, q)` | a hash-seeded vector per token id; its first `kc` channels are the "content key" |
//! | position | `[q, 2q)` | sinusoid pairs (sin ωt, cos ωt) and their negatives, or a learned vector |
//! | previous | `[2q, 2q + kc)` | the content key of the previous token, written by the previous-token head |
//! | scratch | the rest | everything the random heads and MLPs write, at a small scale |
//!
//! Every vector written into the stream sums to zero across channels and the content and
//! position bands have fixed norms, so LayerNorm only rescales by a nearly constant factor and the
//! crafted heads keep their patterns through any number of layers and any norm placement.
//! The crafted heads:
//!
//! - layer 0 head 0, previous token: q·k = Σ_f cos(ω_f (i − 1 − j)), which peaks only at j = i − 1;
//! - layer 0 head 1, self: Σ_f cos(ω_f (i − j)), peaking at j = i;
//! - layer 0 head 2, first token: a constant query against Σ_f cos(ω_f j), peaking at j = 0;
//! - layer 0 head 3, duplicate token: content match minus a self penalty;
//! - last layer head 0, induction: the current token's content key against the previous band, so
//!   token i attends to j when token j − 1 equals token i.
//!
//! Weights scale so that the worst-case gap between the target and the next best key is a fixed
//! number of logits; the gaps are computed from the frequencies at build time.
//! With smaller dimensions every head is random and the embeddings are plain (content plus a
//! standard sinusoidal or learned encoding).

use super::rng::Rng;
use super::{Model, ModelInfo};
use crate::engine::{
    Activation, AttentionPosition, AttentionRun, Block, EngineError, Mlp, Norm, NormPlacement,
    RunOptions, SelfAttention, Transformer, TransformerParts,
};
use crate::tokenize::Token;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Longest input the demo accepts.
pub const MAX_TOKENS: usize = 4096;
/// Largest attention tensor a run may allocate: layers × heads × tokens² × 4 bytes.
const MAX_MAP_BYTES: u64 = 6 << 30;
/// Slowest sinusoid frequency, as in the original Transformer (1/10000 radians per token).
const SLOWEST_FREQUENCY: f64 = 1e-4;
/// Logit gap between a crafted head's target and the best other key, in the worst case.
const TARGET_GAP: f64 = 16.0;
/// Logits per unit of content cosine in the duplicate and induction heads.
const CONTENT_LOGITS: f64 = 1e5;
/// Worst-case logit gap of the duplicate head's self penalty and the induction head's
/// first-token penalty.
const PENALTY_GAP: f64 = 8.0;
/// Scale of everything the random heads and MLPs write into the scratch band.
const SCRATCH_SCALE: f32 = 0.002;
/// LayerNorm epsilon.
const LN_EPS: f32 = 1e-5;

/// How the demo encodes positions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DemoPositional {
    /// No positional information: attention is permutation-equivariant.
    None,
    /// Fixed sinusoids added to the embeddings.
    #[default]
    Sinusoidal,
    /// Seeded random vectors added to the embeddings.
    Learned,
    /// Rotary embeddings inside attention.
    Rope,
    /// ALiBi biases inside attention.
    Alibi,
}

impl DemoPositional {
    /// Every choice, for pickers.
    pub const ALL: [DemoPositional; 5] = [
        DemoPositional::None,
        DemoPositional::Sinusoidal,
        DemoPositional::Learned,
        DemoPositional::Rope,
        DemoPositional::Alibi,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DemoPositional::None => "none",
            DemoPositional::Sinusoidal => "sinusoidal",
            DemoPositional::Learned => "learned",
            DemoPositional::Rope => "rope",
            DemoPositional::Alibi => "alibi",
        }
    }

    fn is_additive(self) -> bool {
        matches!(self, DemoPositional::Sinusoidal | DemoPositional::Learned)
    }
}

impl std::str::FromStr for DemoPositional {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown positional encoding {s:?}; expected none, sinusoidal, learned, rope or alibi"))
    }
}

/// The demo model's settings. All of them can change live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct DemoConfig {
    /// Number of layers, 1..=24.
    pub layers: usize,
    /// Heads per layer, 1..=32, dividing d_model.
    pub heads: usize,
    /// Width of the residual stream, 8..=1024.
    pub d_model: usize,
    /// Positional encoding.
    pub positional: DemoPositional,
    /// Where the LayerNorms sit.
    pub norm: NormPlacement,
    /// Seed of every random weight.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            layers: 6,
            heads: 8,
            d_model: 256,
            positional: DemoPositional::Sinusoidal,
            norm: NormPlacement::Pre,
            seed: 0,
        }
    }
}

/// A demo setting outside its limits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct DemoConfigError(String);

impl DemoConfig {
    /// Checks the live limits.
    pub fn validate(&self) -> Result<(), DemoConfigError> {
        let err = |s: String| Err(DemoConfigError(s));
        if !(8..=1024).contains(&self.d_model) {
            return err(format!(
                "d_model must be between 8 and 1024, got {}",
                self.d_model
            ));
        }
        if !(1..=32).contains(&self.heads) {
            return err(format!(
                "heads must be between 1 and 32, got {}",
                self.heads
            ));
        }
        if !self.d_model.is_multiple_of(self.heads) {
            return err(format!(
                "heads ({}) must divide d_model ({}) evenly",
                self.heads, self.d_model
            ));
        }
        if !(1..=24).contains(&self.layers) {
            return err(format!(
                "layers must be between 1 and 24, got {}",
                self.layers
            ));
        }
        if self.positional == DemoPositional::Rope && !self.d_head().is_multiple_of(2) {
            return err(format!(
                "RoPE needs an even head width, but d_model/heads = {}",
                self.d_head()
            ));
        }
        Ok(())
    }

    /// Width of one head.
    pub fn d_head(&self) -> usize {
        self.d_model / self.heads.max(1)
    }

    /// True when this configuration has crafted heads (d_model ≥ 64 and d_head ≥ 8).
    pub fn has_crafted_heads(&self) -> bool {
        self.d_model >= 64 && self.d_head() >= 8
    }
}

/// One of the demo's crafted heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CraftedHead {
    /// Attends to the previous token.
    PreviousToken,
    /// Attends to itself.
    SelfToken,
    /// Attends to the first token.
    FirstToken,
    /// Attends to other copies of its own token.
    DuplicateToken,
    /// Attends to the token after an earlier copy of itself.
    Induction,
}

impl CraftedHead {
    /// A short label for tables and tooltips.
    pub fn label(self) -> &'static str {
        match self {
            CraftedHead::PreviousToken => "previous token",
            CraftedHead::SelfToken => "self",
            CraftedHead::FirstToken => "first token (sink)",
            CraftedHead::DuplicateToken => "duplicate token",
            CraftedHead::Induction => "induction",
        }
    }
}

/// Where the bands of the crafted layout sit.
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Band width, d_model / 4.
    band: usize,
    /// Width of the content key.
    kc: usize,
    /// Sinusoid pairs in the position band.
    pairs: usize,
}

impl Layout {
    fn new(cfg: &DemoConfig) -> Option<Self> {
        if !cfg.has_crafted_heads() {
            return None;
        }
        let band = cfg.d_model / 4;
        let dh = cfg.d_head();
        let kc = if dh >= 16 {
            (dh - 8).min(band)
        } else {
            dh.min(band)
        };
        Some(Self {
            band,
            kc,
            pairs: band / 4,
        })
    }
    fn position(&self) -> usize {
        self.band
    }
    fn previous(&self) -> usize {
        2 * self.band
    }
    fn scratch(&self) -> usize {
        2 * self.band + self.kc
    }
    fn sin_channel(&self, f: usize) -> usize {
        self.position() + 2 * f
    }
    fn frequency(&self, f: usize) -> f64 {
        SLOWEST_FREQUENCY.powf(f as f64 / (self.pairs - 1) as f64)
    }
    /// Width of the learned position vectors inside the position band.
    fn learned_width(&self, dh: usize) -> usize {
        dh.min(self.band)
    }
    /// Squared norm of every position vector.
    fn position_norm_sq(&self) -> f64 {
        2.0 * self.pairs as f64
    }
}

/// The built-in demo model.
pub struct DemoModel {
    cfg: DemoConfig,
    layout: Option<Layout>,
    transformer: Transformer,
}

impl DemoModel {
    /// Builds the model, or says which limit the settings break.
    pub fn new(cfg: DemoConfig) -> Result<Self, DemoConfigError> {
        cfg.validate()?;
        let layout = Layout::new(&cfg);
        // Checked and packed now, so that the first forward pass costs what every later one does.
        let transformer = Transformer::new(build_transformer(&cfg, layout.as_ref()))
            .map_err(|e| DemoConfigError(format!("internal: {e}")))?;
        Ok(Self {
            cfg,
            layout,
            transformer,
        })
    }

    /// The settings this model was built with.
    pub fn config(&self) -> &DemoConfig {
        &self.cfg
    }

    /// Which crafted head sits at (layer, head), if any, under the current settings.
    pub fn crafted_head(&self, layer_idx: usize, head_idx: usize) -> Option<CraftedHead> {
        crafted_at(&self.cfg, layer_idx, head_idx)
    }

    /// The embeddings of `tokens`: content plus any additive position. Shape: [token, d_model].
    pub fn embed(&self, tokens: &[Token]) -> Array2<f32> {
        let d = self.cfg.d_model;
        let mut x = Array2::<f32>::zeros((tokens.len(), d));
        for (pos, (token, mut row)) in tokens.iter().zip(x.rows_mut()).enumerate() {
            let Some(row) = row.as_slice_mut() else {
                continue;
            };
            match &self.layout {
                Some(layout) => {
                    content_vector(self.cfg.seed, token.id, layout, &mut row[..layout.band]);
                    let band = &mut row[layout.position()..layout.position() + layout.band];
                    match self.cfg.positional {
                        DemoPositional::Sinusoidal => sinusoid_band(layout, pos, band),
                        DemoPositional::Learned => {
                            let width = layout.learned_width(self.cfg.d_head());
                            learned_vector(
                                self.cfg.seed,
                                pos,
                                &mut band[..width],
                                layout.position_norm_sq(),
                            );
                        }
                        DemoPositional::None | DemoPositional::Rope | DemoPositional::Alibi => {}
                    }
                }
                None => {
                    let mut rng = Rng::new(self.cfg.seed, 1, u64::from(token.id));
                    for v in row.iter_mut() {
                        *v = rng.normal();
                    }
                    match self.cfg.positional {
                        DemoPositional::Sinusoidal => {
                            for (c, v) in row.iter_mut().enumerate() {
                                // The original Transformer's encoding: pairs (sin, cos) at 10000^(-2i/d).
                                let rate = 10_000f64.powf(-((c / 2 * 2) as f64) / d as f64);
                                let angle = pos as f64 * rate;
                                *v += if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
                            }
                        }
                        DemoPositional::Learned => {
                            let mut rng = Rng::new(self.cfg.seed, 2, pos as u64);
                            for v in row.iter_mut() {
                                *v += rng.normal();
                            }
                        }
                        DemoPositional::None | DemoPositional::Rope | DemoPositional::Alibi => {}
                    }
                }
            }
        }
        x
    }

    fn check_size(&self, len: usize) -> Result<(), EngineError> {
        if len > MAX_TOKENS {
            return Err(EngineError::TooLarge(format!(
                "the demo model takes at most {MAX_TOKENS} tokens, got {len}"
            )));
        }
        let bytes = (self.cfg.layers * self.cfg.heads) as u64 * (len as u64).pow(2) * 4;
        if bytes > MAX_MAP_BYTES {
            return Err(EngineError::TooLarge(format!(
                "{len} tokens × {} layers × {} heads needs {:.1} GiB of attention maps; the limit is {} GiB",
                self.cfg.layers,
                self.cfg.heads,
                bytes as f64 / f64::from(1u32 << 30),
                MAX_MAP_BYTES >> 30
            )));
        }
        Ok(())
    }
}

impl Model for DemoModel {
    fn info(&self) -> ModelInfo {
        let t = &self.transformer;
        let mut params = 0u64;
        for b in t.blocks() {
            let a = &b.attention;
            let sizes = [
                a.wq.len(),
                a.wk.len(),
                a.wv.len(),
                a.wo.len(),
                b.mlp.w_in.len(),
                b.mlp.w_out.len(),
            ];
            params += sizes.iter().map(|&s| s as u64).sum::<u64>();
            params += [&a.bq, &a.bk, &a.bv, &a.bo, &b.mlp.b_in, &b.mlp.b_out]
                .iter()
                .filter_map(|b| b.as_ref().map(|b| b.len() as u64))
                .sum::<u64>();
            params += 4 * self.cfg.d_model as u64;
        }
        ModelInfo {
            name: "demo".to_owned(),
            architecture: "demo".to_owned(),
            layers: self.cfg.layers,
            heads: self.cfg.heads,
            kv_heads: self.cfg.heads,
            d_model: self.cfg.d_model,
            d_head: self.cfg.d_head(),
            d_ff: 4 * self.cfg.d_model,
            vocab: None,
            params,
            dtype: "f32".to_owned(),
            max_positions: MAX_TOKENS,
            positional: self.cfg.positional.name().to_owned(),
            norm: self.cfg.norm.name().to_owned(),
            causal: false,
            lm_head: None,
        }
    }

    fn forward_with_progress(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
        progress: &mut dyn FnMut(usize) -> bool,
    ) -> Result<AttentionRun, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::NoTokens);
        }
        self.check_size(tokens.len())?;
        let x = self.embed(tokens);
        self.transformer.run(tokens, x, opts, progress)
    }
}

/// Which crafted head, if any, the settings put at (layer, head).
pub fn crafted_at(cfg: &DemoConfig, layer_idx: usize, head_idx: usize) -> Option<CraftedHead> {
    if !cfg.has_crafted_heads() {
        return None;
    }
    let last = cfg.layers - 1;
    // The content-matching heads need the sinusoids to tell positions apart; under any other
    // encoding their seat goes to a random head.
    let content_heads = cfg.d_head() >= 16 && cfg.positional == DemoPositional::Sinusoidal;
    match (layer_idx, head_idx) {
        (l, 0) if l == last && last > 0 && content_heads => Some(CraftedHead::Induction),
        (0, 0) => Some(CraftedHead::PreviousToken),
        (0, 1) => Some(CraftedHead::SelfToken),
        (0, 2) => Some(CraftedHead::FirstToken),
        (0, 3) if content_heads => Some(CraftedHead::DuplicateToken),
        _ => None,
    }
}

/// Fills `out` (the content band) with the token's content vector: two blocks, the content key
/// `[0, kc)` and the rest, each zero-mean with a fixed norm (√width).
fn content_vector(seed: u64, id: u32, layout: &Layout, out: &mut [f32]) {
    let mut rng = Rng::new(seed, 1, u64::from(id));
    for v in out.iter_mut() {
        *v = rng.normal();
    }
    let (key, rest) = out.split_at_mut(layout.kc);
    normalize_block(key, key.len() as f64);
    normalize_block(rest, rest.len() as f64);
}

/// Makes `block` zero-mean with squared norm `norm_sq` (or all zeros if it is too short).
fn normalize_block(block: &mut [f32], norm_sq: f64) {
    if block.len() < 2 {
        block.fill(0.0);
        return;
    }
    let mean = block.iter().map(|&v| f64::from(v)).sum::<f64>() / block.len() as f64;
    for v in block.iter_mut() {
        *v -= mean as f32;
    }
    let norm = block
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        let s = (norm_sq.sqrt() / norm) as f32;
        for v in block.iter_mut() {
            *v *= s;
        }
    }
}

/// The position band for position `pos`: (sin ω_f t, cos ω_f t) pairs, then their negatives, so
/// that the band sums to zero.
fn sinusoid_band(layout: &Layout, pos: usize, band: &mut [f32]) {
    for f in 0..layout.pairs {
        let angle = pos as f64 * layout.frequency(f);
        let (s, c) = (angle.sin() as f32, angle.cos() as f32);
        band[2 * f] = s;
        band[2 * f + 1] = c;
        band[2 * layout.pairs + 2 * f] = -s;
        band[2 * layout.pairs + 2 * f + 1] = -c;
    }
}

fn learned_vector(seed: u64, pos: usize, out: &mut [f32], norm_sq: f64) {
    let mut rng = Rng::new(seed, 2, pos as u64);
    for v in out.iter_mut() {
        *v = rng.normal();
    }
    normalize_block(out, norm_sq);
}

/// m − max over 1 ≤ Δ ≤ MAX_TOKENS of Σ_f cos(ω_f Δ): how far every other offset stays below
/// the peak of a sum of cosines at Δ = 0.
fn cosine_sum_gap(frequencies: &[f64]) -> f64 {
    let peak = frequencies.len() as f64;
    let best_other = (1..=MAX_TOKENS)
        .map(|delta| {
            frequencies
                .iter()
                .map(|w| (w * delta as f64).cos())
                .sum::<f64>()
        })
        .fold(f64::NEG_INFINITY, f64::max);
    peak - best_other
}

/// The LayerNorm scale that the first layer's attention input gets: √d / |x| in pre-LN, 1 else.
fn first_layer_scale(cfg: &DemoConfig, layout: &Layout) -> f64 {
    match cfg.norm {
        NormPlacement::Pre => {
            let pos = if cfg.positional.is_additive() {
                layout.position_norm_sq()
            } else {
                0.0
            };
            (cfg.d_model as f64 / (layout.band as f64 + pos)).sqrt()
        }
        NormPlacement::Post | NormPlacement::None => 1.0,
    }
}

/// The LayerNorm scale the last layer's attention input gets, approximately.
fn last_layer_scale(cfg: &DemoConfig, layout: &Layout) -> f64 {
    match cfg.norm {
        NormPlacement::Pre | NormPlacement::Post => {
            let pos = if cfg.positional.is_additive() {
                layout.position_norm_sq()
            } else {
                0.0
            };
            (cfg.d_model as f64 / (layout.band as f64 + pos + layout.kc as f64)).sqrt()
        }
        NormPlacement::None => 1.0,
    }
}

/// Random weights with standard deviation `std`. Shape: [rows, cols].
fn random_matrix(rng: &mut Rng, rows: usize, cols: usize, std: f32) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || rng.normal() * std)
}

/// A matrix that writes only into the scratch band (from channel `start`), with rows that sum
/// to zero there, so that the residual stays zero-mean. Shape: [rows, d_model].
fn scratch_writer(
    rng: &mut Rng,
    rows: usize,
    d_model: usize,
    start: usize,
    std: f32,
) -> Array2<f32> {
    let mut w = Array2::<f32>::zeros((rows, d_model));
    let width = d_model - start;
    for mut row in w.rows_mut() {
        let values: Vec<f32> = (0..width).map(|_| rng.normal() * std).collect();
        let mean = values.iter().sum::<f32>() / width.max(1) as f32;
        for (c, v) in values.into_iter().enumerate() {
            row[start + c] = if width > 1 { v - mean } else { 0.0 };
        }
    }
    w
}

fn build_transformer(cfg: &DemoConfig, layout: Option<&Layout>) -> TransformerParts {
    let d = cfg.d_model;
    let (h, dh) = (cfg.heads, cfg.d_head());
    let d_ff = 4 * d;
    // Random q·k logits have a standard deviation of about 2.5 on unit-variance inputs.
    let qk_std = (2.5 / d as f32).sqrt();
    let write_start = layout.map_or(0, Layout::scratch);
    // Without crafted heads, writes still stay small next to the embeddings, so that a model
    // without norms does not blow up its later layers' logits.
    let write_scale = if layout.is_some() {
        SCRATCH_SCALE
    } else {
        0.25
    };
    let build_block = |layer_idx: usize| -> Block {
        let mut rng = Rng::new(cfg.seed, 10, layer_idx as u64);
        let mut attention = SelfAttention {
            wq: random_matrix(&mut rng, d, h * dh, qk_std),
            bq: None,
            wk: random_matrix(&mut rng, d, h * dh, qk_std),
            bk: None,
            wv: random_matrix(&mut rng, d, h * dh, (1.0 / d as f32).sqrt()),
            bv: None,
            wo: scratch_writer(
                &mut rng,
                h * dh,
                d,
                write_start,
                write_scale / ((h * dh) as f32).sqrt(),
            ),
            bo: None,
        };
        if let Some(layout) = layout {
            for head_idx in 0..h {
                if let Some(kind) = crafted_at(cfg, layer_idx, head_idx) {
                    craft_head(cfg, layout, kind, head_idx, &mut attention);
                }
            }
        }
        let mlp = Mlp {
            w_in: random_matrix(&mut rng, d, d_ff, (1.0 / d as f32).sqrt()),
            b_in: None,
            w_gate: None,
            w_out: scratch_writer(
                &mut rng,
                d_ff,
                d,
                write_start,
                write_scale / (d_ff as f32).sqrt(),
            ),
            b_out: None,
            activation: Activation::Gelu,
        };
        Block {
            attention,
            mlp,
            attention_norm: Norm::identity_layer_norm(d, LN_EPS),
            mlp_norm: Norm::identity_layer_norm(d, LN_EPS),
        }
    };
    // Each layer has its own random stream, so layers build independently: odd layers on a
    // second thread (the largest demo has 300M weights). A refused thread only costs speed.
    let mut blocks: Vec<Option<Block>> = (0..cfg.layers).map(|_| None).collect();
    std::thread::scope(|scope| {
        let odd = std::thread::Builder::new()
            .name("demo-build".to_owned())
            .spawn_scoped(scope, || {
                (1..cfg.layers)
                    .step_by(2)
                    .map(|l| (l, build_block(l)))
                    .collect::<Vec<_>>()
            });
        for l in (0..cfg.layers).step_by(2) {
            blocks[l] = Some(build_block(l));
        }
        let odd_blocks = match odd {
            Ok(handle) => handle.join().unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        for (l, block) in odd_blocks {
            blocks[l] = Some(block);
        }
    });
    let blocks: Vec<Block> = blocks
        .into_iter()
        .enumerate()
        .map(|(l, b)| b.unwrap_or_else(|| build_block(l)))
        .collect();
    let position = match cfg.positional {
        DemoPositional::Rope => AttentionPosition::Rope { theta: 10_000.0 },
        DemoPositional::Alibi => AttentionPosition::Alibi,
        _ => AttentionPosition::None,
    };
    TransformerParts {
        d_model: d,
        heads: h,
        kv_heads: h,
        d_head: dh,
        placement: cfg.norm,
        position,
        causal: false,
        blocks,
        final_norm: (cfg.norm == NormPlacement::Pre).then(|| Norm::identity_layer_norm(d, LN_EPS)),
    }
}

/// Overwrites one head's slice of the attention weights with a crafted pattern.
fn craft_head(
    cfg: &DemoConfig,
    layout: &Layout,
    kind: CraftedHead,
    head_idx: usize,
    a: &mut SelfAttention,
) {
    let d = cfg.d_model;
    let dh = cfg.d_head();
    let col0 = head_idx * dh;
    // Clear this head's query and key columns; the value and output stay random unless set below.
    for c in col0..col0 + dh {
        a.wq.column_mut(c).fill(0.0);
        a.wk.column_mut(c).fill(0.0);
    }
    let mut bq = a.bq.take().unwrap_or_else(|| Array1::zeros(cfg.heads * dh));
    let mut bk = a.bk.take().unwrap_or_else(|| Array1::zeros(cfg.heads * dh));
    let sqrt_dh = (dh as f64).sqrt();
    let s0 = first_layer_scale(cfg, layout);
    // The fastest `count` pairs of the position band.
    let fast_pairs = |count: usize| -> Vec<usize> { (0..count.min(layout.pairs)).collect() };
    let sinusoidal = cfg.positional == DemoPositional::Sinusoidal;
    let learned = cfg.positional == DemoPositional::Learned;
    let rope = cfg.positional == DemoPositional::Rope;

    match kind {
        CraftedHead::PreviousToken | CraftedHead::SelfToken if rope => {
            // Constant q and k, rotated by RoPE: q·k = Σ_k cos(θ_k (j − i + shift)).
            let shift = if kind == CraftedHead::PreviousToken {
                1.0
            } else {
                0.0
            };
            let freqs = crate::engine::rope_frequencies(dh, 10_000.0);
            let freqs64: Vec<f64> = freqs.iter().map(|&f| f64::from(f)).collect();
            let alpha = TARGET_GAP * sqrt_dh / cosine_sum_gap(&freqs64);
            let half = dh / 2;
            for (k, &theta) in freqs64.iter().enumerate() {
                bq[col0 + k] = alpha as f32;
                bk[col0 + k] = (theta * shift).cos() as f32;
                bk[col0 + k + half] = (theta * shift).sin() as f32;
            }
        }
        CraftedHead::PreviousToken | CraftedHead::SelfToken => {
            // q = α·R(−shift·ω)(sin ωi, cos ωi), k = (sin ωj, cos ωj): q·k = α Σ cos(ω(i − shift − j)).
            let shift = if kind == CraftedHead::PreviousToken {
                1.0
            } else {
                0.0
            };
            if learned && kind == CraftedHead::SelfToken {
                let width = layout.learned_width(dh);
                let alpha = TARGET_GAP * sqrt_dh / (s0 * s0 * layout.position_norm_sq() * 0.25);
                for c in 0..width {
                    a.wq[(layout.position() + c, col0 + c)] = alpha as f32;
                    a.wk[(layout.position() + c, col0 + c)] = 1.0;
                }
            } else {
                let pairs = fast_pairs(dh / 2);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let alpha = TARGET_GAP * sqrt_dh / (s0 * s0 * cosine_sum_gap(&freqs));
                for (slot, (&f, &w)) in pairs.iter().zip(&freqs).enumerate() {
                    let (sin_ch, cos_ch) = (layout.sin_channel(f), layout.sin_channel(f) + 1);
                    let (qs, qc) = (col0 + 2 * slot, col0 + 2 * slot + 1);
                    let (sw, cw) = ((w * shift).sin(), (w * shift).cos());
                    a.wq[(sin_ch, qs)] = (alpha * cw) as f32;
                    a.wq[(cos_ch, qs)] = (-alpha * sw) as f32;
                    a.wq[(sin_ch, qc)] = (alpha * sw) as f32;
                    a.wq[(cos_ch, qc)] = (alpha * cw) as f32;
                    a.wk[(sin_ch, qs)] = 1.0;
                    a.wk[(cos_ch, qc)] = 1.0;
                }
            }
            if kind == CraftedHead::PreviousToken {
                // Copy the content key of the attended token into the previous band.
                for c in 0..a.wv.nrows() {
                    for v in col0..col0 + dh {
                        a.wv[(c, v)] = 0.0;
                    }
                }
                for r in col0..col0 + dh {
                    a.wo.row_mut(r).fill(0.0);
                }
                for c in 0..layout.kc {
                    a.wv[(c, col0 + c)] = (1.0 / s0) as f32;
                    a.wo[(col0 + c, layout.previous() + c)] = 1.0;
                }
            }
        }
        CraftedHead::FirstToken => {
            if learned {
                // q = α·p_0 (a constant bias), k = p_j: peaks where p_j = p_0.
                let width = layout.learned_width(dh);
                let mut p0 = vec![0.0f32; width];
                learned_vector(cfg.seed, 0, &mut p0, layout.position_norm_sq());
                let alpha = TARGET_GAP * sqrt_dh / (s0 * layout.position_norm_sq() * 0.25);
                for (c, &v) in p0.iter().enumerate() {
                    bq[col0 + c] = (alpha * f64::from(v)) as f32;
                    a.wk[(layout.position() + c, col0 + c)] = 1.0;
                }
            } else if sinusoidal {
                // q = α·(sin 0, cos 0) = α·(0, 1) per pair: q·k = α Σ cos(ω j).
                let pairs = fast_pairs(dh / 2);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let alpha = TARGET_GAP * sqrt_dh / (s0 * cosine_sum_gap(&freqs));
                for (slot, &f) in pairs.iter().enumerate() {
                    bq[col0 + 2 * slot + 1] = alpha as f32;
                    a.wk[(layout.sin_channel(f), col0 + 2 * slot)] = 1.0;
                    a.wk[(layout.sin_channel(f) + 1, col0 + 2 * slot + 1)] = 1.0;
                }
            }
        }
        CraftedHead::DuplicateToken | CraftedHead::Induction => {
            let induction = kind == CraftedHead::Induction;
            let s = if induction {
                last_layer_scale(cfg, layout)
            } else {
                s0
            };
            // Content: the query's content key against the key's content key (duplicate) or the
            // key's previous band (induction); a match scores CONTENT_LOGITS more than an
            // orthogonal token.
            let beta = CONTENT_LOGITS * sqrt_dh / (s * s * layout.kc as f64);
            let key_band = if induction { layout.previous() } else { 0 };
            for c in 0..layout.kc {
                a.wq[(c, col0 + c)] = beta as f32;
                a.wk[(key_band + c, col0 + c)] = 1.0;
            }
            // Position, in the remaining 8 dimensions: the duplicate head penalises itself,
            // the induction head penalises the first token (whose previous band holds its own
            // content, a false match).
            if dh >= layout.kc + 8 {
                let pairs = fast_pairs(4);
                let freqs: Vec<f64> = pairs.iter().map(|&f| layout.frequency(f)).collect();
                let gap = cosine_sum_gap(&freqs);
                for (slot, &f) in pairs.iter().enumerate() {
                    let (qs, qc) = (col0 + layout.kc + 2 * slot, col0 + layout.kc + 2 * slot + 1);
                    let (sin_ch, cos_ch) = (layout.sin_channel(f), layout.sin_channel(f) + 1);
                    if induction {
                        let g = PENALTY_GAP * sqrt_dh / (s * gap);
                        bq[qc] = -g as f32;
                    } else {
                        let sigma = PENALTY_GAP * sqrt_dh / (s * s * gap);
                        a.wq[(sin_ch, qs)] = -sigma as f32;
                        a.wq[(cos_ch, qc)] = -sigma as f32;
                    }
                    a.wk[(sin_ch, qs)] = 1.0;
                    a.wk[(cos_ch, qc)] = 1.0;
                }
            }
        }
    }
    let _ = d;
    a.bq = Some(bq);
    a.bk = Some(bk);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let ok = DemoConfig::default();
        assert!(ok.validate().is_ok());
        for bad in [
            DemoConfig { d_model: 4, ..ok },
            DemoConfig {
                d_model: 2048,
                ..ok
            },
            DemoConfig { heads: 0, ..ok },
            DemoConfig { heads: 33, ..ok },
            DemoConfig { heads: 7, ..ok },
            DemoConfig { layers: 0, ..ok },
            DemoConfig { layers: 25, ..ok },
            DemoConfig {
                d_model: 24,
                heads: 8,
                positional: DemoPositional::Rope,
                ..ok
            },
        ] {
            assert!(DemoModel::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn residual_bands_are_zero_mean_with_fixed_norms() {
        let model = DemoModel::new(DemoConfig::default()).unwrap();
        let tokens = crate::tokenize::tokenize("a b c the the", Default::default()).unwrap();
        let x = model.embed(&tokens);
        let norms: Vec<f32> = x.rows().into_iter().map(|r| r.dot(&r)).collect();
        for row in x.rows() {
            assert!(row.sum().abs() < 1e-4);
        }
        // 64 content channels plus 16 pairs of (sin, cos) twice: |x|² = 64 + 32 = 96.
        for n in norms {
            assert!((n - 96.0).abs() < 1e-3, "norm² {n}");
        }
    }

    #[test]
    fn gaps_are_positive() {
        let layout = Layout::new(&DemoConfig::default()).unwrap();
        let freqs: Vec<f64> = (0..layout.pairs).map(|f| layout.frequency(f)).collect();
        assert!(cosine_sum_gap(&freqs) > 0.05);
        assert!(cosine_sum_gap(&freqs[..4]) > 1e-3);
    }
}
