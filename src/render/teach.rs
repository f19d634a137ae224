//! Teaching figures (issue 11): the walkthrough's steps as labelled small matrices and bars, and
//! a mistake side by side with the correct version, as PNG and SVG for slides.
//!
//! Each figure is laid out once as a list of rectangles and text lines (a `Scene`), then drawn
//! into an [`RgbaImage`] with the module's fill and text primitives, or written as SVG with the
//! same coordinates, so the two outputs agree. Values colour through [`Colormap`]s: vectors
//! and matrices that can be negative (q, K, V, outputs) through the diverging map around 0,
//! attention maps through the chosen colormap. Masked keys show "−∞" and masked cells the
//! colormap's masked colour.

use super::colormap::Colormap;
use super::figure::{Rect, fill_rect};
use super::heatmap::{ValueRange, ValueScale, normalize};
use super::svg::escape;
use super::text::{self, Mask, Orientation};
use super::{RenderError, checked_figure_size};
use crate::analysis::explain::{Explanation, WalkStep};
use image::{Rgba, RgbaImage};
use ndarray::Array2;
use std::fmt::Write as _;

/// How teaching figures look.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TeachStyle {
    /// The colormap of attention weights and maps (signed vectors always use `diverging`).
    pub colormap: Colormap,
    /// Multiplies every length of a PNG (1–8); SVGs are written at 1.
    pub pixel_scale: u32,
}

impl Default for TeachStyle {
    fn default() -> Self {
        Self {
            colormap: Colormap::Viridis,
            pixel_scale: 1,
        }
    }
}

/// Largest number of head dimensions drawn as separate cells; wider heads are shown by their
/// first dimensions, and the figure says how many were left out.
pub const MAX_DIMS_SHOWN: usize = 64;
/// Largest number of keys drawn one row each in a step figure; the rest are summarised.
pub const MAX_KEYS_SHOWN: usize = 40;
/// Largest map side drawn cell by cell in a comparison; longer maps are max-pooled to it.
pub const MAX_COMPARISON_SIDE: usize = 64;

const TEXT_DARK: [u8; 3] = text::TEXT_COLOR;
const BAR_POSITIVE: [u8; 4] = [0x3b, 0x75, 0xaf, 255];
const BAR_NEGATIVE: [u8; 4] = [0xc4, 0x4e, 0x52, 255];
const AXIS: [u8; 4] = [0x88, 0x88, 0x88, 255];
const HIGHLIGHT: [u8; 4] = [0xff, 0xb0, 0x00, 255];

/// How a text line is placed relative to its x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Start,
    End,
}

/// One drawable item, in logical pixels (× pixel_scale in a PNG).
#[derive(Clone, Debug)]
enum Item {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: [u8; 4],
    },
    Text {
        text: String,
        px: f32,
        x: f32,
        top: f32,
        align: Align,
        color: [u8; 3],
    },
}

/// A figure laid out once, for both outputs.
#[derive(Clone, Debug, Default)]
struct Scene {
    width: f32,
    height: f32,
    items: Vec<Item>,
}

