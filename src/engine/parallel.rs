//! The engine's worker threads: the shared rayon pool, a block's team of threads kept awake
//! between its steps ([`on_pool`]), row-block splitting of a matrix ([`par_rows`]), an
//! order-keeping parallel map ([`parallel_map`]) and how many threads a run gets
//! ([`threads_for`]).

// Unsafe only to hand a step, borrowed from the leader's stack, to the team's other threads
// (`StepRef`), and to find the team the calling thread leads (`with_team`).
#![allow(unsafe_code)]

use super::gemm::{NR, PackedMatrix, PackedRef};
use super::options::RunOptions;
use super::simd;
use ndarray::{Array2, ArrayView2, ArrayViewMut2, Axis};
use std::any::Any;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Sequences at least this long split the heads across threads; below it the thread start-up
/// costs more than it saves. Measured in `benches/engine.rs` (AMD EPYC Zen 5, 2 cores,
/// 2026-12-06): MiniLM at 32 tokens takes 5.2–5.4 ms on two threads against 6.7–6.8 ms on one
/// (the threshold was 48, so 32 tokens ran on one).
pub(super) const PARALLEL_MIN_TOKENS: usize = 32;
/// Row blocks of [`par_rows`] are cut into shrinking pieces ([`guided_strips`]) when each
/// thread's share keeps twice this many rows.
const PIECE_MIN_ROWS: usize = 128;
/// The shortest piece [`guided_strips`] cuts, in strips, however few rows (the last piece may
/// be shorter): each piece of a row-split product reads all of its weights again.
const PIECE_MIN_STRIPS: usize = 6;
/// More threads than this rarely pays for a dozen heads.
pub(super) const MAX_THREADS: usize = 8;

/// The threads the engine's pool has (one per core, at most [`MAX_THREADS`]): for work outside
/// a forward pass that splits into pieces of its own (a vocabulary-wide head).
pub(crate) fn pool_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
}

/// How many threads a sequence of `len` tokens gets, unless the options say.
pub(super) fn threads_for(len: usize, opts: &RunOptions) -> usize {
    opts.threads.unwrap_or_else(|| {
        if len >= PARALLEL_MIN_TOKENS {
            pool_threads()
        } else {
            1
        }
    })
}

