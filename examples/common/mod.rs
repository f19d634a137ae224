//! What the examples that time the MiniLM forward share (`interleaved_ab`, `forward_server`).

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
