//! The figures of "where the answer forms" (`analysis::answer`): the logit-lens table, the
//! contribution map, the routes graph and the patching recovery map, each laid out once as a
//! scene (at pixel scale 1, drawn at the figure's pixel scale) and drawn to PNG or written as
//! SVG. Pure functions of the analyses' results and the run's labels: no model runs here.
//!
//! Every title says how its numbers were made: the model, the analysis, the target (T, the
//! foil, the position), the metric's values, and the run's settings as every figure states
//! them ([`FigureContext::settings_title`]: the applied mask, non-default options, ablations).

mod contributions;
mod geometry;
mod lens;
mod patching;
mod routes;

use contributions::contributions_scene;
pub use geometry::{AnswerGeometry, CellId, CellPlace, EdgePlace, UnitRect};
use lens::lens_scene;
use patching::patching_scene;
use routes::routes_scene;
#[cfg(test)]
use routes::{edge_colour, edge_width};

use super::colorbar::{Colorbar, Tick, colorbar_ticks, linear_ticks};
use super::colormap::Colormap;
use super::figure::{Rect, TICK_PX, TITLE_PX};
use super::heatmap::{ValueRange, ValueScale, normalize};
use super::saliency::text_on;
use super::scene::{Anchor, Area, Scene, Text};
use super::text::{self, TEXT_COLOR};
use super::{FigureContext, RenderError};
use crate::analysis::answer::Target;
use crate::analysis::answer::contributions::Contributions;
use crate::analysis::answer::lens::LensCell;
use crate::analysis::answer::patching::{PatchSite, Patching};
use crate::analysis::answer::routes::{Edge, EdgeKind, Node, Routes, Stage};
use image::RgbaImage;
use std::path::Path;

/// Blank space around a figure.
const MARGIN: f32 = 14.0;
/// Font size of the title's later lines (target, metric, settings).
const SUBTITLE_PX: f32 = 12.5;
/// Font size of axis titles and token labels.
const LABEL_PX: f32 = 12.0;
/// Font size of the texts inside cells.
const CELL_PX: f32 = 11.0;
/// Font size of notes (position numbers, the footer).
const NOTE_PX: f32 = 10.5;
/// Height of a table row.
const ROW_H: f32 = 19.0;
/// Space between a cell's text and its sides.
const CELL_PAD: f32 = 5.0;
/// Characters of a token label kept in a cell or below a column.
const CELL_CHARS: usize = 10;
/// Width of a colour bar.
const BAR_W: f32 = 14.0;
/// Smallest colour bar height.
const MIN_BAR_H: f32 = 140.0;
/// Grey of secondary texts.
const GREY: [u8; 3] = [0x6a, 0x6a, 0x6a];
/// The colour that marks the target (its column, the routes' output node, differing tokens).
const ACCENT: [u8; 4] = [0xc0, 0x39, 0x2b, 255];
/// The dark ink of frames around the target.
const INK: [u8; 4] = [TEXT_COLOR[0], TEXT_COLOR[1], TEXT_COLOR[2], 255];
/// Lowest log-probability the lens's colours tell apart; lower ones take the bottom colour.
const LENS_FLOOR: f32 = -20.0;

/// Everything an answer figure needs besides its numbers.
pub struct AnswerStyle<'a> {
    /// The run's token labels, model name, applied mask, options and ablations
    /// ([`FigureContext::from_run`], as every figure of a run takes them).
    pub ctx: &'a FigureContext,
    /// The display label of a vocabulary id (the target, the foil, the lens's top tokens).
    pub token_label: &'a dyn Fn(u32) -> String,
    /// Every length is multiplied by this in a PNG (1..=8); an SVG is laid out at 1.
    pub pixel_scale: u32,
}

/// One of the four answer figures and the results it draws.
#[derive(Clone, Copy)]
pub enum AnswerPlot<'a> {
    /// The logit-lens table: `cells[layer][i]` at `positions[i]`, `at_target` each layer's
    /// cell at the target's position (its rank column).
    Lens {
        /// The target whose log-probability colours the cells.
        target: Target,
        /// The table's positions.
        positions: &'a [usize],
        /// [layer][position index], layers 0..=L.
        cells: &'a [Vec<LensCell>],
        /// [layer] at the target's position.
        at_target: &'a [LensCell],
    },
    /// The contribution map: layers × heads, plus an MLP column.
    Contributions {
        /// The target (T, and F for a contrast).
        target: Target,
        /// The contributions.
        contributions: &'a Contributions,
    },
    /// The routes graph of a model of `layers` blocks.
    Routes {
        /// The kept nodes and edges.
        routes: &'a Routes,
        /// L.
        layers: usize,
    },
    /// The recovery map of activation patching.
    Patching {
        /// The target of the metric.
        target: Target,
        /// The recovery map and the two metrics.
        patching: &'a Patching,
        /// The corrupted input's token labels.
        labels_b: &'a [String],
    },
}

/// An answer figure's pixels with where its parts are, from one layout: what the app shows
/// and maps the pointer through.
#[derive(Clone, Debug)]
pub struct AnswerFigure {
    /// The figure drawn at `pixel_scale` (what [`AnswerPlot::png`] returns).
    pub image: RgbaImage,
    /// Pixels per scene unit.
    pub pixel_scale: u32,
    /// The cells, edges and nodes, in scene units.
    pub geometry: AnswerGeometry,
}

