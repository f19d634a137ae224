//! Run-time choice of instruction set for the engine's hot loops.
//!
//! The kernels in `gemm` and `math` are plain Rust. A release build targets baseline x86-64
//! (SSE2), so each hot entry point here has copies compiled with AVX2+FMA and with AVX-512
//! enabled, and picks one on the CPU it finds. The `unsafe` here (the crate's only other use maps
//! weight files, in `model::weights`) is the call itself: calling a
//! function compiled for a feature is sound only on a CPU that has it, and each call below is
//! guarded by the run-time check in [`Isa::detect`].
//!
//! The copies compute the same thing in the same order; only the matrix product differs, by
//! rounding, between the FMA copies (fused multiply-add) and the portable one.
#![allow(unsafe_code)]

use super::gemm::{
    Kernels, MR, MR_AVX512, NR, OutCell, PackedMatrix, Pair, kernel, kernel_direct_pair,
    matmul_with_kernel,
};
use super::math::{self, Activation};
use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The generic kernels (`gemm::kernel`, 6 rows) as a [`Kernels`] value, with fused multiply-adds
/// or without. A macro rather than a function: the closures must be made inside each
/// target-feature wrapper to inherit its features (see `gemm::matmul_with_kernel`).
macro_rules! generic_kernels {
    ($fma:literal) => {
        Kernels {
            block: |strip: &[f32], panel: &[f32]| kernel::<$fma, MR>(strip, panel),
            pair: |strip: &[f32], [left, right]: [&[f32]; 2], _next: [&[f32]; 2]| {
                (
                    kernel::<$fma, MR>(strip, left),
                    kernel::<$fma, MR>(strip, right),
                )
            },
            direct_pair: |rows: &[&[f32]; MR], left: &[f32], right: &[f32]| {
                kernel_direct_pair::<$fma>(rows, left, right)
            },
        }
    };
}

/// Defines `$vis fn $name(args) -> ret { body }` that runs `body` compiled for AVX-512 (with
/// AVX2 and FMA), for AVX2 with FMA, or as built, whichever [`Isa::detect`] found: one body,
/// three copies, so that every entry point picks its instruction set the same way. For bodies
/// that only call code the compiler vectorises (`#[inline(always)]` functions of
/// [`math`]): a closure or a function that is not inlined would be compiled without the
/// features.
macro_rules! on_best_isa {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? $body
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? $body
                match Isa::detect() {
                    // SAFETY: `detect` found AVX2 and FMA on this CPU.
                    Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    // SAFETY: `detect` found AVX-512F, AVX2 and FMA on this CPU.
                    Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    Isa::Portable => {}
                }
            }
            $body
        }
    };
}

/// An instruction set the hot loops can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Baseline: whatever the build targets.
    Portable,
    /// AVX2 with fused multiply-add.
    Avx2,
    /// AVX-512F (with AVX2 and FMA).
    Avx512,
}

impl Isa {
    /// The best instruction set this CPU has, detected once. The environment variable
    /// `ATTNVIZ_ISA` (`portable`, `avx2` or `avx512`) can lower it, for comparisons.
    pub fn detect() -> Self {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let best = Self::available()
                .into_iter()
                .last()
                .unwrap_or(Isa::Portable);
            let cap = match std::env::var("ATTNVIZ_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => Isa::Avx2,
                _ => Isa::Avx512,
            };
            best.min(cap)
        })
    }

    /// `portable`, `avx2` or `avx512`: the spelling `ATTNVIZ_ISA` takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// Every instruction set this CPU can run, from the baseline up (each includes the ones
    /// before it).
    pub fn available() -> Vec<Self> {
        let mut isas = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                isas.push(Isa::Avx2);
                if std::arch::is_x86_feature_detected!("avx512f") {
                    isas.push(Isa::Avx512);
                }
            }
        }
        isas
    }
}

/// Rows in one strip of the matrix kernel that runs on this CPU (8 on AVX-512, else 6): row
/// blocks handed to threads are whole strips of it.
pub(crate) fn strip_rows() -> usize {
    if Isa::detect() == Isa::Avx512 {
        MR_AVX512
    } else {
        MR
    }
}

/// `out = a · b` (or `out += a · b` with `accumulate`) on the best instruction set.
///
/// Shapes: a `[m, k]`, b `[k, n]`, out `[m, n]`; a mismatch is a bug in the caller and panics.
pub fn matmul(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    matmul_cells(Isa::detect(), a, b, out, accumulate);
}

