//! Row-wise loops on the best instruction set: the norms, the f64 dot and axpy of the LM
//! head, the MLP's activations and their backward passes. Each body is the scalar code of
//! [`math`], compiled three times by `on_best_isa!` (or by hand where a const parameter
//! picks the fused form).
#![allow(unsafe_code)]

use super::Isa;
use crate::engine::math::{self, Activation};

on_best_isa! {
    /// Layer normalisation of one row in place ([`math::layer_norm_row`]) on the best
    /// instruction set.
    pub fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        math::layer_norm_row(row, gamma, beta, eps);
    }
}

on_best_isa! {
    /// RMS normalisation of one row in place ([`math::rms_norm_row`]) on the best instruction
    /// set.
    pub fn rms_norm_row(row: &mut [f32], gamma: &[f32], eps: f32) {
        math::rms_norm_row(row, gamma, eps);
    }
}

on_best_isa! {
    /// [`math::dot_f32_f64`] on the best instruction set: the same lanes in the same order, so
    /// the same bits.
    pub fn dot_f32_f64(a: &[f32], b: &[f64]) -> f64 {
        math::dot_f32_f64(a, b)
    }
}

on_best_isa! {
    /// [`math::add_scaled_f64`] on the best instruction set (element by element: the same
    /// bits).
    pub fn add_scaled_f64(acc: &mut [f64], s: f64, x: &[f32]) {
        math::add_scaled_f64(acc, s, x);
    }
}

on_best_isa! {
    /// [`math::layer_norm_backward_row`] on the best instruction set (the same order of
    /// operations, so the same bits).
    pub fn layer_norm_backward_row(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
        math::layer_norm_backward_row(x, dy, gamma, eps, dx);
    }
}

on_best_isa! {
    /// [`math::rms_norm_backward_row`] on the best instruction set.
    pub fn rms_norm_backward_row(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
        math::rms_norm_backward_row(x, dy, gamma, eps, dx);
    }
}

on_best_isa! {
    /// [`math::softmax_backward_row`] on the best instruction set.
    pub fn softmax_backward_row(d: &mut [f32], probs: &[f32]) {
        math::softmax_backward_row(d, probs);
    }
}

