//! Attribution against torch autograd (issue 26): one gradient of log p(next token) with
//! respect to the input embeddings and integrated gradients (32 steps, zero baseline, right
//! Riemann sum) on SmolLM2-135M at 128 tokens (`ATTNVIZ_SMOLLM2_DIR`), and one gradient of the
//! similarity target on all-MiniLM-L6-v2 at 128 tokens (`ATTNVIZ_MINILM_DIR`). The inputs and
//! targets are those of `benches/reference_attribution.py`, so the medians compare directly.
//! `cargo bench --bench attribution`.

#![allow(clippy::expect_used, missing_docs)]

use attnviz::analysis::attribution::{self, Baseline};
use attnviz::engine::RunOptions;
use attnviz::grad::{Differentiable, ResolvedTarget, TargetSpec};
use attnviz::io::TokenInput;
use attnviz::model::{LoadProgress, LoadedModel};
use attnviz::tokenize::Token;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group};
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `(i·31 + 7) mod modulus + offset` for i in 0..n: the reference script's ids.
fn ids(n: u32, offset: u32, modulus: u32) -> Vec<u32> {
    (0..n).map(|i| (i * 31 + 7) % modulus + offset).collect()
}

fn load(var: &str) -> Option<LoadedModel> {
    let dir = std::env::var(var).ok()?;
    let model = LoadedModel::checkpoint(Path::new(&dir), Arc::new(LoadProgress::default()))
        .expect("the model loads");
    // Once per process, as `attribute --timings` reports it: not part of a gradient.
    model.model().transformer().prepare_backward();
    Some(model)
}

/// One gradient of `spec` (with text B for similarity) on `ids`, as group `group`; returns
/// the tokens and the resolved target.
fn gradient(
    c: &mut Criterion,
    group: &str,
    model: &LoadedModel,
    ids: Vec<u32>,
    spec: &str,
    b: Option<&str>,
) -> (Vec<Token>, ResolvedTarget) {
    let opts = RunOptions::default();
    let tokens = model.tokens(&TokenInput::Ids(ids), None).expect("ids");
    let spec: TargetSpec = spec.parse().expect("target parses");
    let text_b = b.map(|t| {
        model
            .tokens(&TokenInput::Text(t.to_owned()), None)
            .expect("text B tokenizes")
    });
    let target = model
        .resolve_target(&tokens, &spec, text_b.as_deref(), &opts)
        .expect("target resolves");
    let e = model.input_embeddings(&tokens).expect("embeddings");
    let mut g = c.benchmark_group(group);
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
    g.bench_with_input(
        BenchmarkId::from_parameter(tokens.len()),
        &tokens,
        |bch, toks| {
            bch.iter(|| {
                black_box(
                    model
                        .gradient(toks, e.view(), &target, &opts, false)
                        .expect("gradient")
                        .value,
                )
            })
        },
    );
    g.finish();
    (tokens, target)
}

fn attribution(c: &mut Criterion) {
    let opts = RunOptions::default();
    if let Some(model) = load("ATTNVIZ_SMOLLM2_DIR") {
        let (tokens, target) = gradient(
            c,
            "gradient_smollm",
            &model,
            ids(128, 1000, 5000),
            "logprob",
            None,
        );
        let mut g = c.benchmark_group("ig32_smollm");
        g.sampling_mode(SamplingMode::Flat);
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(1));
        g.measurement_time(Duration::from_secs(20));
        g.bench_with_input(
            BenchmarkId::from_parameter(tokens.len()),
            &tokens,
            |bch, toks| {
                bch.iter(|| {
                    black_box(
                        attribution::integrated_gradients(
                            &model,
                            "smollm2",
                            toks,
                            &target,
                            &opts,
                            Baseline::Zero,
                            32,
                            attnviz::pipeline::point_batches(
                                &model,
                                toks.len(),
                                32,
                                &opts,
                                attnviz::pipeline::default_memory_budget(),
                            ),
                            &mut |_| true,
                        )
                        .expect("IG")
                        .completeness_gap,
                    )
                })
            },
        );
        g.finish();
    } else {
        eprintln!("ATTNVIZ_SMOLLM2_DIR is not set; skipping SmolLM2");
    }
    if let Some(model) = load("ATTNVIZ_MINILM_DIR") {
        let mut id = vec![101];
        id.extend(ids(126, 1000, 1000));
        id.push(102);
        gradient(
            c,
            "gradient_minilm_similarity",
            &model,
            id,
            "similarity",
            Some("A dog slept on the rug."),
        );
    } else {
        eprintln!("ATTNVIZ_MINILM_DIR is not set; skipping MiniLM");
    }
}

criterion_group!(benches, attribution);

fn main() {
    if std::env::var_os("ATTNVIZ_DEFAULT_MALLOC").is_none() {
        attnviz::engine::memory::keep_freed_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
