//! The Analyze view and the rollout map (issue 23): the dashboard's metrics, sorting and
//! click-through to a head, the induction probe, the rollout map in the Heatmap view and its
//! export, the attention flow, the value-zeroing map and Cancel of a long value-zeroing run.
//! Every number is checked against the library function the CLI calls.

use super::*;
use attnviz::analysis::flow::{FlowOptions, attention_flow};
use attnviz::analysis::rollout::{HeadFusion, RolloutOptions, rollout};
use attnviz::app::analyze::{AnalyzeSettings, AnalyzeTab, Metric, RolloutSettings, SortKey};
use attnviz::render::{FigureContext, ValueRange, heatmap_image};

/// Analyze settings where every field differs from the default.
pub(super) fn changed_settings() -> AnalyzeSettings {
    AnalyzeSettings {
        tab: AnalyzeTab::ValueZeroing,
        metric: Metric::Induction,
        sort: SortKey::Metric(Metric::Entropy),
        descending: true,
        rollout: RolloutSettings {
            on: true,
            alpha: 0.3,
            fusion: HeadFusion::Max,
            layers: Some((1, 2)),
        },
        flow_normalized: true,
        vz_layer: Some(2),
    }
}

/// The app on `text` (demo model), its first run on screen, switched to the Analyze view.
fn analyze_harness(text: &str) -> (Harness<'static, AttnApp>, Arc<Run>) {
    let mut harness = app_harness(AppState {
        text: text.to_owned(),
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    harness.get_by_label("Analyze").click();
    harness.step();
    assert_eq!(harness.state().state.view, ViewKind::Analyze);
    (harness, run)
}

/// Steps until the dashboard's map is drawn.
fn wait_dashboard(harness: &mut Harness<'_, AttnApp>) {
    step_until(harness, "the head metrics", |h| {
        h.query_by_label("L0·H0 cell").is_some()
    });
    harness.run_steps(2);
}

/// Clicks the table's column header `name` (below the chart legend of the same name).
fn click_header(harness: &mut Harness<'_, AttnApp>, name: &str) {
    let lowest = |h: &Harness<'_, AttnApp>| {
        h.get_all_by_label(name)
            .max_by(|a, b| a.rect().top().total_cmp(&b.rect().top()))
            .unwrap()
            .rect()
    };
    let before = lowest(harness);
    harness
        .get_all_by_label(name)
        .find(|n| n.rect() == before)
        .unwrap()
        .scroll_to_me();
    harness.run_steps(3);
    let after = lowest(harness);
    harness
        .get_all_by_label(name)
        .find(|n| n.rect() == after)
        .unwrap()
        .click();
    harness.run_steps(2);
}

/// Scrolls the widget labelled `label` into view and clicks it.
fn click_scrolled(harness: &mut Harness<'_, AttnApp>, label: &str) {
    harness.get_by_label(label).scroll_to_me();
    harness.run_steps(3);
    harness.get_by_label(label).click();
    harness.run_steps(2);
}

/// The top of the table row button of head (l, h).
fn row_top(harness: &Harness<'_, AttnApp>, l: usize, h: usize) -> f32 {
    harness.get_by_label(&format!("L{l}·H{h}")).rect().top()
}

#[test]
fn the_dashboard_sorts_switches_metrics_and_opens_a_head() {
    let (mut harness, run) = analyze_harness("the cat sat on the mat and the cat ran home");
    wait_dashboard(&mut harness);
    // The sink line counts the heads whose first_token is above one half, as the CLI does.
    let data = attnviz::pipeline::MetricData::of(&run).unwrap();
    let per_head = attnviz::pipeline::head_metrics_of(&run, &data, &mut |_, _| true).unwrap();
    let sinks: Vec<String> = per_head
        .iter()
        .map(|l| attnviz::analysis::metrics::sink_heads(l).to_string())
        .collect();
    assert!(
        harness
            .query_by_label_contains(&format!("per layer: {} —", sinks.join(" ")))
            .is_some(),
        "{sinks:?}"
    );
    // The demo's crafted first-token head is a sink.
    assert!(per_head[0][2].first_token.unwrap() > 0.5);

    // Sorting by `self` (largest first) puts the crafted self head L0·H1 above L0·H0.
    click_header(&mut harness, "self");
    let s = &harness.state().state.analyze;
    assert_eq!(s.sort, SortKey::Metric(Metric::SelfAttention));
    assert!(s.descending);
    assert!(row_top(&harness, 0, 1) < row_top(&harness, 0, 0));
    // Sorting by `prev_token`, then again (smallest first): the crafted previous-token head
    // L0·H0 goes from the top to below the last layer's heads.
    click_header(&mut harness, "prev_token");
    assert!(row_top(&harness, 0, 0) < row_top(&harness, 0, 1));
    click_header(&mut harness, "prev_token");
    assert!(!harness.state().state.analyze.descending);
    assert!(row_top(&harness, 0, 0) > row_top(&harness, 5, 7));

    // The map's metric: picked in the combo box.
    harness.get_by_label("Metric").click();
    harness.run_steps(2);
    let combo = harness.get_by_label("Metric").rect();
    let option = harness
        .get_all_by_label("entropy")
        .min_by(|a, b| {
            let d = |r: egui::Rect| (r.top() - combo.bottom()).abs();
            d(a.rect()).total_cmp(&d(b.rect()))
        })
        .unwrap();
    option.click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.analyze.metric, Metric::Entropy);
    assert!(
        harness
            .query_by_label_contains("mean over queries of −Σ p ln p")
            .is_some()
    );

    // Clicking a cell opens that head in the Heatmap view.
    harness.get_by_label("L3·H5 cell").click();
    harness.run_steps(2);
    let state = &harness.state().state;
    assert_eq!(state.view, ViewKind::Heatmap);
    assert_eq!((state.layer_idx, state.head_idx), (3, 5));
    assert_eq!(state.head_mode, HeadMode::Single);
    // So does a row of the table.
    harness.get_by_label("Analyze").click();
    wait_dashboard(&mut harness);
    click_scrolled(&mut harness, "L2·H6");
    let state = &harness.state().state;
    assert_eq!(state.view, ViewKind::Heatmap);
    assert_eq!((state.layer_idx, state.head_idx), (2, 6));
}

