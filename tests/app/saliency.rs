//! The Saliency view: switching to it computes scores on the worker (the demo's similarity
//! target), clicking a token and one of its next tokens picks the target of a causal LM, the
//! method table lists every method with their rank correlations, Cancel stops the work, and the
//! settings survive a session.

use super::*;
use attnviz::app::DialogPurpose;
use attnviz::app::saliency::api::{Aggregate, Baseline, Method, Occlude};
use attnviz::app::saliency::{SaliencyExport, SaliencySettings};
use attnviz::grad::{TargetKind, TokenRef};

/// Saliency settings where every field differs from the default.
pub(super) fn changed_settings() -> SaliencySettings {
    SaliencySettings {
        method: Method::Occlusion,
        kind: Some(TargetKind::Contrast),
        position: Some(1),
        token: Some(TokenRef::Id(5)),
        foil: Some(TokenRef::Text("Ġshe".to_owned())),
        text_b: "another text".to_owned(),
        steps: 64,
        baseline: Baseline::Mask,
        occlude: Some(Occlude::Remove),
        aggregate: Aggregate::Word,
        top_k: 5,
        compare: true,
        generate: 3,
        compare_unablated: true,
    }
}

/// Steps until the Saliency view's attribution for the current settings has arrived.
fn wait_attribution(
    harness: &mut Harness<'_, AttnApp>,
) -> Arc<attnviz::app::saliency::api::Attribution> {
    step_until(harness, "the saliency scores", |h| {
        h.state().shown_attribution().is_some()
    });
    // Not `run`: the view may still be computing other methods, with a spinner.
    harness.run_steps(3);
    harness.state().shown_attribution().unwrap()
}

/// Steps until the run of the current settings is on screen (the Saliency view's spinner keeps
/// the UI repainting, so `wait_ready` cannot wait for it to settle).
fn wait_run(harness: &mut Harness<'_, AttnApp>) -> Arc<attnviz::pipeline::Run> {
    step_until(harness, "the run", |h| {
        let app = h.state();
        let wanted = app.state.job_key().unwrap();
        app.current.as_ref().is_some_and(|(k, _)| *k == wanted) && !app.busy()
    });
    harness.run_steps(2);
    harness.state().shown_run().cloned().unwrap()
}

#[test]
fn the_saliency_view_scores_the_demo_text_against_text_b() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        ..AppState::default()
    });
    wait_ready(&mut harness);
    harness.get_by_label("Saliency").click();
    harness.step();
    assert_eq!(harness.state().state.view, ViewKind::Saliency);
    let attr = wait_attribution(&mut harness);
    // The demo's target is the similarity with text B; one gradient-norm score per token.
    assert_eq!(attr.target.kind, TargetKind::Similarity);
    assert_eq!(attr.method, Method::Gradient);
    assert_eq!(attr.scores.len(), 6);
    assert!(attr.scores.iter().all(|s| s.is_finite() && *s >= 0.0));
    assert!(attr.scores.iter().any(|s| *s > 0.0), "{:?}", attr.scores);
    // The text is shown as coloured chips, and text B is editable.
    assert!(harness.query_by_label("saliency 1: cat").is_some());
    assert!(harness.query_by_label("Text B").is_some());
    assert!(
        harness
            .query_by_label_contains("gradient: cosine similarity with text B = ")
            .is_some()
    );

    // Another text B is another target: it is computed again, with another value.
    let before = attr.target.value;
    harness.state_mut().state.saliency.text_b = "a dog ran".to_owned();
    let attr = wait_attribution(&mut harness);
    assert_eq!(attr.target.text_b.as_deref(), Some("a dog ran"));
    assert_ne!(attr.target.value, before);

    // Another method is another request; going back is served from the cache at once.
    harness.state_mut().state.saliency.method = Method::InputXGradient;
    let ixg = wait_attribution(&mut harness);
    assert_eq!(ixg.method, Method::InputXGradient);
    harness.state_mut().state.saliency.method = Method::Gradient;
    harness.step();
    let again = harness.state().shown_attribution().expect("cached");
    assert_eq!(again.method, Method::Gradient);
}