impl AnswerPlot<'_> {
    /// The figure as pixels.
    ///
    /// Errors: [`RenderError::Empty`] without cells; [`RenderError::TooLarge`] or
    /// [`RenderError::TooManyPixels`] beyond the size limits (checked before allocating).
    pub fn png(&self, style: &AnswerStyle<'_>) -> Result<RgbaImage, RenderError> {
        self.scene(style)?.0.png(style.pixel_scale)
    }

    /// The figure as pixels and where its cells, edges and nodes landed (the same pixels as
    /// [`AnswerPlot::png`]). Errors as there.
    pub fn figure(&self, style: &AnswerStyle<'_>) -> Result<AnswerFigure, RenderError> {
        let (scene, geometry) = self.scene(style)?;
        let pixel_scale = style
            .pixel_scale
            .clamp(1, crate::render::figure::MAX_PIXEL_SCALE);
        Ok(AnswerFigure {
            image: scene.png(pixel_scale)?,
            pixel_scale,
            geometry,
        })
    }

    /// The figure as an SVG document: the same layout, with vector text and shapes.
    pub fn svg(&self, style: &AnswerStyle<'_>) -> Result<String, RenderError> {
        self.scene(style)?.0.svg()
    }

    /// Writes the figure to `path`: SVG when its extension is `.svg` (in any case), else PNG.
    pub fn write(&self, style: &AnswerStyle<'_>, path: &Path) -> Result<(), RenderError> {
        let svg = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
        if svg {
            super::write_svg(&self.svg(style)?, path)
        } else {
            super::write_png(&self.png(style)?, path)
        }
    }

    /// The title's lines before wrapping: what, the target and its metric, the settings.
    pub fn title(&self, style: &AnswerStyle<'_>) -> Vec<String> {
        let ctx = style.ctx;
        let label = style.token_label;
        let (what, about) = match self {
            AnswerPlot::Lens {
                target, at_target, ..
            } => {
                let mut about = format!(
                    "target {} {}",
                    quoted(&label(target.token)),
                    position_words(ctx, target.position)
                );
                if let Some(lp) = at_target.last().and_then(|c| c.target_logprob) {
                    about.push_str(&format!(
                        ", log p {} at the output",
                        super::format_significant(f64::from(lp))
                    ));
                }
                about.push_str(
                    " · colour: the target's log p at each cell · text: each cell's top-1 \
                     next token · right: the target's rank at its position",
                );
                ("logit lens".to_owned(), about)
            }
            AnswerPlot::Contributions {
                target,
                contributions,
            } => (
                "direct logit attribution".to_owned(),
                format!(
                    "{} {} = {}",
                    metric_words(target, label, false),
                    position_words(ctx, target.position),
                    super::format_significant(contributions.metric)
                ),
            ),
            AnswerPlot::Routes { routes, .. } => (
                "information-flow routes (Ferrando & Voita 2024)".to_owned(),
                format!(
                    "to the output {} · threshold τ = {} · {} edges",
                    position_words(ctx, routes.position),
                    super::format_significant(routes.threshold),
                    routes.edges.len()
                ),
            ),
            AnswerPlot::Patching {
                target, patching, ..
            } => (
                format!("activation patching, site {}", patching.site.name()),
                format!(
                    "{} {}: clean {}, corrupted {} · patched: {}, clean into corrupted · \
                     recovery = (m − m_corrupted) / (m_clean − m_corrupted)",
                    metric_words(target, label, true),
                    position_words(ctx, target.position),
                    super::format_significant(patching.metric_clean),
                    super::format_significant(patching.metric_corrupted),
                    site_words(patching.site)
                ),
            ),
        };
        let mut lines = vec![format!("{} · {what}", ctx.model_name), about];
        let settings = ctx.settings_title();
        if let Some(rest) = settings.strip_prefix(" · ") {
            lines.push(rest.to_owned());
        }
        lines
    }

    /// The figure laid out once, and where its parts are.
    fn scene(
        &self,
        style: &AnswerStyle<'_>,
    ) -> Result<(Scene<'static>, AnswerGeometry), RenderError> {
        let title = self.title(style);
        match *self {
            AnswerPlot::Lens {
                target,
                positions,
                cells,
                at_target,
            } => lens_scene(style, &title, target, positions, cells, at_target),
            AnswerPlot::Contributions {
                target: _,
                contributions,
            } => contributions_scene(&title, contributions),
            AnswerPlot::Routes { routes, layers } => routes_scene(style, &title, routes, layers),
            AnswerPlot::Patching {
                target: _,
                patching,
                labels_b,
            } => patching_scene(style, &title, patching, labels_b),
        }
    }
}

/// `at position 5 (after "␣is")`.
fn position_words(ctx: &FigureContext, position: usize) -> String {
    match ctx.labels.get(position) {
        Some(l) => format!("at position {position} (after {})", quoted(l)),
        None => format!("at position {position}"),
    }
}

