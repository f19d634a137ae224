//! The teaching views through the whole app: the dimension mask changes one head's map live
//! (on the demo and on a checkpoint, compared with the engine run with that `DimSubset`), the
//! walkthrough steps, presenter mode and its keys, a mistake toggle, and every lesson.

use super::{app_harness, fixture_dir, wait_ready};
use attnviz::app::teach::TeachTab;
use attnviz::app::{AppState, AttnApp, ViewKind};
use attnviz::engine::{DimSubset, RunOptions};
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::{self, Run, RunInput};
use egui::Key;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use std::sync::Arc;

/// The state of an app showing teaching view `tab` of head `layer`.`head`.
fn teach_state(tab: TeachTab, layer: usize, head: usize) -> AppState {
    let mut state = AppState {
        view: ViewKind::Teach,
        layer_idx: layer,
        head_idx: head,
        ..AppState::default()
    };
    state.teach.tab = tab;
    state
}

/// The engine's run of `state`'s input on `model` with `dims`, through the pipeline.
fn engine_run(model: &LoadedModel, state: &AppState, dims: Vec<DimSubset>) -> Run {
    let opts = RunOptions {
        dims,
        ..RunOptions::default()
    };
    let input = RunInput::new(TokenInput::Text(state.text.clone()));
    pipeline::run(model, &input, &opts, &mut |_| true).expect("the engine runs")
}

