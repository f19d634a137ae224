//! What a forward pass hands back: every layer's and head's attention probabilities, and
//! optionally a full trace of one layer.

use crate::tokenize::Token;
use ndarray::{Array2, ArrayView2};
use std::sync::Arc;

/// The attention probabilities of every layer and head.
///
/// Shape: [layer, head, query, key]. Each row is a probability distribution over keys, or all
/// zeros when the mask left the query nothing to attend to.
///
/// Read it through [`AttentionMaps::head`], which hands out a shared handle, so that storage can
/// later become lazy or tiled without changing callers.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionMaps {
    layers: usize,
    heads: usize,
    len: usize,
    /// Row-major over (layer, head). Each entry has shape [query, key].
    maps: Vec<Arc<Array2<f32>>>,
}

/// A shared, read-only handle to one head's map. Shape: [query, key].
pub type HeadMap = Arc<Array2<f32>>;

impl AttentionMaps {
    /// Builds maps from per-(layer, head) matrices, in layer-major order.
    ///
    /// Returns `None` if the count or any shape does not match.
    pub fn from_heads(
        layers: usize,
        heads: usize,
        len: usize,
        maps: Vec<Array2<f32>>,
    ) -> Option<Self> {
        Self::from_shared(layers, heads, len, maps.into_iter().map(Arc::new).collect())
    }

    /// Builds maps from shared per-(layer, head) matrices, in layer-major order (a resumed
    /// pass reuses the earlier layers' maps without copying them).
    ///
    /// Returns `None` if the count or any shape does not match.
    pub fn from_shared(
        layers: usize,
        heads: usize,
        len: usize,
        maps: Vec<HeadMap>,
    ) -> Option<Self> {
        if maps.len() != layers * heads || maps.iter().any(|m| m.dim() != (len, len)) {
            return None;
        }
        Some(Self {
            layers,
            heads,
            len,
            maps,
        })
    }

    /// The maps of the layers before `layer`, layer-major, shared (for a [`super::Resume`]).
    pub fn layers_before(&self, layer: usize) -> Vec<HeadMap> {
        self.maps
            .iter()
            .take(layer.min(self.layers) * self.heads)
            .cloned()
            .collect()
    }

    /// Number of layers.
    pub fn layers(&self) -> usize {
        self.layers
    }

    /// Number of heads per layer.
    pub fn heads(&self) -> usize {
        self.heads
    }

    /// Sequence length (queries = keys).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The full shape: [layer, head, query, key].
    pub fn shape(&self) -> [usize; 4] {
        [self.layers, self.heads, self.len, self.len]
    }

    /// One head's map, or `None` when the indices are out of range. Shape: [query, key].
    pub fn head(&self, layer_idx: usize, head_idx: usize) -> Option<HeadMap> {
        if layer_idx >= self.layers || head_idx >= self.heads {
            return None;
        }
        self.maps.get(layer_idx * self.heads + head_idx).cloned()
    }

    /// Visits every head in layer-major order with a borrowed view. Shape of each: [query, key].
    pub fn for_each_head(&self, mut f: impl FnMut(usize, usize, ArrayView2<'_, f32>)) {
        for (i, map) in self.maps.iter().enumerate() {
            f(i / self.heads, i % self.heads, map.view());
        }
    }
}

/// How a traced layer's attention saw positions (after any [`super::Mistake::NoPositions`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionKind {
    /// Nothing inside attention (positions, if any, were added to the embeddings).
    #[default]
    None,
    /// q and k were rotated (RoPE, plain or with Llama 3 scaling).
    Rope,
    /// ALiBi's distance bias was added to the scaled scores.
    Alibi,
}

impl PositionKind {
    /// `none`, `rope` or `alibi`.
    pub fn name(self) -> &'static str {
        match self {
            PositionKind::None => "none",
            PositionKind::Rope => "rope",
            PositionKind::Alibi => "alibi",
        }
    }
}

/// Everything about one head in one layer, for the step-through and dimension views.
#[derive(Clone, Debug, PartialEq)]
pub struct HeadTrace {
    /// The key/value head this query head reads (its own index without grouped-query attention).
    pub kv_head: usize,
    /// The factor that multiplied q·k (1/√d_head, over a temperature, or 1).
    pub scale: f32,
    /// ALiBi's slope m for this head (the bias is −m·|query − key|), when ALiBi was applied.
    pub alibi_slope: Option<f32>,
    /// Queries after projection (and RoPE, if any). Shape: [query, d_head].
    pub q: Array2<f32>,
    /// Keys after projection (and RoPE, if any). Shape: [key, d_head].
    pub k: Array2<f32>,
    /// Values. Shape: [key, d_head].
    pub v: Array2<f32>,
    /// q·k before any scaling. Shape: [query, key].
    pub raw_scores: Array2<f32>,
    /// raw_scores × scale plus any position bias, with masked cells set to −∞.
    /// Shape: [query, key].
    pub masked_scores: Array2<f32>,
    /// Softmax of the masked scores (over keys; over queries under
    /// [`super::Mistake::SoftmaxWrongAxis`]). Shape: [query, key].
    pub probs: Array2<f32>,
    /// probs · v (under [`super::Mistake::ElementwiseValues`], probs[i][i] · v_i). Shape: [query, d_head].
    pub output: Array2<f32>,
}

impl HeadTrace {
    /// ALiBi's bias of one query row against every key, or `None` without ALiBi.
    pub fn bias_row(&self, query_idx: usize) -> Option<Vec<f32>> {
        let slope = self.alibi_slope?;
        Some(
            (0..self.k.nrows())
                .map(|key_idx| -slope * query_idx.abs_diff(key_idx) as f32)
                .collect(),
        )
    }
}

/// A full trace of one layer: the input it saw and every head's intermediate tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    /// Which layer was traced.
    pub layer_idx: usize,
    /// How attention saw positions in this layer.
    pub position: PositionKind,
    /// The attention input after any normalisation. Shape: [token, d_model].
    pub input: Array2<f32>,
    /// One entry per head.
    pub heads: Vec<HeadTrace>,
}

/// The result of a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionRun {
    /// The tokens that went in.
    pub tokens: Vec<Token>,
    /// Every layer's and head's probabilities.
    pub maps: AttentionMaps,
    /// The mask the run applied (decided once, by [`super::AppliedMask::decide`]).
    pub mask: super::AppliedMask,
    /// Query indices whose rows the mask left empty; their rows are all zeros.
    pub fully_masked_queries: Vec<usize>,
    /// The trace of one layer, when asked for.
    pub trace: Option<Trace>,
    /// The final hidden states, when asked for. Shape: [token, d_model].
    pub hidden: Option<Array2<f32>>,
    /// With [`super::RunOptions::keep_layer_norms`], the mean L2 norm of the residual stream's
    /// rows after each block (before any final norm). Shape: [layer].
    pub layer_norms: Option<Vec<f32>>,
}
