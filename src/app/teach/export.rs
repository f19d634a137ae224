//! Export of the teaching figure on screen, for slides: the walkthrough's current step or the
//! mistake comparison, as PNG or SVG (by the path's extension), drawn by `render::teach` from
//! the same numbers the view shows.

use super::settings::TeachTab;
use crate::analysis::explain::{Explanation, WalkStep};
use crate::analysis::teach::MistakeEffect;
use crate::app::state::ViewKind;
use crate::app::{AppState, AttnApp};
use crate::engine::AttentionRun;
use crate::render::{self, teach::Comparison, teach::ComparisonPanel, teach::TeachStyle};
use std::path::Path;
use std::sync::Arc;

/// What the teaching view on screen would export.
pub enum TeachFigure {
    /// One walkthrough step of one query.
    Step {
        /// The numbers.
        explanation: Box<Explanation>,
        /// Which step.
        step: WalkStep,
        /// The tokens' labels.
        labels: Vec<String>,
    },
    /// A mistake beside the correct version, for one head.
    Comparison {
        /// The measured effect with both runs.
        effect: Arc<MistakeEffect>,
        /// The head shown.
        layer_idx: usize,
        /// See `layer_idx`.
        head_idx: usize,
        /// The tokens' labels.
        labels: Vec<String>,
    },
}

/// A file name for the figure on screen.
pub fn default_name(state: &AppState) -> String {
    match state.teach.tab {
        TeachTab::Mistakes => format!(
            "mistake_{}_L{}_H{}.png",
            state.teach.mistake.map_or("none", |m| m.name()),
            state.layer_idx,
            state.head_idx
        ),
        _ => format!(
            "walkthrough_{}_L{}_H{}.png",
            super::walkthrough::step_at(state.teach.step).name(),
            state.layer_idx,
            state.head_idx
        ),
    }
}

/// True when the extension of `path` asks for SVG.
fn wants_svg(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
}

impl AttnApp {
    /// The teaching figure on screen, if the view shows one.
    pub fn teach_figure(&mut self) -> Option<TeachFigure> {
        if self.state.view != ViewKind::Teach || self.external.is_some() {
            return None;
        }
        let run = self.current.as_ref().map(|(_, r)| r.clone())?;
        let labels = self.shown_labels(&run).as_ref().clone();
        match self.state.teach.tab {
            TeachTab::Walkthrough => {
                let (trace, _) = super::traced_head(&run, &self.state)?;
                let n = run.tokens.len();
                let query = self
                    .state
                    .selected_queries
                    .first()
                    .copied()
                    .unwrap_or(n.saturating_sub(1))
                    .min(n.saturating_sub(1));
                let explanation =
                    Explanation::from_trace(trace, self.state.head_idx, query).ok()?;
                Some(TeachFigure::Step {
                    explanation: Box::new(explanation),
                    step: super::walkthrough::step_at(self.state.teach.step),
                    labels,
                })
            }
            TeachTab::Mistakes => Some(TeachFigure::Comparison {
                effect: self.mistake_effect()?,
                layer_idx: self.state.layer_idx,
                head_idx: self.state.head_idx,
                labels,
            }),
            TeachTab::Neurons | TeachTab::MultiHead | TeachTab::Cost => None,
        }
    }

    /// Writes the teaching figure on screen to `path` (PNG, or SVG for `.svg`).
    pub fn export_teach_figure(&mut self, path: &Path) -> Result<(), String> {
        let figure = self.teach_figure().ok_or_else(|| {
            "nothing to export: open a walkthrough step or a mistake comparison first".to_owned()
        })?;
        write_figure(&figure, self, path)
    }
}

/// The comparison `render::teach` draws for `effect`'s head (`layer_idx`, `head_idx`): both
/// maps with the cells each side's mask forbids, the lesson and the measured summary. `None`
/// when the head does not exist.
pub fn comparison(
    effect: &MistakeEffect,
    layer_idx: usize,
    head_idx: usize,
    labels: &[String],
) -> Option<Comparison> {
    // Each side's masked cells are those its own run applied.
    let side = |run: &AttentionRun, title: String| {
        let map = run.maps.head(layer_idx, head_idx)?;
        let n = map.nrows();
        let mask = &run.mask;
        let is_pad: Vec<bool> = run
            .tokens
            .iter()
            .map(crate::tokenize::Token::is_pad)
            .collect();
        let all: Vec<usize> = (0..n).collect();
        Some(ComparisonPanel {
            title,
            map: map.as_ref().clone(),
            masked: render::view::masked_cells(mask, n, &is_pad, &all),
        })
    };
    Some(Comparison {
        title: format!(
            "{} · layer {layer_idx}, head {head_idx}",
            super::mistakes::toggle_label(effect.mistake)
        ),
        lesson: effect.lesson.to_owned(),
        summary: effect.summary.clone(),
        labels: labels.to_vec(),
        correct: side(&effect.correct, "correct".to_owned())?,
        mistaken: side(
            &effect.mistaken,
            format!("with the mistake ({})", effect.mistake),
        )?,
    })
}

/// How figures are drawn for `state`.
pub fn style(state: &AppState) -> TeachStyle {
    TeachStyle {
        colormap: state.colormap,
        pixel_scale: 1,
    }
}

/// Draws `figure` through `render::teach` and writes it (SVG for `.svg`, else PNG).
fn write_figure(figure: &TeachFigure, app: &AttnApp, path: &Path) -> Result<(), String> {
    let style = style(&app.state);
    let svg = wants_svg(path);
    let written = match figure {
        TeachFigure::Step {
            explanation,
            step,
            labels,
        } => {
            if svg {
                render::teach::step_svg(explanation, *step, labels, &style)
                    .and_then(|s| render::write_svg(&s, path))
            } else {
                render::teach::step_figure(explanation, *step, labels, &style)
                    .and_then(|img| render::write_png(&img, path))
            }
        }
        TeachFigure::Comparison {
            effect,
            layer_idx,
            head_idx,
            labels,
        } => {
            let c = comparison(effect, *layer_idx, *head_idx, labels)
                .ok_or_else(|| format!("head {layer_idx}.{head_idx} does not exist"))?;
            if svg {
                render::teach::comparison_svg(&c, &style).and_then(|s| render::write_svg(&s, path))
            } else {
                render::teach::comparison_figure(&c, &style)
                    .and_then(|img| render::write_png(&img, path))
            }
        }
    };
    written.map_err(|e| e.to_string())
}
