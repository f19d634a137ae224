//! Two versions of a change, measured in one process, call by call: the MiniLM forward with
//! `attnviz::engine::DEV_SWITCH` set to A, then to B, alternating (A B, B A, …), and the
//! median of the per-pair ratios B / A. For changes smaller than the host's noise: on the
//! 2-core KVM development machines one forward takes 23 ms for some seconds and 34 ms for the
//! next, which separate benchmark processes (`benches/ab.py`) cannot tell from a change of a
//! few per cent; neighbouring calls in one process see the same host.
//!
//! Make the code under test read the switch (`DEV_SWITCH.load(Relaxed) & 1 != 0` picks the new
//! version), then
//!
//!     ATTNVIZ_MINILM_DIR=… cargo run --release --example interleaved_ab -- 0 1 128 150
//!
//! (A, B, tokens, pairs). Take the switch out again before committing.
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::{DEV_SWITCH, RunOptions};
use std::sync::atomic::Ordering;

mod common;

fn main() {
    attnviz::engine::memory::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: u32| {
        args.get(i)
            .map(|a| {
                a.parse()
                    .expect("arguments: A B tokens pairs (whole numbers)")
            })
            .unwrap_or(default)
    };
    let (a, b, tokens, pairs) = (arg(0, 0), arg(1, 1), arg(2, 128).max(2), arg(3, 100).max(1));
    let dir = std::env::var("ATTNVIZ_MINILM_DIR")
        .expect("set ATTNVIZ_MINILM_DIR to an all-MiniLM-L6-v2 folder");
    let model = attnviz::model::Checkpoint::load(std::path::Path::new(&dir)).expect("MiniLM loads");
    // The same tokens as `forward_minilm` in benches/engine.rs.
    let toks = model.tokens_from_ids(&common::bench_ids(tokens));
    let opts = RunOptions::default();
    let run = |switch: u32| {
        DEV_SWITCH.store(switch, Ordering::Relaxed);
        common::timed_forward(&model, &toks, &opts)
    };
    for _ in 0..3 {
        run(a);
        run(b);
    }
    println!(
        "{}",
        common::alternate(&format!("{tokens} tokens"), a, b, pairs, run)
    );
}
