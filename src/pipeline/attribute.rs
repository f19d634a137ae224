//! Attribution through the one pipeline: model + input + options + [`AttributeRequest`] →
//! [`Attribution`], for the CLI's `attribute` and the app's Saliency view alike.
//!
//! The target's defaults are resolved once, on the unperturbed input (for `mlm`, after token P
//! is replaced by the mask token), and held fixed for every perturbed run. With `--generate K`
//! the model continues the prompt greedily (each step's default `logprob` target is the argmax
//! next token) and every generated token's log-probability is attributed over the tokens before
//! it.

use super::{PipelineError, RunInput};
use crate::analysis::attribution::{
    self, AttributeRequest, Attribution, AttributionError, Generated, Method,
};
use crate::engine::{AttentionMaps, EngineError, RunOptions};
use crate::grad::{
    Differentiable, GradError, ResolvedTarget, SpecialToken, TargetKind, TargetSpec,
};
use crate::io::TokenInput;
use crate::model::LoadedModel;
use crate::tokenize::Token;

/// The model as a differentiable function of its input embeddings (`grad::model`).
fn differentiable(model: &LoadedModel) -> &dyn Differentiable {
    model
}

/// The target kinds `model` supports, in `attnviz info`'s order.
pub fn supported_targets(model: &LoadedModel) -> Vec<TargetKind> {
    let have = differentiable(model).supported_targets();
    TargetKind::ALL
        .iter()
        .copied()
        .filter(|k| have.contains(k))
        .collect()
}

/// A short name of the model for messages: the checkpoint folder's name, or `demo`.
fn model_name(model: &LoadedModel) -> String {
    match model.dir() {
        Some(dir) => dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        None => "the demo model".to_owned(),
    }
}

/// Turns an attribution error into the pipeline's (cancelling stays [`PipelineError::Cancelled`]).
fn lift(e: AttributionError) -> PipelineError {
    match e {
        AttributionError::Cancelled => PipelineError::Cancelled,
        AttributionError::Grad(GradError::Engine(EngineError::Cancelled)) => {
            PipelineError::Cancelled
        }
        other => PipelineError::Attribution(other),
    }
}

fn grad_err(e: GradError) -> PipelineError {
    lift(AttributionError::Grad(e))
}

/// Attributes `req`'s target over the tokens of `input`: tokens (with the same length and
/// memory checks as [`super::run`]), the target resolved once, then the method. `progress` gets
/// the fraction done (0..=1); returning false cancels with [`PipelineError::Cancelled`].
pub fn attribute(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    req: &AttributeRequest,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Attribution, PipelineError> {
    req.validate().map_err(lift)?;
    let diff = differentiable(model);
    let name = model_name(model);
    let supported = supported_targets(model);
    if !supported.contains(&req.target.kind) {
        let list: Vec<&str> = supported.iter().map(|k| k.name()).collect();
        return Err(grad_err(GradError::Unsupported {
            model: name,
            kind: req.target.kind,
            supported: if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            },
        }));
    }
    let extra = req.generate.unwrap_or(0);
    let mut tokens = super::input_tokens(model, input, extra)?;
    let needs = check_size(model, input, opts, &tokens, extra)?;
    // What integrated gradients' points in flight may add beyond the one counted.
    let spare = input.memory_budget.saturating_sub(needs);
    if !progress(0.0) {
        return Err(PipelineError::Cancelled);
    }
    if req.target.kind == TargetKind::Mlm
        && let Some(p) = req.target.position
        && p < tokens.len()
    {
        let mask = diff.special_token(SpecialToken::Mask).ok_or_else(|| {
            lift(AttributionError::NoSpecialToken {
                what: "the mlm target".to_owned(),
                setting: None,
                token: "mask",
                model: name.clone(),
            })
        })?;
        if tokens[p].id != mask.id {
            tokens[p] = mask;
        }
    }
    let text_b = match &req.text_b {
        Some(text) => Some(super::text_b_tokens(model, text, input)?),
        None => None,
    };
    match req.generate {
        Some(k) => generate(model, tokens, opts, req, k, spare, progress),
        None => {
            let mut target = diff
                .resolve_target(&tokens, &req.target, text_b.as_deref(), opts)
                .map_err(grad_err)?;
            if target.kind == TargetKind::Similarity {
                target.text_b.clone_from(&req.text_b);
            }
            let one = score_tokens(model, &tokens, &target, opts, req, spare, progress)?;
            let style = model.vocab_style();
            let (scores, labels, words) = match req.aggregate {
                attribution::Aggregate::Token => (
                    one.scores,
                    crate::tokenize::display_labels(&tokens, &style),
                    None,
                ),
                attribution::Aggregate::Word => {
                    let (s, l) = attribution::aggregate_words(&tokens, &one.scores, &style);
                    (s, l, Some(attribution::word_groups(&tokens, &style)))
                }
            };
            Ok(Attribution {
                mask: model.model().applied_mask(opts, tokens.len()),
                ablations: checked_ablations(opts),
                tokens,
                method: req.method,
                target,
                steps: one.steps,
                baseline: one.baseline,
                occlude: one.occlude,
                completeness_gap: one.gap,
                scores,
                labels,
                words,
                generated: None,
            })
        }
    }
}

