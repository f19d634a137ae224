//! Live head ablation in the app: right-click a grid thumbnail or the head picker, the chips,
//! undo and redo, the difference view on screen and in the export, and a resumed recompute.

use super::figures::right_click_at;
use super::{app_harness, scratch, wait_ready};
use attnviz::analysis::MapsKind;
use attnviz::app::{AppState, HeadMode, ViewKind, export};
use attnviz::engine::Ablation;
use egui::{Key, Modifiers};
use egui_kittest::kittest::Queryable;

/// Right-clicks the widget labelled `label`.
fn right_click(harness: &egui_kittest::Harness<'_, attnviz::app::AttnApp>, label: &str) {
    right_click_at(harness, harness.get_by_label(label).rect().center());
}

const TEXT: &str = "w1 w2 w3 w4 w5 w6 w1 w2 w3 w4 w5 w6";

#[test]
fn ablate_from_the_grid_undo_redo_and_the_difference_view() {
    let mut harness = app_harness(AppState {
        text: TEXT.to_owned(),
        view: ViewKind::Grid,
        mask_text: "causal".to_owned(),
        ..AppState::default()
    });
    let plain = wait_ready(&mut harness);
    assert!(plain.ablations.is_empty());

    // Right-click L0·H0 (the previous-token head) → Ablate (zero).
    right_click(&harness, "L0·H0");
    harness.run();
    harness.get_by_label("Ablate (zero its output)").click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().state.ablations, vec![Ablation::zero(0, 0)]);
    let ablated = wait_ready(&mut harness);
    assert_eq!(ablated.ablations, vec![Ablation::zero(0, 0)]);
    // Layer 0's maps are the unablated run's (resumed from it); the induction head (L5·H0)
    // loses its pattern.
    for h in 0..8 {
        assert_eq!(ablated.maps.head(0, h), plain.maps.head(0, h));
    }
    assert_ne!(ablated.maps.head(5, 0), plain.maps.head(5, 0));
    // The thumbnail says so, and a chip names it.
    let thumb = harness.get_by_label("L0·H0");
    assert_eq!(
        thumb.value().as_deref(),
        Some("crafted head: previous token; ablated (zero)")
    );
    harness.get_by_label("ablated L0·H0 ✕");

    // The difference view: the grid shows ablated − unablated, on the diverging map.
    harness.get_by_label("difference").click();
    harness.run();
    assert!(harness.state().state.show_difference);
    let shown = harness.state_mut().displayed_run().unwrap();
    assert_eq!(shown.kind, MapsKind::AblationDifference);
    let d = shown.maps.head(5, 0).unwrap();
    let want = &*ablated.maps.head(5, 0).unwrap() - &*plain.maps.head(5, 0).unwrap();
    assert_eq!(*d, want);
    assert!(shown.maps.head(0, 3).unwrap().iter().all(|&v| v == 0.0));
    // The export draws what the screen shows: the difference, titled as one.
    let dir = scratch("ablate-diff");
    let path = dir.join("grid.svg");
    let app = harness.state_mut();
    let run = app.displayed_run().unwrap();
    let ctx = app.figure_context(&run);
    export::export_png(&path, &run, &app.state, &ctx).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("ablated − unablated, 0.0"), "{svg:.300}");

    // Mean-ablate another head from the grid, then undo twice and redo once.
    right_click(&harness, "L2·H3");
    harness.run();
    harness.get_by_label("Ablate (mean over positions)").click();
    harness.step();
    harness.step();
    assert_eq!(
        harness.state().state.ablations,
        vec![Ablation::zero(0, 0), Ablation::mean(2, 3)]
    );
    wait_ready(&mut harness);
    harness.key_press_modifiers(Modifiers::COMMAND, Key::Z);
    harness.step();
    assert_eq!(harness.state().state.ablations, vec![Ablation::zero(0, 0)]);
    // The Edit menu undoes too, one edit at a time: the difference toggle, then the ablation.
    for _ in 0..2 {
        harness.get_by_label("Edit").click();
        harness.run();
        harness.get_by_label("Undo  (Ctrl+Z)").click();
        harness.step();
        harness.step();
    }
    assert!(!harness.state().state.show_difference);
    assert!(harness.state().state.ablations.is_empty());
    let back = wait_ready(&mut harness);
    // Back to the unablated run, from the cache: the very run shown first.
    assert!(std::sync::Arc::ptr_eq(&back, &plain));
    assert!(harness.query_by_label("ablated L0·H0 ✕").is_none());
    harness.get_by_label("Edit").click();
    harness.run();
    harness.get_by_label("Redo  (Ctrl+Shift+Z)").click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().state.ablations, vec![Ablation::zero(0, 0)]);
    wait_ready(&mut harness);
    // The chip's ✕ restores the head.
    harness.get_by_label("ablated L0·H0 ✕").click();
    harness.step();
    assert!(harness.state().state.ablations.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ablate_from_the_heatmaps_head_picker() {
    let mut harness = app_harness(AppState {
        text: TEXT.to_owned(),
        view: ViewKind::Heatmap,
        head_mode: HeadMode::Single,
        layer_idx: 3,
        head_idx: 2,
        ..AppState::default()
    });
    wait_ready(&mut harness);
    let picker = harness.get_by_role_and_label(egui::accesskit::Role::Slider, "head");
    right_click_at(&harness, picker.rect().center());
    harness.run();
    harness.get_by_label("Ablate (mean over positions)").click();
    harness.step();
    assert_eq!(harness.state().state.ablations, vec![Ablation::mean(3, 2)]);
    let run = wait_ready(&mut harness);
    assert_eq!(run.ablations, vec![Ablation::mean(3, 2)]);
    harness.get_by_label("ablated L3·H2 (mean) ✕");
    // The difference heatmap: layers up to the ablated one are all zero.
    harness.get_by_label("difference").click();
    harness.run();
    let shown = harness.state_mut().displayed_run().unwrap();
    assert_eq!(shown.kind, MapsKind::AblationDifference);
    assert!(shown.maps.head(3, 2).unwrap().iter().all(|&v| v == 0.0));
    assert!(shown.maps.head(4, 0).unwrap().iter().any(|&v| v != 0.0));
    harness.get_by_label_contains("ablated − unablated");
}
