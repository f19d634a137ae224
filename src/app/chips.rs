//! The settings that change the numbers, as chips next to the map: the applied mask, the
//! dimension masks, the teaching mistakes a run makes, a score scale other than 1/√d_head and
//! the ablated heads (with the difference toggle).
//! Each chip names what the run on screen was computed with, and one click on its ✕ clears the
//! setting (the mask the architecture adds cannot be cleared, and says so). Every view that
//! shows numbers draws them, so a setting made in one view is never silently in force in
//! another.

use super::state::AppState;
use super::view::ViewCx;
use crate::engine::{Ablation, AblationMode, DimSubset, Mistake, ScoreScale};

/// What one click on a chip clears.
enum Clear {
    /// The typed mask (back to `none`).
    Mask,
    /// One head's dimension subset.
    Dims(usize, usize),
    /// One mistake every run makes.
    Mistake(Mistake),
    /// The score scale (back to 1/√d_head).
    Scale,
    /// One head's ablation.
    Ablation(usize, usize),
}

/// The chips of the run on screen: from the settings that computed it (its job key), or, for
/// an attention file, its recorded mask alone. Nothing is drawn (no empty row) when every
/// setting is at its default.
pub fn settings_chips_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    let Some(run) = cx.run.clone() else {
        return;
    };
    // An attention file's run was not computed with the settings: it has its mask alone.
    let current = if cx.external.is_some() {
        None
    } else {
        cx.current
    };
    // (text, hover, what a click clears; `None`: shown, not clearable)
    let mut chips: Vec<(String, &str, Option<Clear>)> = Vec::new();
    if !run.mask.is_none() {
        let typed = current.map(|k| &k.opts.mask);
        if typed.is_none_or(|m| m.is_none()) {
            chips.push((
                format!("mask {}", run.mask),
                "applied by the model's architecture or recorded in the file",
                None,
            ));
        } else {
            chips.push((
                format!("mask {}", run.mask),
                "clear the typed mask",
                Some(Clear::Mask),
            ));
        }
    }
    if let Some(key) = current {
        let d_head = d_head(cx);
        for d in &key.opts.dims {
            chips.push((
                dims_text(d, d_head),
                "keep every dimension of this head",
                Some(Clear::Dims(d.layer_idx, d.head_idx)),
            ));
        }
        for &m in &key.opts.mistakes {
            chips.push((
                format!("mistake {m}"),
                "make this run correctly again",
                Some(Clear::Mistake(m)),
            ));
        }
        let scale = match key.opts.scale {
            ScoreScale::InvSqrtDHead => None,
            ScoreScale::None => Some("scale none (no 1/√d_head)".to_owned()),
            ScoreScale::Temperature(t) => Some(format!("temperature {t}")),
        };
        if let Some(text) = scale {
            chips.push((text, "back to 1/√d_head", Some(Clear::Scale)));
        }
        for a in &key.opts.ablations {
            chips.push((
                ablation_text(a),
                "restore this head's output",
                Some(Clear::Ablation(a.layer_idx, a.head_idx)),
            ));
        }
    }
    let ablated = current.is_some_and(|k| !k.opts.ablations.is_empty());
    if chips.is_empty() {
        return;
    }
    let mut clear = None;
    ui.horizontal_wrapped(|ui| {
        for (text, hover, action) in chips {
            match action {
                Some(action) => {
                    if chip(ui, &text, hover) {
                        clear = Some(action);
                    }
                }
                None => {
                    ui.label(text).on_hover_text(hover);
                }
            }
        }
        // The difference view is the Heatmap's and the Grid's.
        let maps_view = matches!(
            cx.state.view,
            super::state::ViewKind::Heatmap | super::state::ViewKind::Grid
        );
        if ablated && maps_view {
            ui.checkbox(&mut cx.state.show_difference, "difference")
                .on_hover_text(
                    "Heatmap and Grid: the ablated run's attention minus the unablated run's,                      red where the ablation added weight, blue where it took it away",
                );
        }
    });
    let state = &mut *cx.state;
    match clear {
        Some(Clear::Mask) => state.mask_text = "none".to_owned(),
        Some(Clear::Dims(layer_idx, head_idx)) => state
            .teach
            .dims
            .retain(|d| !(d.layer_idx == layer_idx && d.head_idx == head_idx)),
        Some(Clear::Mistake(m)) => state.teach.run_mistakes.retain(|&x| x != m),
        Some(Clear::Scale) => state.scale = ScoreScale::InvSqrtDHead,
        Some(Clear::Ablation(layer_idx, head_idx)) => state.set_ablation(layer_idx, head_idx, None),
        None => {}
    }
}

/// `ablated L0·H3` or `ablated L0·H3 (mean)`.
pub fn ablation_text(a: &Ablation) -> String {
    let mode = match a.mode {
        AblationMode::Zero => "",
        AblationMode::Mean => " (mean)",
    };
    format!("ablated L{}·H{}{mode}", a.layer_idx, a.head_idx)
}

/// The right-click menu of head (layer, head), wherever a head is picked (the grid's
/// thumbnails, the heatmap's head picker): ablate it by zero or mean, or restore it.
pub fn ablation_menu(ui: &mut egui::Ui, state: &mut AppState, layer_idx: usize, head_idx: usize) {
    let now = state.ablation_of(layer_idx, head_idx);
    ui.label(format!("Layer {layer_idx} · head {head_idx}"));
    for mode in AblationMode::ALL {
        let text = match mode {
            AblationMode::Zero => "Ablate (zero its output)",
            AblationMode::Mean => "Ablate (mean over positions)",
        };
        if ui
            .add_enabled(now != Some(mode), egui::Button::new(text))
            .clicked()
        {
            state.set_ablation(layer_idx, head_idx, Some(mode));
            ui.close();
        }
    }
    if now.is_some() && ui.button("Restore").clicked() {
        state.set_ablation(layer_idx, head_idx, None);
        ui.close();
    }
}

/// `dims L0·H0: 8 of 64` (or without the total while the model's size is unknown).
fn dims_text(d: &DimSubset, d_head: Option<usize>) -> String {
    let of = d_head.map_or_else(String::new, |n| format!(" of {n}"));
    format!(
        "dims L{}·H{}: {}{of} kept",
        d.layer_idx,
        d.head_idx,
        d.dims.len()
    )
}

/// The width of one head of the model on screen, once known.
fn d_head(cx: &ViewCx<'_>) -> Option<usize> {
    match (&cx.state.model_dir, cx.model_info) {
        (None, _) => Some(cx.state.demo.d_model / cx.state.demo.heads.max(1)),
        (Some(_), Some(info)) => Some(info.d_head),
        (Some(_), None) => None,
    }
}

/// One chip: the setting and a ✕; true when clicked. Its accessible label is the text with
/// `✕`, so tests (and screen readers) find it by what it says.
fn chip(ui: &mut egui::Ui, text: &str, hover: &str) -> bool {
    ui.add(
        egui::Button::new(format!("{text} ✕"))
            .small()
            .corner_radius(8.0),
    )
    .on_hover_text(hover)
    .clicked()
}
