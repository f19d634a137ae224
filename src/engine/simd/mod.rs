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
    Kernels, MR, MR_AVX512, NR, OutCell, PackedMatrix, PackedRef, SHORT_STRIP_ROWS, kernel,
    kernel_direct, matmul_with_kernel, short_product,
};
use ndarray::{ArrayView2, ArrayViewMut2};
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// The generic kernels (`gemm::kernel`, 6 rows) as a [`Kernels`] value, with fused
/// multiply-adds or without. Two panels read in place are two single-panel kernels over the
/// same rows: one kernel over both kept 24 accumulators of 8 lanes, more than AVX2's 16
/// registers, and spilled 9 of them every step (18 % of a MiniLM forward at 512 tokens on
/// Zen 3; one thread's share of a head's scores ran 1.6× and of its weighted sum 2× faster
/// once split). A macro rather than a function: the closures must be made inside each
/// target-feature wrapper to inherit its features (see `gemm::matmul_with_kernel`).
macro_rules! generic_kernels {
    ($fma:literal) => {
        Kernels {
            block: |strip: &[f32], panel: &[f32], _next: &[f32], _rows: usize| {
                kernel::<$fma, MR>(strip, panel)
            },
            pair: |strip: &[f32], [left, right]: [&[f32]; 2], _next: [&[f32]; 2]| {
                (
                    kernel::<$fma, MR>(strip, left),
                    kernel::<$fma, MR>(strip, right),
                )
            },
            direct_pair: |rows: &[&[f32]; MR], left: &[f32], right: &[f32]| {
                (
                    kernel_direct::<$fma>(rows, left),
                    kernel_direct::<$fma>(rows, right),
                )
            },
            // Two blocks are no better than one at a time (see `gemm::Kernels`); `pair` still
            // runs where a test asks for pairs.
            pairs: false,
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

mod kernels;
mod rows;
mod softmax;

use kernels::{
    block_avx2, block_avx2_rows, block_avx512, direct_pair_avx512, pair_avx512, short_rows_avx2,
};
pub use rows::{
    activate, activate_gated, add_scaled_f64, dot_f32_f64, gated_backward, layer_norm_backward_row,
    layer_norm_row, rms_norm_backward_row, rms_norm_row, scale_by_slope, softmax_backward_row,
};
pub use softmax::{ProbsIn, softmax_rows, softmax_rows_into};

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

/// Rows at the end of a product that the matrix kernel on this CPU computes with a cheaper
/// kernel of their own (the cost of this many rows instead of a whole strip's), or 0 where it
/// has none: [`SHORT_STRIP_ROWS`] on AVX2.
pub(crate) fn short_strip_rows() -> usize {
    if Isa::detect() == Isa::Avx2 {
        SHORT_STRIP_ROWS
    } else {
        0
    }
}

/// `out = a · b` (or `out += a · b` with `accumulate`) on the best instruction set.
///
/// Shapes: a `[m, k]`, b `[k, n]`, out `[m, n]`; a mismatch is a bug in the caller and panics.
pub fn matmul<'b>(
    a: ArrayView2<'_, f32>,
    b: impl Into<PackedRef<'b>>,
    out: ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    matmul_cells(Isa::detect(), a, b.into(), out, accumulate);
}

/// `out = a · b` into fresh memory, on the best instruction set: every element of `out` is
/// written, so the caller can take it as initialised afterwards. Saves zeroing an output that
/// the product overwrites anyway (an attention map, 1 MB per head at 512 tokens).
pub fn matmul_fresh<'b>(
    a: ArrayView2<'_, f32>,
    b: impl Into<PackedRef<'b>>,
    out: ArrayViewMut2<'_, MaybeUninit<f32>>,
) {
    matmul_cells(Isa::detect(), a, b.into(), out, false);
}

/// [`matmul`] on a given instruction set; one this CPU lacks falls back to the portable code.
pub fn matmul_with(
    isa: Isa,
    a: ArrayView2<'_, f32>,
    b: &PackedMatrix,
    out: ArrayViewMut2<'_, f32>,
    accumulate: bool,
) {
    matmul_cells(isa, a, b.into(), out, accumulate);
}

/// [`matmul_with`] into either kind of output (`accumulate` only into `f32`).
fn matmul_cells<T: OutCell>(
    isa: Isa,
    a: ArrayView2<'_, f32>,
    b: PackedRef<'_>,
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
    b: PackedRef<'_>,
    out: ArrayViewMut2<'_, T>,
    acc: bool,
) {
    // Closures made here inherit AVX2 and FMA (see `gemm::matmul_with_kernel`), so calling
    // the AVX2 kernel is safe in them; this function runs only where `available` found AVX2.
    let mut out = out;
    let short = |rows: [&[f32]; MR], b: PackedRef<'_>, panels, out: &mut [&mut [T]], add| {
        short_rows_avx2(rows, b, panels, out, add);
    };
    if short_product::<MR, T>(a, b, &mut out, acc, short) {
        return;
    }
    let generic = generic_kernels!(true);
    let kernels = Kernels {
        block: |strip: &[f32], panel: &[f32], next: &[f32], rows: usize| {
            if rows <= SHORT_STRIP_ROWS {
                block_avx2_rows::<SHORT_STRIP_ROWS>(strip, panel, next)
            } else {
                block_avx2(strip, panel, next)
            }
        },
        pair: generic.pair,
        direct_pair: generic.direct_pair,
        pairs: false,
    };
    matmul_with_kernel::<true, MR, MR, T, _, _, _>(a, b, out, acc, kernels);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn matmul_avx512<T: OutCell>(
    a: ArrayView2<'_, f32>,
    b: PackedRef<'_>,
    out: ArrayViewMut2<'_, T>,
    acc: bool,
) {
    // The closure inherits this function's target features, so calling the AVX-512 kernel is
    // safe here; this function runs only where `available` found AVX-512F.
    let kernels = Kernels {
        block: |strip: &[f32], panel: &[f32], _next: &[f32], _rows: usize| {
            block_avx512(strip, panel)
        },
        pair: |strip: &[f32], panels: [&[f32]; 2], next: [&[f32]; 2]| {
            pair_avx512(strip, panels, next)
        },
        direct_pair: |rows: &[&[f32]; MR_AVX512], left: &[f32], right: &[f32]| {
            direct_pair_avx512(rows, left, right)
        },
        // One kernel over both panels: one broadcast for two multiply-adds.
        pairs: true,
    };
    matmul_with_kernel::<true, MR_AVX512, MR_AVX512, T, _, _, _>(a, b, out, acc, kernels);
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, s};

    #[test]
    fn short_products_are_sequential_fused_sums_bit_for_bit() {
        // Every fused path multiplies-and-adds from zero, one step of the shared dimension
        // after another: `f32::mul_add` rounds once, like the FMA instruction, so the scalar
        // loop gives the exact bits. Depths up to and past DIRECT_MAX_DEPTH (128), rows past a
        // strip, a partial last panel, more panels than one chunk (16 KiB), and `+=`. On
        // every fused path the CPU has, up to the one `ATTNVIZ_ISA` allows (a path above it
        // falls back to the portable one, which does not fuse).
        let allowed = Isa::detect();
        let available: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|&isa| isa != Isa::Portable && isa <= allowed)
            .collect();
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 32, 40),
            (48, 32, 512),
            (13, 64, 33),
            (6, 128, 16),
            (9, 129, 48),
        ] {
            let a =
                Array2::from_shape_fn((m, k), |(r, c)| ((r * 7 + c * 3) % 13) as f32 / 7.0 - 0.9);
            let b =
                Array2::from_shape_fn((k, n), |(r, c)| ((r * 5 + c * 11) % 17) as f32 / 9.0 - 0.8);
            let packed = PackedMatrix::pack(b.view());
            let start = Array2::from_shape_fn((m, n), |(r, c)| (r + c) as f32 * 0.25);
            for accumulate in [false, true] {
                let want = Array2::from_shape_fn((m, n), |(i, j)| {
                    let sum = (0..k).fold(0.0f32, |acc, p| a[[i, p]].mul_add(b[[p, j]], acc));
                    if accumulate { start[[i, j]] + sum } else { sum }
                });
                for &isa in &available {
                    let mut out = start.clone();
                    matmul_with(isa, a.view(), &packed, out.view_mut(), accumulate);
                    for (got, want) in out.iter().zip(&want) {
                        assert_eq!(
                            got.to_bits(),
                            want.to_bits(),
                            "{isa:?} {m}x{k}x{n} {accumulate}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn packed_products_are_the_same_one_panel_at_a_time_as_in_pairs() {
        // AVX2 and the portable kernels take the panels one at a time and AVX-512 in pairs:
        // the same blocks either way, so the same bits. Panel counts odd and even, depths
        // across KC (384), `+=`, and more strips than the AVX2 kernel fetches ahead for.
        for &(m, k, n) in &[(7, 40, 33), (50, 400, 64), (13, 800, 50), (1, 5, 16)] {
            let a = Array2::from_shape_fn((m, k), |(r, c)| ((r * 7 + c * 3) % 13) as f32 / 7.0);
            let b = Array2::from_shape_fn((k, n), |(r, c)| ((r * 5 + c * 11) % 17) as f32 / 9.0);
            let packed = PackedMatrix::pack(b.view());
            let start = Array2::from_shape_fn((m, n), |(r, c)| (r + c) as f32 * 0.25);
            for accumulate in [false, true] {
                let run = |pairs: bool| {
                    let mut out = start.clone();
                    let kernels = Kernels {
                        pairs,
                        ..generic_kernels!(false)
                    };
                    let (a, b) = (a.view(), (&packed).into());
                    matmul_with_kernel::<false, MR, MR, f32, _, _, _>(
                        a,
                        b,
                        out.view_mut(),
                        accumulate,
                        kernels,
                    );
                    out
                };
                let (single, paired) = (run(false), run(true));
                for (x, y) in single.iter().zip(&paired) {
                    assert_eq!(x.to_bits(), y.to_bits(), "{m}x{k}x{n} {accumulate}");
                }
                // And both are the product (each chunk of KC summed from zero, then added).
                let base = if accumulate { 1.0 } else { 0.0 };
                let want = a.dot(&b) + &start * base;
                for (got, want) in single.iter().zip(&want) {
                    assert!(
                        (got - want).abs() <= 1e-3 * want.abs().max(1.0),
                        "{got} {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_long_product_holds_the_bits_of_its_rows_computed_in_short_pieces() {
        // A row's sums must not depend on how many rows share its product: the threads' row
        // blocks (and the app's and the CLI's runs of other lengths) count on it. 517 rows are
        // 87 strips of 6 (65 of 8), the last one partial; pieces of 24 rows are 4 (3). Depth
        // 400 is two KC passes; 40 columns three panels (an odd last one, as pairs leave it);
        // `+=` too; every instruction set this CPU has.
        let (m, k, n) = (517, 400, 40);
        let a = Array2::from_shape_fn((m, k), |(r, c)| ((r * 7 + c * 3) % 13) as f32 / 7.0 - 0.5);
        let b = Array2::from_shape_fn((k, n), |(r, c)| ((r * 5 + c * 11) % 17) as f32 / 9.0);
        let packed = PackedMatrix::pack(b.view());
        let start = Array2::from_shape_fn((m, n), |(r, c)| (r + c) as f32 * 0.25);
        for isa in Isa::available() {
            for accumulate in [false, true] {
                let mut whole = start.clone();
                matmul_with(isa, a.view(), &packed, whole.view_mut(), accumulate);
                let mut pieces = start.clone();
                for row0 in (0..m).step_by(24) {
                    let rows = s![row0..(row0 + 24).min(m), ..];
                    matmul_with(
                        isa,
                        a.slice(rows),
                        &packed,
                        pieces.slice_mut(rows),
                        accumulate,
                    );
                }
                for ((r, x), y) in whole.indexed_iter().zip(&pieces) {
                    assert_eq!(x.to_bits(), y.to_bits(), "{isa:?} {accumulate} at {r:?}");
                }
            }
        }
    }

    #[test]
    fn a_short_last_strip_holds_the_bits_of_the_same_rows_inside_a_whole_strip() {
        // On AVX2 a last strip of at most SHORT_STRIP_ROWS rows runs a kernel of its own: each
        // of its rows must be what the whole-strip kernel makes of it. Every remainder of the
        // rows modulo MR, depths of one and of two passes over KC (384), three panels (the
        // packed path), and `+=`; the same rows inside a taller product, where their strips
        // are whole, give the expected bits.
        let allowed = Isa::detect();
        for isa in Isa::available().into_iter().filter(|&isa| isa <= allowed) {
            for k in [130, 400] {
                let n = 40;
                let b =
                    Array2::from_shape_fn((k, n), |(r, c)| ((r * 5 + c * 11) % 17) as f32 / 9.0);
                let packed = PackedMatrix::pack(b.view());
                let tall = Array2::from_shape_fn((2 * MR + MR, k), |(r, c)| {
                    ((r * 7 + c * 3) % 13) as f32 / 7.0 - 0.9
                });
                let start =
                    Array2::from_shape_fn((tall.nrows(), n), |(r, c)| (r + c) as f32 * 0.25);
                for accumulate in [false, true] {
                    let mut want = start.clone();
                    matmul_with(isa, tall.view(), &packed, want.view_mut(), accumulate);
                    for m in 1..=2 * MR {
                        let mut got = start.slice(s![..m, ..]).to_owned();
                        let a = tall.slice(s![..m, ..]);
                        matmul_with(isa, a, &packed, got.view_mut(), accumulate);
                        for ((i, j), v) in got.indexed_iter() {
                            assert_eq!(
                                v.to_bits(),
                                want[[i, j]].to_bits(),
                                "{isa:?} {m} rows, depth {k}, ({i}, {j}), {accumulate}"
                            );
                        }
                    }
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
