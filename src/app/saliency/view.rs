//! The Saliency view: which input tokens drive a target, by the method chosen.
//!
//! From top to bottom: the method and target pickers (for causal LMs a position's top next
//! tokens with their probabilities, picked as target or foil; for BERT with an MLM head a click
//! masks a token; for sentence models and the demo a second text), the progress of the work on
//! the worker with Cancel, the text with each token's background coloured by its score, a bar
//! chart of the scores, the table of every method with their rank correlations, the continuation
//! matrix, and the exports. Nothing heavy runs here: scores come from the controller's cache.

use super::api::{Aggregate, AttributeRequest, Attribution, Baseline, Method, Occlude};
use super::compute::Done;
use super::controller::Pending;
use super::{colors, continuation, table};
use crate::app::theme;
use crate::app::view::{DialogPurpose, Request, View, ViewCx};
use crate::grad::{TargetKind, TokenRef};
use egui::{
    Color32, Galley, Response, Sense, Stroke, StrokeKind, TextStyle, TextWrapMode, WidgetInfo,
};
use egui_plot::{Bar, BarChart, GridMark, Plot};
use std::sync::Arc;

/// Height of the bar chart's plot (without the bars' labels under it), in points.
const CHART_HEIGHT: f32 = 150.0;
/// Work that takes longer than this shows its progress and Cancel.
const SHOW_PROGRESS_AFTER_MS: u128 = 150;

/// What an export of the Saliency view writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaliencyExport {
    /// The labelled figure as PNG.
    Png,
    /// The labelled figure as SVG.
    Svg,
    /// The scores as CSV.
    Csv,
    /// The scores as `attnviz.attribution/v1` JSON.
    Json,
    /// The continuation matrix as PNG.
    ContinuationPng,
    /// The continuation matrix as SVG.
    ContinuationSvg,
    /// The method table (every method's score of every token) as CSV.
    TableCsv,
}

impl SaliencyExport {
    /// The exports of the scores and their figure, in button order.
    pub const ALL: [SaliencyExport; 4] = [
        SaliencyExport::Png,
        SaliencyExport::Svg,
        SaliencyExport::Csv,
        SaliencyExport::Json,
    ];

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            SaliencyExport::Png | SaliencyExport::ContinuationPng => "png",
            SaliencyExport::Svg | SaliencyExport::ContinuationSvg => "svg",
            SaliencyExport::Csv | SaliencyExport::TableCsv => "csv",
            SaliencyExport::Json => "json",
        }
    }
}

/// The Saliency view's runtime state (its settings live in `AppState`).
#[derive(Default)]
pub struct SaliencyView {
    /// The method table's rank correlations, kept until the results change.
    correlations: table::Correlations,
    /// The continuation matrix's texture.
    continuation: continuation::ContinuationView,
}

impl View for SaliencyView {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        if cx.external.is_some() {
            ui.label(
                "Saliency needs a model run: an attention file has no model. \
                 Use \"show the computed run\" or open a text.",
            );
            return;
        }
        let (Some(key), Some(run)) = (cx.current.cloned(), cx.run.clone()) else {
            ui.spinner();
            return;
        };
        let Some(supported) = cx.saliency.supported(&key).map(<[TargetKind]>::to_vec) else {
            ui.spinner();
            return;
        };
        let n = run.tokens.len();
        let labels = cx.labels.clone();
        settings_ui(ui, cx, &supported);
        let kind = cx.state.saliency.kind_for(&supported);
        let target = cx.state.saliency.target(&supported, n);
        target_ui(ui, cx, kind, &key, n, &labels);
        ui.separator();

        let pending = cx.saliency.pending(&key);
        progress_ui(ui, cx, pending.as_ref(), &key);