/// The memory budget of attributing `tokens` plus `extra` generated ones: a backward pass
/// keeps about three times the forward's activations and the maps, plus the transposed copy
/// of the weights it packs. Returns the bytes it counted.
fn check_size(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    tokens: &[Token],
    extra: usize,
) -> Result<u64, PipelineError> {
    let with_maps = RunOptions {
        keep_maps: true,
        ..opts.clone()
    };
    super::check_options(&model.info(), opts)?;
    // The backward pass also packs the weights' transposes once: count them.
    let transposed = model.model().transformer().packed_weight_bytes();
    super::check_budget_plus(
        model,
        input,
        &with_maps,
        tokens.len().saturating_add(extra),
        3,
        transposed,
    )
}

/// One method's scores over `tokens`, with what it used.
struct Scored {
    scores: Vec<f32>,
    steps: Option<usize>,
    baseline: Option<attribution::Baseline>,
    occlude: Option<attribution::Occlude>,
    gap: Option<f64>,
}

/// How integrated gradients batches `steps` points of `tokens` tokens on `model` under
/// `opts`, when the points in flight may hold `spare` bytes beyond the first (see
/// [`attribution::PointBatches::decide`]): the one place it is decided.
pub fn point_batches(
    model: &LoadedModel,
    tokens: usize,
    steps: usize,
    opts: &RunOptions,
    spare: u64,
) -> attribution::PointBatches {
    let point = model.model().transformer().tape_bytes(tokens);
    let threads = opts.threads.unwrap_or_else(crate::engine::pool_threads);
    attribution::PointBatches::decide(tokens, steps, threads, point, point.saturating_add(spare))
}

