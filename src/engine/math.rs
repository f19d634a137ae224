//! Numeric kernels: exp, softmax, normalisation and activations, all in f32.
//!
//! They work on plain slices so that the compiler can vectorise them, and each one is checked
//! against an f64 reference in the tests below.

/// e^x for f32, accurate to about 2 ulp, and exactly 0 for x < −87 (including −∞ and NaN).
///
/// Written as 2^k · 2^f with a degree-7 polynomial for 2^f on [−½, ½], so that a loop over a
/// slice vectorises; the libm call does not, and the softmax is the engine's hottest loop.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    exp_f32_with::<false>(x)
}

/// Round-to-nearest constant of [`exp_f32_with`]: 1.5·2^23, so that `t + MAGIC − MAGIC` rounds
/// `t` to an integer (valid for |t| < 2^22).
pub(crate) const EXP_MAGIC: f32 = 12_582_912.0;
/// ln 2 split in two for the Cody–Waite reduction of [`exp_f32_with`]: `x − k·ln2` loses no
/// precision as `(x − k·LN2_HI) − k·LN2_LO`.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// See [`LN2_HI`].
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// Taylor coefficients of e^f for |f| ≤ ln2/2, highest first, for Horner's rule (the first
/// omitted term is < 6e-9).
pub(crate) const EXP_TAYLOR: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// [`exp_f32`], with fused multiply-adds for the reduction and the polynomial when `FMA` (only
/// inside functions compiled for a CPU that has them: elsewhere `mul_add` is a library call).
/// Nine fused operations instead of nine multiplies and nine adds; the result is as accurate
/// or more (one rounding per step instead of two), not bit-identical.
#[inline(always)]
pub fn exp_f32_with<const FMA: bool>(x: f32) -> f32 {
    // a · b + c, fused when FMA.
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    // Clamped rather than branched on, so that loops vectorise; out-of-range inputs are fixed
    // up by the select at the end. Plain comparisons (not f32::max, whose NaN rules defeat
    // vectorisation) map to maxps/minps; NaN becomes −87.
    let xc = if x > -87.0 { x } else { -87.0 };
    let xc = if xc < 88.0 { xc } else { 88.0 };
    let t = xc * std::f32::consts::LOG2_E;
    // Round to nearest with the 1.5·2^23 trick; valid for |t| < 2^22.
    let shifted = t + EXP_MAGIC;
    let k = shifted - EXP_MAGIC;
    // The same integer read from the low mantissa bits: a float-to-int `as` cast would be
    // scalarised (it saturates and maps NaN to 0), and this loop must vectorise.
    let k_int = shifted.to_bits() as i32 - EXP_MAGIC.to_bits() as i32;
    // Cody–Waite: x − k·ln2 with ln2 split in two, so the reduction loses no precision.
    let f = madd(-k, LN2_LO, madd(-k, LN2_HI, xc));
    // Taylor series of e^f for |f| ≤ ln2/2, by Horner's rule.
    let mut p = EXP_TAYLOR[0];
    for c in &EXP_TAYLOR[1..] {
        p = madd(p, f, *c);
    }
    // k is an integer in [-126, 127] here, so the exponent field is valid.
    let bits = ((k_int + 127) as u32) << 23;
    let r = p * f32::from_bits(bits);
    // False for NaN and for x < −87 (including −∞): exactly 0 there.
    if x >= -87.0 { r } else { 0.0 }
}

/// Lanes for the reductions below: one AVX-512 register of f32 (two AVX registers), and written
/// out lane by lane so that the compiler vectorises them without reassociating anything.
const LANES: usize = 16;

/// The largest element (−∞ for an empty slice; NaNs are skipped).
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        // A comparison rather than f32::max: one vector max instruction instead of four (the
        // NaN checks). It skips NaN just the same: NaN > lane is false.
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane = if v > *lane { v } else { *lane };
        }
    }
    // Halving the lanes in a tree (vector instructions) rather than folding them one by one:
    // a max is exact, so the order changes nothing, and the fold was a chain of sixteen
    // dependent scalar steps per row.
    let mut width = LANES / 2;
    while width > 0 {
        for i in 0..width {
            lanes[i] = if lanes[i + width] > lanes[i] {
                lanes[i + width]
            } else {
                lanes[i]
            };
        }
        width /= 2;
    }
    rest.iter().fold(lanes[0], |m, &v| m.max(v))
}

