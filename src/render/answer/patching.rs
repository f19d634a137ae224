//! The patching recovery map.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The recovery map: layers × positions with the clean and corrupted tokens below, or layers ×
/// heads with both texts below.
pub(super) fn patching_scene(
    style: &AnswerStyle<'_>,
    title: &[String],
    p: &Patching,
    labels_b: &[String],
) -> Result<(Scene<'static>, AnswerGeometry), RenderError> {
    let rows = p.recovery.len();
    let cols = p.recovery.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 || p.recovery.iter().any(|r| r.len() != cols) {
        return Err(RenderError::Empty);
    }
    let labels_a = &style.ctx.labels;
    let by_head = p.site == PatchSite::Head;
    let max = p
        .recovery
        .iter()
        .flatten()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.abs()));
    let range = ValueRange {
        min: -(max as f32),
        max: max as f32,
    };
    let cmap = Colormap::Diverging;
    let a = |i: usize| short(labels_a.get(i).map_or("", String::as_str), CELL_CHARS);
    let b = |i: usize| short(labels_b.get(i).map_or("", String::as_str), CELL_CHARS);
    let differs = |i: usize| labels_a.get(i) != labels_b.get(i);
    let widest = if by_head {
        0.0
    } else {
        (0..cols)
            .flat_map(|i| [width(&a(i), LABEL_PX), width(&b(i), LABEL_PX)])
            .fold(0.0f32, f32::max)
    };
    let cell_w = (widest + 2.0 * CELL_PAD)
        .max(width("−0.00", CELL_PX) + 2.0 * CELL_PAD)
        .max(30.0)
        .ceil();
    let captions = ["clean", "corrupted"];
    let caption_w = captions
        .iter()
        .map(|c| width(c, LABEL_PX))
        .fold(0.0f32, f32::max);
    let left = Table::cells_left(rows).max(MARGIN + caption_w + 10.0);
    let cells_w = cols as f32 * cell_w;
    let bar_x = left + cells_w + 18.0;
    // With heads as columns, the two inputs' tokens are written out below the map.
    let joined = [labels_a.join(" "), labels_b.join(" ")];
    let texts_x = MARGIN + caption_w + 8.0;
    let mut content_w = bar_x + colour_bar_width(range) + MARGIN;
    if by_head {
        let widest_text = joined
            .iter()
            .map(|t| width(&format!("“{t}”"), LABEL_PX))
            .fold(0.0f32, f32::max);
        content_w = content_w.max((texts_x + widest_text + MARGIN).min(900.0));
    }
    let (title_lines, fig_w) = fit_title(title, content_w);
    let top = (MARGIN + title_height(&title_lines) + 4.0).ceil();
    let table = Table::new(rows, left, top, cell_w, "layer");
    let row1 = table.bottom() + 5.0;
    let row2 = row1 + line(LABEL_PX) + 3.0;
    let row3 = row2 + line(LABEL_PX) + 3.0;
    let axis_y = if by_head {
        row1 + line(LABEL_PX) + 4.0
    } else {
        row3 + line(NOTE_PX) + 6.0
    };
    let bar_h = table.height().max(MIN_BAR_H);
    let texts_y = (axis_y + line(LABEL_PX)).max(table.top + bar_h + line(TICK_PX)) + 10.0;
    let bottom = if by_head {
        texts_y + 2.0 * (line(LABEL_PX) + 3.0)
    } else {
        axis_y + line(LABEL_PX)
    };
    let fig_h = bottom.max(table.top + bar_h + line(TICK_PX)) + MARGIN;
    let mut scene = Scene::new(fig_w.ceil(), fig_h.ceil());
    draw_title(&mut scene, &title_lines);
    table.layer_axis(&mut scene);
    let shown = |v: f64| v.is_finite() && v.abs() >= 0.1;
    let mut places = Vec::with_capacity(rows * cols);
    for (l, row) in p.recovery.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let area = table.cell(l, left + c as f32 * cell_w);
            places.push(CellPlace {
                cell: CellId::Patch {
                    layer: l,
                    column: c,
                },
                area: area.into(),
            });
            let fill = colour_of(cmap, range, v as f32);
            scene.fill(area, fill);
            if shown(v) {
                Table::cell_text(&mut scene, area, &cell_number(v, 1.0), fill);
            }
        }
    }
    let accent = [ACCENT[0], ACCENT[1], ACCENT[2]];
    if by_head {
        for h in 0..cols {
            let x = left + (h as f32 + 0.5) * cell_w;
            scene.label(centred(h.to_string(), LABEL_PX, x, row1));
        }
        scene.label(centred("head", LABEL_PX, left + cells_w / 2.0, axis_y));
        let max_w = fig_w - MARGIN - texts_x;
        for (k, (caption, t)) in captions.iter().zip(&joined).enumerate() {
            let cut = crate::render::grid::text_start(t, LABEL_PX, max_w as u64);
            let y = texts_y + k as f32 * (line(LABEL_PX) + 3.0);
            let at = texts_x - 8.0;
            scene.label(
                Text::new(*caption, LABEL_PX, at, y)
                    .anchor(Anchor::End)
                    .color(GREY),
            );
            scene.label(Text::new(cut, LABEL_PX, texts_x, y));
        }
    } else {
        for c in 0..cols {
            let x = left + (c as f32 + 0.5) * cell_w;
            let colour = if differs(c) { accent } else { TEXT_COLOR };
            scene.label(centred(a(c), LABEL_PX, x, row1).color(colour));
            scene.label(centred(b(c), LABEL_PX, x, row2).color(if differs(c) {
                accent
            } else {
                GREY
            }));
            scene.label(centred(c.to_string(), NOTE_PX, x, row3).color(GREY));
        }
        for (caption, y) in captions.iter().zip([row1, row2]) {
            scene.label(
                Text::new(*caption, LABEL_PX, left - 8.0, y)
                    .anchor(Anchor::End)
                    .color(GREY),
            );
        }
        scene.label(centred("position", LABEL_PX, left + cells_w / 2.0, axis_y));
    }
    colour_bar(&mut scene, cmap, range, bar_x, table.top, bar_h, "recovery");
    let geometry = AnswerGeometry::of_cells(&scene, places);
    Ok((scene, geometry))
}
