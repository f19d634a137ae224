//! [`Differentiable`] for [`LoadedModel`]: the demo and every checkpoint.
//!
//! e (the input embeddings) becomes the transformer's input x by adding what the model adds
//! from the token index (the demo's positions; BERT's and GPT-2's learned positions and BERT's
//! segment 0, then BERT's embedding LayerNorm). The engine's taped forward and backward
//! ([`crate::engine::Transformer::forward_taped`], [`crate::engine::Transformer::backward`])
//! give ∂T/∂x from ∂T/∂(final hidden states); the target's own maths (LM head, masked-LM head,
//! cosine similarity) runs on the rows it needs, in f64.
//!
//! `mlm`: when token P is not the mask token, the model replaces it (and its embedding row)
//! by the mask token before every evaluation, so that row's gradient is zero; a caller that
//! wants the gradient at the masked position passes tokens that already hold the mask there.

use super::{
    Differentiable, GradError, Gradient, ResolvedTarget, SpecialToken, TargetKind, TargetSpec,
    TokenRef,
};
use crate::engine::{EngineError, RunOptions, Transformer};
use crate::model::Checkpoint;
use crate::model::LoadedModel;
use crate::model::lm_head::{logprob_of_row, top_k};
use crate::tokenize::Token;
use ndarray::{Array2, ArrayView2, Axis};

impl LoadedModel {
    fn stack(&self) -> &Transformer {
        match self {
            LoadedModel::Demo { model, .. } => model.transformer(),
            LoadedModel::Checkpoint { model, .. } => model.transformer(),
        }
    }

