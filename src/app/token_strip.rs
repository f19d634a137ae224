//! The token strip: click tokens to select query rows, and chart the selected rows.
//!
//! Click selects one token as the query, Shift-click adds or removes it, and clicking the only
//! selected token again clears the selection. Below the strip, a bar chart shows the selected rows
//! of the heatmap's current matrix, combined by mean or sum. The combined row is cached and only
//! recomputed when the run, the heatmap's selection or the chosen rows change.

use super::theme;
use crate::analysis::{LayerSelection, ViewSpec, combine_rows, view_matrix};
use crate::pipeline::Run;
use egui::{Response, Sense, Stroke, StrokeKind, TextStyle, TextWrapMode, WidgetInfo, WidgetText};
use egui_plot::{Bar, BarChart, Plot};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};

/// Height of the bar chart, in points.
const CHART_HEIGHT: f32 = 140.0;
/// Tallest the token strip grows before it scrolls, in points.
const STRIP_MAX_HEIGHT: f32 = 96.0;
/// At most this many selected tokens are named in the caption.
const CAPTION_TOKENS: usize = 4;

/// How several selected query rows combine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryCombine {
    /// Average the rows.
    #[default]
    Mean,
    /// Add the rows.
    Sum,
}

/// What the strip reads and changes of the settings: the selected queries, how their rows
/// combine, and the heatmap's selection the rows are taken from.
pub struct Selection<'a> {
    /// The selected query tokens.
    pub queries: &'a mut Vec<usize>,
    /// How several selected rows combine.
    pub combine: &'a mut QueryCombine,
    /// The heatmap's layer and heads.
    pub spec: ViewSpec,
}

/// What the cached row was computed from.
#[derive(Clone, Debug, PartialEq)]
struct RowKey {
    spec: ViewSpec,
    selected: Vec<usize>,
    combine: QueryCombine,
}

/// The combined row of the selected queries.
struct RowCache {
    /// The run it came from (a weak handle keeps its address from being reused).
    run: Weak<Run>,
    key: RowKey,
    /// The combined row, or why there is none.
    result: Result<CombinedRow, String>,
}

/// The combined row and the tokens it covers.
struct CombinedRow {
    /// (token index of the key, value), in matrix column order.
    values: Vec<(usize, f32)>,
    /// Selected tokens that are rows of the matrix.
    used: Vec<usize>,
    /// Selected tokens the matrix hides.
    hidden: usize,
}

/// The token strip's runtime state.
#[derive(Default)]
pub struct TokenStrip {
    cache: Option<RowCache>,
}

impl TokenStrip {
    /// Draws the strip and the selected rows' bar chart. `labels` are the tokens' display
    /// labels, one per token.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &Arc<Vec<String>>,
        state: Selection<'_>,
    ) {
        ui.horizontal(|ui| {
            ui.label("Tokens");
            ui.label(
                egui::RichText::new("click: select query · shift-click: add/remove")
                    .small()
                    .weak(),
            );
            ui.separator();
            ui.label("rows:");
            ui.selectable_value(state.combine, QueryCombine::Mean, "mean");
            ui.selectable_value(state.combine, QueryCombine::Sum, "sum");
            if !state.queries.is_empty() && ui.small_button("clear").clicked() {
                state.queries.clear();
            }
        });
        egui::ScrollArea::vertical()
            .id_salt("token-strip-scroll")
            .max_height(STRIP_MAX_HEIGHT)
            .auto_shrink([false, true])
            .show(ui, |ui| strip_ui(ui, run, labels, state.queries));

        if state.queries.is_empty() {
            return;
        }
        let key = RowKey {
            spec: state.spec,
            selected: state.queries.clone(),
            combine: *state.combine,
        };
        let fresh = self
            .cache
            .as_ref()
            .is_some_and(|c| std::ptr::eq(c.run.as_ptr(), Arc::as_ptr(run)) && c.key == key);
        if !fresh {
            let result = combined_row(run, &key);
            self.cache = Some(RowCache {
                run: Arc::downgrade(run),
                key,
                result,
            });
        }
        let Some(cache) = &self.cache else {
            return;
        };
        match &cache.result {
            Ok(row) => chart_ui(ui, labels, &cache.key, row),
            Err(e) => {
                ui.label(format!("no row to chart: {e}"));
            }
        }
    }
}

