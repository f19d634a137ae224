//! The Saliency view's bar chart: the scores as bars coloured as the text, y-axis ticks at 1, 2
//! or 5 × 10^k, and every bar's token under it, across or upright, thinned only when a row of
//! labels does not fit (each label exposed to accessibility).

use super::api::Attribution;
use super::colors;
use egui::{Color32, Galley, Sense, Stroke, TextStyle, WidgetInfo};
use egui_plot::{Bar, BarChart, GridMark, Plot};
use std::sync::Arc;

/// Height of the bar chart's plot (without the bars' labels under it), in points.
const CHART_HEIGHT: f32 = 150.0;

/// The scores as bars, coloured as the text, with a tick label at every y tick and each bar's
/// token under it (see [`label_layout`]). Both are painted here, not by the plot, so that every
/// label is exposed to accessibility as `y tick {text}` and `bar {i} {token:?}`.
pub(super) fn chart_ui(
    ui: &mut egui::Ui,
    attr: &Attribution,
    labels: &Arc<Vec<String>>,
    colormap: crate::render::Colormap,
) {
    let colors = colors::ScoreColors::new(&attr.scores, attr.method.is_signed(), colormap);
    let scores: Vec<f64> = attr
        .scores
        .iter()
        .map(|&v| if v.is_finite() { f64::from(v) } else { 0.0 })
        .collect();
    let bars: Vec<Bar> = scores
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            Bar::new(i as f64, v)
                .width(0.8)
                .fill(colors.color(v as f32))
                .stroke(Stroke::new(1.0, Color32::from_gray(110)))
        })
        .collect();
    let hover = labels.clone();
    let chart = BarChart::new("scores", bars).element_formatter(Box::new(move |bar, _| {
        let i = bar.argument.round().max(0.0) as usize;
        let text = hover.get(i).map_or("?", String::as_str);
        format!(
            "{i}: {text:?}\n{}",
            crate::render::format_significant(bar.value)
        )
    }));

    let (lo, hi) = scores
        .iter()
        .fold((0.0f64, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let ticks = y_ticks(lo, hi);
    let step = ticks.get(1).zip(ticks.first()).map_or(1.0, |(b, a)| b - a);
    let font = TextStyle::Body.resolve(ui.style());
    let color = ui.visuals().text_color();
    let tick_galleys: Vec<(String, Arc<Galley>)> = ticks
        .iter()
        .map(|&t| {
            let text = crate::render::format_significant(t);
            let galley = ui
                .painter()
                .layout_no_wrap(text.clone(), font.clone(), color);
            (text, galley)
        })
        .collect();
    let axis_width = tick_galleys
        .iter()
        .map(|(_, g)| g.size().x)
        .fold(0.0, f32::max)
        + 2.0 * LABEL_GAP;
    let grid: Vec<GridMark> = ticks
        .iter()
        .map(|&value| GridMark {
            value,
            step_size: step,
        })
        .collect();
    let plot = Plot::new("saliency-bars")
        .height(CHART_HEIGHT)
        .allow_zoom(false)
        .allow_drag(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .include_x(-0.5)
        .include_x(scores.len() as f64 - 0.5)
        .include_y(ticks.first().copied().unwrap_or(0.0))
        .include_y(ticks.last().copied().unwrap_or(1.0))
        // The plot keeps the y axis's room and draws its grid lines; the labels are ours.
        .show_axes([false, true])
        .y_axis_min_width(axis_width)
        .y_axis_formatter(|_, _| String::new())
        .y_grid_spacer(move |_| grid.clone())
        .x_grid_spacer(|_| Vec::new())
        .show(ui, |plot_ui| plot_ui.bar_chart(chart));
    let transform = plot.transform;

    // The y tick labels, right-aligned in the axis's room left of the plot.
    let frame = *transform.frame();
    for (k, (&t, (text, galley))) in ticks.iter().zip(tick_galleys).enumerate() {
        let y = transform.position_from_point_y(t);
        let size = galley.size();
        let rect = egui::Rect::from_min_size(
            egui::pos2(frame.left() - LABEL_GAP - size.x, y - 0.5 * size.y),
            size,
        );
        ui.painter().galley(rect.min, galley, color);
        let response = ui.interact(
            rect,
            ui.scope_id().with(("saliency-y-tick", k)),
            Sense::hover(),
        );
        let name = format!("y tick {text}");
        response.widget_info(|| WidgetInfo::labeled(egui::Role::Label, true, &name));
    }

    // The bars' tokens, in a strip under the plot.
    let galleys: Vec<Arc<Galley>> = (0..scores.len())
        .map(|i| {
            let full = labels.get(i).map_or("", String::as_str);
            let text = if full.trim().is_empty() {
                "␣".to_owned()
            } else {
                crate::app::token_strip::axis_label(labels, i as f64)
            };
            ui.painter().layout_no_wrap(text, font.clone(), color)
        })
        .collect();
    let widths: Vec<f32> = galleys.iter().map(|g| g.size().x).collect();
    let row = galleys.iter().map(|g| g.size().y).fold(font.size, f32::max);
    let spacing = transform.dpos_dvalue_x().abs() as f32;
    let layout = label_layout(spacing, &widths, row);
    let height = match layout {
        LabelLayout::Across => row,
        LabelLayout::Upright { .. } => widths.iter().copied().fold(0.0, f32::max),
    } + LABEL_GAP;
    let (strip, _) = ui.allocate_exact_size(
        egui::vec2(plot.response.rect.width(), height),
        Sense::hover(),
    );
    let every = match layout {
        LabelLayout::Across => 1,
        LabelLayout::Upright { every } => every,
    };
    for (i, galley) in galleys.into_iter().enumerate().step_by(every) {
        let x = transform.position_from_point_x(i as f64);
        let size = galley.size();
        let top = strip.top() + 0.5 * LABEL_GAP;
        let rect = match layout {
            LabelLayout::Across => {
                egui::Rect::from_min_size(egui::pos2(x - 0.5 * size.x, top), size)
            }
            LabelLayout::Upright { .. } => egui::Rect::from_min_size(
                egui::pos2(x - 0.5 * size.y, top),
                egui::vec2(size.y, size.x),
            ),
        };
        match layout {
            LabelLayout::Across => ui.painter().galley(rect.min, galley, color),
            // Turned a quarter anticlockwise about its start, the text reads upwards and ends
            // at the plot.
            LabelLayout::Upright { .. } => {
                ui.painter().add(
                    egui::epaint::TextShape::new(rect.left_bottom(), galley, color)
                        .with_angle(-std::f32::consts::FRAC_PI_2),
                );
            }
        }
        let full = labels.get(i).map_or("", String::as_str);
        let hover = format!(
            "{i}: {full:?}\nscore {}",
            crate::render::format_significant(scores[i])
        );
        let name = format!("bar {i} {full:?}");
        let id = ui.scope_id().with(("saliency-bar-label", i));
        ui.interact(rect, id, Sense::hover())
            .on_hover_text(hover)
            .widget_info(|| WidgetInfo::labeled(egui::Role::Label, true, &name));
    }
}

/// Room between a label and its neighbour or the plot, in points.
const LABEL_GAP: f32 = 4.0;

/// How the bars' labels sit under the chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LabelLayout {
    /// Every label, written across: each fits between its neighbours.
    Across,
    /// Turned upright, one row high each: every `every`-th bar's label, the fewest skipped so
    /// that none overlap (every bar's when a row fits a bar's width).
    Upright { every: usize },
}

/// The layout of labels `widths` wide and `row` high under bars `spacing` apart (points).
fn label_layout(spacing: f32, widths: &[f32], row: f32) -> LabelLayout {
    let across = widths
        .windows(2)
        .all(|w| 0.5 * (w[0] + w[1]) + LABEL_GAP <= spacing);
    if across {
        return LabelLayout::Across;
    }
    let needed = row + 1.0;
    let every = if spacing > 0.0 {
        (needed / spacing).ceil().max(1.0) as usize
    } else {
        usize::MAX
    };
    LabelLayout::Upright { every }
}

/// The y ticks of a chart from `lo` to `hi` (0 always shown): the multiples of a step of 1, 2 or
/// 5 × 10^k, about a quarter of the range, from the last at or below the bottom to the first at
/// or above the top: 3 to 7 ticks at any scale.
fn y_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let lo = if lo.is_finite() { lo.min(0.0) } else { 0.0 };
    let mut hi = if hi.is_finite() { hi.max(0.0) } else { 0.0 };
    if hi <= lo {
        hi = lo + 1.0;
    }
    let (nice, exp) = nice_step((hi - lo) / 4.0);
    // k steps, rounded once: k·nice is a small integer and 10^|exp| exact, so 2 × 5e-5 is
    // the double nearest 1e-4, not a hair below it.
    let tick = |k: i64| {
        let m = k as f64 * nice;
        if exp >= 0 {
            m * 10f64.powi(exp)
        } else {
            m / 10f64.powi(-exp)
        }
    };
    let step = tick(1);
    // A hair of slack so that a bound a rounding error past a multiple does not add a tick;
    // then whatever it takes for the ticks to cover the bounds.
    let mut first = (lo / step + 1e-9).floor() as i64;
    let mut last = (hi / step - 1e-9).ceil() as i64;
    while tick(first) > lo {
        first -= 1;
    }
    while tick(last) < hi {
        last += 1;
    }
    (first..=last).map(tick).collect()
}