/// The largest absolute difference between two heads' maps.
fn max_diff(a: &Run, b: &Run, layer: usize, head: usize) -> f32 {
    let (a, b) = (
        a.maps.head(layer, head).unwrap(),
        b.maps.head(layer, head).unwrap(),
    );
    assert_eq!(a.dim(), b.dim());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Clicks the dimension toggles in `dims` one after another and waits for the new run.
fn click_dims(harness: &mut Harness<'_, AttnApp>, dims: &[usize]) -> Arc<Run> {
    let mut run = None;
    for d in dims {
        harness.get_by_label(&format!("dimension {d}")).click();
        // A click starts a run (with a spinner): step until it arrives rather than wait for a
        // settled UI. The next click waits for it, since the panel's layout may change when the
        // run lands and a click goes where the button was in the last frame.
        run = Some(wait_ready(harness));
    }
    run.unwrap_or_else(|| wait_ready(harness))
}

/// Checks that clicking dimensions off changes exactly that head's map, to the engine's map with
/// that subset, and that "Keep all" brings the original back.
fn dimension_mask_matches_the_engine(mut state: AppState, model: &LoadedModel) {
    let (layer, head) = (state.layer_idx, state.head_idx);
    state.selected_queries = vec![3];
    let mut harness = app_harness(state);
    let before = wait_ready(&mut harness);
    assert!(
        before.trace.as_ref().is_some_and(|t| t.layer_idx == layer),
        "the neuron view runs with the layer's trace"
    );
    let d_head = before.trace.as_ref().unwrap().heads[head].q.ncols();
    let dropped = [0, 2, d_head - 1];
    let after = click_dims(&mut harness, &dropped);
    let kept: Vec<usize> = (0..d_head).filter(|d| !dropped.contains(d)).collect();
    assert_eq!(
        harness.state().state.teach.kept_dims(layer, head),
        Some(kept.as_slice())
    );
    let subset = DimSubset {
        layer_idx: layer,
        head_idx: head,
        dims: kept,
    };
    let reference = engine_run(model, &harness.state().state, vec![subset]);
    let plain = engine_run(model, &harness.state().state, Vec::new());
    let change = max_diff(&after, &plain, layer, head);
    assert!(
        change > 1e-3,
        "dropping 3 dimensions changes the map ({change})"
    );
    assert!(max_diff(&after, &reference, layer, head) < 1e-6);
    // Earlier layers are untouched; the masked head's output feeds later layers.
    for h in 0..after.maps.heads() {
        if h != head {
            assert!(max_diff(&after, &plain, layer, h) < 1e-6, "head {h}");
        }
    }
    // The trace records the q and k that were dotted: dropped dimensions are zero.
    let traced = &after.trace.as_ref().unwrap().heads[head];
    assert!(traced.q.column(2).iter().all(|&v| v == 0.0));
    assert!(traced.k.column(0).iter().all(|&v| v == 0.0));

    harness.get_by_label("Keep all").click();
    harness.step();
    harness.step();
    let restored = wait_ready(&mut harness);
    assert_eq!(harness.state().state.teach.kept_dims(layer, head), None);
    assert!(max_diff(&restored, &plain, layer, head) < 1e-6);
}

#[test]
fn dimension_mask_changes_one_heads_map_live_on_the_demo() {
    let state = teach_state(TeachTab::Neurons, 2, 3);
    let model = LoadedModel::demo(state.demo, state.tokenizer).expect("the demo model builds");
    dimension_mask_matches_the_engine(state, &model);
}

#[test]
fn dimension_mask_changes_one_heads_map_live_on_a_checkpoint() {
    // Llama: RoPE and grouped-query attention (the masked query head shares its K).
    let dir = fixture_dir("llama");
    let mut state = teach_state(TeachTab::Neurons, 1, 1);
    state.model_dir = Some(dir.clone());
    state.text = "the quick brown fox jumps over the lazy dog".to_owned();
    let model = LoadedModel::checkpoint(&dir, Arc::default()).expect("the fixture loads");
    dimension_mask_matches_the_engine(state, &model);
}

#[test]
fn presenter_mode_hides_the_side_panels_and_steps_with_the_keyboard() {
    let mut harness = app_harness(teach_state(TeachTab::Walkthrough, 1, 1));
    wait_ready(&mut harness);
    assert!(harness.query_by_label("Text").is_some(), "side panel shown");
    let colormap = harness.state().state.colormap;
    harness.key_press(Key::F5);
    harness.run();
    assert!(harness.state().state.teach.presenter);
    assert!(
        harness.query_by_label("Text").is_none(),
        "side panel hidden"
    );
    assert_ne!(
        harness.state().state.colormap,
        colormap,
        "high-contrast colormap"
    );
    let body = harness
        .ctx
        .global_style()
        .text_styles
        .get(&egui::TextStyle::Body)
        .unwrap()
        .size;
    assert!(body > 18.0, "large fonts: {body}");
    assert_eq!(harness.state().state.teach.step, 0);
    harness.key_press(Key::Space);
    harness.run();
    harness.key_press(Key::ArrowRight);
    harness.run();
    assert_eq!(harness.state().state.teach.step, 2);
    harness.key_press(Key::ArrowLeft);
    harness.run();
    assert_eq!(harness.state().state.teach.step, 1);
    // The arrows step instead of changing the head.
    assert_eq!(harness.state().state.head_idx, 1);
    harness.key_press(Key::Escape);
    harness.run();
    assert!(!harness.state().state.teach.presenter);
    assert_eq!(
        harness.state().state.colormap,
        colormap,
        "colormap restored"
    );
    assert!(harness.query_by_label("Text").is_some());
    // Out of presenter mode the arrows change the head again.
    harness.key_press(Key::ArrowRight);
    harness.run();
    assert_eq!(harness.state().state.head_idx, 2);
}

#[test]
fn walkthrough_steps_through_every_step_with_the_engines_numbers() {
    let mut state = teach_state(TeachTab::Walkthrough, 1, 2);
    state.mask_text = "causal".to_owned();
    state.selected_queries = vec![4];
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    let trace = run
        .trace
        .as_ref()
        .expect("the walkthrough traces the layer");
    let head = &trace.heads[2];
    let titles = [
        "1. The query q",
        "2. The keys K",
        "3. Dot products q·k",
        "4. × scale",
        "5. The mask",
        "6. Softmax",
        "7. Weights × V",
        "8. The head output",
    ];
    for (i, title) in titles.iter().enumerate() {
        assert_eq!(harness.state().state.teach.step, i);
        assert!(harness.query_by_label(title).is_some(), "step {i}: {title}");
        if i + 1 < titles.len() {
            harness.get_by_label("Next").click();
            harness.run();
        }
    }
    // The last step shows the whole table: the masked keys after query 4 read −∞ and the weight
    // column is the map's row.
    assert!(
        harness.query_all_by_label("−∞").count() >= 7,
        "keys 5..11 are masked"
    );
    let w = head.probs[(4, 1)];
    let shown = attnviz::render::format_significant(f64::from(w));
    assert!(
        harness.query_by_label_contains(&shown).is_some(),
        "weight {shown} of key 1"
    );
    // Back goes back; the Next button stops at the last step.
    harness.get_by_label("Back").click();
    harness.run();
    assert_eq!(harness.state().state.teach.step, 6);
}

#[test]
fn a_mistake_toggle_shows_both_maps_and_the_measured_effect() {
    let mut harness = app_harness(teach_state(TeachTab::Mistakes, 0, 1));
    wait_ready(&mut harness);
    harness.get_by_label("Softmax over the wrong axis").click();
    harness.step();
    let run = wait_ready(&mut harness);
    assert_eq!(
        harness.state().state.teach.mistake,
        Some(attnviz::engine::Mistake::SoftmaxWrongAxis)
    );
    // The run on screen stays correct: rows sum to 1.
    let map = run.maps.head(0, 1).unwrap();
    for row in map.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-4);
    }
    // The measured effect arrives with the run: over the wrong axis every column sums to 1.
    let effect = harness
        .state()
        .mistake_effect()
        .expect("measured with the run");
    let mistaken = effect.mistaken.maps.head(0, 1).unwrap();
    for col in mistaken.columns() {
        assert!((col.sum() - 1.0).abs() < 1e-4, "{}", col.sum());
    }
    harness.run();
    assert!(harness.query_by_label("correct map").is_some());
    assert!(harness.query_by_label("mistaken map").is_some());
    assert!(
        harness
            .query_by_label_contains("the columns sum to 1")
            .is_some()
    );
    assert!(harness.query_by_label("worst |column sum − 1|").is_some());
    // Switching it off again removes the comparison.
    harness.get_by_label("Softmax over the wrong axis").click();
    harness.step();
    wait_ready(&mut harness);
    assert!(harness.query_by_label("mistaken map").is_none());
}

