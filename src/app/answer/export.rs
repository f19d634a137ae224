//! Exports of the Answer view's current tab: the figure as PNG or SVG through
//! `render::answer` and the document as JSON through `pipeline::answer_json`, the same
//! functions, title and bytes as `attnviz analyze --what … --out FILE`.

use super::AnswerTab;
use super::compute::{Item, name_in};
use super::figure::plot_of;
pub use crate::app::view::AnswerExport;
use crate::app::view::{DialogPurpose, Request, ViewCx};
use crate::app::{AttnApp, ErrorCause};
use crate::pipeline::answer_json as docs;
use crate::render::answer::AnswerStyle;
use std::path::Path;

impl AnswerExport {
    /// Every export, in button order.
    pub const ALL: [AnswerExport; 3] = [AnswerExport::Png, AnswerExport::Svg, AnswerExport::Json];

    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            AnswerExport::Png => "png",
            AnswerExport::Svg => "svg",
            AnswerExport::Json => "json",
        }
    }
}

/// A file name for `kind` of `tab`, such as `logit_lens.png`.
pub fn default_name(tab: AnswerTab, kind: AnswerExport) -> String {
    let stem = match tab {
        AnswerTab::Lens => "logit_lens",
        AnswerTab::Contributions => "contributions",
        AnswerTab::Routes => "routes",
        AnswerTab::Patching => "patching",
    };
    format!("{stem}.{}", kind.extension())
}

/// The export buttons of the tab on screen.
pub(super) fn export_ui(ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
    ui.horizontal(|ui| {
        ui.label("Export");
        for e in AnswerExport::ALL {
            let text = format!("{}…", e.extension().to_uppercase());
            if ui.button(text).clicked() {
                cx.request(Request::Dialog(DialogPurpose::ExportAnswer(e)));
            }
        }
    });
}

/// The vocabulary string of `id` in `vocab` (its number when missing).
fn vocab_in(vocab: &[(u32, String)], id: u32) -> String {
    vocab
        .iter()
        .find(|(i, _)| *i == id)
        .map_or_else(|| id.to_string(), |(_, t)| t.clone())
}

impl AttnApp {
    /// Writes the Answer view's current tab to `path` as `kind`.
    pub(in crate::app) fn export_answer(&mut self, kind: AnswerExport, path: &Path) {
        match self.write_answer(kind, path) {
            Ok(()) => {
                self.notice = Some(format!("wrote {}", path.display()));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e),
        }
    }

    /// The export of the tab on screen, from the result it shows and the run it was made on.
    fn write_answer(&self, kind: AnswerExport, path: &Path) -> Result<(), String> {
        let nothing = || "the Answer view has nothing to export yet".to_owned();
        if self.external.is_some() {
            return Err(nothing());
        }
        let (key, run) = self.current.as_ref().ok_or_else(nothing)?;
        let s = &self.state.answer;
        let n = run.tokens.len();
        let work = s.kind(s.tab, n);
        let (item, _) = self
            .panels
            .central
            .answer
            .controller
            .result(key, &work)
            .ok_or_else(nothing)?;
        let ctx = self.figure_context(run);
        let label_of = |names: &[(u32, String)], id: u32| name_in(names, id);
        let written = |routes: Option<&crate::analysis::answer::routes::Routes>,
                       doc: &dyn Fn() -> Result<(), crate::io::IoError>|
         -> Result<(), String> {
            if kind == AnswerExport::Json {
                return doc().map_err(|e| e.to_string());
            }
            // The plot the view draws, from the same function.
            let (plot, names) = plot_of(item, routes).ok_or_else(nothing)?;
            let label = |id: u32| label_of(names, id);
            let style = AnswerStyle {
                ctx: &ctx,
                token_label: &label,
                pixel_scale: 1,
            };
            plot.write(&style, path).map_err(|e| e.to_string())
        };
        match item {
            Item::Lens(Ok(r)) => {
                let text = |id: u32| vocab_in(&r.vocab, id);
                let doc = || {
                    let d = docs::lens_document(
                        run,
                        &r.target,
                        &r.positions,
                        &r.cells,
                        &r.at_target,
                        &text,
                    );
                    docs::write_document(path, &d)
                };
                written(None, &doc)
            }
            Item::Contributions(Ok(r)) => {
                let text = |id: u32| vocab_in(&r.vocab, id);
                let doc = || {
                    let d = docs::contributions_document(run, &r.target, &r.contributions, &text);
                    docs::write_document(path, &d)
                };
                written(None, &doc)
            }
            Item::Routes(Ok(g)) => {
                // The routes the view draws: to the target's position, at the slider's τ.
                let position = s.target_on(n).position.unwrap_or(n.saturating_sub(1));
                let routes = g.routes(position, s.threshold).map_err(|e| e.to_string())?;
                let doc = || docs::write_document(path, &docs::routes_document(run, &routes));
                written(Some(&routes), &doc)
            }
            Item::Patching(Ok(r)) => {
                let text = |id: u32| vocab_in(&r.vocab, id);
                let doc = || {
                    let d =
                        docs::patching_document(run, &r.tokens_b, &r.target, &r.patching, &text);
                    docs::write_document(path, &d)
                };
                written(None, &doc)
            }
            Item::Lens(Err(e))
            | Item::Contributions(Err(e))
            | Item::Routes(Err(e))
            | Item::Patching(Err(e)) => Err(e.clone()),
        }
    }
}
