//! The matrix kernels written with intrinsics: on AVX-512, 8 rows by two 16-wide panels
//! (packed or read in place) and an odd last panel; on AVX2, 6 rows by one packed panel that
//! asks for the panel's rows ahead of time, and 6 rows read in place by a run of panels for
//! products at most 128 deep. [`super::matmul`] picks them by the CPU and hands
//! them to `gemm::matmul_with_kernel`.
#![allow(unsafe_code)]

use crate::engine::gemm::{MR, MR_AVX512, NR, OutCell, PackedRef, Pair, store_row};

/// The two blocks of accumulators of a pair kernel, stored as a [`Pair`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn pair_out(
    acc_l: &[std::arch::x86_64::__m512; MR_AVX512],
    acc_r: &[std::arch::x86_64::__m512; MR_AVX512],
) -> Pair<MR_AVX512> {
    use std::arch::x86_64::_mm512_storeu_ps;
    let mut out = ([[0.0f32; NR]; MR_AVX512], [[0.0f32; NR]; MR_AVX512]);
    for i in 0..MR_AVX512 {
        // SAFETY: each row holds exactly NR = 16 floats: unaligned 512-bit stores.
        unsafe {
            _mm512_storeu_ps(out.0[i].as_mut_ptr(), acc_l[i]);
            _mm512_storeu_ps(out.1[i].as_mut_ptr(), acc_r[i]);
        }
    }
    out
}

/// [`pair_avx512`] over `MR_AVX512` rows of the left operand read in place (each at least as
/// long as the panel slices are deep) instead of a packed strip.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn direct_pair_avx512(
    rows: &[&[f32]; MR_AVX512],
    left: &[f32],
    right: &[f32],
) -> Pair<MR_AVX512> {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
    };
    let mut acc_l: [__m512; MR_AVX512] = [_mm512_setzero_ps(); MR_AVX512];
    let mut acc_r: [__m512; MR_AVX512] = [_mm512_setzero_ps(); MR_AVX512];
    let steps = (left.len() / NR).min(right.len() / NR);
    let steps = rows.iter().fold(steps, |s, r| s.min(r.len()));
    let starts: [*const f32; MR_AVX512] = std::array::from_fn(|i| rows[i].as_ptr());
    for (p, (b_l, b_r)) in left
        .chunks_exact(NR)
        .zip(right.chunks_exact(NR))
        .take(steps)
        .enumerate()
    {
        // SAFETY: `b_l` and `b_r` hold exactly NR = 16 floats each: unaligned 512-bit loads.
        let (b_l, b_r) = unsafe { (_mm512_loadu_ps(b_l.as_ptr()), _mm512_loadu_ps(b_r.as_ptr())) };
        for i in 0..MR_AVX512 {
            // SAFETY: p < steps ≤ rows[i].len(), so the read is inside row i.
            let a_i = _mm512_set1_ps(unsafe { *starts[i].add(p) });
            acc_l[i] = _mm512_fmadd_ps(a_i, b_l, acc_l[i]);
            acc_r[i] = _mm512_fmadd_ps(a_i, b_r, acc_r[i]);
        }
    }
    pair_out(&acc_l, &acc_r)
}

/// How many steps ahead [`pair_avx512`] asks for the panels' next rows (48 steps: 3 KiB of
/// each panel), past their end the next pair's. The weights stream from memory once per forward
/// pass; with few rows per thread the kernel waited on those loads (a third of its samples at
/// 32 tokens). Measured on MiniLM (Zen 5, 2 threads): 32 tokens 3.4–3.6 ms against 4.1–4.3
/// without, 128 tokens 9.6–10.3 against 10.9–11.5; 16 to 64 steps were alike, 8 and 128 worse.
/// Fetching into the next pair too: 32 tokens 2.87–3.03 ms against 3.08–3.33 (four
/// alternating runs), 128 tokens 8.6–9.2 against 8.9–9.5.
const PREFETCH_STEPS: usize = 48;

