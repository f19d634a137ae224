//! GUI tests of the whole app through egui_kittest: typing, masks, the grid, the keyboard, bad
//! files and sessions; plus three small image snapshots of the central views (wgpu renderer) on
//! a fixed attention file, so that the images do not depend on the demo model's weights.
//!
//! Runs are computed on the app's worker thread, so the tests step the harness until the run
//! for the current settings has arrived ([`wait_ready`]) before they look at it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use attnviz::app::teach::{TeachSettings, TeachTab};
use attnviz::app::{AppState, AttnApp, HeadMode, QueryCombine, Theme, ViewKind};
use attnviz::engine::{Ablation, DimSubset, Mistake, NormPlacement, ScoreScale};
use attnviz::model::{DemoConfig, DemoPositional};
use attnviz::pipeline::Run;
use attnviz::render::{Colormap, RangeMode, ValueScale};
use attnviz::tokenize::DemoTokenizer;
use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;
use egui_kittest::{Harness, SnapshotOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "app/answer_exports.rs"]
mod answer_exports;
#[path = "app/exports.rs"]
mod exports;
#[path = "app/pipeline.rs"]
mod pipeline;
#[path = "app/teach.rs"]
mod teach;

/// Longest wait for one run of the worker: a hang detector, not a speed test (speed lives in
/// the criterion benchmarks). CI runs the debug build with the whole suite sharing 2 cores:
/// there the 2,500-token run of `a_map_longer_than_the_room_…` passed 20 s, while it takes
/// 9 s alone on the same kind of machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attnviz-app-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The whole app in a 1280×800 window, driven the way eframe drives it (logic, then ui).
fn app_harness(state: AppState) -> Harness<'static, AttnApp> {
    Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_eframe(|cc| {
            let ctx = cc.egui_ctx.clone();
            AttnApp::new(state, move || ctx.request_repaint())
        })
}

/// Steps the harness until the run for the current settings is shown, lets the UI settle, and
/// returns that run. Panics on a timeout or when the app reports an error.
fn wait_ready(harness: &mut Harness<'_, AttnApp>) -> Arc<Run> {
    let start = Instant::now();
    loop {
        harness.step();
        let app = harness.state();
        if let Some(e) = &app.error {
            panic!("the app shows an error: {e}");
        }
        let wanted = app
            .state
            .job_key()
            .expect("the settings should be runnable");
        let arrived = app.current.as_ref().is_some_and(|(key, _)| *key == wanted);
        if arrived && !app.busy() && app.shown_run().is_some() {
            break;
        }
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "no run for {wanted:?} within {RUN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The worker may still be winding down a cancelled job, waking the UI as it goes: settle
    // once it stops rather than within a fixed number of frames.
    while harness.run_ok().is_none() {
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "the UI did not settle within {RUN_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    harness
        .state()
        .shown_run()
        .cloned()
        .expect("a run is shown")
}

/// Replaces the whole content of the text field labelled `label` by typing: click into it,
/// select all, type.
fn retype(harness: &mut Harness<'_, AttnApp>, label: &str, text: &str) {
    harness.get_by_label(label).click();
    harness.step();
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness.get_by_label(label).type_text(text);
    harness.step();
}

#[test]
fn typing_text_updates_token_count_and_map_size() {
    let mut harness = app_harness(AppState::default());
    let before = wait_ready(&mut harness);
    assert_eq!(before.tokens.len(), 20, "the sample text has 20 words");

    retype(&mut harness, "Text", "one two three four five");
    assert_eq!(harness.state().state.text, "one two three four five");
    let run = wait_ready(&mut harness);
    let texts: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["one", "two", "three", "four", "five"]);
    assert_eq!(run.maps.shape(), [6, 8, 5, 5]);
    assert!(
        harness.query_by_label("5 tokens").is_some(),
        "status bar count"
    );
    assert!(
        harness.query_by_label("token 4: five").is_some(),
        "token strip chip"
    );

    // Typing more words grows the run by exactly that many tokens.
    harness.get_by_label("Text").type_text(" six seven");
    harness.step();
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 7);
    assert_eq!(run.maps.shape()[2], 7);
    assert_eq!(run.maps.shape()[3], 7);
}

