//! The Answer view on the Llama fixture (a tiny causal LM): the lens arrives for the text, a
//! candidate click makes it the target, the contributions follow that target and open a head in
//! the heatmap, the routes' threshold re-cuts the graph without new work, and patching runs on
//! its button, refuses inputs of another length, and stops on Cancel. Clicks and hovers on the
//! figures (`render::answer`'s pixels on screen) land on the cell or edge the figure's geometry
//! puts under the pointer.

use super::*;
use attnviz::analysis::answer::patching::PatchSite;
use attnviz::analysis::answer::routes::{EdgeKind, MIN_THRESHOLD};
use attnviz::app::answer::compute::Item;
use attnviz::app::answer::{AnswerSettings, AnswerTab};
use attnviz::render::FigureContext;
use attnviz::render::answer::{AnswerFigure, AnswerPlot, AnswerStyle, CellId};

fn answer_state(tab: AnswerTab, text: &str) -> AppState {
    AppState {
        text: text.to_owned(),
        model_dir: Some(fixture_dir("llama")),
        view: ViewKind::Answer,
        answer: AnswerSettings {
            tab,
            ..AnswerSettings::default()
        },
        ..AppState::default()
    }
}

/// Steps until the current tab's result has arrived.
fn wait_answer(harness: &mut Harness<'_, AttnApp>) -> Item {
    step_until(harness, "the Answer view's result", |h| {
        h.state().shown_answer().is_some()
    });
    harness.run_steps(3);
    harness.state().shown_answer().unwrap().0
}

#[test]
fn pick_a_target_in_the_lens_then_open_a_contributing_head() {
    let mut harness = app_harness(answer_state(AnswerTab::Lens, "the cat sat on the mat"));
    wait_ready(&mut harness);
    let Item::Lens(Ok(lens)) = wait_answer(&mut harness) else {
        panic!("no lens");
    };
    let layers = lens.cells.len();
    assert_eq!(layers, 3, "x_0, x_1 and x_2 of a 2-layer model");
    // Open the last layer's cell at the last position and click its second candidate.
    let p = *lens.positions.last().unwrap();
    harness.state_mut().state.answer.lens_cell = Some((layers - 1, p));
    harness.run_steps(2);
    let (id, lp) = lens.cells[layers - 1].last().unwrap().top[1];
    let label = format!("{:>7.2}  {}", lp, lens.name(id));
    harness.get_by_label(&label).click();
    harness.run_steps(2);
    assert_eq!(harness.state().state.answer.target.token, Some(id));
    let Item::Lens(Ok(lens)) = wait_answer(&mut harness) else {
        panic!("no lens for the new target");
    };
    assert_eq!(lens.target.token, id);
    // At the output, the picked candidate ranks second.
    assert_eq!(lens.at_target.last().unwrap().target_rank, Some(2));

    harness.get_by_label("Contributions").click();
    harness.run_steps(2);
    let Item::Contributions(Ok(c)) = wait_answer(&mut harness) else {
        panic!("no contributions");
    };
    assert_eq!(
        c.target.token, id,
        "the contributions follow the picked target"
    );
    let sum = c.contributions.sum;
    assert!((sum - c.contributions.metric).abs() <= 1e-4 * c.contributions.metric.abs().max(1.0));
    // Each head's split over the keys adds up to its contribution.
    for (l, row) in c.splits.iter().enumerate() {
        for (h, split) in row.iter().enumerate() {
            let total: f64 = split.iter().sum();
            let want = c.contributions.heads[l][h];
            assert!(
                (total - want).abs() <= 1e-5 * want.abs().max(1.0),
                "{l}.{h}"
            );
        }
    }
    harness.state_mut().state.answer.head = Some((1, 2));
    harness.run_steps(2);
    harness.get_by_label("Open in Heatmap").click();
    harness.run_steps(2);
    let s = &harness.state().state;
    assert_eq!((s.view, s.layer_idx, s.head_idx), (ViewKind::Heatmap, 1, 2));
}

#[test]
fn the_threshold_recuts_the_routes_without_new_work() {
    let mut harness = app_harness(answer_state(AnswerTab::Routes, "the cat sat on the mat"));
    wait_ready(&mut harness);
    let Item::Routes(Ok(graph)) = wait_answer(&mut harness) else {
        panic!("no routes");
    };
    let n = graph.tokens();
    let all = graph.routes(n - 1, MIN_THRESHOLD).unwrap();
    let loose = all.edges.len();
    // Just above the weakest kept edge: that edge (and what hangs below it) goes.
    let cut = all
        .edges
        .iter()
        .map(|e| f64::from(e.importance))
        .fold(f64::INFINITY, f64::min)
        + 1e-6;
    let strict = graph.routes(n - 1, cut).unwrap().edges.len();
    assert!(strict < loose, "{strict} vs {loose}");
    let said = |edges: usize| format!("{edges} edges from the output at position {}", n - 1);
    // The routes' task marks its progress ended just after its result arrives: wait for that,
    // so that the check below sees only work the threshold would start.
    step_until(&mut harness, "the routes task to end", |h| {
        h.state().answer_progress().is_none()
    });
    harness.state_mut().state.answer.threshold = MIN_THRESHOLD;
    harness.run_steps(2);
    assert!(harness.query_by_label_contains(&said(loose)).is_some());
    let edges_drawn = |h: &Harness<'_, AttnApp>| {
        h.state()
            .answer_figure_on_screen()
            .map(|(_, f)| f.geometry.edges.len())
    };
    assert_eq!(edges_drawn(&harness), Some(loose));
    let uploads = harness.state().answer_figure_uploads();
    harness.state_mut().state.answer.threshold = cut;
    harness.run_steps(2);
    assert!(harness.query_by_label_contains(&said(strict)).is_some());
    // The figure is drawn again for the new cut, once.
    assert_eq!(edges_drawn(&harness), Some(strict));
    assert_eq!(harness.state().answer_figure_uploads(), uploads + 1);
    assert!(
        harness.state().answer_progress().is_none(),
        "no new work for a threshold"
    );
}

