//! The runs behind "where the answer forms" (`analysis::answer`): each analysis is one forward
//! pass through the pipeline (its token limit, memory budget, options and cancellation) that
//! captures the sites it reads, plus, for patching, partial passes resumed from a stored
//! residual. Every run follows the active ablations and mask in `opts`.

use super::{
    PipelineError, Run, RunInput, RunTimings, check_budget, check_options, forward_intervened,
    input_tokens, ms_since,
};
use crate::analysis::answer::contributions::{self, Contributions, FrozenReadout, Parts};
use crate::analysis::answer::lens::{self, Lens};
use crate::analysis::answer::routes::{HeadParts, LayerParts, RouteGraph};
use crate::analysis::answer::{AnswerError, Readout, ReadoutNorm, Target};
use crate::engine::{
    AblationMode, Captured, EngineError, Interventions, NormPlacement, RunOptions, Site,
    Transformer,
};
use crate::grad::{TargetKind, TargetSpec};
use crate::model::{LoadedModel, PredictError};
use crate::tokenize::Token;
use ndarray::{Array2, ArrayView2, s};
use std::time::Instant;

/// Progress of a multi-step analysis: called with (steps done, steps in all); returning false
/// cancels it.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize) -> bool;

/// The model's read-out: the final norm (or BERT's masked-LM transform) and the unembedding.
/// The demo model and encoders without a masked-LM head have none: the one "no LM head" error.
pub fn readout(model: &LoadedModel) -> Result<Readout<'_>, PipelineError> {
    let no_head = || {
        PipelineError::Predict(PredictError::NoHead {
            dir: model.dir().map(ToOwned::to_owned),
        })
    };
    let ckpt = model.as_checkpoint().ok_or_else(no_head)?;
    if let Some(weight) = ckpt.head_weight() {
        let norm = match ckpt.transformer().final_norm() {
            Some(norm) => ReadoutNorm::Norm(norm),
            None => ReadoutNorm::None,
        };
        return Ok(Readout {
            norm,
            weight,
            bias: None,
        });
    }
    let mlm = ckpt.mlm_head().ok_or_else(no_head)?;
    Ok(Readout {
        norm: ReadoutNorm::Mlm(mlm),
        weight: ckpt.word_embeddings(),
        bias: Some(mlm.bias.view()),
    })
}

/// One forward pass of `input` under `opts` through the pipeline's checks, capturing `sites`.
/// `factor` counts the runs the caller holds at once, for the memory budget.
pub fn captured_run(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    sites: Vec<Site>,
    factor: u64,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(Run, Captured), PipelineError> {
    let start = Instant::now();
    let tokens = input_tokens(model, input, 0)?;
    let tokenize_ms = ms_since(start);
    check_options(&model.info(), opts)?;
    check_budget(model, input, opts, tokens.len(), factor.max(1))?;
    let start = Instant::now();
    let iv = Interventions::capture(sites);
    let (attention, captured) = forward_intervened(
        model,
        &tokens,
        opts,
        &iv,
        None,
        input.file.as_deref(),
        progress,
    )?;
    let text = match &input.input {
        crate::io::TokenInput::Text(text) => Some(text.clone()),
        _ => None,
    };
    let timings = RunTimings {
        tokenize_ms,
        forward_ms: ms_since(start),
    };
    Ok((
        Run::from_forward(model, attention, opts, text, timings),
        captured,
    ))
}

/// The captured value of `site`, or an error naming it (a capture the engine skipped).
pub(super) fn take(captured: &mut Captured, site: Site) -> Result<Array2<f32>, PipelineError> {
    captured.take(site).ok_or_else(|| PipelineError::Engine {
        error: EngineError::Unsupported(format!("{site} was not captured")),
        file: None,
    })
}

/// Resolves `spec` on `tokens`: P (default the last token), T (default the model's own top-1 at
/// P, read from `final_resid`, x_L) and the foil.
pub fn resolve_target(
    model: &LoadedModel,
    readout: &Readout<'_>,
    tokens: &[Token],
    final_resid: ArrayView2<'_, f32>,
    spec: Option<&TargetSpec>,
) -> Result<Target, PipelineError> {
    let bad = |m: String| PipelineError::Answer(AnswerError::Bad(m));
    let len = tokens.len();
    if let Some(spec) = spec
        && spec.kind == TargetKind::Similarity
    {
        return Err(bad(
            "the similarity target has no token to follow: use logprob:P:T or contrast:P:T:F"
                .to_owned(),
        ));
    }
    let position = spec
        .and_then(|s| s.position)
        .unwrap_or(len.saturating_sub(1));
    if position >= len {
        return Err(bad(format!(
            "position {position} is out of range: the input has {len} tokens (0-based)"
        )));
    }
    let id = |r: &crate::grad::TokenRef| {
        model
            .token_id(r)
            .map_err(|e| PipelineError::Answer(AnswerError::Bad(e.to_string())))
    };
    let token = match spec.and_then(|s| s.token.as_ref()) {
        Some(r) => id(r)?,
        None => {
            let row = final_resid.slice(s![position..=position, ..]);
            let lp = lens::logprobs(readout, row);
            crate::model::lm_head::top_k(lp.row(0), 1)
                .first()
                .map(|&(id, _)| id)
                .ok_or_else(|| bad("the vocabulary is empty".to_owned()))?
        }
    };
    let foil = spec.and_then(|s| s.foil.as_ref()).map(id).transpose()?;
    let target = Target {
        position,
        token,
        foil,
    };
    readout.check(&target)?;
    Ok(target)
}

/// Which positions the lens reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LensPositions {
    /// Every token.
    All,
    /// These tokens (0-based).
    These(Vec<usize>),
}