/// `logit("␣Paris") − logit("␣Rome")`; without a foil `log p("␣Paris")` for the lens's and
/// patching's metric (`log_p`), `logit("␣Paris")` for contributions.
fn metric_words(t: &Target, label: &dyn Fn(u32) -> String, log_p: bool) -> String {
    match t.foil {
        Some(f) => format!(
            "logit({}) − logit({})",
            quoted(&label(t.token)),
            quoted(&label(f))
        ),
        None if log_p => format!("log p({})", quoted(&label(t.token))),
        None => format!("logit({})", quoted(&label(t.token))),
    }
}

/// A token's label in quotes, as it is (labels already show spaces and bytes visibly).
fn quoted(label: &str) -> String {
    format!("\"{label}\"")
}

/// What a patching site is, in words.
fn site_words(site: PatchSite) -> &'static str {
    match site {
        PatchSite::Resid => "the residual stream x_l at each (layer, position)",
        PatchSite::Attn => "each attention sublayer's output at each (layer, position)",
        PatchSite::Mlp => "each MLP's output at each (layer, position)",
        PatchSite::Head => "each head's output z_h at every position",
    }
}

/// `s` cut to `n` characters with '…'.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Width of `s` at `px`, in units.
fn width(s: &str, px: f32) -> f32 {
    text::text_width(s, px) as f32
}

/// Height of a line at `px`, in units.
fn line(px: f32) -> f32 {
    text::line_height(px) as f32
}

/// A number for a cell: fixed decimals chosen from the largest magnitude shown, with a true
/// minus sign.
fn cell_number(v: f64, max: f64) -> String {
    let decimals = if max >= 10.0 {
        1
    } else if max >= 1.0 {
        2
    } else {
        3
    };
    let s = format!("{v:.decimals$}");
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().any(|c| c.is_ascii_digit() && c != '0') => format!("−{rest}"),
        Some(rest) => rest.to_owned(),
        None => s,
    }
}

/// The title: its first line large and dark, the others smaller and grey, each wrapped at
/// ` · ` to `max_w`. Returns the lines to draw with their sizes and whether each is the main
/// line (or its continuation).
fn wrap_title(lines: &[String], max_w: f32) -> Vec<(String, f32, bool)> {
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let (px, main) = if i == 0 {
            (TITLE_PX, true)
        } else {
            (SUBTITLE_PX, false)
        };
        for wrapped in wrap_parts(l, px, max_w) {
            out.push((wrapped, px, main));
        }
    }
    out
}