#[test]
fn clicking_a_token_and_a_next_token_picks_the_target() {
    let mut harness = app_harness(AppState {
        model_dir: Some(fixture_dir("gpt2")),
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Saliency,
        ..AppState::default()
    });
    let run = wait_run(&mut harness);
    assert!(run.tokens.len() >= 3);
    // The default target: the most likely token after the last position.
    let attr = wait_attribution(&mut harness);
    assert_eq!(attr.target.kind, TargetKind::Logprob);
    assert_eq!(attr.target.position, Some(run.tokens.len() - 1));

    // Click token 1: its next-token candidates are listed with their probabilities.
    harness.get_by_label_contains("saliency 1: ").click();
    harness.step();
    assert_eq!(harness.state().state.saliency.position, Some(1));
    // The list can be replaced while the click's new run arrives: wait until it is there after
    // the layout settled, with nothing stepped between the check and the click.
    for _ in 0..100 {
        step_until(&mut harness, "the next-token candidates", |h| {
            h.query_all_by_label_contains("explain ").count() >= 2
        });
        harness.run_steps(2);
        if harness.query_all_by_label_contains("explain ").count() >= 2 {
            break;
        }
    }
    // Pick the second most likely token as the target.
    let second = harness
        .query_all_by_label_contains("explain ")
        .nth(1)
        .unwrap();
    second.click();
    harness.step();
    let Some(TokenRef::Id(picked)) = harness.state().state.saliency.token.clone() else {
        panic!("clicking a candidate picks it by id");
    };
    let attr = wait_attribution(&mut harness);
    assert_eq!(attr.target.position, Some(1));
    assert_eq!(attr.target.token, Some(picked));
    assert!(attr.target.value < 0.0, "a log-probability");

    // Contrast: the first candidate rather than the picked one.
    harness.state_mut().state.saliency.kind = Some(TargetKind::Contrast);
    harness.run_steps(3);
    harness
        .query_all_by_label_contains("rather than ")
        .next()
        .unwrap()
        .click();
    harness.step();
    let attr = wait_attribution(&mut harness);
    assert_eq!(attr.target.kind, TargetKind::Contrast);
    assert_eq!(attr.target.token, Some(picked));
    assert!(attr.target.foil.is_some_and(|f| f != picked));
}

#[test]
fn the_method_table_lists_every_method_with_rank_correlations() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Saliency,
        ..AppState::default()
    });
    wait_run(&mut harness);
    wait_attribution(&mut harness);
    harness.get_by_label("Compare all methods").click();
    harness.step();
    assert!(harness.state().state.saliency.compare);
    step_until(&mut harness, "every method", |h| {
        h.query_by_label("computing…").is_none() && h.query_all_by_label("…").count() == 0
    });
    harness.run_steps(3);
    for &m in Method::ALL {
        // In the table header and the correlation matrix (twice there).
        assert!(
            harness.query_all_by_label(&m.to_string()).count() >= 2
                || harness.query_all_by_label(&format!("[{m}]")).count() == 1,
            "{m} is missing"
        );
    }
    assert!(
        harness
            .query_by_label("Spearman rank correlation between methods")
            .is_some()
    );
    // Every method correlates perfectly with itself.
    assert!(harness.query_all_by_label("1.00").count() >= Method::ALL.len());
    // A row per token: token 5 of 6 is "mat".
    assert!(harness.query_by_label("5 \"mat\"").is_some());
}

