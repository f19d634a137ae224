//! Exports of the Saliency view: the labelled figure as PNG or SVG through `render::saliency`
//! (the same functions and title as `attnviz attribute --out FILE.png`), the continuation
//! matrix through `render::saliency::generated_matrix` and the heatmap figure, and the scores as
//! CSV or `attnviz.attribution/v1` JSON (the attribution module's own serializers).

use super::api::{self, Attribution};
use super::compute::Done;
use super::view::{SaliencyExport, shown_request};
use crate::app::{AttnApp, ErrorCause};
use crate::io::ModelMeta;
use crate::render::{self, saliency};
use std::path::Path;
use std::sync::Arc;

/// A file name for `kind`, such as `saliency_integrated-gradients.png`.
pub fn default_name(kind: SaliencyExport, method: api::Method) -> String {
    match kind {
        SaliencyExport::ContinuationPng | SaliencyExport::ContinuationSvg => {
            format!("continuation_{method}.{}", kind.extension())
        }
        _ => format!("saliency_{method}.{}", kind.extension()),
    }
}

/// The figure's title, as `attnviz attribute` makes it; `done` names the target's tokens.
pub fn title(attr: &Attribution, model: &str, done: &Done) -> String {
    let token_text = |id: u32| {
        done.names
            .iter()
            .find(|(i, _)| *i == id)
            .map_or_else(|| id.to_string(), |(_, n)| n.clone())
    };
    saliency::saliency_title(attr, model, &token_text)
}

/// Writes `attr` to `path` as `kind`; `title` heads the figures.
pub fn write(
    kind: SaliencyExport,
    path: &Path,
    attr: &Attribution,
    meta: &ModelMeta,
    mask: &str,
    title: &str,
) -> Result<(), String> {
    let text = |s: String| {
        crate::io::write_atomic(path, |out| out.write_all(s.as_bytes())).map_err(|e| e.to_string())
    };
    let opts = saliency::SaliencyOptions {
        title: title.to_owned(),
        ..saliency::SaliencyOptions::default()
    };
    let err = |e: render::RenderError| e.to_string();
    match kind {
        SaliencyExport::Png => {
            let image = saliency::saliency_figure(attr, &opts).map_err(err)?;
            render::write_png(&image, path).map_err(err)
        }
        SaliencyExport::Svg => {
            let doc = saliency::saliency_svg(attr, &opts).map_err(err)?;
            render::write_svg(&doc, path).map_err(err)
        }
        SaliencyExport::ContinuationPng | SaliencyExport::ContinuationSvg => {
            let (m, fig) = saliency::generated_matrix(attr, title)
                .ok_or("no continuation to export: set \"generate\" above 0")?;
            if kind == SaliencyExport::ContinuationSvg {
                let doc = render::heatmap_svg(m.view(), &fig).map_err(err)?;
                render::write_svg(&doc, path).map_err(err)
            } else {
                let image = render::heatmap_figure(m.view(), &fig).map_err(err)?;
                render::write_png(&image, path).map_err(err)
            }
        }
        SaliencyExport::Csv => text(api::to_csv(attr)),
        SaliencyExport::Json => text(api::to_json(attr, meta, mask)),
    }
}

impl AttnApp {
    /// The attribution the Saliency view shows, if it has arrived, with how it was made.
    fn shown_attribution_done(&self, continuation: bool) -> Option<(Arc<Attribution>, Done)> {
        let (key, run) = self.current.as_ref()?;
        let supported = self.saliency.supported(key)?;
        let request = if continuation {
            self.state.saliency.continuation(supported)?
        } else {
            shown_request(&self.state, supported, run.tokens.len())?
        };
        match self.saliency.attribution(key, &request)? {
            (Ok(a), done) => Some((a.clone(), done.clone())),
            (Err(_), _) => None,
        }
    }

    /// The attribution the Saliency view shows, if it has arrived.
    pub fn shown_attribution(&self) -> Option<Arc<Attribution>> {
        self.shown_attribution_done(false).map(|(a, _)| a)
    }

    /// The attributed continuation the Saliency view shows, if it has arrived.
    pub fn shown_continuation(&self) -> Option<Arc<Attribution>> {
        self.shown_attribution_done(true).map(|(a, _)| a)
    }

    /// Writes the Saliency view's export `kind` to `path`.
    pub(in crate::app) fn export_saliency(&mut self, kind: SaliencyExport, path: &Path) {
        let continuation = matches!(
            kind,
            SaliencyExport::ContinuationPng | SaliencyExport::ContinuationSvg
        );
        let Some((attr, done)) = self.shown_attribution_done(continuation) else {
            self.report(ErrorCause::File, "no saliency scores to export yet");
            return;
        };
        let meta = self.model_meta();
        // The mask the attribution's own runs applied, as `attnviz attribute` records it.
        let mask = attr.mask.to_string();
        let title = title(&attr, &meta.name, &done);
        match write(kind, path, &attr, &meta, &mask, &title) {
            Ok(()) => {
                self.notice = Some(format!("wrote {}", path.display()));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e),
        }
    }
}