#[test]
fn causal_mask_zeroes_the_upper_triangle() {
    let mut harness = app_harness(AppState::default());
    let run = wait_ready(&mut harness);
    let (l, h) = (
        harness.state().state.layer_idx,
        harness.state().state.head_idx,
    );
    let unmasked = run.maps.head(l, h).unwrap();
    let upper: f32 = unmasked
        .indexed_iter()
        .filter(|((i, j), _)| j > i)
        .map(|(_, v)| *v)
        .sum();
    assert!(upper > 0.0, "without a mask the future gets some attention");

    retype(&mut harness, "Mask", "causal");
    assert_eq!(harness.state().state.mask_text, "causal");
    let run = wait_ready(&mut harness);
    let [layers, heads, n, _] = run.maps.shape();
    assert_eq!(n, 20);
    let (l, h) = (
        harness.state().state.layer_idx,
        harness.state().state.head_idx,
    );
    let selected = run.maps.head(l, h).unwrap();
    for ((i, j), &v) in selected.indexed_iter() {
        if j > i {
            assert_eq!(v, 0.0, "L{l}·H{h} query {i} attends to the future key {j}");
        }
    }
    // Every other head too, and every row is still a distribution.
    for layer_idx in 0..layers {
        for head_idx in 0..heads {
            let m = run.maps.head(layer_idx, head_idx).unwrap();
            for ((i, j), &v) in m.indexed_iter() {
                assert!(
                    j <= i || v == 0.0,
                    "L{layer_idx}·H{head_idx} ({i}, {j}) = {v}"
                );
            }
            for (i, row) in m.rows().into_iter().enumerate() {
                let sum: f32 = row.sum();
                assert!(
                    (sum - 1.0).abs() < 1e-4,
                    "L{layer_idx}·H{head_idx} row {i} sums to {sum}"
                );
            }
        }
    }
}

