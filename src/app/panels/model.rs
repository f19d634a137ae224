//! The side panel's "Model" section: the model picker, the checkpoint's architecture, or the
//! demo model's settings.

use crate::app::theme;
use crate::app::view::{DialogPurpose, Request, View, ViewCx};
use crate::engine::NormPlacement;
use crate::model::DemoPositional;
use std::path::{Path, PathBuf};

/// The "Model" section.
#[derive(Default)]
pub struct ModelPanel;

impl View for ModelPanel {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.heading("Model");
        // Names, not paths, so that a deep folder does not widen the panel; the full path is
        // in the hover text.
        let (current, current_path) = match &cx.state.model_dir {
            Some(dir) => (model_name(cx, dir), dir.display().to_string()),
            None => (
                "demo (built in)".to_owned(),
                "the built-in demo model".to_owned(),
            ),
        };
        let mut chosen: Option<Option<PathBuf>> = None;
        // A picker as wide as the panel allows: a long name is cut (its full name and path on
        // hover) rather than widening the panel on a small screen.
        ui.horizontal(|ui| {
            let label = ui.label("model");
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                if ui
                    .button("Open folder…")
                    .on_hover_text(
                        "Open a Hugging Face model folder (config.json, weights, tokenizer); a \
                         GGUF file opens from File ▸ Open GGUF model…",
                    )
                    .clicked()
                {
                    cx.request(Request::Dialog(DialogPurpose::OpenModel));
                }
                // Exactly the width that is left: the picker never asks for more than the panel.
                let width = (ui.available_width() - 1.0).max(60.0);
                ui.scope(|ui| {
                    ui.set_max_width(width);
                    egui::ComboBox::from_id_salt("model-picker")
                        .selected_text(current.clone())
                        .width(width)
                        .truncate()
                        .show_ui(ui, |ui| {
                            if ui
                                .selectable_label(cx.state.model_dir.is_none(), "demo (built in)")
                                .clicked()
                            {
                                chosen = Some(None);
                            }
                            for dir in &cx.state.recent_models {
                                let on = cx.state.model_dir.as_ref() == Some(dir);
                                if ui
                                    .selectable_label(on, model_name(cx, dir))
                                    .on_hover_text(dir.display().to_string())
                                    .clicked()
                                {
                                    chosen = Some(Some(dir.clone()));
                                }
                            }
                        })
                        .response
                        .labelled_by(label.id)
                        .on_hover_text(format!("{current}\n{current_path}"));
                });
            });
        });
        match chosen {
            Some(Some(dir)) => cx.request(Request::OpenModel(dir)),
            Some(None) => cx.request(Request::UseDemo),
            None => {}
        }
        if cx.state.model_dir.is_some() {
            match cx.model_info {
                Some(info) if cx.model_loaded() => {
                    egui::Grid::new("model-info").num_columns(2).show(ui, |ui| {
                        if let Some(base) = &info.base_model {
                            ui.label("base model");
                            ui.label(base).on_hover_text(
                                "The model this checkpoint was fine-tuned or converted from, as \
                                 its config.json names it",
                            );
                            ui.end_row();
                        }
                        let rows = [
                            ("architecture", info.architecture.clone()),
                            ("layers", info.layers.to_string()),
                            ("heads", info.heads.to_string()),
                            ("KV heads", kv_heads_text(info.heads, info.kv_heads)),
                            ("d_model", info.d_model.to_string()),
                            ("parameters", info.params.to_string()),
                            ("dtype", info.dtype.clone()),
                            (
                                "positions",
                                format!("{}, max {}", info.positional, info.max_positions),
                            ),
                        ];
                        for (k, v) in rows {
                            ui.label(k);
                            ui.label(v);
                            ui.end_row();
                        }
                    });
                }
                _ if cx.jobs.loading.is_some() || cx.jobs.busy => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("loading the model…");
                    });
                }
                // Nothing loads: the model has not run yet, or the run failed (the error says
                // why).
                _ => {
                    ui.label("not loaded yet");
                }
            }
            return;
        }
        let mut demo = cx.state.demo;
        ui.add(egui::Slider::new(&mut demo.layers, 1..=24).text("layers"))
            .on_hover_text("Transformer blocks in the demo model (the crafted heads need 2)");
        ui.add(egui::Slider::new(&mut demo.heads, 1..=32).text("heads"))
            .on_hover_text("Attention heads per layer; d_model is split between them");
        ui.add(egui::Slider::new(&mut demo.d_model, 8..=1024).text("d_model"))
            .on_hover_text("Width of the residual stream (a multiple of the heads)");
        egui::ComboBox::from_label("Positional encoding")
            .selected_text(demo.positional.name())
            .show_ui(ui, |ui| {
                for p in DemoPositional::ALL {
                    ui.selectable_value(&mut demo.positional, p, p.name());
                }
            })
            .response
            .on_hover_text(
                "How the demo knows token order: sinusoids or learned vectors added to the \
                 embeddings, RoPE or ALiBi inside attention, or none",
            );
        egui::ComboBox::from_label("LayerNorm")
            .selected_text(demo.norm.name())
            .show_ui(ui, |ui| {
                for p in NormPlacement::ALL {
                    ui.selectable_value(&mut demo.norm, p, p.name());
                }
            })
            .response
            .on_hover_text(
                "Where LayerNorm sits: before each sublayer (pre, GPT-2 and Llama), after the \
                 residual add (post, BERT), or nowhere",
            );
        match demo.validate() {
            Ok(()) => cx.state.demo = demo,
            Err(e) => {
                ui.colored_label(theme::error_color(ui.visuals().dark_mode), e.to_string());
            }
        }
    }
}

/// A model folder's name: the loaded model's own name (from its config) when `dir` is the
/// model on screen, else a short name made from the folder (its parent's name when the folder
/// itself is called `model`).
fn model_name(cx: &ViewCx<'_>, dir: &Path) -> String {
    cx.model_name(dir)
}

/// The info panel's "KV heads" entry: how many, and how they are shared.
fn kv_heads_text(heads: usize, kv_heads: usize) -> String {
    match kv_heads {
        k if k == heads => format!("{k} (one per head)"),
        1 => format!("1 (shared by all {heads} heads)"),
        k if k > 0 && heads.is_multiple_of(k) => {
            format!("{k} (groups of {} query heads)", heads / k)
        }
        k => k.to_string(),
    }
}
