//! The MiniLM forward of `forward_minilm/N` (`benches/engine.rs`: the same ids, every map
//! captured, default options) as a process that times it on request, so that a driver in
//! another language can alternate it call by call with a reference engine
//! (`benches/paired_ort.py`): on the 2-core KVM development machines a whole criterion run
//! of one side and then the other saw the host change speed between them by ±20 %.
//!
//! Reads lines `TOKENS CALLS [THREADS]` from stdin; for each runs `CALLS` forwards of `TOKENS`
//! tokens (on `THREADS` threads, or the default) and prints one JSON line
//! `{"tokens": T, "ms": [..]}`. An empty line or end of input stops.
//!
//!     ATTNVIZ_MINILM_DIR=… cargo run --release --example forward_server
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::RunOptions;
use std::io::{BufRead, Write};

mod common;

fn main() {
    attnviz::engine::memory::keep_freed_memory();
    let dir = std::env::var("ATTNVIZ_MINILM_DIR")
        .expect("set ATTNVIZ_MINILM_DIR to an all-MiniLM-L6-v2 folder");
    let model = attnviz::model::Checkpoint::load(std::path::Path::new(&dir)).expect("MiniLM loads");
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin reads");
        let fields: Vec<u32> = line
            .split_whitespace()
            .map(|f| {
                f.parse()
                    .expect("a line is two or three whole numbers: TOKENS CALLS [THREADS]")
            })
            .collect();
        let (tokens, calls, threads) = match fields[..] {
            [tokens, calls] => (tokens, calls, None),
            [tokens, calls, threads] => (tokens, calls, Some(threads as usize)),
            _ => break,
        };
        let opts = RunOptions {
            threads,
            ..RunOptions::default()
        };
        // The same ids as `forward_minilm` in benches/engine.rs.
        let toks = model.tokens_from_ids(&common::bench_ids(tokens));
        let ms: Vec<String> = (0..calls)
            .map(|_| format!("{:.4}", common::timed_forward(&model, &toks, &opts)))
            .collect();
        let mut out = stdout.lock();
        writeln!(out, "{{\"tokens\": {tokens}, \"ms\": [{}]}}", ms.join(", "))
            .and_then(|()| out.flush())
            .expect("stdout writes");
    }
}
