//! Lessons that keep their promises: every claim a bundled lesson's step makes about its numbers
//! holds on the lesson's own run, and a lesson gives the user's own text and model back.

use super::*;
use attnviz::analysis::claims::ClaimCx;
use attnviz::app::teach::lessons::go_to;

/// Every bundled lesson, sorted.
fn bundled() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_inputs/lessons");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_claim_of_every_bundled_lesson_holds_on_its_own_run() {
    let lessons = bundled();
    assert!(lessons.len() >= 5);
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in &lessons {
        let lesson = attnviz::render::teach::lesson::load_lesson(path).unwrap();
        let mut app = AttnApp::new(AppState::default(), || {});
        app.open_lesson(path);
        assert!(app.error.is_none(), "{:?}", app.error);
        for (i, step) in lesson.steps.iter().enumerate() {
            go_to(&mut app.state, i);
            assert!(
                app.wait_for_run(RUN_TIMEOUT),
                "{} step {i}: {:?}",
                path.display(),
                app.error
            );
            let run = app.shown_run().unwrap().clone();
            let state = &app.state;
            let cx = ClaimCx {
                maps: &run.maps,
                tokens: &run.tokens,
                trace: run.trace.as_ref(),
                fully_masked_queries: &run.fully_masked_queries,
                layer: state.layer_idx,
                head: state.head_idx,
                query: state.selected_queries.first().copied().unwrap_or(0),
            };
            for claim in &step.claims {
                checked += 1;
                if let Err(why) = claim.check(&cx) {
                    failures.push(format!(
                        "{} step {} ({:?}): {claim:?}: {why}",
                        path.file_name().unwrap().to_string_lossy(),
                        i + 1,
                        step.title
                    ));
                }
            }
        }
        // Every lesson states something checkable.
        assert!(
            lesson.steps.iter().any(|s| !s.claims.is_empty()),
            "{} makes no checkable claim",
            path.display()
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 15, "only {checked} claims checked");
}

#[test]
fn the_scaling_step_of_lesson_one_is_not_saturated_and_says_which_head_is_extreme() {
    let path = bundled().into_iter().next().unwrap();
    let lesson = attnviz::render::teach::lesson::load_lesson(&path).unwrap();
    let scale = lesson
        .steps
        .iter()
        .find(|s| s.step == Some(attnviz::analysis::explain::WalkStep::Scale))
        .unwrap();
    assert!(
        scale
            .claims
            .contains(&attnviz::analysis::claims::Claim::NotSaturated),
        "{scale:?}"
    );
    let all_text: String = lesson.steps.iter().map(|s| s.text.as_str()).collect();
    assert!(all_text.contains("extreme"), "the lesson says so");
}

/// A copy of the llama fixture under a name of its own.
fn llama_copy(name: &str) -> PathBuf {
    let root = scratch(&format!("lesson-model-{name}"));
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture_dir("llama")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn closing_a_lesson_brings_back_the_users_text_model_and_settings() {
    let model = llama_copy("my-llama");
    let own_text = "my own words about my own model";
    let mut harness = app_harness(AppState {
        text: own_text.to_owned(),
        model_dir: Some(model.clone()),
        mask_text: "window:3".to_owned(),
        view: ViewKind::Grid,
        ..AppState::default()
    });
    wait_ready(&mut harness);
    let lessons = bundled();
    let first = attnviz::render::teach::lesson::load_lesson(&lessons[0]).unwrap();
    harness.get_by_label("Lessons").click();
    harness.run();
    harness.get_by_label(&first.title).click();
    harness.step();
    let run = wait_ready(&mut harness);
    assert_eq!(harness.state().state.text, first.text);
    assert_eq!(harness.state().state.model_dir, None);
    assert_eq!(run.model.name, "demo");
    // What is saved on exit meanwhile is the user's own work, not the lesson's.
    let kept = harness.state().state_to_keep();
    assert_eq!(kept.text, own_text);
    assert_eq!(kept.model_dir.as_deref(), Some(model.as_path()));
    // Close lesson, in the lesson bar: the text, the model, the mask and the view come back.
    harness.get_by_label("Close lesson").click();
    harness.step();
    let run = wait_ready(&mut harness);
    let state = &harness.state().state;
    assert!(state.teach.lesson.is_none());
    assert_eq!(state.text, own_text);
    assert_eq!(state.model_dir.as_deref(), Some(model.as_path()));
    assert_eq!(state.mask_text, "window:3");
    assert_eq!(state.view, ViewKind::Grid);
    assert_eq!(run.model.name, "my-llama");
    std::fs::remove_dir_all(model.parent().unwrap()).unwrap();
}

#[test]
fn a_lesson_that_allows_it_runs_on_the_users_own_model_and_text() {
    let model = llama_copy("own-llama");
    let own_text = "tokens of my own";
    let mut app = AttnApp::new(
        AppState {
            text: own_text.to_owned(),
            model_dir: Some(model.clone()),
            ..AppState::default()
        },
        || {},
    );
    assert!(app.wait_for_run(RUN_TIMEOUT), "{:?}", app.error);
    let lessons = bundled();
    let any: Vec<&PathBuf> = lessons
        .iter()
        .filter(|p| {
            attnviz::render::teach::lesson::load_lesson(p)
                .unwrap()
                .settings
                .any_input
        })
        .collect();
    assert!(!any.is_empty(), "at least one lesson runs on any input");
    // A lesson built on the demo's crafted heads refuses, with a reason.
    let crafted = lessons
        .iter()
        .find(|p| !any.contains(p))
        .expect("a lesson on crafted heads");
    app.open_lesson(crafted);
    app.run_lesson_on_own_input();
    assert!(app.error.as_deref().unwrap_or("").contains("crafted"));
    assert_ne!(app.state.text, own_text);
    app.close_lesson();
    app.error = None;
    // One that allows it: the script keeps going on the user's text and model.
    app.open_lesson(any[0]);
    go_to(&mut app.state, 1);
    let step_view = app.state.view;
    app.run_lesson_on_own_input();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state.text, own_text);
    assert_eq!(app.state.model_dir.as_deref(), Some(model.as_path()));
    assert_eq!(app.state.teach.lesson_step, 1);
    assert_eq!(app.state.view, step_view);
    assert!(app.wait_for_run(RUN_TIMEOUT), "{:?}", app.error);
    assert_eq!(app.shown_run().unwrap().model.name, "own-llama");
    std::fs::remove_dir_all(model.parent().unwrap()).unwrap();
}

