//! The checks a transformer makes before it runs: its weights' shapes when it is built, the
//! options of a pass, and whether a resumed pass can give the full pass's result.

use super::{Transformer, TransformerParts};
use crate::engine::EngineError;
use crate::engine::intervene::{Ablation, AblationMode, FrozenRows};
use crate::engine::intervene::{Interventions, Site};
use crate::engine::options::{Mistake, RunOptions};
use crate::engine::position::AttentionPosition;
use crate::engine::run::HeadMap;
use ndarray::Array2;

impl Transformer {
    /// Checks that every weight has the shape the dimensions promise.
    pub(super) fn validate(p: &TransformerParts) -> Result<(), EngineError> {
        let bad = |what: String| Err(EngineError::BadWeights(what));
        if p.heads == 0 || p.kv_heads == 0 || !p.heads.is_multiple_of(p.kv_heads) {
            return bad(format!(
                "{} heads cannot share {} kv heads",
                p.heads, p.kv_heads
            ));
        }
        let rope = matches!(
            p.position,
            AttentionPosition::Rope { .. } | AttentionPosition::RopeLlama3 { .. }
        );
        if rope && !p.d_head.is_multiple_of(2) {
            return bad(format!("RoPE needs an even head width, got {}", p.d_head));
        }
        let (d, q, kv) = (p.d_model, p.heads * p.d_head, p.kv_heads * p.d_head);
        for (i, b) in p.blocks.iter().enumerate() {
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
            let ff = b.mlp.w_in.ncols();
            if let Some(g) = &b.mlp.w_gate
                && g.dim() != (d, ff)
            {
                return bad(format!(
                    "layer {i} mlp.w_gate has shape {:?}, expected {:?}",
                    g.dim(),
                    (d, ff)
                ));
            }
            let mlp_biases = [
                ("mlp.b_in", &b.mlp.b_in, ff),
                ("mlp.b_out", &b.mlp.b_out, d),
            ];
            for (name, bias, want) in mlp_biases {
                if let Some(bias) = bias
                    && bias.len() != want
                {
                    return bad(format!(
                        "layer {i} {name} has length {}, expected {want}",
                        bias.len()
                    ));
                }
            }
            for (name, norm) in [("attention", &b.attention_norm), ("mlp", &b.mlp_norm)] {
                if norm.width() != d {
                    return bad(format!(
                        "layer {i} {name} norm has width {}, expected d_model {d}",
                        norm.width()
                    ));
                }
            }
        }
        if let Some(norm) = &p.final_norm
            && norm.width() != d
        {
            return bad(format!(
                "final norm has width {}, expected d_model {d}",
                norm.width()
            ));
        }
        Ok(())
    }

