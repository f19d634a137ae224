//! The app's edit loop, timed: a worker thread (as the app's) runs `CALLS` forwards of
//! `TOKENS` tokens with every map captured, keeping each run alive until the next one is done,
//! as the app keeps showing the last run while it computes the next. Prints one line per
//! forward, its time in milliseconds. What long inputs cost on every edit, page faults
//! included (run it under `perf stat -e page-faults`).
//!
//!     ATTNVIZ_MINILM_DIR=… cargo run --release --example edit_loop -- 1024 5
//!
//! (any checkpoint folder works: point ATTNVIZ_MINILM_DIR at SmolLM2 for a causal LM).
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::RunOptions;
use attnviz::model::Model as _;

mod common;

fn main() {
    attnviz::engine::memory::keep_freed_memory();
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments: TOKENS CALLS (whole numbers)"))
        .collect();
    let (tokens, calls) = match args[..] {
        [tokens, calls] => (tokens, calls),
        _ => panic!("arguments: TOKENS CALLS"),
    };
    let dir = std::env::var("ATTNVIZ_MINILM_DIR").expect("set ATTNVIZ_MINILM_DIR to a checkpoint");
    let model = attnviz::model::Checkpoint::load(std::path::Path::new(&dir)).expect("it loads");
    std::thread::scope(|s| {
        s.spawn(|| {
            let toks = model.tokens_from_ids(&common::bench_ids(tokens));
            let opts = RunOptions::default();
            let mut shown = None;
            for _ in 0..calls {
                let start = std::time::Instant::now();
                let run = model.forward(&toks, &opts).expect("the forward runs");
                println!("{:.1}", start.elapsed().as_secs_f64() * 1e3);
                // The previous run is dropped only now, once the next is done.
                shown = Some(run);
            }
            drop(shown);
        });
    });
}
