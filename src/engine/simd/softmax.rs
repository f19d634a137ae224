//! Softmax of attention rows on the best instruction set; on AVX-512 written with intrinsics,
//! bit for bit the scalar code of [`math::softmax_row_with`].
#![allow(unsafe_code)]

use super::Isa;
use crate::engine::gemm::NR;
use crate::engine::math;
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use std::mem::MaybeUninit;

/// Softmax of every row of `scores` in place ([`math::softmax_row`]), with `allowed` marking
/// the keys each query may see.
pub fn softmax_rows(scores: ArrayViewMut2<'_, f32>, allowed: Option<ArrayView2<'_, bool>>) {
    #[cfg(target_arch = "x86_64")]
    match Isa::detect() {
        // SAFETY: `detect` found AVX2 and FMA on this CPU.
        Isa::Avx2 => return unsafe { softmax_rows_avx2(scores, allowed) },
        // SAFETY: `detect` found AVX-512F, AVX2 and FMA on this CPU.
        Isa::Avx512 => return unsafe { softmax_rows_avx512(scores, allowed) },
        Isa::Portable => {}
    }
    softmax_rows_impl::<false>(scores, allowed);
}

/// Where [`softmax_rows_into`] left the probabilities for the next step to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbsIn {
    /// In the destination, written there by the last pass (and still in the cache).
    Dst,
    /// In the scores too: the destination got them by streaming stores, which leave nothing
    /// in the cache.
    Scores,
}

/// The softmax of every row of `scores` ([`softmax_rows`]) written into `dst` (fresh memory
/// of the same shape, every element written), and where to read it next. On AVX-512 the rows
/// are computed in place and streamed into `dst` with stores that bypass the cache
/// ([`super::stream_rows`]; measured there in session 12); elsewhere the last pass of each
/// row stores into `dst` directly, which saves a copy of every map: MiniLM's forward on Zen 3
/// (`examples/interleaved_ab.rs`, the same process) 0.983 and 0.988 at 512 tokens (B faster
/// in 93 of 150 and 127 of 200 pairs), 0.995 at 128 (187 of 300). The same values either way.
pub fn softmax_rows_into(
    mut scores: ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
    mut dst: ArrayViewMut2<'_, MaybeUninit<f32>>,
) -> ProbsIn {
    assert_eq!(scores.dim(), dst.dim(), "softmax_rows_into shapes");
    #[cfg(target_arch = "x86_64")]
    match Isa::detect() {
        Isa::Avx512 => {
            softmax_rows(scores.view_mut(), allowed);
            super::stream_rows(scores.view(), dst);
            return ProbsIn::Scores;
        }
        Isa::Avx2 => {
            // SAFETY: `detect` found AVX2 and FMA on this CPU.
            unsafe { softmax_rows_into_impl_avx2(scores, allowed, dst) };
            return ProbsIn::Dst;
        }
        Isa::Portable => {}
    }
    softmax_rows_into_impl::<false>(scores.view_mut(), allowed, dst.view_mut());
    ProbsIn::Dst
}

#[inline(always)]
fn softmax_rows_into_impl<const FMA: bool>(
    scores: ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
    dst: ArrayViewMut2<'_, MaybeUninit<f32>>,
) {
    softmax_rows_into_summed::<FMA>(scores, allowed, dst, math::row_sum_f64);
}

