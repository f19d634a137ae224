//! The side panel: the input (text, or the opened attention file), the model, the run options
//! and the view settings.

use super::model::ModelPanel;
use super::view_controls::ViewControls;
use crate::app::view::{DialogPurpose, Request, View, ViewCx, folder_name};
use crate::engine::{MaskSpec, ScoreScale};
use crate::tokenize::DemoTokenizer;

/// The text box grows with its text up to this height, then scrolls.
const TEXT_BOX_MAX_HEIGHT: f32 = 200.0;

/// The side panel.
#[derive(Default)]
pub struct Controls {
    model: ModelPanel,
    view: ViewControls,
}

impl View for Controls {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.heading("Input");
        if let Some(ext) = cx.external {
            if file_ui(ui, cx, ext) {
                cx.request(Request::LeaveFile);
            } else {
                // The text, model and run options do not apply to a file's run: only the view.
                ui.separator();
                self.view.ui(ui, cx);
                return;
            }
        }
        input_ui(ui, cx);
        ui.separator();
        self.model.ui(ui, cx);
        ui.separator();
        run_options_ui(ui, cx);
        ui.separator();
        self.view.ui(ui, cx);
    }
}

/// The opened attention file: its path, model, tokens and ids. True when the user goes back.
fn file_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>, ext: &crate::app::ExternalRun) -> bool {
    // The file's own run is on screen: say so, with its model, tokens and ids.
    ui.label(format!("Showing attention from {}", ext.path.display()));
    ui.label(format!(
        "model {} ({}), {} tokens, mask {}",
        ext.run.model.name,
        ext.run.model.architecture,
        ext.run.tokens.len(),
        ext.run.mask
    ));
    egui::CollapsingHeader::new("Tokens and ids")
        .id_salt("file-tokens")
        .show(ui, |ui| {
            egui::ScrollArea::vertical()
                .max_height(160.0)
                .id_salt("file-tokens-scroll")
                .show(ui, |ui| {
                    for (i, t) in ext.run.tokens.iter().enumerate() {
                        ui.monospace(format!("{i:>4}  {:<16} id {}", t.text, t.id));
                    }
                });
        });
    let back = match &cx.state.model_dir {
        Some(dir) => format!("Back to {}", folder_name(dir)),
        None => "Back to the demo model".to_owned(),
    };
    let mut back_clicked = false;
    ui.horizontal(|ui| {
        back_clicked = ui.button(back).clicked();
        if ui.button("Open file…").clicked() {
            cx.request(Request::Dialog(DialogPurpose::OpenFile));
        }
    });
    back_clicked
}

/// The text box, the token-file note and the tokenizer.
fn input_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    let state = &mut *cx.state;
    let label = ui.label("Text");
    // A bounded box that scrolls, so that a long text never pushes the controls off screen.
    let edited = egui::ScrollArea::vertical()
        .id_salt("input-text-scroll")
        .max_height(TEXT_BOX_MAX_HEIGHT)
        .show(ui, |ui| {
            ui.add(
                egui::TextEdit::multiline(&mut state.text)
                    .desired_rows(5)
                    .desired_width(f32::INFINITY)
                    .id_salt("input-text"),
            )
            .labelled_by(label.id)
            .changed()
        })
        .inner;
    if edited {
        // Typing replaces a token file's tokens or ids by the text.
        state.tokens = None;
        state.token_ids = None;
    }
    if let Some(ids) = &state.token_ids {
        ui.label(format!(
            "{} token ids from a file, run as they are",
            ids.len()
        ));
    } else if let Some(tokens) = &state.tokens {
        ui.label(format!(
            "{} tokens from a file, run as they are",
            tokens.len()
        ));
    }
    let mut open = false;
    ui.horizontal_wrapped(|ui| {
        if let Some(dir) = &state.model_dir {
            // A checkpoint always tokenizes with its own tokenizer.json (a GGUF's is in the file).
            ui.label(if crate::model::gguf::is_gguf_path(dir) {
                "Tokenizer: the GGUF file's own vocabulary and merges"
            } else {
                "Tokenizer: the model folder's tokenizer.json"
            });
        } else {
            egui::ComboBox::from_label("Tokenizer")
                .selected_text(state.tokenizer.name())
                .show_ui(ui, |ui| {
                    for t in DemoTokenizer::ALL {
                        ui.selectable_value(&mut state.tokenizer, t, t.name());
                    }
                })
                .response
                .on_hover_text(
                    "How the demo splits text: into words and punctuation, or characters",
                );
        }
        open = ui.button("Open file…").clicked();
    });
    if open {
        cx.request(Request::Dialog(DialogPurpose::OpenFile));
    }
}

