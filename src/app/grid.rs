//! The grid view: every layer × head of a run as a small thumbnail.
//!
//! Rows are layers and columns are heads. Each thumbnail is `render::thumbnail_image` at
//! [`THUMB_MAX_SIDE`] pixels, the same function and pixels as the exported grid (max-pooled, so
//! one-hot patterns stay visible), uploaded as a texture only when the run or the colour
//! settings change; a frame then costs one `painter.image` and one label per head.
//!
//! Hovering a thumbnail shows a large preview of that head, built on first hover and kept in a
//! small cache; clicking one opens it in the heatmap view.
//!
//! With grouped-query attention, the query heads that share a key/value head are drawn side by
//! side on a shaded panel under a bracket labelled with the KV head, and groups are set apart by
//! a wider gap. Models without shared KV heads get the plain grid.

use super::state::{AppState, HeadMode, ViewKind};
use super::texture::upload;
use super::view::{View, ViewCx};
use crate::model::demo::crafted_at;
use crate::pipeline::Run;
use crate::render::grid::{KvGroup, kv_column_groups};
use crate::render::view::{range_for, shared_range};
use crate::render::{
    Colormap, RangeMode, ValueRange, ValueScale, heatmap_image_masked, max_pool, pool_mask,
    thumbnail_image,
};
use egui::{
    Align2, Color32, Rect, Role, Sense, Stroke, StrokeKind, TextureHandle, TextureId, Vec2,
    WidgetInfo, pos2, vec2,
};
use image::RgbaImage;
use ndarray::ArrayView2;
use std::sync::{Arc, Weak};

/// Side, in pixels, of a thumbnail texture (and the exported grid's default thumbnail side).
pub const THUMB_MAX_SIDE: usize = crate::render::ExportStyle::THUMB_PX as usize;

/// Largest side, in cells, of a hover preview texture. Maps up to this size are shown at full
/// resolution; larger ones are max-pooled so the texture stays within GPU limits.
const PREVIEW_MAX_SIDE: usize = 1024;

/// Side of the hover preview, in points.
const PREVIEW_PX: f32 = 320.0;

/// Smallest thumbnail side, in points.
const MIN_THUMB_PX: f32 = 48.0;

/// Largest thumbnail side, in points (keeps one-head models from filling the screen).
const MAX_THUMB_PX: f32 = 512.0;

/// Number of hover previews kept.
const PREVIEW_CACHE_LEN: usize = 6;

/// Smallest thumbnail side, in points, that gets body-size captions.
const BODY_CAPTION_MIN_PX: f32 = 64.0;

/// The side of square thumbnails that fills `room` (the panel less the gaps between columns and
/// the KV band) with `heads` columns and `layers` rows, each row `below` points taller than its
/// thumbnail (caption and gap): the larger side at which both directions fit, within
/// [`MIN_THUMB_PX`]..=[`MAX_THUMB_PX`] (below the minimum the grid scrolls).
fn thumb_side(room: Vec2, layers: usize, heads: usize, below: f32) -> f32 {
    let by_width = room.x / heads.max(1) as f32;
    let by_height = room.y / layers.max(1) as f32 - below;
    by_width
        .min(by_height)
        .floor()
        .clamp(MIN_THUMB_PX, MAX_THUMB_PX)
}

/// The badge of a crafted head: the initials of its label ("previous token" → "PT").
fn badge_text(label: &str) -> String {
    label
        .split(|c: char| !c.is_alphanumeric())
        .filter_map(|w| w.chars().next())
        .flat_map(char::to_uppercase)
        .collect()
}

/// Draws `text` as a small badge in the top-left corner of `rect`.
fn badge(painter: &egui::Painter, rect: Rect, text: &str, font: &egui::FontId, dark: bool) {
    let (fill, color) = super::theme::badge_colors(dark);
    let galley = painter.layout_no_wrap(text.to_owned(), font.clone(), color);
    let pad = vec2(3.0, 1.0);
    let badge = Rect::from_min_size(rect.min + vec2(2.0, 2.0), galley.size() + 2.0 * pad);
    painter.rect_filled(badge, 3.0, fill);
    painter.galley(badge.min + pad, galley, color);
}

