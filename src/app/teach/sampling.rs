//! The walkthrough's last step: from the model's next-token distribution to text. The LM head's
//! log-probabilities after the walkthrough's query token (computed on the worker with the run,
//! `super::next`) are reshaped by the temperature, top-k and top-p sliders
//! (`analysis::sampling`), listed beside the model's own probabilities, and "Sample" draws one
//! token with a seed and shows the text it continues.
//!
//! The demo model has no vocabulary and no LM head: the step says so and computes nothing.

use super::TeachCx;
use super::next::{NextChoices, NextOutcome};
use super::walkthrough::{SAMPLING_STEP, STEP_COUNT};
use crate::analysis::sampling::{self, Distribution, SamplingSettings};
use crate::app::AttnApp;
use crate::app::teach::settings::SamplingControls;
use crate::tokenize::{NEWLINE_MARK, SPACE_MARK, TAB_MARK};
use std::sync::Arc;

/// How many of the most likely tokens the step lists.
const SHOWN_RANKS: usize = 10;

/// The sampling step's runtime state: the reshaped distribution (recomputed only when the
/// choices or the settings change) and the last draw.
#[derive(Default)]
pub struct SamplingView {
    shown: Option<Shown>,
    drawn: Option<Drawn>,
}

/// A distribution made from one set of choices with one set of settings.
struct Shown {
    choices: Arc<NextChoices>,
    settings: SamplingSettings,
    after: Distribution,
}

/// One draw: the choices and settings it was made with, its seed and the rank it gave.
struct Drawn {
    choices: Arc<NextChoices>,
    settings: SamplingSettings,
    seed: u64,
    rank: usize,
}

impl AttnApp {
    /// The sampling step's next-token choices for the run on screen, once computed.
    pub(crate) fn shown_next_choices(&self) -> Option<NextOutcome> {
        let (key, _) = self.current.as_ref()?;
        self.next_choices
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n.clone())
    }
}

/// A probability as a percentage, small ones in scientific notation, 0 as "0 (cut)".
fn percent(p: f64) -> String {
    if p <= 0.0 {
        "0 (cut)".to_owned()
    } else if p >= 1e-4 {
        format!("{:.2}%", p * 100.0)
    } else {
        format!("{:.1e}%", p * 100.0)
    }
}

/// A token label with its whitespace marks turned back into whitespace, for running text.
fn text_from_label(label: &str) -> String {
    label
        .chars()
        .map(|c| match c {
            SPACE_MARK => ' ',
            NEWLINE_MARK => '\n',
            TAB_MARK => '\t',
            c => c,
        })
        .collect()
}

impl SamplingView {
    /// Draws the step.
    pub fn ui(&mut self, ui: &mut egui::Ui, tc: &mut TeachCx<'_, '_>) {
        let n = tc.run.tokens.len();
        let query_idx = tc.query_idx(n);
        let query_label = tc.labels.get(query_idx).cloned().unwrap_or_default();
        ui.horizontal_wrapped(|ui| {
            if ui.button("Back").clicked() {
                tc.cx.state.teach.step = SAMPLING_STEP - 1;
            }
            ui.add_enabled(false, egui::Button::new("Next"));
            ui.heading(format!("{}. Sampling the next token", SAMPLING_STEP + 1));
            ui.label(format!(
                "· after token {query_idx} \"{query_label}\" · step {STEP_COUNT} of {STEP_COUNT}"
            ));
        });
        if tc.cx.state.model_dir.is_none() {
            tc.explain(
                ui,
                "The demo model has no vocabulary and no LM head, so it predicts no next token. \
                 Open a causal language model (GPT-2, or a Llama-family model such as SmolLM2) \
                 to sample from its real next-token distribution.",
            );
            return;
        }
        let choices = match tc.cx.next_choices.clone() {
            None => {
                ui.horizontal(|ui| {
                    if tc.busy() {
                        ui.spinner();
                    }
                    ui.label("computing the next-token distribution (the LM head)…");
                });
                return;
            }
            Some(Err(e)) => {
                tc.explain(ui, &format!("No next-token distribution: {e}"));
                return;
            }
            Some(Ok(c)) => c,
        };
        let vocab = choices.ranked.len();
        tc.explain(
            ui,
            &format!(
                "After the last layer, the LM head turns the hidden state of token {} \"{}\" \
                 into one score (logit) per vocabulary token, {vocab} of them, and the softmax \
                 turns those into probabilities: the model's guess at the next token (left \
                 column). Generating text means drawing one token. Temperature divides the \
                 logits first (below 1 sharpens the distribution, above 1 flattens it, 0 always \
                 takes the most likely token: greedy decoding); top-k keeps only the k most \
                 likely tokens; top-p keeps the fewest most likely tokens whose probabilities \
                 add up to p. What is left is renormalised (right column) and one token is \
                 drawn from it.",
                choices.position,
                tc.labels.get(choices.position).cloned().unwrap_or_default(),
            ),
        );
        let mut controls = tc.cx.state.teach.sampling;
        controls_ui(ui, &mut controls);
        let settings = controls.settings();
        let after = self.distribution(&choices, settings);
        let mut draw_now = false;
        ui.horizontal(|ui| {
            let name = ui.label("seed");
            ui.add(egui::DragValue::new(&mut controls.seed))
                .labelled_by(name.id);
            draw_now = ui
                .button("Sample")
                .on_hover_text("Draw one token from the right column with this seed")
                .clicked();
        });
        if draw_now {
            if let Some(rank) = sampling::draw(&after, controls.seed) {
                self.drawn = Some(Drawn {
                    choices: choices.clone(),
                    settings,
                    seed: controls.seed,
                    rank,
                });
            }
            controls.seed = controls.seed.wrapping_add(1);
        }
        if controls != tc.cx.state.teach.sampling {
            tc.cx.state.teach.sampling = controls;
        }
        self.drawn_ui(ui, tc, &choices, settings, &after);
        table_ui(ui, &choices, &after);
    }

