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
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    println!(
        "{tokens} tokens, {pairs} pairs: A={a} median {:.2} ms, B={b} median {:.2} ms; \
         B / A median {:.3} (quartiles {:.3}–{:.3}), B faster in {faster} of {pairs}",
        quantile(&mut times_a, 0.5),
        quantile(&mut times_b, 0.5),
        quantile(&mut ratios, 0.5),
        quantile(&mut ratios, 0.25),
        quantile(&mut ratios, 0.75),
    );
}