/// The smallest 1, 2 or 5 × 10^k at or above `x` (> 0), as (1, 2 or 5, k).
fn nice_step(x: f64) -> (f64, i32) {
    let mut exp = x.log10().floor() as i32;
    let m = x / 10f64.powi(exp);
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        exp += 1;
        1.0
    };
    (nice, exp)
}

#[cfg(test)]
mod tests {
    use super::{LabelLayout, label_layout, y_ticks};
    use crate::render::format_significant;

    fn texts(ticks: &[f64]) -> Vec<String> {
        ticks.iter().map(|&t| format_significant(t)).collect()
    }

    #[test]
    fn the_y_axis_has_three_to_seven_ticks_at_any_scale() {
        assert_eq!(texts(&y_ticks(0.0, 1e-4)), ["0", "5.00e-5", "1.00e-4"]);
        assert_eq!(texts(&y_ticks(0.0, 0.87)), ["0", "0.5", "1"]);
        assert_eq!(texts(&y_ticks(-0.3, 2.7)), ["-1", "0", "1", "2", "3"]);
        // All zero, or nothing finite: still an axis.
        assert_eq!(texts(&y_ticks(0.0, 0.0)), ["0", "0.5", "1"]);
        assert_eq!(texts(&y_ticks(f64::NAN, f64::NAN)), ["0", "0.5", "1"]);
        for exp in -12..=12 {
            for m in [1.0, 1.3, 2.2, 4.9, 7.7, 9.99] {
                let hi = m * 10f64.powi(exp);
                for (lo, hi) in [(0.0, hi), (-hi, 0.0), (-0.4 * hi, hi)] {
                    let t = y_ticks(lo, hi);
                    assert!((3..=7).contains(&t.len()), "{lo}..{hi}: {t:?}");
                    assert!(t[0] <= lo && t[t.len() - 1] >= hi, "{lo}..{hi}: {t:?}");
                    assert!(t.contains(&0.0), "{lo}..{hi}: {t:?}");
                    let shown = texts(&t);
                    let mut distinct = shown.clone();
                    distinct.dedup();
                    assert_eq!(distinct, shown, "{lo}..{hi}");
                }
            }
        }
    }

    #[test]
    fn labels_go_upright_when_they_would_overlap_and_thin_out_only_when_a_row_does_not_fit() {
        // Each label fits between its neighbours: written across.
        assert_eq!(
            label_layout(40.0, &[20.0, 30.0, 25.0], 16.0),
            LabelLayout::Across
        );
        // Two wide neighbours would touch: every label upright.
        assert_eq!(
            label_layout(30.0, &[20.0, 30.0, 25.0], 16.0),
            LabelLayout::Upright { every: 1 }
        );
        // Bars narrower than a row: every fourth label, the others would overlap.
        assert_eq!(
            label_layout(5.0, &[20.0, 30.0, 25.0], 16.0),
            LabelLayout::Upright { every: 4 }
        );
    }
}
