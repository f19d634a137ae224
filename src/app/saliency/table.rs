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
/// per token) and their rank correlations. `chosen` is the method the view colours by.
pub fn table_ui(
    ui: &mut egui::Ui,
    correlations: &mut Correlations,
    columns: &[Column],
    labels: &[String],
    chosen: Method,
) {
    ui.strong("All methods for this target");
    let Some(first) = columns
        .iter()
        .find_map(|(_, r)| r.as_ref().and_then(|r| r.as_ref().ok()))
    else {
        ui.label("computing…");
        return;
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
}