/// The wrapping row of token chips.
fn strip_ui(ui: &mut egui::Ui, run: &Run, labels: &[String], selected: &mut Vec<usize>) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 3.0;
        for (i, token) in run.tokens.iter().enumerate() {
            let is_selected = selected.contains(&i);
            let label = labels.get(i).map_or(token.text.as_str(), String::as_str);
            let response = token_chip(ui, i, label, token.is_special, is_selected).on_hover_text(
                format!("token {i}: {label}\n{:?} · id {}", token.text, token.id),
            );
            if response.clicked() {
                let shift = ui.input(|input| input.modifiers.shift);
                click_token(selected, i, shift);
            }
        }
    });
}

/// Applies a click on token `i` to `selected`: Shift toggles membership, a plain click selects
/// only `i`, or clears when `i` already is the only selected token.
fn click_token(selected: &mut Vec<usize>, i: usize, shift: bool) {
    if shift {
        if selected.contains(&i) {
            selected.retain(|&q| q != i);
        } else {
            selected.push(i);
        }
    } else if selected.as_slice() == [i] {
        selected.clear();
    } else {
        *selected = vec![i];
    }
}

/// One clickable token, with the accessible label `token {i}: {text}`.
fn token_chip(ui: &mut egui::Ui, i: usize, text: &str, special: bool, selected: bool) -> Response {
    let shown = if text.trim().is_empty() { "␣" } else { text };
    let galley = WidgetText::from(shown).into_galley(
        ui,
        Some(TextWrapMode::Extend),
        f32::INFINITY,
        TextStyle::Button,
    );
    let padding = ui.spacing().button_padding;
    let size = (galley.size() + 2.0 * padding).max(egui::vec2(0.0, ui.spacing().interact_size.y));
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    response.widget_info(|| {
        WidgetInfo::selected(
            egui::Role::Button,
            ui.is_enabled(),
            selected,
            format!("token {i}: {text}"),
        )
    });
    if ui.is_rect_visible(rect) {
        let dark = ui.visuals().dark_mode;
        let visuals = ui.style().interact_selectable(&response, selected);
        let (fill, stroke, color) = if selected {
            (
                theme::selected_token_fill(dark),
                Stroke::new(1.0, theme::selection_outline(dark)),
                ui.visuals().strong_text_color(),
            )
        } else if special {
            (
                visuals.weak_bg_fill,
                visuals.bg_stroke,
                ui.visuals().weak_text_color(),
            )
        } else {
            (
                visuals.weak_bg_fill,
                visuals.bg_stroke,
                visuals.text_color(),
            )
        };
        let painter = ui.painter();
        painter.rect(
            rect,
            visuals.corner_radius,
            fill,
            stroke,
            StrokeKind::Inside,
        );
        let pos = rect.center() - 0.5 * galley.size();
        painter.galley(pos, galley, color);
    }
    response
}

/// The selected rows of the heatmap's current matrix, combined.
fn combined_row(run: &Run, key: &RowKey) -> Result<CombinedRow, String> {
    let is_special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
    let (matrix, kept) = view_matrix(&run.maps, &is_special, &key.spec)?;
    let mut rows = Vec::with_capacity(key.selected.len());
    let mut used = Vec::with_capacity(key.selected.len());
    let mut hidden = 0;
    for &q in &key.selected {
        match kept.iter().position(|&t| t == q) {
            Some(r) => {
                rows.push(r);
                used.push(q);
            }
            None => hidden += 1,
        }
    }
    if rows.is_empty() {
        return Err("the selected tokens are hidden".to_owned());
    }
    let combined = combine_rows(matrix.view(), &rows, key.combine == QueryCombine::Mean);
    let values = kept.iter().copied().zip(combined).collect();
    Ok(CombinedRow {
        values,
        used,
        hidden,
    })
}

