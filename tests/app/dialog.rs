//! File actions on a desktop without a system file dialog (no xdg-desktop-portal): every action
//! falls back to the in-app dialog, the status bar says so once, and the file gets written or
//! opened. Driven through the keys and buttons a user reaches, with a dialog backend that
//! reports "unavailable" as `rfd` does without a portal.

use super::*;
use attnviz::app::file_dialog::NoSystemDialogs;

/// The whole app with the system dialogs switched off.
fn portal_less_app(state: AppState) -> Harness<'static, AttnApp> {
    let mut harness = app_harness(state);
    harness
        .state_mut()
        .set_dialog_backend(Arc::new(NoSystemDialogs));
    harness
}

/// Steps until the in-app dialog is open, then lets it lay out.
fn wait_for_in_app_dialog(harness: &mut Harness<'_, AttnApp>) {
    step_until(harness, "the in-app file dialog", |h| {
        h.state().in_app_dialog().is_some()
    });
    harness.run_steps(2);
}

#[test]
fn ctrl_e_without_a_portal_exports_through_the_in_app_dialog() {
    let dir = scratch("dialog-export");
    let mut harness = portal_less_app(AppState::default());
    let run = wait_ready(&mut harness);

    harness.key_press_modifiers(Modifiers::COMMAND, Key::E);
    wait_for_in_app_dialog(&mut harness);
    let notice = harness.state().notice.clone().unwrap_or_default();
    assert!(
        notice.contains("system file dialog is unavailable"),
        "the status bar says why: {notice}"
    );
    assert!(
        harness.query_by_label("Export PNG").is_some(),
        "dialog title"
    );

    let out = dir.join("figure.png");
    retype(&mut harness, "Path", &out.display().to_string());
    harness.get_by_label("Save").click();
    harness.run_steps(3);
    assert!(
        harness.state().in_app_dialog().is_none(),
        "the dialog closed"
    );
    assert!(
        harness.state().error.is_none(),
        "{:?}",
        harness.state().error
    );
    let img = image::open(&out).expect("a PNG was written").to_rgba8();
    // A labelled figure of the map: wider than one pixel per token.
    assert!(img.width() > run.tokens.len() as u32 && img.height() > run.tokens.len() as u32);
    let notice = harness.state().notice.clone().unwrap_or_default();
    assert!(notice.contains("figure.png"), "{notice}");
}

#[test]
fn the_fallback_is_announced_once_and_then_used_directly() {
    let dir = scratch("dialog-session");
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);

    // Ctrl+S without a session file asks for a path.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    wait_for_in_app_dialog(&mut harness);
    let session = dir.join("mine.attnviz.json");
    retype(&mut harness, "Path", &session.display().to_string());
    harness.get_by_label("Save").click();
    harness.run_steps(3);
    let text = std::fs::read_to_string(&session).expect("the session was saved");
    assert!(text.contains("attnviz.session/v1"));
    assert_eq!(
        harness.state().notice.as_deref(),
        Some(&*format!("saved {}", session.display()))
    );

    // The next request opens the in-app dialog at once, without a second announcement;
    // Cancel closes it and changes nothing.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    harness.run_steps(2);
    assert!(harness.state().in_app_dialog().is_some());
    assert_eq!(
        harness.state().notice.as_deref(),
        Some(&*format!("saved {}", session.display()))
    );
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert!(harness.state().in_app_dialog().is_none());
    assert!(harness.state().error.is_none());
}