#[test]
fn patching_runs_on_its_button_refuses_other_lengths_and_cancels() {
    let mut harness = app_harness(answer_state(AnswerTab::Patching, "the cat sat on the mat"));
    wait_ready(&mut harness);
    harness.run_steps(3);
    // Nothing runs until Run patching; the corrupted text starts as a suggestion.
    assert!(harness.state().shown_answer().is_none());
    assert!(harness.state().answer_progress().is_none());
    harness.state_mut().state.answer.text_b = "the dog sat on the mat".to_owned();
    harness.state_mut().state.answer.site = PatchSite::Resid;
    harness.run_steps(2);
    harness.get_by_label("Run patching").click();
    let Item::Patching(result) = wait_answer(&mut harness) else {
        panic!("no patching");
    };
    let n = harness.state().shown_run().unwrap().tokens.len();
    match result {
        Ok(p) => {
            assert_eq!(p.patching.recovery.len(), 2);
            assert_eq!(p.patching.recovery[0].len(), n);
        }
        // The tiny fixture's vocabulary may spell "dog" in another number of tokens.
        Err(e) => assert!(e.contains("equal length"), "{e}"),
    }
    // Another length: one clear message where the map would be.
    harness.state_mut().state.answer.text_b = "the".to_owned();
    harness.run_steps(2);
    harness.get_by_label("Run patching").click();
    let Item::Patching(Err(e)) = wait_answer(&mut harness) else {
        panic!("inputs of different lengths were patched");
    };
    assert!(
        e.contains("equal length") && e.contains(&format!("{n} tokens")),
        "{e}"
    );

    // Held before it starts, the task is stopped by Cancel, has no result and is not asked
    // for again; Run patching asks again.
    harness.state_mut().state.answer.text_b = "the cat sat on the rug".to_owned();
    harness.run_steps(2);
    harness.state().hold_worker(true);
    harness.get_by_label("Run patching").click();
    step_until(&mut harness, "patching to be asked for", |h| {
        h.state().answer_progress().is_some()
    });
    harness.run_steps(2);
    harness.get_by_label("Cancel").click();
    harness.run_steps(2);
    harness.state().hold_worker(false);
    for _ in 0..20 {
        harness.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(harness.state().answer_progress().is_none());
    assert!(
        harness.state().shown_answer().is_none(),
        "a cancelled patching has no result"
    );
    harness.get_by_label("Run patching").click();
    let Item::Patching(_) = wait_answer(&mut harness) else {
        panic!("patching was not asked for again");
    };
}

/// The screen point of `(x, y)` in the figure's scene units: the figure is drawn in `rect`
/// from an image of `pixel_scale` pixels per unit.
fn screen_of(rect: egui::Rect, figure: &AnswerFigure, (x, y): (f32, f32)) -> egui::Pos2 {
    let points_per_unit = rect.width() * figure.pixel_scale as f32 / figure.image.width() as f32;
    rect.min + egui::vec2(x, y) * points_per_unit
}

/// A primary click at `pos`, as a user's: the pointer moves there, presses and releases.
fn click_at(harness: &mut Harness<'_, AttnApp>, pos: egui::Pos2) {
    harness.hover_at(pos);
    harness.run_steps(1);
    harness.drag_at(pos);
    harness.drop_at(pos);
    harness.run_steps(2);
}

/// The current tab's figure on screen: where, and a copy of its pixels and geometry.
fn figure(harness: &Harness<'_, AttnApp>) -> (egui::Rect, AnswerFigure) {
    let (rect, fig) = harness
        .state()
        .answer_figure_on_screen()
        .expect("the tab's figure is on screen");
    (rect, fig.clone())
}

#[test]
fn clicks_on_the_figures_pick_the_cell_or_edge_under_them() {
    let mut harness = app_harness(answer_state(AnswerTab::Lens, "the cat sat on the mat"));
    wait_ready(&mut harness);
    let Item::Lens(Ok(lens)) = wait_answer(&mut harness) else {
        panic!("no lens");
    };
    // The texture shows the export's pixels at the screen's scale (1 in the harness).
    let (rect, fig) = figure(&harness);
    let ctx = FigureContext::from_run(harness.state().shown_run().unwrap());
    let label = |id: u32| attnviz::app::answer::compute::name_in(&lens.names, id);
    let plot = AnswerPlot::Lens {
        target: lens.target,
        positions: &lens.positions,
        cells: &lens.cells,
        at_target: &lens.at_target,
    };
    let style = AnswerStyle {
        ctx: &ctx,
        token_label: &label,
        pixel_scale: 1,
    };
    assert!(
        fig.image == plot.png(&style).unwrap(),
        "the screen shows the export's pixels"
    );
    // Layer 1 at the third position: the cell the geometry puts there, clicked at its centre.
    let position = lens.positions[2];
    let cell = CellId::Lens { layer: 1, position };
    let area = fig.geometry.area_of(cell).unwrap();
    assert_eq!(harness.state().state.answer.lens_cell, None);
    let uploads = harness.state().answer_figure_uploads();
    click_at(&mut harness, screen_of(rect, &fig, area.centre()));
    assert_eq!(harness.state().state.answer.lens_cell, Some((1, position)));
    // Its candidates are listed.
    let (id, lp) = lens.cells[1][2].top[0];
    assert!(
        harness
            .query_by_label(&format!("{:>7.2}  {}", lp, lens.name(id)))
            .is_some()
    );
    // A click in the figure's margin selects nothing else.
    click_at(&mut harness, screen_of(rect, &fig, (1.0, 1.0)));
    assert_eq!(harness.state().state.answer.lens_cell, Some((1, position)));
    assert_eq!(
        harness.state().answer_figure_uploads(),
        uploads,
        "hovering and clicking upload nothing"
    );

    // Contributions: a head's cell opens its split; the MLP column is no head.
    harness.get_by_label("Contributions").click();
    harness.run_steps(2);
    let Item::Contributions(Ok(_)) = wait_answer(&mut harness) else {
        panic!("no contributions");
    };
    let (rect, fig) = figure(&harness);
    let mlp = fig.geometry.area_of(CellId::Mlp { layer: 0 }).unwrap();
    click_at(&mut harness, screen_of(rect, &fig, mlp.centre()));
    assert_eq!(harness.state().state.answer.head, None);
    let head = fig
        .geometry
        .area_of(CellId::Head { layer: 1, head: 1 })
        .unwrap();
    click_at(&mut harness, screen_of(rect, &fig, head.centre()));
    assert_eq!(harness.state().state.answer.head, Some((1, 1)));
    assert!(harness.query_by_label("Open in Heatmap").is_some());

    // Patching: hovering a cell tells its recovery.
    harness.get_by_label("Patching").click();
    harness.run_steps(2);
    harness.state_mut().state.answer.text_b = "the mat sat on the cat".to_owned();
    harness.run_steps(2);
    harness.get_by_label("Run patching").click();
    let p = match wait_answer(&mut harness) {
        Item::Patching(Ok(p)) => p,
        other => panic!("no patching: {other:?}"),
    };
    let (rect, fig) = figure(&harness);
    let cell = CellId::Patch {
        layer: 1,
        column: 5,
    };
    harness.hover_at(screen_of(
        rect,
        &fig,
        fig.geometry.area_of(cell).unwrap().centre(),
    ));
    harness.run_steps(4);
    let said = format!("recovery {:.3}", p.patching.recovery[1][5]);
    assert!(
        harness.query_by_label_contains(&said).is_some(),
        "the tooltip says {said}"
    );

    // Routes: the pointer on an attention edge's middle names its heads; a click opens its
    // layer in the grid.
    harness.get_by_label("Routes").click();
    harness.run_steps(2);
    harness.state_mut().state.answer.threshold = MIN_THRESHOLD;
    let Item::Routes(Ok(_)) = wait_answer(&mut harness) else {
        panic!("no routes");
    };
    let (rect, fig) = figure(&harness);
    let edge = fig
        .geometry
        .edges
        .iter()
        .find(|e| {
            let mid = ((e.a.0 + e.b.0) / 2.0, (e.a.1 + e.b.1) / 2.0);
            e.kind == EdgeKind::Attn
                && fig.geometry.edge_at(mid.0, mid.1, 0.0).map(|f| f.index) == Some(e.index)
        })
        .expect("an attention edge clear of the others at its middle");
    let mid = ((edge.a.0 + edge.b.0) / 2.0, (edge.a.1 + edge.b.1) / 2.0);
    harness.hover_at(screen_of(rect, &fig, mid));
    harness.run_steps(4);
    assert!(harness.query_by_label_contains("heads: h").is_some());
    let layer = edge.to.0;
    harness.state_mut().state.layer_idx = (layer + 1) % 2;
    click_at(&mut harness, screen_of(rect, &fig, mid));
    let s = &harness.state().state;
    assert_eq!((s.view, s.layer_idx), (ViewKind::Grid, layer));
}