        let target = match target {
            Ok(t) => t,
            Err(why) => {
                // The MLM picker above already says to click a token.
                if kind != Some(TargetKind::Mlm) {
                    ui.label(why);
                }
                text_ui(ui, cx, kind, &labels, None, &labels);
                return;
            }
        };
        let s = cx.state.saliency.clone();
        let request = s.request(s.method, &target);
        let shown = cx
            .saliency
            .attribution(&key, &request)
            .map(|(r, done)| (r.clone(), done.clone()));
        match shown {
            Some((Ok(attr), done)) => {
                summary_ui(ui, &attr, &labels, &done);
                let chip_labels = chip_labels(&attr, &labels);
                text_ui(ui, cx, kind, &chip_labels, Some(&attr), &labels);
                chart_ui(ui, &attr, &chip_labels, cx.state.colormap);
                export_ui(ui, cx);
            }
            Some((Err(e), _)) => {
                ui.colored_label(theme::error_color(ui.visuals().dark_mode), e);
                text_ui(ui, cx, kind, &labels, None, &labels);
            }
            None => {
                text_ui(ui, cx, kind, &labels, None, &labels);
            }
        }
        if s.compare {
            let requests = s.requests(&target);
            let results: Vec<table::Column> = requests
                .iter()
                .map(|r| {
                    (
                        r.method,
                        cx.saliency.attribution(&key, r).map(|(res, _)| res.clone()),
                    )
                })
                .collect();
            ui.separator();
            if table::table_ui(ui, &mut self.correlations, &results, &labels, s.method) {
                cx.request(Request::Dialog(DialogPurpose::ExportSaliency(
                    SaliencyExport::TableCsv,
                )));
            }
        }
        if s.compare_unablated && !key.opts.ablations.is_empty() {
            let ablated = cx
                .saliency
                .attribution(&key, &request)
                .map(|(r, _)| r.clone());
            let plain = cx
                .saliency
                .attribution(&key.without_ablations(), &request)
                .map(|(r, _)| r.clone());
            ui.separator();
            let names: Vec<String> = key.opts.ablations.iter().map(ToString::to_string).collect();
            table::ablation_table_ui(ui, ablated.as_ref(), plain.as_ref(), &labels, &names);
        }
        if let Some(req) = s.continuation(&supported) {
            let result = cx.saliency.attribution(&key, &req).map(|(r, _)| r.clone());
            ui.separator();
            self.continuation.ui(ui, cx, result.as_ref(), s.method);
        }
    }
}

impl SaliencyView {
    /// The image the continuation matrix shows, for pixel tests.
    pub fn continuation_on_screen(&self) -> Option<&image::RgbaImage> {
        self.continuation.on_screen()
    }
}

/// Labels of the scored items: the view's token labels when scores are per token, else the
/// attribution's own (words).
fn chip_labels(attr: &Attribution, labels: &Arc<Vec<String>>) -> Arc<Vec<String>> {
    if attr.scores.len() == labels.len() {
        labels.clone()
    } else {
        Arc::new(attr.labels.clone())
    }
}