    /// The distribution of `choices` under `settings`, from the last frame's when neither
    /// changed.
    fn distribution(
        &mut self,
        choices: &Arc<NextChoices>,
        settings: SamplingSettings,
    ) -> Distribution {
        let fresh = self
            .shown
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(&s.choices, choices) && s.settings == settings);
        if !fresh {
            self.shown = Some(Shown {
                choices: choices.clone(),
                settings,
                after: choices.ranked.distribution(&settings),
            });
        }
        self.shown
            .as_ref()
            .map(|s| s.after.clone())
            .unwrap_or_default()
    }

    /// The last draw, while it belongs to these choices and settings: the token, and the text
    /// it continues.
    fn drawn_ui(
        &self,
        ui: &mut egui::Ui,
        tc: &TeachCx<'_, '_>,
        choices: &Arc<NextChoices>,
        settings: SamplingSettings,
        after: &Distribution,
    ) {
        let Some(drawn) = self
            .drawn
            .as_ref()
            .filter(|d| Arc::ptr_eq(&d.choices, choices) && d.settings == settings)
        else {
            return;
        };
        let Some(id) = choices.ranked.id(drawn.rank) else {
            return;
        };
        let label = choices.label(id);
        let p = after.probs.get(drawn.rank).copied().unwrap_or(0.0);
        ui.label(format!(
            "seed {} drew \"{label}\": rank {}, p {}",
            drawn.seed,
            drawn.rank + 1,
            percent(p)
        ));
        let prompt = prompt_text(tc, choices.position);
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 0.0;
            ui.label(prompt);
            ui.label(
                egui::RichText::new(text_from_label(&label))
                    .strong()
                    .underline(),
            );
        });
    }
}

/// The input up to and including token `position`: the typed text where the tokens say where
/// they came from, else the tokens' labels.
fn prompt_text(tc: &TeachCx<'_, '_>, position: usize) -> String {
    let run = &tc.run;
    let end = run
        .tokens
        .get(position)
        .and_then(|t| t.byte_span)
        .map(|(_, end)| end);
    if let (Some(text), Some(end)) = (&run.text, end)
        && let Some(prefix) = text.get(..end)
    {
        return prefix.to_owned();
    }
    tc.labels
        .iter()
        .take(position + 1)
        .map(|l| text_from_label(l))
        .collect()
}

/// The temperature, top-k and top-p sliders.
fn controls_ui(ui: &mut egui::Ui, controls: &mut SamplingControls) {
    ui.horizontal_wrapped(|ui| {
        ui.add(
            egui::Slider::new(
                &mut controls.temperature,
                0.0..=SamplingControls::MAX_TEMPERATURE,
            )
            .text("temperature"),
        );
        if controls.temperature <= 0.0 {
            ui.label("(greedy)");
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.add(
            egui::Slider::new(&mut controls.top_k, 0..=SamplingControls::MAX_TOP_K).text("top-k"),
        );
        if controls.top_k == 0 {
            ui.label("(0: off)");
        }
    });
    ui.horizontal_wrapped(|ui| {
        ui.add(egui::Slider::new(&mut controls.top_p, 0.0..=1.0).text("top-p"));
        if controls.top_p >= 1.0 {
            ui.label("(1: off)");
        }
    });
}

/// The most likely tokens: the model's probability and the one the draw uses.
fn table_ui(ui: &mut egui::Ui, choices: &NextChoices, after: &Distribution) {
    let model = choices.ranked.softmax(1.0);
    egui::Grid::new("teach-sampling-table")
        .striped(true)
        .spacing([14.0, 4.0])
        .show(ui, |ui| {
            ui.strong("rank");
            ui.strong("next token");
            ui.strong("model (T = 1)");
            ui.strong("after temperature, top-k, top-p");
            ui.end_row();
            for rank in 0..SHOWN_RANKS.min(choices.ranked.len()) {
                let Some(id) = choices.ranked.id(rank) else {
                    break;
                };
                ui.label((rank + 1).to_string());
                ui.label(format!("\"{}\"", choices.label(id)));
                for p in [model.get(rank), after.probs.get(rank)] {
                    let p = p.copied().unwrap_or(0.0);
                    ui.add(
                        egui::ProgressBar::new(p as f32)
                            .desired_width(160.0)
                            .text(percent(p)),
                    );
                }
                ui.end_row();
            }
        });
    let vocab = choices.ranked.len();
    ui.label(if after.kept == 1 {
        format!("1 of {vocab} tokens can be drawn")
    } else {
        format!("{} of {vocab} tokens can be drawn", after.kept)
    });
}
