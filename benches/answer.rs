//! Where the answer forms, against one forward pass in the same run: SmolLM2-135M at 64 tokens
//! (`ATTNVIZ_SMOLLM2_DIR`), the forward with every map (what the app computes first), the logit
//! lens at one position across all layers, direct contributions and the routes graph; and
//! activation patching of every (layer, position) at 20 tokens against a 20-token forward.
//! `cargo bench --bench answer` (release code: the dev profile compiles this crate at
//! opt-level 1, several times slower).

#![allow(clippy::expect_used, missing_docs)]

use attnviz::analysis::answer::patching::PatchSite;
use attnviz::engine::RunOptions;
use attnviz::grad::TargetSpec;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::answer::{self, LensPositions};
use attnviz::pipeline::patching::patching;
use attnviz::pipeline::{self, RunInput};
use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use std::path::Path;

fn answer_64(c: &mut Criterion) {
    let Ok(dir) = std::env::var("ATTNVIZ_SMOLLM2_DIR") else {
        eprintln!("ATTNVIZ_SMOLLM2_DIR is not set; skipping the answer benchmarks");
        return;
    };
    let Ok(model) = LoadedModel::checkpoint(Path::new(&dir), Default::default()) else {
        eprintln!("cannot load {dir}");
        return;
    };
    // 64 token ids from the middle of the vocabulary, away from special tokens.
    let ids: Vec<u32> = (0..64).map(|i| 1000 + 37 * i).collect();
    let input = RunInput::new(TokenInput::Ids(ids));
    let opts = RunOptions::default();
    let spec: TargetSpec = "logprob:63".parse().expect("a valid target");
    let mut group = c.benchmark_group("answer_64/smollm2");
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| black_box(pipeline::run(&model, &input, &opts, &mut |_| true).ok()))
    });
    group.bench_function("lens_one_position", |b| {
        b.iter(|| {
            black_box(
                answer::logit_lens(
                    &model,
                    &input,
                    &opts,
                    Some(&spec),
                    &LensPositions::These(vec![63]),
                    5,
                    &mut |_, _| true,
                )
                .ok(),
            )
        })
    });
    group.bench_function("contributions", |b| {
        b.iter(|| {
            black_box(
                answer::contributions(&model, &input, &opts, Some(&spec), &mut |_, _| true).ok(),
            )
        })
    });
    group.bench_function("routes", |b| {
        b.iter(|| black_box(answer::routes(&model, &input, &opts, &mut |_, _| true).ok()))
    });
    group.finish();
}

/// Patching "The Eiffel Tower …" against "The Colosseum …" (20 tokens each, differing from
/// token 1 on, the most cells that need a run) for " Paris" against " Rome" at the last token.
fn patching_20(c: &mut Criterion) {
    let Ok(dir) = std::env::var("ATTNVIZ_SMOLLM2_DIR") else {
        return;
    };
    let Ok(model) = LoadedModel::checkpoint(Path::new(&dir), Default::default()) else {
        return;
    };
    let text = |t: &str| RunInput::new(TokenInput::Text(t.into()));
    let clean = text(
        "The Eiffel Tower is a landmark that many tourists visit every year. It is in the city of",
    );
    let corrupted = text(
        "The Colosseum is a landmark that many tourists visit every year. It is in the city of",
    );
    let opts = RunOptions::default();
    let spec: TargetSpec = "contrast:19:\"ĠParis\":\"ĠRome\""
        .parse()
        .expect("a valid target");
    let mut group = c.benchmark_group("patching_20/smollm2");
    group.sample_size(10);
    group.bench_function("forward", |b| {
        b.iter(|| black_box(pipeline::run(&model, &clean, &opts, &mut |_| true).ok()))
    });
    for site in [PatchSite::Resid, PatchSite::Head] {
        group.bench_function(site.name(), |b| {
            b.iter(|| {
                let report = patching(
                    &model,
                    &clean,
                    &corrupted,
                    &opts,
                    Some(&spec),
                    site,
                    &mut |_, _| true,
                );
                black_box(report.expect("patching runs").patching.metric_clean)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, answer_64, patching_20);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