/// Calls `f(first_row, block)` on disjoint row blocks of `out`, on the block's team (see
/// [`on_pool`]) or else the engine's thread pool: one block per thread, as even as the matrix
/// kernel's cost allows ([`balanced_cost`]), or, when each thread's share keeps twice
/// [`PIECE_MIN_ROWS`] rows, shrinking pieces that the threads claim as they finish
/// ([`guided_strips`]), so that a thread slowed by the host leaves the other only a short
/// piece to wait for. How many blocks there are and how long depends on the rows, `threads`
/// and the instruction set alone, and no row's values depend on them.
pub(super) fn par_rows<T: Send>(
    out: &mut Array2<T>,
    threads: usize,
    f: &(dyn Fn(usize, ArrayViewMut2<'_, T>) + Sync),
) {
    let rows = out.nrows();
    let strip = simd::strip_rows();
    let threads = threads.clamp(1, rows.div_ceil(strip).max(1));
    if threads == 1 {
        f(0, out.view_mut());
        return;
    }
    let sizes = if rows / threads >= 2 * PIECE_MIN_ROWS {
        guided_strips(rows, strip, threads)
    } else {
        balanced_cost(rows, strip, simd::short_strip_rows(), threads)
    };
    par_chunks(out.view_mut(), Axis(0), &sizes, f);
}

/// Lengths of `parts` consecutive row blocks covering `rows` whose costliest block costs the
/// matrix kernel as little as possible, the longest first: with one block a thread, a product
/// takes as long as its costliest block. A block costs `strip` rows for each whole strip, and
/// for a partial last strip `short` rows if it has at most `short` (the kernel's cheaper
/// version for those, [`simd::short_strip_rows`]; 0 for none), else a whole strip's. Each
/// block but the last is the longest within that cost. Without a short kernel these are whole
/// strips, as even as strips allow; with one, 128 rows on two threads on AVX2 split
/// 64 + 64 (10 strips and 4 rows each, the cost of 64 rows) instead of 66 + 62 (the first a
/// thread's 66): MiniLM's forward at 128 tokens took 0.991 of the time (`examples/
/// interleaved_ab`, Zen 3, faster in 144 of 250 pairs).
fn balanced_cost(rows: usize, strip: usize, short: usize, parts: usize) -> Vec<usize> {
    let parts = parts.max(1);
    // The longest block within a cost of `budget`.
    let longest = |budget: usize| {
        let tail = if short > 0 && budget % strip >= short {
            short
        } else {
            0
        };
        budget / strip * strip + tail
    };
    let mut budget = rows.div_ceil(parts);
    while longest(budget) * parts < rows {
        budget += 1;
    }
    let len = longest(budget);
    let mut left = rows;
    (0..parts)
        .map(|_| {
            let take = len.min(left);
            left -= take;
            take
        })
        .filter(|&len| len > 0)
        .collect()
}

/// Lengths of row blocks covering `rows`, each a whole number of `strip`-row strips (the last
/// ends at `rows`), the longest first: each takes `1 / (2 · threads)` of the strips still left,
/// but at least an eighth of a thread's share (`strips / (4 · threads)`) and at least
/// [`PIECE_MIN_STRIPS`]. The threads claim them in order as they finish ("guided"
/// scheduling), so a thread that the host slows down ends at most one short piece after the
/// other instead of up to a quarter of the product: at 512 tokens two blocks a thread (22, 22,
/// 21, 21 strips) left the leader spinning for the other thread in 6.7 % of a loaded host's
/// MiniLM samples. Measured on Zen 3 with the host loaded, one process alternating the
/// versions call by call: these pieces (22, 16, 12, 10, 10, 10, 6 strips at 512 rows) made
/// MiniLM's forward at 512 tokens 0.939 of the time (faster in 43 of 60 pairs) and
/// integrated gradients on SmolLM2 (32 steps in batches of 1,024 rows) 0.962 (5 of 8).
/// Without the eighth, six strips at least, the forward gained as much (0.946, 76 of 100) but
/// integrated gradients lost (1.034, 1.054: eleven pieces at 1,024 rows, each reading
/// SmolLM2's 10.5 MB of MLP weights again); three strips at least were no faster (1.005). At
/// 128 tokens, where one block a thread stays, pieces were within the noise (0.985, 0.992).
fn guided_strips(rows: usize, strip: usize, threads: usize) -> Vec<usize> {
    let share = 2 * threads.max(1);
    let mut strips_left = rows.div_ceil(strip.max(1));
    let floor = PIECE_MIN_STRIPS.max(strips_left / (2 * share));
    let mut rows_left = rows;
    let mut sizes = Vec::new();
    while strips_left > 0 {
        let take = strips_left.div_ceil(share).max(floor).min(strips_left);
        strips_left -= take;
        let len = (take * strip).min(rows_left);
        rows_left -= len;
        sizes.push(len);
    }
    sizes
}

/// Lengths of blocks of `chunk` covering `len` (the last may be shorter).
fn fixed_chunks(len: usize, chunk: usize) -> Vec<usize> {
    let chunk = chunk.max(1);
    (0..len.div_ceil(chunk))
        .map(|i| chunk.min(len - i * chunk))
        .collect()
}

/// Calls `f(first, block)` on consecutive blocks of `out` along `axis`, `sizes` long (they
/// add up to its length), on the block's team (see [`on_pool`]) or else the engine's thread
/// pool.
fn par_chunks<T: Send>(
    out: ArrayViewMut2<'_, T>,
    axis: Axis,
    sizes: &[usize],
    f: &(dyn Fn(usize, ArrayViewMut2<'_, T>) + Sync),
) {
    debug_assert_eq!(
        sizes.iter().sum::<usize>(),
        out.len_of(axis),
        "par_chunks sizes"
    );
    if sizes.len() <= 1 {
        f(0, out);
        return;
    }
    // Each block with its first index along `axis`.
    fn split<'a, T>(
        out: ArrayViewMut2<'a, T>,
        axis: Axis,
        sizes: &[usize],
    ) -> Vec<(usize, ArrayViewMut2<'a, T>)> {
        let mut rest = out;
        let mut first = 0;
        let mut blocks = Vec::with_capacity(sizes.len());
        for &len in sizes {
            let (block, tail) = rest.split_at(axis, len);
            blocks.push((first, block));
            first += len;
            rest = tail;
        }
        blocks
    }
    // Taken by the team when there is one; otherwise still here below.
    let mut whole = Some(out);
    with_team(|team| {
        let team = team?;
        let blocks: Vec<Mutex<Option<_>>> = split(whole.take()?, axis, sizes)
            .into_iter()
            .map(|block| Mutex::new(Some(block)))
            .collect();
        team.run(blocks.len(), &|i| {
            let block = lock(&blocks[i]).take();
            if let Some((first, block)) = block {
                f(first, block);
            }
        });
        Some(())
    });
    let Some(out) = whole else {
        return;
    };
    if in_step() {
        f(0, out);
        return;
    }
    let Some(pool) = pool() else {
        f(0, out);
        return;
    };
    pool.scope(|scope| {
        for (first, block) in split(out, axis, sizes) {
            scope.spawn(move |_| f(first, block));
        }
    });
}

/// Whether a product of `rows` rows on `threads` threads splits its columns rather than its
/// rows ([`Split::Columns`]): when each thread's share of the rows is so small that streaming
/// the weights dominates. Split by rows, every thread reads every weight; split by columns,
/// each reads its own part once.
pub(super) fn split_columns(rows: usize, threads: usize) -> bool {
    threads > 1 && rows < COLUMNS_BELOW_ROWS
}

/// See [`split_columns`]. Measured on Zen 3 (MiniLM, one process alternating the two splits
/// call by call, `examples/interleaved_ab.rs`): QKV and the MLP's hidden activations by
/// columns were 0.5–2.4 % faster at 32 tokens and 2.5 % slower at 128.
const COLUMNS_BELOW_ROWS: usize = 64;

/// Which way [`par_fresh`] splits a matrix over the threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Row blocks, as [`par_rows`] makes them.
    Rows,
    /// One block of columns per thread, each a whole number of panel pairs (32 columns), so
    /// that every product inside reads whole panels of its packed weights
    /// ([`Fresh::product_of_columns`]).
    Columns,
}

/// A fresh `[rows, cols]` matrix whose blocks (`split` says which way) `f(first, block)` fills
/// on `threads` threads; `first` is the block's first row or first column. Each block comes as
/// [`Fresh`] memory, which `f` fills with a product ([`Fresh::product`]) before it does
/// anything else with it. It saves zeroing an output that the product overwrites anyway:
/// `Array2::zeros` before every projection had been about 1–3 % of a forward or a gradient
/// (memset in the profiles). No value depends on the split.
pub(super) fn par_fresh(
    split: Split,
    rows: usize,
    cols: usize,
    threads: usize,
    f: &(dyn Fn(usize, Fresh<'_>) + Sync),
) -> Array2<f32> {
    let mut out = Array2::<f32>::uninit((rows, cols));
    let fill: &(dyn Fn(usize, ArrayViewMut2<'_, MaybeUninit<f32>>) + Sync) =
        &|first, block| f(first, Fresh(Some(block)));
    match split {
        Split::Rows => par_rows(&mut out, threads, fill),
        Split::Columns => {
            let pair = 2 * NR;
            let chunk = cols.div_ceil(pair).div_ceil(threads.max(1)).max(1) * pair;
            par_chunks(out.view_mut(), Axis(1), &fixed_chunks(cols, chunk), fill);
        }
    }
    // SAFETY: the split hands `f` every element of `out`, in disjoint blocks, and each block's
    // `Fresh` was either filled by `matmul_fresh` (which writes every element) or zeroed when
    // it was dropped unused. A panic in between unwinds past this line.
    unsafe { out.assume_init() }
}

/// A block of uninitialised output (see [`par_fresh`]).
pub(super) struct Fresh<'a>(Option<ArrayViewMut2<'a, MaybeUninit<f32>>>);

impl<'a> Fresh<'a> {
    /// Rows of the block.
    pub(super) fn nrows(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.nrows())
    }

    /// Fills the block with `a · b` (a `[rows, k]`, b `[k, cols]`) and returns it, every
    /// element written.
    pub(super) fn product<'b>(
        mut self,
        a: ArrayView2<'_, f32>,
        b: impl Into<PackedRef<'b>>,
    ) -> ArrayViewMut2<'a, f32> {
        let Some(mut cells) = self.0.take() else {
            unreachable!("a Fresh block is filled once: `product` consumes it")
        };
        simd::matmul_fresh(a, b, cells.view_mut());
        // SAFETY: `matmul_fresh` wrote every element of `cells`.
        unsafe { cells.assume_init() }
    }

    /// Columns of the block.
    pub(super) fn ncols(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.ncols())
    }

    /// [`Self::product`] for a column block starting at `col0` of a wider matrix: `a · b`'s
    /// columns `col0..col0 + self.ncols()` (`col0` starts a panel, as the blocks of
    /// [`Split::Columns`] do).
    pub(super) fn product_of_columns(
        self,
        a: ArrayView2<'_, f32>,
        b: &PackedMatrix,
        col0: usize,
    ) -> ArrayViewMut2<'a, f32> {
        let cols = self.ncols();
        self.product(a, b.columns(col0, cols))
    }
}