#[test]
fn a_model_folder_opens_through_the_in_app_dialog() {
    let mut harness = portal_less_app(AppState {
        text: "The cat sat on the mat.".to_owned(),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    harness.get_by_label("Open folder…").click();
    wait_for_in_app_dialog(&mut harness);
    // A file is no folder: the dialog stays open with a message.
    retype(
        &mut harness,
        "Path",
        &fixture_dir("gpt2")
            .join("config.json")
            .display()
            .to_string(),
    );
    harness.get_by_label("Choose folder").click();
    harness.run_steps(2);
    assert!(harness.state().in_app_dialog().is_some(), "still open");
    assert!(harness.query_by_label_contains("no such folder").is_some());

    retype(
        &mut harness,
        "Path",
        &fixture_dir("gpt2").display().to_string(),
    );
    harness.get_by_label("Choose folder").click();
    let run = wait_ready(&mut harness);
    assert_eq!(harness.state().state.model_dir, Some(fixture_dir("gpt2")));
    assert_eq!(run.tokens[1].text, "Ġc", "GPT-2's byte-level tokens");
}

#[test]
fn tab_completes_the_typed_path() {
    let dir = scratch("dialog-tab");
    std::fs::write(dir.join("only_input.txt"), "a b c").unwrap();
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    wait_for_in_app_dialog(&mut harness);
    retype(&mut harness, "Path", &format!("{}/only", dir.display()));
    harness.key_press(Key::Tab);
    harness.run_steps(2);
    harness.get_by_label("Open").click();
    let run = wait_ready(&mut harness);
    let texts: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["a", "b", "c"], "the completed file was opened");
}

/// What the dialog's path field holds.
fn path_field(harness: &Harness<'_, impl Sized>) -> String {
    harness
        .get_by_label("Path")
        .value()
        .expect("the path field has a value")
}

#[test]
fn tab_completion_leaves_the_caret_at_the_end() {
    // The example: completing `sess1.attnviz.json` and typing X gave
    // `seXss1.attnviz.json`, the caret left where the typed part ended.
    let dir = scratch("dialog-caret");
    std::fs::write(dir.join("sess1.attnviz.json"), "{}").unwrap();
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    wait_for_in_app_dialog(&mut harness);
    retype(&mut harness, "Path", &format!("{}/se", dir.display()));
    harness.key_press(Key::Tab);
    harness.run_steps(2);
    assert_eq!(
        path_field(&harness),
        format!("{}/sess1.attnviz.json", dir.display())
    );
    harness.get_by_label("Path").type_text("X");
    harness.run_steps(2);
    assert_eq!(
        path_field(&harness),
        format!("{}/sess1.attnviz.jsonX", dir.display())
    );
}

#[test]
fn enter_accepts_from_anywhere_in_the_dialog() {
    let dir = scratch("dialog-enter");
    let file = dir.join("picked.txt");
    std::fs::write(&file, "x y z").unwrap();
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    wait_for_in_app_dialog(&mut harness);
    retype(&mut harness, "Path", &file.display().to_string());
    // A click on the dialog's title takes the focus from the path field.
    harness
        .get_by_label("Open a text, token, attention or session file")
        .click();
    harness.run_steps(2);
    assert!(!harness.get_by_label("Path").is_focused());
    harness.key_press(Key::Enter);
    harness.run_steps(2);
    assert!(
        harness.state().in_app_dialog().is_none(),
        "Enter closed the dialog"
    );
    let run = wait_ready(&mut harness);
    let texts: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["x", "y", "z"], "the typed file was opened");
}

#[test]
fn the_listing_follows_the_typed_folder() {
    let dir = scratch("dialog-follow");
    let inner = dir.join("inner");
    std::fs::create_dir(&inner).unwrap();
    std::fs::write(dir.join("top_file.txt"), "t").unwrap();
    std::fs::write(inner.join("deep_file.txt"), "d e").unwrap();
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::O);
    wait_for_in_app_dialog(&mut harness);
    assert!(harness.query_by_label("top_file.txt").is_none());

    // A typed folder is listed...
    retype(&mut harness, "Path", &format!("{}/", dir.display()));
    harness.run_steps(2);
    assert!(
        harness.query_by_label(&dir.display().to_string()).is_some(),
        "the folder's name above the listing"
    );
    assert!(harness.query_by_label("top_file.txt").is_some());
    assert!(harness.query_by_label("inner/").is_some());

    // ...and so is the folder of a path typed inside one.
    retype(&mut harness, "Path", &format!("{}/de", inner.display()));
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label(&inner.display().to_string())
            .is_some()
    );
    assert!(harness.query_by_label("deep_file.txt").is_some());
    assert!(harness.query_by_label("top_file.txt").is_none());

    // Picked from that listing, Enter opens it.
    harness.get_by_label("deep_file.txt").click();
    harness.run_steps(2);
    assert_eq!(
        path_field(&harness),
        inner.join("deep_file.txt").display().to_string()
    );
    harness.key_press(Key::Enter);
    let run = wait_ready(&mut harness);
    let texts: Vec<&str> = run.tokens.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(texts, ["d", "e"]);
}

#[test]
fn the_dialog_starts_in_its_start_folder_or_else_the_working_folder() {
    use attnviz::app::file_dialog::{DialogMode, DialogRequest, InAppDialog};
    let dir = scratch("dialog-start");
    std::fs::write(dir.join("start_here.txt"), "").unwrap();
    let dialog = |start_dir: Option<PathBuf>| {
        let dialog = InAppDialog::new(DialogRequest {
            title: "Open".to_owned(),
            mode: DialogMode::Open {
                filter_name: "text".to_owned(),
                extensions: vec!["txt".to_owned()],
            },
            start_dir,
        });
        let mut harness = Harness::builder()
            .with_size(egui::vec2(900.0, 600.0))
            .build_ui_state(
                |ui, dialog: &mut InAppDialog| {
                    dialog.ui(&ui.ctx().clone());
                },
                dialog,
            );
        harness.run_steps(3);
        harness
    };

    // The folder the app remembers for this purpose.
    let harness = dialog(Some(dir.clone()));
    assert!(harness.query_by_label("start_here.txt").is_some());
    assert_eq!(path_field(&harness), format!("{}/", dir.display()));

    // A remembered folder that is gone, or none: the working folder, without an error.
    let cwd = std::env::current_dir().unwrap();
    for start in [Some(dir.join("gone")), None] {
        let harness = dialog(start.clone());
        assert!(
            harness.query_by_label(&cwd.display().to_string()).is_some(),
            "{start:?}"
        );
        assert_eq!(path_field(&harness), format!("{}/", cwd.display()));
        assert!(
            harness.query_by_label_contains("cannot list").is_none(),
            "{start:?}"
        );
    }
}

