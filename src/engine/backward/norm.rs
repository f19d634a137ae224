//! LayerNorm's and RMSNorm's adjoints, per row in f64.

use crate::engine::layers::Norm;
use crate::engine::parallel::par_rows;
use ndarray::{Array2, ArrayView2, s};

/// ∂T/∂(norm input) from ∂T/∂(norm output) `d_out`, row blocks on `threads` threads.
pub(super) fn norm_backward(
    norm: &Norm,
    input: &Array2<f32>,
    d_out: &Array2<f32>,
    threads: usize,
) -> Array2<f32> {
    let mut d_in = Array2::<f32>::zeros(input.raw_dim());
    par_rows(&mut d_in, threads, &|row0, mut block| {
        let rows = row0..row0 + block.nrows();
        for ((mut d_row, x), dy) in block
            .rows_mut()
            .into_iter()
            .zip(input.slice(s![rows.clone(), ..]).rows())
            .zip(d_out.slice(s![rows.clone(), ..]).rows())
        {
            norm_backward_row(norm, x, dy, d_row.view_mut());
        }
    });
    d_in
}

impl Norm {
    /// The adjoint of [`Norm::apply`]: ∂T/∂input from ∂T/∂output `d_out`, given the rows the
    /// norm was applied to. Shapes: [token, width].
    pub fn backward(&self, input: ArrayView2<'_, f32>, d_out: ArrayView2<'_, f32>) -> Array2<f32> {
        let mut d_in = Array2::<f32>::zeros(input.raw_dim());
        for ((mut d_row, x), dy) in d_in
            .rows_mut()
            .into_iter()
            .zip(input.rows())
            .zip(d_out.rows())
        {
            norm_backward_row(self, x, dy, d_row.view_mut());
        }
        d_in
    }
}

/// Σ term(i) over 0..n in eight partial sums (lane i mod 8) added in a fixed order at the end:
/// eight independent chains of f64 additions instead of one (the one chain made the norms'
/// adjoints 4.4 % of MiniLM's gradient), and the same result on any thread count.
#[inline(always)]
pub(super) fn sum_lanes(n: usize, term: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let full = n - n % 8;
    for i in (0..full).step_by(8) {
        for (lane, a) in acc.iter_mut().enumerate() {
            *a += term(i + lane);
        }
    }
    for (lane, i) in (full..n).enumerate() {
        acc[lane] += term(i);
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

/// A row as a slice, copied only in the unusual case of a strided one.
pub(super) fn slice<'a>(v: ndarray::ArrayView1<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match v.to_slice() {
        Some(s) => s.into(),
        None => v.to_vec().into(),
    }
}

/// One row of [`norm_backward`], in f64.
fn norm_backward_row(
    norm: &Norm,
    x: ndarray::ArrayView1<'_, f32>,
    dy: ndarray::ArrayView1<'_, f32>,
    mut dx: ndarray::ArrayViewMut1<'_, f32>,
) {
    let gamma = match norm {
        Norm::LayerNorm { gamma, .. } | Norm::RmsNorm { gamma, .. } => gamma.view(),
    };
    let (x, dy, gamma) = (slice(x), slice(dy), slice(gamma));
    let len = x.len().min(dy.len()).min(dx.len()).min(gamma.len());
    let (x, dy, gamma) = (&x[..len], &dy[..len], &gamma[..len]);
    let nf = len as f64;
    let g = |i: usize| f64::from(dy[i]) * f64::from(gamma[i]);
    match norm {
        Norm::LayerNorm { eps, .. } => {
            // y = x̂·γ + β with x̂ = (x − μ)·r: dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ.
            let mean = sum_lanes(len, |i| f64::from(x[i])) / nf;
            let var = sum_lanes(len, |i| (f64::from(x[i]) - mean).powi(2)) / nf;
            let r = 1.0 / (var + f64::from(*eps)).sqrt();
            let mean_g = sum_lanes(len, g) / nf;
            let mean_gx = sum_lanes(len, |i| g(i) * (f64::from(x[i]) - mean) * r) / nf;
            for (i, out) in dx.iter_mut().take(len).enumerate() {
                let xhat = (f64::from(x[i]) - mean) * r;
                *out = (r * (g(i) - mean_g - xhat * mean_gx)) as f32;
            }
        }
        Norm::RmsNorm { eps, .. } => {
            // y = x·r·γ with r = (mean(x²) + ε)^−½: dx = r·g − x·r³·mean(g·x), g = dy·γ.
            let ms = sum_lanes(len, |i| f64::from(x[i]).powi(2)) / nf;
            let r = 1.0 / (ms + f64::from(*eps)).sqrt();
            let mean_gx = sum_lanes(len, |i| g(i) * f64::from(x[i])) / nf;
            for (i, out) in dx.iter_mut().take(len).enumerate() {
                *out = (r * g(i) - f64::from(x[i]) * r * r * r * mean_gx) as f32;
            }
        }
    }
}