impl Drop for Fresh<'_> {
    /// A block dropped without its product is zeroed, so that the matrix is initialised
    /// whatever `f` did.
    fn drop(&mut self) {
        if let Some(cells) = self.0.as_mut() {
            cells.map_inplace(|c| {
                c.write(0.0);
            });
        }
    }
}

/// Runs `f` on the calling thread, leading a team of `threads` (the caller and the first
/// `threads − 1` pool threads) when `threads` > 1: the products and head loops inside split
/// their work over the team, whose other members spin between steps instead of sleeping (see
/// [`Team`]). A forward pass runs all of its blocks in one call, so the caller hears about
/// every block (for `progress`) without handing the work back and forth: handing each block
/// to the pool and back cost two thread wake-ups per block. A nested call, or one from inside
/// a step, runs in place.
pub(super) fn on_pool<R>(threads: usize, f: impl FnOnce() -> R) -> R {
    let nested = in_step() || with_team(|team| team.is_some());
    match pool() {
        Some(pool) if threads > 1 && !nested => {
            let helpers = helpers(pool, threads);
            let team = std::sync::Arc::new(Team::new());
            // The helpers are jobs the leader does not wait for: one that starts after the team
            // has ended returns at once, and a pool thread busy with another run's team (the
            // app can run an analysis and a forward side by side) only means this team has
            // fewer members. Waiting for them at the end (a rayon scope) held a quick forward
            // until a long analysis on the same pool thread had finished.
            let shared = std::sync::Arc::clone(&team);
            pool.spawn_broadcast(move |ctx| {
                if ctx.index() < helpers {
                    shared.serve();
                }
            });
            let _leading = Leading {
                team: &team,
                before: LEADING.with(|l| l.replace(std::sync::Arc::as_ptr(&team))),
            };
            f()
        }
        _ => f(),
    }
}