/// `out = a · b` into fresh memory, on the best instruction set: every element of `out` is
/// written, so the caller can take it as initialised afterwards. Saves zeroing an output that
/// the product overwrites anyway (an attention map, 1 MB per head at 512 tokens).
pub fn matmul_fresh(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, MaybeUninit<f32>>,
) {
    matmul_cells(Isa::detect(), a, b, out, false);
}

/// [`matmul`] on a given instruction set; one this CPU lacks falls back to the portable code.
pub fn matmul_with(
    isa: Isa,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    matmul_cells(isa, a, b, out, accumulate);
}

/// [`matmul_with`] into either kind of output (`accumulate` only into `f32`).
fn matmul_cells<T: OutCell>(
    isa: Isa,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, T>,
    accumulate: bool,
) {
    assert!(
        a.ncols() == b.rows() && out.dim() == (a.nrows(), b.cols()),
        "matmul shapes: {:?} · [{}, {}] → {:?}",
        a.dim(),
        b.rows(),
        b.cols(),
        out.dim()
    );
    #[cfg(target_arch = "x86_64")]
    if isa <= Isa::detect() {
        match isa {
            // SAFETY: `available` found AVX2 and FMA on this CPU.
            Isa::Avx2 => return unsafe { matmul_avx2(a, b, out, accumulate) },
            // SAFETY: `available` found AVX-512F, AVX2 and FMA on this CPU.
            Isa::Avx512 => return unsafe { matmul_avx512(a, b, out, accumulate) },
            Isa::Portable => {}
        }
    }
    let kernels = generic_kernels!(false);
    matmul_with_kernel::<false, MR, MR, T, _, _, _>(a, b, out, accumulate, kernels);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn matmul_avx2<T: OutCell>(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, T>,
    acc: bool,
) {
    // A closure made here inherits AVX2 and FMA (see `gemm::matmul_with_kernel`).
    let kernels = generic_kernels!(true);
    matmul_with_kernel::<true, MR, MR, T, _, _, _>(a, b, out, acc, kernels);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn matmul_avx512<T: OutCell>(
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, T>,
    acc: bool,
) {
    // The closure inherits this function's target features, so calling the AVX-512 kernel is
    // safe here; this function runs only where `available` found AVX-512F.
    let kernels = Kernels {
        block: |strip: &[f32], panel: &[f32]| block_avx512(strip, panel),
        pair: |strip: &[f32], panels: [&[f32]; 2], next: [&[f32]; 2]| {
            pair_avx512(strip, panels, next)
        },
        direct_pair: |rows: &[&[f32]; MR_AVX512], left: &[f32], right: &[f32]| {
            direct_pair_avx512(rows, left, right)
        },
    };
    matmul_with_kernel::<true, MR_AVX512, MR_AVX512, T, _, _, _>(a, b, out, acc, kernels);
}

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
fn direct_pair_avx512(rows: &[&[f32]; MR_AVX512], left: &[f32], right: &[f32]) -> Pair<MR_AVX512> {
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
fn pair_avx512(strip: &[f32], [left, right]: [&[f32]; 2], next: [&[f32]; 2]) -> Pair<MR_AVX512> {
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
fn block_avx512(strip: &[f32], panel: &[f32]) -> [[f32; NR]; MR_AVX512] {
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

/// Copies `src` into fresh memory `dst` (same shape), every element, with stores that bypass
/// the cache where the CPU has them (AVX-512). An attention map is written once and read
/// much later, if at all: an ordinary store first reads each line of the destination from
/// memory, 1 MB per head at 512 tokens, and that read was what the score product waited on.
pub fn stream_rows(src: ArrayView2<'_, f32>, mut dst: ArrayViewMut2<'_, MaybeUninit<f32>>) {
    assert_eq!(src.dim(), dst.dim(), "stream_rows shapes");
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512 {
        for (from, mut to) in src.rows().into_iter().zip(dst.rows_mut()) {
            match (from.to_slice(), to.as_slice_mut()) {
                // SAFETY: `detect` found AVX-512F on this CPU.
                (Some(from), Some(to)) => unsafe { stream_row_avx512(from, to) },
                _ => to.iter_mut().zip(from).for_each(|(d, &v)| {
                    d.write(v);
                }),
            }
        }
        // SAFETY: `detect` found AVX-512F (and with it SSE) on this CPU. Streaming stores are
        // weakly ordered: the fence makes them visible before anything this thread publishes
        // later (the team's release of its step).
        unsafe { std::arch::x86_64::_mm_sfence() };
        return;
    }
    dst.zip_mut_with(&src, |d, &v| {
        d.write(v);
    });
}

/// One row of [`stream_rows`]: ordinary stores up to the first 64-byte boundary, streaming
/// stores of whole lines after it, ordinary stores for the rest.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn stream_row_avx512(src: &[f32], dst: &mut [MaybeUninit<f32>]) {
    use std::arch::x86_64::{_mm512_loadu_ps, _mm512_stream_ps};
    let n = src.len().min(dst.len());
    let head = dst.as_ptr().align_offset(64).min(n);
    for (d, &v) in dst[..head].iter_mut().zip(&src[..head]) {
        d.write(v);
    }
    let lines = (n - head) / NR;
    for line in 0..lines {
        let at = head + line * NR;
        // SAFETY: `at + NR <= n` for both slices; `dst[at..]` starts on a 64-byte boundary
        // (`head` aligned it and each line adds 64 bytes), as the streaming store requires.
        unsafe {
            let v = _mm512_loadu_ps(src.as_ptr().add(at));
            _mm512_stream_ps(dst.as_mut_ptr().add(at).cast::<f32>(), v);
        }
    }
    let done = head + lines * NR;
    for (d, &v) in dst[done..n].iter_mut().zip(&src[done..n]) {
        d.write(v);
    }
}

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

#[inline(always)]
fn scale_by_slope_impl(d: &mut [f32], x: &[f32], act: Activation) {
    let pairs = d.iter_mut().zip(x);
    match act {
        Activation::Gelu => pairs.for_each(|(d, &x)| *d *= math::gelu_slope(x)),
        Activation::GeluTanh => pairs.for_each(|(d, &x)| *d *= math::gelu_tanh_slope(x)),
        Activation::Silu => pairs.for_each(|(d, &x)| *d *= math::silu_slope(x)),
    }
}

// One monomorphic loop per activation, so that each vectorises.
#[inline(always)]
fn activate_impl<const FMA: bool>(values: &mut [f32], act: Activation) {
    match act {
        Activation::Gelu => values
            .iter_mut()
            .for_each(|v| *v = math::gelu_with::<FMA>(*v)),
        Activation::GeluTanh => values
            .iter_mut()
            .for_each(|v| *v = math::gelu_tanh_with::<FMA>(*v)),
        Activation::Silu => values
            .iter_mut()
            .for_each(|v| *v = math::silu_with::<FMA>(*v)),
    }
}

#[inline(always)]
fn activate_gated_impl<const FMA: bool>(hidden: &mut [f32], gate: &[f32], act: Activation) {
    let pairs = hidden.iter_mut().zip(gate);
    match act {
        Activation::Gelu => pairs.for_each(|(h, &g)| *h *= math::gelu_with::<FMA>(g)),
        Activation::GeluTanh => pairs.for_each(|(h, &g)| *h *= math::gelu_tanh_with::<FMA>(g)),
        Activation::Silu => pairs.for_each(|(h, &g)| *h *= math::silu_with::<FMA>(g)),
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
    use ndarray::{Array2, s};

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

    /// The gated MLP's backward pass through its activation gives the scalar formula's bits
    /// on whatever instruction set runs, for every activation and lengths around a vector.
    #[test]
    fn gated_backward_rows_are_the_scalar_formula_bit_for_bit() {
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
                for i in 0..n {
                    let (v, s) = match act {
                        Activation::Gelu => (math::gelu(gate[i]), math::gelu_slope(gate[i])),
                        Activation::GeluTanh => {
                            (math::gelu_tanh(gate[i]), math::gelu_tanh_slope(gate[i]))
                        }
                        Activation::Silu => (math::silu(gate[i]), math::silu_slope(gate[i])),
                    };
                    assert_eq!(d_up[i].to_bits(), (d[i] * v).to_bits(), "{act:?} {n} {i}");
                    assert_eq!(
                        d_gate[i].to_bits(),
                        (d[i] * up[i] * s).to_bits(),
                        "{act:?} {n} {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn streamed_rows_equal_their_source_at_every_alignment_and_width() {
        for cols in [1, 15, 16, 17, 33, 64, 100, 512] {
            let src = Array2::from_shape_fn((5, cols), |(r, c)| (r * 1000 + c) as f32 + 0.5);
            // Destinations starting 0..16 floats into a buffer: every alignment modulo 64 bytes.
            for offset in 0..16 {
                let mut buffer = Array2::<f32>::uninit((5, cols + 16));
                stream_rows(src.view(), buffer.slice_mut(s![.., offset..offset + cols]));
                for (r, row) in src.rows().into_iter().enumerate() {
                    for (c, &v) in row.iter().enumerate() {
                        // SAFETY: `stream_rows` wrote every element of the destination.
                        let got = unsafe { buffer[(r, offset + c)].assume_init() };
                        assert_eq!(got, v, "cols {cols}, offset {offset}, ({r}, {c})");
                    }
                }
            }
        }
    }
}