#[test]
fn the_induction_probe_puts_the_demo_induction_head_on_top() {
    let (mut harness, _) = analyze_harness("the cat sat on the mat");
    wait_dashboard(&mut harness);
    harness.get_by_label("Run induction probe").click();
    step_until(&mut harness, "the induction probe", |h| {
        h.query_by_label_contains("induction probe: 50 random tokens twice")
            .is_some()
    });
    harness.run_steps(2);
    click_header(&mut harness, "induction");
    assert_eq!(
        harness.state().state.analyze.sort,
        SortKey::Metric(Metric::Induction)
    );
    // The last layer's head 0 is the demo's crafted induction head: first in the table.
    for (l, h) in [(0, 0), (0, 1), (5, 1), (4, 0)] {
        assert!(
            row_top(&harness, 5, 0) < row_top(&harness, l, h),
            "L{l}·H{h}"
        );
    }
}

#[test]
fn the_rollout_map_replaces_the_head_and_exports_with_its_title() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat because it was tired".to_owned(),
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    let head = harness.state().heatmap_on_screen().unwrap().clone();
    click_scrolled(&mut harness, "rollout");
    step_until(&mut harness, "the rollout map", |h| {
        h.query_by_label("rollout α=0.5 fusion=mean layers 0–5")
            .is_some()
    });
    harness.run_steps(2);
    let app = harness.state();
    assert!(app.state.analyze.rollout.on);
    // The pixels are analysis::rollout's matrix in the view's colours.
    let r = rollout(&run.maps, &RolloutOptions::default())
        .unwrap()
        .mapv(|v| v as f32);
    let want = heatmap_image(
        r.view(),
        app.state.colormap,
        ValueRange::of(r.view()),
        app.state.value_scale,
        1,
    );
    let shown = app.heatmap_on_screen().unwrap();
    assert_eq!(*shown, want);
    assert_ne!(*shown, head);
    // Exported like any map, titled with its settings.
    let ctx = FigureContext::from_run(&run);
    let (matrix, opts) =
        attnviz::app::export::rollout_figure_options(&run, &app.state, &ctx).unwrap();
    assert_eq!(matrix, r);
    assert!(
        opts.title
            .starts_with("rollout α=0.5 fusion=mean layers 0–5 · "),
        "{}",
        opts.title
    );
    let png = attnviz::app::export::current_view_png(&run, &app.state, &ctx).unwrap();
    let plain = attnviz::render::heatmap_figure(matrix.view(), &opts).unwrap();
    assert_eq!(png, plain);
    assert!(attnviz::app::export::default_png_name(&app.state).starts_with("rollout_a0.5_mean"));
}

