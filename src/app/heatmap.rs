//! The heatmap view: the selected head (or combination) as a texture, with token labels that
//! follow zoom and pan, hover details, a colorbar, and right-click mask edits.
//!
//! Every pixel comes from `render`, the same path as the PNG export: the cells from
//! `render::heatmap_pyramid` (the map at one pixel per cell, then max-pooled to half, a quarter,
//! … of its side), the colorbar from `render::colorbar_image` and its ticks from
//! `render::colorbar_ticks`. Textures are uploaded with NEAREST filtering, and only when the data
//! or the colours change. Each frame draws the finest level that has no more cells across the
//! visible area than there are screen pixels, so the GPU never skips a cell and a one-cell-wide
//! diagonal stays visible at every zoom. Labels and the hover outline are clipped to the plot;
//! the hover details sit beside the cursor.

use super::state::AppState;
use super::texture::upload;
use super::theme;
use super::view::{View, ViewCx};
use crate::analysis::view_matrix;
use crate::pipeline::Run;
use crate::render::{self, ValueRange};
use egui::{Color32, Rect, RectAlign, Sense, TextureHandle, Vec2, pos2, vec2};
use image::RgbaImage;
use ndarray::Array2;
use std::sync::Arc;

/// What the texture currently shows.
#[derive(Clone, Debug, PartialEq)]
struct TextureKey {
    run: usize,
    spec: crate::analysis::ViewSpec,
    colormap: render::Colormap,
    scale: render::ValueScale,
    range: render::RangeMode,
    centred: bool,
    /// The map shown instead of the selection, by [`MapOverride::id`].
    overlay: Option<usize>,
}

/// A map the view shows instead of the selected heads' (the rollout, a value-zeroing map):
/// one value per (output position, input token), drawn with the same colours, zoom, labels
/// and hover, without masked cells or mask edits.
#[derive(Clone, Debug)]
pub struct MapOverride {
    /// Changes whenever the matrix does (the address of its source).
    pub id: usize,
    /// Shape: [query, key], one row and column per token.
    pub matrix: Arc<Array2<f32>>,
    /// Shown above the map.
    pub title: String,
}

/// Smallest side, in cells, of the coarsest pooled level (the view is never under 64 points).
const MIN_LEVEL_SIDE: usize = 64;

/// Height, in pixels, of the colorbar gradient texture (stretched to the bar's height).
const COLORBAR_TEXELS: u32 = 256;

/// One uploaded level of the pyramid.
struct Level {
    /// Cells per side of this level (the longer side).
    side: usize,
    /// The uploaded image.
    texture: TextureHandle,
    /// The pixels uploaded, kept for tests and checks.
    image: RgbaImage,
}

/// The uploaded textures and what they were made from.
struct Shown {
    key: TextureKey,
    /// The map at one pixel per cell, then max-pooled to about half, a quarter, … of its side.
    levels: Vec<Level>,
    /// The colorbar gradient.
    colorbar: TextureHandle,
    /// The matrix on screen. Shape: [query, key].
    matrix: Arc<Array2<f32>>,
    /// Token index of each row and column.
    kept: Vec<usize>,
    range: ValueRange,
    /// Whether any shown cell is masked (the colorbar then gets a "masked" entry).
    any_masked: bool,
}

/// The heatmap view's runtime state.
pub struct HeatmapView {
    texture: Option<Shown>,
    /// Index into `texture.levels` of the level drawn last.
    level: usize,
    /// Texture uploads so far: hovering, zooming and panning must not add to it.
    pub uploads: usize,
    /// Zoom factor (1 = fit).
    zoom: f32,
    /// Top-left of the visible area, in cells.
    offset: Vec2,
}

impl Default for HeatmapView {
    fn default() -> Self {
        Self {
            texture: None,
            level: 0,
            uploads: 0,
            zoom: 1.0,
            offset: Vec2::ZERO,
        }
    }
}

/// Height, in points, the colorbar gives up for the "masked" legend below it.
const LEGEND_ROOM: f32 = 26.0;

/// Width reserved for labels and the colorbar.
const LABEL_SPACE: f32 = 90.0;
const COLORBAR_SPACE: f32 = 70.0;

/// The index of the finest level in `sides` (descending cell counts of a map `n` cells across)
/// that shows `visible` cells of the full map with at most `pixels` texels across; the coarsest
/// level when none does.
fn level_for(sides: &[usize], n: usize, visible: f32, pixels: f32) -> usize {
    let n = n.max(1) as f32;
    sides
        .iter()
        .position(|&side| visible * side as f32 / n <= pixels.max(1.0))
        .unwrap_or(sides.len().saturating_sub(1))
}