/// [`softmax_rows_into_impl`] with the exponentials' sum taken by `sum` (see
/// `math::softmax_row_into_summed`).
#[inline(always)]
fn softmax_rows_into_summed<const FMA: bool>(
    mut scores: ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
    mut dst: ArrayViewMut2<'_, MaybeUninit<f32>>,
    sum: impl Fn(&[f32]) -> f64 + Copy,
) {
    let rows = scores
        .axis_iter_mut(Axis(0))
        .zip(dst.axis_iter_mut(Axis(0)));
    for (query_idx, (mut row, mut to)) in rows.enumerate() {
        let allowed_row = allowed.as_ref().and_then(|a| a.row(query_idx).to_slice());
        match (row.as_slice_mut(), to.as_slice_mut()) {
            (Some(row), Some(to)) => {
                math::softmax_row_into_summed::<FMA>(row, allowed_row, to, sum);
            }
            // Rows that are not contiguous (not made by the engine): in place, then copied.
            _ => {
                let mut owned = row.to_owned();
                if let Some(row) = owned.as_slice_mut() {
                    math::softmax_row_with::<FMA>(row, allowed_row);
                }
                to.zip_mut_with(&owned, |d, &v| {
                    d.write(v);
                });
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_rows_into_impl_avx2(
    scores: ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
    dst: ArrayViewMut2<'_, MaybeUninit<f32>>,
) {
    softmax_rows_into_summed::<true>(scores, allowed, dst, |row: &[f32]| row_sum_f64_avx2(row));
}

/// `math::row_sum_f64` with AVX2 intrinsics: its 32 f64 lanes are eight 256-bit registers,
/// each filled from half of a vector of eight floats, and added up in the same tree (so the
/// same bits). The compiler's version of the loop ran in 128-bit registers; with this one the
/// MiniLM forward took 0.990 and 0.988 of the time at 512 tokens (`examples/interleaved_ab`,
/// Zen 3, B faster in 73 of 100 and 86 of 120 pairs), 0.998 at 128. (The exponentials and
/// the sum in one pass, as on AVX-512, was slower: see ARCHITECTURE.md.)
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
fn row_sum_f64_avx2(row: &[f32]) -> f64 {
    use std::arch::x86_64::{
        _mm_add_pd, _mm_cvtsd_f64, _mm_unpackhi_pd, _mm256_add_pd, _mm256_castpd256_pd128,
        _mm256_castps256_ps128, _mm256_cvtps_pd, _mm256_extractf128_pd, _mm256_extractf128_ps,
        _mm256_loadu_ps, _mm256_setzero_pd,
    };
    const W: usize = 8;
    let chunked = row.len() / math::LANES_F64 * math::LANES_F64;
    let at = row.as_ptr();
    let mut sums = [_mm256_setzero_pd(); 8];
    for i in (0..chunked).step_by(math::LANES_F64) {
        // Lane j of `row_sum_f64` (the elements at j mod 32) is lane j mod 4 of register j / 4.
        for q in 0..4 {
            // SAFETY: i + 8q + 8 ≤ i + 32 ≤ chunked ≤ the row's length.
            let v = unsafe { _mm256_loadu_ps(at.add(i + q * W)) };
            sums[2 * q] = _mm256_add_pd(sums[2 * q], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
            let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v));
            sums[2 * q + 1] = _mm256_add_pd(sums[2 * q + 1], high);
        }
    }
    // `math::tree_sum` of the 32 lanes: lanes i += i + 16 (registers k += k + 4), then + 8
    // (k += k + 2), + 4 (0 += 1), + 2 (the two halves of register 0), + 1.
    let s16: [_; 4] = std::array::from_fn(|k| _mm256_add_pd(sums[k], sums[k + 4]));
    let s8 = [_mm256_add_pd(s16[0], s16[2]), _mm256_add_pd(s16[1], s16[3])];
    let s4 = _mm256_add_pd(s8[0], s8[1]);
    let s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd::<1>(s4));
    let s1 = _mm_cvtsd_f64(s2) + _mm_cvtsd_f64(_mm_unpackhi_pd(s2, s2));
    s1 + row[chunked..].iter().map(|&v| f64::from(v)).sum::<f64>()
}

#[inline(always)]
fn softmax_rows_impl<const FMA: bool>(
    mut scores: ArrayViewMut2<'_, f32>,
    allowed: Option<ArrayView2<'_, bool>>,
) {
    for (query_idx, mut row) in scores.axis_iter_mut(Axis(0)).enumerate() {
        let allowed_row = allowed.as_ref().and_then(|a| a.row(query_idx).to_slice());
        if let Some(row) = row.as_slice_mut() {
            math::softmax_row_with::<FMA>(row, allowed_row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn softmax_rows_avx2(scores: ArrayViewMut2<'_, f32>, allowed: Option<ArrayView2<'_, bool>>) {
    softmax_rows_impl::<true>(scores, allowed);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn softmax_rows_avx512(mut scores: ArrayViewMut2<'_, f32>, allowed: Option<ArrayView2<'_, bool>>) {
    for (query_idx, mut row) in scores.axis_iter_mut(Axis(0)).enumerate() {
        let allowed_row = allowed.as_ref().and_then(|a| a.row(query_idx).to_slice());
        if let Some(row) = row.as_slice_mut() {
            softmax_row_avx512(row, allowed_row);
        }
    }
}

/// [`math::softmax_row_with`]`::<true>` written with AVX-512 intrinsics: the same operations
/// on the same values in the same order, so the same bits (the test below compares them). The
/// compiler's version summed the f64 lanes two at a time in 128-bit registers, 32 instructions
/// per 16 scores, and took a separate pass for the sum; here the sum is four 512-bit
/// registers, filled in the pass that computes the exponentials.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn softmax_row_avx512(row: &mut [f32], allowed: Option<&[bool]>) -> bool {
    use std::arch::x86_64::{
        _mm_add_pd, _mm_cvtsd_f64, _mm_unpackhi_pd, _mm256_add_pd, _mm256_castpd_ps,
        _mm256_castpd256_pd128, _mm256_extractf128_pd, _mm512_add_pd, _mm512_castpd512_pd256,
        _mm512_castps_pd, _mm512_castps512_ps256, _mm512_cvtps_pd, _mm512_extractf64x4_pd,
        _mm512_loadu_ps, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps, _mm512_max_ps,
        _mm512_mul_ps, _mm512_reduce_max_ps, _mm512_set1_ps, _mm512_setzero_pd, _mm512_storeu_ps,
        _mm512_sub_ps,
    };
    if let Some(allowed) = allowed {
        for (x, &ok) in row.iter_mut().zip(allowed) {
            if !ok {
                *x = f32::NEG_INFINITY;
            }
        }
    }
    let n = row.len();
    let whole = n / NR * NR;
    let tail_mask: u16 = (1u32 << (n - whole)).wrapping_sub(1) as u16;
    let at = row.as_mut_ptr();
    // The largest element, NaN skipped: `max_ps(v, m)` is `v > m ? v : m`, as in `row_max`;
    // a max is exact, so the order of the lanes does not matter.
    // SAFETY (every load and store below): `i + NR <= whole <= n` for whole vectors, and the
    // tail's accesses are masked to its `n − whole` elements.
    let mut lanes = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..whole).step_by(NR) {
        lanes = _mm512_max_ps(unsafe { _mm512_loadu_ps(at.add(i)) }, lanes);
    }
    let max = row[whole..]
        .iter()
        .fold(_mm512_reduce_max_ps(lanes), |m, &v| m.max(v));
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return false;
    }
    let max_v = _mm512_set1_ps(max);
    // The exponentials, and their sum in `math::LANES_F64` = 32 f64 lanes (four registers;
    // lane j takes the elements at j mod 32 of the whole 32-element chunks), as `row_sum_f64`.
    let chunked = n / math::LANES_F64 * math::LANES_F64;
    let mut sums = [_mm512_setzero_pd(); 4];
    // Two vectors a step, so that each register of `sums` has a fixed place (indexed by a
    // variable, they lived on the stack and every add waited on a store).
    for i in (0..chunked).step_by(math::LANES_F64) {
        let e = [i, i + NR].map(|j| {
            let e = exp_avx512(_mm512_sub_ps(unsafe { _mm512_loadu_ps(at.add(j)) }, max_v));
            unsafe { _mm512_storeu_ps(at.add(j), e) };
            e
        });
        for (half, e) in e.into_iter().enumerate() {
            let low = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
            // The upper eight floats, through a 256-bit extract that AVX-512F has (the f32 one
            // needs AVX-512DQ).
            let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
                _mm512_castps_pd(e),
            )));
            sums[2 * half] = _mm512_add_pd(sums[2 * half], low);
            sums[2 * half + 1] = _mm512_add_pd(sums[2 * half + 1], high);
        }
    }
    for i in (chunked..whole).step_by(NR) {
        let e = exp_avx512(_mm512_sub_ps(unsafe { _mm512_loadu_ps(at.add(i)) }, max_v));
        unsafe { _mm512_storeu_ps(at.add(i), e) };
    }
    if whole < n {
        let tail = unsafe { _mm512_maskz_loadu_ps(tail_mask, at.add(whole)) };
        let e = exp_avx512(_mm512_sub_ps(tail, max_v));
        unsafe { _mm512_mask_storeu_ps(at.add(whole), tail_mask, e) };
    }
    // `math::tree_sum` of the 32 lanes: lanes i += i + 16, then + 8, + 4, + 2, + 1.
    let s16 = [
        _mm512_add_pd(sums[0], sums[2]),
        _mm512_add_pd(sums[1], sums[3]),
    ];
    let s8 = _mm512_add_pd(s16[0], s16[1]);
    let s4 = _mm256_add_pd(_mm512_castpd512_pd256(s8), _mm512_extractf64x4_pd::<1>(s8));
    let s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd::<1>(s4));
    let s1 = _mm_cvtsd_f64(s2) + _mm_cvtsd_f64(_mm_unpackhi_pd(s2, s2));
    let sum = s1 + row[chunked..].iter().map(|&v| f64::from(v)).sum::<f64>();
    // ≥ 1 because the max contributes e^0 = 1.
    let inv = _mm512_set1_ps((1.0 / sum) as f32);
    for i in (0..whole).step_by(NR) {
        unsafe { _mm512_storeu_ps(at.add(i), _mm512_mul_ps(_mm512_loadu_ps(at.add(i)), inv)) };
    }
    if whole < n {
        let tail = unsafe { _mm512_maskz_loadu_ps(tail_mask, at.add(whole)) };
        unsafe { _mm512_mask_storeu_ps(at.add(whole), tail_mask, _mm512_mul_ps(tail, inv)) };
    }
    true
}