/// Method, target kind, method options, aggregation, comparison.
fn settings_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>, supported: &[TargetKind]) {
    let ablated = cx.current.is_some_and(|k| !k.opts.ablations.is_empty());
    let s = &mut cx.state.saliency;
    ui.horizontal_wrapped(|ui| {
        let method_label = ui.label("Method");
        egui::ComboBox::from_id_salt("saliency-method")
            .selected_text(s.method.to_string())
            .show_ui(ui, |ui| {
                for &m in Method::ALL {
                    ui.selectable_value(&mut s.method, m, m.to_string());
                }
            })
            .response
            .labelled_by(method_label.id);
        let kind = s.kind_for(supported);
        let kind_text = kind.map_or("none".to_owned(), |k| k.to_string());
        let target_label = ui.label("Target");
        egui::ComboBox::from_id_salt("saliency-target")
            .selected_text(kind_text)
            .show_ui(ui, |ui| {
                for k in supported {
                    if ui
                        .selectable_label(kind == Some(*k), k.to_string())
                        .clicked()
                    {
                        s.kind = Some(*k);
                    }
                }
            })
            .response
            .labelled_by(target_label.id);
        match s.method {
            Method::IntegratedGradients => {
                ui.add(
                    egui::DragValue::new(&mut s.steps)
                        .range(1..=1024)
                        .prefix("steps "),
                );
                let baseline_label = ui.label("Baseline");
                egui::ComboBox::from_id_salt("saliency-baseline")
                    .selected_text(s.baseline.to_string())
                    .show_ui(ui, |ui| {
                        for &b in Baseline::ALL {
                            ui.selectable_value(&mut s.baseline, b, b.to_string());
                        }
                    })
                    .response
                    .labelled_by(baseline_label.id);
            }
            Method::Occlusion => {
                let text = s.occlude.map_or("default".to_owned(), |o| o.to_string());
                let occlude_label = ui.label("Occlude with");
                egui::ComboBox::from_id_salt("saliency-occlude")
                    .selected_text(text)
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut s.occlude, None, "default");
                        for &o in Occlude::ALL {
                            ui.selectable_value(&mut s.occlude, Some(o), o.to_string());
                        }
                    })
                    .response
                    .labelled_by(occlude_label.id);
            }
            _ => {}
        }
        ui.selectable_value(&mut s.aggregate, Aggregate::Token, "per token");
        ui.selectable_value(&mut s.aggregate, Aggregate::Word, "per word");
        ui.checkbox(&mut s.compare, "Compare all methods");
        if ablated {
            ui.checkbox(&mut s.compare_unablated, "Compare without the ablations")
                .on_hover_text(
                    "Also compute the chosen method on the model without its ablated heads, \
                     and list both scores per token with their difference",
                );
        }
        if supported.contains(&TargetKind::Logprob) {
            ui.add(
                egui::DragValue::new(&mut s.generate)
                    .range(0..=64)
                    .prefix("generate "),
            )
            .on_hover_text("Generate this many tokens greedily and attribute each one");
        }
    });
}

/// The target picker for `kind`.
fn target_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    kind: Option<TargetKind>,
    key: &crate::app::worker::JobKey,
    n: usize,
    labels: &[String],
) {
    let label_of = |i: usize| labels.get(i).cloned().unwrap_or_default();
    match kind {
        Some(TargetKind::Similarity) => {
            ui.horizontal(|ui| {
                ui.label("Text B");
                ui.add(
                    egui::TextEdit::singleline(&mut cx.state.saliency.text_b)
                        .desired_width(ui.available_width().min(520.0)),
                )
                .on_hover_text(
                    "The target is the cosine similarity of the mean final hidden states of the \
                     text and of text B",
                );
            });
        }
        Some(TargetKind::Mlm) => {
            let s = &cx.state.saliency;
            match s.position.filter(|&p| p < n) {
                Some(p) => ui.label(format!(
                    "masked token {p} ({:?}); click another token to mask it instead",
                    label_of(p)
                )),
                None => ui.label("click a token to mask it"),
            };
        }
        Some(k @ (TargetKind::Logprob | TargetKind::Contrast)) => {
            let s = cx.state.saliency.clone();
            let p = s.position.filter(|&p| p < n).unwrap_or(n.saturating_sub(1));
            ui.horizontal(|ui| {
                ui.label(format!(
                    "next token after position {p} ({:?}); click a token to pick another position",
                    label_of(p)
                ));
                ui.add(
                    egui::DragValue::new(&mut cx.state.saliency.top_k)
                        .range(1..=100)
                        .prefix("top "),
                );
            });
            match cx.saliency.predictions(key, p, s.top_k) {
                None => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label("finding the most likely next tokens");
                    });
                }
                Some(Err(e)) => {
                    ui.colored_label(theme::error_color(ui.visuals().dark_mode), e);
                }
                Some(Ok(list)) => {
                    let list = list.clone();
                    predictions_ui(ui, cx, k, p, &list);
                }
            }
        }
        None => {
            ui.label("this model supports no saliency target");
        }
    }
}