#[test]
fn no_positions_through_the_toggle_only_permutes_the_maps() {
    let mut state = teach_state(TeachTab::Mistakes, 0, 0);
    // One layer: deeper demos amplify f32 rounding through their large crafted logits (the
    // default 6 layers measured 2.3e-4 here; see the report).
    state.demo.layers = 1;
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    harness.get_by_label("No positional encoding").click();
    harness.step();
    wait_ready(&mut harness);
    let effect = harness
        .state()
        .mistake_effect()
        .expect("measured with the run");
    assert_eq!(effect.mistake, attnviz::engine::Mistake::NoPositions);
    let permutation = &effect.figures[0];
    // No causal mask on the demo: shuffled inputs give permuted maps, to rounding.
    assert!(permutation.mistaken < 1e-6, "{}", permutation.mistaken);
    assert!(permutation.correct > 1e-3, "{}", permutation.correct);
    assert!(
        harness
            .query_by_label_contains("only permutes the maps")
            .is_some()
    );
}

/// The bundled lessons, sorted.
fn bundled_lessons() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_inputs/lessons");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Opens `path` as `attnviz LESSON.json` does, then steps through the whole script with the
/// keyboard in presenter mode, checking each step's view and selection against the file.
fn step_through_lesson(path: &std::path::Path) {
    let lesson = attnviz::render::teach::lesson::load_lesson(path).expect("the lesson loads");
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    harness.state_mut().open_file(path);
    let run = wait_ready(&mut harness);
    let app = harness.state();
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state.text, lesson.text, "{}", path.display());
    assert!(app.state.teach.lesson.is_some());
    assert!(run.tokens.len() > 1);
    harness.key_press(Key::F5);
    harness.step();
    assert!(harness.state().state.teach.presenter);
    let (mut view, mut layer, mut head) = (
        lesson.settings.view,
        lesson.settings.layer,
        lesson.settings.head,
    );
    for (i, step) in lesson.steps.iter().enumerate() {
        view = step.view.unwrap_or(view);
        layer = step.layer.unwrap_or(layer);
        head = step.head.unwrap_or(head);
        wait_ready(&mut harness);
        let state = &harness.state().state;
        assert_eq!(state.teach.lesson_step, i, "{}", path.display());
        let (kind, tab) = attnviz::app::teach::lessons::view_of(view);
        assert_eq!(state.view, kind, "{} step {i}", path.display());
        if let Some(tab) = tab {
            assert_eq!(state.teach.tab, tab, "{} step {i}", path.display());
        }
        assert_eq!((state.layer_idx, state.head_idx), (layer, head));
        let bar = format!("· step {} of {}: {}", i + 1, lesson.steps.len(), step.title);
        assert!(
            harness.query_by_label(&bar).is_some(),
            "{} step {i}: the lesson bar shows {:?}",
            path.display(),
            step.title
        );
        harness.key_press(Key::Space);
        harness.step();
    }
    // Space at the last step stays there; ← goes back one.
    assert_eq!(
        harness.state().state.teach.lesson_step,
        lesson.steps.len() - 1
    );
    harness.key_press(Key::ArrowLeft);
    harness.step();
    assert_eq!(
        harness.state().state.teach.lesson_step,
        lesson.steps.len().saturating_sub(2)
    );
}