#[test]
fn clicking_a_grid_thumbnail_opens_it_in_the_heatmap() {
    let state = AppState {
        head_mode: HeadMode::Mean,
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    wait_ready(&mut harness);

    harness.get_by_label("Grid").click();
    harness.run();
    assert_eq!(harness.state().state.view, ViewKind::Grid);

    harness.get_by_label("L3·H5").click();
    harness.run();
    let state = &harness.state().state;
    assert_eq!(state.view, ViewKind::Heatmap);
    assert_eq!((state.layer_idx, state.head_idx), (3, 5));
    assert_eq!(state.head_mode, HeadMode::Single);
    assert!(
        harness.query_by_label("L3·H5").is_none(),
        "the grid is gone"
    );
}

#[test]
fn arrow_keys_change_head_and_layer() {
    let state = AppState {
        head_mode: HeadMode::Mean,
        all_layers: true,
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    let head_layer =
        |h: &Harness<'_, AttnApp>| (h.state().state.head_idx, h.state().state.layer_idx);

    harness.key_press(Key::ArrowRight);
    harness.key_press(Key::ArrowRight);
    harness.run();
    assert_eq!(head_layer(&harness), (2, 0));
    assert_eq!(harness.state().state.head_mode, HeadMode::Single);

    harness.key_press(Key::ArrowLeft);
    harness.run();
    assert_eq!(head_layer(&harness), (1, 0));

    // The head stops at the last one (the default demo has 8).
    for _ in 0..10 {
        harness.key_press(Key::ArrowRight);
    }
    harness.run();
    assert_eq!(head_layer(&harness), (7, 0));

    harness.key_press(Key::ArrowDown);
    harness.key_press(Key::ArrowDown);
    harness.run();
    assert_eq!(head_layer(&harness), (7, 2));
    assert!(
        !harness.state().state.all_layers,
        "a layer key picks one layer"
    );

    harness.key_press(Key::ArrowUp);
    harness.run();
    assert_eq!(head_layer(&harness), (7, 1));
    for _ in 0..3 {
        harness.key_press(Key::ArrowUp);
    }
    harness.run();
    assert_eq!(head_layer(&harness), (7, 0));

    // While a text field has the keyboard, arrows move the cursor, not the selection.
    harness.get_by_label("Text").click();
    harness.run();
    harness.key_press(Key::ArrowLeft);
    harness.key_press(Key::ArrowDown);
    harness.run();
    assert_eq!(head_layer(&harness), (7, 0));
}

#[test]
fn a_bad_file_shows_an_error_and_keeps_the_state() {
    let dir = scratch("bad-file");
    let mut harness = app_harness(AppState::default());
    let run_before = wait_ready(&mut harness);
    let state_before = harness.state().state.clone();

    let malformed = dir.join("broken.json");
    std::fs::write(&malformed, r#"{"text": "never closed"#).unwrap();
    let missing = dir.join("missing.txt");

    for (path, name) in [(&malformed, "broken.json"), (&missing, "missing.txt")] {
        harness.state_mut().open_file(path);
        let app = harness.state();
        let error = app.error.clone().expect("an error is reported");
        assert!(
            error.contains(&path.display().to_string()),
            "{error:?} should name {path:?}"
        );
        assert_eq!(app.state, state_before, "the settings are unchanged");
        assert!(app.external.is_none());
        let shown = app.shown_run().expect("the old run is still shown");
        assert!(
            Arc::ptr_eq(shown, &run_before),
            "the old run is still shown"
        );

        harness.run();
        let shown = harness
            .query_by_label_contains(name)
            .expect("the error is on screen");
        let text = shown.value().unwrap_or_default();
        assert!(text.starts_with("error: "), "{text:?}");
        assert_eq!(harness.state().state, state_before);
        assert!(Arc::ptr_eq(
            harness.state().shown_run().unwrap(),
            &run_before
        ));
    }

    harness.get_by_label("dismiss").click();
    harness.run();
    assert!(harness.state().error.is_none());
    assert!(harness.query_by_label_contains("missing.txt").is_none());
}

/// A state where every setting differs from the default and survives `clamp`.
fn changed_state() -> AppState {
    AppState {
        text: "alpha beta gamma alpha beta".to_owned(),
        tokens: Some(vec!["[CLS]".to_owned(), "alpha".to_owned()]),
        token_ids: Some(vec![1, 2, 3]),
        tokenizer: DemoTokenizer::Chars,
        demo: DemoConfig {
            layers: 4,
            heads: 4,
            d_model: 64,
            positional: DemoPositional::Rope,
            norm: NormPlacement::Post,
            seed: 7,
        },
        model_dir: Some(fixture_dir("bert")),
        recent_models: vec![fixture_dir("bert"), PathBuf::from("/models/b")],
        mask_text: "causal+window:3".to_owned(),
        truncate: true,
        memory_budget: "3GiB".to_owned(),
        max_output: "2GiB".to_owned(),
        scale: ScoreScale::Temperature(2.5),
        view: ViewKind::HeadView,
        layer_idx: 3,
        all_layers: true,
        head_idx: 2,
        head_mode: HeadMode::Set,
        head_set: vec![1, 3],
        colormap: Colormap::Magma,
        value_scale: ValueScale::Log,
        range: RangeMode::Shared,
        hide_special: true,
        selected_queries: vec![1, 4],
        query_combine: QueryCombine::Sum,
        head_view_hidden: vec![0, 2],
        head_view_threshold: 0.2,
        theme: Theme::Light,
        saliency: saliency::changed_settings(),
        answer: attnviz::app::answer::AnswerSettings {
            tab: attnviz::app::answer::AnswerTab::Routes,
            target: attnviz::app::answer::compute::TargetChoice {
                position: Some(1),
                token: Some(7),
                foil: Some(9),
            },
            threshold: 0.1,
            text_b: "alpha beta delta alpha beta".to_owned(),
            site: attnviz::analysis::answer::patching::PatchSite::Head,
            head: Some((1, 2)),
            lens_cell: Some((0, 1)),
        },
        analyze: analyze::changed_settings(),
        teach: TeachSettings {
            tab: TeachTab::Mistakes,
            step: 3,
            key_idx: 2,
            dims: vec![DimSubset {
                layer_idx: 0,
                head_idx: 1,
                dims: vec![0, 2],
            }],
            mistake: Some(Mistake::NoScaling),
            run_mistakes: vec![Mistake::NoPositions],
            presenter: true,
            colormap_before_presenter: Some(Colormap::Plasma),
            lesson: None,
            lesson_step: 1,
            sampling: attnviz::app::teach::settings::SamplingControls {
                temperature: 0.7,
                top_k: 5,
                top_p: 0.9,
                seed: 42,
            },
        },
        ablations: vec![Ablation::zero(0, 3), Ablation::mean(1, 2)],
        show_difference: true,
        recent_files: vec![PathBuf::from("/data/a.txt")],
        dialog_folders: [("open".to_owned(), PathBuf::from("/data"))].into(),
    }
}

#[test]
fn a_session_round_trip_restores_every_setting() {
    let changed = changed_state();
    // Every field is spelled out, so a new setting breaks this until it is covered here.
    let AppState {
        text,
        tokens,
        token_ids,
        tokenizer,
        demo,
        model_dir,
        recent_models,
        mask_text,
        truncate,
        memory_budget,
        max_output,
        scale,
        view,
        layer_idx,
        all_layers,
        head_idx,
        head_mode,
        head_set,
        colormap,
        value_scale,
        range,
        hide_special,
        selected_queries,
        query_combine,
        head_view_hidden,
        head_view_threshold,
        theme,
        saliency,
        answer,
        analyze,
        teach,
        ablations,
        show_difference,
        recent_files,
        dialog_folders,
    } = &changed;
    let d = AppState::default();
    assert_ne!(*text, d.text);
    assert_ne!(*tokens, d.tokens);
    assert_ne!(*token_ids, d.token_ids);
    assert_ne!(*tokenizer, d.tokenizer);
    assert_ne!(*demo, d.demo);
    assert_ne!(*model_dir, d.model_dir);
    assert_ne!(*recent_models, d.recent_models);
    assert_ne!(*mask_text, d.mask_text);
    assert_ne!(*truncate, d.truncate);
    assert_ne!(*memory_budget, d.memory_budget);
    assert_ne!(*max_output, d.max_output);
    assert_ne!(*scale, d.scale);
    assert_ne!(*view, d.view);
    assert_ne!(*layer_idx, d.layer_idx);
    assert_ne!(*all_layers, d.all_layers);
    assert_ne!(*head_idx, d.head_idx);
    assert_ne!(*head_mode, d.head_mode);
    assert_ne!(*head_set, d.head_set);
    assert_ne!(*colormap, d.colormap);
    assert_ne!(*value_scale, d.value_scale);
    assert_ne!(*range, d.range);
    assert_ne!(*hide_special, d.hide_special);
    assert_ne!(*selected_queries, d.selected_queries);
    assert_ne!(*query_combine, d.query_combine);
    assert_ne!(*head_view_hidden, d.head_view_hidden);
    assert_ne!(*head_view_threshold, d.head_view_threshold);
    assert_ne!(*theme, d.theme);
    assert_ne!(*saliency, d.saliency);
    assert_ne!(*answer, d.answer);
    assert_ne!(*analyze, d.analyze);
    assert_ne!(*teach, d.teach);
    assert_ne!(*ablations, d.ablations);
    assert_ne!(*show_difference, d.show_difference);
    assert_ne!(*recent_files, d.recent_files);
    assert_ne!(*dialog_folders, d.dialog_folders);
    assert!(changed.job_key().is_ok());

    let dir = scratch("session");
    let path = dir.join("all.attnviz.json");
    let mut app = AttnApp::new(changed.clone(), || {});
    assert_eq!(app.state, changed, "the test state must survive clamping");
    app.save_session(&path);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.session_path.as_deref(), Some(path.as_path()));
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(doc["format"], "attnviz.session/v1");

    let mut fresh = AttnApp::new(AppState::default(), || {});
    fresh.open_file(&path);
    assert!(fresh.error.is_none(), "{:?}", fresh.error);
    // Every setting comes back, but the recent files and the dialogs' folders are the app's
    // own: the session joins the app's recent files.
    assert_eq!(fresh.state.recent_files, vec![path.clone()]);
    assert!(fresh.state.dialog_folders.is_empty());
    let expected = AppState {
        recent_files: fresh.state.recent_files.clone(),
        dialog_folders: fresh.state.dialog_folders.clone(),
        ..changed.clone()
    };
    assert_eq!(fresh.state, expected);
    assert_eq!(fresh.session_path.as_deref(), Some(path.as_path()));
    assert!(fresh.wait_for_run(RUN_TIMEOUT), "{:?}", fresh.error);
    // The restored session runs the BERT fixture (2 layers × 4 heads), with its ablations.
    let shown = fresh.shown_run().unwrap();
    assert_eq!(shown.maps.shape()[..2], [2, 4]);
    assert_eq!(shown.ablations, changed.ablations);
}

/// Writes a hand-made session file.
fn write_session(path: &Path, fields: serde_json::Value) {
    let mut doc = fields;
    doc["format"] = serde_json::Value::from("attnviz.session/v1");
    std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
}

#[test]
fn out_of_range_sessions_load_clamped() {
    let dir = scratch("clamp");
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);

    let too_far = dir.join("too-far.attnviz.json");
    write_session(
        &too_far,
        serde_json::json!({
            "text": "a b a b c",
            "demo": {"layers": 6, "heads": 8, "d_model": 256},
            "layer_idx": 99,
            "head_idx": 99,
        }),
    );
    harness.state_mut().open_file(&too_far);
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!((app.state.layer_idx, app.state.head_idx), (5, 7));
    assert_eq!(app.state.text, "a b a b c");
    let run = wait_ready(&mut harness);
    assert_eq!(run.maps.shape(), [6, 8, 5, 5]);
    assert!(run.maps.head(5, 7).is_some());

    let bad_model = dir.join("bad-model.attnviz.json");
    write_session(
        &bad_model,
        serde_json::json!({
            "text": "x y z",
            "demo": {"layers": 2, "heads": 4, "d_model": 7},
            "layer_idx": 1,
            "head_idx": 3,
        }),
    );
    harness.state_mut().open_file(&bad_model);
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state.demo, DemoConfig::default());
    assert_eq!((app.state.layer_idx, app.state.head_idx), (1, 3));
    let run = wait_ready(&mut harness);
    assert_eq!(run.maps.shape(), [6, 8, 3, 3]);
}

