//! Where each walkthrough step's and each comparison's numbers, labels and colours go.

use super::*;
use crate::analysis::explain::{Explanation, WalkStep};
use crate::render::colormap::Colormap;
use crate::render::heatmap::{ValueRange, ValueScale, normalize};
use crate::render::scene::{Anchor, Scene};

pub(super) const MARGIN: f32 = 16.0;
pub(super) const TITLE_PX: f32 = 20.0;
pub(super) const BODY_PX: f32 = 14.0;
pub(super) const SMALL_PX: f32 = 11.0;
pub(super) const ROW: f32 = 20.0;
pub(super) const TEXT_WIDTH: f32 = 760.0;

/// A value in a few significant digits (`0.1768`, `-12.35`, `3.2e-5`).
pub(super) fn fmt_value(v: f64) -> String {
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
pub(super) fn signed_color(v: f32, bound: f32) -> [u8; 4] {
    let bound = if bound > 0.0 { bound } else { 1.0 };
    Colormap::Diverging.color(0.5 + 0.5 * v / bound)
}

pub(super) fn label(labels: &[String], i: usize) -> String {
    let text = labels.get(i).map_or_else(|| i.to_string(), String::clone);
    let short: String = text.chars().take(14).collect();
    if short.len() < text.len() {
        format!("{short}…")
    } else {
        short
    }
}

/// A labelled row of cells for a vector (q or an output), colours on the diverging map.
pub(super) fn vector_row(
    scene: &mut Scene<'static>,
    name: &str,
    v: &[f32],
    x: f32,
    y: f32,
    cell: f32,
) -> f32 {
    let shown = v.len().min(MAX_DIMS_SHOWN);
    let bound = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    scene.text(name, BODY_PX, x - 8.0, y + 3.0, Anchor::End);
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
        Anchor::Start,
    );
    y + ROW + 4.0
}

/// A matrix [rows][dims] as labelled rows of cells, each row scaled by `row_factor` (1 for K).
pub(super) fn matrix_rows(
    scene: &mut Scene<'static>,
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
        scene.text(label(labels, r), SMALL_PX, x - 8.0, y + 2.0, Anchor::End);
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
                Anchor::Start,
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
            Anchor::Start,
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
        Anchor::Start,
    );
    y + ROW
}

/// One horizontal bar per key, from a zero line; `None` values are masked (shown as −∞).
#[allow(clippy::too_many_arguments)]
pub(super) fn bars(
    scene: &mut Scene<'static>,
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
        scene.text(name, SMALL_PX, x - 8.0, y + 2.0, Anchor::End);
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
                    Anchor::Start,
                );
            }
            None => {
                scene.rect(x, y + 2.0, 2.0 * HALF, ROW - 8.0, masked_fill);
                scene.text(
                    "−∞ (masked)",
                    SMALL_PX,
                    x + 2.0 * HALF + 12.0,
                    y + 1.0,
                    Anchor::Start,
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
            Anchor::Start,
        );
        y += ROW;
    }
    y + 6.0
}

/// The layout of one walkthrough step.
pub(super) fn step_scene(
    e: &Explanation,
    step: WalkStep,
    labels: &[String],
    style: &TeachStyle,
) -> Scene<'static> {
    let mut scene = Scene::default();
    let x0 = MARGIN;
    scene.text(step.title(), TITLE_PX, x0, MARGIN, Anchor::Start);
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
    scene.text(context, BODY_PX, x0, MARGIN + 28.0, Anchor::Start);
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
            scene.text("K (one key per token)", BODY_PX, x, y, Anchor::Start);
            y = matrix_rows(&mut scene, &e.keys, labels, None, x, y + 22.0, cell);
        }
        WalkStep::Scores => {
            scene.text("q·k_j", BODY_PX, x, y, Anchor::Start);
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
            scene.text(what, BODY_PX, x, y, Anchor::Start);
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
            scene.text("scaled scores after the mask", BODY_PX, x, y, Anchor::Start);
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
                Anchor::Start,
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
                    Anchor::Start,
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
                Anchor::Start,
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
                Anchor::Start,
            );
            y += ROW;
        }
    }
    let explanation = step.explanation(e);
    scene.paragraph(&explanation, BODY_PX, x0, y + 12.0, TEXT_WIDTH);
    with_margin(scene)
}

/// `scene` with the margin right of and below what it holds (the layout starts at the margin).
fn with_margin(mut scene: Scene<'static>) -> Scene<'static> {
    scene.width += MARGIN;
    scene.height += MARGIN;
    scene
}

pub(super) fn panel(
    scene: &mut Scene<'static>,
    p: &ComparisonPanel,
    labels: &[String],
    x: f32,
    y: f32,
    style: &TeachStyle,
) -> f32 {
    let pooled = crate::render::pool::max_pool(p.map.view(), MAX_COMPARISON_SIDE);
    let masked = p
        .masked
        .as_ref()
        .filter(|m| m.dim() == p.map.dim())
        .map(|m| crate::render::pool::pool_mask(m.view(), MAX_COMPARISON_SIDE));
    let (rows, cols) = pooled.dim();
    let cell = (320.0 / rows.max(cols).max(1) as f32).clamp(3.0, 28.0);
    let max = pooled.iter().fold(0.0f32, |m, &v| m.max(v));
    let range = ValueRange {
        min: 0.0,
        max: if max > 0.0 { max } else { 1.0 },
    };
    scene.text(&p.title, BODY_PX, x, y, Anchor::Start);
    scene.text(
        format!("colour 0 … {}", fmt_value(f64::from(range.max))),
        SMALL_PX,
        x,
        y + 20.0,
        Anchor::Start,
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
                Anchor::End,
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
        scene.text("masked", SMALL_PX, left + 18.0, bottom + 6.0, Anchor::Start);
    }
    bottom + 24.0
}

pub(super) fn comparison_scene(c: &Comparison, style: &TeachStyle) -> Scene<'static> {
    let mut scene = Scene::default();
    scene.text(&c.title, TITLE_PX, MARGIN, MARGIN, Anchor::Start);
    let y = MARGIN + 36.0;
    let left = panel(&mut scene, &c.correct, &c.labels, MARGIN, y, style);
    let right = panel(&mut scene, &c.mistaken, &c.labels, MARGIN + 440.0, y, style);
    let y = left.max(right) + 8.0;
    let y = scene.paragraph(&c.lesson, BODY_PX, MARGIN, y, TEXT_WIDTH);
    scene.paragraph(&c.summary, BODY_PX, MARGIN, y + 4.0, TEXT_WIDTH);
    // A thin accent under the title marks the figure as a comparison on slides.
    scene.rect(MARGIN, MARGIN + 26.0, 60.0, 3.0, HIGHLIGHT);
    with_margin(scene)
}