impl Scene {
    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: [u8; 4]) {
        self.items.push(Item::Rect { x, y, w, h, fill });
        self.grow(x + w, y + h);
    }

    fn text(&mut self, text: impl Into<String>, px: f32, x: f32, top: f32, align: Align) {
        self.text_colored(text, px, x, top, align, TEXT_DARK);
    }

    fn text_colored(
        &mut self,
        text: impl Into<String>,
        px: f32,
        x: f32,
        top: f32,
        align: Align,
        color: [u8; 3],
    ) {
        let text = text.into();
        let w = text::text_width(&text, px) as f32;
        let right = match align {
            Align::Start => x + w,
            Align::End => x,
        };
        self.grow(right, top + text::line_height(px) as f32);
        self.items.push(Item::Text {
            text,
            px,
            x,
            top,
            align,
            color,
        });
    }

    fn grow(&mut self, right: f32, bottom: f32) {
        self.width = self.width.max(right);
        self.height = self.height.max(bottom);
    }

    /// Wraps `text` into lines no wider than `width` at `px`, from `top`; returns the y below.
    fn paragraph(&mut self, text: &str, px: f32, x: f32, top: f32, width: f32) -> f32 {
        let line = text::line_height(px) as f32 * 1.3;
        let mut y = top;
        let mut current = String::new();
        for word in text.split_whitespace() {
            let candidate = if current.is_empty() {
                word.to_owned()
            } else {
                format!("{current} {word}")
            };
            if !current.is_empty() && text::text_width(&candidate, px) as f32 > width {
                self.text(std::mem::take(&mut current), px, x, y, Align::Start);
                y += line;
                current = word.to_owned();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            self.text(current, px, x, y, Align::Start);
            y += line;
        }
        y
    }

    fn png(&self, pixel_scale: u32) -> Result<RgbaImage, RenderError> {
        let s = pixel_scale.clamp(1, super::figure::MAX_PIXEL_SCALE) as f32;
        let (w, h) = checked_figure_size(
            ((self.width + MARGIN) * s).ceil() as u64,
            ((self.height + MARGIN) * s).ceil() as u64,
        )?;
        let mut img = RgbaImage::from_pixel(w, h, Rgba([255, 255, 255, 255]));
        for item in &self.items {
            match item {
                Item::Rect { x, y, w, h, fill } => {
                    let (x0, y0) = ((x * s).round(), (y * s).round());
                    let (x1, y1) = (((x + w) * s).round(), ((y + h) * s).round());
                    let rect = Rect {
                        x: x0.max(0.0) as u64,
                        y: y0.max(0.0) as u64,
                        w: (x1 - x0).max(1.0) as u64,
                        h: (y1 - y0).max(1.0) as u64,
                    };
                    fill_rect(&mut img, rect, Rgba(*fill));
                }
                Item::Text {
                    text,
                    px,
                    x,
                    top,
                    align,
                    color,
                } => {
                    let px = px * s;
                    let mask = Mask::render(text, px);
                    let width = text::text_width(text, px) as f32;
                    let left = match align {
                        Align::Start => x * s,
                        Align::End => x * s - width,
                    };
                    text::draw_mask(
                        &mut img,
                        &mask,
                        left.round() as i64,
                        (top * s).round() as i64,
                        Orientation::Horizontal,
                        *color,
                    );
                }
            }
        }
        Ok(img)
    }

    fn svg(&self) -> Result<String, RenderError> {
        let (w, h) = (
            (self.width + MARGIN).ceil() as u64,
            (self.height + MARGIN).ceil() as u64,
        );
        checked_figure_size(w, h)?;
        let mut out = String::new();
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{w}\" \
             height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        for item in &self.items {
            match item {
                Item::Rect { x, y, w, h, fill } => {
                    let _ = writeln!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
                         fill=\"#{:02x}{:02x}{:02x}\"/>",
                        fill[0], fill[1], fill[2]
                    );
                }
                Item::Text {
                    text,
                    px,
                    x,
                    top,
                    align,
                    color,
                } => {
                    let (size, ascent) = text::svg_metrics(*px);
                    let anchor = match align {
                        Align::Start => "start",
                        Align::End => "end",
                    };
                    let _ = writeln!(
                        out,
                        "<text x=\"{x:.1}\" y=\"{:.1}\" font-family=\"DejaVu Sans, sans-serif\" \
                         font-size=\"{size:.2}\" fill=\"#{:02x}{:02x}{:02x}\" \
                         text-anchor=\"{anchor}\">{}</text>",
                        top + ascent,
                        color[0],
                        color[1],
                        color[2],
                        escape(text)
                    );
                }
            }
        }
        out.push_str("</svg>\n");
        Ok(out)
    }
}

const MARGIN: f32 = 16.0;
const TITLE_PX: f32 = 20.0;
const BODY_PX: f32 = 14.0;
const SMALL_PX: f32 = 11.0;
const ROW: f32 = 20.0;
const TEXT_WIDTH: f32 = 760.0;