#[test]
fn a_folder_that_is_not_a_model_says_so() {
    let empty = scratch("dialog-not-a-model");
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    harness.get_by_label("Open folder…").click();
    wait_for_in_app_dialog(&mut harness);
    // Opened by a click, the dialog still gives its path field the focus: typing goes there.
    assert!(harness.get_by_label("Path").is_focused());
    harness.key_press_modifiers(Modifiers::COMMAND, Key::A);
    harness
        .get_by_label("Path")
        .type_text(&format!("{}/", empty.display()));
    harness.key_press(Key::Enter);
    step_until(&mut harness, "the model folder's error", |h| {
        h.state().error.is_some()
    });
    assert_eq!(
        harness.state().error.as_deref(),
        Some(&*format!(
            "not a model folder: no config.json in {}",
            empty.display()
        ))
    );
}

#[test]
fn the_dialog_starts_in_the_last_folder_used_for_its_purpose_even_after_a_restart() {
    let dir = scratch("dialog-last-folder");
    let sessions = dir.join("sessions");
    std::fs::create_dir_all(&sessions).unwrap();
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    // Save a session into `sessions` through the in-app dialog (Ctrl+S).
    harness.key_press_modifiers(Modifiers::COMMAND, Key::S);
    wait_for_in_app_dialog(&mut harness);
    retype(
        &mut harness,
        "Path",
        &sessions.join("s1.attnviz.json").display().to_string(),
    );
    harness.get_by_label("Save").click();
    harness.run_steps(3);
    assert!(
        harness.state().error.is_none(),
        "{:?}",
        harness.state().error
    );
    assert!(sessions.join("s1.attnviz.json").is_file());

    // A restart: the next Save session dialog lists `sessions`, where the file now is.
    let stored = serde_json::to_string(&harness.state().state).unwrap();
    let mut again = portal_less_app(serde_json::from_str(&stored).unwrap());
    wait_ready(&mut again);
    again.key_press_modifiers(Modifiers::COMMAND, Key::S);
    wait_for_in_app_dialog(&mut again);
    assert_eq!(
        again.state().in_app_dialog().unwrap().start_dir.as_deref(),
        Some(sessions.as_path())
    );
    assert!(again.query_by_label("s1.attnviz.json").is_some());
    // Export dialogs keep their own folder: none yet, so not `sessions`.
    again.key_press(Key::Escape);
    again.run_steps(2);
    again.key_press_modifiers(Modifiers::COMMAND, Key::E);
    wait_for_in_app_dialog(&mut again);
    assert_ne!(
        again.state().in_app_dialog().unwrap().start_dir.as_deref(),
        Some(sessions.as_path())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_export_refuses_a_file_name_it_does_not_write() {
    let dir = scratch("dialog-ext");
    let mut harness = portal_less_app(AppState::default());
    wait_ready(&mut harness);
    let bmp = dir.join("figure.bmp");
    harness
        .state_mut()
        .complete_dialog(attnviz::app::DialogPurpose::ExportPng, &bmp);
    let error = harness.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("this writes .png or .svg, not .bmp"),
        "{error}"
    );
    assert!(!bmp.exists());
    // A .png is written as before.
    let png = dir.join("figure.png");
    harness
        .state_mut()
        .complete_dialog(attnviz::app::DialogPurpose::ExportPng, &png);
    assert!(png.is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gguf_file_opens_through_open_gguf_and_runs() {
    let gguf = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf/tiny_llama.gguf");
    let mut harness = portal_less_app(AppState {
        text: "the quick brown fox".to_owned(),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    harness.get_by_label("File").click();
    harness.run_steps(2);
    harness.get_by_label("Open GGUF model…").click();
    wait_for_in_app_dialog(&mut harness);
    retype(&mut harness, "Path", &gguf.display().to_string());
    harness.get_by_label("Open").click();
    let run = wait_ready(&mut harness);
    assert_eq!(harness.state().state.model_dir, Some(gguf));
    assert!(harness.state().error.is_none());
    // The ids transformers' GGUF tokenizer gives (tiny_llama.reference.json).
    let ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
    assert_eq!(ids[..3], [119, 260, 335]);
    assert_eq!(run.maps.shape()[..2], [2, 4]);
}
