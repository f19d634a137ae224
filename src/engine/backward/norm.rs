//! LayerNorm's and RMSNorm's adjoints, per row in f64.

use crate::engine::layers::Norm;
use crate::engine::parallel::par_rows;
use crate::engine::simd;
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

/// A row as a slice, copied only in the unusual case of a strided one.
pub(super) fn slice<'a>(v: ndarray::ArrayView1<'a, f32>) -> std::borrow::Cow<'a, [f32]> {
    match v.to_slice() {
        Some(s) => s.into(),
        None => v.to_vec().into(),
    }
}

/// One row of [`norm_backward`], in f64 ([`simd::layer_norm_backward_row`],
/// [`simd::rms_norm_backward_row`]).
fn norm_backward_row(
    norm: &Norm,
    x: ndarray::ArrayView1<'_, f32>,
    dy: ndarray::ArrayView1<'_, f32>,
    mut dx: ndarray::ArrayViewMut1<'_, f32>,
) {
    let (x, dy) = (slice(x), slice(dy));
    let (gamma, eps) = match norm {
        Norm::LayerNorm { gamma, eps, .. } | Norm::RmsNorm { gamma, eps } => (gamma, *eps),
    };
    let gamma = slice(gamma.view());
    let row = |out: &mut [f32]| match norm {
        Norm::LayerNorm { .. } => simd::layer_norm_backward_row(&x, &dy, &gamma, eps, out),
        Norm::RmsNorm { .. } => simd::rms_norm_backward_row(&x, &dy, &gamma, eps, out),
    };
    match dx.as_slice_mut() {
        Some(out) => row(out),
        None => {
            let mut out = vec![0.0f32; dx.len()];
            row(&mut out);
            dx.assign(&ndarray::ArrayView1::from(&out[..]));
        }
    }
}