/// `text` cut into lines no wider than `max_w` at `px`, between its ` · `-separated parts
/// (a part wider than `max_w` stays whole on its own line).
fn wrap_parts(text: &str, px: f32, max_w: f32) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for part in text.split(" · ") {
        let candidate = if current.is_empty() {
            part.to_owned()
        } else {
            format!("{current} · {part}")
        };
        if !current.is_empty() && width(&candidate, px) > max_w {
            out.push(std::mem::take(&mut current));
            current = part.to_owned();
        } else {
            current = candidate;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The height the wrapped title takes, its gap below included.
fn title_height(lines: &[(String, f32, bool)]) -> f32 {
    lines.iter().map(|(_, px, _)| line(*px) * 1.3).sum::<f32>() + 6.0
}

/// Draws the wrapped title from the top margin.
fn draw_title(scene: &mut Scene<'_>, lines: &[(String, f32, bool)]) {
    let mut y = MARGIN;
    for (l, px, main) in lines {
        let t = Text::new(l.clone(), *px, MARGIN, y);
        scene.label(if *main { t } else { t.color(GREY) });
        y += line(*px) * 1.3;
    }
}

/// A title wrapped to a figure whose content is `content_w` wide (at least 560), and the
/// figure's width: the content's or the title's, whichever is wider.
fn fit_title(title: &[String], content_w: f32) -> (Vec<(String, f32, bool)>, f32) {
    let max_w = content_w.max(560.0) - 2.0 * MARGIN;
    let lines = wrap_title(title, max_w);
    let title_w = lines
        .iter()
        .map(|(l, px, _)| width(l, *px))
        .fold(0.0f32, f32::max);
    (lines, content_w.max(title_w + 2.0 * MARGIN))
}

/// A vertical colour bar of `range` (linear) at (`x`, `top`), `h` tall, with its ticks and a
/// caption reading upward right of them; returns its right edge.
fn colour_bar(
    scene: &mut Scene<'_>,
    colormap: Colormap,
    range: ValueRange,
    x: f32,
    top: f32,
    h: f32,
    caption: &str,
) -> f32 {
    let bar = Rect {
        x: x.round() as u64,
        y: top.round() as u64,
        w: BAR_W as u64,
        h: h.round() as u64,
    };
    let last = bar.h.saturating_sub(1) as f32;
    let ticks = colorbar_ticks(range, ValueScale::Linear, last, line(TICK_PX))
        .into_iter()
        .map(|t| Tick {
            y: bar.y + t.offset as u64,
            text: t.text,
        })
        .collect();
    let cb = Colorbar::new(bar, ticks, 1, false);
    cb.add_to(scene, colormap);
    let caption_x = cb.right() as f32 + 6.0;
    let mid = top + h / 2.0;
    scene.label(
        Text::new(caption, LABEL_PX, caption_x, mid)
            .anchor(Anchor::Middle)
            .up(),
    );
    caption_x + line(LABEL_PX)
}

/// The width a colour bar of `range` with `caption` takes right of its `x`.
fn colour_bar_width(range: ValueRange) -> f32 {
    let widest = linear_ticks(f64::from(range.min), f64::from(range.max))
        .iter()
        .map(|(_, t)| width(t, TICK_PX))
        .fold(0.0f32, f32::max);
    BAR_W + 1.0 + 4.0 + 3.0 + widest + 6.0 + line(LABEL_PX)
}

/// A colour at value `v` of a linear `range` on `colormap`; non-finite values grey.
fn colour_of(colormap: Colormap, range: ValueRange, v: f32) -> [u8; 4] {
    if v.is_finite() {
        colormap.color(normalize(v, range, ValueScale::Linear))
    } else {
        colormap.non_finite_color()
    }
}

/// A grid of rows × columns cells laid out with layer numbers left (the last row, the highest
/// layer, at the top), an upward axis title, and cells `cell_w` × [`ROW_H`]. A table shorter
/// than its axis title gets room above and below, so the title overlaps nothing.
struct Table {
    rows: usize,
    left: f32,
    top: f32,
    cell_w: f32,
    axis: String,
    pad: f32,
}

impl Table {
    /// A table below `top` whose axis title is `axis`, or "layer" when that is too long.
    fn new(rows: usize, left: f32, top: f32, cell_w: f32, axis: &str) -> Table {
        let h = rows as f32 * ROW_H;
        let axis = if width(axis, LABEL_PX) <= h {
            axis
        } else {
            "layer"
        };
        let pad = ((width(axis, LABEL_PX) - h) / 2.0 + 2.0).max(0.0).ceil();
        Table {
            rows,
            left,
            top: top + pad,
            cell_w,
            axis: axis.to_owned(),
            pad,
        }
    }

    /// The bottom of the cells, and of the axis title's room.
    fn bottom(&self) -> f32 {
        self.top + self.height() + self.pad
    }

    /// The left edge of the cells after the axis title and the row labels of `rows` layers
    /// numbered from 0.
    fn cells_left(rows: usize) -> f32 {
        let label_w = width(&rows.saturating_sub(1).to_string(), LABEL_PX);
        MARGIN + line(LABEL_PX) + 6.0 + label_w + 6.0
    }

    /// The cell of (`layer`, column `x`) whose column starts at `x`.
    fn cell(&self, layer: usize, x: f32) -> Area {
        let y = self.top + (self.rows - 1 - layer) as f32 * ROW_H;
        Area::new(x, y, self.cell_w - 1.0, ROW_H - 1.0)
    }

    fn height(&self) -> f32 {
        self.rows as f32 * ROW_H
    }

    /// The layer numbers and the axis title.
    fn layer_axis(&self, scene: &mut Scene<'_>) {
        let px = LABEL_PX;
        for l in 0..self.rows {
            let y = self.top + (self.rows - 1 - l) as f32 * ROW_H + (ROW_H - 1.0 - line(px)) / 2.0;
            scene.label(Text::new(l.to_string(), px, self.left - 6.0, y).anchor(Anchor::End));
        }
        let mid = self.top + self.height() / 2.0;
        scene.label(
            Text::new(self.axis.clone(), px, MARGIN, mid)
                .anchor(Anchor::Middle)
                .up(),
        );
    }

    /// A cell's text centred on it, in the colour that reads on `fill`.
    fn cell_text(scene: &mut Scene<'_>, area: Area, s: &str, fill: [u8; 4]) {
        let y = area.y + (area.h - line(CELL_PX)) / 2.0;
        let t = Text::new(s, CELL_PX, area.x + area.w / 2.0, y).anchor(Anchor::Middle);
        scene.label(t.color(text_on(fill)));
    }
}

/// A text centred on `x` at `top`.
fn centred(s: impl Into<String>, px: f32, x: f32, top: f32) -> Text {
    Text::new(s, px, x, top).anchor(Anchor::Middle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::{Ablation, AppliedMask, MaskSpec};
    use crate::render::scene::{Direction, Element};

    fn labels(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    fn context(words: &[&str]) -> FigureContext {
        FigureContext {
            labels: labels(words),
            model_name: "toy-lm".to_owned(),
            mask: AppliedMask::recorded(MaskSpec::parse("causal").unwrap()),
            ablations: vec!["1.0".parse::<Ablation>().unwrap()],
            ..FigureContext::default()
        }
    }

    fn name(id: u32) -> String {
        format!("␣tok{id}")
    }

    fn style(ctx: &FigureContext) -> AnswerStyle<'_> {
        AnswerStyle {
            ctx,
            token_label: &name,
            pixel_scale: 1,
        }
    }

    /// The box a text covers in scene units.
    fn text_box(t: &Text) -> Area {
        let (w, h) = (width(&t.content, t.px), line(t.px));
        let before = match t.anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => w / 2.0,
            Anchor::End => w,
        };
        match t.direction {
            Direction::Right => Area::new(t.x - before, t.y, w, h),
            Direction::Up => Area::new(t.x, t.y - (w - before), h, w),
        }
    }

    fn overlap(a: Area, b: Area) -> bool {
        a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    }

    /// Every text inside the figure, none overlapping another.
    fn assert_texts_apart(scene: &Scene<'_>) {
        let boxes: Vec<(String, Area)> = scene
            .items
            .iter()
            .filter_map(|e| match e {
                Element::Text(t) if !t.content.is_empty() => Some((t.content.clone(), text_box(t))),
                _ => None,
            })
            .collect();
        for (i, (a, ba)) in boxes.iter().enumerate() {
            assert!(
                ba.x >= 0.0 && ba.y >= 0.0,
                "{a:?} starts outside the figure: {ba:?}"
            );
            assert!(
                ba.x + ba.w <= scene.width && ba.y + ba.h <= scene.height,
                "{a:?} ends outside the {}x{} figure: {ba:?}",
                scene.width,
                scene.height
            );
            for (b, bb) in &boxes[i + 1..] {
                assert!(!overlap(*ba, *bb), "{a:?} {ba:?} overlaps {b:?} {bb:?}");
            }
        }
    }

    /// The fills of the cells (rects one unit shorter than a row), in drawing order.
    fn cell_fills(scene: &Scene<'_>) -> Vec<(Area, [u8; 4])> {
        scene
            .items
            .iter()
            .filter_map(|e| match e {
                Element::Rect { area, fill } if area.h == ROW_H - 1.0 => Some((*area, *fill)),
                _ => None,
            })
            .collect()
    }

    fn cell(top: Vec<(u32, f32)>, lp: f32, rank: usize) -> LensCell {
        LensCell {
            top,
            target_logprob: Some(lp),
            target_rank: Some(rank),
        }
    }

    #[test]
    fn the_lens_table_has_the_output_on_top_coloured_by_the_targets_log_p() {
        let ctx = context(&["The", "␣capital", "␣of", "␣France", "␣is"]);
        let positions = [0, 1, 2, 3, 4];
        // Three layers (0 = embeddings, 2 = output); log p(T) falls with the depth from 0.
        let cells: Vec<Vec<LensCell>> = (0..3)
            .map(|l: u32| {
                (0..5u32)
                    .map(|p| {
                        let lp = -(2.0 - l as f32) * 4.0 - p as f32;
                        cell(vec![(10 * l + p, -0.1)], lp, 1)
                    })
                    .collect()
            })
            .collect();
        let at_target: Vec<LensCell> = cells.iter().map(|r| r[4].clone()).collect();
        let target = Target {
            position: 4,
            token: 7,
            foil: None,
        };
        let plot = AnswerPlot::Lens {
            target,
            positions: &positions,
            cells: &cells,
            at_target: &at_target,
        };
        let st = style(&ctx);
        let title = plot.title(&st);
        assert_eq!(title[0], "toy-lm · logit lens");
        assert!(title[1].starts_with("target \"␣tok7\" at position 4 (after \"␣is\")"));
        assert_eq!(title[2], "mask causal · ablated 1.0");
        let scene = plot.scene(&st).unwrap().0;
        assert_texts_apart(&scene);
        // Lowest log p −12 (floored to a whole number), highest 0: the colours' range.
        let range = ValueRange {
            min: -12.0,
            max: 0.0,
        };
        let fills = cell_fills(&scene);
        assert_eq!(fills.len(), 15);
        for (l, row) in cells.iter().enumerate() {
            for (p, c) in row.iter().enumerate() {
                let (area, fill) = fills[l * 5 + p];
                let want = Colormap::Viridis.color(normalize(
                    c.target_logprob.unwrap(),
                    range,
                    ValueScale::Linear,
                ));
                assert_eq!(fill, want, "layer {l} position {p}");
                // Each layer's row sits one row above the layer below it: the output on top.
                assert_eq!(area.y, fills[0].0.y - l as f32 * ROW_H);
            }
        }
        // The PNG paints each cell its colour (left of the centred text).
        let img = scene.png(1).unwrap();
        for (area, fill) in &fills {
            let p = img.get_pixel(area.x as u32 + 1, area.y as u32 + 1).0;
            assert_eq!(p, *fill);
        }
        // The SVG writes each top-1 label, the title and the rank column.
        let svg = plot.svg(&st).unwrap();
        for want in [
            ">␣tok24<",
            ">toy-lm · logit lens<",
            ">rank<",
            ">mask causal · ablated 1.0<",
        ] {
            assert!(svg.contains(want), "{want}");
        }
        // One position (`--position 4`): a narrow table, its texts still apart.
        let one: Vec<Vec<LensCell>> = cells.iter().map(|r| vec![r[4].clone()]).collect();
        let narrow = AnswerPlot::Lens {
            target,
            positions: &[4],
            cells: &one,
            at_target: &at_target,
        };
        assert_texts_apart(&narrow.scene(&st).unwrap().0);
        // At pixel scale 2 every length doubles.
        let two = plot
            .png(&AnswerStyle {
                pixel_scale: 2,
                ..style(&ctx)
            })
            .unwrap();
        assert_eq!(two.dimensions(), (2 * img.width(), 2 * img.height()));
    }

    #[test]
    fn the_contribution_map_is_diverging_around_zero_with_an_mlp_column() {
        let ctx = context(&["a", "b", "c"]);
        // Two layers of three heads: the largest magnitude is 2 (head 1.2), so ±2 are the
        // diverging map's ends and 0 its white middle.
        let c = Contributions {
            metric: 1.5,
            embeddings: 0.25,
            heads: vec![vec![0.0, -2.0, 0.5], vec![1.0, 0.0, 2.0]],
            attn_bias: vec![0.0, 0.0],
            mlp: vec![-1.0, 0.75],
            norm_term: 0.0,
            sum: 1.5,
        };
        let target = Target {
            position: 2,
            token: 3,
            foil: Some(4),
        };
        let plot = AnswerPlot::Contributions {
            target,
            contributions: &c,
        };
        let st = style(&ctx);
        let title = plot.title(&st);
        assert_eq!(
            title[1],
            "logit(\"␣tok3\") − logit(\"␣tok4\") at position 2 (after \"c\") = 1.5"
        );
        let scene = plot.scene(&st).unwrap().0;
        assert_texts_apart(&scene);
        let fills: Vec<[u8; 4]> = cell_fills(&scene).into_iter().map(|(_, f)| f).collect();
        let d = |t: f32| Colormap::Diverging.color(t);
        // Layer 0: heads 0, −2, 0.5 then the MLP's −1; layer 1: 1, 0, 2 then 0.75.
        assert_eq!(fills[..4], [d(0.5), d(0.0), d(0.625), d(0.25)]);
        assert_eq!(fills[4..], [d(0.75), d(0.5), d(1.0), d(0.6875)]);
        let svg = plot.svg(&st).unwrap();
        // Values a fifth of the largest and more are written in their cells (0 is not).
        for want in [">−2.00<", ">2.00<", ">0.50<", ">MLP<", ">head<"] {
            assert!(svg.contains(want), "{want}");
        }
        assert!(!svg.contains(">0.00<"));
        assert!(svg.contains("embeddings 0.25"), "the parts outside the map");
    }

    #[test]
    fn the_patching_map_labels_both_inputs_and_marks_where_they_differ() {
        let ctx = context(&["The", "␣Eiffel", "␣Tower", "␣is", "␣in"]);
        let b = labels(&["The", "␣Colosseum", "␣Tower", "␣is", "␣in"]);
        let p = Patching {
            site: PatchSite::Resid,
            metric_clean: 3.0,
            metric_corrupted: -1.0,
            recovery: vec![
                vec![0.0, 1.0, 0.0, 0.0, 0.25],
                vec![0.0, 0.5, 0.25, 0.0, 1.0],
            ],
        };
        let target = Target {
            position: 4,
            token: 1,
            foil: Some(2),
        };
        let plot = AnswerPlot::Patching {
            target,
            patching: &p,
            labels_b: &b,
        };
        let st = style(&ctx);
        let scene = plot.scene(&st).unwrap().0;
        assert_texts_apart(&scene);
        // ±1 (the largest |recovery|) are the ends: 1 is full red, 0 white.
        let fills: Vec<[u8; 4]> = cell_fills(&scene).into_iter().map(|(_, f)| f).collect();
        assert_eq!(fills[1], Colormap::Diverging.color(1.0));
        assert_eq!(fills[0], Colormap::Diverging.color(0.5));
        let accent = |t: &Text| t.color == [ACCENT[0], ACCENT[1], ACCENT[2]];
        let marked: Vec<String> = scene
            .items
            .iter()
            .filter_map(|e| match e {
                Element::Text(t) if accent(t) => Some(t.content.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(marked, ["␣Eiffel", "␣Colosseum"]);
        let svg = plot.svg(&st).unwrap();
        for want in [
            ">clean<",
            ">corrupted<",
            ">position<",
            "clean 3, corrupted -1",
        ] {
            assert!(svg.contains(want), "{want}");
        }
        // By head: head numbers below, the two inputs written out under the map.
        let heads = Patching {
            site: PatchSite::Head,
            recovery: vec![vec![0.0, 0.5], vec![1.0, 0.0]],
            ..p
        };
        let plot = AnswerPlot::Patching {
            target,
            patching: &heads,
            labels_b: &b,
        };
        let scene = plot.scene(&st).unwrap().0;
        assert_texts_apart(&scene);
        let svg = plot.svg(&st).unwrap();
        assert!(svg.contains(">head<") && svg.contains("“The ␣Colosseum ␣Tower ␣is ␣in”"));
    }

    #[test]
    fn the_routes_graph_draws_each_kept_edge_in_its_kind_and_marks_the_output() {
        let ctx = context(&["The", "␣cat", "␣sat"]);
        let node = |l, i, stage| Node(l, i, stage);
        let edge = |from, to, kind, importance| Edge {
            from,
            to,
            kind,
            importance,
            heads: None,
        };
        // One block: token 0 attends into position 2, the residual carries 2, the MLP adds.
        let routes = Routes {
            position: 2,
            threshold: 0.04,
            nodes: vec![
                node(0, 0, Stage::In),
                node(0, 2, Stage::In),
                node(0, 2, Stage::Mid),
                node(1, 2, Stage::In),
            ],
            edges: vec![
                edge(
                    node(0, 0, Stage::In),
                    node(0, 2, Stage::Mid),
                    EdgeKind::Attn,
                    0.6,
                ),
                edge(
                    node(0, 2, Stage::In),
                    node(0, 2, Stage::Mid),
                    EdgeKind::Resid,
                    0.4,
                ),
                edge(
                    node(0, 2, Stage::Mid),
                    node(1, 2, Stage::In),
                    EdgeKind::Mlp,
                    0.3,
                ),
                edge(
                    node(0, 2, Stage::Mid),
                    node(1, 2, Stage::In),
                    EdgeKind::Resid,
                    0.7,
                ),
            ],
        };
        let plot = AnswerPlot::Routes {
            routes: &routes,
            layers: 1,
        };
        let st = style(&ctx);
        assert_eq!(
            plot.title(&st)[1],
            "to the output at position 2 (after \"␣sat\") · threshold τ = 0.04 · 4 edges"
        );
        let scene = plot.scene(&st).unwrap().0;
        assert_texts_apart(&scene);
        type Segment = ((f32, f32), (f32, f32), f32, [u8; 4]);
        let lines: Vec<Segment> = scene
            .items
            .iter()
            .filter_map(|e| match e {
                Element::Line { from, to, stroke }
                    if stroke.width != 1.0 && stroke.width != 3.0 =>
                {
                    Some((*from, *to, stroke.width, stroke.color))
                }
                _ => None,
            })
            .collect();
        // Residual first, then MLP, then attention; widths by importance.
        let kinds: Vec<[u8; 4]> = lines.iter().map(|l| l.3).collect();
        let (attn, mlp, resid) = (
            edge_colour(EdgeKind::Attn),
            edge_colour(EdgeKind::Mlp),
            edge_colour(EdgeKind::Resid),
        );
        assert_eq!(kinds, [resid, resid, mlp, attn]);
        assert_eq!(lines[3].2, edge_width(0.6));
        // The attention edge rises from token 0's input to token 2's middle.
        let (from, to) = (lines[3].0, lines[3].1);
        assert!(from.0 < to.0 && from.1 > to.1);
        // The MLP runs beside the residual it shares its ends with.
        assert!(lines[2].0.0 > lines[1].0.0);
        // Drawn: the attention edge's middle pixel is its colour; the output is a red disc.
        let img = scene.png(1).unwrap();
        let mid = ((from.0 + to.0) / 2.0, (from.1 + to.1) / 2.0);
        assert_eq!(img.get_pixel(mid.0 as u32, mid.1 as u32).0, attn);
        // The geometry has each edge's drawn segment, in drawing order, and every node.
        let fig = plot.figure(&st).unwrap();
        assert_eq!(fig.image, img);
        let g = &fig.geometry;
        let drawn: Vec<Segment> = g
            .edges
            .iter()
            .map(|e| (e.a, e.b, e.width, edge_colour(e.kind)))
            .collect();
        assert_eq!(drawn, lines);
        let indices: Vec<usize> = g.edges.iter().map(|e| e.index).collect();
        assert_eq!(indices, [1, 3, 2, 0]);
        for e in &g.edges {
            assert_eq!((e.from, e.to, e.kind), {
                let r = &routes.edges[e.index];
                (r.from, r.to, r.kind)
            });
        }
        assert_eq!(g.nodes.len(), 4);
        // The pointer on the attention edge's middle finds it; far from every edge, none.
        assert_eq!(g.edge_at(mid.0, mid.1, 2.0).map(|e| e.index), Some(0));
        assert!(g.edge_at(1.0, 1.0, 2.0).is_none());
        // The MLP edge's middle: the MLP edge, not the residual it runs beside.
        let m = &g.edges[2];
        let mm = ((m.a.0 + m.b.0) / 2.0, (m.a.1 + m.b.1) / 2.0);
        assert_eq!(
            g.edge_at(mm.0, mm.1, 0.0).map(|e| e.kind),
            Some(EdgeKind::Mlp)
        );
        let svg = plot.svg(&st).unwrap();
        assert!(svg.contains("r=\"5\" fill=\"#c0392b\""));
        assert_eq!(svg.matches("<circle").count(), 4);
    }

    /// The figure's geometry names every filled cell of its scene, in the same places, and at
    /// pixel scales 1 and 2 each cell lies inside the image and is painted its fill (checked
    /// two units in from its left edge, clear of the centred text, and at its centre when it
    /// has no text); the pointer at a cell's centre finds that cell.
    fn assert_cells_match(plot: &AnswerPlot<'_>, ctx: &FigureContext, want: &[CellId]) {
        let (scene, geometry) = plot.scene(&style(ctx)).unwrap();
        let fills = cell_fills(&scene);
        let cells: Vec<CellId> = geometry.cells.iter().map(|c| c.cell).collect();
        assert_eq!(cells, want);
        assert_eq!(fills.len(), geometry.cells.len());
        let texts: Vec<Area> = scene
            .items
            .iter()
            .filter_map(|e| match e {
                Element::Text(t) if !t.content.is_empty() => Some(text_box(t)),
                _ => None,
            })
            .collect();
        for scale in [1u32, 2] {
            let fig = plot
                .figure(&AnswerStyle {
                    pixel_scale: scale,
                    ..style(ctx)
                })
                .unwrap();
            assert_eq!(fig.pixel_scale, scale);
            let g = &fig.geometry;
            assert_eq!(g, &geometry, "one layout at every scale");
            let s = scale as f32;
            let (w, h) = fig.image.dimensions();
            assert_eq!(
                ((g.width * s).ceil() as u32, (g.height * s).ceil() as u32),
                (w, h)
            );
            for (place, (area, fill)) in g.cells.iter().zip(&fills) {
                let r = place.area;
                assert_eq!(UnitRect::from(*area), r, "{:?}", place.cell);
                assert!(r.x >= 0.0 && r.y >= 0.0, "{:?}", place.cell);
                assert!((r.x + r.w) * s <= w as f32 && (r.y + r.h) * s <= h as f32);
                let (cx, cy) = r.centre();
                let at = |x: f32, y: f32| fig.image.get_pixel((x * s) as u32, (y * s) as u32).0;
                assert_eq!(
                    at(r.x + 2.0, cy),
                    *fill,
                    "{:?} at scale {scale}",
                    place.cell
                );
                let texted = texts
                    .iter()
                    .any(|t| overlap(*t, Area::new(cx, cy, 0.1, 0.1)));
                if !texted {
                    assert_eq!(at(cx, cy), *fill, "{:?} centre", place.cell);
                }
                assert_eq!(g.cell_at(cx, cy), Some(place.cell));
                assert_eq!(g.area_of(place.cell), Some(r));
            }
            assert_eq!(g.cell_at(0.5, 0.5), None, "the margin is no cell");
        }
    }

    #[test]
    fn the_geometry_of_each_table_is_where_its_cells_are_painted() {
        let ctx = context(&["The", "␣capital", "␣of", "␣France", "␣is"]);
        // Lens: 3 layers × positions 2, 4 with texts of several widths.
        let cells: Vec<Vec<LensCell>> = (0..3u32)
            .map(|l| {
                vec![
                    cell(vec![(l, -0.5)], -3.0 * l as f32, 4),
                    cell(vec![(100 + l, -0.1)], -0.5 * l as f32, 1),
                ]
            })
            .collect();
        let at_target: Vec<LensCell> = cells.iter().map(|r| r[1].clone()).collect();
        let target = Target {
            position: 4,
            token: 7,
            foil: None,
        };
        let plot = AnswerPlot::Lens {
            target,
            positions: &[2, 4],
            cells: &cells,
            at_target: &at_target,
        };
        let want: Vec<CellId> = (0..3)
            .flat_map(|layer| [2, 4].map(|position| CellId::Lens { layer, position }))
            .collect();
        assert_cells_match(&plot, &ctx, &want);
        // Contributions: 2 layers × 3 heads, then each layer's MLP.
        let c = Contributions {
            metric: 1.5,
            embeddings: 0.25,
            heads: vec![vec![0.0, -2.0, 0.5], vec![1.0, 0.0, 2.0]],
            attn_bias: vec![0.0, 0.0],
            mlp: vec![-1.0, 0.75],
            norm_term: 0.0,
            sum: 1.5,
        };
        let plot = AnswerPlot::Contributions {
            target,
            contributions: &c,
        };
        let want: Vec<CellId> = (0..2)
            .flat_map(|layer| {
                (0..3)
                    .map(move |head| CellId::Head { layer, head })
                    .chain([CellId::Mlp { layer }])
            })
            .collect();
        assert_cells_match(&plot, &ctx, &want);
        // Patching by position, then by head.
        let b = labels(&["The", "␣capital", "␣of", "␣Spain", "␣is"]);
        let mut p = Patching {
            site: PatchSite::Resid,
            metric_clean: 3.0,
            metric_corrupted: -1.0,
            recovery: vec![
                vec![0.0, 0.2, 0.0, 1.0, 0.5],
                vec![0.0, 0.0, 0.0, 0.05, 1.0],
            ],
        };
        let want: Vec<CellId> = (0..2)
            .flat_map(|layer| (0..5).map(move |column| CellId::Patch { layer, column }))
            .collect();
        let plot = AnswerPlot::Patching {
            target,
            patching: &p,
            labels_b: &b,
        };
        assert_cells_match(&plot, &ctx, &want);
        p.site = PatchSite::Head;
        let plot = AnswerPlot::Patching {
            target,
            patching: &p,
            labels_b: &b,
        };
        assert_cells_match(&plot, &ctx, &want);
    }

    #[test]
    fn a_short_table_makes_room_for_its_axis_title() {
        // One layer is shorter than "layer": the table moves down, and nothing overlaps.
        let ctx = context(&["a", "b"]);
        let p = Patching {
            site: PatchSite::Resid,
            metric_clean: 1.0,
            metric_corrupted: 0.0,
            recovery: vec![vec![0.5, 1.0]],
        };
        let target = Target {
            position: 1,
            token: 1,
            foil: None,
        };
        let b = labels(&["a", "c"]);
        let plot = AnswerPlot::Patching {
            target,
            patching: &p,
            labels_b: &b,
        };
        assert_texts_apart(&plot.scene(&style(&ctx)).unwrap().0);
        let empty = Patching {
            recovery: Vec::new(),
            ..p
        };
        let plot = AnswerPlot::Patching {
            target,
            patching: &empty,
            labels_b: &b,
        };
        assert!(matches!(plot.png(&style(&ctx)), Err(RenderError::Empty)));
    }
}
