//! Saliency benchmarks (issue 12): one gradient against the forward alone, integrated gradients
//! with 32 steps against 32 gradients, and occlusion of every token against N forwards. On the
//! demo at 128 and 512 tokens (similarity), all-MiniLM-L6-v2 at 128 (similarity, when
//! ATTNVIZ_MINILM_DIR is set) and SmolLM2-135M at 128 (logprob, when ATTNVIZ_SMOLLM2_DIR or
//! ~/.cache/attnviz/smollm2 holds it). Run with `cargo bench --bench saliency`.

// Setup failures abort the benchmark, which is what they should do; criterion's macros
// generate undocumented functions.
#![allow(clippy::expect_used, missing_docs)]

use attnviz::analysis::attribution::{self, Baseline, Occlude};
use attnviz::engine::RunOptions;
use attnviz::grad::{Differentiable, ResolvedTarget, TargetSpec};
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::model::{DemoConfig, LoadProgress};
use attnviz::tokenize::{DemoTokenizer, Token};
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A model, an input of n tokens and its resolved target.
struct Case {
    name: String,
    model: LoadedModel,
    tokens: Vec<Token>,
    target: ResolvedTarget,
    /// Also time occlusion (N forwards of N tokens).
    occlusion: bool,
}

fn ids(n: u32, offset: u32, modulus: u32) -> Vec<u32> {
    (0..n).map(|i| (i * 31 + 7) % modulus + offset).collect()
}

fn resolve(
    model: &LoadedModel,
    tokens: &[Token],
    spec: &str,
    text_b: Option<&str>,
) -> ResolvedTarget {
    let spec: TargetSpec = spec.parse().expect("target parses");
    let b = text_b.map(|t| {
        model
            .tokens(&TokenInput::Text(t.to_owned()), None)
            .expect("text B tokenizes")
    });
    model
        .resolve_target(tokens, &spec, b.as_deref(), &RunOptions::default())
        .expect("target resolves")
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for n in [128u32, 512] {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).expect("demo");
        let tokens = attnviz::tokenize::tokens_from_ids(&ids(n, 0, 97));
        let target = resolve(&model, &tokens, "similarity", Some("a dog lay on the rug"));
        out.push(Case {
            name: format!("demo_{n}"),
            model,
            tokens,
            target,
            occlusion: n <= 128,
        });
    }
    let load = |dir: &Path| LoadedModel::checkpoint(dir, Arc::new(LoadProgress::default()));
    match std::env::var("ATTNVIZ_MINILM_DIR") {
        Ok(dir) => {
            let model = load(Path::new(&dir)).expect("MiniLM loads");
            let mut id = vec![101];
            id.extend(ids(126, 1000, 1000));
            id.push(102);
            let tokens = model.tokens(&TokenInput::Ids(id), None).expect("ids");
            let target = resolve(
                &model,
                &tokens,
                "similarity",
                Some("A dog slept on the rug."),
            );
            out.push(Case {
                name: "minilm_128".into(),
                model,
                tokens,
                target,
                occlusion: true,
            });
        }
        Err(_) => eprintln!("ATTNVIZ_MINILM_DIR is not set; skipping MiniLM"),
    }
    let smol = std::env::var_os("ATTNVIZ_SMOLLM2_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/attnviz/smollm2"))
        });
    match smol.filter(|d| d.join("model.safetensors").exists()) {
        Some(dir) => {
            let model = load(&dir).expect("SmolLM2 loads");
            let tokens = model
                .tokens(&TokenInput::Ids(ids(128, 1000, 5000)), None)
                .expect("ids");
            let target = resolve(&model, &tokens, "logprob", None);
            out.push(Case {
                name: "smollm2_128".into(),
                model,
                tokens,
                target,
                occlusion: true,
            });
        }
        None => eprintln!("SmolLM2 not found; skipping it"),
    }
    out
}

fn saliency(c: &mut Criterion) {
    let opts = RunOptions::default();
    for case in cases() {
        let model: &dyn Differentiable = &case.model;
        let toks = &case.tokens;
        let t = &case.target;
        let e = model.input_embeddings(toks).expect("embeddings");
        let mut group = c.benchmark_group(format!("saliency_{}", case.name));
        group.sampling_mode(SamplingMode::Flat);
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(3));
        group.bench_function("forward", |b| {
            b.iter(|| black_box(model.target_value(toks, e.view(), t, &opts).expect("T")));
        });
        group.bench_function("gradient", |b| {
            b.iter(|| {
                black_box(
                    model
                        .gradient(toks, e.view(), t, &opts, false)
                        .expect("grad")
                        .value,
                )
            });
        });
        group.bench_function("gradient_with_relevance", |b| {
            b.iter(|| {
                black_box(
                    model
                        .gradient(toks, e.view(), t, &opts, true)
                        .expect("grad")
                        .value,
                )
            });
        });
        group.bench_function(BenchmarkId::new("integrated_gradients", 32), |b| {
            b.iter(|| {
                black_box(
                    attribution::integrated_gradients(
                        model,
                        &case.name,
                        toks,
                        t,
                        &opts,
                        Baseline::Zero,
                        32,
                        attnviz::pipeline::point_batches(
                            &case.model,
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
            });
        });
        group.bench_function(BenchmarkId::new("gradients", 32), |b| {
            b.iter(|| {
                for _ in 0..32 {
                    black_box(
                        model
                            .gradient(toks, e.view(), t, &opts, false)
                            .expect("grad")
                            .value,
                    );
                }
            });
        });
        if case.occlusion {
            let n = toks.len();
            group.bench_function(BenchmarkId::new("occlusion_remove", n), |b| {
                b.iter(|| {
                    black_box(
                        attribution::occlusion(
                            model,
                            &case.name,
                            toks,
                            t,
                            &opts,
                            Some(Occlude::Remove),
                            &mut |_| true,
                        )
                        .expect("occlusion")
                        .1
                        .len(),
                    )
                });
            });
            group.bench_function(BenchmarkId::new("forwards", n), |b| {
                b.iter(|| {
                    for _ in 0..n {
                        black_box(model.target_value(toks, e.view(), t, &opts).expect("T"));
                    }
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, saliency);

fn main() {
    if std::env::var_os("ATTNVIZ_DEFAULT_MALLOC").is_none() {
        attnviz::engine::memory::keep_freed_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