#[test]
fn the_flow_goes_into_the_selected_query() {
    let (mut harness, run) = analyze_harness("the cat sat on the mat");
    harness.get_by_label("Flow").click();
    step_until(&mut harness, "the flow", |h| {
        h.query_by_label_contains("flow into query 5 (raw)")
            .is_some()
    });
    harness.run_steps(2);
    // The listed top token is attention_flow's largest, formatted as the view formats it.
    let flow = attention_flow(
        &run.maps,
        &FlowOptions {
            rollout: RolloutOptions {
                layers: Some((0, 5)),
                ..RolloutOptions::default()
            },
            query: Some(5),
        },
        &mut |_, _| true,
    )
    .unwrap();
    let (top, value) = flow
        .flow
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .unwrap();
    let line = format!(
        "flow into query 5 (raw): {top} {:?} {}",
        ["the", "cat", "sat", "on", "the", "mat"][top],
        attnviz::render::format_significant(value)
    );
    assert!(harness.query_by_label_contains(&line).is_some(), "{line}");
    harness.get_by_label("÷ sum").click();
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label_contains("flow into query 5 (÷ sum)")
            .is_some()
    );
    // Another query: click its token.
    harness.get_by_label("token 2: sat").click();
    step_until(&mut harness, "the flow into query 2", |h| {
        h.query_by_label_contains("flow into query 2 (÷ sum)")
            .is_some()
    });
}

#[test]
fn the_value_zeroing_map_appears_for_the_product_and_a_layer() {
    let (mut harness, run) = analyze_harness("the cat sat on the mat");
    harness.get_by_label("Value zeroing").click();
    step_until(&mut harness, "the value-zeroing map", |h| {
        h.state().value_zeroing_on_screen().is_some()
    });
    harness.run_steps(2);
    assert!(
        harness
            .query_by_label("value zeroing · product of all layers")
            .is_some()
    );
    let model = attnviz::model::LoadedModel::demo(Default::default(), Default::default()).unwrap();
    let vz = attnviz::pipeline::value_zeroing_of(&model, &run, &mut |_| true).unwrap();
    let product = vz.product.mapv(|v| v as f32);
    let app = harness.state();
    let want = heatmap_image(
        product.view(),
        app.state.colormap,
        ValueRange::of(product.view()),
        app.state.value_scale,
        1,
    );
    assert_eq!(*app.value_zeroing_on_screen().unwrap(), want);
    // Layer 2's own map.
    harness.get_by_label("Value-zeroing map").click();
    harness.run_steps(2);
    harness.get_by_label("layer 2").click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.analyze.vz_layer, Some(2));
    assert!(harness.query_by_label("value zeroing · layer 2").is_some());
    let layer = vz.maps[2].mapv(|v| v as f32);
    let app = harness.state();
    let want = heatmap_image(
        layer.view(),
        app.state.colormap,
        ValueRange::of(layer.view()),
        app.state.value_scale,
        1,
    );
    assert_eq!(*app.value_zeroing_on_screen().unwrap(), want);
}

#[test]
fn cancel_stops_a_long_value_zeroing_run() {
    let text: Vec<String> = (0..320)
        .map(|i| format!("w{}", (i * 31 + 7) % 97))
        .collect();
    let (mut harness, _) = analyze_harness(&text.join(" "));
    harness.get_by_label("Value zeroing").click();
    step_until(&mut harness, "value zeroing to start", |h| {
        h.query_by_label("Cancel").is_some()
    });
    harness.get_by_label("Cancel").click();
    harness.run_steps(3);
    assert!(harness.query_by_label("value zeroing: stopped").is_some());
    // Nothing arrives afterwards, and the worker is free for the next run at once.
    std::thread::sleep(Duration::from_millis(300));
    harness.run_steps(3);
    assert!(harness.state().value_zeroing_on_screen().is_none());
    assert!(harness.query_by_label("value zeroing: stopped").is_some());
    // Compute asks again; a new run (another text) replaces the work.
    harness.get_by_label("Compute").click();
    step_until(&mut harness, "value zeroing to start again", |h| {
        h.query_by_label("Cancel").is_some()
    });
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    assert!(harness.query_by_label("value zeroing: stopped").is_some());
}