#[test]
fn scores_with_and_without_the_ablations_side_by_side() {
    // GPT-2's next-token log-probability (the demo's heads barely move its hidden states).
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Saliency,
        model_dir: Some(fixture_dir("gpt2")),
        ablations: vec![attnviz::engine::Ablation::mean(0, 1)],
        ..AppState::default()
    });
    wait_run(&mut harness);
    wait_attribution(&mut harness);
    harness
        .get_by_label("Compare without the ablations")
        .click();
    harness.step();
    assert!(harness.state().state.saliency.compare_unablated);
    step_until(&mut harness, "the unablated scores", |h| {
        h.query_by_label("computing…").is_none()
            && h.query_by_label_contains("Spearman ρ of the scores")
                .is_some()
    });
    harness.run_steps(3);
    harness.get_by_label("With and without the ablations (0.1:mean)");
    harness.get_by_label("ablated");
    harness.get_by_label("unablated");
    // The column (the chips' difference toggle is the map views').
    harness.get_by_label("difference");
    // A row per token, and the ablation changes the target's value: the two T differ. (The
    // chart labels its bars `bar 5 "…"`.)
    assert!(
        harness
            .query_all_by_label_contains("5 \"")
            .any(|n| n.value().is_some_and(|v| v.starts_with("5 \"")))
    );
    // A label's text is its accessible value.
    let summary = harness
        .get_by_label_contains("Spearman ρ of the scores")
        .value()
        .unwrap_or_default();
    let delta = summary
        .split("ΔT = ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(delta.is_some_and(|d| d != 0.0), "{summary}");
}

#[test]
fn cancel_stops_the_work_and_compute_resumes_it() {
    let words: Vec<&str> = SAMPLE_WORDS.iter().copied().cycle().take(120).collect();
    let mut harness = app_harness(AppState {
        text: words.join(" "),
        view: ViewKind::Saliency,
        saliency: SaliencySettings {
            method: Method::IntegratedGradients,
            steps: 1024,
            ..SaliencySettings::default()
        },
        ..AppState::default()
    });
    wait_run(&mut harness);
    step_until(&mut harness, "the Cancel button", |h| {
        h.query_by_label("Cancel").is_some()
    });
    harness.get_by_label("Cancel").click();
    harness.run_steps(3);
    assert!(harness.query_by_label("stopped").is_some());
    assert!(harness.state().shown_attribution().is_none());
    // Nothing is asked for again by itself.
    std::thread::sleep(Duration::from_millis(100));
    harness.run_steps(3);
    assert!(harness.query_by_label("Cancel").is_none());
    harness.get_by_label("Compute").click();
    harness.step();
    harness.step();
    assert!(harness.query_by_label("stopped").is_none());
}

/// Words for long inputs.
const SAMPLE_WORDS: [&str; 6] = ["the", "cat", "sat", "on", "a", "mat"];

