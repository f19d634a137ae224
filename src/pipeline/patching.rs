//! Activation patching through the pipeline: the clean and corrupted runs, then one resumed
//! partial pass of the corrupted run per patched cell (see `pipeline::answer`).

use super::answer::{Progress, captured_run, readout, resolve_target, take};
use super::{PipelineError, Run, RunInput, forward_intervened, input_tokens};
use crate::analysis::answer::patching::{self, PatchSite, Patching};
use crate::analysis::answer::{self, AnswerError, Target};
use crate::engine::{Captured, FrozenRows, Interventions, Override, Resume, RunOptions, Site};
use crate::grad::TargetSpec;
use crate::model::LoadedModel;
use ndarray::{Array2, ArrayView2, s};
use rayon::prelude::*;
use std::sync::Arc;

/// Activation patching and the two runs it compares.
pub struct PatchingReport {
    /// The clean run.
    pub clean: Run,
    /// The corrupted run.
    pub corrupted: Run,
    /// The target.
    pub target: Target,
    /// The recovery maps.
    pub patching: Patching,
}

/// Patches every (layer, position) of `site` (every (layer, head) for `head`) of the corrupted
/// run with the clean run's value and resumes it from there: the recovery of the metric at the
/// target (`spec`, default the clean run's top-1 at the last token).
pub fn patching(
    model: &LoadedModel,
    clean_input: &RunInput,
    corrupted_input: &RunInput,
    opts: &RunOptions,
    spec: Option<&TargetSpec>,
    site: PatchSite,
    progress: Progress<'_>,
) -> Result<PatchingReport, PipelineError> {
    let readout = readout(model)?;
    let info = model.info();
    let (layers, heads) = (info.layers, info.heads);
    let clean_tokens = input_tokens(model, clean_input, 0)?;
    let corrupted_tokens = input_tokens(model, corrupted_input, 0)?;
    let n = clean_tokens.len();
    if corrupted_tokens.len() != n {
        return Err(AnswerError::Lengths {
            clean: n,
            corrupted: corrupted_tokens.len(),
        }
        .into());
    }
    let per_layer = if site == PatchSite::Head { heads } else { n };
    let total = 2 + layers * per_layer;
    let opts = RunOptions {
        keep_maps: false,
        keep_hidden: false,
        keep_layer_norms: false,
        keep_residuals: false,
        trace_layer: None,
        ..opts.clone()
    };
    let site_of = |l: usize, h: usize| match site {
        PatchSite::Resid => Site::Resid(l),
        PatchSite::Attn => Site::Attn(l),
        PatchSite::Mlp => Site::Mlp(l),
        PatchSite::Head => Site::Head(l, h),
    };
    let mut clean_sites: Vec<Site> = vec![Site::Resid(layers)];
    for l in 0..layers {
        match site {
            PatchSite::Head => clean_sites.extend((0..heads).map(|h| site_of(l, h))),
            PatchSite::Resid => {}
            _ => clean_sites.push(site_of(l, 0)),
        }
    }
    // Resid(l) of the clean run: the patched values for `resid` (and nothing else needs it).
    if site == PatchSite::Resid {
        clean_sites.extend((0..layers).map(Site::Resid));
    }
    let (clean, mut clean_cap) = captured_run(
        model,
        clean_input,
        &opts,
        clean_sites.clone(),
        3,
        &mut |_| true,
    )?;
    if !progress(1, total) {
        return Err(PipelineError::Cancelled);
    }
    let mut corrupted_sites: Vec<Site> = (0..=layers).map(Site::Resid).collect();
    corrupted_sites.extend(
        clean_sites
            .iter()
            .copied()
            .filter(|s| !matches!(s, Site::Resid(_))),
    );
    let (corrupted, mut corrupted_cap) = captured_run(
        model,
        corrupted_input,
        &opts,
        corrupted_sites,
        3,
        &mut |_| true,
    )?;
    if !progress(2, total) {
        return Err(PipelineError::Cancelled);
    }
    let clean_final = take(&mut clean_cap, Site::Resid(layers))?;
    let clean_resid: Vec<Array2<f32>> = if site == PatchSite::Resid {
        (0..layers)
            .map(|l| take(&mut clean_cap, Site::Resid(l)))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let corrupted_resid: Arc<Vec<Array2<f32>>> = Arc::new(
        (0..=layers)
            .map(|l| take(&mut corrupted_cap, Site::Resid(l)))
            .collect::<Result<_, _>>()?,
    );
    let target = resolve_target(model, &readout, &clean.tokens, clean_final.view(), spec)?;
    let p = target.position;
    let metric_at = |x_l: ArrayView2<'_, f32>| {
        let normed = readout.normed(x_l.slice(s![p..=p, ..]));
        answer::metric(&readout, normed.row(0), &target)
    };
    let metric_clean = metric_at(clean_final.view());
    let metric_corrupted = metric_at(corrupted_resid[layers].view());
    patching::check_metrics(metric_clean, metric_corrupted)?;
    // Each cell is one partial run on one thread; the cells run side by side.
    let cell_opts = RunOptions {
        threads: Some(1),
        ..opts.clone()
    };
    let values = |cap: &mut Captured, l: usize| -> Result<Vec<Array2<f32>>, PipelineError> {
        match site {
            PatchSite::Head => (0..heads).map(|h| take(cap, site_of(l, h))).collect(),
            PatchSite::Resid => Ok(Vec::new()),
            _ => Ok(vec![take(cap, site_of(l, 0))?]),
        }
    };
    let transformer = model.model().transformer();
    let is_pad: Vec<bool> = corrupted.tokens.iter().map(|t| t.is_pad()).collect();
    let mut recovery = vec![vec![0.0; per_layer]; layers];
    let mut done = 2;
    let chunk = 2 * rayon::current_num_threads().max(1);
    for (l, row) in recovery.iter_mut().enumerate() {
        let clean_values = values(&mut clean_cap, l)?;
        let corrupted_values = values(&mut corrupted_cap, l)?;
        let (clean_of, corrupted_of) = match site {
            PatchSite::Resid => (&clean_resid[l], &corrupted_resid[l]),
            PatchSite::Head => (&clean_values[0], &corrupted_values[0]),
            _ => (&clean_values[0], &corrupted_values[0]),
        };
        let cell = |idx: usize| -> Result<f64, PipelineError> {
            // The first row the patch changes; a patch that writes the value already there
            // changes nothing: exactly 0.
            let first_changed = match site {
                PatchSite::Head => clean_values[idx]
                    .outer_iter()
                    .zip(corrupted_values[idx].outer_iter())
                    .position(|(a, b)| a != b),
                _ => (clean_of.row(idx) != corrupted_of.row(idx)).then_some(idx),
            };
            let Some(from) = first_changed else {
                return Ok(0.0);
            };
            let mut resid = corrupted_resid[l].clone();
            let mut iv = Interventions::capture([Site::Resid(layers)]);
            match site {
                PatchSite::Resid => resid.row_mut(idx).assign(&clean_of.row(idx)),
                PatchSite::Attn | PatchSite::Mlp => iv.overrides.push(Override {
                    site: site_of(l, 0),
                    value: clean_of.clone(),
                    positions: Some(vec![idx]),
                }),
                PatchSite::Head => iv.overrides.push(Override {
                    site: site_of(l, idx),
                    value: clean_values[idx].clone(),
                    positions: None,
                }),
            }
            // Under a causal mask the rows before `from` are the corrupted run's: a row after
            // the target's changes nothing (exactly 0), and the pass recomputes only the rows
            // from `from` on.
            let freezable = from > 0
                && transformer
                    .can_freeze_rows(from, &is_pad, l, &cell_opts, &iv)
                    .is_ok();
            if freezable && from > p {
                return Ok(0.0);
            }
            let frozen = freezable.then(|| FrozenRows {
                from,
                resid: Arc::clone(&corrupted_resid),
            });
            let resume = Resume {
                layer: l,
                resid,
                maps: Vec::new(),
                layer_norms: Vec::new(),
                frozen,
            };
            let (_, mut cap) = forward_intervened(
                model,
                &corrupted.tokens,
                &cell_opts,
                &iv,
                Some(resume),
                corrupted_input.file.as_deref(),
                &mut |_| true,
            )?;
            let x_l = take(&mut cap, Site::Resid(layers))?;
            Ok(patching::recovery(
                metric_at(x_l.view()),
                metric_clean,
                metric_corrupted,
            ))
        };
        for start in (0..per_layer).step_by(chunk) {
            let end = (start + chunk).min(per_layer);
            let got: Vec<Result<f64, PipelineError>> =
                (start..end).into_par_iter().map(cell).collect();
            for (slot, value) in row[start..end].iter_mut().zip(got) {
                *slot = value?;
            }
            done += end - start;
            if !progress(done, total) {
                return Err(PipelineError::Cancelled);
            }
        }
    }
    Ok(PatchingReport {
        clean,
        corrupted,
        target,
        patching: Patching {
            site,
            metric_clean,
            metric_corrupted,
            recovery,
        },
    })
}
