//! Presenter mode: large fonts, no side panels, a high-contrast colormap, and keyboard stepping
//! (space or → forward, ← back, F5 on and off, Escape off). Without presenter mode the same
//! keys step an open lesson; otherwise the arrow keys keep their usual meaning (layer, head).

use super::settings::TeachTab;
use crate::app::AppState;
use crate::app::state::ViewKind;
use crate::render::Colormap;

/// How much larger every text style is in presenter mode.
pub const FONT_SCALE: f32 = 1.6;

/// The colormap presenter mode switches to (unless a high-contrast one is chosen already):
/// readable on a projector.
pub const PRESENTER_COLORMAP: Colormap = Colormap::Turbo;

/// Sets egui's text sizes for presenter mode (`on`) or back to the defaults, only when they
/// differ from what is set (cheap to call every frame).
pub fn apply_style(ctx: &egui::Context, on: bool) {
    let scale = if on { FONT_SCALE } else { 1.0 };
    let wanted = egui::style::default_text_styles();
    let body = wanted
        .get(&egui::TextStyle::Body)
        .map_or(12.5, |f| f.size * scale);
    let current = ctx
        .global_style()
        .text_styles
        .get(&egui::TextStyle::Body)
        .map(|f| f.size);
    if current.is_some_and(|c| (c - body).abs() < 0.01) {
        return;
    }
    ctx.all_styles_mut(|style| {
        style.text_styles = wanted
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    egui::FontId::new(f.size * scale, f.family.clone()),
                )
            })
            .collect();
    });
}

/// Switches presenter mode: on, it remembers the colormap and takes the high-contrast one; off,
/// it puts the remembered colormap back.
pub fn toggle(state: &mut AppState) {
    let teach = &mut state.teach;
    teach.presenter = !teach.presenter;
    if teach.presenter {
        teach.colormap_before_presenter = Some(state.colormap);
        if !state.colormap.is_high_contrast() {
            state.colormap = PRESENTER_COLORMAP;
        }
    } else if let Some(before) = teach.colormap_before_presenter.take() {
        state.colormap = before;
    }
}

/// What a step key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Space, →, Page Down.
    Forward,
    /// ←, Page Up.
    Back,
}

/// Steps the teaching view on screen when no lesson is open: the walkthrough's steps, or the
/// mistakes one after another. Other views do not step.
pub fn step_view(state: &mut AppState, step: Step) {
    if state.view != ViewKind::Teach {
        return;
    }
    let teach = &mut state.teach;
    match teach.tab {
        TeachTab::Walkthrough => {
            let last = super::walkthrough::STEP_COUNT - 1;
            teach.step = match step {
                Step::Forward => (teach.step + 1).min(last),
                Step::Back => teach.step.saturating_sub(1),
            };
        }
        TeachTab::Mistakes => super::mistakes::step_mistake(teach, step),
        TeachTab::Neurons | TeachTab::MultiHead | TeachTab::Cost => {}
    }
}
