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

/// One row of [`norm_backward`], in f64.
fn norm_backward_row(
    norm: &Norm,
    x: ndarray::ArrayView1<'_, f32>,
    dy: ndarray::ArrayView1<'_, f32>,
    mut dx: ndarray::ArrayViewMut1<'_, f32>,
) {
    let n = x.len() as f64;
    match norm {
        Norm::LayerNorm { gamma, eps, .. } => {
            // y = x̂·γ + β with x̂ = (x − μ)·r: dx = r·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ.
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n;
            let r = 1.0 / (var + f64::from(*eps)).sqrt();
            let (mut mean_g, mut mean_gx) = (0.0, 0.0);
            for ((&v, &d), &g) in x.iter().zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                mean_g += g;
                mean_gx += g * (f64::from(v) - mean) * r;
            }
            mean_g /= n;
            mean_gx /= n;
            for (((out, &v), &d), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                let xhat = (f64::from(v) - mean) * r;
                *out = (r * (g - mean_g - xhat * mean_gx)) as f32;
            }
        }
        Norm::RmsNorm { gamma, eps } => {
            // y = x·r·γ with r = (mean(x²) + ε)^−½: dx = r·g − x·r³·mean(g·x), g = dy·γ.
            let ms = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
            let r = 1.0 / (ms + f64::from(*eps)).sqrt();
            let mean_gx = x
                .iter()
                .zip(dy)
                .zip(gamma)
                .map(|((&v, &d), &g)| f64::from(d) * f64::from(g) * f64::from(v))
                .sum::<f64>()
                / n;
            for (((out, &v), &d), &g) in dx.iter_mut().zip(x).zip(dy).zip(gamma) {
                let g = f64::from(d) * f64::from(g);
                *out = (r * g - f64::from(v) * r * r * r * mean_gx) as f32;
            }
        }
    }
}