    pub(crate) fn check_options(&self, opts: &RunOptions) -> Result<(), EngineError> {
        let layers = self.parts.blocks.len();
        let out_of_range = |what: String| Err(EngineError::OutOfRange(what));
        for a in &opts.ablations {
            if a.layer_idx >= layers || a.head_idx >= self.parts.heads {
                return out_of_range(format!(
                    "ablated head {}.{} does not exist ({layers} layers × {} heads)",
                    a.layer_idx, a.head_idx, self.parts.heads
                ));
            }
        }
        Ablation::normalized(&opts.ablations).map_err(EngineError::OutOfRange)?;
        for d in &opts.dims {
            if d.layer_idx >= layers || d.head_idx >= self.parts.heads {
                return out_of_range(format!(
                    "the dimension mask names head {}.{}, which does not exist ({layers} layers × {} heads)",
                    d.layer_idx, d.head_idx, self.parts.heads
                ));
            }
            if let Some(&bad) = d.dims.iter().find(|&&dim| dim >= self.parts.d_head) {
                return out_of_range(format!(
                    "the dimension mask names dimension {bad} of head {}.{}, but heads have {} dimensions",
                    d.layer_idx, d.head_idx, self.parts.d_head
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

    /// Refuses a resume that cannot give the full pass's result: a first block past the last,
    /// earlier maps or norms that do not cover the skipped blocks, a traced or overridden
    /// block among the skipped ones.
    pub(super) fn check_resume(
        &self,
        first_layer: usize,
        earlier_maps: &[HeadMap],
        earlier_norms: &[f32],
        opts: &RunOptions,
        iv: &Interventions,
    ) -> Result<(), EngineError> {
        let layers = self.parts.blocks.len();
        let unsupported = |what: String| Err(EngineError::Unsupported(what));
        if first_layer > layers {
            return unsupported(format!(
                "cannot resume at layer {first_layer}: the model has {layers} layers"
            ));
        }
        if opts.keep_maps && earlier_maps.len() != first_layer * self.parts.heads {
            return unsupported(format!(
                "resuming at layer {first_layer} needs the maps of the {first_layer} layers before it"
            ));
        }
        if opts.keep_layer_norms && earlier_norms.len() != first_layer {
            return unsupported(format!(
                "resuming at layer {first_layer} needs the residual norms of the layers before it"
            ));
        }
        if let Some(t) = opts.trace_layer
            && t < first_layer
        {
            return unsupported(format!(
                "cannot trace layer {t} in a pass resumed at layer {first_layer}"
            ));
        }
        let skipped = |site: Site| match site {
            Site::Resid(l) => l < first_layer,
            other => other.layer() < first_layer,
        };
        if let Some(site) = iv
            .overrides
            .iter()
            .map(|o| o.site)
            .chain(iv.capture.iter().copied())
            .find(|&s| skipped(s))
        {
            return unsupported(format!(
                "{site} is before layer {first_layer}, where the pass resumes"
            ));
        }
        Ok(())
    }

    /// Whether a pass over tokens whose padding is `is_pad`, resumed at `first_layer` with
    /// `opts` and `iv`, can take the rows before `from` from an earlier pass
    /// ([`FrozenRows`]); `Err` says why not.
    pub fn can_freeze_rows(
        &self,
        from: usize,
        is_pad: &[bool],
        first_layer: usize,
        opts: &RunOptions,
        iv: &Interventions,
    ) -> Result<(), String> {
        let len = is_pad.len();
        let allowed = self
            .applied_mask(opts, len)
            .allowed(len, is_pad)
            .map_err(|e| e.to_string())?;
        self.check_frozen(from, len, allowed.as_ref(), first_layer, opts, iv)
    }

    /// [`Self::can_freeze_rows`] with the pass's allowed grid.
    pub(super) fn check_frozen(
        &self,
        from: usize,
        len: usize,
        allowed: Option<&Array2<bool>>,
        first_layer: usize,
        opts: &RunOptions,
        iv: &Interventions,
    ) -> Result<(), String> {
        if from == 0 || from >= len {
            return Err(format!(
                "rows before {from} of {len} tokens cannot be frozen (1..{len} can)"
            ));
        }
        let Some(allowed) = allowed else {
            return Err("the mask lets every token see every other".into());
        };
        for (query_idx, row) in allowed.outer_iter().take(from).enumerate() {
            if let Some(key_idx) = (from..len).find(|&k| row[k]) {
                return Err(format!(
                    "token {query_idx} sees token {key_idx} under the mask, so it depends on \
                     the rows from {from} on"
                ));
            }
        }
        if opts.keep_maps || opts.keep_layer_norms || opts.trace_layer.is_some() {
            return Err("a pass with frozen rows keeps no maps, norms or traces".into());
        }
        for mistake in [Mistake::SoftmaxWrongAxis, Mistake::ElementwiseValues] {
            if opts.has(mistake) {
                return Err(format!("the mistake {mistake} mixes rows"));
            }
        }
        if let Some(a) = opts
            .ablations
            .iter()
            .find(|a| a.mode == AblationMode::Mean && a.layer_idx >= first_layer)
        {
            return Err(format!("the mean ablation {a} averages over every row"));
        }
        if let Some(site) = iv.capture.iter().find(|s| !matches!(s, Site::Resid(_))) {
            return Err(format!(
                "a pass with frozen rows captures residuals only, not {site}"
            ));
        }
        for o in &iv.overrides {
            if matches!(o.site, Site::Pattern(..)) {
                return Err(format!("{} cannot be overridden with frozen rows", o.site));
            }
            if let Some(&r) = o.positions.iter().flatten().find(|&&r| r < from) {
                return Err(format!(
                    "the override of {} writes row {r}, before the first recomputed row {from}",
                    o.site
                ));
            }
        }
        Ok(())
    }

    /// The frozen rows' residuals cover every block's input and the output, on `len` tokens.
    pub(super) fn check_frozen_shapes(
        &self,
        frozen: &FrozenRows,
        len: usize,
    ) -> Result<(), String> {
        let layers = self.parts.blocks.len();
        if frozen.resid.len() != layers + 1 {
            return Err(format!(
                "frozen rows need the residuals entering all {layers} layers and the output, got {}",
                frozen.resid.len()
            ));
        }
        let want = (len, self.parts.d_model);
        if let Some((l, r)) = frozen
            .resid
            .iter()
            .enumerate()
            .find(|(_, r)| r.dim() != want)
        {
            return Err(format!(
                "the frozen residual of layer {l} has shape {:?}, expected {want:?}",
                r.dim()
            ));
        }
        Ok(())
    }
}