#[test]
fn the_values_column_shows_each_value_times_its_weight() {
    // Query 1 under a causal mask: keys 2.. get weight 0, so their weighted values are 0 while
    // the values themselves are not.
    let mut state = AppState {
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Teach,
        mask_text: "causal".to_owned(),
        layer_idx: 1,
        head_idx: 5,
        selected_queries: vec![1],
        ..AppState::default()
    };
    state.teach.tab = TeachTab::Walkthrough;
    state.teach.step = 6;
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    harness.run_steps(3);
    assert!(harness.query_by_label("weight × v_j").is_some());
    let zeros = "[0, 0, 0, 0, 0, 0, … (32 numbers)]";
    let n = run.tokens.len();
    assert_eq!(
        harness.query_all_by_label(zeros).count(),
        n - 2,
        "every masked key's weighted value is 0"
    );
}

/// The WCAG contrast ratio of two colours.
fn contrast(a: egui::Color32, b: egui::Color32) -> f32 {
    let lum = |c: egui::Color32| {
        let lin = |v: u8| {
            let v = f32::from(v) / 255.0;
            if v <= 0.03928 {
                v / 12.92
            } else {
                ((v + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c.r()) + 0.7152 * lin(c.g()) + 0.0722 * lin(c.b())
    };
    let (x, y) = (lum(a), lum(b));
    (x.max(y) + 0.05) / (x.min(y) + 0.05)
}

#[test]
fn presenter_mode_fills_the_width_with_large_figure_text_and_steps_on_every_press() {
    let lesson_path = bundled().into_iter().next().unwrap();
    let lesson = attnviz::render::teach::lesson::load_lesson(&lesson_path).unwrap();
    let mut harness = Harness::builder()
        .with_size(egui::vec2(1600.0, 1000.0))
        .build_eframe(|cc| {
            let ctx = cc.egui_ctx.clone();
            AttnApp::new(AppState::default(), move || ctx.request_repaint())
        });
    wait_ready(&mut harness);
    harness.state_mut().open_lesson(&lesson_path);
    // Step 4 of lesson 1, the scaling step, first in normal mode.
    go_to(&mut harness.state_mut().state, 3);
    let run = wait_ready(&mut harness);
    harness.run_steps(3);
    let title = lesson.steps[3].step.unwrap().title();
    let label = format!("walkthrough figure: {title}");
    let normal = harness.get_by_label(&label).rect();
    harness.key_press(Key::F5);
    harness.run_steps(4);
    assert!(harness.state().state.teach.presenter);
    let presenting = harness.get_by_label(&label).rect();
    assert!(
        presenting.width() >= 1500.0 && presenting.width() > normal.width(),
        "presenter {presenting:?}, normal {normal:?}"
    );
    // The figure's smallest text (11 px in the 1× figure) is at least 18 px on screen.
    let state = &harness.state().state;
    let e = attnviz::analysis::explain::Explanation::from_trace(
        run.trace.as_ref().unwrap(),
        state.head_idx,
        state.selected_queries[0],
    )
    .unwrap();
    let labels: Vec<String> = run.tokens.iter().map(|t| t.text.clone()).collect();
    let one_x = attnviz::render::teach::step_figure(
        &e,
        lesson.steps[3].step.unwrap(),
        &labels,
        &attnviz::render::teach::TeachStyle::default(),
    )
    .unwrap();
    let text_px = 11.0 * presenting.width() / one_x.width() as f32;
    assert!(text_px >= 18.0, "figure text {text_px} px");
    // Body text has a contrast of at least 7:1 on the panel.
    let visuals = harness.ctx.global_style().visuals.clone();
    let ratio = contrast(visuals.text_color(), visuals.panel_fill);
    assert!(ratio >= 7.0, "contrast {ratio}");
    // Three spaces in one frame (under a second) are three steps.
    let before = harness.state().state.teach.lesson_step;
    for _ in 0..3 {
        harness.key_press(Key::Space);
    }
    harness.step();
    assert_eq!(harness.state().state.teach.lesson_step, before + 3);
}