/// Side of a snapshot's window, in points: room for the token strip and the view.
const SNAPSHOT_POINTS: f32 = 384.0;
/// Side of a snapshot image, in pixels (so the UI is drawn at 2/3 scale).
const SNAPSHOT_PIXELS: f32 = 256.0;

/// Tokens of the snapshot fixture.
const FIXTURE_TOKENS: [&str; 5] = ["a", "b", "a", "b", "c"];

/// Weight from query `i` to key `j` (before row normalisation) of layer `l`, head `h` in the
/// snapshot fixture: four one-hot or banded patterns in layer 0, smoother ones in layer 1.
fn fixture_weight(l: usize, h: usize, i: usize, j: usize) -> f32 {
    let one_if = |c: bool| if c { 1.0 } else { 0.0 };
    match (l, h) {
        (0, 0) => one_if(j == i.saturating_sub(1)),
        (0, 1) => one_if(j == i),
        (0, 2) => one_if(j == 0),
        (0, 3) => one_if(j <= i),
        (1, 0) => one_if(j == (i + 2) % FIXTURE_TOKENS.len()),
        (1, 1) => (-(i.abs_diff(j) as f32)).exp(),
        (1, 2) => (j + 1) as f32,
        _ => (1 + (3 * i + 2 * j) % 5) as f32,
    }
}