    fn unsupported(&self, kind: TargetKind) -> GradError {
        GradError::Unsupported {
            model: self.info().name,
            kind,
            supported: self
                .supported_targets()
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// The transformer's input from input embeddings `e`, and (BERT) the sum before the
    /// embedding norm, which its adjoint needs.
    fn stack_input(
        &self,
        e: ArrayView2<'_, f32>,
    ) -> Result<(Array2<f32>, Option<Array2<f32>>), GradError> {
        let info = self.info();
        let len = e.nrows();
        if len == 0 {
            return Err(EngineError::NoTokens.into());
        }
        if e.ncols() != info.d_model {
            return Err(GradError::BadTarget(format!(
                "embeddings are {} wide, but the model's are {}",
                e.ncols(),
                info.d_model
            )));
        }
        match self {
            LoadedModel::Demo { model, .. } => Ok((&e + &model.position_vectors(len), None)),
            LoadedModel::Checkpoint { model, .. } => {
                let mut x = e.to_owned();
                model.add_positions(&mut x)?;
                match model.embedding_norm() {
                    Some(norm) => {
                        let pre = x.clone();
                        norm.apply(&mut x);
                        Ok((x, Some(pre)))
                    }
                    None => Ok((x, None)),
                }
            }
        }
    }

    /// ∂T/∂e from ∂T/∂x (the adjoint of [`Self::stack_input`]).
    fn stack_input_backward(&self, pre: Option<&Array2<f32>>, dx: Array2<f32>) -> Array2<f32> {
        match (
            self.as_checkpoint().and_then(Checkpoint::embedding_norm),
            pre,
        ) {
            (Some(norm), Some(pre)) => norm.backward(pre.view(), dx.view()),
            _ => dx,
        }
    }

    /// The options of a gradient run: no maps, no trace, the hidden states kept (the mask is
    /// the engine's to decide, as in every run).
    fn grad_options(&self, opts: &RunOptions) -> RunOptions {
        RunOptions {
            trace_layer: None,
            keep_maps: false,
            keep_hidden: true,
            ..opts.clone()
        }
    }

    /// Final hidden states at embeddings `e` through the ordinary forward pass.
    fn hidden_at(
        &self,
        tokens: &[Token],
        e: ArrayView2<'_, f32>,
        opts: &RunOptions,
    ) -> Result<Array2<f32>, GradError> {
        let (x, _) = self.stack_input(e)?;
        let is_pad: Vec<bool> = tokens.iter().map(Token::is_pad).collect();
        let opts = self.grad_options(opts);
        Ok(self
            .stack()
            .forward(x, &is_pad, &opts, &mut |_| true)?
            .hidden)
    }

    fn vocab(&self) -> usize {
        self.info().vocab.unwrap_or(0)
    }

    pub(crate) fn token_id(&self, r: &TokenRef) -> Result<u32, GradError> {
        match r {
            TokenRef::Id(id) => {
                if (*id as usize) < self.vocab() {
                    Ok(*id)
                } else {
                    Err(GradError::BadTarget(format!(
                        "token id {id} is outside the vocabulary (size {})",
                        self.vocab()
                    )))
                }
            }
            TokenRef::Text(text) => self
                .as_checkpoint()
                .and_then(Checkpoint::tokenizer)
                .and_then(|t| t.token_to_id(text))
                .ok_or_else(|| {
                    GradError::BadTarget(format!("token {text:?} is not in the vocabulary"))
                }),
        }
    }

    fn check_position(position: usize, len: usize) -> Result<usize, GradError> {
        if position < len {
            Ok(position)
        } else {
            Err(GradError::BadTarget(format!(
                "position {position} is out of range: the input has {len} tokens (0-based)"
            )))
        }
    }

    /// For `mlm`: the tokens and embeddings with token P replaced by the mask token, unless it
    /// already is one; `Some(P)` when a row was replaced.
    fn masked_inputs(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
    ) -> Result<MaskedInputs, GradError> {
        let mut tokens = tokens.to_vec();
        let mut embeds = embeds.to_owned();
        if target.kind != TargetKind::Mlm {
            return Ok((tokens, embeds, None));
        }
        let position = Self::check_position(target.position.unwrap_or(0), tokens.len())?;
        let mask = self.special_token(SpecialToken::Mask).ok_or_else(|| {
            GradError::BadTarget("the tokenizer has no mask token for the mlm target".into())
        })?;
        if tokens[position].id == mask.id {
            return Ok((tokens, embeds, None));
        }
        let row = self.input_embeddings(std::slice::from_ref(&mask))?;
        embeds.row_mut(position).assign(&row.row(0));
        tokens[position] = mask;
        Ok((tokens, embeds, Some(position)))
    }

    /// T at final hidden states `hidden`, and with `want_grad` ∂T/∂hidden.
    fn objective(
        &self,
        hidden: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        want_grad: bool,
    ) -> Result<(f64, Option<Array2<f32>>), GradError> {
        let (len, d) = hidden.dim();
        let mut grad = want_grad.then(|| Array2::<f32>::zeros((len, d)));
        let value = match target.kind {
            TargetKind::Logprob | TargetKind::Contrast | TargetKind::Mlm => {
                let position = Self::check_position(target.position.unwrap_or(0), len)?;
                let token = target
                    .token
                    .ok_or_else(|| GradError::BadTarget("the target has no token".into()))?
                    as usize;
                let h: Vec<f64> = hidden.row(position).iter().map(|&v| f64::from(v)).collect();
                let ckpt = self
                    .as_checkpoint()
                    .ok_or_else(|| self.unsupported(target.kind))?;
                let (value, g) = if target.kind == TargetKind::Mlm {
                    let head = ckpt
                        .mlm_head()
                        .ok_or_else(|| self.unsupported(target.kind))?;
                    head.logprob(&h, ckpt.word_embeddings(), token, want_grad)
                } else {
                    let weight = ckpt
                        .head_weight()
                        .ok_or_else(|| self.unsupported(target.kind))?;
                    let foil = match target.kind {
                        TargetKind::Contrast => Some(target.foil.ok_or_else(|| {
                            GradError::BadTarget("the contrast target has no foil".into())
                        })? as usize),
                        _ => None,
                    };
                    logprob_of_row(&h, weight, None, token, foil, want_grad)
                };
                if let (Some(grad), Some(g)) = (grad.as_mut(), g) {
                    for (out, v) in grad.row_mut(position).iter_mut().zip(g) {
                        *out = v as f32;
                    }
                }
                value
            }
            TargetKind::Similarity => {
                let reference = target.reference.as_deref().ok_or_else(|| {
                    GradError::BadTarget("the similarity target has no reference text".into())
                })?;
                if reference.len() != d {
                    return Err(GradError::BadTarget(format!(
                        "the similarity reference is {} wide, but the model's states are {d}",
                        reference.len()
                    )));
                }
                let mean = mean_rows(hidden);
                let b: Vec<f64> = reference.iter().map(|&v| f64::from(v)).collect();
                let (na, nb) = (norm2(&mean), norm2(&b));
                if na == 0.0 || nb == 0.0 {
                    return Ok((0.0, grad));
                }
                let dot: f64 = mean.iter().zip(&b).map(|(x, y)| x * y).sum();
                let cos = dot / (na * nb);
                if let Some(grad) = grad.as_mut() {
                    // ∂cos/∂a = b/(|a||b|) − cos·a/|a|², and a is the mean of len rows.
                    let row: Vec<f32> = mean
                        .iter()
                        .zip(&b)
                        .map(|(a, b)| ((b / (na * nb) - cos * a / (na * na)) / len as f64) as f32)
                        .collect();
                    for mut r in grad.rows_mut() {
                        for (out, &v) in r.iter_mut().zip(&row) {
                            *out = v;
                        }
                    }
                }
                cos
            }
        };
        Ok((value, grad))
    }
}

/// Tokens and embeddings after the `mlm` replacement, and the replaced position.
type MaskedInputs = (Vec<Token>, Array2<f32>, Option<usize>);

/// The mean of the rows, in f64.
fn mean_rows(a: ArrayView2<'_, f32>) -> Vec<f64> {
    let mut sum = vec![0.0f64; a.ncols()];
    for row in a.rows() {
        for (s, &v) in sum.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let n = a.nrows().max(1) as f64;
    sum.iter().map(|s| s / n).collect()
}

fn norm2(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

impl Differentiable for LoadedModel {
    fn supported_targets(&self) -> Vec<TargetKind> {
        let Some(ckpt) = self.as_checkpoint() else {
            return vec![TargetKind::Similarity];
        };
        TargetKind::ALL
            .into_iter()
            .filter(|kind| match kind {
                TargetKind::Logprob | TargetKind::Contrast => ckpt.lm_head().is_some(),
                TargetKind::Mlm => ckpt.mlm_head().is_some(),
                TargetKind::Similarity => true,
            })
            .collect()
    }

    fn special_token(&self, which: SpecialToken) -> Option<Token> {
        let candidates: &[&str] = match which {
            SpecialToken::Mask => &["[MASK]", "<mask>"],
            SpecialToken::Unknown => &["[UNK]", "<unk>", "<|unk|>"],
            SpecialToken::Pad => &["[PAD]", "<pad>", "<|pad|>", "<|padding|>"],
        };
        match self {
            LoadedModel::Demo { .. } => candidates.first().map(|t| Token::from_text(t)),
            LoadedModel::Checkpoint { model, .. } => {
                let tokenizer = model.tokenizer()?;
                candidates
                    .iter()
                    .find_map(|t| tokenizer.token_to_id(t))
                    .and_then(|id| model.tokens_from_ids(&[id]).into_iter().next())
            }
        }
    }

    fn input_embeddings(&self, tokens: &[Token]) -> Result<Array2<f32>, GradError> {
        match self {
            LoadedModel::Demo { model, .. } => Ok(model.token_vectors(tokens)),
            LoadedModel::Checkpoint { model, .. } => Ok(model.input_embeddings(tokens)?),
        }
    }

    fn resolve_target(
        &self,
        tokens: &[Token],
        spec: &TargetSpec,
        text_b: Option<&[Token]>,
        opts: &RunOptions,
    ) -> Result<ResolvedTarget, GradError> {
        if !self.supported_targets().contains(&spec.kind) {
            return Err(self.unsupported(spec.kind));
        }
        let len = tokens.len();
        if len == 0 {
            return Err(EngineError::NoTokens.into());
        }
        let mut target = ResolvedTarget {
            kind: spec.kind,
            position: None,
            token: None,
            foil: None,
            text_b: None,
            reference: None,
            value: 0.0,
        };
        match spec.kind {
            TargetKind::Similarity => {
                let b = text_b.filter(|b| !b.is_empty()).ok_or_else(|| {
                    GradError::BadTarget("the similarity target needs a second text".into())
                })?;
                // The mask belongs to the input it was written for: text B runs with none of
                // its own (the architecture's causal mask still applies).
                let b_opts = RunOptions {
                    mask: crate::engine::MaskSpec::none(),
                    ..opts.clone()
                };
                let e = self.input_embeddings(b)?;
                let hidden = self.hidden_at(b, e.view(), &b_opts)?;
                target.reference =
                    Some(mean_rows(hidden.view()).iter().map(|&v| v as f32).collect());
            }
            TargetKind::Logprob | TargetKind::Contrast | TargetKind::Mlm => {
                let position = match (spec.kind, spec.position) {
                    (_, Some(p)) => p,
                    (TargetKind::Mlm, None) => {
                        return Err(GradError::BadTarget(
                            "the mlm target needs a position (mlm:P)".into(),
                        ));
                    }
                    (_, None) => len - 1,
                };
                target.position = Some(Self::check_position(position, len)?);
                target.token = spec.token.as_ref().map(|t| self.token_id(t)).transpose()?;
                target.foil = spec.foil.as_ref().map(|t| self.token_id(t)).transpose()?;
                if spec.kind == TargetKind::Contrast
                    && (target.token.is_none() || target.foil.is_none())
                {
                    return Err(GradError::BadTarget(
                        "the contrast target needs a token and a foil (contrast:P:T:F)".into(),
                    ));
                }
            }
        }
        let embeds = self.input_embeddings(tokens)?;
        let (tokens, embeds, _) = self.masked_inputs(tokens, embeds.view(), &target)?;
        let hidden = self.hidden_at(&tokens, embeds.view(), opts)?;
        if target.token.is_none()
            && let (Some(position), Some(ckpt)) = (target.position, self.as_checkpoint())
        {
            let row = hidden.index_axis(Axis(0), position);
            let argmax = if spec.kind == TargetKind::Mlm {
                let h: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
                ckpt.mlm_head()
                    .map(|head| head.argmax(&h, ckpt.word_embeddings()) as u32)
            } else {
                let row = row.insert_axis(Axis(0));
                ckpt.next_token_logprobs(row)
                    .ok()
                    .flatten()
                    .and_then(|lp| top_k(lp.row(0), 1).first().map(|&(id, _)| id))
            };
            target.token = Some(argmax.ok_or_else(|| self.unsupported(spec.kind))?);
        }
        target.value = self.objective(hidden.view(), &target, false)?.0;
        Ok(target)
    }

    fn target_value(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        opts: &RunOptions,
    ) -> Result<f64, GradError> {
        check_rows(tokens, embeds)?;
        let (tokens, embeds, _) = self.masked_inputs(tokens, embeds, target)?;
        let hidden = self.hidden_at(&tokens, embeds.view(), opts)?;
        Ok(self.objective(hidden.view(), target, false)?.0)
    }

    fn gradient(
        &self,
        tokens: &[Token],
        embeds: ArrayView2<'_, f32>,
        target: &ResolvedTarget,
        opts: &RunOptions,
        attention_relevance: bool,
    ) -> Result<Gradient, GradError> {
        check_rows(tokens, embeds)?;
        let (tokens, embeds, replaced) = self.masked_inputs(tokens, embeds, target)?;
        let (x, pre) = self.stack_input(embeds.view())?;
        let is_pad: Vec<bool> = tokens.iter().map(Token::is_pad).collect();
        let opts = self.grad_options(opts);
        let (hidden, tape) = self.stack().forward_taped(x, &is_pad, &opts)?;
        let (value, d_hidden) = self.objective(hidden.view(), target, true)?;
        let d_hidden = d_hidden.unwrap_or_else(|| Array2::zeros(hidden.raw_dim()));
        drop(hidden);
        let back = self
            .stack()
            .backward(&tape, d_hidden, attention_relevance)?;
        drop(tape);
        let mut d_embeds = self.stack_input_backward(pre.as_ref(), back.d_input);
        if let Some(position) = replaced {
            d_embeds.row_mut(position).fill(0.0);
        }
        Ok(Gradient {
            value,
            d_embeds,
            attention_relevance: back.relevance,
        })
    }

    fn gradients(
        &self,
        tokens: &[Token],
        points: &[Array2<f32>],
        target: &ResolvedTarget,
        opts: &RunOptions,
    ) -> Result<Vec<Gradient>, GradError> {
        if points.len() <= 1 {
            return super::one_by_one(self, tokens, points, target, opts);
        }
        let len = tokens.len();
        let mut xs = Vec::with_capacity(points.len());
        let mut pres = Vec::with_capacity(points.len());
        let mut masked = None;
        for point in points {
            check_rows(tokens, point.view())?;
            let (toks, embeds, replaced) = self.masked_inputs(tokens, point.view(), target)?;
            let (x, pre) = self.stack_input(embeds.view())?;
            xs.push(x);
            pres.push(pre);
            masked = Some((toks, replaced));
        }
        let Some((tokens, replaced)) = masked else {
            return Ok(Vec::new());
        };
        let views: Vec<ArrayView2<'_, f32>> = xs.iter().map(|x| x.view()).collect();
        let x = ndarray::concatenate(Axis(0), &views)
            .map_err(|e| GradError::BadTarget(format!("the points do not stack: {e}")))?;
        drop(views);
        drop(xs);
        let is_pad: Vec<bool> = tokens.iter().map(Token::is_pad).collect();
        let opts = self.grad_options(opts);
        let (hidden, tape) = self.stack().forward_taped(x, &is_pad, &opts)?;
        let mut d_hidden = Array2::<f32>::zeros(hidden.raw_dim());
        let mut values = Vec::with_capacity(points.len());
        for (i, mut d) in d_hidden.axis_chunks_iter_mut(Axis(0), len).enumerate() {
            let rows = hidden.slice(ndarray::s![i * len..(i + 1) * len, ..]);
            let (value, g) = self.objective(rows, target, true)?;
            if let Some(g) = g {
                d.assign(&g);
            }
            values.push(value);
        }
        drop(hidden);
        let back = self.stack().backward(&tape, d_hidden, false)?;
        drop(tape);
        let mut out = Vec::with_capacity(points.len());
        for ((value, pre), dx) in values
            .into_iter()
            .zip(&pres)
            .zip(back.d_input.axis_chunks_iter(Axis(0), len))
        {
            let mut d_embeds = self.stack_input_backward(pre.as_ref(), dx.to_owned());
            if let Some(position) = replaced {
                d_embeds.row_mut(position).fill(0.0);
            }
            out.push(Gradient {
                value,
                d_embeds,
                attention_relevance: None,
            });
        }
        Ok(out)
    }
}

/// One embedding row per token.
fn check_rows(tokens: &[Token], embeds: ArrayView2<'_, f32>) -> Result<(), GradError> {
    if tokens.len() == embeds.nrows() {
        Ok(())
    } else {
        Err(GradError::BadTarget(format!(
            "{} embedding rows for {} tokens",
            embeds.nrows(),
            tokens.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lm_head::logprobs_from_hidden;

    #[test]
    fn logprobs_from_hidden_is_in_scope() {
        // The f32 log-probs used for the default token agree with the f64 objective's argmax
        // on a hand-made head: W rows [1,0], [0,1], h = [2, 1] → word 0.
        let w = ndarray::array![[1.0f32, 0.0], [0.0, 1.0]];
        let lp = logprobs_from_hidden(ndarray::array![[2.0f32, 1.0]].view(), w.view()).unwrap();
        assert_eq!(top_k(lp.row(0), 1)[0].0, 0);
        // log p(0) = 2 − ln(e² + e) = −0.313262.
        let (v, g) = logprob_of_row(&[2.0, 1.0], w.view(), None, 0, None, true);
        assert!((v + 0.313_262).abs() < 1e-6);
        // ∂/∂h = W_0 − p·W = [1 − p0, −p1] with p1 = e/(e² + e) = 0.268941.
        let g = g.unwrap();
        assert!((g[0] - 0.268_941).abs() < 1e-6 && (g[1] + 0.268_941).abs() < 1e-6);
    }
}