/// The caption and bar chart of the combined row.
fn chart_ui(ui: &mut egui::Ui, labels: &Arc<Vec<String>>, key: &RowKey, row: &CombinedRow) {
    let text_of = |t: usize| labels.get(t).map_or("?", String::as_str);
    let named: Vec<String> = row
        .used
        .iter()
        .take(CAPTION_TOKENS)
        .map(|&q| format!("{:?} (query {q})", text_of(q)))
        .collect();
    let more = row.used.len().saturating_sub(CAPTION_TOKENS);
    let what = match (row.used.len(), key.combine) {
        (1, _) => "row of".to_owned(),
        (k, QueryCombine::Mean) => format!("mean of {k} rows:"),
        (k, QueryCombine::Sum) => format!("sum of {k} rows:"),
    };
    let layer = match key.spec.layer {
        LayerSelection::Mean => "mean of layers".to_owned(),
        LayerSelection::One(l) => format!("layer {l}"),
    };
    let mut caption = format!("{what} {}", named.join(", "));
    if more > 0 {
        caption.push_str(&format!(" and {more} more"));
    }
    caption.push_str(&format!(", {layer} · {}", key.spec.heads));
    if row.hidden > 0 {
        caption.push_str(&format!(" ({} selected hidden)", row.hidden));
    }
    ui.label(caption);

    let dark = ui.visuals().dark_mode;
    let fill = theme::selected_token_fill(dark);
    let outline = theme::selection_outline(dark);
    let bars: Vec<Bar> = row
        .values
        .iter()
        .map(|&(t, v)| {
            Bar::new(t as f64, f64::from(v))
                .width(0.8)
                .fill(fill)
                .stroke(Stroke::new(1.0, outline))
        })
        .collect();
    let hover_labels = Arc::clone(labels);
    let chart = BarChart::new("row", bars)
        .color(fill)
        .element_formatter(Box::new(move |bar, _| {
            let t = bar.argument.round().max(0.0) as usize;
            let text = hover_labels.get(t).map_or("?", String::as_str);
            let value = crate::render::format_significant(bar.value);
            format!("key {t}: {text:?}\n{value}")
        }));
    // Headroom above the tallest bar, so the hover label of a tall bar is not cut at the top.
    let top = row
        .values
        .iter()
        .map(|&(_, v)| f64::from(v))
        .fold(0.0, f64::max);
    Plot::new("token-strip-row-chart")
        .height(CHART_HEIGHT)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .include_y(0.0)
        .include_y(top * 1.35)
        .x_axis_formatter(move |mark, _| axis_label(labels, mark.value))
        .show(ui, |plot_ui| plot_ui.bar_chart(chart));
}