#[test]
fn every_bundled_lesson_opens_and_steps_in_presenter_mode() {
    let lessons = bundled_lessons();
    assert!(lessons.len() >= 5, "five lessons: {lessons:?}");
    for path in &lessons {
        step_through_lesson(path);
    }
}

#[test]
fn the_lessons_menu_opens_a_lesson() {
    let lessons = bundled_lessons();
    let first = lessons.first().expect("a bundled lesson");
    let lesson = attnviz::render::teach::lesson::load_lesson(first).unwrap();
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    harness.get_by_label("Lessons").click();
    harness.run();
    harness.get_by_label(&lesson.title).click();
    harness.step();
    wait_ready(&mut harness);
    let state = &harness.state().state;
    assert_eq!(state.text, lesson.text);
    assert_eq!(
        state.teach.lesson.as_ref().map(|l| l.path.clone()),
        Some(first.clone())
    );
    harness.get_by_label("Close lesson").click();
    harness.run();
    assert!(harness.state().state.teach.lesson.is_none());
}

#[test]
fn a_bad_lesson_file_is_an_error_naming_it_and_changes_nothing() {
    let dir = super::scratch("bad-lesson");
    let path = dir.join("broken.json");
    std::fs::write(
        &path,
        r#"{"format": "attnviz.lesson/v1", "title": "x", "text": "a b", "steps": []}"#,
    )
    .unwrap();
    let mut app = AttnApp::new(AppState::default(), || {});
    let before = app.state.clone();
    app.open_file(&path);
    let error = app.error.clone().expect("an error");
    assert!(error.ends_with("broken.json"), "{error}");
    assert!(error.contains("no steps"), "{error}");
    assert_eq!(app.state, before);
}