/// A logit lens and the run it read.
pub struct LensReport {
    /// The run (tokens, mask, model, options).
    pub run: Run,
    /// The target whose rank and log-probability each cell reports.
    pub target: Target,
    /// The table.
    pub lens: Lens,
    /// The lens at the target's position, one cell per layer (read even when the table's
    /// positions leave it out).
    pub at_target: Vec<lens::LensCell>,
}

/// The logit lens of `input` at `positions`, the top `k` per cell, with the target `spec`
/// (default: the model's own top-1 at the last token).
pub fn logit_lens(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    spec: Option<&TargetSpec>,
    positions: &LensPositions,
    k: usize,
    progress: Progress<'_>,
) -> Result<LensReport, PipelineError> {
    let readout = readout(model)?;
    let layers = model.info().layers;
    let total = 2 * layers + 1;
    let opts = RunOptions {
        keep_maps: false,
        ..opts.clone()
    };
    let (run, mut captured) = captured_run(
        model,
        input,
        &opts,
        (0..=layers).map(Site::Resid).collect(),
        1,
        &mut |l| progress(l, total),
    )?;
    let states: Vec<Array2<f32>> = (0..=layers)
        .map(|l| take(&mut captured, Site::Resid(l)))
        .collect::<Result<_, _>>()?;
    let target = resolve_target(model, &readout, &run.tokens, states[layers].view(), spec)?;
    let positions: Vec<usize> = match positions {
        LensPositions::All => (0..run.tokens.len()).collect(),
        LensPositions::These(p) => p.clone(),
    };
    let views: Vec<ArrayView2<'_, f32>> = states.iter().map(|s| s.view()).collect();
    let lens = lens::lens(
        &readout,
        &views,
        &positions,
        k,
        Some(target.token),
        &mut |l| progress(layers + l, total),
    )?
    .ok_or(PipelineError::Cancelled)?;
    let at_target = match positions.iter().position(|&q| q == target.position) {
        Some(i) => lens.cells.iter().map(|layer| layer[i].clone()).collect(),
        None => {
            let at = lens::lens(
                &readout,
                &views,
                &[target.position],
                1,
                Some(target.token),
                &mut |_| true,
            )?
            .ok_or(PipelineError::Cancelled)?;
            at.cells.into_iter().flatten().collect()
        }
    };
    Ok(LensReport {
        run,
        target,
        lens,
        at_target,
    })
}

/// Refuses the analyses that need a pre-norm residual stream, and teaching mistakes (which
/// change the blocks these analyses decompose).
fn check_decomposable(
    transformer: &Transformer,
    readout: &Readout<'_>,
    opts: &RunOptions,
    what: &'static str,
) -> Result<(), PipelineError> {
    if transformer.placement() == NormPlacement::Post || matches!(readout.norm, ReadoutNorm::Mlm(_))
    {
        return Err(AnswerError::PostNorm { what }.into());
    }
    if !opts.mistakes.is_empty() {
        return Err(AnswerError::Bad(format!(
            "{what} decompose the model as it is: turn the teaching mistakes off first"
        ))
        .into());
    }
    Ok(())
}

/// Head h's output through its slice of the output projection: z_h W_O^h for each row of `z`
/// ([token, d_head]). Shape: [token, d_model].
fn through_wo(
    transformer: &Transformer,
    layer: usize,
    head: usize,
    z: ArrayView2<'_, f32>,
) -> Array2<f32> {
    let dh = transformer.d_head();
    let wo = &transformer.blocks()[layer].attention.wo;
    z.dot(&wo.slice(s![head * dh..(head + 1) * dh, ..]))
}