/// The bar chart's x-axis text at `value`: the token there (its display label, shortened to
/// 10 characters), and nothing between tokens or outside them. Ticks are tokens, never indices.
/// The Saliency view's bar chart uses it too.
pub(crate) fn axis_label(labels: &[String], value: f64) -> String {
    if value < 0.0 || (value - value.round()).abs() > 1e-6 {
        return String::new();
    }
    let Some(label) = labels.get(value.round() as usize) else {
        return String::new();
    };
    if label.chars().count() > 10 {
        format!("{}…", label.chars().take(9).collect::<String>())
    } else {
        label.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::{axis_label, click_token};

    #[test]
    fn the_chart_axis_names_tokens_not_indices() {
        let labels: Vec<String> = ["The", "cat", "extraordinarily"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(axis_label(&labels, 1.0), "cat");
        // Every integer tick is the token there, whatever the tick spacing.
        assert_eq!(axis_label(&labels, 0.0), "The");
        assert_eq!(axis_label(&labels, 2.0), "extraordi…");
        assert_eq!(axis_label(&labels, 0.5), "");
        assert_eq!(axis_label(&labels, -1.0), "");
        assert_eq!(axis_label(&labels, 3.0), "");
    }

    #[test]
    fn clicks_select_extend_and_clear() {
        let mut sel = Vec::new();
        click_token(&mut sel, 3, false);
        assert_eq!(sel, [3]);
        click_token(&mut sel, 5, true);
        assert_eq!(sel, [3, 5]);
        click_token(&mut sel, 3, true);
        assert_eq!(sel, [5]);
        click_token(&mut sel, 7, false);
        assert_eq!(sel, [7]);
        click_token(&mut sel, 7, false);
        assert!(sel.is_empty());
        click_token(&mut sel, 2, true);
        assert_eq!(sel, [2]);
    }

    mod ui {
        use super::super::*;
        use crate::app::state::AppState;
        use crate::engine::AttentionMaps;
        use crate::tokenize::Token;
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable;
        use ndarray::Array2;

        /// One layer, two heads; head 0 attends from query i to key i + 1 (mod n), head 1 to
        /// itself. Token 0 is special.
        fn run(n: usize) -> Arc<Run> {
            let maps = vec![
                Array2::from_shape_fn((n, n), |(i, j)| if j == (i + 1) % n { 1.0 } else { 0.0 }),
                Array2::from_shape_fn((n, n), |(i, j)| if i == j { 1.0 } else { 0.0 }),
            ];
            let Some(maps) = AttentionMaps::from_heads(1, 2, n, maps) else {
                panic!("bad test maps");
            };
            let mut tokens: Vec<Token> =
                (0..n).map(|i| Token::from_text(&format!("t{i}"))).collect();
            tokens[0].is_special = true;
            Arc::new(Run::of_maps(tokens, maps))
        }

        type Tested = (TokenStrip, AppState);

        fn harness(run: Arc<Run>, state: AppState) -> Harness<'static, Tested> {
            Harness::builder()
                .with_size(egui::vec2(900.0, 500.0))
                .build_ui_state(
                    move |ui, (strip, state): &mut Tested| {
                        let labels = Arc::new(crate::tokenize::display_labels(
                            &run.tokens,
                            &crate::tokenize::VocabStyle::Plain,
                        ));
                        let selection = Selection {
                            spec: state.view_spec(),
                            queries: &mut state.selected_queries,
                            combine: &mut state.query_combine,
                        };
                        strip.ui(ui, &run, &labels, selection);
                    },
                    (TokenStrip::default(), state),
                )
        }

        /// The cached combined row as (key token, value) pairs with non-zero value.
        fn nonzero(harness: &Harness<'_, Tested>) -> Vec<(usize, f32)> {
            let (strip, _) = harness.state();
            match strip.cache.as_ref().map(|c| &c.result) {
                Some(Ok(row)) => row
                    .values
                    .iter()
                    .copied()
                    .filter(|&(_, v)| v != 0.0)
                    .collect(),
                Some(Err(e)) => panic!("no row: {e}"),
                None => panic!("no row computed"),
            }
        }

        #[test]
        fn clicks_select_and_chart_rows() {
            let mut harness = harness(run(8), AppState::default());
            harness.run();
            harness.get_by_label("token 3: t3").click();
            harness.run();
            assert_eq!(harness.state().1.selected_queries, [3]);
            assert!(
                harness
                    .query_all_by_value("row of \"t3\" (query 3), layer 0 · head 0")
                    .next()
                    .is_some()
            );
            // Head 0, row 3 is one-hot at key 4.
            assert_eq!(nonzero(&harness), [(4, 1.0)]);

            harness
                .get_by_label("token 5: t5")
                .click_modifiers(egui::Modifiers::SHIFT);
            harness.run();
            assert_eq!(harness.state().1.selected_queries, [3, 5]);
            // Mean of the one-hot rows at keys 4 and 6.
            assert_eq!(nonzero(&harness), [(4, 0.5), (6, 0.5)]);

            harness.get_by_label("sum").click();
            harness.run();
            assert_eq!(harness.state().1.query_combine, QueryCombine::Sum);
            assert_eq!(nonzero(&harness), [(4, 1.0), (6, 1.0)]);

            harness.get_by_label("token 5: t5").click();
            harness.run();
            assert_eq!(harness.state().1.selected_queries, [5]);
            harness.get_by_label("token 5: t5").click();
            harness.run();
            assert!(harness.state().1.selected_queries.is_empty());
        }

        #[test]
        fn hidden_tokens_are_skipped() {
            let state = AppState {
                hide_special: true,
                selected_queries: vec![0, 2],
                ..AppState::default()
            };
            let mut harness = harness(run(6), state);
            harness.run();
            // Token 0 is hidden; row 2 of head 0 is one-hot at key 3.
            assert_eq!(nonzero(&harness), [(3, 1.0)]);
            assert!(
                harness
                    .query_all_by_value(
                        "row of \"t2\" (query 2), layer 0 · head 0 (1 selected hidden)"
                    )
                    .next()
                    .is_some()
            );

            harness.state_mut().1.selected_queries = vec![0];
            harness.run();
            assert!(
                harness
                    .query_all_by_value("no row to chart: the selected tokens are hidden")
                    .next()
                    .is_some()
            );
        }
    }
}
