//! Issue 21, item 5, through the whole app: the cost plots end at the model's token limit and
//! keep their legend off every curve (the legend's widgets against the curves' points on
//! screen), and the mistake maps and the neuron map are `render`'s labelled figures: every
//! token on both axes and a colorbar with ticks, the pixels on screen those of the figure.

use super::{app_harness, fixture_dir, wait_ready};
use attnviz::app::teach::TeachTab;
use attnviz::app::{AppState, AttnApp, ViewKind};
use attnviz::engine::Mistake;
use attnviz::render::{self, FigureOptions};
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use ndarray::ArrayView2;

/// An app on teaching tab `tab`.
fn teach_state(tab: TeachTab) -> AppState {
    let mut state = AppState {
        view: ViewKind::Teach,
        text: "the cat sat on the mat and the dog sat on the log".to_owned(),
        ..AppState::default()
    };
    state.teach.tab = tab;
    state
}

/// Whether segment a–b meets `rect` (sampled every fraction of a point).
fn segment_meets(a: egui::Pos2, b: egui::Pos2, rect: egui::Rect) -> bool {
    let steps = (a.distance(b) * 4.0).ceil().max(1.0) as usize;
    (0..=steps).any(|i| rect.contains(a.lerp(b, i as f32 / steps as f32)))
}

/// Checks both cost plots: the x-axis runs from 0 to `limit`, and the legend (its entries'
/// widgets, with the frame egui_plot draws around them) lies in the room kept for it, clear of
/// every curve's points and segments.
fn check_cost_plots(harness: &mut Harness<'_, AttnApp>, limit: usize) {
    // The first frame guesses the plot's height; let it settle.
    harness.run_steps(4);
    let plots = harness.state().cost_plots_on_screen().to_vec();
    assert_eq!(plots.len(), 2);
    for plot in &plots {
        assert_eq!(
            plot.x_range,
            (0.0, limit as f64),
            "the x-axis ends at the limit"
        );
        let mut legend: Option<egui::Rect> = None;
        for (name, _) in &plot.curves {
            let entry = harness
                .get_all_by_label(name)
                .map(|n| n.rect())
                .find(|r| plot.frame.contains(r.center()))
                .unwrap_or_else(|| panic!("no legend entry {name:?} in the plot"));
            legend = Some(legend.map_or(entry, |l| l.union(entry)));
        }
        // egui_plot's legend frame: an 8 × 4 point margin and a 1-point stroke.
        let legend = legend.unwrap().expand2(egui::vec2(9.0, 5.0));
        assert!(
            plot.legend.expand(0.5).contains_rect(legend),
            "legend {legend:?} outside the room kept for it {:?}",
            plot.legend
        );
        for (name, points) in &plot.curves {
            for p in points {
                assert!(!legend.contains(*p), "{name}: point {p:?} under the legend");
                assert!(
                    plot.frame.expand(1.0).contains(*p),
                    "{name}: {p:?} off the plot"
                );
            }
            for pair in points.windows(2) {
                assert!(
                    !segment_meets(pair[0], pair[1], legend),
                    "{name} crosses the legend {legend:?}"
                );
            }
        }
    }
}

#[test]
fn the_cost_plots_end_at_the_models_limit_and_the_legend_covers_no_curve() {
    // The demo takes 4,096 tokens.
    let mut harness = app_harness(teach_state(TeachTab::Cost));
    wait_ready(&mut harness);
    check_cost_plots(&mut harness, 4096);
    // The BERT fixture's max_position_embeddings is 64.
    let mut state = teach_state(TeachTab::Cost);
    state.model_dir = Some(fixture_dir("bert"));
    let mut harness = app_harness(state);
    wait_ready(&mut harness);
    check_cost_plots(&mut harness, 64);
}