/// v_{h,j} W_O^h for every key j of every query head h of block `layer`, from the block's
/// input x_l ([token, d_model]): the block's norm once, each key/value head's values once, then
/// each query head's slice of W_O. One [key, d_model] array per query head.
fn values_out(transformer: &Transformer, layer: usize, x: ArrayView2<'_, f32>) -> Vec<Array2<f32>> {
    let block = &transformer.blocks()[layer];
    let mut a = x.to_owned();
    if transformer.placement() == NormPlacement::Pre {
        block.attention_norm.apply(&mut a);
    }
    let dh = transformer.d_head();
    let group = (transformer.heads() / transformer.kv_heads().max(1)).max(1);
    let values: Vec<Array2<f32>> = (0..transformer.kv_heads())
        .map(|kv| {
            let mut v = a.dot(&block.attention.wv.slice(s![.., kv * dh..(kv + 1) * dh]));
            if let Some(b) = &block.attention.bv {
                v += &b.slice(s![kv * dh..(kv + 1) * dh]);
            }
            v
        })
        .collect();
    (0..transformer.heads())
        .map(|h| through_wo(transformer, layer, h, values[h / group].view()))
        .collect()
}

/// Direct contributions and what the per-key split needs.
pub struct ContributionsReport {
    /// The run.
    pub run: Run,
    /// The target.
    pub target: Target,
    /// The contributions.
    pub contributions: Contributions,
    /// x_l of every block (l in 0..L), for [`ContributionsReport::key_split`].
    pub resid: Vec<Array2<f32>>,
    /// The read-out frozen at x_L[P].
    pub frozen: FrozenReadout,
}

/// Direct contributions of `input` to the target `spec` (default: the model's own top-1 at the
/// last token).
pub fn contributions(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    spec: Option<&TargetSpec>,
    progress: Progress<'_>,
) -> Result<ContributionsReport, PipelineError> {
    let readout = readout(model)?;
    let transformer = model.model().transformer();
    check_decomposable(transformer, &readout, opts, "direct contributions")?;
    let info = model.info();
    let (layers, heads) = (info.layers, info.heads);
    let mut sites: Vec<Site> = (0..=layers).map(Site::Resid).collect();
    sites.extend((0..layers).map(Site::Mlp));
    sites.extend((0..layers).flat_map(|l| (0..heads).map(move |h| Site::Head(l, h))));
    let (run, mut captured) =
        captured_run(model, input, opts, sites, 2, &mut |l| progress(l, layers))?;
    let resid: Vec<Array2<f32>> = (0..=layers)
        .map(|l| take(&mut captured, Site::Resid(l)))
        .collect::<Result<_, _>>()?;
    let target = resolve_target(model, &readout, &run.tokens, resid[layers].view(), spec)?;
    let p = target.position;
    let mut head_rows = Vec::with_capacity(layers);
    let mut mlp_rows = Vec::with_capacity(layers);
    for l in 0..layers {
        let mut rows = Array2::zeros((heads, info.d_model));
        for h in 0..heads {
            let z = take(&mut captured, Site::Head(l, h))?;
            let out = through_wo(transformer, l, h, z.slice(s![p..=p, ..]));
            rows.row_mut(h).assign(&out.row(0));
        }
        head_rows.push(rows);
        mlp_rows.push(take(&mut captured, Site::Mlp(l))?.row(p).to_owned());
    }
    let parts = Parts {
        embeddings: resid[0].row(p),
        heads: head_rows,
        attn_bias: transformer
            .blocks()
            .iter()
            .map(|b| b.attention.bo.as_ref().map(|b| b.view()))
            .collect(),
        mlp: mlp_rows.iter().map(|m| m.view()).collect(),
    };
    let x_l = resid[layers].row(p);
    let result = contributions::contributions(&readout, x_l, &parts, &target)?;
    let frozen = FrozenReadout::new(&readout, x_l, &target)?;
    let mut resid = resid;
    resid.truncate(layers);
    Ok(ContributionsReport {
        run,
        target,
        contributions: result,
        resid,
        frozen,
    })
}