/// One sentence on what a mask preset does.
fn mask_part_tooltip(part: &str) -> &'static str {
    match part {
        "none" => "Clear the mask: every token attends to every token",
        "causal" => "Each token attends only to itself and earlier tokens",
        "padding" => "No token attends to [PAD] tokens",
        "window:3" => "Each token attends only to tokens at most 3 positions away",
        "strided:4" => "Attend to every 4th token back, and to the 3 nearest",
        "block:8" => "Attend only within the same block of 8 tokens",
        "global:0" => "Token 0 attends to and is attended by every token, on top of the rest",
        _ => "Add this to the mask",
    }
}

/// The mask spec with its shortcuts, and the score scale.
fn run_options_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    ui.heading("Run options");
    let state = &mut *cx.state;
    ui.horizontal(|ui| {
        let label = ui.label("Mask");
        // As wide as the panel, so a narrow panel keeps it on screen rather than widening.
        ui.add(
            egui::TextEdit::singleline(&mut state.mask_text).desired_width(ui.available_width()),
        )
        .labelled_by(label.id)
        .on_hover_text(
            "Which (query, key) pairs may attend, +-joined (the CLI's --mask); right-click a \
                 heatmap cell to drop it, its key or its query",
        );
    });
    // What the run on screen really applied: the architecture adds its causal mask and
    // Mistral its sliding window to the typed spec.
    let applied = cx.run.as_ref().map(|r| r.mask.spec());
    if let Some(applied) = applied
        && MaskSpec::parse(&state.mask_text).ok().as_ref() != Some(applied)
    {
        ui.label(format!("applied: {applied}"));
    }
    ui.horizontal_wrapped(|ui| {
        for part in [
            "none",
            "causal",
            "padding",
            "window:3",
            "strided:4",
            "block:8",
            "global:0",
        ] {
            if ui
                .small_button(part)
                .on_hover_text(mask_part_tooltip(part))
                .clicked()
            {
                state.mask_text = match (part, state.mask_text.trim()) {
                    ("none", _) | (_, "none" | "") => part.to_owned(),
                    (_, current) => format!("{current}+{part}"),
                };
            }
        }
    });
    ui.checkbox(
        &mut state.truncate,
        "Cut the input at the model's token limit",
    )
    .on_hover_text("Like the CLI's --truncate: keep the first tokens the model can take");
    ui.horizontal(|ui| {
        let label = ui.label("Memory budget");
        let default = crate::pipeline::ByteSize(crate::pipeline::default_memory_budget());
        ui.add(
            egui::TextEdit::singleline(&mut state.memory_budget)
                .hint_text(format!("default {default}"))
                .desired_width(90.0),
        )
        .labelled_by(label.id)
        .on_hover_text(
            "The most memory one run may need, e.g. 4GiB (the CLI's --memory-budget); \
             a longer input is refused before anything is computed",
        );
    });
    let mut temperature = match state.scale {
        ScoreScale::Temperature(t) => Some(t),
        _ => None,
    };
    egui::ComboBox::from_label("Score scale")
        .selected_text(match state.scale {
            ScoreScale::InvSqrtDHead => "1/√d_head",
            ScoreScale::None => "none",
            ScoreScale::Temperature(_) => "temperature",
        })
        .show_ui(ui, |ui| {
            // (The combo box's own hover text is set on its response below.)
            ui.selectable_value(&mut state.scale, ScoreScale::InvSqrtDHead, "1/√d_head");
            ui.selectable_value(&mut state.scale, ScoreScale::None, "none");
            if ui
                .selectable_label(temperature.is_some(), "temperature")
                .clicked()
                && temperature.is_none()
            {
                temperature = Some(1.0);
                state.scale = ScoreScale::Temperature(1.0);
            }
        })
        .response
        .on_hover_text(
            "What q·k is multiplied by before the softmax: 1/√d_head (the standard), 1 (none: \
             sharper maps), or 1/√d_head divided by a temperature (the CLI's --scale)",
        );
    if let Some(mut t) = temperature
        && ui
            .add(
                egui::Slider::new(&mut t, 0.05..=10.0)
                    .logarithmic(true)
                    .text("temperature"),
            )
            .on_hover_text("Above 1 flattens every map, below 1 sharpens it")
            .changed()
    {
        state.scale = ScoreScale::Temperature(t);
    }
}
