//! The app and the CLI run every input to the same result: each `sample_inputs/` file and each
//! input kind (text, token strings, token ids, attention file) goes through the app's real entry
//! point (`AttnApp::open_file`, then its worker thread) and through the real `attnviz export`
//! binary, run as a process; tokens, ids and maps must be equal, value for value. Plus one test
//! per difference the two used to have (token files, ids, attention-file ids, the recorded mask,
//! the session's model).

use super::{RUN_TIMEOUT, fixture_dir, scratch};
use attnviz::app::{AppState, AttnApp, DialogPurpose};
use egui_kittest::kittest::Queryable as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run showed: token strings, ids, the maps' shape and every value in
/// (layer, head, query, key) order.
#[derive(Debug, PartialEq)]
struct Seen {
    tokens: Vec<String>,
    ids: Vec<u32>,
    shape: [usize; 4],
    values: Vec<f32>,
}

/// An app on `model_dir` (the demo for `None`), with no window.
fn app_on(model_dir: Option<&Path>) -> AttnApp {
    let state = AppState {
        model_dir: model_dir.map(Path::to_owned),
        ..AppState::default()
    };
    AttnApp::new(state, || {})
}

/// Opens `file` in the app as a user would and waits for what it shows.
fn through_app(model_dir: Option<&Path>, file: &Path) -> Seen {
    let mut app = app_on(model_dir);
    app.open_file(file);
    assert!(
        app.error.is_none(),
        "{:?} for {}",
        app.error,
        file.display()
    );
    assert!(
        app.wait_for_run(RUN_TIMEOUT),
        "no run for {}: {:?}",
        file.display(),
        app.error
    );
    let run = app.shown_run().expect("a run is shown").clone();
    let shape = run.maps.shape();
    let mut values = Vec::new();
    for l in 0..shape[0] {
        for h in 0..shape[1] {
            values.extend(run.maps.head(l, h).expect("head exists").iter().copied());
        }
    }
    Seen {
        tokens: run.tokens.iter().map(|t| t.text.clone()).collect(),
        ids: run.tokens.iter().map(|t| t.id).collect(),
        shape,
        values,
    }
}