/// Marks an ablated head's thumbnail: a red frame, a diagonal and `0` or `μ` in the top-right
/// corner (zero or mean), readable over any colormap.
fn ablated_mark(
    painter: &egui::Painter,
    rect: Rect,
    mode: crate::engine::AblationMode,
    font: &egui::FontId,
) {
    let red = Color32::from_rgb(0xe0, 0x30, 0x30);
    painter.rect_stroke(
        rect.shrink(1.0),
        0.0,
        Stroke::new(2.0, red),
        StrokeKind::Inside,
    );
    painter.line_segment(
        [rect.left_bottom(), rect.right_top()],
        Stroke::new(1.5, red),
    );
    let text = match mode {
        crate::engine::AblationMode::Zero => "0",
        crate::engine::AblationMode::Mean => "μ",
    };
    let galley = painter.layout_no_wrap(text.to_owned(), font.clone(), Color32::WHITE);
    let pad = vec2(3.0, 1.0);
    let size = galley.size() + 2.0 * pad;
    let tag = Rect::from_min_size(pos2(rect.right() - size.x - 2.0, rect.top() + 2.0), size);
    painter.rect_filled(tag, 3.0, red);
    painter.galley(tag.min + pad, galley, Color32::WHITE);
}

/// Texture coordinates of a whole texture.
const FULL_UV: Rect = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));

/// The accessible label and caption of the thumbnail at (`layer_idx`, `head_idx`).
fn thumb_label(layer_idx: usize, head_idx: usize) -> String {
    format!("L{layer_idx}·H{head_idx}")
}

/// What the textures were built from.
#[derive(Clone, Debug, PartialEq, Eq)]
struct TextureKey {
    /// `Arc::as_ptr` of the run. The cache also holds a `Weak` to it, so the address cannot be
    /// reused by a later run while the key is alive.
    run: usize,
    /// Colormap.
    colormap: Colormap,
    /// Linear or log colours.
    value_scale: ValueScale,
    /// Per-head or shared range.
    range: RangeMode,
    /// The range is centred on 0 (a difference).
    centred: bool,
}

impl TextureKey {
    /// The key for `run` (which carries its applied mask), drawn with `state`'s colour
    /// settings.
    fn new(run: &Arc<Run>, state: &AppState) -> Self {
        // The export's style, fitted to what the maps hold (a difference: diverging around 0).
        let style = state.render_style(1, false, run.kind);
        Self {
            run: Arc::as_ptr(run) as usize,
            colormap: style.colormap,
            value_scale: style.scale,
            range: style.range,
            centred: style.centred,
        }
    }
}

/// The value range `m` (one head of `run`) is coloured with: `shared` when the key asks for
/// one shared range, else the map's own range (of the full map, not the pooled one), centred
/// on 0 when the key says so.
fn head_range(
    run: &Run,
    m: ArrayView2<'_, f32>,
    shared: Option<ValueRange>,
    key: &TextureKey,
) -> ValueRange {
    shared.unwrap_or_else(|| {
        let own = range_for(&run.maps, m, RangeMode::PerHead);
        if key.centred { own.centred() } else { own }
    })
}

/// The thumbnails of one run.
struct Thumbnails {
    /// What they show.
    key: TextureKey,
    /// Keeps the run's allocation (not its data) alive so that `key.run` stays unique.
    _pin: Weak<Run>,
    /// The run-wide range, when the key asks for a shared range.
    shared: Option<ValueRange>,
    /// Heads per layer, for indexing `textures`.
    heads: usize,
    /// One texture per head, layer-major; `None` for a map that could not be drawn.
    textures: Vec<Option<TextureHandle>>,
    /// The images those textures were uploaded from, in the same order.
    images: Vec<Option<RgbaImage>>,
}

impl Thumbnails {
    /// Pools, colours and uploads every head of `run`.
    fn build(ctx: &egui::Context, run: &Arc<Run>, key: TextureKey) -> Self {
        let [layers, heads, _, _] = run.maps.shape();
        let shared = (key.range == RangeMode::Shared).then(|| {
            let range = shared_range(&run.maps);
            if key.centred { range.centred() } else { range }
        });
        // One mask for every head, as in the exported grid.
        let n = run.tokens.len();
        let is_pad: Vec<bool> = run.tokens.iter().map(|t| t.is_pad()).collect();
        let all: Vec<usize> = (0..n).collect();
        let masked = crate::render::view::masked_cells(&run.mask, n, &is_pad, &all);
        let mut textures = Vec::with_capacity(layers * heads);
        let mut images = Vec::with_capacity(layers * heads);
        for layer_idx in 0..layers {
            for head_idx in 0..heads {
                let image = run.maps.head(layer_idx, head_idx).map(|m| {
                    let range = head_range(run, m.view(), shared, &key);
                    // THUMB_MAX_SIDE is a small constant: the cast is lossless.
                    let side = THUMB_MAX_SIDE as u32;
                    let mask = masked.as_ref().map(|mask| mask.view());
                    thumbnail_image(m.view(), mask, side, key.colormap, range, key.value_scale)
                });
                let texture = image
                    .as_ref()
                    .filter(|img| !img.is_empty())
                    .map(|img| upload(ctx, format!("grid-thumb-L{layer_idx}H{head_idx}"), img));
                textures.push(texture);
                images.push(image.filter(|img| !img.is_empty()));
            }
        }
        Self {
            key,
            _pin: Arc::downgrade(run),
            shared,
            heads,
            textures,
            images,
        }
    }

