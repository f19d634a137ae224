//! One thread's packed matrix product (`engine::simd::matmul_with` on the best instruction
//! set, the right operand packed once as the engine packs weights) as a process that times it
//! on request, so that `benches/paired_matmul.py` can alternate it with ONNX Runtime's MatMul
//! (MLAS) on the same shape in one sitting.
//!
//! Reads lines `M K N CALLS`; prints one JSON line `{"ms": [..]}` per line (milliseconds per
//! product). A line `M K N PAIRS A B` instead alternates `attnviz::engine::DEV_SWITCH` between
//! A and B (as `examples/interleaved_ab.rs` does for the forward; each side five products a
//! turn) and prints the medians and the median per-pair ratio B / A as one line of text.
//!
//!     taskset -c 0 cargo run --release --example matmul_server <<< "2048 576 1536 16 0 1"
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::simd::{Isa, matmul_with};
use attnviz::engine::{DEV_SWITCH, PackedMatrix};
use ndarray::Array2;
use std::io::{BufRead, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

mod common;

fn main() {
    let isa = *Isa::available().last().expect("an instruction set");
    let filled = |rows: usize, cols: usize| {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            ((r * 31 + c * 17) % 23) as f32 / 11.0 - 1.0
        })
    };
    let stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin reads");
        let f: Vec<usize> = line
            .split_whitespace()
            .map(|f| f.parse().expect("a line is M K N CALLS"))
            .collect();
        let (m, k, n, calls, ab) = match f[..] {
            [m, k, n, calls] => (m, k, n, calls, None),
            [m, k, n, calls, a, b] => (m, k, n, calls, Some((a as u32, b as u32))),
            _ => break,
        };
        let a = filled(m, k);
        let b = PackedMatrix::pack(filled(k, n).view());
        let mut out = Array2::<f32>::zeros((m, n));
        if let Some((sa, sb)) = ab {
            // Each side five products a turn.
            let time = |switch: u32| {
                DEV_SWITCH.store(switch, Relaxed);
                let start = Instant::now();
                for _ in 0..5 {
                    matmul_with(isa, a.view(), &b, out.view_mut(), false);
                }
                start.elapsed().as_secs_f64() * 1e3 / 5.0
            };
            let what = format!(
                "{m}x{k}x{n} ({:.3} GFLOP a product)",
                (2 * m * k * n) as f64 / 1e9
            );
            println!("{}", common::alternate(&what, sa, sb, calls as u32, time));
            continue;
        }
        let ms: Vec<String> = (0..calls)
            .map(|_| {
                let start = Instant::now();
                matmul_with(isa, a.view(), &b, out.view_mut(), false);
                std::hint::black_box(&out);
                format!("{:.4}", start.elapsed().as_secs_f64() * 1e3)
            })
            .collect();
        let mut o = stdout.lock();
        writeln!(o, "{{\"ms\": [{}]}}", ms.join(", "))
            .and_then(|()| o.flush())
            .expect("stdout writes");
    }
}