/// Runs `f` on every thread of the team [`on_pool`] would make for `threads`, all at the same
/// time: the calling thread and the pool threads that would help it.
pub(super) fn on_every_member(threads: usize, f: &(dyn Fn() + Sync)) {
    match pool() {
        Some(pool) if threads > 1 => {
            let helpers = helpers(pool, threads);
            pool.in_place_scope(|scope| {
                scope.spawn_broadcast(|_, ctx| {
                    if ctx.index() < helpers {
                        f();
                    }
                });
                f();
            });
        }
        _ => f(),
    }
}

/// How many pool threads help a team of `threads` (always the first ones, so that the same
/// threads, with their scratch and their allocator arenas, do a run's work every time).
fn helpers(pool: &rayon::ThreadPool, threads: usize) -> usize {
    threads.min(pool.current_num_threads()).saturating_sub(1)
}

/// Maps `f` over 0..count on the block's team, or else the engine's thread pool (when
/// `threads` > 1), keeping the order.
pub(crate) fn parallel_map<T: Send>(
    count: usize,
    threads: usize,
    f: &(dyn Fn(usize) -> T + Sync),
) -> Vec<T> {
    use rayon::prelude::*;
    if threads <= 1 || count <= 1 || in_step() {
        return (0..count).map(f).collect();
    }
    let on_team = with_team(|team| {
        let team = team?;
        let slots: Vec<Mutex<Option<T>>> = (0..count).map(|_| Mutex::new(None)).collect();
        team.run(count, &|i| {
            let value = f(i);
            *lock(&slots[i]) = Some(value);
        });
        Some(slots)
    });
    if let Some(slots) = on_team {
        // `Team::run` returns once every piece has run (or resumes the first panic), so every
        // slot is filled; an empty one would only be computed again here.
        return slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                slot.into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .unwrap_or_else(|| f(i))
            })
            .collect();
    }
    match pool() {
        Some(pool) => pool.install(|| (0..count).into_par_iter().map(f).collect()),
        None => (0..count).map(f).collect(),
    }
}

