//! The gradient methods: gradient norm, input × gradient, integrated gradients and the
//! attention-gradient relevance (Chefer et al. 2021), over a `&dyn Differentiable`.

use super::{AttributionError, Baseline, special_token_name, target_row};
use crate::engine::RunOptions;
use crate::grad::{Differentiable, ResolvedTarget, SpecialToken};
use crate::tokenize::Token;
use ndarray::Array2;

/// ‖∂T/∂e_i‖₂ per token, with T's value.
pub fn gradient(
    model: &dyn Differentiable,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
) -> Result<Vec<f32>, AttributionError> {
    let embeds = model.input_embeddings(tokens)?;
    let g = model.gradient(tokens, embeds.view(), target, opts, false)?;
    Ok(g.d_embeds
        .rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .map(|&v| f64::from(v).powi(2))
                .sum::<f64>()
                .sqrt() as f32
        })
        .collect())
}

/// Σ_d e_{i,d} · ∂T/∂e_{i,d} per token.
pub fn input_x_gradient(
    model: &dyn Differentiable,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
) -> Result<Vec<f32>, AttributionError> {
    let embeds = model.input_embeddings(tokens)?;
    let g = model.gradient(tokens, embeds.view(), target, opts, false)?;
    Ok(row_dots(&embeds, &g.d_embeds, 1.0))
}

/// Σ_d a_{i,d} · b_{i,d} · scale per row, summed in f64.
fn row_dots(a: &Array2<f32>, b: &Array2<f32>, scale: f64) -> Vec<f32> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| {
            let dot: f64 = x
                .iter()
                .zip(y.iter())
                .map(|(&u, &v)| f64::from(u) * f64::from(v))
                .sum();
            (dot * scale) as f32
        })
        .collect()
}

/// Integrated gradients' scores and how far they are from complete.
#[derive(Clone, Debug, PartialEq)]
pub struct IntegratedGradients {
    /// One score per token.
    pub scores: Vec<f32>,
    /// Σ_i s_i − (T(e) − T(b)).
    pub completeness_gap: f64,
    /// T at the baseline.
    pub baseline_value: f64,
}

/// The baseline embeddings: zeros, or the pad or mask token's embedding in every row.
fn baseline_embeddings(
    model: &dyn Differentiable,
    embeds: &Array2<f32>,
    baseline: Baseline,
    model_name: &str,
) -> Result<Array2<f32>, AttributionError> {
    let which = match baseline {
        Baseline::Zero => return Ok(Array2::zeros(embeds.raw_dim())),
        Baseline::Pad => SpecialToken::Pad,
        Baseline::Mask => SpecialToken::Mask,
    };
    let token = model
        .special_token(which)
        .ok_or_else(|| AttributionError::NoSpecialToken {
            what: format!("the {baseline} baseline"),
            setting: Some(super::RequestSetting::Baseline),
            token: special_token_name(which),
            model: model_name.to_owned(),
        })?;
    let row = model.input_embeddings(std::slice::from_ref(&token))?;
    let mut out = Array2::zeros(embeds.raw_dim());
    for mut r in out.rows_mut() {
        r.assign(&row.row(0));
    }
    Ok(out)
}

/// How integrated gradients sends its points through the engine: `stacked` points in one
/// pass (their rows one after another, see [`Differentiable::gradients`]) and `side_by_side`
/// such passes at once, each on one thread. The scores are the same bits whatever the choice:
/// every point's gradient is, and they are added in step order.
///
/// Measured on SmolLM2-135M, 32 steps, on a 2-core Xeon (AVX-512): at 16 tokens, 8 points
/// stacked took 1.7–1.9 s against 4.1 s one by one (products 16 rows tall waste most of the
/// kernel, and a 16-token pass runs on one thread); at 128 tokens stacking gained nothing
/// (11.0–12.6 s against 11.0–12.0: a 128-row product already runs the kernel near its peak),
/// but two points side by side, one per thread, took 9.8–10.8 s against 11.4–11.5, because
/// neither thread then waits for the other between the pass's ~600 parallel steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PointBatches {
    /// Points per pass.
    pub stacked: usize,
    /// Passes at once, each on one thread.
    pub side_by_side: usize,
}

impl PointBatches {
    /// One point at a time, on every thread the engine gives a pass.
    pub const ONE: Self = Self {
        stacked: 1,
        side_by_side: 1,
    };

    /// Rows a stacked pass aims for: below it the products are too short for the kernel.
    pub const STACK_ROWS: usize = 128;
    /// The most points one pass stacks.
    pub const MAX_STACKED: usize = 8;

