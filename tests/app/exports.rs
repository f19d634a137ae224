//! The app's exports against the CLI, through the app's own entry points: the settings go into
//! a running app, the worker computes the run, and File → Export (`complete_dialog`) writes the
//! file. Nothing here builds tokens, runs or figure contexts by hand, so a drift anywhere on the
//! app's path (the worker's options, the applied mask, the labels, the title) shows.

use super::{app_harness, fixture_dir, scratch, wait_ready};
use attnviz::app::{AppState, DialogPurpose, HeadMode, ViewKind, export};
use attnviz::engine::Mistake;
use attnviz::render::{Colormap, RangeMode, ValueScale};
use egui_kittest::kittest::Queryable;
use std::path::Path;
use std::process::Command;

/// Runs the `attnviz` binary; panics with its stderr when it fails.
fn cli(args: &[&str]) {
    let o = Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "attnviz {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn decode(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap().to_rgba8()
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The app with `state`, its run arrived, then File → `purpose` to `path`.
fn app_export(state: AppState, purpose: DialogPurpose, path: &Path) -> String {
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    let app = harness.state_mut();
    app.complete_dialog(purpose, path);
    assert!(app.error.is_none(), "{:?}", app.error);
    run.mask.to_string()
}

#[test]
fn the_apps_png_export_equals_cli_render_on_the_demo() {
    let dir = scratch("export-demo");
    let text = "the cat sat on the mat because the cat was tired";
    let cli_png = dir.join("cli.png");
    cli(&[
        "render",
        "--text",
        text,
        "--out",
        cli_png.to_str().unwrap(),
        "--layer",
        "2",
        "--head",
        "mean",
        "--log",
        "--range",
        "shared",
        "--hide-special",
        "--colormap",
        "magma",
        "--mask",
        "causal",
    ]);
    let state = AppState {
        text: text.to_owned(),
        layer_idx: 2,
        head_mode: HeadMode::Mean,
        value_scale: ValueScale::Log,
        range: RangeMode::Shared,
        hide_special: true,
        colormap: Colormap::Magma,
        mask_text: "causal".to_owned(),
        ..AppState::default()
    };
    assert_eq!(export::default_png_name(&state), "attn_L2_Hmean.png");
    let app_png = dir.join("app.png");
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    let app = harness.state_mut();
    app.complete_dialog(DialogPurpose::ExportPng, &app_png);
    assert!(app.error.is_none(), "{:?}", app.error);
    let (a, b) = (decode(&cli_png), decode(&app_png));
    assert_eq!(a.dimensions(), b.dimensions());
    assert!(a == b, "the app's export differs from attnviz render");

    // Every head into a folder, counted, from the run and figure context on screen.
    let all = dir.join("all");
    let progress = std::sync::atomic::AtomicUsize::new(0);
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let ctx = app.figure_context(&run);
    let n = export::export_all_heads(&all, &run, &app.state, &ctx, &progress, &cancel).unwrap();
    assert_eq!(n, 48);
    assert_eq!(
        decode(&all.join("attn_L2_H0.png")).dimensions().0,
        a.dimensions().0,
        "one head's figure has the same layout"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_apps_exports_equal_the_clis_on_gpt2_with_byte_level_labels() {
    let dir = scratch("export-gpt2");
    let model = fixture_dir("gpt2");
    let model = model.to_str().unwrap();
    let text = "The cat sat\non the mat, café.";
    let cli_png = dir.join("cli.png");
    cli(&[
        "render",
        "--model",
        model,
        "--text",
        text,
        "--out",
        cli_png.to_str().unwrap(),
        "--layer",
        "1",
        "--head",
        "mean",
    ]);
    let state = AppState {
        text: text.to_owned(),
        model_dir: Some(fixture_dir("gpt2")),
        layer_idx: 1,
        head_mode: HeadMode::Mean,
        ..AppState::default()
    };
    let app_png = dir.join("app.png");
    app_export(state.clone(), DialogPurpose::ExportPng, &app_png);
    assert!(
        decode(&cli_png) == decode(&app_png),
        "the app's export differs from attnviz render"
    );
    // The grid too (the KV groups and the thumbnail side come from the same place).
    let cli_grid = dir.join("cli_grid.png");
    cli(&[
        "render",
        "--model",
        model,
        "--text",
        text,
        "--out",
        cli_grid.to_str().unwrap(),
        "--view",
        "grid",
    ]);
    let app_grid = dir.join("app_grid.png");
    let grid_state = AppState {
        view: ViewKind::Grid,
        ..state.clone()
    };
    app_export(grid_state, DialogPurpose::ExportPng, &app_grid);
    assert!(decode(&cli_grid) == decode(&app_grid), "the grids differ");

    // Tensors: the same file, raw vocabulary strings and the applied mask `causal`.
    let cli_json = dir.join("cli.json");
    cli(&[
        "export",
        "--model",
        model,
        "--text",
        text,
        "--out",
        cli_json.to_str().unwrap(),
    ]);
    let app_json = dir.join("app.json");
    app_export(state, DialogPurpose::ExportTensors, &app_json);
    let (a, b) = (json(&cli_json), json(&app_json));
    assert_eq!(a, b, "the app's tensor export differs from attnviz export");
    assert_eq!(a["mask"], "causal");
    assert!(a["tokens"].as_array().unwrap().iter().any(|t| t == "Ġc"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The mask on screen (the run's typed value) is the one every export records and draws: for a
/// causal model, for Mistral's sliding window, and under the forgotten-causal-mask mistake.
#[test]
fn the_applied_mask_on_screen_is_the_exported_one() {
    let dir = scratch("export-masks");
    let causal_text = "ab ab ab";
    // 8 tokens or more against Mistral's window of 6: query 7 loses keys 0 and 1.
    let long_text = "ab cd ab cd ab cd ab cd ab cd";
    // (name, model fixture, text, mistakes, the mask the run applies)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a [Mistake], &'a str);
    let cases: [Case<'_>; 3] = [
        ("gpt2", "gpt2", causal_text, &[], "causal"),
        ("mistral", "mistral", long_text, &[], "causal+window:5"),
        (
            "no-causal",
            "gpt2",
            causal_text,
            &[Mistake::NoCausalMask],
            "none",
        ),
    ];
    for (name, model, text, mistakes, want) in cases {
        let mut state = AppState {
            text: text.to_owned(),
            model_dir: Some(fixture_dir(model)),
            ..AppState::default()
        };
        state.teach.run_mistakes = mistakes.to_vec();
        let json_path = dir.join(format!("{name}.json"));
        let shown = app_export(state.clone(), DialogPurpose::ExportTensors, &json_path);
        assert_eq!(shown, want, "{name}: the mask on screen");
        assert_eq!(json(&json_path)["mask"], want, "{name}: the exported mask");
        // The figure names it in its title and paints its cells: equal to the CLI's.
        let app_png = dir.join(format!("{name}-app.png"));
        app_export(state, DialogPurpose::ExportPng, &app_png);
        let cli_png = dir.join(format!("{name}-cli.png"));
        let mut args = vec![
            "render".to_owned(),
            "--model".to_owned(),
            fixture_dir(model).to_str().unwrap().to_owned(),
            "--text".to_owned(),
            text.to_owned(),
            "--out".to_owned(),
            cli_png.to_str().unwrap().to_owned(),
        ];
        for m in mistakes {
            args.push("--mistake".to_owned());
            args.push(m.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli(&args);
        assert!(
            decode(&cli_png) == decode(&app_png),
            "{name}: the app's figure differs from attnviz render"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Tensor exports say their size first when it is large, and refuse above the largest export
/// of Run options, writing nothing (issue 20 item 5).
#[test]
fn large_tensor_exports_are_confirmed_and_refused_above_the_limit() {
    let dir = scratch("export-size");
    let words: Vec<String> = (0..1300).map(|i| format!("w{i}")).collect();
    let mut state = AppState {
        text: words.join(" "),
        ..AppState::default()
    };
    // One layer of 8 heads: 8 × 1300² values, about 13.5 million, well over 100 MB of JSON.
    state.demo.layers = 1;
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    let path = dir.join("big.json");
    harness
        .state_mut()
        .complete_dialog(DialogPurpose::ExportTensors, &path);
    harness.run();
    assert!(!path.exists(), "nothing is written before the answer");
    assert!(
        harness
            .query_by_label_contains("The export will take about")
            .is_some()
    );
    harness.get_by_label("Write").click();
    harness.run();
    assert!(path.exists());
    let v = json(&path);
    assert_eq!(v["shape"], serde_json::json!([1, 8, 1300, 1300]));
    // Over the limit: refused with the estimate and the control that raises it.
    let small = dir.join("small.json");
    harness.state_mut().state.max_output = "1KiB".to_owned();
    harness
        .state_mut()
        .complete_dialog(DialogPurpose::ExportTensors, &small);
    let error = harness.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("more than the 1 KiB allowed (Largest export in the File menu)"),
        "{error}"
    );
    assert!(!small.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