/// The next-token candidates of position `p`, each pickable as the target (and, for contrast,
/// as the foil).
fn predictions_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    kind: TargetKind,
    p: usize,
    list: &[super::compute::Candidate],
) {
    let s = &mut cx.state.saliency;
    let contrast = kind == TargetKind::Contrast;
    let is = |r: &Option<TokenRef>, id: u32| *r == Some(TokenRef::Id(id));
    egui::Grid::new("saliency-predictions")
        .num_columns(if contrast { 4 } else { 3 })
        .striped(true)
        .show(ui, |ui| {
            ui.label("next token");
            ui.label("probability");
            ui.label(if contrast { "target" } else { "" });
            if contrast {
                ui.label("foil");
            }
            ui.end_row();
            for pred in list {
                ui.label(format!("{:?}", pred.label));
                ui.label(format!("{:.4}", pred.logprob.exp()));
                let as_target = is(&s.token, pred.id) && s.position == Some(p);
                if ui
                    .selectable_label(as_target, format!("explain {:?}", pred.label))
                    .clicked()
                {
                    s.position = Some(p);
                    s.token = Some(TokenRef::Id(pred.id));
                    if s.foil == s.token {
                        s.foil = None;
                    }
                }
                if contrast {
                    let as_foil = is(&s.foil, pred.id) && s.position == Some(p);
                    if ui
                        .selectable_label(as_foil, format!("rather than {:?}", pred.label))
                        .clicked()
                    {
                        s.position = Some(p);
                        s.foil = Some(TokenRef::Id(pred.id));
                    }
                }
                ui.end_row();
            }
        });
    if s.token.is_some() && ui.small_button("use the most likely token").clicked() {
        s.token = None;
        s.foil = None;
    }
}

/// Progress of the work on the worker, with Cancel; or a "compute" button once stopped.
fn progress_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    pending: Option<&Pending>,
    key: &crate::app::worker::JobKey,
) {
    if let Some(p) = pending {
        ui.horizontal(|ui| {
            ui.spinner();
            let what = p.method.as_deref().unwrap_or("next-token candidates");
            let text = format!("computing {what} ({}/{})", p.done + 1, p.total.max(1));
            if p.elapsed_ms > SHOW_PROGRESS_AFTER_MS {
                ui.add(
                    egui::ProgressBar::new(p.fraction)
                        .desired_width(180.0)
                        .text(text),
                );
                if ui.button("Cancel").clicked() {
                    cx.request(Request::CancelSaliency);
                }
            } else {
                ui.label(text);
            }
        });
    } else if cx.saliency.stopped(key) {
        ui.horizontal(|ui| {
            ui.label("stopped");
            if ui.button("Compute").clicked() {
                cx.request(Request::ComputeSaliency);
            }
        });
    }
}

/// The target and the run time above the coloured text.
fn summary_ui(ui: &mut egui::Ui, attr: &Attribution, labels: &[String], done: &Done) {
    let t = &attr.target;
    let name = |id: Option<u32>| id.map_or("?".to_owned(), |id| done.name(id));
    let at = |p: Option<usize>| {
        p.map_or(String::new(), |p| {
            format!(
                " at position {p} ({:?})",
                labels.get(p).map_or("", String::as_str)
            )
        })
    };
    let what = match t.kind {
        TargetKind::Logprob => format!("log p({}){}", name(t.token), at(t.position)),
        TargetKind::Contrast => format!(
            "log p({}) - log p({}){}",
            name(t.token),
            name(t.foil),
            at(t.position)
        ),
        TargetKind::Mlm => format!("masked log p({}){}", name(t.token), at(t.position)),
        TargetKind::Similarity => "cosine similarity with text B".to_owned(),
    };
    let mut line = format!(
        "{}: {what} = {}",
        attr.method,
        crate::render::format_significant(t.value)
    );
    if let Some(gap) = attr.completeness_gap {
        line.push_str(&format!(
            " · completeness gap {}",
            crate::render::format_significant(gap)
        ));
    }
    line.push_str(&format!(" · {:.0} ms", done.ms));
    ui.label(line);
}