/// Runs `req.method` on `tokens` for the resolved `target`.
#[allow(clippy::too_many_arguments)]
fn score_tokens(
    model: &LoadedModel,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
    req: &AttributeRequest,
    spare: u64,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Scored, PipelineError> {
    let diff = differentiable(model);
    let name = model_name(model);
    let plain = |scores| Scored {
        scores,
        steps: None,
        baseline: None,
        occlude: None,
        gap: None,
    };
    let scored = match req.method {
        Method::Gradient => plain(attribution::gradient(diff, tokens, target, opts).map_err(lift)?),
        Method::InputXGradient => {
            plain(attribution::input_x_gradient(diff, tokens, target, opts).map_err(lift)?)
        }
        Method::AttentionGradient => {
            plain(attribution::attention_gradient(diff, tokens, target, opts).map_err(lift)?)
        }
        Method::IntegratedGradients => {
            let steps = req.steps.unwrap_or(attribution::DEFAULT_STEPS);
            let baseline = req.baseline.unwrap_or_default();
            let batches = point_batches(model, tokens.len(), steps, opts, spare);
            let ig = attribution::integrated_gradients(
                diff, &name, tokens, target, opts, baseline, steps, batches, progress,
            )
            .map_err(lift)?;
            Scored {
                scores: ig.scores,
                steps: Some(steps),
                baseline: Some(baseline),
                occlude: None,
                gap: Some(ig.completeness_gap),
            }
        }
        Method::Occlusion => {
            let (how, scores) =
                attribution::occlusion(diff, &name, tokens, target, opts, req.occlude, progress)
                    .map_err(lift)?;
            Scored {
                occlude: Some(how),
                ..plain(scores)
            }
        }
        Method::Attention => plain(attribution::attention(&maps(model, tokens, opts)?, target)),
        Method::Rollout => plain(attribution::rollout(&maps(model, tokens, opts)?, target)),
    };
    if !progress(1.0) {
        return Err(PipelineError::Cancelled);
    }
    Ok(scored)
}

/// The attention maps of a forward pass over `tokens`.
fn maps(
    model: &LoadedModel,
    tokens: &[Token],
    opts: &RunOptions,
) -> Result<AttentionMaps, PipelineError> {
    let opts = RunOptions {
        keep_maps: true,
        trace_layer: None,
        ..opts.clone()
    };
    match model.model().forward(tokens, &opts) {
        Ok(run) => Ok(run.maps),
        Err(EngineError::Cancelled) => Err(PipelineError::Cancelled),
        Err(error) => Err(PipelineError::Engine { error, file: None }),
    }
}

/// `--generate k`: greedy continuation, then each generated token's log-probability attributed
/// over the tokens before it.
fn generate(
    model: &LoadedModel,
    mut tokens: Vec<Token>,
    opts: &RunOptions,
    req: &AttributeRequest,
    k: usize,
    spare: u64,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<Attribution, PipelineError> {
    let diff = differentiable(model);
    let n = tokens.len();
    let spec = TargetSpec {
        kind: TargetKind::Logprob,
        position: None,
        token: None,
        foil: None,
    };
    // Generating is k forwards; attributing is k methods: the first tenth of the bar.
    let mut targets = Vec::with_capacity(k);
    for step in 0..k {
        let target = diff
            .resolve_target(&tokens, &spec, None, opts)
            .map_err(grad_err)?;
        let id = target.token.ok_or_else(|| {
            grad_err(GradError::BadTarget(
                "the model resolved no next token to generate".to_owned(),
            ))
        })?;
        let next = model
            .tokens(&TokenInput::Ids(vec![id]), None)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                PipelineError::Input(crate::model::InputError {
                    reason: format!("generated token id {id} is not in the vocabulary"),
                    file: None,
                })
            })?;
        tokens.push(next);
        targets.push(target);
        if !progress(0.1 * (step + 1) as f32 / k as f32) {
            return Err(PipelineError::Cancelled);
        }
    }
    let total = tokens.len();
    let mut rows = Vec::with_capacity(k);
    let mut first: Option<Scored> = None;
    for (step, target) in targets.iter().enumerate() {
        let prefix = &tokens[..n + step];
        let (lo, hi) = (
            0.1 + 0.9 * step as f32 / k as f32,
            0.1 + 0.9 * (step + 1) as f32 / k as f32,
        );
        let mut sub = |f: f32| progress(lo + (hi - lo) * f.clamp(0.0, 1.0));
        let scored = score_tokens(model, prefix, target, opts, req, spare, &mut sub)?;
        let mut row: Vec<Option<f32>> = scored.scores.iter().map(|&s| Some(s)).collect();
        row.resize(total, None);
        rows.push(row);
        if first.is_none() {
            first = Some(scored);
        }
    }
    let first = first.ok_or_else(|| {
        lift(AttributionError::Setting {
            setting: crate::analysis::attribution::RequestSetting::Generate,
            reason: "a generated continuation needs at least 1 token".to_owned(),
        })
    })?;
    let scores: Vec<f32> = rows
        .first()
        .map(|r| r.iter().map(|v| v.unwrap_or(0.0)).collect())
        .unwrap_or_default();
    let labels = crate::tokenize::display_labels(&tokens, &model.vocab_style());
    let target = targets.first().cloned().ok_or(PipelineError::Cancelled)?;
    Ok(Attribution {
        // The prompt's run: n tokens (each later row adds the tokens generated before it).
        mask: model.model().applied_mask(opts, n),
        ablations: checked_ablations(opts),
        tokens,
        method: req.method,
        target,
        steps: first.steps,
        baseline: first.baseline,
        occlude: first.occlude,
        completeness_gap: first.gap,
        scores,
        labels,
        words: None,
        generated: Some(Generated {
            from: n,
            targets,
            scores: rows,
        }),
    })
}

#[cfg(test)]
#[path = "attribute_tests.rs"]
mod tests;

/// The run's ablations in their one order (checked before any run by `check_options`).
fn checked_ablations(opts: &RunOptions) -> Vec<crate::engine::Ablation> {
    crate::engine::Ablation::normalized(&opts.ablations).unwrap_or_else(|_| opts.ablations.clone())
}
