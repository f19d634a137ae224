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

mod build;
mod config;
mod heads;
mod layout;

use build::*;
pub use config::{CraftedHead, DemoConfig, DemoConfigError, DemoPositional, crafted_at};
use heads::*;
use layout::*;

use super::rng::Rng;
use super::{Model, ModelInfo};
use crate::engine::{
    Activation, AttentionPosition, Block, EngineError, Mlp, Norm, NormPlacement, RunOptions,
    SelfAttention, Transformer, TransformerParts,
};
use crate::tokenize::Token;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

/// Longest input the demo accepts.
pub const MAX_TOKENS: usize = 4096;
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
        self.embed_parts(tokens, true, true)
    }

    /// [`Self::embed`], with the additive positions left out when `positions` is false
    /// ([`crate::engine::Mistake::NoPositions`]).
    fn embed_with(&self, tokens: &[Token], positions: bool) -> Array2<f32> {
        self.embed_parts(tokens, true, positions)
    }

    /// The token vectors of `tokens` alone, before positions are added. Shape: [token, d_model].
    pub fn token_vectors(&self, tokens: &[Token]) -> Array2<f32> {
        self.embed_parts(tokens, true, false)
    }

    /// The additive position vectors of `len` tokens (zeros for RoPE, ALiBi and none); token
    /// vectors plus these are [`Self::embed`]'s result, to the bit. Shape: [token, d_model].
    pub fn position_vectors(&self, len: usize) -> Array2<f32> {
        let blank = vec![Token::from_text(""); len];
        self.embed_parts(&blank, false, true)
    }

    /// The transformer stack.
    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// Content (`content`) and additive positions (`positions`) of `tokens`, either or both.
    fn embed_parts(&self, tokens: &[Token], content: bool, positions: bool) -> Array2<f32> {
        let d = self.cfg.d_model;
        let positional = self.cfg.positional;
        let mut x = Array2::<f32>::zeros((tokens.len(), d));
        for (pos, (token, mut row)) in tokens.iter().zip(x.rows_mut()).enumerate() {
            let Some(row) = row.as_slice_mut() else {
                continue;
            };
            match &self.layout {
                Some(layout) => {
                    if content {
                        content_vector(self.cfg.seed, token.id, layout, &mut row[..layout.band]);
                    }
                    if !positions {
                        continue;
                    }
                    let band = &mut row[layout.position()..layout.position() + layout.band];
                    match positional {
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
                    if content {
                        let mut rng = Rng::new(self.cfg.seed, 1, u64::from(token.id));
                        for v in row.iter_mut() {
                            *v = rng.normal();
                        }
                    }
                    if !positions {
                        continue;
                    }
                    match positional {
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
        // Memory is bounded by the run's budget, checked in the pipeline before it runs.
        Ok(())
    }
}

impl Model for DemoModel {
    fn transformer(&self) -> &Transformer {
        &self.transformer
    }

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
            base_model: None,
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

    fn input_embeddings(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
    ) -> Result<Array2<f32>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::NoTokens);
        }
        self.check_size(tokens.len())?;
        Ok(self.embed_with(tokens, !opts.has(crate::engine::Mistake::NoPositions)))
    }
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