impl HeatmapView {
    /// The image drawn in the last frame: the full map, or a max-pooled level of it when the
    /// map has more cells across than the screen has pixels.
    pub fn on_screen(&self) -> Option<&RgbaImage> {
        self.texture
            .as_ref()?
            .levels
            .get(self.level)
            .map(|l| &l.image)
    }

    /// Draws the heatmap of `state`'s selection.
    /// `labels` are the tokens' display labels, one per token; the cells the run's applied mask
    /// forbids are drawn in the colormap's masked colour, as in the exported figure.
    pub fn draw(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        state: &mut AppState,
    ) {
        self.ui_with(ui, run, labels, state, None);
    }

    /// [`Self::draw`], showing `overlay` instead of the selection when given (special tokens
    /// hidden as the selection hides them).
    pub fn ui_with(
        &mut self,
        ui: &mut egui::Ui,
        run: &Arc<Run>,
        labels: &[String],
        state: &mut AppState,
        overlay: Option<&MapOverride>,
    ) {
        let spec = state.view_spec();
        // The screen's colours are the export's: one style, fitted to what the maps hold (a
        // difference is drawn diverging around 0).
        let style = state.render_style(1, false, run.kind);
        let key = TextureKey {
            run: Arc::as_ptr(run) as usize,
            spec: spec.clone(),
            colormap: style.colormap,
            scale: style.scale,
            range: style.range,
            centred: style.centred,
            overlay: overlay.map(|o| o.id),
        };
        if self.texture.as_ref().is_none_or(|t| t.key != key) {
            let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
            let shown = match overlay {
                None => view_matrix(&run.maps, &special, &spec),
                Some(o) if spec.hide_special => {
                    crate::analysis::without_special(&o.matrix, &special)
                }
                Some(o) => Ok((o.matrix.as_ref().clone(), (0..o.matrix.nrows()).collect())),
            };
            match shown {
                Ok((matrix, kept)) => {
                    let range = match overlay {
                        None => style.value_range(&run.maps, matrix.view()),
                        Some(_) => ValueRange::of(matrix.view()),
                    };
                    let is_pad: Vec<bool> = run.tokens.iter().map(|t| t.is_pad()).collect();
                    let masked = match overlay {
                        None => {
                            render::view::masked_cells(&run.mask, run.tokens.len(), &is_pad, &kept)
                        }
                        Some(_) => None,
                    };
                    let images = render::heatmap_pyramid(
                        matrix.view(),
                        masked.as_ref().map(|m| m.view()),
                        style.colormap,
                        range,
                        style.scale,
                        MIN_LEVEL_SIDE,
                    );
                    // Drop the old textures before uploading the new ones.
                    let same_size = self
                        .texture
                        .take()
                        .is_some_and(|t| t.matrix.dim() == matrix.dim());
                    if !same_size {
                        self.zoom = 1.0;
                        self.offset = Vec2::ZERO;
                    }
                    let ctx = ui.ctx();
                    let levels = images
                        .into_iter()
                        .enumerate()
                        .map(|(i, image)| Level {
                            side: image.width().max(image.height()) as usize,
                            texture: upload(ctx, format!("heatmap-{i}"), &image),
                            image,
                        })
                        .collect();
                    let bar = render::colorbar_image(style.colormap, 1, COLORBAR_TEXELS);
                    self.texture = Some(Shown {
                        key,
                        levels,
                        colorbar: upload(ctx, "heatmap-colorbar", &bar),
                        matrix: Arc::new(matrix),
                        kept,
                        range,
                        any_masked: masked.is_some(),
                    });
                    self.level = 0;
                    self.uploads += 1;
                }
                Err(e) => {
                    ui.label(format!("Cannot show this selection: {e}"));
                    return;
                }
            }
        }
        let Some(shown) = &self.texture else {
            return;
        };
        let sides: Vec<usize> = shown.levels.iter().map(|l| l.side).collect();
        let textures: Vec<TextureHandle> = shown.levels.iter().map(|l| l.texture.clone()).collect();
        let colours = (shown.key.colormap, shown.key.scale);
        let (colorbar, matrix, kept, range, any_masked) = (
            shown.colorbar.clone(),
            shown.matrix.clone(),
            shown.kept.clone(),
            shown.range,
            shown.any_masked,
        );
        let n = matrix.nrows();
        if n == 0 {
            return;
        }
        ui.horizontal(|ui| {
            match overlay {
                Some(o) => ui.label(&o.title),
                None => ui.label(format!("{} · {}", spec.layer, spec.heads)),
            };
            if run.kind == crate::analysis::MapsKind::AblationDifference {
                ui.label("· ablated − unablated")
                    .on_hover_text("Red: weight the ablation added; blue: weight it took away");
            }
            if ui.small_button("reset zoom").clicked() {
                self.zoom = 1.0;
                self.offset = Vec2::ZERO;
            }
            ui.label(if overlay.is_some() {
                "scroll to zoom, drag to pan"
            } else {
                "scroll to zoom, drag to pan, right-click a cell to mask it"
            });
        });
        let avail = ui.available_size();
        let side = (avail.x - LABEL_SPACE - COLORBAR_SPACE)
            .min(avail.y - LABEL_SPACE - 12.0)
            .max(64.0);
        let (outer, _) = ui.allocate_exact_size(
            vec2(side + LABEL_SPACE + COLORBAR_SPACE, side + LABEL_SPACE),
            Sense::hover(),
        );
        let cells = Rect::from_min_size(
            outer.min + vec2(LABEL_SPACE, LABEL_SPACE),
            Vec2::splat(side),
        );
        let response = ui.interact(
            cells,
            ui.scope_id().with("heatmap-cells"),
            Sense::click_and_drag(),
        );
        response
            .widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, "heatmap cells"));

        // Zoom around the pointer, pan by dragging; the view never leaves the matrix.
        let visible = n as f32 / self.zoom;
        if let Some(pointer) = response.hover_pos() {
            let scroll = ui.input(|i| i.smooth_scroll_delta.y);
            if scroll != 0.0 {
                let at = self.offset + (pointer - cells.min) / side * visible;
                self.zoom =
                    (self.zoom * (scroll / 200.0).exp()).clamp(1.0, (n as f32 / 4.0).max(1.0));
                let new_visible = n as f32 / self.zoom;
                self.offset = at - (pointer - cells.min) / side * new_visible;
            }
        }
        if response.dragged() {
            self.offset -= response.drag_delta() / side * (n as f32 / self.zoom);
        }
        let visible = n as f32 / self.zoom;
        self.offset = self
            .offset
            .clamp(Vec2::ZERO, Vec2::splat(n as f32 - visible));
        let cell = side / visible;
        let uv = Rect::from_min_max(
            pos2(self.offset.x / n as f32, self.offset.y / n as f32),
            pos2(
                (self.offset.x + visible) / n as f32,
                (self.offset.y + visible) / n as f32,
            ),
        );
        let painter = ui.painter_at(outer);
        let pixels = side * ui.ctx().pixels_per_point();
        self.level = level_for(&sides, n, visible, pixels);
        if let Some(texture) = textures.get(self.level) {
            painter.image(texture.id(), cells, uv, Color32::WHITE);
        }
        // Labels stay beside the plot: row labels left of it, column labels above it, never
        // over the cells or the colorbar however far the view is zoomed or panned.
        let row_painter = painter.with_clip_rect(
            Rect::from_min_max(
                pos2(outer.left(), cells.top()),
                pos2(cells.left(), cells.bottom()),
            )
            .intersect(painter.clip_rect()),
        );
        let col_painter = painter.with_clip_rect(
            Rect::from_min_max(
                pos2(cells.left(), outer.top()),
                pos2(cells.right(), cells.top()),
            )
            .intersect(painter.clip_rect()),
        );
        let cell_painter = painter.with_clip_rect(cells.intersect(painter.clip_rect()));

        // Labels for the visible rows and columns, thinned so they never overlap.
        let all_labels = labels;
        let labels: Vec<&str> = kept
            .iter()
            .map(|&i| all_labels.get(i).map_or("?", String::as_str))
            .collect();
        let font = egui::FontId::proportional(cell.clamp(7.0, 13.0));
        let color = ui.visuals().text_color();
        let step = ((13.0 / cell).ceil() as usize).max(1);
        let first = self.offset.x.floor() as usize;
        let last = ((self.offset.x + visible).ceil() as usize).min(n);
        let first_row = self.offset.y.floor() as usize;
        let last_row = ((self.offset.y + visible).ceil() as usize).min(n);
        let short = |s: &str| -> String {
            if s.chars().count() > 12 {
                format!("{}…", s.chars().take(11).collect::<String>())
            } else {
                s.to_owned()
            }
        };
        for i in (first_row..last_row).filter(|i| i % step == 0) {
            let y = cells.top() + (i as f32 + 0.5 - self.offset.y) * cell;
            row_painter.text(
                pos2(cells.left() - 4.0, y),
                egui::Align2::RIGHT_CENTER,
                short(labels.get(i).copied().unwrap_or("?")),
                font.clone(),
                color,
            );
        }
        for j in (first..last).filter(|j| j % step == 0) {
            let x = cells.left() + (j as f32 + 0.5 - self.offset.x) * cell;
            let galley = col_painter.layout_no_wrap(
                short(labels.get(j).copied().unwrap_or("?")),
                font.clone(),
                color,
            );
            let pos = pos2(x - galley.size().y / 2.0, cells.top() - 4.0);
            col_painter.add(
                egui::epaint::TextShape::new(pos, galley, color)
                    .with_angle(-std::f32::consts::FRAC_PI_2),
            );
        }

        // Selected query rows, outlined.
        let dark = ui.visuals().dark_mode;
        for &q in &state.selected_queries {
            if let Some(row) = kept.iter().position(|&k| k == q) {
                let y = cells.top() + (row as f32 - self.offset.y) * cell;
                if y + cell >= cells.top() && y <= cells.bottom() {
                    let r = Rect::from_min_size(pos2(cells.left(), y), vec2(side, cell));
                    painter.rect_stroke(
                        r.intersect(cells),
                        0.0,
                        (1.5, theme::selection_outline(dark)),
                        egui::StrokeKind::Inside,
                    );
                }
            }
        }

        colorbar_ui(&painter, &colorbar, cells, colours, range, any_masked);

        // Hover details, click to select the query, right-click to mask.
        let cell_at = |p: egui::Pos2| -> (usize, usize) {
            let r = (((p.y - cells.top()) / cell + self.offset.y) as usize).min(n - 1);
            let c = (((p.x - cells.left()) / cell + self.offset.x) as usize).min(n - 1);
            (r, c)
        };
        if let Some(pointer) = response.hover_pos() {
            let (r, c) = cell_at(pointer);
            let rect = Rect::from_min_size(
                pos2(
                    cells.left() + (c as f32 - self.offset.x) * cell,
                    cells.top() + (r as f32 - self.offset.y) * cell,
                ),
                Vec2::splat(cell),
            );
            cell_painter.rect_stroke(
                rect,
                0.0,
                (1.5, theme::hover_outline()),
                egui::StrokeKind::Inside,
            );
            let weight = matrix[(r, c)];
            let rank = 1 + matrix.row(r).iter().filter(|&&v| v > weight).count();
            let (q, k) = (
                kept.get(r).copied().unwrap_or(r),
                kept.get(c).copied().unwrap_or(c),
            );
            let describe = |i: usize, label: &str| match run.tokens.get(i) {
                Some(t) if t.text != label => format!("{label} ({:?}, id {})", t.text, t.id),
                Some(t) => format!("{label:?} (id {})", t.id),
                None => "?".to_owned(),
            };
            let (qt, kt) = (
                describe(q, labels.get(r).copied().unwrap_or("?")),
                describe(k, labels.get(c).copied().unwrap_or("?")),
            );
            // A masked cell has no weight to rank: say which part of the mask forbids it.
            let is_pad: Vec<bool> = run.tokens.iter().map(|t| t.is_pad()).collect();
            let why = match overlay {
                None => run.mask.why_masked(q, k, &is_pad),
                Some(_) => Vec::new(),
            };
            let what = if overlay.is_some() { "value" } else { "weight" };
            let text = if why.is_empty() {
                format!(
                    "query {q} {qt} → key {k} {kt}\n{what} {} (rank {rank} of {n} in the row)",
                    render::format_significant(f64::from(weight))
                )
            } else {
                format!("query {q} {qt} → key {k} {kt}\nmasked ({})", why.join(", "))
            };
            // Beside the cursor (left of it near the right edge), never over the column labels.
            let mut tip = egui::Tooltip::for_enabled(&response);
            tip.popup = tip
                .popup
                .anchor(pointer + vec2(14.0, 6.0))
                .align(RectAlign::RIGHT_START)
                .align_alternatives(&[RectAlign::LEFT_START, RectAlign::BOTTOM_START]);
            tip.show(|ui| ui.label(text));
        }
        if response.clicked()
            && let Some(p) = response.interact_pointer_pos()
        {
            let (r, _) = cell_at(p);
            if let Some(&q) = kept.get(r) {
                state.selected_queries = vec![q];
            }
        }
        // One id for the clicked cell, derived from the cells' response: the context menu runs
        // inside its own `Ui`, whose scope id differs from this one.
        if overlay.is_some() {
            // Masks edit attention; an overlay's cells are not attention weights.
            return;
        }
        let mask_cell_id = response.id.with("mask-cell");
        if response.secondary_clicked()
            && let Some(p) = response.interact_pointer_pos()
        {
            let (r, c) = cell_at(p);
            ui.memory_mut(|m| {
                m.data.insert_temp(
                    mask_cell_id,
                    (
                        kept.get(r).copied().unwrap_or(r),
                        kept.get(c).copied().unwrap_or(c),
                    ),
                )
            });
        }
        response.context_menu(|ui| {
            let Some((q, k)) = ui.memory(|m| m.data.get_temp::<(usize, usize)>(mask_cell_id))
            else {
                ui.label("right-click a cell");
                return;
            };
            let mut add = |part: String| {
                state.mask_text = match state.mask_text.trim() {
                    "" | "none" => part,
                    current => format!("{current}+{part}"),
                };
            };
            if ui.button(format!("Drop cell {q}.{k}")).clicked() {
                add(format!("drop-cells:{q}.{k}"));
                ui.close();
            }
            if ui.button(format!("Drop key {k} (every query)")).clicked() {
                add(format!("drop-keys:{k}"));
                ui.close();
            }
            if ui
                .button(format!("Drop query {q} (its whole row)"))
                .clicked()
            {
                add(format!("drop-queries:{q}"));
                ui.close();
            }
        });
    }
}