#[test]
fn teaching_figures_export_the_pipelines_numbers_as_png_and_svg() {
    use attnviz::analysis::explain::WalkStep;
    use attnviz::engine::MaskSpec;
    use attnviz::render::teach::{TeachStyle, step_figure};
    let mut state = teach_state(TeachTab::Walkthrough, 1, 2);
    state.mask_text = "causal".to_owned();
    state.selected_queries = vec![4];
    state.teach.step = 4; // "5. The mask"
    let model = LoadedModel::demo(state.demo, state.tokenizer).expect("the demo model builds");
    let mut input = RunInput::new(TokenInput::Text(state.text.clone()));
    input.truncate = false;
    let opts = RunOptions {
        mask: MaskSpec::parse("causal").unwrap(),
        ..RunOptions::default()
    };
    // What `attnviz explain --layer 1 --head 2 --query 4 --mask causal` computes.
    let (run, explanation) =
        pipeline::explain(&model, &input, &opts, 1, 2, 4).expect("the pipeline explains");
    let labels: Vec<String> = run.tokens.iter().map(|t| t.text.clone()).collect();
    let style = TeachStyle {
        colormap: state.colormap,
        pixel_scale: 1,
    };
    let want = step_figure(&explanation, WalkStep::ALL[4], &labels, &style).unwrap();

    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    harness.run();
    let dir = super::scratch("teach-export");
    let png = dir.join("step.png");
    harness
        .state_mut()
        .export_teach_figure(&png)
        .expect("the step exports");
    let got = image::open(&png).unwrap().to_rgba8();
    assert_eq!(got.dimensions(), want.dimensions());
    assert!(
        got.pixels().zip(want.pixels()).all(|(a, b)| a == b),
        "the exported step is the figure of the pipeline's numbers"
    );
    let svg = dir.join("step.svg");
    harness.state_mut().export_teach_figure(&svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") || text.starts_with("<?xml"));
    assert!(text.contains("−∞"), "the mask step names masked keys");

    // The mistake comparison: both maps, wider than tall.
    harness.state_mut().state.teach.tab = TeachTab::Mistakes;
    harness.run();
    harness.get_by_label("Forgotten causal mask").click();
    harness.step();
    wait_ready(&mut harness);
    harness.run();
    let cmp = dir.join("mistake.png");
    harness.state_mut().export_teach_figure(&cmp).unwrap();
    let img = image::open(&cmp).unwrap();
    assert!(
        img.width() > img.height(),
        "{}×{}",
        img.width(),
        img.height()
    );

    // A view without a figure says so and writes nothing.
    harness.state_mut().state.teach.tab = TeachTab::Cost;
    let none = dir.join("none.png");
    let err = harness.state_mut().export_teach_figure(&none).unwrap_err();
    assert!(err.contains("nothing to export"), "{err}");
    assert!(!none.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lesson_on_a_checkpoint_loads_it_and_steps_in_presenter_mode() {
    // A teacher's own lesson on a real checkpoint folder (the Llama fixture: RoPE, grouped
    // queries, a causal mask), named by its absolute path.
    let dir = super::scratch("checkpoint-lesson");
    let fixture = fixture_dir("llama");
    let lesson = serde_json::json!({
        "format": "attnviz.lesson/v1",
        "title": "One head of a real model",
        "text": "the quick brown fox jumps over the lazy dog",
        "settings": {"model": fixture, "view": "walkthrough", "layer": 1, "head": 3, "query": 5},
        "steps": [
            {"title": "The query", "text": "Token 5 asks.", "step": "query"},
            {"title": "Rotated keys", "text": "RoPE turns q and k.", "step": "keys"},
            {"title": "The causal mask", "text": "Later keys are −∞.", "step": "mask"},
            {"title": "Forget it", "text": "The future leaks.", "view": "mistakes", "mistake": "no-causal-mask"},
            {"title": "Every head", "text": "The grid.", "view": "grid", "layer": 0, "head": 0}
        ]
    });
    let path = dir.join("real_model.json");
    std::fs::write(&path, serde_json::to_string_pretty(&lesson).unwrap()).unwrap();
    step_through_lesson(&path);

    // The same lesson leaves the fixture loaded: its four query heads over two KV heads.
    let mut harness = app_harness(AppState::default());
    wait_ready(&mut harness);
    harness.state_mut().open_file(&path);
    let run = wait_ready(&mut harness);
    let app = harness.state();
    assert_eq!(app.state.model_dir.as_deref(), Some(fixture.as_path()));
    let info = app.model_info.as_ref().expect("the checkpoint's info");
    assert_eq!((info.heads, info.kv_heads), (4, 2));
    assert_eq!(run.maps.head(1, 3).unwrap().nrows(), run.tokens.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The mistakes view draws each side with the mask its own run applied: on Mistral the sliding
/// window too (before, the view re-derived the mask from the typed spec and lost the window),
/// and under the forgotten causal mask the mistaken side has none.
#[test]
fn the_mistakes_view_draws_each_sides_applied_mask_with_mistrals_window() {
    let mut state = teach_state(TeachTab::Mistakes, 0, 0);
    state.model_dir = Some(fixture_dir("mistral"));
    // 10 tokens against a window of 6: query 9 cannot see keys 0 to 3.
    state.text = "ab cd ab cd ab cd ab cd ab cd".to_owned();
    state.teach.mistake = Some(attnviz::engine::Mistake::NoCausalMask);
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    let effect = harness
        .state()
        .mistake_effect()
        .expect("measured with the run");
    assert_eq!(effect.correct.mask.to_string(), "causal+window:5");
    assert_eq!(effect.mistaken.mask.to_string(), "window:5");
    let labels: Vec<String> = (0..effect.correct.tokens.len())
        .map(|i| format!("t{i}"))
        .collect();
    let c = attnviz::app::teach::export::comparison(&effect, 0, 0, &labels).unwrap();
    let n = labels.len();
    assert!(n >= 8, "{n} tokens");
    let (correct, mistaken) = (c.correct.masked.unwrap(), c.mistaken.masked.unwrap());
    // (n−1, 0) is in the past but out of the window: masked on both sides.
    assert!(correct[(n - 1, 0)] && mistaken[(n - 1, 0)]);
    // (0, 1) is the future: masked only where the causal mask stayed.
    assert!(correct[(0, 1)] && !mistaken[(0, 1)]);
}