/// Applies the activation to every value in place.
pub fn activate(values: &mut [f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    match Isa::detect() {
        // SAFETY: `detect` found AVX2 and FMA on this CPU.
        Isa::Avx2 => return unsafe { activate_avx2(values, act) },
        // SAFETY: `detect` found AVX-512F, AVX2 and FMA on this CPU.
        Isa::Avx512 => return unsafe { activate_avx512(values, act) },
        Isa::Portable => {}
    }
    activate_impl::<false>(values, act);
}

/// `hidden[i] *= act(gate[i])`: the gated MLP of Llama-family models.
pub fn activate_gated(hidden: &mut [f32], gate: &[f32], act: Activation) {
    #[cfg(target_arch = "x86_64")]
    match Isa::detect() {
        // SAFETY: `detect` found AVX2 and FMA on this CPU.
        Isa::Avx2 => return unsafe { activate_gated_avx2(hidden, gate, act) },
        // SAFETY: `detect` found AVX-512F, AVX2 and FMA on this CPU.
        Isa::Avx512 => return unsafe { activate_gated_avx512(hidden, gate, act) },
        Isa::Portable => {}
    }
    activate_gated_impl::<false>(hidden, gate, act);
}

on_best_isa! {
    /// The gated MLP's backward pass through its activation, one row: with `d = d_up[i]` coming
    /// in (∂T/∂(act(gate) · up)), `d_up[i] = d · act(gate[i])` and
    /// `d_gate[i] = d · up[i] · act'(gate[i])`. The activation and its slope are the scalar ones
    /// ([`math::silu`], [`math::silu_slope`], …): the same bits on every instruction set, only in
    /// vector registers (element by element through `ndarray::Zip` it ran one value at a time,
    /// about 6 % of a SmolLM2 gradient on the Xeon).
    pub fn gated_backward(
        d_up: &mut [f32],
        d_gate: &mut [f32],
        up: &[f32],
        gate: &[f32],
        act: Activation,
    ) {
        gated_backward_impl(d_up, d_gate, up, gate, act);
    }
}

#[inline(always)]
fn gated_backward_impl(
    d_up: &mut [f32],
    d_gate: &mut [f32],
    up: &[f32],
    gate: &[f32],
    act: Activation,
) {
    #[inline(always)]
    fn each(
        d_up: &mut [f32],
        d_gate: &mut [f32],
        up: &[f32],
        gate: &[f32],
        value: impl Fn(f32) -> f32,
        slope: impl Fn(f32) -> f32,
    ) {
        for (((du, dg), &u), &g) in d_up.iter_mut().zip(d_gate).zip(up).zip(gate) {
            let d = *du;
            *du = d * value(g);
            *dg = d * u * slope(g);
        }
    }
    match act {
        Activation::Gelu => each(d_up, d_gate, up, gate, math::gelu, math::gelu_slope),
        Activation::GeluTanh => {
            each(
                d_up,
                d_gate,
                up,
                gate,
                math::gelu_tanh,
                math::gelu_tanh_slope,
            );
        }
        Activation::Silu => each(d_up, d_gate, up, gate, math::silu, math::silu_slope),
    }
}

on_best_isa! {
    /// `d[i] *= act'(x[i])`: the MLP's backward pass through its activation.
    pub fn scale_by_slope(d: &mut [f32], x: &[f32], act: Activation) {
        scale_by_slope_impl(d, x, act);
    }
}

// Plain `for` loops in `#[inline(always)]` helpers: `for_each` goes through `Zip::fold`, which
// the compiler may leave out of line, and then it is compiled without the caller's target
// features (scalar SSE: the GELU slope ran at 3.6 ns an element in MiniLM's gradient).
#[inline(always)]
fn scale_by_slope_impl(d: &mut [f32], x: &[f32], act: Activation) {
    #[inline(always)]
    fn each(d: &mut [f32], x: &[f32], slope: impl Fn(f32) -> f32) {
        for (d, &x) in d.iter_mut().zip(x) {
            *d *= slope(x);
        }
    }
    match act {
        Activation::Gelu => each(d, x, math::gelu_slope),
        Activation::GeluTanh => each(d, x, math::gelu_tanh_slope),
        Activation::Silu => each(d, x, math::silu_slope),
    }
}

// One monomorphic loop per activation, so that each vectorises.
#[inline(always)]
fn activate_impl<const FMA: bool>(values: &mut [f32], act: Activation) {
    #[inline(always)]
    fn each(values: &mut [f32], f: impl Fn(f32) -> f32) {
        for v in values.iter_mut() {
            *v = f(*v);
        }
    }
    match act {
        Activation::Gelu => each(values, math::gelu_with::<FMA>),
        Activation::GeluTanh => each(values, math::gelu_tanh_with::<FMA>),
        Activation::Silu => each(values, math::silu_with::<FMA>),
    }
}

#[inline(always)]
fn activate_gated_impl<const FMA: bool>(hidden: &mut [f32], gate: &[f32], act: Activation) {
    #[inline(always)]
    fn each(hidden: &mut [f32], gate: &[f32], f: impl Fn(f32) -> f32) {
        for (h, &g) in hidden.iter_mut().zip(gate) {
            *h *= f(g);
        }
    }
    match act {
        Activation::Gelu => each(hidden, gate, math::gelu_with::<FMA>),
        Activation::GeluTanh => each(hidden, gate, math::gelu_tanh_with::<FMA>),
        Activation::Silu => each(hidden, gate, math::silu_with::<FMA>),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn activate_avx2(values: &mut [f32], act: Activation) {
    activate_impl::<true>(values, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn activate_avx512(values: &mut [f32], act: Activation) {
    activate_impl::<true>(values, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn activate_gated_avx2(hidden: &mut [f32], gate: &[f32], act: Activation) {
    activate_gated_impl::<true>(hidden, gate, act);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn activate_gated_avx512(hidden: &mut [f32], gate: &[f32], act: Activation) {
    activate_gated_impl::<true>(hidden, gate, act);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gated MLP's backward pass through its activation gives the scalar formula's bits
    /// on whatever instruction set runs, for every activation and lengths around a vector.
    #[test]
    fn gated_backward_and_slopes_are_the_scalar_formula_bit_for_bit() {
        let acts = [Activation::Gelu, Activation::GeluTanh, Activation::Silu];
        for act in acts {
            for n in [0, 1, 7, 16, 17, 33, 100] {
                let value = |i: usize, salt: usize| {
                    ((i * 7919 + salt * 104_729) % 2001) as f32 / 100.0 - 10.0
                };
                let up: Vec<f32> = (0..n).map(|i| value(i, 1)).collect();
                let gate: Vec<f32> = (0..n).map(|i| value(i, 2)).collect();
                let d: Vec<f32> = (0..n).map(|i| value(i, 3) / 10.0).collect();
                let (mut d_up, mut d_gate) = (d.clone(), vec![0.0f32; n]);
                gated_backward(&mut d_up, &mut d_gate, &up, &gate, act);
                // The plain MLP's slope, on the same values.
                let mut scaled = d.clone();
                scale_by_slope(&mut scaled, &gate, act);
                for i in 0..n {
                    let (v, s) = match act {
                        Activation::Gelu => (math::gelu(gate[i]), math::gelu_slope(gate[i])),
                        Activation::GeluTanh => {
                            (math::gelu_tanh(gate[i]), math::gelu_tanh_slope(gate[i]))
                        }
                        Activation::Silu => (math::silu(gate[i]), math::silu_slope(gate[i])),
                    };
                    assert_eq!(d_up[i].to_bits(), (d[i] * v).to_bits(), "{act:?} {n} {i}");
                    assert_eq!(scaled[i].to_bits(), (d[i] * s).to_bits(), "{act:?} {n} {i}");
                    assert_eq!(
                        d_gate[i].to_bits(),
                        (d[i] * up[i] * s).to_bits(),
                        "{act:?} {n} {i}"
                    );
                }
            }
        }
    }
}