/// The sum of `f(x)` over the row in f32, [`LANES`] lanes at a time (the lanes added in a tree
/// at the end, then the remainder), so that it vectorises in a fixed order.
#[inline(always)]
fn lane_sum(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f(v);
        }
    }
    tree_sum(lanes) + rest.iter().map(|&v| f(v)).sum::<f32>()
}

/// The sum of `lanes`, halving them in a tree (`lanes[i] += lanes[i + width]`): vector
/// additions in a fixed order, where a left-to-right sum was a chain of dependent scalar adds
/// at the end of every row (for the softmax's 32 f64 lanes about 130 cycles a row, most of its
/// time at 128 keys).
#[inline(always)]
fn tree_sum<T: Copy + std::ops::AddAssign, const N: usize>(mut lanes: [T; N]) -> T {
    let mut width = N / 2;
    while width > 0 {
        for i in 0..width {
            let upper = lanes[i + width];
            lanes[i] += upper;
        }
        width /= 2;
    }
    lanes[0]
}

/// Whether every value is finite (no NaN, no ±∞). `v · 0` is 0 for a finite value and NaN
/// otherwise, and summed in lanes it vectorises: a fifth of the time of a short-circuiting
/// scan, which was 1.4 % of a MiniLM forward at 512 tokens (it runs after every sublayer).
#[inline(always)]
pub fn all_finite(values: &[f32]) -> bool {
    lane_sum(values, |v| v * 0.0) == 0.0
}

/// Lanes of the f64 sum: four AVX-512 registers, so that four chains of adds run side by side.
pub(crate) const LANES_F64: usize = 32;

/// The sum in f64, lane by lane. In f64 the result barely depends on the order of the
/// elements: permuting the tokens must permute the maps, not perturb them.
#[inline(always)]
pub(crate) fn row_sum_f64(row: &[f32]) -> f64 {
    let mut lanes = [0.0f64; LANES_F64];
    let chunks = row.chunks_exact(LANES_F64);
    let rest = chunks.remainder();
    for chunk in chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    tree_sum(lanes) + rest.iter().map(|&v| f64::from(v)).sum::<f64>()
}

