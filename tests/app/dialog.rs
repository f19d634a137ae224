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
    harness.get_by_label("Open model folder…").click();
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
