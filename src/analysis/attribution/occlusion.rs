//! Occlusion: how much T drops when one token is hidden.

use super::{AttributionError, Occlude, special_token_name};
use crate::engine::RunOptions;
use crate::grad::{Differentiable, ResolvedTarget, SpecialToken, TargetKind};
use crate::tokenize::Token;
use ndarray::{Array2, Axis};

/// The occlusion the model can do when none is asked for: its mask token, else its unknown
/// token, else removal.
pub(crate) fn default_occlude(model: &dyn Differentiable) -> Occlude {
    if model.special_token(SpecialToken::Mask).is_some() {
        Occlude::Mask
    } else if model.special_token(SpecialToken::Unknown).is_some() {
        Occlude::Unk
    } else {
        Occlude::Remove
    }
}

/// score_i = T(original) − T(token i occluded), with `occlude` (by default
/// [`default_occlude`]). Returns the occlusion used and the scores.
///
/// Special tokens are not occluded (score 0), nor is the masked position P of an `mlm` target.
/// P keeps meaning the original position: after removing token i < P the target reads position
/// P − 1, and removing token P itself (`logprob`, `contrast`) reads the next-token distribution
/// at P − 1 (0 when P is 0: nothing would be left before it). `progress` gets the fraction done
/// after each token; returning false cancels.
#[allow(clippy::too_many_arguments)]
pub fn occlusion(
    model: &dyn Differentiable,
    model_name: &str,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
    occlude: Option<Occlude>,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<(Occlude, Vec<f32>), AttributionError> {
    let occlude = occlude.unwrap_or_else(|| default_occlude(model));
    let embeds = model.input_embeddings(tokens)?;
    let replacement = match occlude {
        Occlude::Remove => None,
        Occlude::Mask | Occlude::Unk => {
            let which = if occlude == Occlude::Mask {
                SpecialToken::Mask
            } else {
                SpecialToken::Unknown
            };
            let token =
                model
                    .special_token(which)
                    .ok_or_else(|| AttributionError::NoSpecialToken {
                        what: format!("occluding with {occlude}"),
                        setting: Some(super::RequestSetting::Occlude),
                        token: special_token_name(which),
                        model: model_name.to_owned(),
                    })?;
            let row = model.input_embeddings(std::slice::from_ref(&token))?;
            Some((token, row))
        }
    };
    let original = model.target_value(tokens, embeds.view(), target, opts)?;
    let n = tokens.len();
    let mut scores = vec![0.0f32; n];
    for (i, score) in scores.iter_mut().enumerate() {
        let skip =
            tokens[i].is_special || (target.kind == TargetKind::Mlm && target.position == Some(i));
        if !skip {
            let value = match &replacement {
                Some((token, row)) => {
                    let mut toks = tokens.to_vec();
                    toks[i] = token.clone();
                    let mut e = embeds.clone();
                    e.row_mut(i).assign(&row.row(0));
                    Some(model.target_value(&toks, e.view(), target, opts)?)
                }
                None => match removed_target(target, i) {
                    Some(shifted) if n > 1 => {
                        let mut toks = tokens.to_vec();
                        toks.remove(i);
                        let e = remove_row(&embeds, i);
                        // The mask was written for the full input: map it onto this one.
                        let shorter = RunOptions {
                            mask: opts.mask.without_token(i),
                            ..opts.clone()
                        };
                        Some(model.target_value(&toks, e.view(), &shifted, &shorter)?)
                    }
                    _ => None,
                },
            };
            if let Some(v) = value {
                *score = (original - v) as f32;
            }
        }
        if !progress((i + 1) as f32 / n as f32) {
            return Err(AttributionError::Cancelled);
        }
    }
    Ok((occlude, scores))
}

/// The target after removing token `i`: its position moves left when i ≤ P; `None` when P is 0
/// and token 0 goes.
fn removed_target(target: &ResolvedTarget, i: usize) -> Option<ResolvedTarget> {
    let mut t = target.clone();
    if let Some(p) = target.position
        && i <= p
    {
        t.position = Some(p.checked_sub(1)?);
    }
    Some(t)
}

/// `a` without row `i`.
fn remove_row(a: &Array2<f32>, i: usize) -> Array2<f32> {
    let keep: Vec<usize> = (0..a.nrows()).filter(|&r| r != i).collect();
    a.select(Axis(0), &keep)
}
