//! The method table: every method's score of every token side by side for the current target
//! (as LIT shows them), and the Spearman rank correlation between each pair of methods.
//! Correlations are computed once per set of results, not every frame.

use super::api::{Attribution, Method, rank_correlation};
use crate::render::format_significant;
use std::sync::Arc;

/// Tallest the score table grows before it scrolls, in points.
const TABLE_MAX_HEIGHT: f32 = 260.0;

/// One method's column: the method and its result, if it has arrived.
pub type Column = (Method, Option<Result<Arc<Attribution>, String>>);

/// The rank correlations of a set of results, with the results they were computed from.
#[derive(Default)]
pub struct Correlations {
    /// Addresses of the attributions, in column order (0 where a column has none).
    from: Vec<usize>,
    /// `[i][j]`: Spearman's ρ of columns i and j, when both have scores of the same length.
    values: Vec<Vec<Option<f64>>>,
}

impl Correlations {
    /// The correlations of `columns`, recomputed only when the results change.
    fn update(&mut self, columns: &[Column]) -> &[Vec<Option<f64>>] {
        let scores: Vec<Option<&Arc<Attribution>>> = columns
            .iter()
            .map(|(_, r)| r.as_ref().and_then(|r| r.as_ref().ok()))
            .collect();
        let from: Vec<usize> = scores
            .iter()
            .map(|a| a.map_or(0, |a| Arc::as_ptr(a) as usize))
            .collect();
        if from != self.from {
            self.values = scores
                .iter()
                .map(|a| {
                    scores
                        .iter()
                        .map(|b| match (a, b) {
                            (Some(a), Some(b)) if a.scores.len() == b.scores.len() => {
                                rank_correlation(&a.scores, &b.scores)
                            }
                            _ => None,
                        })
                        .collect()
                })
                .collect();
            self.from = from;
        }
        &self.values
    }
}

/// Draws the table of `columns` (scores per token; `labels` name the rows when the scores are
/// per token) and their rank correlations. `chosen` is the method the view colours by. True when
/// its "Export table CSV" button was clicked (enabled once every column has arrived).
pub fn table_ui(
    ui: &mut egui::Ui,
    correlations: &mut Correlations,
    columns: &[Column],
    labels: &[String],
    chosen: Method,
) -> bool {
    let complete = columns.iter().all(|(_, r)| r.is_some());
    let export = ui
        .horizontal(|ui| {
            ui.strong("All methods for this target");
            ui.add_enabled(complete, egui::Button::new("Export table CSV"))
                .on_hover_text("Write every method's score of every token as one CSV file")
                .on_disabled_hover_text("Available once every method has been computed")
                .clicked()
        })
        .inner;
    let Some(first) = columns
        .iter()
        .find_map(|(_, r)| r.as_ref().and_then(|r| r.as_ref().ok()))
    else {
        ui.label("computing…");
        return export;
    };
    let rows = first.scores.len();
    let row_label = |i: usize| {
        if rows == labels.len() {
            labels.get(i).cloned().unwrap_or_default()
        } else {
            first.labels.get(i).cloned().unwrap_or_default()
        }
    };
    egui::ScrollArea::both()
        .id_salt("saliency-table-scroll")
        .max_height(TABLE_MAX_HEIGHT)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("saliency-table")
                .striped(true)
                .num_columns(columns.len() + 1)
                .show(ui, |ui| {
                    ui.strong("token");
                    for (m, _) in columns {
                        let name = m.to_string();
                        if *m == chosen {
                            ui.strong(format!("[{name}]"));
                        } else {
                            ui.label(name);
                        }
                    }
                    ui.end_row();
                    for i in 0..rows {
                        ui.label(format!("{i} {:?}", row_label(i)));
                        for (_, r) in columns {
                            match r {
                                None => ui.label("…"),
                                Some(Err(e)) => ui.label("error").on_hover_text(e),
                                Some(Ok(a)) => match a.scores.get(i) {
                                    Some(v) => ui.label(format_significant(f64::from(*v))),
                                    None => ui.label("-"),
                                },
                            };
                        }
                        ui.end_row();
                    }
                });
        });
    ui.add_space(6.0);
    ui.strong("Spearman rank correlation between methods");
    let values = correlations.update(columns);
    egui::Grid::new("saliency-correlations")
        .striped(true)
        .num_columns(columns.len() + 1)
        .show(ui, |ui| {
            ui.label("");
            for (m, _) in columns {
                ui.label(m.to_string());
            }
            ui.end_row();
            for (i, (m, _)) in columns.iter().enumerate() {
                ui.label(m.to_string());
                for j in 0..columns.len() {
                    let v = values.get(i).and_then(|row| row.get(j)).copied().flatten();
                    ui.label(v.map_or("-".to_owned(), |v| format!("{v:.2}")));
                }
                ui.end_row();
            }
        });
    export
}

/// The chosen method's scores with the ablations (`ablated`) and without them (`plain`), per
/// token, with their difference and rank correlation; `ablations` names the heads.
pub fn ablation_table_ui(
    ui: &mut egui::Ui,
    ablated: Option<&Result<Arc<Attribution>, String>>,
    plain: Option<&Result<Arc<Attribution>, String>>,
    labels: &[String],
    ablations: &[String],
) {
    ui.strong(format!(
        "With and without the ablations ({})",
        ablations.join(", ")
    ));
    let (a, p) = match (ablated, plain) {
        (Some(Ok(a)), Some(Ok(p))) => (a, p),
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            ui.label(format!("cannot compare: {e}"));
            return;
        }
        _ => {
            ui.label("computing…");
            return;
        }
    };
    if a.scores.len() != p.scores.len() {
        ui.label("the two runs scored different tokens");
        return;
    }
    let rows = a.scores.len();
    let row_label = |i: usize| {
        if rows == labels.len() {
            labels.get(i).cloned().unwrap_or_default()
        } else {
            a.labels.get(i).cloned().unwrap_or_default()
        }
    };
    let fmt = |v: f32| format_significant(f64::from(v));
    ui.label(format!(
        "T = {} with, {} without (ΔT = {}); Spearman ρ of the scores {}",
        format_significant(a.target.value),
        format_significant(p.target.value),
        format_significant(a.target.value - p.target.value),
        rank_correlation(&a.scores, &p.scores).map_or("-".to_owned(), |r| format!("{r:.2}"))
    ));
    egui::ScrollArea::both()
        .id_salt("saliency-ablation-scroll")
        .max_height(TABLE_MAX_HEIGHT)
        .auto_shrink([false, true])
        .show(ui, |ui| {
            egui::Grid::new("saliency-ablation-table")
                .striped(true)
                .num_columns(4)
                .show(ui, |ui| {
                    ui.strong("token");
                    ui.strong("ablated");
                    ui.strong("unablated");
                    ui.strong("difference");
                    ui.end_row();
                    for i in 0..rows {
                        let (x, y) = (a.scores[i], p.scores[i]);
                        ui.label(format!("{i} {:?}", row_label(i)));
                        ui.label(fmt(x));
                        ui.label(fmt(y));
                        ui.label(fmt(x - y));
                        ui.end_row();
                    }
                });
        });
}
