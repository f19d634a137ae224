//! The MLP's forward for the tape (its pre-activations) and its adjoint.

use super::LayerTape;
use super::norm::slice;
use crate::engine::block::TransposedBlock;
use crate::engine::layers::{Activation, Mlp};
use crate::engine::math;
use crate::engine::parallel::{Split, par_fresh, par_rows};
use crate::engine::simd;
use ndarray::{Array2, Axis, s};

/// The MLP up to its output projection: (x·w_in + b_in, x·w_gate for a gated MLP, the
/// activated hidden units), each [token, d_ff]. Same kernels as `Mlp::forward`.
pub(super) fn mlp_hidden(
    mlp: &Mlp,
    packed: &crate::engine::layers::PackedMlp,
    x: &Array2<f32>,
    threads: usize,
) -> (Array2<f32>, Option<Array2<f32>>, Array2<f32>) {
    let ff = mlp.w_in.ncols();
    let mut hidden = Array2::<f32>::zeros((x.nrows(), ff));
    par_rows(&mut hidden, threads, &|row0, mut block| {
        let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
        simd::matmul(rows, &packed.w_in, block.view_mut(), false);
        if let Some(b) = &mlp.b_in {
            block += b;
        }
    });
    let gate = packed.w_gate.as_ref().map(|w_gate| {
        let mut gate = Array2::<f32>::zeros((x.nrows(), ff));
        par_rows(&mut gate, threads, &|row0, mut block| {
            let rows = x.slice(s![row0..row0 + block.nrows(), ..]);
            simd::matmul(rows, w_gate, block.view_mut(), false);
        });
        gate
    });
    // The activation by row blocks on the threads, as the products: done by the leader alone
    // (with the copy before it), it kept the other thread waiting for a tenth of a MiniLM
    // layer. Element by element, so the blocks give the same bits as one pass.
    let mut activated = Array2::<f32>::zeros(hidden.raw_dim());
    par_rows(&mut activated, threads, &|row0, mut block| {
        let rows = row0..row0 + block.nrows();
        block.assign(&hidden.slice(s![rows.clone(), ..]));
        let gate_rows = gate.as_ref().map(|g| g.slice(s![rows, ..]));
        for (i, mut row) in block.rows_mut().into_iter().enumerate() {
            let Some(values) = row.as_slice_mut() else {
                continue;
            };
            match &gate_rows {
                Some(g) => simd::activate_gated(values, &slice(g.row(i)), mlp.activation),
                None => simd::activate(values, mlp.activation),
            }
        }
    });
    (hidden, gate, activated)
}

/// The derivative of the activation at `x`.
fn activation_slope(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Gelu => math::gelu_slope(x),
        Activation::GeluTanh => math::gelu_tanh_slope(x),
        Activation::Silu => math::silu_slope(x),
    }
}

/// The activation itself (for the gated MLP's up-projection gradient).
fn activation_value(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Gelu => math::gelu(x),
        Activation::GeluTanh => math::gelu_tanh(x),
        Activation::Silu => math::silu(x),
    }
}

/// ∂T/∂(MLP input) from ∂T/∂(MLP output) `d_out`. Shape of both: [token, d_model].
pub(super) fn mlp_backward(
    mlp: &Mlp,
    tb: &TransposedBlock,
    lt: &LayerTape,
    d_out: &Array2<f32>,
    threads: usize,
) -> Array2<f32> {
    let ff = mlp.w_in.ncols();
    let gated = lt.gate_pre.is_some();
    let width = if gated { 2 * ff } else { ff };
    // [d_up | d_gate] (or d_pre), one row block per thread.
    let mut d_pre = Array2::<f32>::zeros((d_out.nrows(), width));
    par_rows(&mut d_pre, threads, &|row0, mut block| {
        let rows = row0..row0 + block.nrows();
        let d_rows = d_out.slice(s![rows.clone(), ..]);
        simd::matmul(d_rows, &tb.w_out, block.slice_mut(s![.., ..ff]), false);
        let pre = lt.hidden_pre.slice(s![rows.clone(), ..]);
        match &lt.gate_pre {
            Some(gate) => {
                let gate = gate.slice(s![rows, ..]);
                let (mut d_up, mut d_gate) = block.view_mut().split_at(Axis(1), ff);
                for (((mut du, mut dg), up), g) in d_up
                    .rows_mut()
                    .into_iter()
                    .zip(d_gate.rows_mut())
                    .zip(pre.rows())
                    .zip(gate.rows())
                {
                    match (
                        du.as_slice_mut(),
                        dg.as_slice_mut(),
                        up.as_slice(),
                        g.as_slice(),
                    ) {
                        (Some(du), Some(dg), Some(up), Some(g)) => {
                            simd::gated_backward(du, dg, up, g, mlp.activation);
                        }
                        _ => ndarray::Zip::from(&mut du)
                            .and(&mut dg)
                            .and(&up)
                            .and(&g)
                            .for_each(|du, dg, &up, &g| {
                                let d_act = *du;
                                *du = d_act * activation_value(mlp.activation, g);
                                *dg = d_act * up * activation_slope(mlp.activation, g);
                            }),
                    }
                }
            }
            None => {
                for (mut d_row, pre_row) in block.rows_mut().into_iter().zip(pre.rows()) {
                    match (d_row.as_slice_mut(), pre_row.as_slice()) {
                        (Some(d), Some(x)) => simd::scale_by_slope(d, x, mlp.activation),
                        _ => ndarray::Zip::from(&mut d_row)
                            .and(&pre_row)
                            .for_each(|d, &x| *d *= activation_slope(mlp.activation, x)),
                    }
                }
            }
        }
    });
    par_fresh(
        Split::Rows,
        d_out.nrows(),
        d_out.ncols(),
        threads,
        &|row0, block| {
            let rows = d_pre.slice(s![row0..row0 + block.nrows(), ..]);
            block.product(rows, &tb.w_in_gate);
        },
    )
}