/// The vertical colorbar right of the cells: render's gradient as a texture, and render's ticks
/// (the same values and texts as the PNG figure) drawn as text beside it; below it, when cells
/// are masked, a swatch of the masked colour labelled "masked", as in the figure.
fn colorbar_ui(
    painter: &egui::Painter,
    gradient: &TextureHandle,
    cells: Rect,
    (colormap, scale): (render::Colormap, render::ValueScale),
    range: ValueRange,
    any_masked: bool,
) {
    // With masked cells, the bar leaves room below it (inside the plot's height, where the
    // view's clip rect ends) for the legend.
    let legend_room = if any_masked { LEGEND_ROOM } else { 0.0 };
    let bar = Rect::from_min_size(
        pos2(cells.right() + 12.0, cells.top()),
        vec2(14.0, (cells.height() - legend_room).max(16.0)),
    );
    let full = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
    painter.image(gradient.id(), bar, full, Color32::WHITE);
    let text_color = painter.ctx().global_style().visuals.text_color();
    let font = egui::FontId::proportional(11.0);
    let line = painter.ctx().fonts_mut(|f| f.row_height(&font));
    let ticks = render::colorbar_ticks(range, scale, bar.height(), line);
    for tick in ticks {
        let y = bar.top() + tick.offset;
        painter.line_segment(
            [pos2(bar.right(), y), pos2(bar.right() + 3.0, y)],
            (1.0, text_color),
        );
        // Keep the end labels inside the bar's height, so the view's clip rect never cuts them.
        let half = line / 2.0;
        let text_y = y.clamp(bar.top() + half, bar.bottom() - half);
        painter.text(
            pos2(bar.right() + 5.0, text_y),
            egui::Align2::LEFT_CENTER,
            tick.text,
            font.clone(),
            text_color,
        );
    }
    if any_masked {
        let [r, g, b, _] = colormap.masked_color();
        let swatch = Rect::from_min_size(pos2(bar.left(), cells.bottom() - 12.0), vec2(14.0, 12.0));
        painter.rect(
            swatch,
            0.0,
            Color32::from_rgb(r, g, b),
            (1.0, theme::colorbar_frame()),
            egui::StrokeKind::Outside,
        );
        painter.text(
            pos2(bar.right() + 5.0, swatch.center().y),
            egui::Align2::LEFT_CENTER,
            render::figure::MASKED_LEGEND,
            font,
            text_color,
        );
    }
}