    /// The batches for `steps` points of `tokens` tokens, with `threads` threads, when each
    /// point's pass holds `point_bytes` (its tape) and the points in flight may hold `memory`
    /// bytes together: points stacked up to [`Self::STACK_ROWS`] rows, then one pass per
    /// thread while there are passes enough for every thread. Memory lowers the passes side by
    /// side first, then the points stacked; one point always runs.
    pub fn decide(
        tokens: usize,
        steps: usize,
        threads: usize,
        point_bytes: u64,
        memory: u64,
    ) -> Self {
        let steps = steps.max(1);
        let mut stacked = (Self::STACK_ROWS / tokens.max(1)).clamp(1, Self::MAX_STACKED.min(steps));
        let passes = steps.div_ceil(stacked);
        let mut side_by_side = if threads > 1 && passes >= threads {
            threads
        } else {
            1
        };
        let fits = |stacked: usize, side: usize| {
            (stacked * side) as u64 * point_bytes <= memory.max(point_bytes)
        };
        while side_by_side > 1 && !fits(stacked, side_by_side) {
            side_by_side -= 1;
        }
        while stacked > 1 && !fits(stacked, side_by_side) {
            stacked -= 1;
        }
        Self {
            stacked,
            side_by_side,
        }
    }
}

impl std::fmt::Display for PointBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} point(s) per pass, {} pass(es) at once",
            self.stacked, self.side_by_side
        )
    }
}

/// Integrated gradients from `baseline` with `steps` steps (right Riemann sum):
/// s_i = Σ_d (e_{i,d} − b_{i,d}) · (1/m) Σ_{k=1..m} ∂T/∂e_{i,d} at b + (k/m)(e − b).
/// Every token's row is replaced by the baseline, special tokens included. The points run in
/// `batches`. `progress` gets the fraction done after each round of batches; returning false
/// cancels.
#[allow(clippy::too_many_arguments)]
pub fn integrated_gradients(
    model: &dyn Differentiable,
    model_name: &str,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
    baseline: Baseline,
    steps: usize,
    batches: PointBatches,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<IntegratedGradients, AttributionError> {
    let steps = steps.max(1);
    let embeds = model.input_embeddings(tokens)?;
    let base = baseline_embeddings(model, &embeds, baseline, model_name)?;
    let delta = &embeds - &base;
    let mut total = Array2::<f64>::zeros(embeds.raw_dim());
    let (stacked, side_by_side) = (batches.stacked.max(1), batches.side_by_side.max(1));
    // Side by side, each pass gets one thread (the same bits as on many).
    let one_thread = RunOptions {
        threads: Some(1),
        ..opts.clone()
    };
    let pass_opts = if side_by_side > 1 { &one_thread } else { opts };
    let mut done = 0;
    while done < steps {
        let round = (stacked * side_by_side).min(steps - done);
        let points: Vec<Array2<f32>> = (done + 1..=done + round)
            .map(|k| &base + &(&delta * (k as f32 / steps as f32)))
            .collect();
        let passes: Vec<&[Array2<f32>]> = points.chunks(stacked).collect();
        let results = crate::engine::parallel_map(passes.len(), side_by_side, &|i| {
            model.gradients(tokens, passes[i], target, pass_opts)
        });
        // Added in step order, whatever the batches: the sum's bits do not depend on them.
        for pass in results {
            for g in pass? {
                total.zip_mut_with(&g.d_embeds, |t, &v| *t += f64::from(v));
            }
        }
        done += round;
        if !progress(done as f32 / steps as f32) {
            return Err(AttributionError::Cancelled);
        }
    }
    let scores: Vec<f32> = delta
        .rows()
        .into_iter()
        .zip(total.rows())
        .map(|(d, t)| {
            let dot: f64 = d
                .iter()
                .zip(t.iter())
                .map(|(&u, &v)| f64::from(u) * v)
                .sum();
            (dot / steps as f64) as f32
        })
        .collect();
    let baseline_value = model.target_value(tokens, base.view(), target, opts)?;
    let value = model.target_value(tokens, embeds.view(), target, opts)?;
    let sum: f64 = scores.iter().map(|&s| f64::from(s)).sum();
    Ok(IntegratedGradients {
        scores,
        completeness_gap: sum - (value - baseline_value),
        baseline_value,
    })
}

/// Attention-gradient relevance (Chefer et al. 2021, self-attention rule): with
/// Ā_l = mean over query heads of max(0, ∂T/∂A_l ⊙ A_l), R = I and R ← R + Ā_l·R for
/// l = 0 … L−1, the scores are row P of R − I, or the mean of the rows of R − I for
/// `similarity`. The identity is left out: it adds 1 to token P (and 1/n to every token of the
/// mean row), which drowned the signal (MiniLM's similarity scores were all about 1/n); Chefer
/// et al. exclude the query's own token for the same reason.
pub fn attention_gradient(
    model: &dyn Differentiable,
    tokens: &[Token],
    target: &ResolvedTarget,
    opts: &RunOptions,
) -> Result<Vec<f32>, AttributionError> {
    let embeds = model.input_embeddings(tokens)?;
    let g = model.gradient(tokens, embeds.view(), target, opts, true)?;
    let relevance = g.attention_relevance.ok_or_else(|| {
        AttributionError::Invalid("the model returned no attention relevance".to_owned())
    })?;
    let n = tokens.len();
    let mut r = Array2::<f64>::eye(n);
    for a in &relevance {
        if a.dim() != (n, n) {
            return Err(AttributionError::Invalid(format!(
                "attention relevance of shape {:?} for {n} tokens",
                a.dim()
            )));
        }
        let a = a.mapv(f64::from);
        r = &r + &a.dot(&r);
    }
    r -= &Array2::<f64>::eye(n);
    Ok(target_row(&r, target))
}
