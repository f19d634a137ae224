//! Matrix products for the engine: activations times a matrix packed once, ahead of time.
//!
//! Weights never change between forward passes, so each is rearranged once into column panels
//! ([`PackedMatrix`]), and every product only rearranges its (smaller) left operand. The inner
//! kernel keeps a block of the result in registers: here a generic `MR × NR` kernel in plain Rust
//! written so that the compiler turns it into vector code, which `super::simd` compiles for AVX2
//! at run time; on AVX-512, `super::simd` brings its own `8 × 2·NR` kernels written with
//! intrinsics. Either way they reach [`matmul_with_kernel`] as one [`Kernels`] value.

// Unsafe only to add to an output element that a product wrote earlier (`OutCell::add`).
#![allow(unsafe_code)]

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};
use std::cell::RefCell;

/// Rows of the result computed together by the portable and AVX2 kernels: 6 × 16 accumulators
/// are 12 of AVX2's 16 vector registers.
pub(crate) const MR: usize = 6;
/// Rows computed together by the AVX-512 kernels (`super::simd`): over a pair of panels, 8 × 2
/// accumulators of 16 lanes, enough independent multiply-adds to keep two 512-bit FMA units
/// busy through their latency, in strips small enough that two threads share 32 rows evenly.
pub(crate) const MR_AVX512: usize = 8;
/// Columns of the result computed together by the kernel: one packed panel's width.
pub(crate) const NR: usize = 16;
/// The kernels a product runs, as closures made inside the caller's target-feature function:
/// `block` multiplies a packed strip of MR rows by one panel slice (given the slice the next
/// call reads, which it may ask the memory for ahead of time, and how many of the strip's rows
/// are wanted: fewer than MR only at the end of the left operand, where a kernel may skip the
/// padding rows, see [`SHORT_STRIP_ROWS`]), `pair` by two side by side
/// (given the next pair's slices), and `direct_pair` multiplies MRD rows read in place by two
/// panel slices (products two panels wide, such as the attention-weighted sum of 32-wide
/// heads).
///
/// `pairs` says whether packed products run the panels two at a time with `pair`: where
/// `pair` is one kernel over both panels (AVX-512: one broadcast for two multiply-adds). Where
/// it would be two `block` calls (AVX2, portable) the panels go one at a time: a pair's slices
/// (2 × 24 KiB at [`KC`]) and a strip overflow a 32 KiB L1 (Zen 3), one panel's nearly fit,
/// and every strip rereads the panel. MiniLM forward on Zen 3, `examples/interleaved_ab`, one
/// panel at a time against pairs of `block_avx2` calls: 0.981 at 512 tokens (faster in 95 of
/// 120 pairs), 0.980 at 128 (214 of 250), 1.000 at 32 (151 of 300). Without asking for the
/// next panel's first rows ahead it was 1.021 at 32 tokens, where the weights stream from
/// memory. The portable kernels (`ATTNVIZ_ISA=portable`, same machine): 0.910 at 128 tokens,
/// 0.925 at 32.
#[derive(Clone, Copy)]
pub(crate) struct Kernels<K, K2, KD> {
    pub block: K,
    pub pair: K2,
    pub direct_pair: KD,
    pub pairs: bool,
}

/// Two `MR × NR` blocks side by side: the result of a kernel over a pair of panels.
pub(crate) type Pair<const MR: usize> = ([[f32; NR]; MR], [[f32; NR]; MR]);
/// Depth of one pass over the shared dimension: a pair of panel slices (48 KiB) stays in
/// the L1 and L2 caches while every strip passes over it, and products 384 deep (most of MiniLM's)
/// run in one pass. Against 256, in four alternating runs on Zen 5: MiniLM forward at 32 tokens
/// 3.28–3.42 ms against 3.47–3.56, at 128 tokens 9.1–10.1 against 9.8–10.8 (192 and 128 were
/// slower still).
const KC: usize = 384;
/// The AVX2 kernel computes a strip of at most this many rows (the end of the left operand)
/// with a kernel of its own (`super::simd`), whose step costs the FMA latency rather than
/// twelve multiply-adds' throughput: 4 cycles instead of 6 on Zen 3.
pub(crate) const SHORT_STRIP_ROWS: usize = 4;
/// Products at most this many panels wide read the left operand in place.
const DIRECT_MAX_PANELS: usize = 2;
/// Products at most this deep read the left operand in place whatever their width: an
/// attention head's scores (query rows · keys, 32 to 128 deep), where packing the rows cost
/// as much as the product and each kernel call is too short to hide it.
const DIRECT_MAX_DEPTH: usize = 128;
/// Stands in for the rows past the end of the left operand.
static ZEROS: [f32; KC] = [0.0; KC];