#[test]
fn a_session_without_saliency_settings_loads_their_defaults() {
    let dir = scratch("saliency-old-session");
    let path = dir.join("old.attnviz.json");
    std::fs::write(
        &path,
        r#"{"format": "attnviz.session/v1", "text": "a b c", "view": "Grid"}"#,
    )
    .unwrap();
    let mut app = AttnApp::new(AppState::default(), || {});
    app.open_file(&path);
    assert!(app.error.is_none(), "{:?}", app.error);
    assert_eq!(app.state.text, "a b c");
    assert_eq!(app.state.saliency, SaliencySettings::default());

    // And the saliency settings round-trip through a saved session.
    let state = AppState {
        saliency: changed_settings(),
        view: ViewKind::Saliency,
        ..AppState::default()
    };
    let mut app = AttnApp::new(state.clone(), || {});
    let saved = dir.join("saliency.attnviz.json");
    app.save_session(&saved);
    let mut fresh = AttnApp::new(AppState::default(), || {});
    fresh.open_file(&saved);
    assert!(fresh.error.is_none(), "{:?}", fresh.error);
    assert_eq!(fresh.state.saliency, changed_settings());
    assert_eq!(fresh.state.view, ViewKind::Saliency);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_continuation_matrix_is_drawn_through_the_one_pixel_path_and_exports() {
    let mut harness = app_harness(AppState {
        model_dir: Some(fixture_dir("gpt2")),
        text: "the cat sat".to_owned(),
        view: ViewKind::Saliency,
        saliency: SaliencySettings {
            generate: 3,
            ..SaliencySettings::default()
        },
        ..AppState::default()
    });
    let run = wait_run(&mut harness);
    let n = run.tokens.len();
    step_until(&mut harness, "the continuation", |h| {
        h.state().continuation_on_screen().is_some()
    });
    harness.run_steps(2);
    let app = harness.state();
    let attr = app.shown_continuation().unwrap();
    let g = attr.generated.as_ref().unwrap();
    assert_eq!((g.from, g.scores.len(), attr.tokens.len()), (n, 3, n + 3));
    // The texels on screen are the exported figure (token labels, colorbar), at the largest
    // cell that fits the view.
    let (m, fig) = attnviz::render::saliency::generated_matrix(&attr, "").unwrap();
    let shown = app.continuation_on_screen().unwrap();
    let opts = (1..=attnviz::app::saliency::continuation::MAX_CELL)
        .map(|cell_px| attnviz::render::FigureOptions {
            cell_px,
            ..fig.clone()
        })
        .find(|o| attnviz::render::figure_size(3, n + 3, o) == shown.dimensions())
        .expect("a figure of the shown size");
    // Cells this large draw every label (thinning starts below a label's line height).
    assert!(opts.cell_px >= 16, "cells of {} px", opts.cell_px);
    assert_eq!(
        shown,
        &attnviz::render::heatmap_figure(m.view(), &opts).unwrap()
    );
    let svg = attnviz::render::heatmap_svg(m.view(), &opts).unwrap();
    for label in &attr.labels {
        let text = label
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(svg.contains(&format!(">{text}</text>")), "{label:?}");
    }
    assert!(svg.contains("<linearGradient"), "a colorbar");
    assert!(harness.query_by_label("continuation PNG").is_some());

    // The scores export as the CLI's files.
    let dir = scratch("saliency-export");
    let json = dir.join("s.json");
    let csv = dir.join("s.csv");
    let png = dir.join("s.png");
    let app = harness.state_mut();
    app.complete_dialog(DialogPurpose::ExportSaliency(SaliencyExport::Json), &json);
    app.complete_dialog(DialogPurpose::ExportSaliency(SaliencyExport::Csv), &csv);
    app.complete_dialog(DialogPurpose::ExportSaliency(SaliencyExport::Png), &png);
    app.complete_dialog(
        DialogPurpose::ExportSaliency(SaliencyExport::ContinuationPng),
        &dir.join("c.png"),
    );
    assert!(app.error.is_none(), "{:?}", app.error);
    let shown = app.shown_attribution().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(doc["format"], "attnviz.attribution/v1");
    assert_eq!(doc["method"], "gradient");
    assert_eq!(doc["mask"], "causal");
    assert_eq!(doc["scores"].as_array().unwrap().len(), n);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("index,token,token_id,score"), "{text}");
    assert_eq!(text.lines().count(), n + 1);
    let image = image::open(&png).unwrap().to_rgba8();
    assert!(image.width() > 100 && image.height() > 50);
    let c = image::open(dir.join("c.png")).unwrap().to_rgba8();
    assert!(c.width() > 3 && c.height() > 3);
    assert_eq!(shown.scores.len(), n);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn clicking_a_token_of_a_bert_with_an_mlm_head_masks_it() {
    let mut harness = app_harness(AppState {
        model_dir: Some(fixture_dir("bert_mlm")),
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Saliency,
        saliency: SaliencySettings {
            kind: Some(TargetKind::Mlm),
            ..SaliencySettings::default()
        },
        ..AppState::default()
    });
    let run = wait_run(&mut harness);
    // Until a token is clicked, the view says what to do instead of computing.
    step_until(&mut harness, "the hint", |h| {
        h.query_by_label("click a token to mask it").is_some()
    });
    assert!(harness.state().shown_attribution().is_none());
    // Click the third token (after [CLS]).
    let label = format!(
        "saliency 2: {}",
        harness.state().state.text.split(' ').nth(1).unwrap()
    );
    let chip = harness.query_by_label(&label);
    assert!(chip.is_some(), "{label} among {:?}", run.tokens);
    chip.unwrap().click();
    harness.step();
    assert_eq!(harness.state().state.saliency.position, Some(2));
    let attr = wait_attribution(&mut harness);
    assert_eq!(attr.target.kind, TargetKind::Mlm);
    assert_eq!(attr.target.position, Some(2));
    // The model saw the mask token there; its argmax is the target.
    assert!(attr.tokens[2].is_special, "{:?}", attr.tokens[2]);
    assert!(attr.target.token.is_some());
    assert!(harness.query_by_label_contains("masked token 2").is_some());
}

/// Every text the last frame painted, with its bounding box (shape lists walked into).
fn painted_texts(harness: &Harness<'_, AttnApp>) -> Vec<(String, egui::Rect)> {
    fn walk(shape: &egui::Shape, out: &mut Vec<(String, egui::Rect)>) {
        match shape {
            egui::Shape::Vec(shapes) => shapes.iter().for_each(|s| walk(s, out)),
            egui::Shape::Text(t) => {
                out.push((t.galley.text().to_owned(), shape.visual_bounding_rect()))
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for clipped in &harness.output().shapes {
        walk(&clipped.shape, &mut out);
    }
    out
}

/// 22 words, one demo token each.
const CHART_WORDS: [&str; 22] = [
    "the", "cat", "sat", "on", "the", "mat", "because", "the", "cat", "was", "tired", "and", "the",
    "dog", "was", "not", "there", "at", "all", "today", "at", "noon",
];

#[test]
fn every_bar_of_the_chart_is_labelled_and_the_y_axis_has_ticks() {
    for method in [Method::IntegratedGradients, Method::InputXGradient] {
        let mut harness = app_harness(AppState {
            text: CHART_WORDS.join(" "),
            view: ViewKind::Saliency,
            saliency: SaliencySettings {
                method,
                ..SaliencySettings::default()
            },
            ..AppState::default()
        });
        wait_run(&mut harness);
        let attr = wait_attribution(&mut harness);
        assert_eq!(attr.scores.len(), CHART_WORDS.len());
        assert_eq!(attr.method, method);

        // The y axis: at least three ticks, painted and exposed, whose values rise up the
        // axis, start at or below the smallest score and reach the largest.
        let ticks: Vec<(f64, egui::Rect)> = harness
            .query_all_by_label_contains("y tick ")
            .map(|node| {
                let text = node.value().unwrap_or_default();
                let value = text["y tick ".len()..].parse::<f64>();
                (value.unwrap_or_else(|_| panic!("{text:?}")), node.rect())
            })
            .collect();
        assert!(ticks.len() >= 3, "{method}: y ticks {ticks:?}");
        for pair in ticks.windows(2) {
            let ((a, ra), (b, rb)) = (pair[0], pair[1]);
            assert!(
                a < b && rb.center().y < ra.center().y,
                "{method}: {ticks:?}"
            );
            assert!(
                rb.bottom() <= ra.top(),
                "{method}: y ticks overlap: {ticks:?}"
            );
        }
        let (lo, hi) = attr
            .scores
            .iter()
            .fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert!(
            ticks[0].0 <= f64::from(lo),
            "{method}: {ticks:?} below {lo}"
        );
        assert!(
            ticks[ticks.len() - 1].0 >= f64::from(hi),
            "{method}: {ticks:?} above {hi}"
        );
        let painted = painted_texts(&harness);
        let tick_texts: Vec<String> = harness
            .query_all_by_label_contains("y tick ")
            .map(|n| n.value().unwrap_or_default()["y tick ".len()..].to_owned())
            .collect();
        for t in &tick_texts {
            assert!(
                painted.iter().any(|(p, _)| p == t),
                "{method}: tick {t} is not painted"
            );
        }

        // Every bar has its token under it (the 1280-point window has room for all 22), and
        // no two labels overlap.
        let mut rects = Vec::new();
        for (i, word) in CHART_WORDS.iter().enumerate() {
            let label = format!("bar {i} {word:?}");
            let node = harness.query_by_label(&label);
            assert!(node.is_some(), "{method}: {label} is missing");
            let rect = node.unwrap().rect();
            assert!(
                painted.iter().any(|(p, r)| p == word && r.intersects(rect)),
                "{method}: {word} is not painted under bar {i}"
            );
            rects.push(rect);
        }
        for pair in rects.windows(2) {
            assert!(
                pair[0].right() <= pair[1].left(),
                "{method}: labels overlap: {pair:?}"
            );
        }
    }
}

#[test]
fn the_method_table_exports_as_one_csv() {
    // Integrated gradients with 1024 steps on 120 tokens, first in the table: still computing
    // right after the run arrives.
    let long: Vec<&str> = SAMPLE_WORDS.iter().copied().cycle().take(120).collect();
    let mut harness = app_harness(AppState {
        text: long.join(" "),
        view: ViewKind::Saliency,
        saliency: SaliencySettings {
            method: Method::IntegratedGradients,
            steps: 1024,
            compare: true,
            ..SaliencySettings::default()
        },
        ..AppState::default()
    });
    wait_run(&mut harness);
    let dir = scratch("saliency-table-csv");
    let path = dir.join("table.csv");
    let purpose = DialogPurpose::ExportSaliency(SaliencyExport::TableCsv);
    harness.state_mut().complete_dialog(purpose, &path);
    assert_eq!(
        harness.state().error.as_deref(),
        Some("the method table is still computing")
    );
    assert!(!path.exists());

    // A short text, computed in full: the button is there and the export writes the table.
    harness.state_mut().state.text = "the cat sat on the mat".to_owned();
    harness.state_mut().state.saliency.steps = SaliencySettings::default().steps;
    wait_run(&mut harness);
    step_until(&mut harness, "every method", |h| {
        h.query_by_label("computing…").is_none() && h.query_all_by_label("…").count() == 0
    });
    harness.run_steps(3);
    assert!(harness.query_by_label("Export table CSV").is_some());
    let app = harness.state_mut();
    app.complete_dialog(purpose, &path);
    assert!(app.error.is_none(), "{:?}", app.error);
    let shown = app.shown_attribution().unwrap();
    assert_eq!(shown.method, Method::IntegratedGradients);

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    // index, token, then the table's columns: the chosen method first, then every other.
    assert_eq!(
        header[..3],
        ["index", "token", "integrated-gradients"],
        "{text}"
    );
    let mut methods: Vec<&str> = header[2..].to_vec();
    methods.sort_unstable();
    let mut all: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
    all.sort_unstable();
    assert_eq!(methods, all, "{text}");
    // A row per token, each with a cell per method.
    assert_eq!(lines.len(), 1 + 6, "{text}");
    for (i, (line, word)) in lines[1..]
        .iter()
        .zip(["the", "cat", "sat", "on", "the", "mat"])
        .enumerate()
    {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{line}");
        assert_eq!(cells[..2], [i.to_string().as_str(), word], "{line}");
        // The chosen method's column is the view's scores, exactly.
        assert_eq!(cells[2].parse::<f32>().unwrap(), shown.scores[i], "{line}");
        assert!(
            cells[2..]
                .iter()
                .all(|c| c.is_empty() || c.parse::<f32>().is_ok()),
            "{line}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
