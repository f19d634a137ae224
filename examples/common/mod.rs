//! What the timing examples share (`interleaved_ab`, `forward_server`, `matmul_server`,
//! `edit_loop`).
#![allow(
    dead_code,
    reason = "each example compiles this module and uses a part of it"
)]

use attnviz::engine::RunOptions;
use attnviz::model::{Checkpoint, Model};
use std::time::Instant;

/// The ids of `forward_minilm/N` in benches/engine.rs: 101, then (i·31 + 7) mod 1000 + 1000,
/// then 102, `tokens` in all (at least 2).
pub fn bench_ids(tokens: u32) -> Vec<u32> {
    std::iter::once(101)
        .chain((0..tokens.max(2) - 2).map(|i| (i * 31 + 7) % 1000 + 1000))
        .chain(std::iter::once(102))
        .collect()
}

/// One forward of `model` over `ids` with every map captured, in milliseconds.
pub fn timed_forward(
    model: &Checkpoint,
    toks: &[attnviz::tokenize::Token],
    opts: &RunOptions,
) -> f64 {
    let start = Instant::now();
    let maps = model
        .forward(toks, opts)
        .expect("the forward runs")
        .maps
        .len();
    std::hint::black_box(maps);
    start.elapsed().as_secs_f64() * 1e3
}

/// `pairs` alternating pairs of `run(a)` and `run(b)` (A B, then B A, …), each call's time
/// in milliseconds, summed up as one line: the medians of A and of B, and the median (with
/// quartiles) of the per-pair ratios B / A, and how often B was faster. `what` begins it.
pub fn alternate(
    what: &str,
    a: u32,
    b: u32,
    pairs: u32,
    mut run: impl FnMut(u32) -> f64,
) -> String {
    let (mut times_a, mut times_b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for pair in 0..pairs {
        let (ta, tb) = if pair % 2 == 0 {
            let ta = run(a);
            (ta, run(b))
        } else {
            let tb = run(b);
            (run(a), tb)
        };
        times_a.push(ta);
        times_b.push(tb);
        ratios.push(tb / ta);
    }
    let faster = ratios.iter().filter(|&&r| r < 1.0).count();
    let quantile = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v.get(((v.len().max(1) - 1) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "{what}, {pairs} pairs: A={a} median {:.3} ms, B={b} median {:.3} ms; \
         B / A median {:.3} (quartiles {:.3}–{:.3}), B faster in {faster} of {pairs}",
        quantile(&mut times_a, 0.5),
        quantile(&mut times_b, 0.5),
        quantile(&mut ratios, 0.5),
        quantile(&mut ratios, 0.25),
        quantile(&mut ratios, 0.75),
    )
}
