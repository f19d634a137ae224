//! Exports of the Saliency view: the labelled figure as PNG or SVG (through `render::saliency`,
//! the same function as `attnviz attribute --out FILE.png`), and the scores as CSV or
//! `attnviz.attribution/v1` JSON (the attribution module's own serializers).

use super::api::{self, Attribution};
use super::view::{SaliencyExport, shown_request};
use crate::app::{AttnApp, ErrorCause};
use crate::io::ModelMeta;
use std::path::Path;
use std::sync::Arc;

/// A file name for `kind`, such as `saliency_integrated-gradients.png`.
pub fn default_name(kind: SaliencyExport, method: api::Method) -> String {
    format!("saliency_{method}.{}", kind.extension())
}

/// Writes `attr` to `path` as `kind`.
pub fn write(
    kind: SaliencyExport,
    path: &Path,
    attr: &Attribution,
    meta: &ModelMeta,
    mask: &str,
) -> Result<(), String> {
    let text = |s: String| {
        crate::io::write_atomic(path, |out| out.write_all(s.as_bytes())).map_err(|e| e.to_string())
    };
    match kind {
        SaliencyExport::Png => {
            let image = api::saliency_figure(attr)?;
            crate::render::write_png(&image, path).map_err(|e| e.to_string())
        }
        SaliencyExport::Svg => {
            let doc = api::saliency_svg(attr)?;
            crate::render::write_svg(&doc, path).map_err(|e| e.to_string())
        }
        SaliencyExport::Csv => text(api::to_csv(attr)),
        SaliencyExport::Json => text(api::to_json(attr, meta, mask)),
    }
}

impl AttnApp {
    /// The attribution the Saliency view shows, if it has arrived.
    pub fn shown_attribution(&self) -> Option<Arc<Attribution>> {
        let (key, run) = self.current.as_ref()?;
        let supported = self.saliency.supported(key)?;
        let request = shown_request(&self.state, supported, run.tokens.len())?;
        match self.saliency.attribution(key, &request)? {
            (Ok(a), _) => Some(a.clone()),
            (Err(_), _) => None,
        }
    }

    /// Writes the Saliency view's export `kind` to `path`.
    pub(in crate::app) fn export_saliency(&mut self, kind: SaliencyExport, path: &Path) {
        let Some(attr) = self.shown_attribution() else {
            self.report(ErrorCause::File, "no saliency scores to export yet");
            return;
        };
        let meta = self.model_meta();
        let mask = self.shown_mask();
        match write(kind, path, &attr, &meta, &mask) {
            Ok(()) => {
                self.notice = Some(format!("wrote {}", path.display()));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e),
        }
    }
}