/// A `[k, n]` matrix rearranged for [`super::simd::matmul`]: `ceil(n / NR)` panels, each
/// holding `k` rows of `NR` values (the last panel padded with zeros).
#[derive(Clone, Debug, PartialEq)]
pub struct PackedMatrix {
    k: usize,
    n: usize,
    data: Vec<f32>,
}

impl PackedMatrix {
    /// Packs `b` (shape `[k, n]`, any strides).
    pub fn pack(b: ArrayView2<'_, f32>) -> Self {
        let (k, n) = b.dim();
        let panels = n.div_ceil(NR);
        let mut data = vec![0.0f32; panels * k * NR];
        for (p, row) in b.rows().into_iter().enumerate() {
            // A contiguous row goes in NR-wide pieces, one per panel.
            if let Some(row) = row.as_slice() {
                for (panel, piece) in row.chunks(NR).enumerate() {
                    let at = panel * k * NR + p * NR;
                    data[at..at + piece.len()].copy_from_slice(piece);
                }
                continue;
            }
            let (mut panel, mut lane) = (0, 0);
            for &v in row.iter() {
                data[panel * k * NR + p * NR + lane] = v;
                lane += 1;
                if lane == NR {
                    lane = 0;
                    panel += 1;
                }
            }
        }
        Self { k, n, data }
    }

    /// Packs the transpose of `bt` (shape `[n, k]`): the keys of an attention head, packed for
    /// queries · keysᵀ. Reads `bt` row by row, which is faster than [`Self::pack`] on the
    /// transposed view when `bt`'s rows are contiguous.
    pub fn pack_transposed(bt: ArrayView2<'_, f32>) -> Self {
        let (n, k) = bt.dim();
        let mut data = vec![0.0f32; n.div_ceil(NR) * k * NR];
        if k == 0 {
            return Self { k, n, data };
        }
        // Keys whose values are not contiguous are copied first (the tiles below read slices).
        let owned;
        let bt = if bt.rows().into_iter().all(|r| r.as_slice().is_some()) {
            bt
        } else {
            owned = bt.as_standard_layout().into_owned();
            owned.view()
        };
        let keys: Vec<&[f32]> = bt.rows().into_iter().filter_map(|r| r.to_slice()).collect();
        // NR keys at a time, in tiles of NR × NR: each key's values are copied into a local
        // tile (contiguous reads), which is then written out column by column (contiguous
        // writes). Scattering each value straight to its place, with a bounds check per
        // store, took 5–6 µs per 128 × 32 head on the Xeon, a tenth of the head's time.
        for (panel, keys) in data.chunks_exact_mut(k * NR).zip(keys.chunks(NR)) {
            for p0 in (0..k).step_by(NR) {
                let width = NR.min(k - p0);
                let mut tile = [[0.0f32; NR]; NR];
                for (row, key) in tile.iter_mut().zip(keys) {
                    row[..width].copy_from_slice(&key[p0..p0 + width]);
                }
                for (pp, out) in panel[p0 * NR..(p0 + width) * NR]
                    .chunks_exact_mut(NR)
                    .enumerate()
                {
                    for (o, row) in out.iter_mut().zip(&tile) {
                        *o = row[pp];
                    }
                }
            }
        }
        Self { k, n, data }
    }

    /// Rows of the matrix (the shared dimension of a product).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.n
    }

    /// Columns `first..first + count` (clipped to the matrix) as a packed matrix of their own,
    /// borrowed: panels are stored one after another, so whole panels are one slice. `first`
    /// must start a panel (a multiple of [`NR`]).
    pub(crate) fn columns(&self, first: usize, count: usize) -> PackedRef<'_> {
        assert!(
            first.is_multiple_of(NR) && first <= self.n,
            "columns from {first} of a packed matrix {} wide",
            self.n
        );
        let n = count.min(self.n - first);
        let (start, panels) = (first / NR, n.div_ceil(NR));
        PackedRef {
            k: self.k,
            n,
            data: &self.data[start * self.k * NR..(start + panels) * self.k * NR],
        }
    }
}

/// A [`PackedMatrix`], or some of its columns ([`PackedMatrix::columns`]), as the products
/// read it.
#[derive(Clone, Copy, Debug)]
pub struct PackedRef<'a> {
    k: usize,
    n: usize,
    data: &'a [f32],
}