/// One `MR_AVX512 × 2·NR` block over a packed strip and two panel slices: sixteen 512-bit
/// accumulators, one broadcast of the left operand for two multiply-adds, two panel loads per
/// step. The same sums in the same order as [`block_avx512`] on each panel.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn pair_avx512(
    strip: &[f32],
    [left, right]: [&[f32]; 2],
    next: [&[f32]; 2],
) -> Pair<MR_AVX512> {
    use std::arch::x86_64::{
        __m512, _MM_HINT_T0, _mm_prefetch, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps,
        _mm512_setzero_ps,
    };
    let mut acc_l: [__m512; MR_AVX512] = [_mm512_setzero_ps(); MR_AVX512];
    let mut acc_r: [__m512; MR_AVX512] = [_mm512_setzero_ps(); MR_AVX512];
    let steps = (strip.len() / MR_AVX512)
        .min(left.len() / NR)
        .min(right.len() / NR);
    let (a, b_l, b_r) = (strip.as_ptr(), left.as_ptr(), right.as_ptr());
    // One step of the product: row `p` of both panel slices times column `p` of the strip.
    let mut step = |p: usize| {
        // SAFETY: p < steps, so the strip holds MR_AVX512 values from p · MR_AVX512 and each
        // panel slice NR = 16 from p · NR: unaligned 512-bit loads and scalar reads inside them.
        unsafe {
            let (l, r) = (
                _mm512_loadu_ps(b_l.add(p * NR)),
                _mm512_loadu_ps(b_r.add(p * NR)),
            );
            let a = a.add(p * MR_AVX512);
            for i in 0..MR_AVX512 {
                let a_i = _mm512_set1_ps(*a.add(i));
                acc_l[i] = _mm512_fmadd_ps(a_i, l, acc_l[i]);
                acc_r[i] = _mm512_fmadd_ps(a_i, r, acc_r[i]);
            }
        }
    };
    // Each panel's rows PREFETCH_STEPS ahead while they last, then the next pair's first rows:
    // two loops, so that the first has no bounds checks or branches (31 instructions a step
    // instead of 44, among them six reloads of spilled pointers; on the Xeon the products ran
    // within noise of the checked form).
    let inside = steps.saturating_sub(PREFETCH_STEPS);
    for p in 0..inside {
        let ahead = (p + PREFETCH_STEPS) * NR;
        // SAFETY: p + PREFETCH_STEPS < steps, so `ahead` is inside both panel slices.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(b_l.add(ahead).cast());
            _mm_prefetch::<_MM_HINT_T0>(b_r.add(ahead).cast());
        }
        step(p);
    }
    for p in inside..steps {
        let into_next = (p + PREFETCH_STEPS - steps) * NR;
        for next in next {
            if let Some(at) = next.get(into_next) {
                _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(at).cast());
            }
        }
        step(p);
    }
    pair_out(&acc_l, &acc_r)
}

/// One `MR_AVX512 × NR` block over a packed strip and a panel slice (an odd last panel), with
/// 512-bit multiply-adds written out: eight accumulators, one broadcast of the left operand and
/// one load of the panel per step (the generic kernel at this height vectorised across rows,
/// with gathers). The same sums in the same order as the generic kernel with FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn block_avx512(strip: &[f32], panel: &[f32]) -> [[f32; NR]; MR_AVX512] {
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };
    let steps = (strip.len() / MR_AVX512).min(panel.len() / NR);
    let mut acc: [__m512; MR_AVX512] = [_mm512_setzero_ps(); MR_AVX512];
    for p in 0..steps {
        let a = &strip[p * MR_AVX512..(p + 1) * MR_AVX512];
        let b_row = &panel[p * NR..(p + 1) * NR];
        // SAFETY: `b_row` holds exactly NR = 16 floats, one unaligned 512-bit load.
        let b = unsafe { _mm512_loadu_ps(b_row.as_ptr()) };
        for i in 0..MR_AVX512 {
            acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), b, acc[i]);
        }
    }
    let mut out = [[0.0f32; NR]; MR_AVX512];
    for (row, v) in out.iter_mut().zip(acc) {
        // SAFETY: `row` holds exactly NR = 16 floats, one unaligned 512-bit store.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), v) };
    }
    out
}

/// One `MR × NR` block (6 × 16) over a packed strip and a panel slice with AVX2: twelve
/// 256-bit accumulators, two panel loads and six broadcasts per step, the same sums in the
/// same order as the generic kernel with FMA. Like [`pair_avx512`] it asks for the panel's
/// rows [`PREFETCH_STEPS`] ahead, and past the panel's end for the first rows of `next` (the
/// panel the following call reads; empty for none): the compiler's version of the generic
/// kernel fetched nothing ahead, and on Zen 3 the products at 128 tokens ran at two thirds of
/// the rate one thread reaches on them alone.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn block_avx2(strip: &[f32], panel: &[f32], next: &[f32]) -> [[f32; NR]; MR] {
    block_avx2_rows::<MR>(strip, panel, next)
}