/// Σ a_i·b_i in f64, in eight lanes (lane j takes the elements at j mod 8, the lanes summed
/// left to right, then the remainder): a fixed order, so every instruction set gives the same
/// bits, and the loop vectorises.
#[inline(always)]
pub fn dot_f32_f64(a: &[f32], b: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [0.0f64; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f64::from(x) * y)
        .sum();
    for (xa, xb) in ca.zip(cb) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(xa).zip(xb) {
            *lane += f64::from(x) * y;
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Σ f(i) over i in 0..n in f64, [`LANES_F64`] lanes (lane i mod 32) added in a tree at the
/// end, then the remainder: a fixed order whatever the instruction set or thread count, and
/// independent chains of adds instead of one.
#[inline(always)]
pub(crate) fn lane_sum_f64(n: usize, f: impl Fn(usize) -> f64) -> f64 {
    let mut lanes = [0.0f64; LANES_F64];
    let full = n - n % LANES_F64;
    for i0 in (0..full).step_by(LANES_F64) {
        for (j, lane) in lanes.iter_mut().enumerate() {
            *lane += f(i0 + j);
        }
    }
    tree_sum(lanes) + (full..n).map(f).sum::<f64>()
}

/// The adjoint of LayerNorm on one row, in f64: with x̂ = (x − μ)·r, r = (var + ε)^−½ and
/// g = dy·γ, dx = r·(g − mean(g) − x̂·mean(g·x̂)). `x` is the row the norm was applied to.
#[inline(always)]
pub fn layer_norm_backward_row(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
    let n = x.len().min(dy.len()).min(gamma.len()).min(dx.len());
    let (x, dy, gamma, dx) = (&x[..n], &dy[..n], &gamma[..n], &mut dx[..n]);
    let nf = n as f64;
    let g = |i: usize| f64::from(dy[i]) * f64::from(gamma[i]);
    let mean = lane_sum_f64(n, |i| f64::from(x[i])) / nf;
    let var = lane_sum_f64(n, |i| (f64::from(x[i]) - mean) * (f64::from(x[i]) - mean)) / nf;
    let r = 1.0 / (var + f64::from(eps)).sqrt();
    let mean_g = lane_sum_f64(n, g) / nf;
    let mean_gx = lane_sum_f64(n, |i| g(i) * ((f64::from(x[i]) - mean) * r)) / nf;
    for (i, out) in dx.iter_mut().enumerate() {
        let xhat = (f64::from(x[i]) - mean) * r;
        *out = (r * (g(i) - mean_g - xhat * mean_gx)) as f32;
    }
}

/// The adjoint of RMSNorm on one row, in f64: with r = (mean(x²) + ε)^−½ and g = dy·γ,
/// dx = r·g − x·r³·mean(g·x).
#[inline(always)]
pub fn rms_norm_backward_row(x: &[f32], dy: &[f32], gamma: &[f32], eps: f32, dx: &mut [f32]) {
    let n = x.len().min(dy.len()).min(gamma.len()).min(dx.len());
    let (x, dy, gamma, dx) = (&x[..n], &dy[..n], &gamma[..n], &mut dx[..n]);
    let nf = n as f64;
    let g = |i: usize| f64::from(dy[i]) * f64::from(gamma[i]);
    let ms = lane_sum_f64(n, |i| f64::from(x[i]) * f64::from(x[i])) / nf;
    let r = 1.0 / (ms + f64::from(eps)).sqrt();
    let mean_gx = lane_sum_f64(n, |i| g(i) * f64::from(x[i])) / nf;
    for (i, out) in dx.iter_mut().enumerate() {
        *out = (r * g(i) - f64::from(x[i]) * r * r * r * mean_gx) as f32;
    }
}

/// The softmax's adjoint on one row: dA becomes dS = A ⊙ (dA − Σ_k A_k dA_k), the sum in f64
/// lanes. Masked cells have A = 0, so they get no gradient.
#[inline(always)]
pub fn softmax_backward_row(d: &mut [f32], probs: &[f32]) {
    let n = d.len().min(probs.len());
    let (d, probs) = (&mut d[..n], &probs[..n]);
    let dot = lane_sum_f64(n, |k| f64::from(d[k]) * f64::from(probs[k])) as f32;
    for (g, &a) in d.iter_mut().zip(probs) {
        *g = a * (*g - dot);
    }
}

/// `acc[i] += s · x[i]` in f64 (a multiply and an add, not fused, on every instruction set).
#[inline(always)]
pub fn add_scaled_f64(acc: &mut [f64], s: f64, x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += s * f64::from(v);
    }
}

/// In-place softmax of one row of scores.
///
/// `allowed`, when given, marks the keys that may be attended; the others become exactly 0.
/// Returns false when no key is allowed, in which case the row is all zeros.
#[inline(always)]
pub fn softmax_row(row: &mut [f32], allowed: Option<&[bool]>) -> bool {
    softmax_row_with::<false>(row, allowed)
}

/// [`softmax_row`] with [`exp_f32_with`]`::<FMA>`.
#[inline(always)]
pub fn softmax_row_with<const FMA: bool>(row: &mut [f32], allowed: Option<&[bool]>) -> bool {
    match softmax_exponentials::<FMA>(row, allowed) {
        Some(inv) => {
            for x in row.iter_mut() {
                *x *= inv;
            }
            true
        }
        None => {
            row.fill(0.0);
            false
        }
    }
}

/// [`softmax_row_with`] with the probabilities written into `dst` (as long as `row`) instead
/// of over the scores, which are left holding the exponentials: the same values, with the
/// last pass's stores going where they are wanted (an attention map) instead of a second
/// copy after.
#[inline(always)]
pub fn softmax_row_into_with<const FMA: bool>(
    row: &mut [f32],
    allowed: Option<&[bool]>,
    dst: &mut [std::mem::MaybeUninit<f32>],
) -> bool {
    softmax_row_into_summed::<FMA>(row, allowed, dst, row_sum_f64)
}

/// [`softmax_row_into_with`] with the exponentials' f64 sum taken by `sum`, which must give
/// [`row_sum_f64`]'s bits (an instruction set's own version of it).
#[inline(always)]
pub(crate) fn softmax_row_into_summed<const FMA: bool>(
    row: &mut [f32],
    allowed: Option<&[bool]>,
    dst: &mut [std::mem::MaybeUninit<f32>],
    sum: impl Fn(&[f32]) -> f64,
) -> bool {
    match softmax_exponentials_summed::<FMA>(row, allowed, sum) {
        Some(inv) => {
            for (d, &x) in dst.iter_mut().zip(row.iter()) {
                d.write(x * inv);
            }
            true
        }
        None => {
            for d in dst.iter_mut() {
                d.write(0.0);
            }
            false
        }
    }
}

/// The first passes of a softmax: masked keys set to −∞, then each score replaced by
/// e^(score − max), and 1 / their sum returned; `None` when no key is allowed.
#[inline(always)]
fn softmax_exponentials<const FMA: bool>(row: &mut [f32], allowed: Option<&[bool]>) -> Option<f32> {
    softmax_exponentials_summed::<FMA>(row, allowed, row_sum_f64)
}

/// [`softmax_exponentials`] with the sum taken by `sum` (see [`softmax_row_into_summed`]).
#[inline(always)]
fn softmax_exponentials_summed<const FMA: bool>(
    row: &mut [f32],
    allowed: Option<&[bool]>,
    sum: impl Fn(&[f32]) -> f64,
) -> Option<f32> {
    if let Some(allowed) = allowed {
        for (x, &ok) in row.iter_mut().zip(allowed) {
            if !ok {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    let max = row_max(row);
    if max == f32::NEG_INFINITY {
        return None;
    }
    for x in row.iter_mut() {
        *x = exp_f32_with::<FMA>(*x - max);
    }
    // ≥ 1 because the max contributes e^0 = 1.
    Some((1.0 / sum(row)) as f32)
}

/// Layer normalisation of one row in place: (x − mean) / √(var + eps) · gamma + beta,
/// with the biased variance, as PyTorch computes it.
///
/// The sums run in 16 lanes (a plain `sum` is one chain of dependent adds, which made the
/// norms 3 % of a forward pass), in a fixed order whatever the CPU.
#[inline(always)]
pub fn layer_norm_row(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lane_sum(row, |x| x) / n;
    let var = lane_sum(row, |x| (x - mean) * (x - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((x, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *x = (*x - mean) * inv * g + b;
    }
}

/// RMS normalisation of one row in place: x / √(mean(x²) + eps) · gamma.
///
/// The sum runs in lanes, as in [`layer_norm_row`].
#[inline(always)]
pub fn rms_norm_row(row: &mut [f32], gamma: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean_sq = lane_sum(row, |x| x * x) / n;
    let inv = 1.0 / (mean_sq + eps).sqrt();
    for (x, g) in row.iter_mut().zip(gamma) {
        *x = *x * inv * g;
    }
}

/// The MLP's nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact (erf) GELU.
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
    /// SiLU, used gated in Llama: silu(x·W_gate) ⊙ (x·W_in).
    Silu,
}

/// The error function, to within 3e-7 (Abramowitz & Stegun 7.1.26 in f32).
///
/// Branch-free apart from [`exp_f32`]'s cut-off, so loops over it vectorise: the MLP calls it
/// once per hidden unit and token, which made it the hottest function in its f64 form.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    erf_with::<false>(x)
}

/// [`erf`] with fused multiply-adds when `FMA` (see [`exp_f32_with`]).
#[inline(always)]
pub fn erf_with<const FMA: bool>(x: f32) -> f32 {
    let madd = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let a = x.abs();
    let t = 1.0 / madd(0.327_591_1, a, 1.0);
    let mut p = 1.061_405_4;
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        p = madd(p, t, c);
    }
    let poly = t * p;
    (1.0 - poly * exp_f32_with::<FMA>(-a * a)).copysign(x)
}

/// Exact GELU: x · Φ(x) = ½x(1 + erf(x/√2)).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    gelu_with::<false>(x)
}

/// [`gelu`] through [`erf_with`]`::<FMA>`.
#[inline(always)]
pub fn gelu_with<const FMA: bool>(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_with::<FMA>(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// tanh through [`exp_f32`], so that loops over it vectorise: 1 − 2 / (e^{2|y|} + 1) with the
/// sign of y. Absolute error below 2e-7.
#[inline(always)]
pub fn tanh_f32(y: f32) -> f32 {
    tanh_f32_with::<false>(y)
}

/// [`tanh_f32`] through [`exp_f32_with`]`::<FMA>`.
#[inline(always)]
pub fn tanh_f32_with<const FMA: bool>(y: f32) -> f32 {
    let e = exp_f32_with::<FMA>(-2.0 * y.abs());
    ((1.0 - e) / (1.0 + e)).copysign(y)
}

/// The tanh approximation of GELU (`gelu_new` in transformers).
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    gelu_tanh_with::<false>(x)
}

/// [`gelu_tanh`] through [`tanh_f32_with`]`::<FMA>`.
#[inline(always)]
pub fn gelu_tanh_with<const FMA: bool>(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    0.5 * x * (1.0 + tanh_f32_with::<FMA>(C * (x + 0.044_715 * x * x * x)))
}

/// SiLU: x · σ(x) = x / (1 + e^−x).
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    silu_with::<false>(x)
}

/// [`silu`] through [`exp_f32_with`]`::<FMA>`.
#[inline(always)]
pub fn silu_with<const FMA: bool>(x: f32) -> f32 {
    x / (1.0 + exp_f32_with::<FMA>(-x))
}

/// GELU's derivative: d/dx x·Φ(x) = Φ(x) + x·φ(x). Branch-free, so loops over it vectorise.
#[inline(always)]
pub fn gelu_slope(x: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2));
    let pdf = exp_f32(-0.5 * x * x) * 0.398_942_3; // 1/√(2π)
    cdf + x * pdf
}

/// The tanh approximation of GELU's derivative (`gelu_new`).
#[inline(always)]
pub fn gelu_tanh_slope(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // √(2/π)
    let t = tanh_f32(C * (x + 0.044_715 * x * x * x));
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * 0.044_715 * x * x)
}