/// Runs `attnviz export FILE --model M --out OUT` and reads what it wrote.
fn through_cli(model_dir: Option<&Path>, file: &Path, out: &Path) -> (Seen, serde_json::Value) {
    let model = model_dir.map_or("demo".to_owned(), |d| d.display().to_string());
    let o = Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .arg("export")
        .arg(file)
        .args(["--model", &model, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} on {model}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    (seen_in(&doc), doc)
}

/// Tokens, ids and maps of an attention JSON document.
fn seen_in(doc: &serde_json::Value) -> Seen {
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    };
    let shape: Vec<usize> = doc["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let mut values = Vec::new();
    for layer in doc["attentions"].as_array().unwrap() {
        for head in layer.as_array().unwrap() {
            for row in head.as_array().unwrap() {
                // Written as the shortest text that reads back to the same f32.
                values.extend(
                    row.as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap() as f32),
                );
            }
        }
    }
    Seen {
        tokens: strings(&doc["tokens"]),
        ids: doc["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect(),
        shape: [shape[0], shape[1], shape[2], shape[3]],
        values,
    }
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Every input through both front ends on `model_dir`; returns how many were compared.
fn compare_all(model_dir: Option<&Path>, inputs: &[PathBuf], dir: &Path) -> usize {
    for (i, file) in inputs.iter().enumerate() {
        let out = dir.join(format!("cli-{i}.json"));
        let (cli, _) = through_cli(model_dir, file, &out);
        let app = through_app(model_dir, file);
        assert!(!app.values.is_empty());
        assert_eq!(app.tokens, cli.tokens, "tokens of {}", file.display());
        assert_eq!(app.ids, cli.ids, "ids of {}", file.display());
        assert_eq!(app.shape, cli.shape, "shape of {}", file.display());
        assert!(
            app.values == cli.values,
            "maps of {} differ between the app and the CLI",
            file.display()
        );
    }
    inputs.len()
}

#[test]
fn the_app_and_the_cli_run_every_input_alike_on_the_demo() {
    let dir = scratch("pipeline-demo");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_inputs");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    inputs.sort();
    // The six sample files (five texts and tokens.json).
    assert_eq!(inputs.len(), 6, "{inputs:?}");
    inputs.push(write(
        &dir,
        "ids.json",
        r#"{"token_ids": [5, 17, 5, 99, 17]}"#,
    ));
    inputs.push(write(&dir, "text.json", r#"{"text": "a b a b c"}"#));
    // An attention file, written by the CLI from a token file with [PAD]s.
    let att = dir.join("att.json");
    through_cli(None, &samples.join("tokens.json"), &att);
    inputs.push(att);
    assert_eq!(compare_all(None, &inputs, &dir), 9);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_app_and_the_cli_run_every_input_alike_on_checkpoints() {
    let dir = scratch("pipeline-ckpt");
    let gpt2 = fixture_dir("gpt2");
    let text = write(&dir, "short.txt", "The cat sat on the mat.");
    let ids = write(&dir, "ids.json", r#"{"token_ids": [1, 200, 37, 399, 5]}"#);
    let att = dir.join("gpt2-att.json");
    through_cli(Some(&gpt2), &ids, &att);
    assert_eq!(compare_all(Some(&gpt2), &[text, ids, att], &dir), 3);
    // Token strings on BERT: the golden's WordPiece tokens, each looked up in the vocabulary.
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir("bert").join("golden.json")).unwrap())
            .unwrap();
    let tokens = write(
        &dir,
        "tokens.json",
        &serde_json::json!({ "tokens": golden[0]["tokens"] }).to_string(),
    );
    assert_eq!(compare_all(Some(&fixture_dir("bert")), &[tokens], &dir), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_token_file_is_run_token_by_token() {
    let dir = scratch("pipeline-tokens");
    let file = write(
        &dir,
        "t.json",
        &serde_json::json!({"tokens": ["[CLS]", "play", "##ing", "[PAD]", "[PAD]"]}).to_string(),
    );
    let seen = through_app(None, &file);
    // Joined and re-tokenized, "##ing" would split into "#", "#", "ing".
    assert_eq!(seen.tokens, ["[CLS]", "play", "##ing", "[PAD]", "[PAD]"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_ids_run_in_the_app_on_a_checkpoint() {
    let dir = scratch("pipeline-ids");
    let file = write(&dir, "ids.json", r#"{"token_ids": [3, 250, 7]}"#);
    let seen = through_app(Some(&fixture_dir("gpt2")), &file);
    assert_eq!(seen.ids, [3, 250, 7]);
    // Ids outside the vocabulary (400) are refused with the file named.
    let bad = write(&dir, "bad.json", r#"{"token_ids": [3, 400]}"#);
    let mut app = app_on(Some(&fixture_dir("gpt2")));
    app.open_file(&bad);
    assert!(!app.wait_for_run(RUN_TIMEOUT));
    let err = app.error.clone().unwrap();
    assert!(err.contains("token id 400"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_attention_file_keeps_its_token_ids_in_the_app() {
    let dir = scratch("pipeline-attids");
    let ids = write(&dir, "ids.json", r#"{"token_ids": [11, 22, 33]}"#);
    let att = dir.join("att.json");
    through_cli(Some(&fixture_dir("gpt2")), &ids, &att);
    let seen = through_app(None, &att);
    assert_eq!(seen.ids, [11, 22, 33]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs `file` on `model_dir` in the app and exports the tensors from it; returns the mask the
/// export records.
fn app_export_mask(model_dir: &Path, file: &Path, out: &Path) -> String {
    let mut app = app_on(Some(model_dir));
    app.open_file(file);
    assert!(app.wait_for_run(RUN_TIMEOUT), "{:?}", app.error);
    app.complete_dialog(DialogPurpose::ExportTensors, out);
    assert!(app.error.is_none(), "{:?}", app.error);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    doc["mask"].as_str().unwrap().to_owned()
}

#[test]
fn app_exports_record_the_mask_that_was_applied() {
    let dir = scratch("pipeline-mask");
    let short = write(&dir, "short.json", r#"{"token_ids": [1, 2, 3, 4]}"#);
    let long = write(
        &dir,
        "long.json",
        r#"{"token_ids": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]}"#,
    );
    // GPT-2 is causal by construction, whatever the typed spec says.
    let gpt2 = app_export_mask(&fixture_dir("gpt2"), &short, &dir.join("g.json"));
    assert_eq!(gpt2, "causal");
    // Mistral's sliding_window is 6: past 6 tokens a query sees keys up to 5 back (window:5).
    let mistral = fixture_dir("mistral");
    assert_eq!(
        app_export_mask(&mistral, &short, &dir.join("m1.json")),
        "causal"
    );
    assert_eq!(
        app_export_mask(&mistral, &long, &dir.join("m2.json")),
        "causal+window:5"
    );
    // The CLI records the same.
    let (_, doc) = through_cli(Some(&mistral), &long, &dir.join("m3.json"));
    assert_eq!(doc["mask"], "causal+window:5");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_saved_session_records_the_checkpoint_and_restores_its_tokens() {
    let dir = scratch("pipeline-session");
    let gpt2 = fixture_dir("gpt2");
    let ids = write(&dir, "ids.json", r#"{"token_ids": [9, 8, 7]}"#);
    let mut app = app_on(Some(&gpt2));
    app.open_file(&ids);
    assert!(app.wait_for_run(RUN_TIMEOUT), "{:?}", app.error);
    let session = dir.join("s.attnviz.json");
    app.save_session(&session);
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&session).unwrap()).unwrap();
    assert_eq!(doc["model"], gpt2.display().to_string());
    assert_eq!(doc["model_dir"], gpt2.display().to_string());
    assert_eq!(doc["token_ids"], serde_json::json!([9, 8, 7]));
    // Reopened, the ids run again as they are.
    let seen = through_app(None, &session);
    assert_eq!(seen.ids, [9, 8, 7]);
    // An old session with only "text" still loads, as text.
    let old = write(
        &dir,
        "old.attnviz.json",
        r#"{"format": "attnviz.session/v1", "model": "demo", "text": "x y x"}"#,
    );
    let seen = through_app(None, &old);
    assert_eq!(seen.tokens, ["x", "y", "x"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_attention_file_on_screen_shows_its_model_tokens_and_ids() {
    let dir = scratch("pipeline-panel");
    let ids = write(&dir, "ids.json", r#"{"token_ids": [11, 22, 33]}"#);
    let att = dir.join("att.json");
    through_cli(Some(&fixture_dir("gpt2")), &ids, &att);
    let mut harness = super::app_harness(AppState::default());
    harness.state_mut().open_file(&att);
    harness.run();
    // The file's model, size and recorded mask; not the text box of the demo's input.
    assert!(
        harness
            .query_by_label_contains("model gpt2 (gpt2), 3 tokens, mask causal")
            .is_some()
    );
    assert!(harness.query_by_label("Text").is_none());
    harness.get_by_label("Tokens and ids").click();
    harness.run();
    assert!(harness.query_by_label_contains("id 22").is_some());
    // Going back shows the input again.
    harness.get_by_label("Back to the demo model").click();
    super::wait_ready(&mut harness);
    assert!(harness.state().external.is_none());
    assert!(harness.query_by_label("Text").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_mask_field_shows_the_mask_a_checkpoint_applied() {
    let state = AppState {
        model_dir: Some(fixture_dir("gpt2")),
        text: "ab ab ab".to_owned(),
        ..AppState::default()
    };
    let mut harness = super::app_harness(state);
    super::wait_ready(&mut harness);
    // Typed "none", but GPT-2 is causal by construction.
    assert_eq!(harness.state().state.mask_text, "none");
    let shown = harness.state().shown_run().unwrap().mask.to_string();
    assert_eq!(shown, "causal");
    assert!(harness.query_by_label("applied: causal").is_some());
}

/// Settings saved with another model (a layer, a dimension mask) are clamped when the model
/// loads, and the status bar says what changed; the run is never refused for them nor are they
/// dropped silently.
#[test]
fn settings_from_another_model_are_clamped_and_said() {
    let mut state = AppState {
        model_dir: Some(fixture_dir("gpt2")),
        text: "ab ab ab".to_owned(),
        layer_idx: 5,
        ..AppState::default()
    };
    // GPT-2's fixture: 2 layers × 4 heads of 8 dimensions.
    state.teach.dims = vec!["0.0=0-20".parse().unwrap()];
    let mut harness = super::app_harness(state);
    let run = super::wait_ready(&mut harness);
    let app = harness.state();
    assert_eq!(app.state.layer_idx, 1);
    assert_eq!(app.state.teach.dims[0].dims, (0..8).collect::<Vec<_>>());
    let notice = app.notice.clone().unwrap_or_default();
    assert!(notice.contains("layer 5 → 1"), "{notice}");
    assert!(notice.contains("dimension mask"), "{notice}");
    assert_eq!(run.maps.layers(), 2);
    assert!(harness.query_by_label_contains("dimension mask").is_some());
}

#[test]
fn attention_saved_from_pytorch_opens_in_the_app() {
    // The safetensors and NPZ fixtures of tests/fixtures/imports (transformers' eager GPT-2
    // attentions on "the cat sat on the mat").
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/imports");
    for file in ["gpt2_bf16.safetensors", "gpt2.npz"] {
        let mut harness = super::app_harness(AppState::default());
        harness.state_mut().open_file(&fixtures.join(file));
        harness.run();
        let app = harness.state();
        assert!(app.error.is_none(), "{file}: {:?}", app.error);
        let run = app.shown_run().unwrap();
        assert_eq!(run.tokens.len(), 10, "{file}");
        assert_eq!(run.maps.shape()[..2], [2, 4], "{file}");
        assert!(
            harness
                .query_by_label_contains("10 tokens, mask none")
                .is_some(),
            "{file}"
        );
    }
}

#[test]
fn a_foreign_file_with_nan_opens_with_a_warning_in_the_status_bar() {
    let dir = scratch("pipeline-nan");
    let path = dir.join("nan.npy");
    let bytes = crate::npy_support::npy_f32("(2, 2)", &[f32::NAN, 1.0, 0.25, 0.75]);
    std::fs::write(&path, &bytes).unwrap();
    let mut harness = super::app_harness(AppState::default());
    harness.state_mut().open_file(&path);
    harness.run();
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert!(app.shown_run().unwrap().maps.head(0, 0).unwrap()[[0, 0]].is_nan());
    let notice = app.notice.clone().unwrap_or_default();
    assert!(
        notice.starts_with("warning: layer 0 head 0 row 0 column 0 holds NaN")
            && notice.contains("nan.npy"),
        "{notice}"
    );
    assert!(harness.query_by_label_contains("holds NaN").is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}