    /// The texture of (`layer_idx`, `head_idx`), if it was drawn.
    fn texture(&self, layer_idx: usize, head_idx: usize) -> Option<&TextureHandle> {
        if head_idx >= self.heads {
            return None;
        }
        self.textures
            .get(layer_idx * self.heads + head_idx)?
            .as_ref()
    }
}

impl GridView {
    /// The image uploaded as the thumbnail texture of (`layer_idx`, `head_idx`) for the run last
    /// drawn, pixel for pixel; `None` before the first frame or for a head without a map.
    pub fn thumbnail(&self, layer_idx: usize, head_idx: usize) -> Option<&RgbaImage> {
        let thumbs = self.thumbs.as_ref()?;
        if head_idx >= thumbs.heads {
            return None;
        }
        thumbs
            .images
            .get(layer_idx * thumbs.heads + head_idx)?
            .as_ref()
    }
}

/// One cached hover preview.
struct Preview {
    /// What the texture was built from (with the head below).
    key: TextureKey,
    /// Layer of the previewed head.
    layer_idx: usize,
    /// The previewed head.
    head_idx: usize,
    /// The full-resolution (up to [`PREVIEW_MAX_SIDE`]) texture.
    texture: TextureHandle,
}

/// The last few hover previews, most recently used last.
#[derive(Default)]
struct PreviewCache {
    /// The cached previews.
    entries: Vec<Preview>,
}

impl PreviewCache {
    /// The preview texture of (`layer_idx`, `head_idx`) under `key`, built on first use.
    fn get_or_build(
        &mut self,
        ctx: &egui::Context,
        run: &Run,
        key: &TextureKey,
        shared: Option<ValueRange>,
        layer_idx: usize,
        head_idx: usize,
    ) -> Option<TextureId> {
        let found = self
            .entries
            .iter()
            .position(|p| p.key == *key && p.layer_idx == layer_idx && p.head_idx == head_idx);
        match found {
            Some(pos) => {
                let entry = self.entries.remove(pos);
                self.entries.push(entry);
            }
            None => {
                let m = run.maps.head(layer_idx, head_idx)?;
                let range = head_range(run, m.view(), shared, key);
                let matrix = max_pool(m.view(), PREVIEW_MAX_SIDE);
                let n = run.tokens.len();
                let is_pad: Vec<bool> = run.tokens.iter().map(|t| t.is_pad()).collect();
                let all: Vec<usize> = (0..n).collect();
                let masked = crate::render::view::masked_cells(&run.mask, n, &is_pad, &all)
                    .filter(|mask| mask.dim() == m.view().dim())
                    .map(|mask| pool_mask(mask.view(), PREVIEW_MAX_SIDE));
                let img = heatmap_image_masked(
                    matrix.view(),
                    masked.as_ref().map(|mask| mask.view()),
                    key.colormap,
                    range,
                    key.value_scale,
                    1,
                );
                if img.is_empty() {
                    return None;
                }
                let texture = upload(ctx, format!("grid-preview-L{layer_idx}H{head_idx}"), &img);
                if self.entries.len() >= PREVIEW_CACHE_LEN {
                    self.entries.remove(0);
                }
                self.entries.push(Preview {
                    key: key.clone(),
                    layer_idx,
                    head_idx,
                    texture,
                });
            }
        }
        self.entries.last().map(|p| p.texture.id())
    }
}

/// The grid view's runtime state: the thumbnail textures and the hover previews.
#[derive(Default)]
pub struct GridView {
    /// The thumbnails of the run last drawn.
    thumbs: Option<Thumbnails>,
    /// Recently hovered heads at full resolution.
    previews: PreviewCache,
}

/// "head 2", "heads 0–3" (consecutive) or "heads 1, 4" (`heads` sorted).
fn heads_text(heads: &[usize]) -> String {
    match heads {
        [] => "no heads".to_owned(),
        [h] => format!("head {h}"),
        [first, .., last] if last - first + 1 == heads.len() => format!("heads {first}–{last}"),
        _ => {
            let list: Vec<String> = heads.iter().map(ToString::to_string).collect();
            format!("heads {}", list.join(", "))
        }
    }
}