impl<'a> PackedRef<'a> {
    /// Panel `idx`: `k` rows of `NR` values.
    pub(crate) fn panel(&self, idx: usize) -> &'a [f32] {
        &self.data[idx * self.k * NR..(idx + 1) * self.k * NR]
    }

    /// Rows of the matrix (the shared dimension of a product).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of the matrix.
    pub fn cols(&self) -> usize {
        self.n
    }
}

impl<'a> From<&'a PackedMatrix> for PackedRef<'a> {
    fn from(b: &'a PackedMatrix) -> Self {
        Self {
            k: b.k,
            n: b.n,
            data: &b.data,
        }
    }
}

/// An element of a product's output: `f32` (already a value; a product may add to it), or
/// `MaybeUninit<f32>` (fresh memory, which the product writes before anything reads it).
pub(crate) trait OutCell: Copy {
    /// Overwrites the element with `v`.
    fn put(&mut self, v: f32);
    /// Adds `v` to the element.
    ///
    /// # Safety
    /// The element holds a value: it is an `f32`, or an earlier `put` wrote it.
    unsafe fn add(&mut self, v: f32);
}

impl OutCell for f32 {
    #[inline(always)]
    fn put(&mut self, v: f32) {
        *self = v;
    }

    #[inline(always)]
    unsafe fn add(&mut self, v: f32) {
        *self += v;
    }
}

impl OutCell for std::mem::MaybeUninit<f32> {
    #[inline(always)]
    fn put(&mut self, v: f32) {
        self.write(v);
    }

    #[inline(always)]
    unsafe fn add(&mut self, v: f32) {
        // SAFETY: the caller says an earlier `put` wrote the element.
        unsafe { *self.assume_init_mut() += v }
    }
}

