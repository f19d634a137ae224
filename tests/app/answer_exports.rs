//! The Answer view's exports against the CLI, through the user's path: each tab's button opens
//! the (in-app) file dialog, a path is typed and saved, and the file equals what
//! `attnviz analyze --what … --out` writes for the same settings on the Llama fixture: the
//! same PNG pixels and the same JSON bytes.

use super::*;
use attnviz::app::answer::AnswerSettings;
use attnviz::app::file_dialog::{DialogMode, NoSystemDialogs};

const TEXT: &str = "the cat sat on the mat";
const TEXT_B: &str = "the rat sat on the mat";

/// Runs the `attnviz` binary; panics with its stderr when it fails.
fn cli(args: &[&str]) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "attnviz {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Presses the export button `button`, types `path` into the in-app dialog and saves.
fn export_through_the_dialog(harness: &mut Harness<'_, AttnApp>, button: &str, path: &Path) {
    harness.get_by_label(button).click();
    step_until(harness, "the in-app file dialog", |h| {
        h.state().in_app_dialog().is_some()
    });
    harness.run_steps(2);
    assert!(harness.query_by_label("Export the Answer view").is_some());
    retype(harness, "Path", &path.display().to_string());
    harness.get_by_label("Save").click();
    harness.run_steps(3);
    assert!(
        harness.state().in_app_dialog().is_none(),
        "the dialog closed"
    );
    let app = harness.state();
    assert!(app.error.is_none(), "{button}: {:?}", app.error);
}

#[test]
fn the_answer_views_exports_equal_the_clis_figures_and_documents() {
    let dir = scratch("answer-exports");
    let model = fixture_dir("llama");
    let m = model.to_str().unwrap();
    let mut harness = app_harness(AppState {
        model_dir: Some(model.clone()),
        text: TEXT.to_owned(),
        view: ViewKind::Answer,
        answer: AnswerSettings {
            text_b: TEXT_B.to_owned(),
            ..AnswerSettings::default()
        },
        ..AppState::default()
    });
    harness
        .state_mut()
        .set_dialog_backend(Arc::new(NoSystemDialogs));
    wait_ready(&mut harness);
    for (tab, what) in [
        ("Logit lens", "logit-lens"),
        ("Contributions", "contributions"),
        ("Routes", "routes"),
        ("Patching", "patching"),
    ] {
        harness.get_by_label(tab).click();
        harness.run_steps(2);
        if what == "patching" {
            harness.get_by_label("Run patching").click();
        }
        step_until(&mut harness, what, |h| h.query_by_label("PNG…").is_some());
        harness.run_steps(2);
        for ext in ["png", "svg", "json"] {
            let app_file = dir.join(format!("app-{what}.{ext}"));
            let button = format!("{}…", ext.to_uppercase());
            export_through_the_dialog(&mut harness, &button, &app_file);
            let cli_file = dir.join(format!("cli-{what}.{ext}"));
            let mut args = vec!["analyze", "--model", m, "--text", TEXT, "--what", what];
            if what == "patching" {
                args.extend(["--text-b", TEXT_B]);
            }
            let out = cli_file.to_str().unwrap().to_owned();
            args.extend(["--out", &out]);
            cli(&args);
            if ext == "png" {
                let (a, b) = (
                    image::open(&app_file).unwrap().to_rgba8(),
                    image::open(&cli_file).unwrap().to_rgba8(),
                );
                assert_eq!(a.dimensions(), b.dimensions(), "{what}");
                assert!(a == b, "{what}: the app's PNG differs from the CLI's");
            } else {
                let (a, b) = (
                    std::fs::read_to_string(&app_file).unwrap(),
                    std::fs::read_to_string(&cli_file).unwrap(),
                );
                assert_eq!(a, b, "{what} {ext}");
            }
        }
    }
    // Ctrl+E in the Answer view exports the tab's figure, named after the tab.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::E);
    step_until(&mut harness, "the in-app file dialog", |h| {
        h.state().in_app_dialog().is_some()
    });
    let request = harness.state().in_app_dialog().cloned().unwrap();
    assert_eq!(request.title, "Export the Answer view");
    assert!(
        matches!(&request.mode, DialogMode::Save { default_name } if default_name == "patching.png"),
        "{:?}",
        request.mode
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