/// Writes the fixed attention file the snapshots show (2 layers × 4 heads × 5 tokens). It does
/// not come from the demo model, so the images change only when the views' drawing changes.
fn write_fixture(path: &Path) {
    let n = FIXTURE_TOKENS.len();
    let attentions: Vec<Vec<Vec<Vec<f32>>>> = (0..2)
        .map(|l| {
            (0..4)
                .map(|h| {
                    (0..n)
                        .map(|i| {
                            let row: Vec<f32> =
                                (0..n).map(|j| fixture_weight(l, h, i, j)).collect();
                            let sum: f32 = row.iter().sum();
                            row.iter().map(|v| v / sum).collect()
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let doc = serde_json::json!({
        "format": "attnviz.attention/v1",
        "model": {"name": "fixture", "architecture": "demo", "layers": 2, "heads": 4,
                  "kv_heads": 4, "d_model": 64},
        "tokens": FIXTURE_TOKENS,
        "shape": [2, 4, n, n],
        "attentions": attentions,
    });
    std::fs::write(path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// Draws the central area (switcher, token strip, `view`) of the fixed fixture run with layer 0,
/// head 3 selected, dark theme, through wgpu, and compares it with `tests/snapshots/{name}.png` (256×256 pixels).
fn snapshot_view(name: &str, view: ViewKind) {
    let path = scratch(&format!("snapshot-{name}")).join("fixture.json");
    write_fixture(&path);
    let mut app = AttnApp::new(
        AppState {
            view,
            head_idx: 3,
            ..AppState::default()
        },
        || {},
    );
    app.open_file(&path);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.shown_run().unwrap().maps.shape(), [2, 4, 5, 5]);
    let mut harness = Harness::builder()
        .with_size(egui::vec2(SNAPSHOT_POINTS, SNAPSHOT_POINTS))
        .with_pixels_per_point(SNAPSHOT_PIXELS / SNAPSHOT_POINTS)
        .with_options(SnapshotOptions::new().threshold(1.0).max_failed_pixels(0))
        .wgpu()
        .build_ui_state(|ui, app: &mut AttnApp| app.draw_central(ui), app);
    harness.run();
    harness.snapshot(name);
}

#[test]
fn snapshot_heatmap() {
    snapshot_view("heatmap", ViewKind::Heatmap);
}

#[test]
fn snapshot_grid() {
    snapshot_view("grid", ViewKind::Grid);
}

#[test]
fn snapshot_head_view() {
    snapshot_view("head_view", ViewKind::HeadView);
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn opening_a_model_folder_runs_the_checkpoint_and_a_bad_one_falls_back() {
    let mut harness = app_harness(AppState {
        text: "The cat sat on the mat.".to_owned(),
        ..AppState::default()
    });
    let demo_run = wait_ready(&mut harness);
    assert_eq!(demo_run.maps.shape()[..2], [6, 8]);
    assert!(harness.query_by_label("Tokenizer").is_some());

    harness.state_mut().open_model_folder(&fixture_dir("bert"));
    let run = wait_ready(&mut harness);
    harness.run_steps(2);
    // The demo's tokenizer choice gives way to the folder's own tokenizer.
    assert!(harness.query_by_label("Tokenizer").is_none());
    assert!(
        harness
            .query_by_label("Tokenizer: the model folder's tokenizer.json")
            .is_some()
    );
    let app = harness.state();
    // The fixture's WordPiece tokenizer adds [CLS] and [SEP], as transformers does.
    assert_eq!(run.maps.shape()[..2], [2, 4]);
    assert_eq!(run.tokens.first().map(|t| t.text.as_str()), Some("[CLS]"));
    assert_eq!(run.tokens.last().map(|t| t.text.as_str()), Some("[SEP]"));
    assert_eq!(
        app.model_info.as_ref().map(|i| i.architecture.as_str()),
        Some("bert")
    );
    assert_eq!(app.state.recent_models.first(), Some(&fixture_dir("bert")));

    // A folder without a model: the error names it, and the BERT run stays.
    let empty = scratch("empty-model");
    harness.state_mut().open_model_folder(&empty);
    let start = Instant::now();
    while harness.state().error.is_none() {
        harness.step();
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "no error for an empty model folder"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let app = harness.state();
    let error = app.error.clone().unwrap_or_default();
    assert!(error.contains(&empty.display().to_string()), "{error}");
    assert_eq!(app.state.model_dir, Some(fixture_dir("bert")));
    assert!(
        !app.state.recent_models.contains(&empty),
        "failed loads are not remembered"
    );
    assert!(Arc::ptr_eq(app.shown_run().unwrap(), &run));
}

/// Steps the harness (without waiting for it to settle: a load in progress keeps it
/// repainting) until `done` holds; panics after [`RUN_TIMEOUT`].
fn step_until(
    harness: &mut Harness<'_, AttnApp>,
    what: &str,
    done: impl Fn(&Harness<'_, AttnApp>) -> bool,
) {
    let start = Instant::now();
    while !done(harness) {
        harness.step();
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True while the worker is loading `dir` (the load may have been cancelled already).
fn loading(harness: &Harness<'_, AttnApp>, dir: &Path) -> bool {
    harness.state().loading().is_some_and(|l| l.dir == dir)
}

#[test]
fn cancelling_a_model_load_keeps_the_previous_model_and_settings() {
    let mut harness = app_harness(AppState {
        text: "a b a b c".to_owned(),
        mask_text: "causal".to_owned(),
        view: ViewKind::Grid,
        layer_idx: 4,
        head_idx: 6,
        colormap: Colormap::Magma,
        selected_queries: vec![2],
        ..AppState::default()
    });
    let run_before = wait_ready(&mut harness);
    let state_before = harness.state().state.clone();
    let info_before = harness.state().model_info.clone();
    assert!(info_before.is_some());

    // The worker stops just before it reads the folder, so the load is cancelled at a known
    // point however fast the machine is.
    let llama = fixture_dir("llama");
    harness.state().hold_worker(true);
    harness.state_mut().open_model_folder(&llama);
    step_until(&mut harness, "the load to start", |h| loading(h, &llama));
    // Held before reading the files, the total is not known yet.
    step_until(&mut harness, "the progress bar", |h| {
        h.query_by_label("loading llama…").is_some()
    });
    let progress = harness.state().loading().unwrap().progress;
    assert!(!progress.is_cancelled());

    harness.get_by_label("Cancel").click();
    harness.step();
    harness.step();
    assert!(progress.is_cancelled(), "Cancel cancels the load");
    let app = harness.state();
    assert!(app.error.is_none(), "a cancel is no error: {:?}", app.error);
    let notice = app.notice.clone().unwrap_or_default();
    assert!(
        notice.contains("cancelled loading llama"),
        "a short note says so: {notice:?}"
    );
    assert_eq!(app.state, state_before, "the settings are as they were");
    assert_eq!(app.model_info, info_before);
    assert!(!app.busy());
    assert!(Arc::ptr_eq(app.shown_run().unwrap(), &run_before));
    assert!(
        harness.query_by_label("loading llama…").is_none(),
        "the progress bar is gone"
    );
    assert!(harness.query_by_label("Cancel").is_none());

    // Let the worker go: it sees the cancel before reading a tensor, and nothing changes.
    harness.state().hold_worker(false);
    step_until(&mut harness, "the worker to give up", |h| {
        h.state().loading().is_none()
    });
    harness.run();
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state, state_before);
    assert!(
        !app.state.recent_models.contains(&llama),
        "not a recent model"
    );
    assert!(Arc::ptr_eq(app.shown_run().unwrap(), &run_before));

    // The demo model is still the one that runs.
    retype(&mut harness, "Text", "x y z");
    let run = wait_ready(&mut harness);
    assert_eq!(run.maps.shape(), [6, 8, 3, 3]);
    assert!(harness.state().state.model_dir.is_none());
}

#[test]
fn opening_a_second_model_folder_while_one_loads_cancels_the_first() {
    let mut harness = app_harness(AppState {
        text: "The cat sat.".to_owned(),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    let (bert, llama) = (fixture_dir("bert"), fixture_dir("llama"));

    harness.state().hold_worker(true);

    // Back to the demo while BERT loads: the demo's run is cached, nothing new is submitted,
    // and the load stops all the same.
    harness.state_mut().open_model_folder(&bert);
    step_until(&mut harness, "the BERT load to start", |h| {
        loading(h, &bert)
    });
    let bert_progress = harness.state().loading().unwrap().progress;
    harness.state_mut().state.model_dir = None;
    harness.step();
    assert!(bert_progress.is_cancelled(), "the demo wins");
    assert!(
        harness.query_by_label("Cancel").is_none(),
        "no progress bar"
    );
    harness.state().hold_worker(false);
    step_until(&mut harness, "the worker to give up", |h| {
        h.state().loading().is_none()
    });
    assert!(harness.state().error.is_none());
    assert!(harness.state().state.recent_models.is_empty());

    // BERT again, and Llama while BERT loads: Llama wins.
    harness.state().hold_worker(true);
    harness.state_mut().open_model_folder(&bert);
    step_until(&mut harness, "the BERT load to start again", |h| {
        loading(h, &bert)
    });
    let bert_progress = harness.state().loading().unwrap().progress;
    assert!(!bert_progress.is_cancelled());

    harness.state_mut().open_model_folder(&llama);
    harness.step();
    assert!(bert_progress.is_cancelled(), "the newer folder wins");
    harness.state().hold_worker(false);

    let run = wait_ready(&mut harness);
    let app = harness.state();
    assert_eq!(run.maps.shape()[..2], [2, 4]);
    assert_eq!(
        app.model_info.as_ref().map(|i| i.architecture.as_str()),
        Some("llama")
    );
    assert_eq!(app.state.model_dir.as_ref(), Some(&llama));
    assert_eq!(app.state.recent_models, vec![llama.clone()]);

    // A failing folder goes back to Llama, and is not remembered either.
    let empty = scratch("second-empty-model");
    harness.state_mut().open_model_folder(&empty);
    step_until(&mut harness, "the error", |h| h.state().error.is_some());
    let app = harness.state();
    assert_eq!(app.state.model_dir.as_ref(), Some(&llama));
    assert_eq!(app.state.recent_models, vec![llama]);
}

#[test]
fn the_grid_groups_heads_that_share_a_kv_head() {
    let mut harness = app_harness(AppState {
        text: "The cat sat on the mat.".to_owned(),
        view: ViewKind::Grid,
        ..AppState::default()
    });
    wait_ready(&mut harness);
    // The demo has one KV head per query head: no groups.
    assert!(harness.query_by_label("L0·H7").is_some());
    assert!(harness.query_by_label_contains("KV 0").is_none());

    harness.state_mut().open_model_folder(&fixture_dir("llama"));
    wait_ready(&mut harness);
    // The fixture has 4 query heads and 2 KV heads.
    assert!(harness.query_by_label("KV 0: heads 0–1").is_some());
    assert!(harness.query_by_label("KV 1: heads 2–3").is_some());
    assert!(harness.query_by_label_contains("KV 2").is_none());
    assert!(harness.query_by_label("KV heads").is_some(), "info panel");
    assert!(
        harness
            .query_by_label("2 (groups of 2 query heads)")
            .is_some()
    );

    // The gap between the groups is wider than the one inside a group.
    let left = |h: &Harness<'_, AttnApp>, label: &str| h.get_by_label(label).rect().min.x;
    let inside = left(&harness, "L0·H1") - left(&harness, "L0·H0");
    let between = left(&harness, "L0·H2") - left(&harness, "L0·H1");
    assert!(between > inside + 4.0, "{between} vs {inside}");
    // Each group's bracket spans its own heads' columns.
    let kv1 = harness.get_by_label("KV 1: heads 2–3").rect();
    assert!((kv1.min.x - left(&harness, "L0·H2")).abs() < 1.0);

    harness.get_by_label("L1·H3").hover();
    step_until(&mut harness, "the hover text", |h| {
        h.query_by_label("Shares KV head 1 with head 2").is_some()
    });

    // Clicking still opens the head.
    harness.get_by_label("L1·H3").click();
    harness.run();
    let state = &harness.state().state;
    assert_eq!(state.view, ViewKind::Heatmap);
    assert_eq!((state.layer_idx, state.head_idx), (1, 3));

    // Back to the demo: no groups again.
    harness.state_mut().state.model_dir = None;
    harness.state_mut().state.view = ViewKind::Grid;
    wait_ready(&mut harness);
    assert!(harness.query_by_label("L0·H7").is_some());
    assert!(harness.query_by_label_contains("KV 0").is_none());
}

/// A byte-level checkpoint's tokens are shown with readable labels (`Ġc` as `␣c`, `Ċ` as `↵`)
/// in the token strip and the head view, the raw strings stay on the tokens, and going back to
/// the demo shows its tokens unchanged.
#[test]
fn checkpoint_tokens_are_shown_with_readable_labels() {
    let mut harness = app_harness(AppState {
        text: "The cat sat\non the mat.".to_owned(),
        model_dir: Some(fixture_dir("gpt2")),
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    let raw: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(raw[..3], ["The", "Ġc", "at"]);
    assert!(raw.contains(&"Ċ"));
    assert_eq!(
        harness.state().shown_run().unwrap().vocab_style,
        attnviz::tokenize::VocabStyle::ByteLevel
    );
    harness.get_by_label("token 1: ␣c");
    let newline = raw.iter().position(|t| *t == "Ċ").unwrap();
    harness.get_by_label(&format!("token {newline}: ↵"));
    assert!(harness.query_by_label("token 1: Ġc").is_none());

    harness.state_mut().state.view = ViewKind::HeadView;
    harness.run();
    harness.get_by_label("query 1: ␣c");
    harness.get_by_label("key 1: ␣c");

    harness.state_mut().state.model_dir = None;
    let demo = wait_ready(&mut harness);
    assert_eq!(
        harness.state().shown_run().unwrap().vocab_style,
        attnviz::tokenize::VocabStyle::default()
    );
    assert_eq!(demo.tokens[1].text, "cat");
    harness.get_by_label("query 1: cat");
}

#[path = "app/dialog.rs"]
mod dialog;

#[path = "app/pixel_path.rs"]
mod pixel_path;

#[path = "app/state.rs"]
mod state;

#[path = "app/figures.rs"]
mod figures;

#[path = "app/unicode.rs"]
mod unicode;

#[path = "app/answer.rs"]
mod answer;
#[path = "app/saliency.rs"]
mod saliency;

#[path = "app/sampling.rs"]
mod sampling;

#[path = "app/ablate.rs"]
mod ablate;

#[path = "app/small_things.rs"]
mod small_things;

#[path = "app/lessons.rs"]
mod lessons;

#[path = "app/teach_figures.rs"]
mod teach_figures;

#[path = "app/analyze.rs"]
mod analyze;

#[path = "support/npy.rs"]
mod npy_support;