/// SiLU's derivative: σ(x)·(1 + x·(1 − σ(x))).
#[inline(always)]
pub fn silu_slope(x: f32) -> f32 {
    let sig = 1.0 / (1.0 + exp_f32(-x));
    sig * (1.0 + x * (1.0 - sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_finite_finds_any_nan_or_infinity_anywhere() {
        for len in [0, 1, 15, 16, 17, 100] {
            let values: Vec<f32> = (0..len).map(|i| i as f32 * -1.5e30).collect();
            assert!(all_finite(&values), "len {len}");
            for at in 0..len {
                for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                    let mut v = values.clone();
                    v[at] = bad;
                    assert!(!all_finite(&v), "{bad} at {at} of {len}");
                }
            }
        }
        // Large finite values: v · 0 is 0, and nothing overflows.
        assert!(all_finite(&[f32::MAX, f32::MIN, -0.0, f32::MIN_POSITIVE]));
    }

    #[test]
    fn exp_matches_f64_across_the_range() {
        // Both forms: plain and fused (here `mul_add` is a library call, exact all the same).
        for exp in [exp_f32_with::<false>, exp_f32_with::<true>] {
            let mut worst = 0.0f64;
            let mut x = -87.0f32;
            while x < 88.0 {
                let exact = f64::from(x).exp();
                let rel = ((f64::from(exp(x)) - exact) / exact).abs();
                worst = worst.max(rel);
                x += 0.013;
            }
            assert!(worst < 5e-7, "worst relative error {worst}");
            assert_eq!(exp(f32::NEG_INFINITY), 0.0);
            assert_eq!(exp(f32::NAN), 0.0);
            assert_eq!(exp(-100.0), 0.0);
            assert_eq!(exp(0.0), 1.0);
        }
    }

    #[test]
    fn fused_activations_match_the_plain_ones_closely() {
        // The fused forms round once per multiply-add instead of twice: a few ulp apart.
        let mut worst = 0.0f32;
        let mut x = -12.0f32;
        while x < 12.0 {
            for (plain, fused) in [
                (gelu(x), gelu_with::<true>(x)),
                (gelu_tanh(x), gelu_tanh_with::<true>(x)),
                (silu(x), silu_with::<true>(x)),
                (erf(x), erf_with::<true>(x)),
            ] {
                worst = worst.max((plain - fused).abs() / plain.abs().max(1.0));
            }
            x += 0.0071;
        }
        assert!(worst < 1e-6, "worst difference {worst}");
    }

    #[test]
    fn softmax_hand_computed() {
        // Scores [0, ln 3]: e^0 = 1 and e^ln3 = 3, so the probabilities are 1/4 and 3/4.
        let mut row = [0.0, 3.0f32.ln()];
        assert!(softmax_row(&mut row, None));
        assert!((row[0] - 0.25).abs() < 1e-7 && (row[1] - 0.75).abs() < 1e-7);
        // Huge scores do not overflow thanks to the max subtraction.
        let mut row = [1000.0, 1000.0];
        softmax_row(&mut row, None);
        assert_eq!(row, [0.5, 0.5]);
    }

    #[test]
    fn softmax_masks_exactly_and_flags_empty_rows() {
        let mut row = [5.0, 1.0, 2.0];
        assert!(softmax_row(&mut row, Some(&[false, true, true])));
        assert_eq!(row[0], 0.0);
        assert!((row[1] + row[2] - 1.0).abs() < 1e-6);
        let mut row = [5.0, 1.0];
        assert!(!softmax_row(&mut row, Some(&[false, false])));
        assert_eq!(row, [0.0, 0.0]);
    }

    #[test]
    fn layer_norm_hand_computed() {
        // [1, 3]: mean 2, variance 1, so the output is [-1, 1] (eps 0).
        let mut row = [1.0, 3.0];
        layer_norm_row(&mut row, &[1.0, 1.0], &[0.0, 0.0], 0.0);
        assert_eq!(row, [-1.0, 1.0]);
        // RMS of [3, 4] is √12.5; 3/√12.5 = 0.8485.
        let mut row = [3.0, 4.0];
        rms_norm_row(&mut row, &[1.0, 2.0], 0.0);
        assert!((row[0] - 0.848_528_1).abs() < 1e-6 && (row[1] - 2.262_741_7).abs() < 1e-6);
    }

    #[test]
    fn activations() {
        // GELU(1) = Φ(1) = 0.841344746.
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-1.0) + 0.158_655_25).abs() < 1e-6);
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-5);
        // SiLU(1) = 1/(1+e^-1) = 0.7310586.
        assert!((silu(1.0) - 0.731_058_6).abs() < 1e-6);
        assert!((erf(0.5) - 0.520_499_9).abs() < 3e-7);
        // Against an f64 series across the range that matters.
        let mut worst = 0.0f64;
        for i in -600..=600 {
            let x = f64::from(i) / 100.0;
            let mut term = x;
            let mut sum = x;
            for n in 1..200 {
                term *= -x * x / f64::from(n);
                sum += term / f64::from(2 * n + 1);
            }
            let exact = if x.abs() > 4.0 {
                x.signum()
            } else {
                sum * 2.0 / std::f64::consts::PI.sqrt()
            };
            worst = worst.max((f64::from(erf(x as f32)) - exact).abs());
        }
        assert!(worst < 3e-7, "worst erf error {worst}");
    }

    #[test]
    fn activation_slopes_match_central_differences() {
        // (f(x + h) − f(x − h)) / 2h in f64 of the f32 functions; h = 1e-2 keeps f32 rounding
        // (≈1e-7 / 2e-2 = 5e-6) and the h² truncation (≈1e-4 · f‴/6) below 1e-4.
        let h = 1e-2f32;
        for i in -60..=60 {
            let x = i as f32 * 0.1;
            type Pair = (fn(f32) -> f32, fn(f32) -> f32);
            let cases: [Pair; 3] = [
                (gelu, gelu_slope),
                (gelu_tanh, gelu_tanh_slope),
                (silu, silu_slope),
            ];
            for (f, slope) in cases {
                let fd = (f64::from(f(x + h)) - f64::from(f(x - h))) / (2.0 * f64::from(h));
                let got = f64::from(slope(x));
                assert!((got - fd).abs() < 2e-4, "x {x}: slope {got} vs {fd}");
            }
        }
        let mut d = [1.0f32, 2.0, -3.0];
        let x = [0.5f32, -1.0, 2.0];
        crate::engine::simd::scale_by_slope(&mut d, &x, crate::engine::Activation::Silu);
        for ((&d, &x), w) in d.iter().zip(&x).zip([1.0f32, 2.0, -3.0]) {
            assert!((d - w * silu_slope(x)).abs() < 1e-6);
        }
    }
}