thread_local! {
    /// The left operand, rearranged into strips of MR rows; kept per thread between calls.
    static A_PACK: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out = a · b`, or `out += a · b` with `accumulate`. Shapes: a `[m, k]`, b `[k, n]`,
/// out `[m, n]`; the caller checks them. An output of `MaybeUninit<f32>` is written whole,
/// every element before it is read; `accumulate` is then false (the caller makes sure). `FMA` selects fused multiply-adds, which the caller
/// only asks for when the CPU has them (without them `mul_add` is a slow library call).
///
/// Strips of `MR` rows are multiplied by `block`, which returns one `MR × NR` block of the
/// product from a packed strip (`kc · MR` values, column by column) and a panel slice
/// (`kc · NR` values, row by row): [`kernel`], or the AVX-512 kernel in `super::simd`. The
/// in-place kernels for few panels keep their own strip height. `block` must be a closure made
/// inside the caller's target-feature function (a closure inherits its features; a plain
/// function item called through `Fn` is compiled without them, and its `mul_add` becomes a
/// library call).
#[inline(always)]
pub(crate) fn matmul_with_kernel<
    const FMA: bool,
    const MR: usize,
    const MRD: usize,
    T: OutCell,
    K,
    K2,
    KD,
>(
    a: ArrayView2<'_, f32>,
    b: PackedRef<'_>,
    mut out: ArrayViewMut2<'_, T>,
    accumulate: bool,
    kernels: Kernels<K, K2, KD>,
) where
    K: Fn(&[f32], &[f32], &[f32], usize) -> [[f32; NR]; MR] + Copy,
    K2: Fn(&[f32], [&[f32]; 2], [&[f32]; 2]) -> Pair<MR> + Copy,
    KD: Fn(&[&[f32]; MRD], &[f32], &[f32]) -> Pair<MRD> + Copy,
{
    let (m, k, n) = (a.nrows(), b.k, b.n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.map_inplace(|d| d.put(0.0));
        }
        return;
    }
    // Row slices made once: an ndarray slice per tile costs more than the tile's stores.
    if let Some(mut out_rows) = row_slices_mut(&mut out) {
        matmul_rows::<FMA, MR, MRD, T, K, K2, KD>(a, b, &mut out_rows, accumulate, kernels);
        return;
    }
    // Rows that are not contiguous: compute into a fresh matrix, then copy. (Not a recursive
    // call: this function must inline into its target-feature wrappers.)
    let mut tmp = ndarray::Array2::<f32>::zeros((m, n));
    let mut tmp_rows: Vec<&mut [f32]> = tmp
        .rows_mut()
        .into_iter()
        .filter_map(|r| r.into_slice())
        .collect();
    matmul_rows::<FMA, MR, MRD, f32, K, K2, KD>(a, b, &mut tmp_rows, false, kernels);
    ndarray::Zip::from(&mut out).and(&tmp).for_each(|d, &v| {
        if accumulate {
            // SAFETY: with `accumulate` the output holds values (see above).
            unsafe { d.add(v) }
        } else {
            d.put(v);
        }
    });
}

/// [`matmul_with_kernel`] into an output given as contiguous rows.
#[inline(always)]
fn matmul_rows<const FMA: bool, const MR: usize, const MRD: usize, T: OutCell, K, K2, KD>(
    a: ArrayView2<'_, f32>,
    b: PackedRef<'_>,
    out_rows: &mut [&mut [T]],
    accumulate: bool,
    kernels: Kernels<K, K2, KD>,
) where
    K: Fn(&[f32], &[f32], &[f32], usize) -> [[f32; NR]; MR],
    K2: Fn(&[f32], [&[f32]; 2], [&[f32]; 2]) -> Pair<MR>,
    KD: Fn(&[&[f32]; MRD], &[f32], &[f32]) -> Pair<MRD>,
{
    let Kernels {
        block,
        pair,
        direct_pair,
        pairs,
    } = kernels;
    let (m, k, n) = (a.nrows(), b.k, b.n);
    let a_rows: Vec<ArrayView1<'_, f32>> = a.rows().into_iter().collect();
    let a_slices: Option<Vec<&[f32]>> = a_rows.iter().map(|r| r.to_slice()).collect();
    let strips = m.div_ceil(MR);
    // With few panels (the attention-weighted sum has two) or a short shared dimension (the
    // heads' scores), rearranging the left operand would cost about as much as the product:
    // read its rows in place instead.
    let direct = a_slices
        .as_ref()
        .filter(|_| n.div_ceil(NR) <= DIRECT_MAX_PANELS || k <= DIRECT_MAX_DEPTH);
    // Taken out of the thread-local rather than used inside `with`: a closure would be compiled
    // without the caller's target features, and the kernel would call a library fma.
    let mut a_pack = A_PACK.take();
    let need = strips * MR * KC.min(k);
    if a_pack.len() < need {
        a_pack.resize(need, 0.0);
    }
    let mut pc = 0;
    while pc < k {
        let kc = KC.min(k - pc);
        if direct.is_none() {
            pack_strips::<MR>(&a_rows, pc, kc, &mut a_pack[..strips * MR * kc]);
        }
        let add = accumulate || pc > 0;
        let panel_at = |panel_idx: usize| {
            let start = panel_idx * k * NR;
            &b.data[start + pc * NR..start + (pc + kc) * NR]
        };
        // Rows read in place, panels two at a time (the attention-weighted sum of 32-wide
        // heads is one pair; a head's scores one pair per 32 keys): each value of the left
        // operand is loaded once for 32 columns, and the pair's slices stay in L1 while every
        // row passes over them. An odd last panel alone.
        if let Some(a_slices) = direct {
            let panels = n.div_ceil(NR);
            for panel_idx in (0..panels).step_by(2) {
                let col0 = panel_idx * NR;
                if panel_idx + 1 < panels {
                    let (left, right) = (panel_at(panel_idx), panel_at(panel_idx + 1));
                    let cols = (n - col0 - NR).min(NR);
                    for row0 in (0..m).step_by(MRD) {
                        let rows = rows_in_place::<MRD>(a_slices, row0, pc, kc);
                        let (acc_left, acc_right) = direct_pair(&rows, left, right);
                        store(&acc_left, &mut out_rows[row0..], col0, NR, add);
                        store(&acc_right, &mut out_rows[row0..], col0 + NR, cols, add);
                    }
                } else {
                    let panel = panel_at(panel_idx);
                    let cols = n - col0;
                    for row0 in (0..m).step_by(MR_DIRECT) {
                        let rows = rows_in_place::<MR_DIRECT>(a_slices, row0, pc, kc);
                        let acc = kernel_direct::<FMA>(&rows, panel);
                        store(&acc, &mut out_rows[row0..], col0, cols, add);
                    }
                }
            }
            pc += kc;
            continue;
        }
        let panels = n.div_ceil(NR);
        let strip_at = |strip_idx: usize| &a_pack[strip_idx * MR * kc..(strip_idx + 1) * MR * kc];
        // One panel at a time (see `Kernels`), its slice staying in L1 while every strip passes
        // over it; the first strip asks for the next panel's first rows.
        if !pairs {
            for panel_idx in 0..panels {
                let col0 = panel_idx * NR;
                let (panel, cols) = (panel_at(panel_idx), (n - col0).min(NR));
                let next = if panel_idx + 1 < panels {
                    panel_at(panel_idx + 1)
                } else {
                    &[][..]
                };
                for strip_idx in 0..strips {
                    let next = if strip_idx == 0 { next } else { &[][..] };
                    let rows = (m - strip_idx * MR).min(MR);
                    let acc = block(strip_at(strip_idx), panel, next, rows);
                    store(&acc, &mut out_rows[strip_idx * MR..], col0, cols, add);
                }
            }
            pc += kc;
            continue;
        }
        // Panels two at a time (32 columns), each pair's slice staying in the caches while every
        // strip passes over it; an odd last panel alone.
        for panel_idx in (0..panels).step_by(2) {
            let col0 = panel_idx * NR;
            if panel_idx + 1 < panels {
                let (left, right) = (panel_at(panel_idx), panel_at(panel_idx + 1));
                let cols = (n - col0 - NR).min(NR);
                // The next pair's slices, for the first strip to fetch ahead (later strips find
                // them in the cache).
                let next = [panel_idx + 2, panel_idx + 3]
                    .map(|i| if i < panels { panel_at(i) } else { &[][..] });
                for strip_idx in 0..strips {
                    let row0 = strip_idx * MR;
                    let next = if strip_idx == 0 { next } else { [&[][..]; 2] };
                    let (acc_left, acc_right) = pair(strip_at(strip_idx), [left, right], next);
                    store(&acc_left, &mut out_rows[row0..], col0, NR, add);
                    store(&acc_right, &mut out_rows[row0..], col0 + NR, cols, add);
                }
            } else {
                let panel = panel_at(panel_idx);
                let cols = n - col0;
                for strip_idx in 0..strips {
                    let row0 = strip_idx * MR;
                    store(
                        &block(strip_at(strip_idx), panel, &[], (m - row0).min(MR)),
                        &mut out_rows[row0..],
                        col0,
                        cols,
                        add,
                    );
                }
            }
        }
        pc += kc;
    }
    A_PACK.set(a_pack);
}

/// The rows of `out` as slices, or `None` when some row is not contiguous.
#[inline(always)]
fn row_slices_mut<'a, T>(out: &'a mut ArrayViewMut2<'_, T>) -> Option<Vec<&'a mut [T]>> {
    out.rows_mut().into_iter().map(|r| r.into_slice()).collect()
}

/// Rows the in-place kernels read together.
const MR_DIRECT: usize = MR;

/// Rows `row0..row0 + R` of the left operand, columns `pc..pc + kc`; zeros past its end.
#[inline(always)]
fn rows_in_place<'a, const R: usize>(
    a_slices: &[&'a [f32]],
    row0: usize,
    pc: usize,
    kc: usize,
) -> [&'a [f32]; R] {
    std::array::from_fn(|i| {
        a_slices
            .get(row0 + i)
            .map_or(&ZEROS[..kc], |r| &r[pc..pc + kc])
    })
}

/// Values of the right operand's panels a short product takes at a time (16 KiB): they stay
/// in L1 while every group of rows passes over them.
const SHORT_CHUNK_VALUES: usize = 4096;

/// `out = a · b` (or `out += a · b` with `accumulate`) for a product at most
/// [`DIRECT_MAX_DEPTH`] deep (a head's scores), whose left operand's rows are read in place:
/// `rows_kernel(rows, b, panels, out_rows, add)` writes the product of `MR` rows (zeros past
/// the end) with each panel in `panels` straight into those rows of the output, a chunk of
/// panels at a time. Returns false, having done nothing, for a deeper product or rows that
/// are not contiguous: the caller then runs the general path. The kernel must add the same
/// products in the same order as [`kernel_direct`] (from zero, one step of the shared
/// dimension after another), so the values do not depend on which path ran.
#[inline(always)]
pub(crate) fn short_product<const MR: usize, T: OutCell>(
    a: ArrayView2<'_, f32>,
    b: PackedRef<'_>,
    out: &mut ArrayViewMut2<'_, T>,
    accumulate: bool,
    rows_kernel: impl Fn([&[f32]; MR], PackedRef<'_>, std::ops::Range<usize>, &mut [&mut [T]], bool),
) -> bool {
    let (k, n) = (b.k, b.n);
    if k == 0 || k > DIRECT_MAX_DEPTH || a.ncols() != k || out.dim() != (a.nrows(), n) {
        return false;
    }
    let Some(a_slices) = a
        .rows()
        .into_iter()
        .map(|r| r.to_slice())
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let Some(mut out_rows) = row_slices_mut(out) else {
        return false;
    };
    let panels = n.div_ceil(NR);
    let chunk = (SHORT_CHUNK_VALUES / (k * NR)).max(1);
    for first in (0..panels).step_by(chunk) {
        let chunk_panels = first..(first + chunk).min(panels);
        for row0 in (0..a_slices.len()).step_by(MR) {
            let rows = rows_in_place::<MR>(&a_slices, row0, 0, k);
            let end = (row0 + MR).min(out_rows.len());
            rows_kernel(
                rows,
                b,
                chunk_panels.clone(),
                &mut out_rows[row0..end],
                accumulate,
            );
        }
    }
    true
}

/// Writes (or with `add`, adds) an MR × NR block into `out_rows[..MR]` at columns
/// `col0..col0 + cols`; rows past the end of the output are dropped. `add` is only asked for
/// an output that holds values: an `f32` one with `accumulate`, or any after the first pass
/// over the shared dimension, which wrote every element.
#[inline(always)]
fn store<const MR: usize, T: OutCell>(
    acc: &[[f32; NR]; MR],
    out_rows: &mut [&mut [T]],
    col0: usize,
    cols: usize,
    add: bool,
) {
    for (acc_row, dst) in acc.iter().zip(out_rows) {
        // A whole panel's width is a fixed-size copy, which compiles to two vector moves; a
        // copy of `cols` values would be a call to memmove per row (3.6 % of a MiniLM forward
        // at 512 tokens).
        match <&mut [T; NR]>::try_from(&mut dst[col0..col0 + cols]) {
            Ok(whole) => store_row(whole, acc_row, add),
            Err(_) => store_row(&mut dst[col0..col0 + cols], acc_row, add),
        }
    }
}

/// One row of [`store`]: `dst[i] = src[i]`, or `+=` with `add`, for each `dst` element.
#[inline(always)]
pub(crate) fn store_row<T: OutCell>(dst: &mut [T], src: &[f32; NR], add: bool) {
    if add {
        for (d, &v) in dst.iter_mut().zip(src) {
            // SAFETY: `store`'s caller only asks to add to elements that hold values.
            unsafe { d.add(v) }
        }
    } else {
        for (d, &v) in dst.iter_mut().zip(src) {
            d.put(v);
        }
    }
}

/// Copies `a[.., pc..pc + kc]` into strips of MR rows, each stored column by column
/// (`strip[p · MR + i] = a[row0 + i, pc + p]`), padding the last strip with zeros.
#[inline(always)]
fn pack_strips<const MR: usize>(
    a_rows: &[ArrayView1<'_, f32>],
    pc: usize,
    kc: usize,
    dst: &mut [f32],
) {
    for (strip_idx, strip) in dst.chunks_exact_mut(MR * kc).enumerate() {
        let rows = a_rows.get(strip_idx * MR..).unwrap_or(&[]);
        // Rows that are columns of a matrix (a transposed view: a head's probabilities in its
        // backward pass) hold a strip's MR values of one column side by side in memory: read
        // them column by column, not row by row down the strides.
        if rows.len() >= MR && rows[..MR].iter().all(|r| r.as_slice().is_none()) {
            for p in 0..kc {
                for (i, row) in rows[..MR].iter().enumerate() {
                    strip[p * MR + i] = row[pc + p];
                }
            }
            continue;
        }
        for i in 0..MR {
            match a_rows.get(strip_idx * MR + i) {
                None => {
                    for p in 0..kc {
                        strip[p * MR + i] = 0.0;
                    }
                }
                Some(row) => match row.as_slice() {
                    Some(src) => {
                        for (p, &v) in src[pc..pc + kc].iter().enumerate() {
                            strip[p * MR + i] = v;
                        }
                    }
                    None => {
                        for p in 0..kc {
                            strip[p * MR + i] = row[pc + p];
                        }
                    }
                },
            }
        }
    }
}

/// One MR × NR block of the product over a strip (`kc · MR` values) and a panel slice
/// (`kc · NR` values). The fixed-size loops unroll into vector multiply-adds.
#[inline(always)]
pub(crate) fn kernel<const FMA: bool, const MR: usize>(
    strip: &[f32],
    panel: &[f32],
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    for (a, b) in strip.chunks_exact(MR).zip(panel.chunks_exact(NR)) {
        let a: &[f32; MR] = a.try_into().unwrap_or(&[0.0; MR]);
        let b: &[f32; NR] = b.try_into().unwrap_or(&[0.0; NR]);
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = if FMA {
                    a[i].mul_add(b[j], acc[i][j])
                } else {
                    acc[i][j] + a[i] * b[j]
                };
            }
        }
    }
    acc
}

/// [`kernel`] reading MR rows of the left operand in place (each `kc` long) instead of a
/// packed strip.
#[inline(always)]
pub(crate) fn kernel_direct<const FMA: bool>(
    rows: &[&[f32]; MR],
    panel: &[f32],
) -> [[f32; NR]; MR] {
    let mut acc = [[0.0f32; NR]; MR];
    let steps = rows.iter().fold(panel.len() / NR, |s, r| s.min(r.len()));
    // Each row cut to the steps taken, so that indexing it by a step needs no bounds check.
    let rows: [&[f32]; MR] = std::array::from_fn(|i| &rows[i][..steps]);
    for (p, b) in panel.chunks_exact(NR).take(steps).enumerate() {
        let b: &[f32; NR] = b.try_into().unwrap_or(&[0.0; NR]);
        for i in 0..MR {
            let a = rows[i][p];
            for j in 0..NR {
                acc[i][j] = if FMA {
                    a.mul_add(b[j], acc[i][j])
                } else {
                    acc[i][j] + a * b[j]
                };
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array2, array, s};

    fn reference(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
        let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
        for i in 0..a.nrows() {
            for j in 0..b.ncols() {
                out[[i, j]] = (0..a.ncols())
                    .map(|p| f64::from(a[[i, p]]) * f64::from(b[[p, j]]))
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    fn filled(rows: usize, cols: usize, salt: usize) -> Array2<f32> {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            ((r * 31 + c * 17 + salt * 7) % 23) as f32 / 11.0 - 1.0
        })
    }

    #[test]
    fn packing_a_transpose_row_by_row_matches_packing_the_view() {
        for &(n, k) in &[
            (1, 1),
            (17, 5),
            (40, 32),
            (16, 3),
            (128, 64),
            (33, 40),
            (5, 0),
        ] {
            let bt = filled(n, k, 5);
            assert_eq!(
                PackedMatrix::pack_transposed(bt.view()),
                PackedMatrix::pack(bt.t())
            );
            // Keys read through a strided view (every other column of a wider matrix).
            let wide = filled(n, 2 * k, 6);
            let strided = wide.slice(s![.., ..;2]);
            assert_eq!(
                PackedMatrix::pack_transposed(strided),
                PackedMatrix::pack(strided.t())
            );
        }
    }

    #[test]
    fn a_products_columns_are_its_panels_read_alone() {
        // 50 columns are four panels (the last 2 wide); blocks start on panels, and a count
        // past the end is clipped.
        let a = filled(13, 70, 1);
        let w = filled(70, 50, 2);
        let packed = PackedMatrix::pack(w.view());
        let mut whole = Array2::<f32>::zeros((13, 50));
        super::super::simd::matmul(a.view(), &packed, whole.view_mut(), false);
        for (first, count) in [(0, 50), (0, 16), (16, 32), (32, 18), (48, 100), (16, 5)] {
            let cols = packed.columns(first, count);
            let n = count.min(50 - first);
            assert_eq!((cols.rows(), cols.cols()), (70, n));
            let mut part = Array2::<f32>::zeros((13, n));
            super::super::simd::matmul(a.view(), cols, part.view_mut(), false);
            assert_eq!(
                part,
                whole.slice(s![.., first..first + n]),
                "{first}+{count}"
            );
        }
    }

    #[test]
    fn two_by_two_by_hand() {
        // [1 2; 3 4] · [5 6; 7 8] = [1·5+2·7, 1·6+2·8; 3·5+4·7, 3·6+4·8] = [19 22; 43 50]
        let a = array![[1.0f32, 2.0], [3.0, 4.0]];
        let b = PackedMatrix::pack(array![[5.0f32, 6.0], [7.0, 8.0]].view());
        let mut out = Array2::<f32>::zeros((2, 2));
        super::super::simd::matmul(a.view(), &b, out.view_mut(), false);
        assert_eq!(out, array![[19.0, 22.0], [43.0, 50.0]]);
        // Accumulating adds the product again.
        super::super::simd::matmul(a.view(), &b, out.view_mut(), true);
        assert_eq!(out, array![[38.0, 44.0], [86.0, 100.0]]);
    }

    #[test]
    fn edges_depths_and_strides_match_the_reference() {
        // Sizes straddle MR, NR and KC; k = 0 gives zeros.
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 5, 17),
            (9, 300, 32),
            (13, 300, 33),
            (6, 256, 16),
            (5, 0, 3),
            // Panel pairs with a partial right panel, an odd last panel, rows past a strip.
            (17, 40, 56),
            (9, 520, 88),
            (33, 7, 64),
            // Short products read in place over many panels (a head's scores), an odd last
            // panel, and depths either side of DIRECT_MAX_DEPTH.
            (48, 32, 128),
            (50, 64, 80),
            (12, 128, 48),
            (12, 129, 48),
        ] {
            let a = filled(m, k, 1);
            let b = filled(k, n, 2);
            let packed = PackedMatrix::pack(b.view());
            let want = reference(&a, &b);
            let mut fused: Option<Array2<f32>> = None;
            // Every path the CPU has, up to the one `ATTNVIZ_ISA` allows (a path above it
            // falls back to the portable one).
            let allowed = super::super::simd::Isa::detect();
            for isa in super::super::simd::Isa::available()
                .into_iter()
                .filter(|&isa| isa <= allowed)
            {
                let mut out = Array2::<f32>::from_elem((m, n), 9.0);
                super::super::simd::matmul_with(isa, a.view(), &packed, out.view_mut(), false);
                let err = (&out - &want).iter().fold(0.0f32, |e, v| e.max(v.abs()));
                assert!(err < 1e-4, "{isa:?} {m}x{k}x{n}: {err}");
                // Every fused path adds the same products in the same order, whatever its
                // kernel's shape: AVX2 and AVX-512 agree bit for bit.
                if isa != super::super::simd::Isa::Portable {
                    match &fused {
                        Some(first) => assert_eq!(first, &out, "{isa:?} {m}x{k}x{n}"),
                        None => fused = Some(out),
                    }
                }
            }
            // Into fresh memory (past KC, later passes add to what the first wrote): the
            // same values as into an initialised output.
            let mut fresh = Array2::<f32>::uninit((m, n));
            super::super::simd::matmul_fresh(a.view(), &packed, fresh.view_mut());
            // SAFETY: matmul_fresh writes every element.
            let fresh = unsafe { fresh.assume_init() };
            let mut out = Array2::<f32>::zeros((m, n));
            super::super::simd::matmul(a.view(), &packed, out.view_mut(), false);
            assert_eq!(fresh, out, "fresh {m}x{k}x{n}");
        }
        // A transposed (strided) left operand, a strided right operand and a column slice
        // of the output.
        let a = filled(40, 9, 3);
        let b = filled(20, 40, 4);
        let packed = PackedMatrix::pack(b.t());
        let mut wide = Array2::<f32>::zeros((9, 30));
        super::super::simd::matmul(a.t(), &packed, wide.slice_mut(s![.., 5..25]), false);
        let want = reference(&a.t().to_owned(), &b.t().to_owned());
        let err = (&wide.slice(s![.., 5..25]) - &want)
            .iter()
            .fold(0.0f32, |e, v| e.max(v.abs()));
        assert!(err < 1e-4, "{err}");
        assert!(wide.slice(s![.., ..5]).iter().all(|&v| v == 0.0));
        // An output whose rows are not contiguous (a transposed view), accumulated into.
        let mut transposed = Array2::<f32>::ones((20, 9));
        super::super::simd::matmul(a.t(), &packed, transposed.view_mut().reversed_axes(), true);
        let err = (&transposed.t() - &(&want + 1.0))
            .iter()
            .fold(0.0f32, |e, v| e.max(v.abs()));
        assert!(err < 1e-4, "{err}");
        assert!(wide.slice(s![.., 25..]).iter().all(|&v| v == 0.0));
        // A transposed left operand packs the same values as its contiguous copy, past KC and
        // with a partial last strip: the same bits.
        for (rows, depth) in [(17, 400), (16, 40), (3, 9)] {
            let a = filled(depth, rows, 5);
            let packed = PackedMatrix::pack(filled(depth, 33, 6).view());
            let mut strided = Array2::<f32>::zeros((rows, 33));
            super::super::simd::matmul(a.t(), &packed, strided.view_mut(), false);
            let mut copied = Array2::<f32>::zeros((rows, 33));
            let contiguous = a.t().to_owned();
            super::super::simd::matmul(contiguous.view(), &packed, copied.view_mut(), false);
            assert_eq!(strided, copied, "{rows}x{depth}");
        }
    }
}