/// The engine's worker threads (`attn-pool-N`), started on first use; `None` if the system
/// refuses them, and then everything runs on the calling thread.
fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("attn-pool-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// A block's threads, kept awake between its parallel steps.
///
/// Handing each step to rayon costs a wake-up whenever the other thread has gone to sleep
/// in between, which it does within microseconds: on this project's 2-core KVM guest a
/// sleeping thread took about 35 µs to start (`serial 20 µs, 2 × 100 µs of work` ran in 154 µs
/// a step against 121 µs with a spinning helper). A block of MiniLM has four parallel steps with
/// a little serial work between them, so at 32 and 128 tokens that was a tenth of the forward.
/// Inside [`on_pool`] the pool's other threads instead spin on the team, pick up each step the
/// moment it is posted, and park only after [`IDLE_SPIN`] without work.
///
/// A step is `count` pieces, claimed one at a time by whichever member is free (the leader
/// included), so a member that starts late only means the others do more. Which thread runs a
/// piece never changes what it computes: the split is the same as without a team.
struct Team {
    /// Bumped for each posted step.
    epoch: AtomicU64,
    /// The current step with its epoch, `None` between steps. A member registers with the
    /// step (its `active` count) under this lock, and the leader clears the slot under it
    /// before waiting for `active` to reach zero: after that no member can still see the step.
    slot: Mutex<Option<(u64, StepRef)>>,
    /// Set when the block is over: the members return to the pool.
    stop: AtomicBool,
    /// Members that are parked (or about to park), to be unparked by the next step.
    parked: Mutex<Vec<std::thread::Thread>>,
    parked_count: AtomicUsize,
}

/// Members spin this long without a step before they park.
const IDLE_SPIN: Duration = Duration::from_millis(1);

/// One parallel step: `work(i)` for every `i` in `0..count`.
struct Step<'a> {
    work: &'a (dyn Fn(usize) + Sync),
    count: usize,
    next: AtomicUsize,
    /// Members other than the leader that are inside the step.
    active: AtomicUsize,
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

/// A pointer to the leader's current [`Step`], shared with the members.
#[derive(Clone, Copy)]
struct StepRef(*const Step<'static>);

// SAFETY: a `StepRef` is only dereferenced by a member registered in the step's `active` count,
// and the leader keeps the step alive (on its stack, in `Team::run`) until that count is zero.
// `Step` itself is `Sync`: its closure is `Sync` and the rest are atomics and mutexes.
unsafe impl Send for StepRef {}

thread_local! {
    /// The team this thread leads, inside [`on_pool`].
    static LEADING: Cell<*const Team> = const { Cell::new(std::ptr::null()) };
    /// True while this thread runs a piece of a step: parallel calls inside run in place.
    static IN_STEP: Cell<bool> = const { Cell::new(false) };
}

impl Team {
    fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            slot: Mutex::new(None),
            stop: AtomicBool::new(false),
            parked: Mutex::new(Vec::new()),
            parked_count: AtomicUsize::new(0),
        }
    }

    /// Runs `work(i)` for every `i` in `0..count` on the team, and returns when all are done.
    /// A panic in any piece is resumed here once every member has left the step.
    fn run(&self, count: usize, work: &(dyn Fn(usize) + Sync)) {
        let step = Step {
            work,
            count,
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panic: Mutex::new(None),
        };
        let epoch = self.epoch.load(Ordering::Relaxed) + 1;
        let erased = StepRef(std::ptr::from_ref(&step).cast::<Step<'static>>());
        *lock(&self.slot) = Some((epoch, erased));
        self.epoch.store(epoch, Ordering::SeqCst);
        self.unpark_all();
        step.claim_all();
        *lock(&self.slot) = None;
        while step.active.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
        }
        if let Some(payload) = lock(&step.panic).take() {
            std::panic::resume_unwind(payload);
        }
    }

    /// A member's loop: runs pieces of every step posted until the team stops.
    fn serve(&self) {
        let mut seen = self.epoch.load(Ordering::Acquire);
        let mut idle_since = Instant::now();
        let mut spins = 0u32;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let epoch = self.epoch.load(Ordering::Acquire);
            if epoch != seen {
                seen = epoch;
                let joined = match *lock(&self.slot) {
                    Some((e, step)) if e == epoch => {
                        // SAFETY: the step is in the slot, so the leader has not cleared it
                        // yet and will wait for this registration to end before the step goes.
                        unsafe { &*step.0 }.active.fetch_add(1, Ordering::Relaxed);
                        Some(step)
                    }
                    _ => None,
                };
                if let Some(step) = joined {
                    // SAFETY: registered above; deregistered only after the last use.
                    let step = unsafe { &*step.0 };
                    step.claim_all();
                    step.active.fetch_sub(1, Ordering::Release);
                }
                idle_since = Instant::now();
                spins = 0;
                continue;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) {
                std::hint::spin_loop();
            } else if idle_since.elapsed() < IDLE_SPIN {
                std::thread::yield_now();
            } else {
                self.park(seen);
                idle_since = Instant::now();
            }
        }
    }

    /// Parks the calling member until the next step or the end of the team (or 10 ms).
    fn park(&self, seen: u64) {
        lock(&self.parked).push(std::thread::current());
        self.parked_count.fetch_add(1, Ordering::SeqCst);
        // Checked after registering: a step posted before this is seen here, and one posted
        // after finds this thread in `parked`.
        if self.epoch.load(Ordering::SeqCst) == seen && !self.stop.load(Ordering::SeqCst) {
            std::thread::park_timeout(Duration::from_millis(10));
        }
        let me = std::thread::current().id();
        lock(&self.parked).retain(|t| t.id() != me);
        self.parked_count.fetch_sub(1, Ordering::SeqCst);
    }

    fn unpark_all(&self) {
        if self.parked_count.load(Ordering::SeqCst) > 0 {
            for t in lock(&self.parked).iter() {
                t.unpark();
            }
        }
    }

    /// Ends the team: members return once they finish what they are running.
    fn finish(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.unpark_all();
    }
}

impl Step<'_> {
    /// Claims and runs pieces until none are left, marking this thread as inside a step.
    fn claim_all(&self) {
        let was = IN_STEP.with(|s| s.replace(true));
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                break;
            }
            let work = self.work;
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| work(i))) {
                lock(&self.panic).get_or_insert(payload);
                self.next.store(self.count, Ordering::Relaxed);
            }
        }
        IN_STEP.with(|s| s.set(was));
    }
}

/// Locks `m`, also after a panic elsewhere (every value behind these locks stays valid).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Resets [`LEADING`] and stops the team when the block ends, also by unwinding.
struct Leading<'a> {
    team: &'a Team,
    before: *const Team,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        LEADING.with(|l| l.set(self.before));
        self.team.finish();
    }
}