/// The text, each item's background coloured by its score; clicking a token picks the target
/// position (causal LMs) or masks it (BERT). `run_labels` are the run's token labels.
fn text_ui(
    ui: &mut egui::Ui,
    cx: &mut ViewCx<'_>,
    kind: Option<TargetKind>,
    chip_labels: &[String],
    attr: Option<&Arc<Attribution>>,
    run_labels: &[String],
) {
    let per_token = chip_labels.len() == run_labels.len();
    let clickable = per_token
        && matches!(
            kind,
            Some(TargetKind::Logprob | TargetKind::Contrast | TargetKind::Mlm)
        );
    let colormap = cx.state.colormap;
    let scale = attr.map(|a| colors::ScoreColors::new(&a.scores, a.method.is_signed(), colormap));
    let s = &mut cx.state.saliency;
    let n = run_labels.len();
    let chosen = match kind {
        Some(TargetKind::Logprob | TargetKind::Contrast) => {
            Some(s.position.filter(|&p| p < n).unwrap_or(n.saturating_sub(1)))
        }
        Some(TargetKind::Mlm) => s.position.filter(|&p| p < n),
        _ => None,
    };
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 3.0;
        for (i, label) in chip_labels.iter().enumerate() {
            let score = attr.and_then(|a| a.scores.get(i).copied());
            let fill = match (&scale, score) {
                (Some(c), Some(v)) => Some(c.color(v)),
                _ => None,
            };
            let selected = per_token && chosen == Some(i);
            let mut response = chip(ui, i, label, fill, selected);
            if let Some(v) = score {
                response = response.on_hover_text(format!(
                    "{i}: {label:?}\nscore {}",
                    crate::render::format_significant(f64::from(v))
                ));
            }
            if clickable && response.clicked() && s.position != Some(i) {
                s.position = Some(i);
                s.token = None;
                s.foil = None;
            }
        }
    });
    if let Some(c) = &scale {
        ui.label(egui::RichText::new(c.legend()).small().weak());
    }
}

/// One token or word of the coloured text, with the accessible label `saliency {i}: {text}`.
fn chip(
    ui: &mut egui::Ui,
    i: usize,
    text: &str,
    fill: Option<Color32>,
    selected: bool,
) -> Response {
    let shown = if text.trim().is_empty() { "␣" } else { text };
    let galley = egui::WidgetText::from(shown).into_galley(
        ui,
        Some(TextWrapMode::Extend),
        f32::INFINITY,
        TextStyle::Body,
    );
    let padding = egui::vec2(4.0, 3.0);
    let size = galley.size() + 2.0 * padding;
    let (rect, response) = ui.allocate_exact_size(size, Sense::click());
    response.widget_info(|| {
        WidgetInfo::selected(
            egui::Role::Button,
            ui.is_enabled(),
            selected,
            format!("saliency {i}: {text}"),
        )
    });
    if ui.is_rect_visible(rect) {
        let dark = ui.visuals().dark_mode;
        let bg = fill.unwrap_or(ui.visuals().widgets.inactive.weak_bg_fill);
        let text_color = match fill {
            Some(c) => colors::text_on(c),
            None => ui.visuals().text_color(),
        };
        let stroke = if selected {
            Stroke::new(2.0, theme::selection_outline(dark))
        } else if response.hovered() {
            Stroke::new(1.0, theme::hover_outline())
        } else {
            Stroke::NONE
        };
        let painter = ui.painter();
        painter.rect(rect, 3.0, bg, stroke, StrokeKind::Inside);
        painter.galley(rect.center() - 0.5 * galley.size(), galley, text_color);
    }
    response
}

/// The scores as bars, coloured as the text, with a tick label at every y tick and each bar's
/// token under it (see [`label_layout`]). Both are painted here, not by the plot, so that every
/// label is exposed to accessibility as `y tick {text}` and `bar {i} {token:?}`.
fn chart_ui(
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

/// The export buttons: the view as PNG or SVG, the scores as CSV or JSON.
fn export_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    ui.horizontal(|ui| {
        ui.label("Export");
        for e in SaliencyExport::ALL {
            if ui.button(e.extension().to_uppercase()).clicked() {
                cx.request(Request::Dialog(DialogPurpose::ExportSaliency(e)));
            }
        }
    });
}

/// The request the view shows for the settings of `cx` (for exports), if its target is ready.
pub fn shown_request(
    state: &crate::app::AppState,
    supported: &[TargetKind],
    tokens: usize,
) -> Option<AttributeRequest> {
    let s = &state.saliency;
    let target = s.target(supported, tokens).ok()?;
    Some(s.request(s.method, &target))
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