/// A value in a few significant digits (`0.1768`, `-12.35`, `3.2e-5`).
fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    if !v.is_finite() {
        return if v < 0.0 {
            "−∞".to_owned()
        } else {
            "∞".to_owned()
        };
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// The diverging colour of `v` on a range symmetric around 0 with half-width `bound`.
fn signed_color(v: f32, bound: f32) -> [u8; 4] {
    let bound = if bound > 0.0 { bound } else { 1.0 };
    Colormap::Diverging.color(0.5 + 0.5 * v / bound)
}

fn label(labels: &[String], i: usize) -> String {
    let text = labels.get(i).map_or_else(|| i.to_string(), String::clone);
    let short: String = text.chars().take(14).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// A labelled row of cells for a vector (q or an output), colours on the diverging map.
fn vector_row(scene: &mut Scene, name: &str, v: &[f32], x: f32, y: f32, cell: f32) -> f32 {
    let shown = v.len().min(MAX_DIMS_SHOWN);
    let bound = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    scene.text(name, BODY_PX, x - 8.0, y + 3.0, Align::End);
    for (i, &value) in v.iter().take(shown).enumerate() {
        scene.rect(
            x + i as f32 * cell,
            y,
            cell - 1.0,
            ROW,
            signed_color(value, bound),
        );
    }
    let mut note = format!("{} dims, |max| {}", v.len(), fmt_value(f64::from(bound)));
    if shown < v.len() {
        note += &format!(" (first {shown} shown)");
    }
    scene.text(
        note,
        SMALL_PX,
        x + shown as f32 * cell + 8.0,
        y + 4.0,
        Align::Start,
    );
    y + ROW + 4.0
}

/// A matrix [rows][dims] as labelled rows of cells, each row scaled by `row_factor` (1 for K).
fn matrix_rows(
    scene: &mut Scene,
    rows: &[Vec<f32>],
    labels: &[String],
    row_factor: Option<&[f32]>,
    x: f32,
    y: f32,
    cell: f32,
) -> f32 {
    let value = |r: usize, c: usize| rows[r][c] * row_factor.map_or(1.0, |f| f[r]);
    let shown_rows = rows.len().min(MAX_KEYS_SHOWN);
    let dims = rows.first().map_or(0, Vec::len).min(MAX_DIMS_SHOWN);
    let mut bound = 0.0f32;
    for r in 0..rows.len() {
        for c in 0..dims {
            bound = bound.max(value(r, c).abs());
        }
    }
    let mut y = y;
    for r in 0..shown_rows {
        scene.text(label(labels, r), SMALL_PX, x - 8.0, y + 2.0, Align::End);
        for c in 0..dims {
            scene.rect(
                x + c as f32 * cell,
                y,
                cell - 1.0,
                ROW - 6.0,
                signed_color(value(r, c), bound),
            );
        }
        if let Some(f) = row_factor {
            scene.text(
                format!("× {}", fmt_value(f64::from(f[r]))),
                SMALL_PX,
                x + dims as f32 * cell + 8.0,
                y + 1.0,
                Align::Start,
            );
        }
        y += ROW - 4.0;
    }
    if shown_rows < rows.len() {
        scene.text(
            format!("… {} more keys", rows.len() - shown_rows),
            SMALL_PX,
            x,
            y,
            Align::Start,
        );
        y += ROW;
    }
    scene.text(
        format!(
            "colour: diverging around 0, |max| {}",
            fmt_value(f64::from(bound))
        ),
        SMALL_PX,
        x,
        y + 2.0,
        Align::Start,
    );
    y + ROW
}

/// One horizontal bar per key, from a zero line; `None` values are masked (shown as −∞).
#[allow(clippy::too_many_arguments)]
fn bars(
    scene: &mut Scene,
    values: &[Option<f32>],
    labels: &[String],
    query: usize,
    x: f32,
    y: f32,
    unit: &str,
    masked_fill: [u8; 4],
    bar_fill: Option<&dyn Fn(f32) -> [u8; 4]>,
) -> f32 {
    const HALF: f32 = 220.0;
    let shown = values.len().min(MAX_KEYS_SHOWN);
    let bound = values
        .iter()
        .flatten()
        .fold(0.0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    let all_positive = values.iter().flatten().all(|&v| v >= 0.0);
    // Weights start at the left edge; signed values from a centre line.
    let zero = if all_positive { x } else { x + HALF };
    let span = if all_positive { 2.0 * HALF } else { HALF };
    let mut y = y;
    for (j, v) in values.iter().take(shown).enumerate() {
        let name = label(labels, j);
        let name = if j == query {
            format!("▶ {name}")
        } else {
            name
        };
        scene.text(name, SMALL_PX, x - 8.0, y + 2.0, Align::End);
        match v {
            Some(v) => {
                let len = (v.abs() / bound * span).max(1.0);
                let fill = bar_fill.map_or(
                    if *v >= 0.0 {
                        BAR_POSITIVE
                    } else {
                        BAR_NEGATIVE
                    },
                    |f| f(*v),
                );
                let left = if *v >= 0.0 { zero } else { zero - len };
                scene.rect(left, y + 2.0, len, ROW - 8.0, fill);
                scene.text(
                    format!("{}{unit}", fmt_value(f64::from(*v))),
                    SMALL_PX,
                    x + 2.0 * HALF + 12.0,
                    y + 1.0,
                    Align::Start,
                );
            }
            None => {
                scene.rect(x, y + 2.0, 2.0 * HALF, ROW - 8.0, masked_fill);
                scene.text(
                    "−∞ (masked)",
                    SMALL_PX,
                    x + 2.0 * HALF + 12.0,
                    y + 1.0,
                    Align::Start,
                );
            }
        }
        y += ROW - 4.0;
    }
    scene.rect(
        zero,
        y - (shown as f32) * (ROW - 4.0),
        1.0,
        shown as f32 * (ROW - 4.0),
        AXIS,
    );
    if shown < values.len() {
        scene.text(
            format!("… {} more keys", values.len() - shown),
            SMALL_PX,
            x,
            y,
            Align::Start,
        );
        y += ROW;
    }
    y + 6.0
}

/// The layout of one walkthrough step.
fn step_scene(e: &Explanation, step: WalkStep, labels: &[String], style: &TeachStyle) -> Scene {
    let mut scene = Scene::default();
    let x0 = MARGIN;
    scene.text(step.title(), TITLE_PX, x0, MARGIN, Align::Start);
    let context = format!(
        "layer {} · head {}{} · query {} \"{}\" · d_head {}",
        e.layer,
        e.head,
        if e.kv_head == e.head {
            String::new()
        } else {
            format!(" (reads kv head {})", e.kv_head)
        },
        e.query,
        label(labels, e.query),
        e.d_head
    );
    scene.text(context, BODY_PX, x0, MARGIN + 28.0, Align::Start);
    let mut y = MARGIN + 56.0;
    let x = x0 + 130.0;
    let cell = (560.0 / e.d_head.clamp(1, MAX_DIMS_SHOWN) as f32).clamp(4.0, 18.0);
    let opt = |v: &[f32]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
    let masked_fill = style.colormap.masked_color();
    match step {
        WalkStep::Query => {
            y = vector_row(&mut scene, "q", &e.q, x, y, cell);
        }
        WalkStep::Keys => {
            y = vector_row(&mut scene, "q", &e.q, x, y, cell) + 8.0;
            scene.text("K (one key per token)", BODY_PX, x, y, Align::Start);
            y = matrix_rows(&mut scene, &e.keys, labels, None, x, y + 22.0, cell);
        }
        WalkStep::Scores => {
            scene.text("q·k_j", BODY_PX, x, y, Align::Start);
            y = bars(
                &mut scene,
                &opt(&e.scores),
                labels,
                e.query,
                x,
                y + 22.0,
                "",
                masked_fill,
                None,
            );
        }
        WalkStep::Scale => {
            let what = match &e.bias {
                Some(_) => format!("q·k_j × {} + ALiBi bias", fmt_value(f64::from(e.scale))),
                None => format!("q·k_j × {}", fmt_value(f64::from(e.scale))),
            };
            scene.text(what, BODY_PX, x, y, Align::Start);
            y = bars(
                &mut scene,
                &opt(&e.scaled),
                labels,
                e.query,
                x,
                y + 22.0,
                "",
                masked_fill,
                None,
            );
        }
        WalkStep::Mask => {
            scene.text("scaled scores after the mask", BODY_PX, x, y, Align::Start);
            y = bars(
                &mut scene,
                &e.masked,
                labels,
                e.query,
                x,
                y + 22.0,
                "",
                masked_fill,
                None,
            );
        }
        WalkStep::Softmax => {
            scene.text(
                "softmax: weights that sum to 1",
                BODY_PX,
                x,
                y,
                Align::Start,
            );
            let colormap = style.colormap;
            let fill = move |v: f32| colormap.color(v);
            let weights: Vec<Option<f32>> = e
                .weights
                .iter()
                .zip(&e.masked)
                .map(|(&w, m)| m.map(|_| w))
                .collect();
            y = bars(
                &mut scene,
                &weights,
                labels,
                e.query,
                x,
                y + 22.0,
                "",
                masked_fill,
                Some(&fill),
            );
            if e.fully_masked {
                scene.text(
                    "every key is masked: the row is all zeros",
                    BODY_PX,
                    x,
                    y,
                    Align::Start,
                );
                y += ROW;
            }
        }
        WalkStep::Values => {
            scene.text(
                "weight × v_j (rows of V scaled by their weights)",
                BODY_PX,
                x,
                y,
                Align::Start,
            );
            y = matrix_rows(
                &mut scene,
                &e.values,
                labels,
                Some(&e.weights),
                x,
                y + 22.0,
                cell,
            );
        }
        WalkStep::Output => {
            y = vector_row(&mut scene, "output", &e.output, x, y, cell);
            scene.text(
                "Σ_j weight_j · v_j, before the output projection",
                SMALL_PX,
                x,
                y,
                Align::Start,
            );
            y += ROW;
        }
    }
    let explanation = step.explanation(e);
    scene.paragraph(&explanation, BODY_PX, x0, y + 12.0, TEXT_WIDTH);
    scene
}

/// One walkthrough step as a labelled PNG figure: the step's title, the layer/head/query it
/// explains, its numbers as small matrices or bars (token labels from `labels`, one per key),
/// and the step's plain-language explanation.
pub fn step_figure(
    e: &Explanation,
    step: WalkStep,
    labels: &[String],
    style: &TeachStyle,
) -> Result<RgbaImage, RenderError> {
    step_scene(e, step, labels, style).png(style.pixel_scale)
}

/// [`step_figure`] as SVG (vector text and rectangles, same layout).
pub fn step_svg(
    e: &Explanation,
    step: WalkStep,
    labels: &[String],
    style: &TeachStyle,
) -> Result<String, RenderError> {
    step_scene(e, step, labels, style).svg()
}

/// One side of a comparison: a map with its title and, optionally, its masked cells.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonPanel {
    /// Above the map (`correct`, `no √d scaling`).
    pub title: String,
    /// The attention map. Shape: [query, key].
    pub map: Array2<f32>,
    /// True where the applied mask forbids the cell. Shape: [query, key].
    pub masked: Option<Array2<bool>>,
}

/// A mistake side by side with the correct version.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The figure's title (the mistake, the layer and head).
    pub title: String,
    /// The one-sentence lesson.
    pub lesson: String,
    /// The measured effect, one sentence.
    pub summary: String,
    /// Token labels (one per row and column).
    pub labels: Vec<String>,
    /// The correct run's map.
    pub correct: ComparisonPanel,
    /// The mistaken run's map.
    pub mistaken: ComparisonPanel,
}

fn panel(
    scene: &mut Scene,
    p: &ComparisonPanel,
    labels: &[String],
    x: f32,
    y: f32,
    style: &TeachStyle,
) -> f32 {
    let pooled = super::pool::max_pool(p.map.view(), MAX_COMPARISON_SIDE);
    let masked = p
        .masked
        .as_ref()
        .filter(|m| m.dim() == p.map.dim())
        .map(|m| super::pool::pool_mask(m.view(), MAX_COMPARISON_SIDE));
    let (rows, cols) = pooled.dim();
    let cell = (320.0 / rows.max(cols).max(1) as f32).clamp(3.0, 28.0);
    let max = pooled.iter().fold(0.0f32, |m, &v| m.max(v));
    let range = ValueRange {
        min: 0.0,
        max: if max > 0.0 { max } else { 1.0 },
    };
    scene.text(&p.title, BODY_PX, x, y, Align::Start);
    scene.text(
        format!("colour 0 … {}", fmt_value(f64::from(range.max))),
        SMALL_PX,
        x,
        y + 20.0,
        Align::Start,
    );
    let top = y + 40.0;
    let pooled_labels = rows == p.map.nrows();
    let left = x + if pooled_labels { 70.0 } else { 0.0 };
    for ((r, c), &v) in pooled.indexed_iter() {
        let is_masked = masked
            .as_ref()
            .and_then(|m| m.get((r, c)).copied())
            .unwrap_or(false);
        let fill = if is_masked {
            style.colormap.masked_color()
        } else {
            style
                .colormap
                .color(normalize(v, range, ValueScale::Linear))
        };
        scene.rect(
            left + c as f32 * cell,
            top + r as f32 * cell,
            cell,
            cell,
            fill,
        );
    }
    if pooled_labels && cell >= 10.0 {
        for r in 0..rows {
            scene.text(
                label(labels, r),
                SMALL_PX.min(cell - 1.0),
                left - 4.0,
                top + r as f32 * cell,
                Align::End,
            );
        }
    }
    let bottom = top + rows as f32 * cell;
    if masked.as_ref().is_some_and(|m| m.iter().any(|&b| b)) {
        scene.rect(
            left,
            bottom + 6.0,
            12.0,
            12.0,
            style.colormap.masked_color(),
        );
        scene.text("masked", SMALL_PX, left + 18.0, bottom + 6.0, Align::Start);
    }
    bottom + 24.0
}

fn comparison_scene(c: &Comparison, style: &TeachStyle) -> Scene {
    let mut scene = Scene::default();
    scene.text(&c.title, TITLE_PX, MARGIN, MARGIN, Align::Start);
    let y = MARGIN + 36.0;
    let left = panel(&mut scene, &c.correct, &c.labels, MARGIN, y, style);
    let right = panel(&mut scene, &c.mistaken, &c.labels, MARGIN + 440.0, y, style);
    let y = left.max(right) + 8.0;
    let y = scene.paragraph(&c.lesson, BODY_PX, MARGIN, y, TEXT_WIDTH);
    scene.paragraph(&c.summary, BODY_PX, MARGIN, y + 4.0, TEXT_WIDTH);
    // A thin accent under the title marks the figure as a comparison on slides.
    scene.rect(MARGIN, MARGIN + 26.0, 60.0, 3.0, HIGHLIGHT);
    scene
}

/// The side-by-side comparison as PNG: the title, the correct and the mistaken map (masked
/// cells in the masked colour, maps longer than [`MAX_COMPARISON_SIDE`] max-pooled), the
/// lesson and the measured effect.
pub fn comparison_figure(c: &Comparison, style: &TeachStyle) -> Result<RgbaImage, RenderError> {
    comparison_scene(c, style).png(style.pixel_scale)
}

/// [`comparison_figure`] as SVG.
pub fn comparison_svg(c: &Comparison, style: &TeachStyle) -> Result<String, RenderError> {
    comparison_scene(c, style).svg()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::engine::{MaskSpec, RunOptions};
    use crate::model::{DemoConfig, DemoModel, Model};

    fn explanation(mask: &str) -> (Explanation, Vec<String>) {
        let model = DemoModel::new(DemoConfig::default()).unwrap();
        let tokens =
            crate::tokenize::tokenize("the cat sat on the mat", Default::default()).unwrap();
        let opts = RunOptions {
            mask: MaskSpec::parse(mask).unwrap(),
            trace_layer: Some(0),
            ..RunOptions::default()
        };
        let run = model.forward(&tokens, &opts).unwrap();
        let e = Explanation::from_trace(run.trace.as_ref().unwrap(), 3, 2).unwrap();
        (e, tokens.iter().map(|t| t.text.clone()).collect())
    }

    fn count_color(img: &RgbaImage, c: [u8; 4]) -> usize {
        img.pixels().filter(|p| p.0 == c).count()
    }

    #[test]
    fn every_step_draws_and_the_mask_step_shows_minus_infinity() {
        let style = TeachStyle::default();
        let masked_colour = style.colormap.masked_color();
        for mask in ["none", "causal"] {
            let (e, labels) = explanation(mask);
            for step in WalkStep::ALL {
                let png = step_figure(&e, step, &labels, &style).unwrap();
                assert!(png.width() > 300 && png.height() > 100, "{step}");
                let svg = step_svg(&e, step, &labels, &style).unwrap();
                assert!(svg.contains(&escape(step.title())), "{step}");
                assert!(svg.ends_with("</svg>\n"));
                let minus_inf = svg.matches("−∞ (masked)").count();
                let grey = count_color(&png, masked_colour);
                if step == WalkStep::Mask && mask == "causal" {
                    // Query 2 under causal: keys 3, 4 and 5 are masked.
                    assert_eq!(minus_inf, 3, "{svg}");
                    assert!(grey > 0);
                } else if step != WalkStep::Softmax || mask == "none" {
                    assert_eq!(minus_inf, 0, "{step} {mask}");
                }
            }
        }
        // A larger pixel scale doubles every length.
        let (e, labels) = explanation("none");
        let one = step_figure(&e, WalkStep::Softmax, &labels, &style).unwrap();
        let two = step_figure(
            &e,
            WalkStep::Softmax,
            &labels,
            &TeachStyle {
                pixel_scale: 2,
                ..style
            },
        )
        .unwrap();
        assert!(
            two.width().abs_diff(2 * one.width()) <= 2,
            "{} {}",
            one.width(),
            two.width()
        );
    }

    #[test]
    fn comparison_shows_both_maps_the_mask_and_the_lesson() {
        // Correct: a causal one-hot map (every query reads itself); mistaken: uniform rows.
        let n = 4;
        let eye = Array2::<f32>::eye(n);
        let uniform = Array2::<f32>::from_elem((n, n), 0.25);
        let masked = Array2::from_shape_fn((n, n), |(q, k)| k > q);
        let c = Comparison {
            title: "no-causal-mask · layer 0 head 0".into(),
            lesson: crate::engine::Mistake::NoCausalMask.lesson().into(),
            summary: "Each query puts 37.5 % of its weight on later tokens.".into(),
            labels: ["a", "b", "c", "d"].map(String::from).to_vec(),
            correct: ComparisonPanel {
                title: "correct".into(),
                map: eye,
                masked: Some(masked),
            },
            mistaken: ComparisonPanel {
                title: "no causal mask".into(),
                map: uniform,
                masked: None,
            },
        };
        let style = TeachStyle {
            colormap: Colormap::Hot,
            pixel_scale: 1,
        };
        let png = comparison_figure(&c, &style).unwrap();
        // The correct panel: 4 diagonal cells at the top colour, 6 masked cells; the mistaken
        // panel is uniform 0.25 = its own max, also the top colour: 16 more cells.
        let top = Colormap::Hot.color(1.0);
        let masked_px = count_color(&png, Colormap::Hot.masked_color());
        let top_px = count_color(&png, top);
        let cell = (320.0f32 / 4.0).clamp(3.0, 28.0) as usize;
        assert!(masked_px >= 6 * cell * cell, "{masked_px}");
        assert!(top_px >= 20 * cell * cell, "{top_px}");
        let svg = comparison_svg(&c, &style).unwrap();
        assert!(svg.contains("the cells above") && svg.contains("37.5 %"));
        assert!(svg.contains(">masked<"));
    }
}