/// Checks that `shown` is `render`'s labelled figure of `map` with `opts`: every token of
/// `labels` on both axes, a colorbar with ticks over 0…1, in the PNG and in the same figure's
/// SVG.
fn check_labelled_figure(
    what: &str,
    shown: (&image::RgbaImage, &FigureOptions),
    map: ArrayView2<f32>,
    labels: &[String],
) {
    let (image, opts) = shown;
    assert!(opts.labels, "{what}: a labelled figure");
    assert_eq!(opts.query_labels, labels, "{what}: the query axis");
    assert_eq!(opts.key_labels, labels, "{what}: the key axis");
    assert_eq!(
        image,
        &render::heatmap_figure(map, opts).unwrap(),
        "{what}: the pixels are render's figure"
    );
    let n = map.nrows();
    let (cx, cy, cw, ch) = render::figure_cells_rect(n, n, opts);
    assert_eq!((cw, ch), (n as u32 * opts.cell_px, n as u32 * opts.cell_px));
    assert!(
        cx > 0 && cy > 0,
        "{what}: room for the labels left of and above the cells"
    );
    // Right of the cells: the colorbar, its top in the colormap's top colour.
    let top = opts.colormap.color(1.0);
    assert!(
        (cx + cw..image.width()).any(|x| (cy..cy + ch).any(|y| image.get_pixel(x, y).0 == top)),
        "{what}: no colorbar right of the cells"
    );
    let svg = render::heatmap_svg(map, opts).unwrap();
    for label in labels {
        let text = label
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(
            svg.contains(&format!(">{text}</text>")),
            "{what}: label {label:?}"
        );
    }
    for tick in ["0.00", "0.50", "1.00"] {
        assert!(
            svg.contains(&format!(">{tick}</text>")),
            "{what}: tick {tick}"
        );
    }
}

#[test]
fn the_mistake_maps_show_the_tokens_and_a_colour_scale() {
    let mut state = teach_state(TeachTab::Mistakes);
    state.teach.mistake = Some(Mistake::NoScaling);
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    harness.run_steps(2);
    let app = harness.state();
    let effect = app.mistake_effect().expect("measured with the run");
    let labels = attnviz::tokenize::display_labels(&run.tokens, &run.vocab_style);
    let [correct, mistaken] = app.mistake_figures_on_screen();
    let (layer, head) = (app.state.layer_idx, app.state.head_idx);
    for (what, shown, side) in [
        ("correct", correct, &effect.correct),
        ("mistaken", mistaken, &effect.mistaken),
    ] {
        let map = side.maps.head(layer, head).unwrap();
        check_labelled_figure(what, shown.expect("a figure"), map.view(), &labels);
    }
    assert!(harness.query_by_label("mistaken map").is_some());
}

#[test]
fn the_neuron_map_shows_the_tokens_and_a_colour_scale() {
    let mut harness = app_harness(teach_state(TeachTab::Neurons));
    let run = wait_ready(&mut harness);
    harness.run_steps(2);
    let app = harness.state();
    let labels = attnviz::tokenize::display_labels(&run.tokens, &run.vocab_style);
    let trace = run
        .trace
        .as_ref()
        .expect("the neuron view runs with a trace");
    let probs = &trace.heads[app.state.head_idx].probs;
    let shown = app.neuron_figure_on_screen().expect("a figure");
    check_labelled_figure("neuron map", shown, probs.view(), &labels);
    assert!(harness.query_by_label("neuron head map").is_some());
}

#[test]
fn a_map_longer_than_the_room_is_pooled_to_fit_and_never_too_large_a_texture() {
    // 2,500 tokens: at one pixel per cell the figure would pass the harness's 2,048-pixel
    // texture limit (egui panics on such an upload), so the view pools the map to its room.
    let mut state = teach_state(TeachTab::Neurons);
    state.text = vec!["word"; 2500].join(" ");
    let mut harness = app_harness(state);
    let run = wait_ready(&mut harness);
    assert_eq!(run.tokens.len(), 2500);
    harness.run_steps(2);
    let (image, opts) = harness.state().neuron_figure_on_screen().expect("a figure");
    assert!(image.width() <= 2048 && image.height() <= 2048);
    assert!(opts.query_labels.len() < 2500, "pooled");
    assert!(
        opts.query_labels[0].contains('–'),
        "{:?}",
        opts.query_labels[0]
    );
}
