//! Figures and masks through the app: right-click masking on the heatmap, masked cells drawn
//! apart from zero attention, on screen and in the exported PNG alike.

use super::{app_harness, wait_ready};
use attnviz::app::{AppState, ViewKind};
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
fn right_click_at(harness: &egui_kittest::Harness<'_, attnviz::app::AttnApp>, pos: Pos2) {
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
