//! The app's state tells the truth: errors stay until dismissed or fixed, a too-long input
//! says so where the map would be (with a one-click truncate), a stale mask error goes, the
//! run time describes the run on screen, "hide special tokens" reaches the head view, a long
//! text does not push the controls away, and the model picker shows a name, not a path.

use super::*;
use egui_kittest::kittest::NodeT;

/// Steps the harness (sleeping a little between steps) for about `ms` milliseconds.
fn run_for(harness: &mut Harness<'_, AttnApp>, ms: u64) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(ms) {
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_bad_file_error_outlives_the_next_runs_until_another_file_opens() {
    let dir = scratch("sticky-error");
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"text": "never closed"#).unwrap();
    // `attnviz bad.json`: the file is opened before the first run has arrived.
    let mut harness = app_harness(AppState::default());
    harness.state_mut().open_file(&bad);
    step_until(&mut harness, "the first run", |h| {
        h.state().shown_run().is_some() && !h.state().busy()
    });
    run_for(&mut harness, 300);
    let error = harness
        .state()
        .error
        .clone()
        .expect("the error is still shown");
    assert!(error.contains("bad.json"), "{error}");
    assert!(harness.query_by_label_contains("bad.json").is_some());

    // Another run (a new text) does not clear it either: the file is still bad.
    retype(&mut harness, "Text", "one two three");
    step_until(&mut harness, "the new run", |h| {
        h.state().shown_run().is_some_and(|r| r.tokens.len() == 3) && !h.state().busy()
    });
    assert!(
        harness.state().error.is_some(),
        "a run cleared the file error"
    );

    // Opening another file is what changes the cause.
    let good = dir.join("good.txt");
    std::fs::write(&good, "alpha beta").unwrap();
    harness.state_mut().open_file(&good);
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 2);
    assert!(harness.state().error.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_too_long_input_shows_its_error_in_place_of_the_map_and_truncates_in_one_click() {
    // The BERT fixture takes at most 64 positions; 100 words are more than that (its small
    // vocabulary splits them into 128 word pieces, plus [CLS] and [SEP]).
    let words: Vec<String> = (0..100).map(|i| format!("w{}", i % 7)).collect();
    let state = AppState {
        model_dir: Some(fixture_dir("bert")),
        text: words.join(" "),
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    step_until(&mut harness, "the length error", |h| {
        h.state()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exceed the model's limit of 64"))
    });
    run_for(&mut harness, 300);
    assert!(!harness.state().busy(), "nothing is running any more");
    // The central area says why instead of spinning, and the Model section claims no load.
    let shown = harness.query_all_by_label_contains("exceed the model's limit of 64");
    assert!(
        shown.count() >= 2,
        "the message is in the status bar and where the map would be"
    );
    assert!(harness.query_by_label("loading the model…").is_none());

    harness.get_by_label("Truncate to the limit").click();
    // The error stays until the truncated run has arrived.
    step_until(&mut harness, "the truncated run", |h| {
        h.state().shown_run().is_some() && !h.state().busy()
    });
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 64, "cut at the limit");
    assert!(harness.state().state.truncate);
    assert!(harness.state().error.is_none());
    assert!(harness.query_by_label("Truncate to the limit").is_none());
}

#[test]
fn a_half_typed_mask_error_goes_when_the_spec_is_valid_again() {
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    retype(&mut harness, "Mask", "window:");
    harness.run();
    let error = harness
        .state()
        .error
        .clone()
        .expect("a bad spec is reported");
    assert!(error.contains("window:"), "{error}");
    // Back to the spec already applied: nothing new runs, but the error must go.
    retype(&mut harness, "Mask", "none");
    harness.run();
    assert_eq!(harness.state().state.mask_text, "none");
    assert!(
        harness.state().error.is_none(),
        "{:?}",
        harness.state().error
    );
    assert!(harness.query_by_label_contains("bad mask spec").is_none());
}

#[test]
fn the_run_time_describes_the_run_on_screen() {
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    assert!(
        harness
            .query_by_label_contains("computed in")
            .is_some_and(|n| n.value().unwrap_or_default().ends_with(" ms")
                || n.accesskit_node()
                    .label()
                    .unwrap_or_default()
                    .ends_with(" ms")),
        "a computed run gives its time"
    );
    retype(&mut harness, "Mask", "causal");
    wait_ready(&mut harness);
    // Back to the first settings: the run comes from the cache, and the status bar says so
    // instead of repeating the causal run's time.
    retype(&mut harness, "Mask", "none");
    wait_ready(&mut harness);
    assert!(harness.query_by_label("cached").is_some());
    assert!(harness.query_by_label_contains("computed in").is_none());
}

#[test]
fn hiding_special_tokens_applies_to_the_head_view() {
    let state = AppState {
        model_dir: Some(fixture_dir("bert")),
        text: "the cat sat".to_owned(),
        view: ViewKind::HeadView,
        hide_special: true,
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    let special: Vec<usize> = (0..run.tokens.len())
        .filter(|&i| run.tokens[i].is_special)
        .collect();
    assert!(!special.is_empty(), "BERT adds [CLS] and [SEP]");
    let kept = run.tokens.len() - special.len();
    // One query button per kept token, none for [CLS] or [SEP].
    let queries: Vec<String> = harness
        .query_all_by_label_contains("query ")
        .filter_map(|n| n.accesskit_node().label())
        .filter(|l| l.starts_with("query "))
        .collect();
    assert_eq!(queries.len(), kept, "{queries:?}");
    for q in &queries {
        assert!(!q.contains("[CLS]") && !q.contains("[SEP]"), "{q}");
    }
    // Clicking the first shown query selects that token in the run's own numbering.
    let first_kept = (0..run.tokens.len())
        .find(|i| !run.tokens[*i].is_special)
        .unwrap();
    let first = queries
        .iter()
        .find(|q| q.starts_with("query 0: "))
        .unwrap()
        .clone();
    harness.get_by_label(&first).click();
    harness.run();
    assert_eq!(harness.state().state.selected_queries, [first_kept]);

    // Showing special tokens again brings their buttons back.
    harness.state_mut().state.hide_special = false;
    harness.run();
    let all = harness
        .query_all_by_label_contains("query ")
        .filter(|n| {
            n.accesskit_node()
                .label()
                .is_some_and(|l| l.starts_with("query "))
        })
        .count();
    assert_eq!(all, run.tokens.len());
}

#[test]
fn a_long_text_scrolls_in_its_box_and_leaves_the_controls_on_screen() {
    let words: Vec<&str> = ["lorem", "ipsum", "dolor", "sit", "amet"]
        .into_iter()
        .cycle()
        .take(5000)
        .collect();
    let state = AppState {
        text: words.join(" "),
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    // 5,000 words are more than the demo's 4,096 positions: the run fails, the UI must not.
    run_for(&mut harness, 500);
    // The window is 800 px high: the run options and view settings below the text box must
    // still be inside it.
    for label in ["Mask", "Colormap"] {
        let rect = harness.get_by_label(label).rect();
        assert!(rect.bottom() < 800.0, "{label} is at {rect:?}");
    }
    // The box starts above them: it scrolls rather than being cut or moved below.
    let text_box = harness.get_by_label("Text").rect();
    assert!(text_box.top() < harness.get_by_label("Mask").rect().top());
}

#[test]
fn the_model_picker_shows_a_name_and_keeps_the_path_for_hovering() {
    let dir = fixture_dir("bert");
    let state = AppState {
        model_dir: Some(dir.clone()),
        ..AppState::default()
    };
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    let name = harness.state().model_info.as_ref().unwrap().name.clone();
    let path = dir.display().to_string();
    let picker = harness.get_by_label("model");
    let shown = picker.value().unwrap_or_default();
    assert_eq!(
        shown, name,
        "the picker shows the model's name, not {path:?}"
    );
    assert!(!shown.contains('/'), "{shown:?}");
    // The full path is one hover away.
    picker.hover();
    harness.run();
    assert!(
        harness.query_by_label_contains(&path).is_some(),
        "hovering the picker shows {path:?}"
    );
}

#[test]
fn the_memory_budget_setting_refuses_a_run_that_needs_more() {
    // 300 words on the demo (6 layers × 8 heads): the maps alone are 6·8·300²·4 bytes ≈ 16 MiB,
    // more than a 4 MiB budget; the default budget (GiBs) runs it.
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    let mut harness = app_harness(AppState {
        text: words.join(" "),
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 300);

    retype(&mut harness, "Memory budget", "4MiB");
    step_until(&mut harness, "the budget error", |h| {
        h.state()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("the memory budget is 4 MiB"))
    });
    let error = harness.state().error.clone().unwrap_or_default();
    assert!(error.contains("300 tokens"), "{error}");
    // The app names its own control, never the CLI's flag.
    assert!(error.ends_with("(Memory budget in Run options)"), "{error}");
    assert!(!error.contains("--"), "{error}");

    // A bad size is a settings error naming the field; a large one runs again.
    retype(&mut harness, "Memory budget", "lots");
    step_until(&mut harness, "the size error", |h| {
        h.state()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("memory budget: bad size"))
    });
    retype(&mut harness, "Memory budget", "2GiB");
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 300);
    assert!(harness.state().error.is_none());
}

#[test]
fn a_too_long_input_on_a_newly_opened_model_keeps_that_model() {
    // `attnviz --model bert long.txt`: the demo ran first, then the folder loads fine but the
    // input is longer than its 64 positions. That is no failed load: the BERT folder stays
    // selected and the truncate button is offered (it used to fall back to the demo's map).
    let words: Vec<String> = (0..100).map(|i| format!("w{}", i % 7)).collect();
    let mut harness = app_harness(AppState {
        text: words.join(" "),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    harness.state_mut().open_model_folder(&fixture_dir("bert"));
    step_until(&mut harness, "the length error", |h| {
        h.state()
            .error
            .as_deref()
            .is_some_and(|e| e.contains("exceed the model's limit of 64"))
    });
    run_for(&mut harness, 300);
    assert_eq!(harness.state().state.model_dir, Some(fixture_dir("bert")));
    harness.get_by_label("Truncate to the limit").click();
    step_until(&mut harness, "the truncated BERT run", |h| {
        h.state().shown_run().is_some_and(|r| r.tokens.len() == 64) && !h.state().busy()
    });
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.first().map(|t| t.text.as_str()), Some("[CLS]"));
    assert!(harness.state().error.is_none());
}

/// Three words on a demo of two wide layers (d_model 512): a long input then takes long enough
/// (seconds in a debug build) to be seen computing and to be cancelled.
fn slow_demo_state() -> AppState {
    let mut state = AppState {
        text: "one two three".to_owned(),
        ..AppState::default()
    };
    state.demo.layers = 2;
    state.demo.heads = 2;
    state.demo.d_model = 512;
    state
}

/// While a run is on its way the status bar says "computing … (N tokens)" with the new input's
/// count, never the previous run's count and time; the new count shows once it arrives.
#[test]
fn the_status_bar_says_computing_with_the_new_token_count() {
    let mut harness = app_harness(slow_demo_state());
    wait_ready(&mut harness);
    assert!(harness.query_by_label("3 tokens").is_some());
    // The worker waits after tokenizing, before the first layer, so that "computing" shows
    // however fast the engine is; it is let go once seen.
    harness.state().hold_worker(true);
    let words: Vec<String> = (0..1500).map(|i| format!("w{i}")).collect();
    harness.state_mut().state.text = words.join(" ");
    let mut seen = false;
    let start = std::time::Instant::now();
    while harness.state().busy() || !seen {
        harness.step();
        if harness
            .query_by_label("computing … (1500 tokens)")
            .is_some()
        {
            seen = true;
            assert!(harness.query_by_label("3 tokens").is_none());
            assert!(harness.query_by_label_contains("computed in").is_none());
            harness.state().hold_worker(false);
        }
        assert!(
            start.elapsed() < RUN_TIMEOUT,
            "no run, or never seen computing"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    harness.run();
    assert!(harness.query_by_label("1500 tokens").is_some());
}

/// Position-bound mask parts and the query selection go when the tokens change, with a note;
/// they stay when tokens are only appended at the end.
#[test]
fn new_tokens_clear_position_bound_mask_parts_and_selections() {
    let mut harness = app_harness(AppState {
        text: "a b c d e f g h i j".to_owned(),
        mask_text: "causal+drop-cells:9.8".to_owned(),
        selected_queries: vec![3],
        ..AppState::default()
    });
    wait_ready(&mut harness);
    // Appending keeps them.
    harness.state_mut().state.text = "a b c d e f g h i j k".to_owned();
    wait_ready(&mut harness);
    assert_eq!(harness.state().state.mask_text, "causal+drop-cells:9.8");
    assert_eq!(harness.state().state.selected_queries, [3]);
    // A different text of another length: the cell no longer exists (the run would fail).
    harness.state_mut().state.text = "x y z w".to_owned();
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 4);
    let app = harness.state();
    assert_eq!(app.state.mask_text, "causal");
    assert!(app.state.selected_queries.is_empty());
    let notice = app.notice.clone().unwrap_or_default();
    assert!(notice.contains("drop-cells:9.8"), "{notice}");
    assert_eq!(run.mask.to_string(), "causal");
    // A different text of the same length: the parts go too, though the run would succeed.
    harness.state_mut().state.mask_text = "drop-keys:1".to_owned();
    wait_ready(&mut harness);
    harness.state_mut().state.text = "p q r s".to_owned();
    let run = wait_ready(&mut harness);
    assert_eq!(harness.state().state.mask_text, "none");
    assert!(run.mask.is_none());
}

/// Cancelling a run is not an error: the previous map stays, dimmed and marked stale, and
/// Compute asks for the current settings again.
#[test]
fn cancelling_a_run_keeps_the_previous_map_marked_stale() {
    let mut harness = app_harness(slow_demo_state());
    wait_ready(&mut harness);
    // The worker waits before the run's first layer, so that the run is still going when the
    // Cancel button shows (after 200 ms), however fast the engine is.
    harness.state().hold_worker(true);
    let words: Vec<String> = (0..1500).map(|i| format!("w{i}")).collect();
    harness.state_mut().state.text = words.join(" ");
    step_until(&mut harness, "the Cancel button", |h| {
        h.query_by_label("Cancel").is_some()
    });
    harness.get_by_label("Cancel").click();
    harness.step();
    harness.step();
    harness.state().hold_worker(false);
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(
        app.shown_run().unwrap().tokens.len(),
        3,
        "the old map stays"
    );
    assert!(harness.query_by_label_contains("stale").is_some());
    harness.get_by_label("Compute").click();
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 1500);
    assert!(harness.query_by_label_contains("stale").is_none());
}

/// A Teach dimension mask is shown as a chip on the Heatmap (and every view), and one click
/// clears it; so are a mistake, a temperature and the typed mask.
#[test]
fn settings_that_change_the_numbers_are_chips_that_clear_in_one_click() {
    let mut state = AppState {
        text: "the cat sat on the mat".to_owned(),
        mask_text: "causal".to_owned(),
        scale: ScoreScale::Temperature(2.0),
        ..AppState::default()
    };
    state.teach.dims = vec!["0.0=0-7".parse().unwrap()];
    state.teach.run_mistakes = vec![Mistake::NoScaling];
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    // The demo's heads have 256 / 8 = 32 dimensions.
    for view in [ViewKind::Heatmap, ViewKind::Grid, ViewKind::HeadView] {
        harness.state_mut().state.view = view;
        harness.run();
        assert!(
            harness
                .query_by_label("dims L0·H0: 8 of 32 kept ✕")
                .is_some(),
            "{view:?}"
        );
    }
    harness.state_mut().state.view = ViewKind::Heatmap;
    harness.run();
    for chip in [
        "dims L0·H0: 8 of 32 kept ✕",
        "mistake no-scaling ✕",
        "temperature 2 ✕",
        "mask causal ✕",
    ] {
        harness.get_by_label(chip).click();
        wait_ready(&mut harness);
        assert!(harness.query_by_label(chip).is_none(), "{chip} cleared");
    }
    let app = harness.state();
    assert!(app.state.teach.dims.is_empty());
    assert!(app.state.teach.run_mistakes.is_empty());
    assert_eq!(app.state.scale, ScoreScale::InvSqrtDHead);
    assert_eq!(app.state.mask_text, "none");
}

/// `--screenshot` takes its picture when the first run fails too (it used to wait forever for
/// a map): with a settings error, a mask that names a token the text lacks, and ids beyond the
/// vocabulary, the app is ready once the error is on screen.
#[test]
fn a_failed_first_run_is_ready_for_the_screenshot() {
    let cases = [
        AppState {
            memory_budget: "garbage".to_owned(),
            ..AppState::default()
        },
        AppState {
            text: "a b c".to_owned(),
            mask_text: "drop-keys:99".to_owned(),
            ..AppState::default()
        },
        AppState {
            model_dir: Some(fixture_dir("bert")),
            token_ids: Some(vec![1, 99_999]),
            ..AppState::default()
        },
    ];
    for state in cases {
        let what = format!(
            "{:?}",
            (&state.memory_budget, &state.mask_text, &state.token_ids)
        );
        let mut harness = app_harness(state);
        step_until(&mut harness, "ready for the screenshot", |h| {
            h.state().screenshot_ready()
        });
        let app = harness.state();
        assert!(app.shown_run().is_none(), "{what}");
        assert!(
            app.error.is_some(),
            "{what}: the picture shows why there is no map"
        );
    }
}

/// A session or lesson with a huge field is refused with the field named, and the app keeps its
/// state (it used to abort laying out a 20 MB text); a lesson's huge demo stays under the
/// memory budget instead of being built.
#[test]
fn huge_session_and_lesson_fields_are_refused_by_name() {
    let dir = scratch("huge");
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    let before = harness.state().state.clone();
    let session = dir.join("big.attnviz.json");
    write_session(&session, serde_json::json!({"text": "x".repeat(20 << 20)}));
    harness.state_mut().open_file(&session);
    let error = harness.state().error.clone().unwrap_or_default();
    assert!(error.contains("\"text\" has 20971520 bytes"), "{error}");
    assert!(error.ends_with("big.attnviz.json"), "{error}");
    assert_eq!(harness.state().state, before);
    // A lesson asking for the demo at 24 × 32 × 1024 under a 1 GiB budget: an error, no abort.
    let mut state = AppState {
        memory_budget: "1GiB".to_owned(),
        ..AppState::default()
    };
    state.demo.layers = 24;
    state.demo.heads = 32;
    state.demo.d_model = 1024;
    let mut harness = app_harness(state);
    step_until(&mut harness, "the budget error", |h| {
        h.state().error.is_some()
    });
    let error = harness.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("for its weights; the memory budget is 1 GiB"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reopening a session says so in the status bar (it kept the last export's "wrote …").
#[test]
fn opening_a_session_says_opened() {
    let dir = scratch("opened");
    let path = dir.join("mine.attnviz.json");
    write_session(&path, serde_json::json!({"text": "a b c"}));
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    harness.state_mut().notice = Some("wrote heat_app.png".to_owned());
    harness.state_mut().open_file(&path);
    assert_eq!(
        harness.state().notice.as_deref(),
        Some("opened mine.attnviz.json")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
