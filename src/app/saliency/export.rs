//! Exports of the Saliency view: the labelled figure as PNG or SVG through `render::saliency`
//! (the same functions and title as `attnviz attribute --out FILE.png`), the continuation
//! matrix through `render::saliency::generated_matrix` and the heatmap figure, and the scores as
//! CSV or `attnviz.attribution/v1` JSON (the attribution module's own serializers), and the
//! method table (every method's scores side by side) as CSV.

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
        SaliencyExport::TableCsv => "saliency_methods.csv".to_owned(),
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
    options: Option<&crate::engine::OptionsRecord>,
    opts: &saliency::SaliencyOptions,
) -> Result<(), String> {
    let text = |s: String| {
        crate::io::write_atomic(path, |out| out.write_all(s.as_bytes())).map_err(|e| e.to_string())
    };
    let title = opts.title.as_str();
    let err = |e: render::RenderError| e.to_string();
    match kind {
        SaliencyExport::Png => {
            let image = saliency::saliency_figure(attr, opts).map_err(err)?;
            render::write_png(&image, path).map_err(err)
        }
        SaliencyExport::Svg => {
            let doc = saliency::saliency_svg(attr, opts).map_err(err)?;
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
        SaliencyExport::TableCsv => Err("the method table is written by table_csv".to_owned()),
        SaliencyExport::Json => text(api::to_json(attr, meta, mask, options)),
    }
}

/// One method's column of the method table: the method and its result.
pub type TableColumn = (api::Method, Result<Arc<Attribution>, String>);

/// The method table as CSV: `index,token,<method>,…` in the table's column order, one row per
/// token (per word with word aggregation), each score the shortest text of its f32, empty where
/// a method has no score (it failed, or scored fewer items). Fields with a comma, a quote or a
/// line break are quoted. An error when no method has scores.
pub fn table_csv(columns: &[TableColumn]) -> Result<String, String> {
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let scored: Vec<Option<&Attribution>> = columns
        .iter()
        .map(|(_, r)| r.as_ref().ok().map(|a| &**a))
        .collect();
    let Some(rows) = scored.iter().flatten().next() else {
        let why = columns.iter().find_map(|(_, r)| r.as_ref().err());
        return Err(why.map_or_else(
            || "no method to export".to_owned(),
            |e| format!("no method could score this target: {e}"),
        ));
    };
    let mut out = String::from("index,token");
    for (m, _) in columns {
        out.push(',');
        out.push_str(&field(m.name()));
    }
    out.push('\n');
    for (i, label) in rows.labels.iter().enumerate().take(rows.scores.len()) {
        out.push_str(&format!("{i},{}", field(label)));
        for a in &scored {
            out.push(',');
            match a.and_then(|a| a.scores.get(i)) {
                Some(v) if v.is_finite() => out.push_str(ryu::Buffer::new().format_finite(*v)),
                Some(v) => out.push_str(&v.to_string()),
                None => {}
            }
        }
        out.push('\n');
    }
    Ok(out)
}

impl AttnApp {
    /// Every method's result for the Saliency view's target, in the method table's order; an
    /// error while any is missing.
    fn method_table(&self) -> Result<Vec<TableColumn>, String> {
        let no_scores = || "no saliency scores to export yet".to_owned();
        let (key, run) = self.current.as_ref().ok_or_else(no_scores)?;
        let supported = self
            .panels
            .central
            .saliency
            .controller
            .supported(key)
            .ok_or_else(no_scores)?;
        let target = self.state.saliency.target(supported, run.tokens.len())?;
        // The table's requests, whether or not it is shown.
        let settings = super::SaliencySettings {
            compare: true,
            ..self.state.saliency.clone()
        };
        let mut columns = Vec::new();
        for request in settings.requests(&target) {
            match self
                .panels
                .central
                .saliency
                .controller
                .attribution(key, &request)
            {
                Some((result, _)) => columns.push((request.method, result.clone())),
                None if !self.state.saliency.compare => {
                    return Err(
                        "the method table is not shown: tick \"Compare all methods\" first"
                            .to_owned(),
                    );
                }
                None => return Err("the method table is still computing".to_owned()),
            }
        }
        Ok(columns)
    }

    /// Writes the method table as CSV to `path`.
    fn export_method_table(&mut self, path: &Path) {
        let csv = self.method_table().and_then(|columns| table_csv(&columns));
        let written = csv.and_then(|csv| {
            crate::io::write_atomic(path, |out| out.write_all(csv.as_bytes()))
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => {
                self.notice = Some(format!("wrote {}", path.display()));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e),
        }
    }

    /// The attribution the Saliency view shows, if it has arrived, with how it was made.
    fn shown_attribution_done(&self, continuation: bool) -> Option<(Arc<Attribution>, Done)> {
        let (key, run) = self.current.as_ref()?;
        let supported = self.panels.central.saliency.controller.supported(key)?;
        let request = if continuation {
            self.state.saliency.continuation(supported)?
        } else {
            shown_request(&self.state, supported, run.tokens.len())?
        };
        match self
            .panels
            .central
            .saliency
            .controller
            .attribution(key, &request)?
        {
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
        if kind == SaliencyExport::TableCsv {
            self.export_method_table(path);
            return;
        }
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
        let options = self
            .current
            .as_ref()
            .map(|(key, _)| crate::engine::OptionsRecord::of(&key.opts));
        // The view's colormap colours unsigned methods, as on screen.
        let figure = saliency::SaliencyOptions {
            title,
            colormap: self.state.colormap,
            ..saliency::SaliencyOptions::default()
        };
        match write(kind, path, &attr, &meta, &mask, options.as_ref(), &figure) {
            Ok(()) => {
                self.notice = Some(format!("wrote {}", path.display()));
                self.clear_error(ErrorCause::File);
            }
            Err(e) => self.report(ErrorCause::File, e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::table_csv;
    use crate::analysis::attribution::{Attribution, Method, test_attribution};
    use std::sync::Arc;

    fn attribution(method: Method, scores: Vec<f32>) -> Arc<Attribution> {
        Arc::new(test_attribution(
            method,
            &["a,b", "say \"hi\"", "c"],
            scores,
        ))
    }

    #[test]
    fn the_method_table_csv_has_a_column_per_method_and_empty_cells_for_errors() {
        let columns = vec![
            (
                Method::Occlusion,
                Ok(attribution(Method::Occlusion, vec![0.1, -2.0, 3e-5])),
            ),
            (Method::Gradient, Err("no gradient".to_owned())),
            (
                Method::Attention,
                Ok(attribution(Method::Attention, vec![1.0, f32::NAN, 0.25])),
            ),
        ];
        let csv = table_csv(&columns).unwrap();
        assert_eq!(
            csv,
            "index,token,occlusion,gradient,attention\n\
             0,\"a,b\",0.1,,1.0\n\
             1,\"say \"\"hi\"\"\",-2.0,,NaN\n\
             2,c,0.00003,,0.25\n"
        );
        let failed = vec![(Method::Gradient, Err("no gradient".to_owned()))];
        assert!(table_csv(&failed).unwrap_err().contains("no gradient"));
    }
}
