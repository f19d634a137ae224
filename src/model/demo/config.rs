//! The demo's settings, their limits, and which crafted head sits where.

use super::*;

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

    pub(super) fn is_additive(self) -> bool {
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
pub struct DemoConfigError(pub(super) String);

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

    /// The bytes the built model holds for its weights: what has to fit in the memory budget
    /// before it is built.
    pub fn weight_bytes(&self) -> u64 {
        // Per layer: q, k, v, o (4·d²) and the MLP's two d × 4d matrices (8·d²), f32, held
        // twice (the weights and the kernel's packed copy).
        let d = self.d_model as u64;
        (self.layers as u64)
            .saturating_mul(12)
            .saturating_mul(d.saturating_mul(d))
            .saturating_mul(4 * 2)
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
