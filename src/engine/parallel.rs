//! The engine's worker threads: the shared rayon pool, row-block splitting of a matrix
//! ([`par_rows`]), an order-keeping parallel map ([`parallel_map`]) and how many threads a run
//! gets ([`threads_for`]).

use super::options::RunOptions;
use super::simd;
use ndarray::{Array2, ArrayViewMut2, Axis};
use std::sync::OnceLock;

/// Sequences at least this long split the heads across threads; below it the thread start-up
/// costs more than it saves. Measured in `benches/engine.rs` (AMD EPYC Zen 5, 2 cores,
/// 2026-12-06): MiniLM at 32 tokens takes 5.2–5.4 ms on two threads against 6.7–6.8 ms on one
/// (the threshold was 48, so 32 tokens ran on one).
pub(super) const PARALLEL_MIN_TOKENS: usize = 32;
/// More threads than this rarely pays for a dozen heads.
pub(super) const MAX_THREADS: usize = 8;

/// How many threads a sequence of `len` tokens gets, unless the options say.
pub(super) fn threads_for(len: usize, opts: &RunOptions) -> usize {
    opts.threads.unwrap_or_else(|| {
        if len >= PARALLEL_MIN_TOKENS {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
        } else {
            1
        }
    })
}

/// Calls `f(first_row, block)` on disjoint row blocks of `out`, one per thread, on the engine's
/// thread pool. Blocks are whole multiples of the matrix kernel's row strip.
pub(super) fn par_rows(
    out: &mut Array2<f32>,
    threads: usize,
    f: &(dyn Fn(usize, ArrayViewMut2<'_, f32>) + Sync),
) {
    let rows = out.nrows();
    let strip = simd::strip_rows();
    let threads = threads.clamp(1, rows.div_ceil(strip).max(1));
    let pool = if threads > 1 { pool() } else { None };
    let Some(pool) = pool else {
        f(0, out.view_mut());
        return;
    };
    let chunk = rows.div_ceil(threads).next_multiple_of(strip);
    pool.scope(|scope| {
        for (i, block) in out.axis_chunks_iter_mut(Axis(0), chunk).enumerate() {
            scope.spawn(move |_| f(i * chunk, block));
        }
    });
}

/// Runs `f` on one of the engine's threads when `threads` > 1, so that the products and head
/// loops inside it split their work from there. Called from outside the pool, each of them
/// hands its work to the pool and sleeps until it is done: two thread wake-ups per product, and
/// three busy threads on two cores while the pool's idle threads spin. Inside the pool a
/// nested call runs in place.
pub(super) fn on_pool<R: Send>(threads: usize, f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) if threads > 1 => pool.install(f),
        _ => f(),
    }
}

/// Runs `f` once on each of the engine's threads, all at the same time (on the calling thread
/// when there is no pool).
pub(super) fn on_every_thread(f: &(dyn Fn() + Sync)) {
    match pool() {
        Some(pool) => {
            pool.broadcast(|_| f());
        }
        None => f(),
    }
}

/// Maps `f` over 0..count on the engine's thread pool (when `threads` > 1), keeping the order.
pub(super) fn parallel_map<T: Send>(
    count: usize,
    threads: usize,
    f: &(dyn Fn(usize) -> T + Sync),
) -> Vec<T> {
    use rayon::prelude::*;
    match pool() {
        Some(pool) if threads > 1 && count > 1 => {
            pool.install(|| (0..count).into_par_iter().map(f).collect())
        }
        _ => (0..count).map(f).collect(),
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
