//! Benchmarks: the demo's forward pass with every attention captured, heatmap rendering and a
//! labelled PNG export. Run with `cargo bench`; the README and closing notes quote the medians.

// Setup failures abort the benchmark, which is what they should do; criterion's macros
// generate undocumented functions.
#![allow(clippy::expect_used, missing_docs)]

use attnviz::engine::RunOptions;
use attnviz::model::{DemoConfig, DemoModel, Model};
use attnviz::render::{self, Colormap, FigureOptions, ValueRange, ValueScale};
use attnviz::tokenize::{Token, tokens_from_ids};
use criterion::{BenchmarkId, Criterion, criterion_group};
use std::hint::black_box;
use std::time::Duration;

fn tokens(n: usize) -> Vec<Token> {
    // A repeating 97-word vocabulary, like text with common words.
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 31 + 7) % 97).collect();
    tokens_from_ids(&ids)
}

fn forward(c: &mut Criterion) {
    let model = DemoModel::new(DemoConfig::default()).expect("default demo builds");
    let mut group = c.benchmark_group("forward_demo_default");
    group.warm_up_time(Duration::from_secs(1));
    for &n in &[128usize, 512, 2048] {
        let toks = tokens(n);
        if n >= 2048 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(8));
        } else {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(4));
        }
        group.bench_with_input(BenchmarkId::new("auto_threads", n), &toks, |b, toks| {
            b.iter(|| {
                black_box(
                    model
                        .forward(toks, &RunOptions::default())
                        .map(|r| r.maps.len()),
                )
            });
        });
        if n <= 512 {
            let one = RunOptions {
                threads: Some(1),
                ..RunOptions::default()
            };
            group.bench_with_input(BenchmarkId::new("one_thread", n), &toks, |b, toks| {
                b.iter(|| black_box(model.forward(toks, &one).map(|r| r.maps.len())));
            });
        }
    }
    group.finish();
}

fn rendering(c: &mut Criterion) {
    let model = DemoModel::new(DemoConfig::default()).expect("default demo builds");
    let mut group = c.benchmark_group("render");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    let run = model
        .forward(&tokens(512), &RunOptions::default())
        .expect("forward");
    let map = run.maps.head(0, 3).expect("head exists");
    group.bench_function("heatmap_image_512", |b| {
        b.iter(|| {
            black_box(render::heatmap_image(
                map.view(),
                Colormap::Viridis,
                ValueRange::unit(),
                ValueScale::Linear,
                1,
            ))
        });
    });
    let small = model
        .forward(&tokens(64), &RunOptions::default())
        .expect("forward");
    let small_map = small.maps.head(0, 0).expect("head exists");
    let labels: Vec<String> = small.tokens.iter().map(|t| t.text.clone()).collect();
    let opts = FigureOptions {
        title: "layer 0 · head 0 · demo".into(),
        query_labels: labels.clone(),
        key_labels: labels,
        colormap: Colormap::Viridis,
        range: ValueRange::unit(),
        scale: ValueScale::Linear,
        cell_px: 12,
        labels: true,
        ..FigureOptions::default()
    };
    group.bench_function("labelled_png_export_64_tokens", |b| {
        b.iter(|| {
            let img = render::heatmap_figure(small_map.view(), &opts).expect("figure");
            let mut bytes = Vec::new();
            render::encode_png(&img, &mut bytes).expect("png");
            black_box(bytes.len())
        });
    });
    group.finish();
}

/// all-MiniLM-L6-v2 (6 layers × 12 heads × 384), when ATTNVIZ_MINILM_DIR names its folder: the
/// same ids as benches/reference_pytorch.py, so the two medians compare directly.
fn forward_minilm(c: &mut Criterion) {
    let Ok(dir) = std::env::var("ATTNVIZ_MINILM_DIR") else {
        eprintln!("ATTNVIZ_MINILM_DIR is not set; skipping the MiniLM benchmark");
        return;
    };
    let model = attnviz::model::Checkpoint::load(std::path::Path::new(&dir)).expect("MiniLM loads");
    let mut group = c.benchmark_group("forward_minilm");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for n in [32u32, 128, 512] {
        let ids: Vec<u32> = std::iter::once(101)
            .chain((0..n - 2).map(|i| (i * 31 + 7) % 1000 + 1000))
            .chain(std::iter::once(102))
            .collect();
        let toks = model.tokens_from_ids(&ids);
        // ATTNVIZ_BENCH_THREADS=1 measures one thread (how well the threads share the work).
        let opts = RunOptions {
            threads: std::env::var("ATTNVIZ_BENCH_THREADS")
                .ok()
                .and_then(|t| t.parse().ok()),
            ..RunOptions::default()
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &toks, |b, toks| {
            b.iter(|| black_box(model.forward(toks, &opts).map(|r| r.maps.len())));
        });
    }
    group.finish();
}