/// The accessible label of key/value group `kv_idx`, e.g. "KV 1: heads 2–3".
fn kv_group_label(kv_idx: usize, heads: &[usize]) -> String {
    format!("KV {kv_idx}: {}", heads_text(heads))
}

/// The key/value groups to draw: render's [`kv_column_groups`], the same decision as the
/// exported grid's.
fn drawn_groups(kv_groups: &[Vec<usize>], heads: usize) -> Option<Vec<KvGroup>> {
    kv_column_groups(kv_groups, heads)
}

/// Where the columns go, in points from the grid's left edge.
#[derive(Debug, PartialEq)]
struct Columns {
    /// Left edge of each head's thumbnail, indexed by head.
    x_of_head: Vec<f32>,
    /// Per drawn group: the group, and the left and right edges of its thumbnails.
    spans: Vec<(KvGroup, f32, f32)>,
    /// Width of the whole grid.
    width: f32,
}

/// Lays out `heads` columns of `side` points with `gap` between them. With `groups`, each
/// group's heads sit side by side in their order and groups are `group_gap` further apart;
/// without, head h is column h, exactly as in a model without GQA.
fn layout_columns(
    heads: usize,
    side: f32,
    gap: f32,
    group_gap: f32,
    groups: Option<&[KvGroup]>,
) -> Columns {
    let cell_w = side + gap;
    let Some(groups) = groups else {
        return Columns {
            x_of_head: (0..heads).map(|h| h as f32 * cell_w).collect(),
            spans: Vec::new(),
            width: (heads as f32 * cell_w - gap).max(0.0),
        };
    };
    let mut x_of_head = vec![0.0; heads];
    let mut spans = Vec::with_capacity(groups.len());
    let mut column = 0;
    for (g, group) in groups.iter().enumerate() {
        let left = column as f32 * cell_w + g as f32 * group_gap;
        for (i, &h) in group.heads.iter().enumerate() {
            if let Some(x) = x_of_head.get_mut(h) {
                *x = left + i as f32 * cell_w;
            }
        }
        column += group.heads.len();
        let right = left + group.heads.len() as f32 * cell_w - gap;
        spans.push((group.clone(), left, right));
    }
    let width = spans.last().map_or(0.0, |(_, _, right)| *right);
    Columns {
        x_of_head,
        spans,
        width,
    }
}

