//! Figures and masks through the app: right-click masking on the heatmap, masked cells drawn
//! apart from zero attention, on screen and in the exported PNG alike.

use super::{app_harness, wait_ready};
use attnviz::app::{AppState, ViewKind, export};
use attnviz::render::{Colormap, FigureOptions, figure_cells_rect};
use egui::{Event, Modifiers, PointerButton, Pos2, pos2};
use egui_kittest::kittest::Queryable;

/// The screen position of cell (`query`, `key`) of the heatmap of `n` tokens, unzoomed.
fn cell_center(
    harness: &egui_kittest::Harness<'_, attnviz::app::AttnApp>,
    n: usize,
    query: usize,
    key: usize,
) -> Pos2 {
    let cells = harness.get_by_label("heatmap cells").rect();
    let side = cells.width() / n as f32;
    pos2(
        cells.left() + (key as f32 + 0.5) * side,
        cells.top() + (query as f32 + 0.5) * side,
    )
}

/// Presses and releases the secondary (right) button at `pos`.
pub(super) fn right_click_at(
    harness: &egui_kittest::Harness<'_, attnviz::app::AttnApp>,
    pos: Pos2,
) {
    harness.hover_at(pos);
    for pressed in [true, false] {
        harness.event(Event::PointerButton {
            pos,
            button: PointerButton::Secondary,
            pressed,
            modifiers: Modifiers::NONE,
        });
    }
}

#[test]
fn right_click_drop_cell_masks_that_cell() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Heatmap,
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    let n = run.tokens.len();
    assert_eq!(n, 6);
    let (l, h) = (
        harness.state().state.layer_idx,
        harness.state().state.head_idx,
    );
    assert!(
        run.maps.head(l, h).unwrap()[(2, 4)] > 0.0,
        "unmasked, query 2 sees key 4"
    );

    right_click_at(&harness, cell_center(&harness, n, 2, 4));
    harness.run();
    // The context menu offers the three drops for that very cell.
    harness.get_by_label("Drop key 4 (every query)");
    harness.get_by_label("Drop query 2 (its whole row)");
    harness.get_by_label("Drop cell 2.4").click();
    // The new spec starts a run (a spinner repaints), so step rather than run.
    harness.step();
    harness.step();
    assert_eq!(harness.state().state.mask_text, "drop-cells:2.4");

    let masked = wait_ready(&mut harness);
    let m = masked.maps.head(l, h).unwrap();
    assert_eq!(m[(2, 4)], 0.0, "the dropped cell gets no attention");
    let row: f32 = m.row(2).sum();
    assert!((row - 1.0).abs() < 1e-4, "row 2 still sums to 1: {row}");
    assert!(m[(3, 4)] > 0.0, "other queries still see key 4");

    // A second right-click adds to the spec instead of replacing it.
    right_click_at(&harness, cell_center(&harness, n, 0, 5));
    harness.run();
    harness.get_by_label("Drop key 5 (every query)").click();
    harness.step();
    harness.step();
    assert_eq!(
        harness.state().state.mask_text,
        "drop-cells:2.4+drop-keys:5"
    );
    let masked = wait_ready(&mut harness);
    let m = masked.maps.head(l, h).unwrap();
    assert!(
        (0..n).all(|q| m[(q, 5)] == 0.0),
        "key 5 is dropped for every query"
    );
}

#[test]
fn masked_cells_look_alike_on_screen_and_in_the_export_and_unlike_zero() {
    let mut harness = app_harness(AppState {
        text: "the cat sat on the mat".to_owned(),
        view: ViewKind::Heatmap,
        mask_text: "causal+drop-cells:3.1".to_owned(),
        colormap: Colormap::Magma,
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    let n = run.tokens.len();
    let app = harness.state();
    let screen = app
        .heatmap_on_screen()
        .expect("a heatmap on screen")
        .clone();
    assert_eq!(
        screen.dimensions(),
        (n as u32, n as u32),
        "one texel per cell"
    );
    let grey = Colormap::Magma.masked_color();
    let zero = Colormap::Magma.color(0.0);
    for q in 0..n {
        for k in 0..n {
            let masked = k > q || (q, k) == (3, 1);
            let px = screen.get_pixel(k as u32, q as u32).0;
            assert_eq!(px == grey, masked, "on screen, cell ({q}, {k})");
        }
    }

    // The PNG export of the same view: the same colour in every cell, and the mask in the title.
    let ctx = app.figure_context(&run);
    assert_eq!(ctx.mask.to_string(), "causal+drop-cells:3.1");
    let figure = export::current_view_png(&run, &app.state, &ctx).unwrap();
    let cell = attnviz::render::ExportStyle::for_tokens(n).cell_px;
    let opts = FigureOptions {
        title: "any".to_owned(),
        cell_px: cell,
        query_labels: ctx.labels.clone(),
        key_labels: ctx.labels.clone(),
        range: attnviz::render::view::range_for(
            &run.maps,
            run.maps
                .head(app.state.layer_idx, app.state.head_idx)
                .unwrap()
                .view(),
            app.state.range,
        ),
        masked: Some(ndarray::Array2::from_elem((n, n), true)),
        ..FigureOptions::default()
    };
    let (x, y, _, _) = figure_cells_rect(n, n, &opts);
    for q in 0..n as u32 {
        for k in 0..n as u32 {
            let exported = figure
                .get_pixel(x + k * cell + cell / 2, y + q * cell + cell / 2)
                .0;
            assert_eq!(exported, screen.get_pixel(k, q).0, "cell ({q}, {k})");
        }
    }
    // An allowed cell with (nearly) no attention is the colormap's bottom, never the grey.
    assert_ne!(grey, zero);
}

#[test]
fn the_apps_svg_export_is_attnviz_renders_svg() {
    let text = "the cat sat on the mat";
    let mut harness = app_harness(AppState {
        text: text.to_owned(),
        view: ViewKind::Heatmap,
        mask_text: "causal".to_owned(),
        layer_idx: 2,
        ..AppState::default()
    });
    let run = wait_ready(&mut harness);
    let app = harness.state();
    let dir = super::scratch("figures-svg");
    let (ours, theirs) = (dir.join("app.svg"), dir.join("cli.svg"));
    export::export_png(&ours, &run, &app.state, &app.figure_context(&run)).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_attnviz"))
        .args([
            "render", "--text", text, "--mask", "causal", "--layer", "2", "--out",
        ])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let svg = std::fs::read_to_string(&ours).unwrap();
    assert!(svg.starts_with("<?xml") && svg.contains(">masked</text>"));
    assert!(
        svg == std::fs::read_to_string(&theirs).unwrap(),
        "the app's SVG differs from attnviz render's"
    );
}
