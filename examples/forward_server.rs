//! The MiniLM forward of `forward_minilm/N` (`benches/engine.rs`: the same ids, every map
//! captured, default options) as a process that times it on request, so that a driver in
//! another language can alternate it call by call with a reference engine
//! (`benches/paired_ort.py`): on the 2-core KVM development machines a whole criterion run
//! of one side and then the other saw the host change speed between them by ±20 %.
//!
//! Reads lines `TOKENS CALLS` from stdin; for each runs `CALLS` forwards of `TOKENS` tokens
//! and prints one JSON line `{"tokens": T, "ms": [..]}`. An empty line or end of input stops.
//!
//!     ATTNVIZ_MINILM_DIR=… cargo run --release --example forward_server
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::RunOptions;
use attnviz::model::Model;
use std::io::{BufRead, Write};
use std::time::Instant;

fn main() {
    attnviz::engine::memory::keep_freed_memory();
    let dir = std::env::var("ATTNVIZ_MINILM_DIR")
        .expect("set ATTNVIZ_MINILM_DIR to an all-MiniLM-L6-v2 folder");
    let model = attnviz::model::Checkpoint::load(std::path::Path::new(&dir)).expect("MiniLM loads");
    let opts = RunOptions::default();
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin reads");
        let fields: Vec<usize> = line
            .split_whitespace()
            .map(|f| {
                f.parse()
                    .expect("a line is two whole numbers: TOKENS CALLS")
            })
            .collect();
        let [tokens, calls] = fields[..] else {
            break;
        };
        // The same ids as `forward_minilm` in benches/engine.rs.
        let ids: Vec<u32> = std::iter::once(101)
            .chain((0..tokens.max(2) as u32 - 2).map(|i| (i * 31 + 7) % 1000 + 1000))
            .chain(std::iter::once(102))
            .collect();
        let toks = model.tokens_from_ids(&ids);
        let ms: Vec<String> = (0..calls)
            .map(|_| {
                let start = Instant::now();
                let maps = model
                    .forward(&toks, &opts)
                    .expect("the forward runs")
                    .maps
                    .len();
                std::hint::black_box(maps);
                format!("{:.4}", start.elapsed().as_secs_f64() * 1e3)
            })
            .collect();
        let mut out = stdout.lock();
        writeln!(out, "{{\"tokens\": {tokens}, \"ms\": [{}]}}", ms.join(", "))
            .and_then(|()| out.flush())
            .expect("stdout writes");
    }
}
