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
use super::controller::{Controller, Pending};
use super::{colors, continuation, table};
use crate::app::theme;
pub use crate::app::view::SaliencyExport;
use crate::app::view::{DialogPurpose, Request, View, ViewCx};
use crate::grad::{TargetKind, TokenRef};
use egui::{Color32, Response, Sense, Stroke, StrokeKind, TextStyle, TextWrapMode, WidgetInfo};
use std::sync::Arc;

/// Work that takes longer than this shows its progress and Cancel.
const SHOW_PROGRESS_AFTER_MS: u128 = 150;

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
    /// The background work: results by run, the task in flight, what was stopped.
    pub(in crate::app) controller: Controller,
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
        let work = &self.controller;
        let (Some(key), Some(run)) = (cx.current.cloned(), cx.run.clone()) else {
            ui.spinner();
            return;
        };
        let Some(supported) = work.supported(&key).map(<[TargetKind]>::to_vec) else {
            ui.spinner();
            return;
        };
        let n = run.tokens.len();
        let labels = cx.labels.clone();
        settings_ui(ui, cx, &supported);
        let kind = cx.state.saliency.kind_for(&supported);
        let target = cx.state.saliency.target(&supported, n);
        target_ui(ui, cx, work, kind, &key, n, &labels);
        ui.separator();

        let pending = work.pending(&key);
        progress_ui(ui, cx, work, pending.as_ref(), &key);

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
        let shown = work
            .attribution(&key, &request)
            .map(|(r, done)| (r.clone(), done.clone()));
        match shown {
            Some((Ok(attr), done)) => {
                summary_ui(ui, &attr, &labels, &done);
                let chip_labels = chip_labels(&attr, &labels);
                text_ui(ui, cx, kind, &chip_labels, Some(&attr), &labels);
                super::chart::chart_ui(ui, &attr, &chip_labels, cx.state.colormap);
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
                        work.attribution(&key, r).map(|(res, _)| res.clone()),
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
            let ablated = work.attribution(&key, &request).map(|(r, _)| r.clone());
            let plain = work
                .attribution(&key.without_ablations(), &request)
                .map(|(r, _)| r.clone());
            ui.separator();
            let names: Vec<String> = key.opts.ablations.iter().map(ToString::to_string).collect();
            table::ablation_table_ui(ui, ablated.as_ref(), plain.as_ref(), &labels, &names);
        }
        if let Some(req) = s.continuation(&supported) {
            let result = work.attribution(&key, &req).map(|(r, _)| r.clone());
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
    work: &Controller,
    kind: Option<TargetKind>,
    key: &crate::app::job::JobKey,
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
            match work.predictions(key, p, s.top_k) {
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
    work: &Controller,
    pending: Option<&Pending>,
    key: &crate::app::job::JobKey,
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
    } else if work.stopped(key) {
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
