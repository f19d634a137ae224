//! Benchmarks of the analyses of issue 23 at 128 tokens: the attention flow into the last token
//! and value zeroing, on the demo model (6 layers, 8 heads) and, when `ATTNVIZ_MINILM_DIR`
//! names the MiniLM checkpoint, on MiniLM (6 layers, 12 heads, post-LN). Run with
//! `cargo bench --bench analysis`; the closing notes quote the medians.

// Setup failures abort the benchmark; criterion's macros generate undocumented functions.
#![allow(clippy::expect_used, missing_docs)]

use attnviz::analysis::flow::{FlowOptions, attention_flow};
use attnviz::engine::RunOptions;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::{self, RunInput};
use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use std::time::Duration;

/// 128 tokens: for a checkpoint [CLS] + 126 ordinary word-piece ids + [SEP], for the demo 128
/// words of a 97-word vocabulary.
fn run_of(model: &LoadedModel) -> pipeline::Run {
    let input = match model.as_checkpoint() {
        Some(_) => {
            let mut ids = vec![101u32];
            ids.extend((0..126u32).map(|i| 2000 + (i * 37) % 5000));
            ids.push(102);
            TokenInput::Ids(ids)
        }
        None => TokenInput::Text(
            (0..128)
                .map(|i| format!("w{}", (i * 31 + 7) % 97))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    };
    let run = pipeline::run(
        model,
        &RunInput::new(input),
        &RunOptions::default(),
        &mut |_| true,
    )
    .expect("the run works");
    assert_eq!(run.tokens.len(), 128);
    run
}

fn models() -> Vec<(&'static str, LoadedModel)> {
    let mut out = vec![(
        "demo",
        LoadedModel::demo(Default::default(), Default::default()).expect("the demo builds"),
    )];
    if let Some(dir) = std::env::var_os("ATTNVIZ_MINILM_DIR") {
        let model = LoadedModel::checkpoint(std::path::Path::new(&dir), Default::default())
            .expect("MiniLM loads");
        out.push(("minilm", model));
    }
    out
}

fn flow(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_128");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    for (name, model) in models() {
        let run = run_of(&model);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(attention_flow(
                    &run.maps,
                    &FlowOptions::default(),
                    &mut |_, _| true,
                ))
            });
        });
    }
    group.finish();
}

fn value_zeroing(c: &mut Criterion) {
    let mut group = c.benchmark_group("value_zeroing_128");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(20));
    for (name, model) in models() {
        let run = run_of(&model);
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(
                    attnviz::analysis::value_zeroing::value_zeroing(
                        model.model(),
                        &run.tokens,
                        &RunOptions::default(),
                        &mut |_| true,
                    )
                    .map(|v| v.product.len()),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, flow, value_zeroing);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