impl GridView {
    /// Draws every layer × head of `run`; a click selects that head and opens the heatmap.
    ///
    /// The run's `kv_groups` list, per key/value head, the query heads that share it. When a
    /// KV head is shared (grouped-query attention), each group's heads are drawn together under
    /// a labelled bracket, with a gap between groups; otherwise it is ignored. Cells that the
    /// run's applied mask forbids are drawn in the masked colour, as in the exported grid.
    pub fn draw(&mut self, ui: &mut egui::Ui, run: &Arc<Run>, state: &mut AppState) {
        let [layers, heads, n, _] = run.maps.shape();
        if layers == 0 || heads == 0 || n == 0 {
            ui.label("Nothing to show: the run has no attention maps.");
            return;
        }
        let key = TextureKey::new(run, state);
        if self.thumbs.as_ref().is_none_or(|t| t.key != key) {
            // Drop the old textures first so that both sets are never alive at once.
            self.thumbs = None;
            self.previews.entries.clear();
            self.thumbs = Some(Thumbnails::build(ui.ctx(), run, key));
        }
        let Some(thumbs) = &self.thumbs else {
            return;
        };
        let previews = &mut self.previews;
        let groups = drawn_groups(&run.kv_groups, heads);
        // Per head: its KV head and the other query heads sharing it.
        let mut shared_with: Vec<Option<(usize, Vec<usize>)>> = vec![None; heads];
        for group in groups.iter().flatten() {
            for &h in &group.heads {
                let others: Vec<usize> = group.heads.iter().copied().filter(|&o| o != h).collect();
                if let Some(slot) = shared_with.get_mut(h) {
                    *slot = Some((group.kv_idx, others));
                }
            }
        }

        // The panel's size before the scroll area: thumbnails are sized to fill it.
        let panel = ui.available_size();
        let body = egui::TextStyle::Body.resolve(ui.style());
        let small = egui::TextStyle::Small.resolve(ui.style());
        let gap = ui.spacing().item_spacing.x.max(4.0);
        let group_gap = (3.0 * gap).max(12.0);
        let dark = ui.visuals().dark_mode;
        let text_color = ui.visuals().text_color();
        let selected_stroke = Stroke::new(2.0, super::theme::selection_outline(dark));
        let hover_stroke = ui.visuals().widgets.hovered.fg_stroke;
        let group_fill = super::theme::kv_group_fill(dark);
        let bracket_stroke = Stroke::new(2.0, super::theme::kv_group_accent(dark));
        // The bracket row above grouped columns: a label (body size, it names the grouping)
        // and a bracket under it.
        let group_font = egui::TextStyle::Body.resolve(ui.style());
        let group_label_h = ui.fonts_mut(|f| f.row_height(&group_font));
        let band_h = if groups.is_some() {
            group_label_h + 12.0
        } else {
            0.0
        };

        egui::ScrollArea::both()
            .id_salt("grid-view-scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let n_groups = groups.as_ref().map_or(1, Vec::len);
                let spacing = gap * (heads - 1) as f32 + group_gap * (n_groups - 1) as f32;
                let fit = |label_h: f32| {
                    let room = vec2(panel.x - spacing, panel.y - band_h);
                    thumb_side(room, layers, heads, label_h + gap)
                };
                // Body-size captions when thumbnails are large enough, else the small style.
                let body_h = ui.fonts_mut(|f| f.row_height(&body)) + 2.0;
                let (font, label_h, side) = match fit(body_h) {
                    side if side >= BODY_CAPTION_MIN_PX => (body.clone(), body_h, side),
                    _ => {
                        let small_h = ui.fonts_mut(|f| f.row_height(&small)) + 2.0;
                        (small.clone(), small_h, fit(small_h))
                    }
                };
                let columns = layout_columns(heads, side, gap, group_gap, groups.as_deref());
                let row_h = side + label_h + gap;
                let total = vec2(columns.width, band_h + layers as f32 * row_h);
                let (grid, _) = ui.allocate_exact_size(total, Sense::hover());

                for (group, left, right) in &columns.spans {
                    let (left, right) = (grid.left() + left, grid.left() + right);
                    let pad = (group_gap / 2.0 - 2.0).max(1.0);
                    let panel = Rect::from_min_max(
                        pos2(left - pad, grid.top()),
                        pos2(right + pad, grid.bottom() - gap / 2.0),
                    );
                    let band = Rect::from_min_max(
                        pos2(left, grid.top()),
                        pos2(right, grid.top() + band_h),
                    );
                    let label = kv_group_label(group.kv_idx, &group.heads);
                    let id = ui.scope_id().with(("grid-kv-group", group.kv_idx));
                    let response = ui.interact(band, id, Sense::hover());
                    response.widget_info(|| WidgetInfo::labeled(Role::Label, true, &label));
                    if ui.is_rect_visible(panel) {
                        let painter = ui.painter();
                        painter.rect_filled(panel, 4.0, group_fill);
                        // A bracket over the group's columns: a line with ticks down at both ends.
                        let y = band.bottom() - 7.0;
                        painter.line_segment([pos2(left, y), pos2(right, y)], bracket_stroke);
                        for x in [left, right] {
                            painter.line_segment([pos2(x, y), pos2(x, y + 4.0)], bracket_stroke);
                        }
                        // The long caption when it fits, else just the KV head.
                        let long = format!("KV {} · {}", group.kv_idx, heads_text(&group.heads));
                        let galley =
                            painter.layout_no_wrap(long, group_font.clone(), bracket_stroke.color);
                        let galley = if galley.size().x <= right - left {
                            galley
                        } else {
                            painter.layout_no_wrap(
                                format!("KV {}", group.kv_idx),
                                group_font.clone(),
                                bracket_stroke.color,
                            )
                        };
                        let text_pos = pos2(
                            band.center().x - galley.size().x / 2.0,
                            y - 1.0 - galley.size().y,
                        );
                        painter.galley(text_pos, galley, bracket_stroke.color);
                    }
                    response.on_hover_text(format!(
                        "Query {} share key/value head {}",
                        heads_text(&group.heads),
                        group.kv_idx
                    ));
                }

                for layer_idx in 0..layers {
                    for head_idx in 0..heads {
                        let x = columns.x_of_head.get(head_idx).copied().unwrap_or_default();
                        let min = grid.min + vec2(x, band_h + layer_idx as f32 * row_h);
                        let rect = Rect::from_min_size(min, Vec2::splat(side));
                        let name = thumb_label(layer_idx, head_idx);
                        let id = ui.scope_id().with(("grid-thumb", layer_idx, head_idx));
                        let response = ui.interact(rect, id, Sense::click());
                        // Crafted heads only exist in the demo model.
                        let demo = state.model_dir.is_none().then_some(&state.demo);
                        let crafted = demo.and_then(|d| crafted_at(d, layer_idx, head_idx));
                        let ablated = state.ablation_of(layer_idx, head_idx);
                        response.widget_info(|| {
                            let mut info = WidgetInfo::labeled(Role::Button, true, &name);
                            let mut value = Vec::new();
                            if let Some(k) = crafted {
                                value.push(format!("crafted head: {}", k.label()));
                            }
                            if let Some(mode) = ablated {
                                value.push(format!("ablated ({})", mode.name()));
                            }
                            info.current_text_value = (!value.is_empty()).then(|| value.join("; "));
                            info
                        });

                        let outer = rect.with_max_y(rect.max.y + label_h);
                        if ui.is_rect_visible(outer) {
                            let painter = ui.painter();
                            match thumbs.texture(layer_idx, head_idx) {
                                Some(texture) => {
                                    painter.image(texture.id(), rect, FULL_UV, Color32::WHITE);
                                }
                                None => {
                                    painter.rect_filled(rect, 0.0, ui.visuals().extreme_bg_color);
                                }
                            }
                            painter.text(
                                pos2(rect.center().x, rect.bottom() + 1.0),
                                Align2::CENTER_TOP,
                                &name,
                                font.clone(),
                                text_color,
                            );
                            if let Some(kind) = crafted {
                                badge(painter, rect, &badge_text(kind.label()), &small, dark);
                            }
                            if let Some(mode) = ablated {
                                ablated_mark(painter, rect, mode, &small);
                            }
                            let selected =
                                state.layer_idx == layer_idx && state.head_idx == head_idx;
                            if selected {
                                painter.rect_stroke(
                                    rect,
                                    0.0,
                                    selected_stroke,
                                    StrokeKind::Outside,
                                );
                            } else if response.hovered() {
                                painter.rect_stroke(rect, 0.0, hover_stroke, StrokeKind::Outside);
                            }
                        }

                        if response.clicked() {
                            state.layer_idx = layer_idx;
                            state.head_idx = head_idx;
                            state.head_mode = HeadMode::Single;
                            state.view = ViewKind::Heatmap;
                        }
                        // A model run can ablate; an attention file's maps are fixed.
                        if run.options.is_some() {
                            response.context_menu(|ui| {
                                crate::app::chips::ablation_menu(ui, state, layer_idx, head_idx);
                            });
                        }
                        let shared = shared_with.get(head_idx).and_then(Option::as_ref);
                        response.on_hover_ui(|ui| {
                            let texture = previews.get_or_build(
                                ui.ctx(),
                                run,
                                &thumbs.key,
                                thumbs.shared,
                                layer_idx,
                                head_idx,
                            );
                            if let Some(texture) = texture {
                                ui.image((texture, Vec2::splat(PREVIEW_PX)));
                            }
                            ui.label(format!("Layer {layer_idx} · head {head_idx}"));
                            if let Some((kv_idx, others)) = shared {
                                ui.label(if others.is_empty() {
                                    format!("Has key/value head {kv_idx} to itself")
                                } else {
                                    format!("Shares KV head {kv_idx} with {}", heads_text(others))
                                });
                            }
                            if let Some(label) = crafted.map(|k| k.label()) {
                                ui.label(format!("Crafted head: {label}"));
                            }
                            if let Some(mode) = ablated {
                                ui.label(format!(
                                    "Ablated ({}): its output is replaced",
                                    mode.name()
                                ));
                            }
                            ui.weak("Click to open it in the heatmap; right-click to ablate.");
                        });
                    }
                }
            });
    }
}