/// [`block_avx2`] for the first `R` rows of the strip only (the rows after come back as
/// zeros): a strip of at most [`SHORT_STRIP_ROWS`] rows at the end of the left operand. Its
/// `2R` accumulators each take one multiply-add per step, as in the whole kernel, so every
/// value is the same; the step costs the FMA latency (4 cycles on Zen 3) instead of the six
/// cycles of twelve multiply-adds on two units.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn block_avx2_rows<const R: usize>(
    strip: &[f32],
    panel: &[f32],
    next: &[f32],
) -> [[f32; NR]; MR] {
    use std::arch::x86_64::{
        __m256, _MM_HINT_T0, _mm_prefetch, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    const { assert!(R <= MR) };
    let mut acc: [[__m256; 2]; R] = [[_mm256_setzero_ps(); 2]; R];
    let steps = (strip.len() / MR).min(panel.len() / NR);
    let (a, b) = (strip.as_ptr(), panel.as_ptr());
    let mut step = |p: usize| {
        // SAFETY: p < steps, so the strip holds MR ≥ R values from p · MR and the panel slice
        // NR = 16 from p · NR: unaligned 256-bit loads and scalar reads inside them.
        unsafe {
            let (lo, hi) = (
                _mm256_loadu_ps(b.add(p * NR)),
                _mm256_loadu_ps(b.add(p * NR + 8)),
            );
            let a = a.add(p * MR);
            for (i, acc) in acc.iter_mut().enumerate() {
                let a_i = _mm256_set1_ps(*a.add(i));
                acc[0] = _mm256_fmadd_ps(a_i, lo, acc[0]);
                acc[1] = _mm256_fmadd_ps(a_i, hi, acc[1]);
            }
        }
    };
    // Two loops, as in `pair_avx512`: the first without bounds checks or branches.
    let inside = steps.saturating_sub(PREFETCH_STEPS);
    for p in 0..inside {
        // SAFETY: p + PREFETCH_STEPS < steps, so the address is inside the panel slice.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(b.add((p + PREFETCH_STEPS) * NR).cast()) };
        step(p);
    }
    for p in inside..steps {
        if let Some(at) = next.get((p + PREFETCH_STEPS - steps) * NR) {
            _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(at).cast());
        }
        step(p);
    }
    let mut out = [[0.0f32; NR]; MR];
    for (row, acc) in out.iter_mut().zip(acc) {
        // SAFETY: `row` holds exactly NR = 16 floats: two unaligned 256-bit stores.
        unsafe {
            _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[1]);
        }
    }
    out
}

/// The product of `MR` rows of the left operand read in place (each at least `b.rows()`
/// long) with each panel in `panels`, written (or with `add`, added) straight from the
/// registers into `out` (at most `MR` rows; rows past its end are dropped): the AVX2 kernel of
/// [`gemm::short_product`]. A head's scores are 32 to 128 deep, so the general path's
/// overhead per kernel call (the rows cut, the block returned through the stack and copied)
/// weighed on 32 steps of work; here a call runs a chunk of panels. The same multiply-adds
/// in the same order as `gemm::kernel_direct`: from zero, one step after another.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) fn short_rows_avx2<T: OutCell>(
    rows: [&[f32]; MR],
    b: PackedRef<'_>,
    panels: std::ops::Range<usize>,
    out: &mut [&mut [T]],
    add: bool,
) {
    use std::arch::x86_64::{
        __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps,
    };
    let k = b.rows();
    assert!(
        rows.iter().all(|r| r.len() >= k) && out.iter().all(|r| r.len() >= b.cols()),
        "short_rows_avx2: rows shorter than the product"
    );
    let a: [*const f32; MR] = rows.map(<[f32]>::as_ptr);
    for panel_idx in panels {
        let panel = b.panel(panel_idx);
        let at = panel.as_ptr();
        let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
        for p in 0..k.min(panel.len() / NR) {
            // SAFETY: p < k, so the panel holds NR = 16 values from p · NR and every row
            // (at least k long, asserted above) a value at p.
            unsafe {
                let (lo, hi) = (
                    _mm256_loadu_ps(at.add(p * NR)),
                    _mm256_loadu_ps(at.add(p * NR + 8)),
                );
                for (a_row, acc) in a.iter().zip(acc.iter_mut()) {
                    let a_i = _mm256_broadcast_ss(&*a_row.add(p));
                    acc[0] = _mm256_fmadd_ps(a_i, lo, acc[0]);
                    acc[1] = _mm256_fmadd_ps(a_i, hi, acc[1]);
                }
            }
        }
        let col0 = panel_idx * NR;
        let cols = (b.cols() - col0).min(NR);
        for (dst, acc) in out.iter_mut().zip(&acc) {
            let dst = &mut dst[col0..col0 + cols];
            if cols == NR {
                // `OutCell` is `f32` or `MaybeUninit<f32>`, both laid out as an f32.
                let to = dst.as_mut_ptr().cast::<f32>();
                // SAFETY: `dst` holds NR = 16 elements; with `add` they hold values (see
                // `OutCell::add`).
                unsafe {
                    let (mut lo, mut hi) = (acc[0], acc[1]);
                    if add {
                        lo = _mm256_add_ps(_mm256_loadu_ps(to), lo);
                        hi = _mm256_add_ps(_mm256_loadu_ps(to.add(8)), hi);
                    }
                    _mm256_storeu_ps(to, lo);
                    _mm256_storeu_ps(to.add(8), hi);
                }
            } else {
                let mut row = [0.0f32; NR];
                // SAFETY: `row` holds exactly NR = 16 floats.
                unsafe {
                    _mm256_storeu_ps(row.as_mut_ptr(), acc[0]);
                    _mm256_storeu_ps(row.as_mut_ptr().add(8), acc[1]);
                }
                store_row(dst, &row, add);
            }
        }
    }
}