impl View for HeatmapView {
    /// The heatmap of the run on screen.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        if let Some(run) = cx.run.clone() {
            let labels = cx.labels.clone();
            self.draw(ui, &run, &labels, cx.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::AttentionMaps;
    use crate::render::ValueScale;
    use crate::tokenize::Token;
    use egui_kittest::Harness;
    use egui_kittest::kittest::Queryable;

    #[test]
    fn levels_are_the_finest_with_no_more_texels_than_pixels() {
        let sides = [2000, 1000, 500, 250, 125, 63];
        // Fit: 2000 cells on 600 pixels needs the 500 level (500 ≤ 600 < 1000).
        assert_eq!(level_for(&sides, 2000, 2000.0, 600.0), 2);
        // Zoomed 4×: 500 cells visible, the full map fits.
        assert_eq!(level_for(&sides, 2000, 500.0, 600.0), 0);
        // Zoomed 2×: 1000 visible cells; level 1 shows 500 texels of them.
        assert_eq!(level_for(&sides, 2000, 1000.0, 600.0), 1);
        // Tinier than the coarsest level: the coarsest.
        assert_eq!(level_for(&sides, 2000, 2000.0, 10.0), 5);
        assert_eq!(level_for(&[5], 5, 5.0, 400.0), 0);
    }

    /// One layer, one head over four tokens, row 0 = [0.9, 3.2e-5, 0.05, 0.05 - 3.2e-5].
    fn tiny_weight_run() -> Arc<Run> {
        let m = Array2::from_shape_fn((4, 4), |(q, k)| match (q, k) {
            (0, 0) => 0.9,
            (0, 1) => 3.2e-5,
            (0, 2) => 0.05,
            (0, 3) => 0.05 - 3.2e-5,
            _ => 0.25,
        });
        let Some(maps) = AttentionMaps::from_heads(1, 1, 4, vec![m]) else {
            panic!("bad test maps");
        };
        Arc::new(Run::of_maps(
            (0..4).map(|i| Token::from_text(&format!("t{i}"))).collect(),
            maps,
        ))
    }

    #[test]
    fn hovering_a_small_weight_shows_significant_digits_beside_the_cursor() {
        let run = tiny_weight_run();
        let labels: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
        let state = AppState {
            value_scale: ValueScale::Log,
            ..AppState::default()
        };
        let mut harness = Harness::builder()
            .with_size(vec2(700.0, 700.0))
            .build_ui_state(
                move |ui, (view, state): &mut (HeatmapView, AppState)| {
                    view.draw(ui, &run, &labels, state);
                },
                (HeatmapView::default(), state),
            );
        theme::install_fonts(&harness.ctx);
        harness.run();
        let cells = harness.get_by_label("heatmap cells").rect();
        // Cell (0, 1): first row, second of four columns.
        let cell = cells.width() / 4.0;
        let pointer = pos2(cells.left() + 1.5 * cell, cells.top() + 0.5 * cell);
        harness.hover_at(pointer);
        for _ in 0..12 {
            harness.step();
            std::thread::sleep(std::time::Duration::from_millis(60));
        }
        harness.run();
        // Not "weight 0.0000": three significant digits.
        let tip = harness.get_by_label_contains("weight 3.20e-5 (rank 4 of 4 in the row)");
        // Beside the cursor, not over the column labels above the plot.
        let rect = tip.rect();
        assert!(rect.left() >= pointer.x, "{rect:?} vs {pointer:?}");
        assert!(
            rect.top() >= cells.top(),
            "{rect:?} covers the labels above {cells:?}"
        );
    }

    #[test]
    fn hovering_a_masked_cell_says_which_mask_part_and_gives_no_rank() {
        let mut run = Run::clone(&tiny_weight_run());
        run.mask = crate::engine::AppliedMask::recorded(
            crate::engine::MaskSpec::parse("causal").expect("a mask"),
        );
        let run = Arc::new(run);
        let labels: Vec<String> = (0..4).map(|i| format!("t{i}")).collect();
        let mut harness = Harness::builder()
            .with_size(vec2(700.0, 700.0))
            .build_ui_state(
                move |ui, (view, state): &mut (HeatmapView, AppState)| {
                    view.draw(ui, &run, &labels, state);
                },
                (HeatmapView::default(), AppState::default()),
            );
        theme::install_fonts(&harness.ctx);
        harness.run();
        let cells = harness.get_by_label("heatmap cells").rect();
        // Cell (0, 1): the first query's future, forbidden by the causal mask.
        let cell = cells.width() / 4.0;
        harness.hover_at(pos2(cells.left() + 1.5 * cell, cells.top() + 0.5 * cell));
        for _ in 0..12 {
            harness.step();
            std::thread::sleep(std::time::Duration::from_millis(60));
        }
        harness.run();
        assert!(harness.query_by_label_contains("masked (causal)").is_some());
        assert!(harness.query_by_label_contains("rank").is_none());
    }
}