impl View for GridView {
    /// Every head of the run on screen.
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        if let Some(run) = cx.run.clone() {
            self.draw(ui, &run, cx.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_fill_the_panel_in_the_binding_direction() {
        // 6 layers × 12 heads in 1000 × 800 with 20 points under each row:
        // width 1000 / 12 = 83.3, height 800 / 6 − 20 = 113.3 → 83 (width binds).
        assert_eq!(thumb_side(vec2(1000.0, 800.0), 6, 12, 20.0), 83.0);
        // 12 layers × 6 heads: width 166.7, height 800 / 12 − 20 = 46.7 → the minimum, 48.
        assert_eq!(thumb_side(vec2(1000.0, 800.0), 12, 6, 20.0), 48.0);
        // 4 × 4 in 1000 × 800: width 250, height 180 → 180, height binds (no scrolling).
        assert_eq!(thumb_side(vec2(1000.0, 800.0), 4, 4, 20.0), 180.0);
        // One head never exceeds the maximum.
        assert_eq!(thumb_side(vec2(3000.0, 3000.0), 1, 1, 20.0), MAX_THUMB_PX);
    }

    #[test]
    fn badges_are_initials() {
        assert_eq!(badge_text("previous token"), "PT");
        assert_eq!(badge_text("induction"), "I");
        assert_eq!(badge_text("first-token sink"), "FTS");
    }

    #[test]
    fn labels() {
        assert_eq!(thumb_label(3, 5), "L3·H5");
    }

    #[test]
    fn head_lists() {
        assert_eq!(heads_text(&[2]), "head 2");
        assert_eq!(heads_text(&[0, 1]), "heads 0–1");
        assert_eq!(heads_text(&[4, 5, 6, 7]), "heads 4–7");
        assert_eq!(heads_text(&[0, 2, 3]), "heads 0, 2, 3");
        assert_eq!(kv_group_label(1, &[2, 3]), "KV 1: heads 2–3");
    }

    fn group(kv_idx: usize, heads: &[usize]) -> KvGroup {
        KvGroup {
            kv_idx,
            heads: heads.to_vec(),
        }
    }

    #[test]
    fn groups_are_drawn_only_for_shared_kv_heads_that_fit_the_run() {
        let gqa = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(
            drawn_groups(&gqa, 4),
            Some(vec![group(0, &[0, 1]), group(1, &[2, 3])])
        );
        // Multi-query attention: one group of every head.
        assert_eq!(
            drawn_groups(&[vec![0, 1, 2]], 3),
            Some(vec![group(0, &[0, 1, 2])])
        );
        // One KV head per query head, or nothing known: the plain grid.
        assert_eq!(drawn_groups(&[vec![0], vec![1]], 2), None);
        assert_eq!(drawn_groups(&[], 4), None);
        // Groups that do not partition the run's heads are ignored.
        assert_eq!(drawn_groups(&gqa, 8), None, "heads 4..8 missing");
        assert_eq!(drawn_groups(&gqa, 3), None, "head 3 out of range");
        assert_eq!(
            drawn_groups(&[vec![0, 1], vec![1, 2]], 3),
            None,
            "head 1 twice"
        );
        // Unsorted groups draw their heads in order.
        assert_eq!(
            drawn_groups(&[vec![3, 0], vec![2, 1]], 4),
            Some(vec![group(0, &[0, 3]), group(1, &[1, 2])])
        );
    }

    #[test]
    fn columns_without_groups_are_evenly_spaced() {
        let c = layout_columns(3, 50.0, 4.0, 12.0, None);
        assert_eq!(c.x_of_head, vec![0.0, 54.0, 108.0]);
        assert_eq!(c.width, 158.0);
        assert!(c.spans.is_empty());
    }

    #[test]
    fn grouped_columns_sit_together_with_a_gap_between_groups() {
        // Heads 0,1 | 2,3 with 50-point thumbnails, 4 points inside a group and 4 + 12 between.
        let groups = [group(0, &[0, 1]), group(1, &[2, 3])];
        let c = layout_columns(4, 50.0, 4.0, 12.0, Some(&groups));
        assert_eq!(c.x_of_head, vec![0.0, 54.0, 120.0, 174.0]);
        assert_eq!(c.width, 224.0);
        let edges: Vec<(usize, f32, f32)> =
            c.spans.iter().map(|(g, l, r)| (g.kv_idx, *l, *r)).collect();
        assert_eq!(edges, vec![(0, 0.0, 104.0), (1, 120.0, 224.0)]);
        // Non-adjacent heads of one group become adjacent columns.
        let groups = [group(0, &[0, 2]), group(1, &[1, 3])];
        let c = layout_columns(4, 50.0, 4.0, 12.0, Some(&groups));
        assert_eq!(c.x_of_head, vec![0.0, 120.0, 54.0, 174.0]);
    }

    mod ui {
        use super::super::*;
        use crate::engine::AttentionMaps;
        use crate::tokenize::Token;
        use egui_kittest::Harness;
        use egui_kittest::kittest::Queryable;
        use ndarray::Array2;

        /// A run whose head k (layer-major) attends from query i to key (i + k) mod n.
        fn shifted_run(layers: usize, heads: usize, n: usize) -> Arc<Run> {
            let maps = (0..layers * heads)
                .map(|k| {
                    Array2::from_shape_fn((n, n), |(i, j)| if j == (i + k) % n { 1.0 } else { 0.0 })
                })
                .collect();
            let Some(maps) = AttentionMaps::from_heads(layers, heads, n, maps) else {
                panic!("bad test maps");
            };
            Arc::new(Run::of_maps(
                (0..n).map(|i| Token::from_text(&format!("t{i}"))).collect(),
                maps,
            ))
        }

        type Tested = (GridView, AppState);

        fn harness(run: Arc<Run>, state: AppState) -> Harness<'static, Tested> {
            Harness::builder()
                .with_size(vec2(1000.0, 800.0))
                .build_ui_state(
                    move |ui, (view, state): &mut Tested| view.draw(ui, &run, state),
                    (GridView::default(), state),
                )
        }

        /// (name, width, height) of every texture whose name starts with `prefix`.
        fn textures(harness: &Harness<'_, Tested>, prefix: &str) -> Vec<(String, usize, usize)> {
            let manager = harness.ctx.tex_manager();
            let manager = manager.read();
            manager
                .allocated()
                .filter(|(_, meta)| meta.name.starts_with(prefix))
                .map(|(_, meta)| (meta.name.clone(), meta.size[0], meta.size[1]))
                .collect()
        }

        #[test]
        fn clicking_a_thumbnail_opens_it_in_the_heatmap() {
            let state = AppState {
                view: ViewKind::Grid,
                head_mode: HeadMode::Mean,
                ..AppState::default()
            };
            let mut harness = harness(shifted_run(4, 6, 20), state);
            harness.run();
            harness.get_by_label("L3·H5").click();
            harness.run();
            let (_, state) = harness.state();
            assert_eq!(state.layer_idx, 3);
            assert_eq!(state.head_idx, 5);
            assert_eq!(state.head_mode, HeadMode::Single);
            assert_eq!(state.view, ViewKind::Heatmap);
        }

        #[test]
        fn thumbnails_are_small_and_built_once() {
            let mut harness = harness(shifted_run(4, 12, 512), AppState::default());
            harness.run();
            let thumbs = textures(&harness, "grid-thumb");
            assert_eq!(thumbs.len(), 48);
            assert!(
                thumbs
                    .iter()
                    .all(|&(_, w, h)| w == THUMB_MAX_SIDE && h == THUMB_MAX_SIDE)
            );
            let allocated = harness.ctx.tex_manager().read().num_allocated();
            let ids: Vec<_> = {
                let manager = harness.ctx.tex_manager();
                let manager = manager.read();
                manager.allocated().map(|(id, _)| *id).collect()
            };
            for _ in 0..3 {
                harness.step();
            }
            let after: Vec<_> = {
                let manager = harness.ctx.tex_manager();
                let manager = manager.read();
                manager.allocated().map(|(id, _)| *id).collect()
            };
            assert_eq!(harness.ctx.tex_manager().read().num_allocated(), allocated);
            assert_eq!(ids, after, "textures were rebuilt without a change");

            // A colour change rebuilds them, replacing (not adding to) the old set.
            harness.state_mut().1.colormap = Colormap::Magma;
            harness.run();
            assert_eq!(textures(&harness, "grid-thumb").len(), 48);
        }

        #[test]
        fn hovering_shows_a_cached_full_resolution_preview() {
            let mut harness = harness(shifted_run(2, 4, 200), AppState::default());
            harness.run();
            harness.get_by_label("L0·H0").hover();
            for _ in 0..10 {
                harness.step();
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
            harness.run();
            let previews = textures(&harness, "grid-preview");
            assert_eq!(previews, vec![("grid-preview-L0H0".to_owned(), 200, 200)]);
            assert!(harness.query_by_label("Layer 0 · head 0").is_some());
            // The default demo crafts a previous-token head at layer 0, head 0: its thumbnail
            // carries a badge, announced as the button's value.
            let kind = crafted_at(&harness.state().1.demo, 0, 0);
            assert_eq!(kind, Some(crate::model::demo::CraftedHead::PreviousToken));
            if let Some(kind) = kind {
                let caption = format!("Crafted head: {}", kind.label());
                assert!(harness.query_by_label(&caption).is_some());
                let value = harness.get_by_label("L0·H0").value();
                assert_eq!(value, Some(format!("crafted head: {}", kind.label())));
            }
            for _ in 0..3 {
                harness.step();
            }
            assert_eq!(textures(&harness, "grid-preview").len(), 1);
        }
    }
}