/// Live ablation: a full run that keeps its residuals (what the app computes), then the same
/// input with one head of the last layer ablated, resumed from it, against a full forward. On
/// all-MiniLM-L6-v2 at 128 tokens (ATTNVIZ_MINILM_DIR) and SmolLM2-135M at 64 tokens
/// (ATTNVIZ_SMOLLM2_DIR); the target is a resume ≤ 1/L of the forward plus 10 %.
fn ablation(c: &mut Criterion) {
    use attnviz::engine::Ablation;
    use attnviz::io::TokenInput;
    use attnviz::model::LoadedModel;
    use attnviz::pipeline::{self, RunInput};
    let models = [
        ("minilm", "ATTNVIZ_MINILM_DIR", 128u32),
        ("smollm2", "ATTNVIZ_SMOLLM2_DIR", 64),
    ];
    let mut group = c.benchmark_group("ablation");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    for (name, var, n) in models {
        let Ok(dir) = std::env::var(var) else {
            eprintln!("{var} is not set; skipping the {name} ablation benchmark");
            continue;
        };
        let model = LoadedModel::checkpoint(std::path::Path::new(&dir), Default::default())
            .expect("the checkpoint loads");
        let layers = model.info().layers;
        let ids: Vec<u32> = (0..n).map(|i| (i * 31 + 7) % 1000 + 1000).collect();
        let input = RunInput::new(TokenInput::Ids(ids));
        let opts = RunOptions {
            keep_residuals: true,
            ..RunOptions::default()
        };
        let base = pipeline::run(&model, &input, &opts, &mut |_| true).expect("the base run");
        let ablated = RunOptions {
            ablations: vec![Ablation::zero(layers - 1, 1)],
            ..opts.clone()
        };
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                black_box(
                    pipeline::run(&model, &input, &RunOptions::default(), &mut |_| true)
                        .map(|r| r.maps.len()),
                )
            });
        });
        group.bench_function(BenchmarkId::new("keep_residuals", name), |b| {
            b.iter(|| {
                black_box(pipeline::run(&model, &input, &opts, &mut |_| true).map(|r| r.maps.len()))
            });
        });
        group.bench_function(BenchmarkId::new("ablate_last_layer", name), |b| {
            b.iter(|| {
                black_box(
                    pipeline::run_resumed(
                        &model,
                        &input,
                        &ablated,
                        Some(&base),
                        &mut |_| {},
                        &mut |_| true,
                    )
                    .map(|r| r.maps.len()),
                )
            });
        });
    }
    group.finish();
}

/// One thread's matrix products in a MiniLM forward at 128 tokens on two threads (64 rows each):
/// the query/key/value projection, the output projection and the MLP's two products, and one
/// head's scores (128 × 32 · 32 × 128). Throughput counts floating-point operations (2·m·k·n),
/// so criterion's "elem/s" reads as FLOP/s.
fn matmul_shapes(c: &mut Criterion) {
    use attnviz::engine::PackedMatrix;
    use attnviz::engine::simd::{Isa, matmul_with};
    use ndarray::Array2;
    let mut group = c.benchmark_group("matmul");
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    let shapes = [
        ("qkv", 64, 384, 1152),
        ("out", 64, 384, 384),
        ("mlp_in", 64, 384, 1536),
        ("mlp_out", 64, 1536, 384),
        ("scores", 128, 32, 128),
        ("scores_512", 512, 32, 512),
        ("context_512", 512, 512, 32),
        ("rows_32", 16, 384, 1536),
    ];
    let filled = |rows: usize, cols: usize| {
        Array2::from_shape_fn((rows, cols), |(r, c)| {
            ((r * 31 + c * 17) % 23) as f32 / 11.0 - 1.0
        })
    };
    for isa in Isa::available().into_iter().skip(1) {
        for &(name, m, k, n) in &shapes {
            let a = filled(m, k);
            let b = PackedMatrix::pack(filled(k, n).view());
            let mut out = Array2::<f32>::zeros((m, n));
            group.throughput(criterion::Throughput::Elements((2 * m * k * n) as u64));
            group.bench_function(BenchmarkId::new(isa.name(), name), |bench| {
                bench.iter(|| matmul_with(isa, a.view(), &b, out.view_mut(), false));
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    forward,
    rendering,
    forward_minilm,
    ablation,
    matmul_shapes
);

fn main() {
    // As the attnviz binary does at start-up; ATTNVIZ_DEFAULT_MALLOC=1 measures without it.
    if std::env::var_os("ATTNVIZ_DEFAULT_MALLOC").is_none() {
        attnviz::engine::memory::keep_freed_memory();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
