//! The Help window: every keyboard shortcut (from the one table the key handler reads), the
//! README's sections, and About (version, the bundled fonts and their licences).

use super::shortcuts::SHORTCUTS;

/// The README, for its section list.
const README: &str = include_str!("../../README.md");
/// The bundled fonts' licence texts.
const FONT_LICENCES: [(&str, &str); 2] = [
    (
        "DejaVu Sans (figures and token labels)",
        include_str!("../../assets/DejaVuSans-LICENSE.txt"),
    ),
    (
        "Noto Sans Devanagari (fallback for Devanagari labels)",
        include_str!("../../assets/NotoSansDevanagari-LICENSE.txt"),
    ),
];

/// The README's `## ` and `### ` headings, in order, outside code blocks.
pub fn readme_sections() -> Vec<&'static str> {
    let mut in_code = false;
    README
        .lines()
        .filter_map(|line| {
            if line.starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                return None;
            }
            line.strip_prefix("## ")
                .or_else(|| line.strip_prefix("### "))
                .map(str::trim)
        })
        .collect()
}

/// Draws the Help window while `open`; its close button clears `open`.
pub fn window(ctx: &egui::Context, open: &mut bool) {
    let screen = ctx.content_rect();
    egui::Window::new("Help")
        .open(open)
        .default_width(560.0)
        .default_height((screen.height() - 80.0).clamp(200.0, 760.0))
        .pivot(egui::Align2::CENTER_CENTER)
        .default_pos(screen.center())
        .vscroll(true)
        .show(ctx, |ui| {
            ui.heading("Keyboard shortcuts");
            egui::Grid::new("help-shortcuts")
                .striped(true)
                .num_columns(2)
                .show(ui, |ui| {
                    for s in SHORTCUTS {
                        ui.strong(s.text);
                        ui.label(s.what);
                        ui.end_row();
                    }
                });
            ui.label("Right-click a heatmap cell to mask it, a grid thumbnail or the head picker to ablate a head.");
            ui.separator();
            ui.heading("The README");
            ui.label(format!(
                "README.md, beside the program's source ({}), explains:",
                env!("CARGO_PKG_NAME")
            ));
            for section in readme_sections() {
                ui.label(format!("• {section}"));
            }
            let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
            if readme.is_file() && ui.link("Open README.md").clicked() {
                ui.ctx().open_url(egui::OpenUrl::new_tab(format!(
                    "file://{}",
                    readme.display()
                )));
            }
            ui.separator();
            ui.heading("About");
            ui.label(format!(
                "attnviz {} — shows, explains and exports transformer attention.",
                env!("CARGO_PKG_VERSION")
            ));
            for (font, licence) in FONT_LICENCES {
                ui.collapsing(font, |ui| {
                    ui.label(egui::RichText::new(licence).small().monospace());
                });
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readme_sections_are_its_headings() {
        let sections = readme_sections();
        assert!(sections.contains(&"The app"), "{sections:?}");
        assert!(sections.contains(&"Command line"), "{sections:?}");
        assert!(sections.iter().all(|s| !s.starts_with('#')));
    }
}
