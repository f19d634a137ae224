//! App benchmarks: the CPU cost of one grid-view frame (48 heads at 512 tokens), the time
//! from an edit of the text to an updated map on screen, and from an ablation click to it. Run with `cargo bench --bench app`.

// Setup failures abort the benchmark; criterion's macros generate undocumented functions.
#![allow(clippy::expect_used, missing_docs)]

use attnviz::app::{AppState, AttnApp, ViewKind};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn words(n: usize, salt: usize) -> String {
    (0..n)
        .map(|i| format!("w{}", (i * 31 + salt) % 97))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One full frame: logic, the whole UI, and tessellation into meshes (what eframe does on the
/// CPU before handing meshes to the GPU).
fn frame(ctx: &egui::Context, app: &mut AttnApp) -> usize {
    let input = egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(1360.0, 860.0),
        )),
        ..Default::default()
    };
    let out = ctx.run_ui(input, |ui| {
        let ctx = ui.ctx().clone();
        app.logic_step(&ctx);
        app.draw(ui);
    });
    ctx.tessellate(out.shapes, out.pixels_per_point).len()
}

fn grid_frame(c: &mut Criterion) {
    let state = AppState {
        text: words(512, 0),
        view: ViewKind::Grid,
        ..AppState::default()
    };
    let ctx = egui::Context::default();
    let mut app = AttnApp::new(state, || {});
    assert!(
        app.wait_for_run(Duration::from_secs(60)),
        "the run did not arrive"
    );
    // Warm-up frames build the thumbnails once.
    for _ in 0..3 {
        frame(&ctx, &mut app);
    }
    let mut group = c.benchmark_group("app");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function("grid_frame_48_heads_512_tokens", |b| {
        b.iter(|| black_box(frame(&ctx, &mut app)))
    });
    let mut heatmap = AttnApp::new(
        AppState {
            text: words(512, 0),
            ..AppState::default()
        },
        || {},
    );
    assert!(heatmap.wait_for_run(Duration::from_secs(60)));
    for _ in 0..3 {
        frame(&ctx, &mut heatmap);
    }
    group.bench_function("heatmap_frame_512_tokens", |b| {
        b.iter(|| black_box(frame(&ctx, &mut heatmap)))
    });
    group.finish();
}

/// `iters` times: `edit` the settings, then wait for the new run and draw the frame that shows
/// it; the total time from each edit to its frame.
fn time_to_map(
    ctx: &egui::Context,
    app: &mut AttnApp,
    iters: u64,
    edit: &mut dyn FnMut(&mut AppState),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        edit(&mut app.state);
        let start = Instant::now();
        assert!(app.wait_for_run(Duration::from_secs(60)));
        frame(ctx, app);
        total += start.elapsed();
    }
    total
}

/// From a changed text to the new map drawn: the worker's forward pass, the hand-over, and the
/// frame that uploads the new texture. Each iteration edits the text, so the cache never hits.
fn edit_to_map(c: &mut Criterion) {
    let mut group = c.benchmark_group("edit_to_map");
    group.sample_size(15);
    group.measurement_time(Duration::from_secs(6));
    for n in [128usize, 512] {
        let ctx = egui::Context::default();
        let mut app = AttnApp::new(
            AppState {
                text: words(n, 0),
                ..AppState::default()
            },
            || {},
        );
        assert!(app.wait_for_run(Duration::from_secs(60)));
        frame(&ctx, &mut app);
        let mut salt = 1;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                time_to_map(&ctx, &mut app, iters, &mut |state| {
                    salt += 1;
                    state.text = words(n, salt);
                })
            });
        });
    }
    group.finish();
}

/// From a click that ablates a head of the last layer to the new map drawn (the job resumes
/// from the cached unablated run), against `edit_to_map`'s full forward at the same length.
/// Each iteration ablates another of 16 (head, mode) pairs, more than the cache holds, so the
/// cache never hits.
fn ablation_to_map(c: &mut Criterion) {
    use attnviz::engine::{Ablation, AblationMode};
    let mut group = c.benchmark_group("ablation_to_map");
    group.sample_size(15);
    group.measurement_time(Duration::from_secs(6));
    for n in [128usize, 512] {
        let ctx = egui::Context::default();
        let mut app = AttnApp::new(
            AppState {
                text: words(n, 0),
                ..AppState::default()
            },
            || {},
        );
        assert!(app.wait_for_run(Duration::from_secs(60)));
        frame(&ctx, &mut app);
        let last = app.state.demo.layers - 1;
        let mut next = 0usize;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_custom(|iters| {
                time_to_map(&ctx, &mut app, iters, &mut |state| {
                    next += 1;
                    state.ablations = vec![Ablation {
                        layer_idx: last,
                        head_idx: next % 8,
                        mode: AblationMode::ALL[next / 8 % 2],
                    }];
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, grid_frame, edit_to_map, ablation_to_map);
criterion_main!(benches);