/// Calls `f` with the team the calling thread leads (`None` outside [`on_pool`], or inside a
/// step, where parallel calls run in place).
fn with_team<R>(f: impl FnOnce(Option<&Team>) -> R) -> R {
    if in_step() {
        return f(None);
    }
    let team = LEADING.with(Cell::get);
    // SAFETY: `on_pool` points `LEADING` at a team on its own stack and resets it (by a drop
    // guard, also when unwinding) before that team goes away, and the reference lives only
    // for this call, which returns inside `on_pool`.
    f(unsafe { team.as_ref() })
}

/// True while the calling thread runs a piece of a team's step.
fn in_step() -> bool {
    IN_STEP.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fills row i of a matrix with i + `step`, by row blocks, and checks every row.
    fn filled_by_rows(rows: usize, threads: usize, step: usize) {
        let mut m = Array2::<f32>::zeros((rows, 3));
        par_rows(&mut m, threads, &|row0, mut block| {
            for (i, mut row) in block.rows_mut().into_iter().enumerate() {
                row.fill((row0 + i + step) as f32);
            }
        });
        for (i, row) in m.rows().into_iter().enumerate() {
            assert!(row.iter().all(|&v| v == (i + step) as f32), "row {i}");
        }
    }

    #[test]
    fn long_row_blocks_run_as_guided_pieces_and_cover_every_row() {
        // 600 rows on 2 threads: 300 each ≥ 2 · 128, so guided pieces, in order from row 0.
        let starts = Mutex::new(Vec::new());
        let mut m = Array2::<f32>::zeros((600, 2));
        par_rows(&mut m, 2, &|row0, mut block| {
            lock(&starts).push((row0, block.nrows()));
            block.fill(1.0);
        });
        let mut starts = starts
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        starts.sort_unstable();
        let lens: Vec<usize> = starts.iter().map(|&(_, len)| len).collect();
        assert_eq!(lens, guided_strips(600, simd::strip_rows(), 2));
        assert!(lens.len() > 4, "{lens:?}");
        assert!(starts.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
        assert!(m.iter().all(|&v| v == 1.0));
        // 255 rows a thread keep one block each.
        let blocks = AtomicUsize::new(0);
        par_rows(&mut Array2::<f32>::zeros((510, 1)), 2, &|_, _| {
            blocks.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(blocks.into_inner(), 2);
    }

    #[test]
    fn long_row_blocks_are_guided_pieces_of_whole_strips_longest_first() {
        // 512 rows in strips of 6: 85 whole strips and one of 2 rows, 86 in all. Two threads
        // take a quarter of what is left each time, at least 86 / 8 = 10 strips: 86/4 → 22
        // (64 left), 16 (48), 12 (36), then 9 → 10 (26), 7 → 10 (16), 4 → 10 (6), 6 (0); in
        // rows 132, 96, 72, 60, 60, 60 and the 32 left (five strips and the 2-row one).
        assert_eq!(guided_strips(512, 6, 2), [132, 96, 72, 60, 60, 60, 32]);
        // AVX-512's strips of 8: 64 strips, at least 8 → 16, 12, 9, 7 → 8, 8, 8, 3.
        assert_eq!(guided_strips(512, 8, 2), [128, 96, 72, 64, 64, 64, 24]);
        // 1,024 rows (171 strips, at least 21): 43, 32, 24, 21, 21, 21 and the 9 left.
        assert_eq!(
            guided_strips(1024, 6, 2),
            [258, 192, 144, 126, 126, 126, 52]
        );
        // Short inputs: at least 6 strips.
        assert_eq!(guided_strips(100, 6, 2), [36, 36, 28]);
        // Fewer strips than the floor: one piece.
        assert_eq!(guided_strips(30, 6, 2), [30]);
        assert_eq!(guided_strips(0, 6, 2), Vec::<usize>::new());
        for rows in 1..3000 {
            for threads in 1..=4 {
                let sizes = guided_strips(rows, 6, threads);
                assert_eq!(sizes.iter().sum::<usize>(), rows, "{rows} {threads}");
                assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{rows} {sizes:?}");
                let (last, whole) = sizes.split_last().unwrap_or((&0, &[]));
                let floor = 36.max(rows.div_ceil(6) / (4 * threads) * 6);
                assert!(
                    whole.iter().all(|&len| len % 6 == 0 && len >= floor),
                    "{sizes:?}"
                );
                assert!(*last > 0, "{rows} {threads}");
            }
        }
        // Fixed chunks for the column split: the last shorter.
        assert_eq!(fixed_chunks(100, 32), [32, 32, 32, 4]);
    }

    #[test]
    fn row_blocks_cost_the_kernel_as_evenly_as_its_short_strips_allow() {
        // Strips of 6 rows, a partial last strip of at most 4 rows costing 4, of 5 costing 6.
        // 128 rows on two threads: each block's cost is at least 64, and 64 rows (10 strips
        // and 4 rows) cost 60 + 4 = 64, so 64 + 64 (whole strips: 66 + 62, the first 66).
        assert_eq!(balanced_cost(128, 6, 4, 2), [64, 64]);
        // 100 rows: a cost of 50 or 51 allows 48 rows (50 − 48 = 2 < 4 left for a tail), 52
        // allows 48 + 4 = 52, and 2 · 52 ≥ 100: 52 + 48 (whole strips: 54 + 46).
        assert_eq!(balanced_cost(100, 6, 4, 2), [52, 48]);
        // 200 rows on three: costs 67–69 allow 66 rows (3 · 66 < 200), 70 allows 66 + 4: 70,
        // 70 and the remaining 60 (whole strips: 72, 66, 62).
        assert_eq!(balanced_cost(200, 6, 4, 3), [70, 70, 60]);
        // Without a short kernel: whole strips, as even as they allow.
        assert_eq!(balanced_cost(128, 6, 0, 2), [66, 62]);
        assert_eq!(balanced_cost(128, 8, 0, 2), [64, 64]);
        assert_eq!(balanced_cost(0, 6, 4, 2), Vec::<usize>::new());
        // Every length and thread count: the blocks cover the rows, the longest first, and the
        // costliest never costs more than the costliest of whole strips.
        let cost = |len: usize, short: usize| {
            let tail = match len % 6 {
                0 => 0,
                r if r <= short => short,
                _ => 6,
            };
            len / 6 * 6 + tail
        };
        for rows in 1..700 {
            for parts in 1..=4 {
                for short in [0, 4] {
                    let blocks = balanced_cost(rows, 6, short, parts);
                    assert_eq!(blocks.iter().sum::<usize>(), rows, "{rows} {parts}");
                    assert!(blocks.len() <= parts && blocks.windows(2).all(|w| w[0] >= w[1]));
                    let worst = |b: &[usize]| b.iter().map(|&l| cost(l, short)).max();
                    let strips = balanced_cost(rows, 6, 0, parts);
                    assert!(worst(&blocks) <= worst(&strips), "{rows} {parts} {short}");
                }
            }
        }
    }

    #[test]
    fn fresh_rows_hold_the_product_or_zeros_when_a_block_skips_it() {
        // a = [[1, 2], [3, 4], …] (row i: 2i + 1, 2i + 2), b = [[1, 0, 1], [0, 1, 1]]:
        // row i of a · b is (2i + 1, 2i + 2, 4i + 3).
        let a = Array2::from_shape_fn((40, 2), |(i, j)| (2 * i + j + 1) as f32);
        let b = crate::engine::gemm::PackedMatrix::pack(
            ndarray::array![[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]].view(),
        );
        for threads in [1, 2] {
            let m = par_fresh(Split::Rows, 40, 3, threads, &|row0, block| {
                let rows = a.slice(ndarray::s![row0..row0 + block.nrows(), ..]);
                block.product(rows, &b);
            });
            for (i, row) in m.rows().into_iter().enumerate() {
                let v = |x: usize| x as f32;
                assert_eq!(
                    row.to_vec(),
                    [v(2 * i + 1), v(2 * i + 2), v(4 * i + 3)],
                    "row {i}"
                );
            }
            // A block that drops its `Fresh` unused comes back zeroed, not uninitialised. The
            // allocator is handed NaN-filled memory of the same size first, which it gives back
            // for the next matrix: without the zeroing, the skipped rows would read NaN.
            drop(std::hint::black_box(Array2::<f32>::from_elem(
                (40, 3),
                f32::NAN,
            )));
            let first_len = AtomicUsize::new(0);
            let skipped = par_fresh(Split::Rows, 40, 3, threads, &|row0, block| {
                if row0 > 0 {
                    let rows = a.slice(ndarray::s![row0..row0 + block.nrows(), ..]);
                    block.product(rows, &b);
                } else {
                    first_len.store(block.nrows(), Ordering::Relaxed);
                }
            });
            let first = first_len.into_inner();
            assert!(first > 0 && (threads == 1 || first < skipped.nrows()));
            assert!(
                skipped
                    .slice(ndarray::s![..first, ..])
                    .iter()
                    .all(|&v| v == 0.0)
            );
            assert_eq!(
                skipped.slice(ndarray::s![first.., ..]),
                m.slice(ndarray::s![first.., ..])
            );
        }
    }

    #[test]
    fn column_blocks_are_whole_panel_pairs_and_hold_the_same_bits_as_rows() {
        // 70 columns: panel pairs of 32 give blocks 0..32, 32..64 and 64..70 (on three
        // threads), or 0..64 and 64..70 (on two: ceil(3 pairs / 2) = 2 pairs a block).
        let a = Array2::from_shape_fn((9, 40), |(i, j)| ((i * 7 + j * 3) % 11) as f32 - 5.0);
        let w = Array2::from_shape_fn((40, 70), |(i, j)| ((i * 5 + j) % 13) as f32 / 8.0);
        let b = PackedMatrix::pack(w.view());
        let by_rows = par_fresh(Split::Rows, 9, 70, 1, &|row0, block| {
            let rows = a.slice(ndarray::s![row0..row0 + block.nrows(), ..]);
            block.product(rows, &b);
        });
        for (threads, firsts) in [(1, vec![0]), (2, vec![0, 64]), (3, vec![0, 32, 64])] {
            let seen = Mutex::new(Vec::new());
            let m = par_fresh(Split::Columns, 9, 70, threads, &|col0, block| {
                lock(&seen).push((col0, block.ncols()));
                block.product_of_columns(a.view(), &b, col0);
            });
            let mut seen = seen.into_inner().unwrap_or_default();
            seen.sort_unstable();
            assert_eq!(
                seen.iter().map(|&(c, _)| c).collect::<Vec<_>>(),
                firsts,
                "{threads} threads"
            );
            assert_eq!(seen.iter().map(|&(_, n)| n).sum::<usize>(), 70);
            // Each element is the same sum in the same order, whichever block computed it.
            assert_eq!(m, by_rows, "{threads} threads");
        }
        assert!(split_columns(32, 2) && !split_columns(32, 1) && !split_columns(128, 2));
    }

    #[test]
    fn a_team_runs_every_piece_of_every_step_once_and_in_order() {
        let runs = on_pool(2, || {
            assert!(with_team(|t| t.is_some()) || pool().is_none());
            let mut runs = 0;
            // Many short steps back to back: a member that saw an old step must not run
            // pieces of a new one.
            for step in 0..2_000 {
                filled_by_rows(37, 2, step);
                let squares = parallel_map(13, 2, &|i| i * i + step);
                assert_eq!(squares, (0..13).map(|i| i * i + step).collect::<Vec<_>>());
                runs += 1;
            }
            runs
        });
        assert_eq!(runs, 2_000);
        // And the same calls outside a team, through rayon.
        filled_by_rows(37, 2, 7);
        assert_eq!(parallel_map(5, 2, &|i| i + 1), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn calls_inside_a_step_or_a_team_run_in_place() {
        on_pool(2, || {
            // Inside a step: a nested parallel call runs on the calling thread.
            let inner = parallel_map(4, 2, &|i| {
                let me = std::thread::current().id();
                let threads = parallel_map(3, 2, &|_| std::thread::current().id());
                assert!(threads.iter().all(|&t| t == me));
                filled_by_rows(20, 2, i);
                i
            });
            assert_eq!(inner, vec![0, 1, 2, 3]);
            // A nested team is the same team: its closure runs right here.
            let me = std::thread::current().id();
            assert_eq!(on_pool(2, || std::thread::current().id()), me);
        });
    }

    #[test]
    fn a_panic_in_a_step_reaches_the_leader_after_the_step_ends() {
        let caught = std::panic::catch_unwind(|| {
            on_pool(2, || {
                parallel_map(8, 2, &|i| {
                    assert_ne!(i, 5, "piece five fails");
                    i
                })
            })
        });
        let payload = caught.expect_err("the panic is resumed on the leader");
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        assert!(message.contains("piece five fails"), "{message}");
        // The team is gone and the thread leads none: later calls work as before.
        assert!(with_team(|t| t.is_none()));
        assert_eq!(on_pool(2, || parallel_map(3, 2, &|i| i * 2)), vec![0, 2, 4]);
    }

    #[test]
    fn a_run_does_not_wait_for_another_runs_team() {
        // Run A leads a team and holds it (its helper stays with it) until run B has finished,
        // or 20 s. B, led from another thread, wants the same pool thread as its helper: it
        // must compute without it and return, not wait for A's team to end.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let a = std::thread::spawn(move || {
            on_pool(2, || {
                // One step, so that the helper has joined A's team.
                let _ = parallel_map(4, 2, &|i| i);
                started_tx.send(()).ok();
                done_rx.recv_timeout(Duration::from_secs(20)).is_ok()
            })
        });
        started_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("run A started");
        let squares = on_pool(2, || parallel_map(6, 2, &|i| i * i));
        done_tx.send(()).ok();
        assert_eq!(squares, vec![0, 1, 4, 9, 16, 25]);
        assert!(
            a.join().expect("run A ends"),
            "run B finished only after run A's team ended"
        );
    }

    #[test]
    fn every_member_runs_once() {
        let ran = AtomicUsize::new(0);
        on_every_member(2, &|| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        let expected = pool().map_or(1, |p| 2.min(p.current_num_threads()).max(1));
        assert_eq!(ran.into_inner(), expected);
    }
}
