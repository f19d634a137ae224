//! The small things users expect (issue 22): undo and redo of settings edits, the Help window
//! listing every shortcut the key handler reads, recent files and dialog folders that survive
//! a restart, one name per model, and a side panel that leaves room on a small screen.

use super::*;
use attnviz::app::DialogPurpose;

/// A copy of the llama fixture in a folder called `name` (its config names no model).
fn llama_copy(name: &str) -> PathBuf {
    let dir = scratch(name).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture_dir("llama").join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn undo_restores_a_dropped_key_and_a_dims_change_and_redo_reapplies() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    // Two edits: a mask part from the right-click menu's spec, then a dimension subset.
    harness.state_mut().state.mask_text = "drop-keys:2".to_owned();
    harness.run_steps(2);
    harness.state_mut().state.teach.dims = vec!["0.1=0-3".parse().unwrap()];
    harness.run_steps(2);
    wait_ready(&mut harness);
    // Undo from the keyboard: the dims go first, then the dropped key.
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.step();
    assert!(harness.state().state.teach.dims.is_empty());
    assert_eq!(harness.state().state.mask_text, "drop-keys:2");
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.step();
    assert_eq!(harness.state().state.mask_text, "none");
    let plain = wait_ready(&mut harness);
    assert!(plain.mask.is_none());
    // Redo from the Edit menu, then Ctrl+Shift+Z.
    harness.get_by_label("Edit").click();
    harness.run();
    harness.get_by_label("Redo  (Ctrl+Shift+Z)").click();
    harness.step();
    assert_eq!(harness.state().state.mask_text, "drop-keys:2");
    harness.key_press_modifiers(Modifiers::COMMAND | Modifiers::SHIFT, Key::Z);
    harness.step();
    assert_eq!(harness.state().state.teach.dims.len(), 1);
    let redone = wait_ready(&mut harness);
    assert_eq!(redone.mask.to_string(), "drop-keys:2");
    // A slider drag is one edit, not one per frame: drag the layer slider across, undo once.
    let before = harness.state().state.layer_idx;
    let slider = harness.get_by_role_and_label(egui::accesskit::Role::Slider, "layer");
    let rect = slider.rect();
    harness.drag_at(rect.left_center() + egui::vec2(4.0, 0.0));
    for x in [0.3, 0.6, 0.9] {
        harness.hover_at(rect.left_center() + egui::vec2(rect.width() * x, 0.0));
        harness.step();
    }
    harness.drop_at(rect.right_center() - egui::vec2(4.0, 0.0));
    harness.run_steps(2);
    assert_ne!(harness.state().state.layer_idx, before);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.step();
    assert_eq!(harness.state().state.layer_idx, before);
}

#[test]
fn the_help_window_lists_every_shortcut_the_app_handles() {
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    harness.get_by_label("Help").click();
    harness.run();
    harness
        .get_by_label("Keyboard shortcuts and about  (F1)")
        .click();
    harness.run();
    assert!(harness.state().help_open);
    for s in attnviz::app::shortcuts::SHORTCUTS {
        assert!(
            harness.query_by_label(s.text).is_some(),
            "{} is not in the Help window",
            s.text
        );
        assert!(harness.query_by_label(s.what).is_some(), "{}", s.what);
    }
    // Every key the handler reacts to is in that table: each listed key does something, and
    // a key that is not listed (F2) does nothing.
    harness.get_by_label("The README");
    harness.get_by_label("About");
    // F1 closes it again.
    harness.key_press(Key::F1);
    harness.run();
    assert!(!harness.state().help_open);
}

#[test]
fn recent_files_and_dialog_folders_survive_a_restart() {
    let dir = scratch("recent");
    let text = dir.join("one.txt");
    std::fs::write(&text, "the cat sat").unwrap();
    let sub = dir.join("sessions");
    std::fs::create_dir_all(&sub).unwrap();
    let mut app = AttnApp::new(AppState::default(), || {});
    app.open_file(&text);
    assert!(app.error.is_none(), "{:?}", app.error);
    app.complete_dialog(DialogPurpose::SaveSession, &sub.join("s.attnviz.json"));
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state.recent_files, vec![text.clone()]);
    assert_eq!(app.state.dialog_folders.get("session"), Some(&sub));
    // What eframe stores on exit is the state: a new app from it has both.
    let stored = serde_json::to_string(&app.state).unwrap();
    let restored: AppState = serde_json::from_str(&stored).unwrap();
    let mut again = AttnApp::new(restored, || {});
    assert_eq!(again.state.recent_files, vec![text.clone()]);
    assert_eq!(again.state.dialog_folders.get("session"), Some(&sub));
    // Opening the saved session keeps the app's own recent files and adds the session.
    again.open_file(&sub.join("s.attnviz.json"));
    assert!(again.error.is_none(), "{:?}", again.error);
    assert_eq!(
        again.state.recent_files,
        vec![sub.join("s.attnviz.json"), text.clone()]
    );
    // The File menu lists them; a click opens one.
    let mut harness = app_harness(again.state.clone());
    wait_ready(&mut harness);
    harness.get_by_label("File").click();
    harness.run();
    harness.get_by_label("Recent files").hover();
    harness.run();
    harness.get_by_label("one.txt").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.text, "the cat sat");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_name_everywhere_and_a_side_panel_that_shrinks_on_a_small_screen() {
    let dir = llama_copy("a-fine-tuned-llama-with-a-rather-long-folder-name-v2");
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1024.0, 700.0))
        .build_eframe(|cc| {
            let ctx = cc.egui_ctx.clone();
            AttnApp::new(
                AppState {
                    text: "the cat sat on the mat".to_owned(),
                    model_dir: Some(dir.clone()),
                    ..AppState::default()
                },
                move || ctx.request_repaint(),
            )
        });
    wait_ready(&mut harness);
    let name = "a-fine-tuned-llama-with-a-rather-long-folder-name-v2";
    assert_eq!(harness.state().shown_run().unwrap().model.name, name);
    // The status bar says the same name as the figure titles.
    harness.get_by_label(&format!("{name} (llama)"));
    // Drag the side panel's edge to the left: it shrinks to about 260 px (the long name is cut,
    // the rows wrap), leaving the central view at least 730 px.
    let central_left = harness.get_by_label("Heatmap").rect().left();
    let edge = egui::pos2(central_left - 9.0, 400.0);
    harness.drag_at(edge);
    for x in [300.0, 200.0, 100.0] {
        harness.hover_at(egui::pos2(x, 400.0));
        harness.step();
    }
    harness.drop_at(egui::pos2(100.0, 400.0));
    harness.run_steps(3);
    let narrow = harness.get_by_label("Heatmap").rect().left();
    assert!(
        narrow <= 290.0,
        "the side panel does not shrink: the central view starts at {narrow} (was {central_left})"
    );
    assert!(1024.0 - narrow >= 730.0);
    // The heatmap (labels, cells and colour bar) is now bound by the window's height, not by
    // the panel: its cells are over 400 px (270 before), the figure over 500 px wide.
    let cells = harness.get_by_label("heatmap cells").rect();
    assert!(cells.width() >= 400.0, "the heatmap cells are {cells:?}");
    assert!(
        1024.0 - cells.left() >= cells.width() + 100.0,
        "the heatmap is bound by the width: {cells:?}"
    );
    std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
}
