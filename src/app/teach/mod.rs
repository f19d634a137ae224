//! Teaching mode: attention step by step with the user's own numbers, the neuron and dimension
//! view with its live dimension mask, multi-head, cost, the classic mistakes side by side,
//! lessons and presenter mode. One view per file; [`TeachPanel`] switches between them.
//!
//! The views read runs, traces and figures; they never compute maps or pixels themselves. The
//! numbers come from the engine's [`crate::engine::Trace`] (asked for by
//! [`crate::app::AppState::job_key`] while a teaching view that needs it is shown), the
//! explanations and effects from `analysis`, the figures from `render`, and anything that needs
//! the model runs on the worker thread.

pub mod cost;
pub mod export;
mod figure_texture;
pub mod lessons;
pub mod mistakes;
mod multihead;
mod neurons;
pub mod next;
pub mod presenter;
pub mod sampling;
mod texture;
pub mod walkthrough;

pub use crate::app::state::teach as settings;
use crate::app::view::{View, ViewCx};
use crate::engine::{AppliedMask, HeadTrace, Trace};
use crate::pipeline::Run;
pub use settings::{TeachSettings, TeachTab};
use std::sync::Arc;

/// What a teaching view reads and changes: the panels' [`ViewCx`] plus the run on screen and
/// its token labels.
pub struct TeachCx<'a, 'b> {
    /// The app's view context (settings to change, model info, applied mask, jobs).
    pub cx: &'a mut ViewCx<'b>,
    /// The run on screen.
    pub run: Arc<Run>,
    /// Its tokens' display labels.
    pub labels: Arc<Vec<String>>,
}

impl TeachCx<'_, '_> {
    /// The query token the views explain: the first selected token, else the last token.
    pub fn query_idx(&self, n_tokens: usize) -> usize {
        let last = n_tokens.saturating_sub(1);
        self.cx
            .state
            .selected_queries
            .first()
            .copied()
            .unwrap_or(last)
            .min(last)
    }

    /// An id of the run on screen (for texture keys).
    pub fn run_id(&self) -> usize {
        Arc::as_ptr(&self.run) as usize
    }

    /// The mask the run on screen applied.
    pub fn mask(&self) -> &AppliedMask {
        &self.run.mask
    }

    /// True while the requested run has not arrived.
    pub fn busy(&self) -> bool {
        self.cx.jobs.busy
    }

    /// Says why there is nothing to show yet: the trace of the selected layer is being computed.
    pub fn waiting_for_trace(&self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            if self.busy() {
                ui.spinner();
            }
            ui.label(format!(
                "tracing layer {} of the model (the numbers inside one head)…",
                self.cx.state.layer_idx
            ));
        });
    }

    /// The sizes of the model on screen, once known.
    pub fn model_dims(&self) -> Option<ModelDims> {
        match (&self.cx.state.model_dir, self.cx.model_info) {
            (None, _) => {
                let demo = &self.cx.state.demo;
                Some(ModelDims {
                    name: "demo".to_owned(),
                    layers: demo.layers,
                    heads: demo.heads,
                    kv_heads: demo.heads,
                    d_model: demo.d_model,
                    d_head: demo.d_model / demo.heads.max(1),
                    positional: format!("{:?}", demo.positional).to_lowercase(),
                    causal: false,
                })
            }
            (Some(_), Some(info)) => Some(ModelDims {
                name: info.name.clone(),
                layers: info.layers,
                heads: info.heads,
                kv_heads: info.kv_heads,
                d_model: info.d_model,
                d_head: info.d_head,
                positional: info.positional.clone(),
                causal: info.causal,
            }),
            (Some(_), None) => None,
        }
    }

    /// A short plain-language explanation, in a frame.
    pub fn explain(&self, ui: &mut egui::Ui, text: &str) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(text);
        });
    }
}

/// The sizes of a model that the teaching views talk about.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDims {
    /// The model's name.
    pub name: String,
    /// Layers.
    pub layers: usize,
    /// Query heads per layer.
    pub heads: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Width of one head.
    pub d_head: usize,
    /// The positional encoding, in words.
    pub positional: String,
    /// True when the model is causal by construction.
    pub causal: bool,
}

/// The trace of the selected layer in `run` and its selected head, when the run has it.
pub fn traced_head<'r>(
    run: &'r Run,
    state: &crate::app::AppState,
) -> Option<(&'r Trace, &'r HeadTrace)> {
    let trace = run
        .trace
        .as_ref()
        .filter(|t| t.layer_idx == state.layer_idx)?;
    let head = trace.heads.get(state.head_idx)?;
    Some((trace, head))
}

/// One row of tokens; clicking one makes it the query the teaching views explain.
fn query_picker_ui(ui: &mut egui::Ui, labels: &[String], cx: &mut ViewCx<'_>) {
    let n = labels.len();
    if n == 0 {
        return;
    }
    let current = cx
        .state
        .selected_queries
        .first()
        .copied()
        .unwrap_or(n - 1)
        .min(n - 1);
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 3.0;
        ui.label("query:");
        for (i, label) in labels.iter().enumerate() {
            let shown = if label.trim().is_empty() {
                "␣"
            } else {
                label
            };
            let response = ui.selectable_label(i == current, shown);
            let name = format!("query token {i}: {label}");
            let selected = i == current;
            response.widget_info(|| {
                egui::WidgetInfo::selected(egui::Role::Button, true, selected, &name)
            });
            if response.clicked() {
                cx.state.selected_queries = vec![i];
            }
        }
    });
}

/// The teaching views and their switcher.
#[derive(Default)]
pub struct TeachPanel {
    /// Step by step through one head.
    pub walkthrough: walkthrough::WalkthroughView,
    neurons: neurons::NeuronView,
    multihead: multihead::MultiHeadView,
    cost: cost::CostView,
    /// The mistakes side by side.
    pub mistakes: mistakes::MistakesView,
}

impl View for TeachPanel {
    /// The switcher and the chosen teaching view of the run on screen.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        if let Some(run) = cx.run.clone() {
            let labels = cx.labels.clone();
            self.draw(ui, &run, &labels, cx);
        }
    }
}

impl TeachPanel {
    /// Draws the switcher and the chosen teaching view of `run`.
    pub fn draw(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &Arc<Vec<String>>,
        cx: &mut ViewCx<'_>,
    ) {
        ui.horizontal_wrapped(|ui| {
            for tab in TeachTab::ALL {
                ui.selectable_value(&mut cx.state.teach.tab, tab, tab.label());
            }
        });
        query_picker_ui(ui, labels, cx);
        ui.separator();
        if cx.external.is_some() && cx.state.teach.tab != TeachTab::Cost {
            ui.label(
                "The teaching views show a model at work; an attention file has only its maps. \
                 Go back to a model (Model section) to use them.",
            );
            return;
        }
        let mut tc = TeachCx {
            cx,
            run: run.clone(),
            labels: labels.clone(),
        };
        egui::ScrollArea::vertical()
            .id_salt("teach-scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| match tc.cx.state.teach.tab {
                TeachTab::Walkthrough => self.walkthrough.ui(ui, &mut tc),
                TeachTab::Neurons => self.neurons.ui(ui, &mut tc),
                TeachTab::MultiHead => self.multihead.ui(ui, &mut tc),
                TeachTab::Cost => self.cost.ui(ui, &mut tc),
                TeachTab::Mistakes => self.mistakes.ui(ui, &mut tc),
            });
    }
}