/// [`math::exp_f32_with`]`::<true>` on 16 lanes: the same operations, so the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn exp_avx512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::{
        _CMP_GE_OQ, _mm512_add_epi32, _mm512_add_ps, _mm512_castps_si512, _mm512_castsi512_ps,
        _mm512_cmp_ps_mask, _mm512_fmadd_ps, _mm512_fnmadd_ps, _mm512_maskz_mov_ps, _mm512_max_ps,
        _mm512_min_ps, _mm512_mul_ps, _mm512_set1_epi32, _mm512_set1_ps, _mm512_slli_epi32,
        _mm512_sub_epi32, _mm512_sub_ps,
    };
    let floor = _mm512_set1_ps(-87.0);
    // `max_ps(x, c)` is `x > c ? x : c` and `min_ps(x, c)` is `x < c ? x : c`: NaN becomes −87,
    // as in the scalar code's comparisons.
    let xc = _mm512_min_ps(_mm512_max_ps(x, floor), _mm512_set1_ps(88.0));
    let t = _mm512_mul_ps(xc, _mm512_set1_ps(std::f32::consts::LOG2_E));
    let magic = _mm512_set1_ps(math::EXP_MAGIC);
    let shifted = _mm512_add_ps(t, magic);
    let k = _mm512_sub_ps(shifted, magic);
    let k_int = _mm512_sub_epi32(
        _mm512_castps_si512(shifted),
        _mm512_set1_epi32(math::EXP_MAGIC.to_bits() as i32),
    );
    // fma(−k, c, x) = −(k·c) + x exactly: negation is exact.
    let f = _mm512_fnmadd_ps(k, _mm512_set1_ps(math::LN2_HI), xc);
    let f = _mm512_fnmadd_ps(k, _mm512_set1_ps(math::LN2_LO), f);
    let mut p = _mm512_set1_ps(math::EXP_TAYLOR[0]);
    for &c in &math::EXP_TAYLOR[1..] {
        p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
    }
    let bits = _mm512_slli_epi32::<23>(_mm512_add_epi32(k_int, _mm512_set1_epi32(127)));
    let r = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    // x ≥ −87 is false for NaN and below the cut-off: exactly 0 there.
    _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, floor), r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written into a map, the probabilities are the in-place softmax's bits, including rows
    /// with masked keys and rows with none allowed (zeros), and the scores are left where
    /// `ProbsIn` says the next step reads them.
    #[test]
    fn softmax_into_a_map_equals_the_softmax_in_place() {
        for (rows, cols) in [(1, 1), (5, 17), (48, 512), (7, 33)] {
            let scores = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
                ((r * 37 + c * 11) % 29) as f32 * 0.7 - 9.0
            });
            // Row 1 sees nothing; the others every key but those at multiples of 3 past 0.
            let allowed = ndarray::Array2::from_shape_fn((rows, cols), |(r, c)| {
                r != 1 && (c == 0 || c % 3 != 0)
            });
            for mask in [None, Some(allowed.view())] {
                let mut want = scores.clone();
                softmax_rows(want.view_mut(), mask);
                let mut block = scores.clone();
                let mut map = ndarray::Array2::<f32>::uninit((rows, cols));
                let at = softmax_rows_into(block.view_mut(), mask, map.view_mut());
                // SAFETY: `softmax_rows_into` writes every element.
                let map = unsafe { map.assume_init() };
                let bits =
                    |a: &ndarray::Array2<f32>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&map), bits(&want), "{rows}x{cols} {}", mask.is_some());
                if at == ProbsIn::Scores {
                    assert_eq!(bits(&block), bits(&want), "{rows}x{cols}");
                }
                if mask.is_some() && rows > 1 {
                    assert!(map.row(1).iter().all(|&v| v == 0.0));
                }
            }
        }
    }

    /// The AVX2 f64 sum is `math::row_sum_f64` bit for bit, at every length around its 32
    /// lanes, on values whose order matters in f64 (magnitudes 2^-40 to 2^40).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx2_row_sum_is_the_scalar_sum_bit_for_bit() {
        if Isa::detect() < Isa::Avx2 {
            eprintln!("skipped: this CPU (or ATTNVIZ_ISA) has no AVX2");
            return;
        }
        for n in (0..100).chain([127, 128, 129, 512, 515]) {
            let row: Vec<f32> = (0..n)
                .map(|i| {
                    let sign = if i % 3 == 0 { -1.0 } else { 1.0 };
                    sign * 2f32.powi(i * 37 % 81 - 40) * (1.0 + i as f32 / 7.0)
                })
                .collect();
            // SAFETY: `detect` found AVX2 and FMA on this CPU.
            let got = unsafe { row_sum_f64_avx2(&row) };
            assert_eq!(got.to_bits(), math::row_sum_f64(&row).to_bits(), "n {n}");
        }
    }

    /// The AVX-512 softmax is the scalar one's operations in intrinsics: the same bits, for
    /// every row length around the vector and chunk sizes, with masks, NaN, ±∞ and scores far
    /// outside exp's range.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_softmax_rows_are_bit_identical_to_the_scalar_code() {
        if Isa::detect() < Isa::Avx512 {
            eprintln!("skipped: this CPU has no AVX-512");
            return;
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let specials = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            -200.0,
            150.0,
            0.0,
            -0.0,
        ];
        for n in (0..70).chain([95, 96, 97, 127, 128, 129, 512, 515]) {
            for case in 0..6 {
                let row: Vec<f32> = (0..n)
                    .map(|_| {
                        let r = next();
                        if case >= 3 && r % 17 == 0 {
                            specials[(r >> 8) as usize % specials.len()]
                        } else {
                            ((r >> 11) as f32 / (1u64 << 53) as f32 - 0.5) * 40.0
                        }
                    })
                    .collect();
                let allowed: Vec<bool> = (0..n)
                    .map(|i| case % 2 == 0 || next() % 3 != 0 || i == 0)
                    .collect();
                let allowed = (case % 3 == 1).then_some(&allowed[..]);
                let mut expected = row.clone();
                let expected_some = math::softmax_row_with::<true>(&mut expected, allowed);
                let mut got = row.clone();
                // SAFETY: `detect` found AVX-512F on this CPU.
                let got_some = unsafe { softmax_row_avx512(&mut got, allowed) };
                assert_eq!(got_some, expected_some, "n {n}, case {case}");
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "n {n}, case {case}, element {i}: {g} vs {e}"
                    );
                }
            }
        }
    }
}
