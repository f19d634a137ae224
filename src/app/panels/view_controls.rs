//! The side panel's "View" section: layer, heads, colormap, scale, range, special tokens.

use crate::app::state::HeadMode;
use crate::app::view::{View, ViewCx};
use crate::model::demo::crafted_at;
use crate::render::{Colormap, RangeMode, ValueScale};

/// The "View" section.
#[derive(Default)]
pub struct ViewControls;

impl View for ViewControls {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.heading("View");
        let Some((layers, heads)) = cx.layers_heads else {
            ui.label("(waiting for the model)");
            return;
        };
        let state = &mut *cx.state;
        state.layer_idx = state.layer_idx.min(layers - 1);
        state.head_idx = state.head_idx.min(heads - 1);
        // Wrapped: on a narrow panel the checkbox goes under the slider.
        ui.horizontal_wrapped(|ui| {
            ui.add_enabled(
                !state.all_layers,
                egui::Slider::new(&mut state.layer_idx, 0..=layers - 1).text("layer"),
            );
            ui.checkbox(&mut state.all_layers, "mean of layers");
        });
        egui::ComboBox::from_label("Heads")
            .selected_text(state.head_mode.label())
            .show_ui(ui, |ui| {
                for m in HeadMode::ALL {
                    ui.selectable_value(&mut state.head_mode, m, m.label());
                }
            });
        match state.head_mode {
            HeadMode::Single => {
                let before = state.head_idx;
                let picker =
                    ui.add(egui::Slider::new(&mut state.head_idx, 0..=heads - 1).text("head"));
                // A slider follows any pressed button: a right-click opens the menu of the head
                // shown, it does not pick another one.
                let secondary =
                    ui.input(|i| i.pointer.secondary_down() || i.pointer.secondary_released());
                if secondary && (picker.hovered() || picker.is_pointer_button_down_on()) {
                    state.head_idx = before;
                }
                // Right-click the head picker to ablate the head it shows (not for a file).
                if cx.external.is_none() {
                    let (layer_idx, head_idx) = (state.layer_idx, state.head_idx);
                    // A slider senses drags only: add clicks, so a right-click opens the menu.
                    picker
                        .interact(egui::Sense::click())
                        .on_hover_text("Right-click to ablate this head")
                        .context_menu(|ui| {
                            crate::app::chips::ablation_menu(ui, state, layer_idx, head_idx);
                        });
                }
            }
            HeadMode::Set => {
                ui.horizontal_wrapped(|ui| {
                    for h in 0..heads {
                        let mut on = state.head_set.contains(&h);
                        if ui.checkbox(&mut on, format!("{h}")).changed() {
                            if on {
                                state.head_set.push(h);
                                state.head_set.sort_unstable();
                            } else {
                                state.head_set.retain(|&x| x != h);
                            }
                        }
                    }
                });
            }
            HeadMode::Mean | HeadMode::Max => {}
        }
        if cx.external.is_none()
            && state.model_dir.is_none()
            && state.head_mode == HeadMode::Single
            && let Some(kind) = crafted_at(&state.demo, state.layer_idx, state.head_idx)
        {
            ui.label(format!("crafted head: {}", kind.label()));
        }
        egui::ComboBox::from_label("Colormap")
            .selected_text(state.colormap.name())
            .show_ui(ui, |ui| {
                for c in Colormap::ALL {
                    ui.selectable_value(&mut state.colormap, c, c.name());
                }
            });
        ui.horizontal(|ui| {
            ui.selectable_value(&mut state.value_scale, ValueScale::Linear, "linear");
            ui.selectable_value(&mut state.value_scale, ValueScale::Log, "log");
            ui.separator();
            for r in RangeMode::ALL {
                ui.selectable_value(&mut state.range, r, r.name());
            }
        });
        ui.checkbox(
            &mut state.hide_special,
            "Hide special tokens and renormalise",
        );
        // Last, so that the controls above keep their place on a short window.
        if state.view == crate::app::state::ViewKind::Heatmap {
            crate::app::analyze::rollout::controls_ui(ui, &mut state.analyze.rollout, layers);
        }
    }
}