impl ContributionsReport {
    /// Every head of block `layer`: its contribution split over the keys at P, one entry per
    /// key adding up to its contribution (zeros for an ablated head, whose output no key
    /// carries).
    pub fn key_splits(
        &self,
        model: &LoadedModel,
        layer: usize,
    ) -> Result<Vec<Vec<f64>>, PipelineError> {
        let n = self.run.tokens.len();
        let transformer = model.model().transformer();
        let x = self.resid.get(layer).ok_or_else(|| {
            PipelineError::Answer(AnswerError::Bad(format!("layer {layer} does not exist")))
        })?;
        let outs = values_out(transformer, layer, x.view());
        outs.iter()
            .enumerate()
            .map(|(head, out)| {
                if crate::engine::Ablation::find(&self.run.ablations, layer, head).is_some() {
                    return Ok(vec![0.0; n]);
                }
                let map = self.run.maps.head(layer, head).ok_or_else(|| {
                    PipelineError::Answer(AnswerError::Bad(format!(
                        "the run kept no map of head {layer}.{head}"
                    )))
                })?;
                Ok(contributions::key_split(
                    &self.frozen,
                    map.row(self.target.position),
                    out.view(),
                ))
            })
            .collect()
    }
}

/// The routes graph of `input` (every importance, ready to be cut at any threshold).
pub fn routes(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    progress: Progress<'_>,
) -> Result<(Run, RouteGraph), PipelineError> {
    let readout = readout(model).ok();
    let transformer = model.model().transformer();
    if transformer.placement() == NormPlacement::Post {
        return Err(AnswerError::PostNorm {
            what: "information-flow routes",
        }
        .into());
    }
    if let Some(r) = &readout {
        check_decomposable(transformer, r, opts, "information-flow routes")?;
    } else if !opts.mistakes.is_empty() {
        return Err(AnswerError::Bad(
            "information-flow routes decompose the model as it is: turn the teaching mistakes off first"
                .to_owned(),
        )
        .into());
    }
    let info = model.info();
    let (layers, heads) = (info.layers, info.heads);
    let ablated: Vec<(usize, usize, AblationMode)> = opts
        .ablations
        .iter()
        .map(|a| (a.layer_idx, a.head_idx, a.mode))
        .collect();
    let mut sites: Vec<Site> = (0..layers).map(Site::Resid).collect();
    sites.extend((0..layers).map(Site::Attn));
    sites.extend((0..layers).map(Site::Mlp));
    sites.extend(ablated.iter().map(|&(l, h, _)| Site::Head(l, h)));
    let opts = RunOptions {
        keep_maps: true,
        ..opts.clone()
    };
    let total = 2 * layers;
    let (run, mut captured) =
        captured_run(model, input, &opts, sites, 2, &mut |l| progress(l, total))?;
    let mut x = Vec::with_capacity(layers);
    let mut attn = Vec::with_capacity(layers);
    let mut mlp = Vec::with_capacity(layers);
    for l in 0..layers {
        x.push(take(&mut captured, Site::Resid(l))?);
        attn.push(take(&mut captured, Site::Attn(l))?);
        mlp.push(take(&mut captured, Site::Mlp(l))?);
    }
    let patterns: Vec<Option<crate::engine::HeadMap>> = (0..layers * heads)
        .map(|i| run.maps.head(i / heads, i % heads))
        .collect();
    let mut parts = Vec::with_capacity(layers);
    for l in 0..layers {
        let block = &transformer.blocks()[l];
        let mut constant = block.attention.bo.clone();
        let mut head_parts = Vec::with_capacity(heads);
        let mut outs = values_out(transformer, l, x[l].view());
        for h in 0..heads {
            if let Some(&(_, _, mode)) = ablated.iter().find(|&&(al, ah, _)| al == l && ah == h) {
                if mode == AblationMode::Mean {
                    // A mean-ablated head writes the same row at every position: no key
                    // carries it, so it joins the residual's part.
                    let z = take(&mut captured, Site::Head(l, h))?;
                    let out = through_wo(transformer, l, h, z.slice(s![0..1, ..]));
                    let row = out.row(0).to_owned();
                    constant = Some(match constant {
                        Some(c) => c + &row,
                        None => row,
                    });
                }
                continue;
            }
            let pattern = patterns[l * heads + h].as_ref().ok_or_else(|| {
                PipelineError::Answer(AnswerError::Bad(format!(
                    "the run kept no map of head {l}.{h}"
                )))
            })?;
            head_parts.push(HeadParts {
                head: h,
                pattern: pattern.view(),
                out: std::mem::take(&mut outs[h]),
            });
        }
        parts.push(LayerParts {
            x: x[l].view(),
            attn: attn[l].view(),
            mlp: mlp[l].view(),
            constant,
            heads: head_parts,
        });
        if !progress(layers + l + 1, total) {
            return Err(PipelineError::Cancelled);
        }
    }
    let graph = RouteGraph::build(&parts, heads)?;
    drop(parts);
    Ok((run, graph))
}
