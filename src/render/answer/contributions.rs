//! The contribution map (L × H heads plus the MLP column).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The contribution map: layers × heads, a gap, the MLP column; the rest below.
pub(super) fn contributions_scene(
    title: &[String],
    c: &Contributions,
) -> Result<(Scene<'static>, AnswerGeometry), RenderError> {
    let rows = c.heads.len();
    let heads = c.heads.first().map_or(0, Vec::len);
    if rows == 0 || heads == 0 || c.mlp.len() != rows {
        return Err(RenderError::Empty);
    }
    let max = c
        .heads
        .iter()
        .flatten()
        .chain(&c.mlp)
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let range = ValueRange {
        min: -(max as f32),
        max: max as f32,
    }
    .centred();
    let cmap = Colormap::Diverging;
    let cell_w = (width(&cell_number(-max, max), CELL_PX) + 2.0 * CELL_PAD)
        .max(30.0)
        .ceil();
    let left = Table::cells_left(rows);
    let gap = 10.0;
    let mlp_x = left + heads as f32 * cell_w + gap;
    let cells_right = mlp_x + cell_w;
    let bar_x = cells_right + 18.0;
    let footer = format!(
        "not in the map: embeddings {} · attention-output biases {} · final-norm term {} · \
         sum of all parts {} (= the metric)",
        cell_number(c.embeddings, max.max(1.0)),
        cell_number(c.attn_bias.iter().sum::<f64>(), max.max(1.0)),
        cell_number(c.norm_term, max.max(1.0)),
        crate::render::format_significant(c.sum)
    );
    let content_w = bar_x + colour_bar_width(range) + MARGIN;
    let footer = wrap_parts(&footer, NOTE_PX, content_w.max(560.0) - 2.0 * MARGIN);
    let content_w = footer
        .iter()
        .map(|f| MARGIN + width(f, NOTE_PX) + MARGIN)
        .fold(content_w, f32::max);
    let (title_lines, fig_w) = fit_title(title, content_w);
    let top = (MARGIN + title_height(&title_lines) + 4.0).ceil();
    let table = Table::new(rows, left, top, cell_w, "layer");
    let labels_y = table.bottom() + 5.0;
    let axis_y = labels_y + line(LABEL_PX) + 4.0;
    let bar_h = table.height().max(MIN_BAR_H);
    let footer_y = (axis_y + line(LABEL_PX)).max(table.top + bar_h + line(TICK_PX)) + 8.0;
    let footer_h = footer.len() as f32 * (line(NOTE_PX) + 3.0);
    let fig_h = (footer_y + footer_h).max(table.top + bar_h + line(TICK_PX)) + MARGIN;
    let mut scene = Scene::new(fig_w.ceil(), fig_h.ceil());
    draw_title(&mut scene, &title_lines);
    table.layer_axis(&mut scene);
    // Values are written in the cells that matter: a fifth of the largest and more.
    let shown = |v: f64| v.is_finite() && max > 0.0 && v.abs() >= 0.2 * max;
    let mut places = Vec::with_capacity(rows * (heads + 1));
    for l in 0..rows {
        let row = c.heads[l].iter().enumerate().map(|(h, &v)| {
            let id = CellId::Head { layer: l, head: h };
            (id, left + h as f32 * cell_w, v)
        });
        for (id, x, v) in row.chain([(CellId::Mlp { layer: l }, mlp_x, c.mlp[l])]) {
            let area = table.cell(l, x);
            places.push(CellPlace {
                cell: id,
                area: area.into(),
            });
            let fill = colour_of(cmap, range, v as f32);
            scene.fill(area, fill);
            if shown(v) {
                Table::cell_text(&mut scene, area, &cell_number(v, max), fill);
            }
        }
    }
    for h in 0..heads {
        let x = left + (h as f32 + 0.5) * cell_w;
        scene.label(centred(h.to_string(), LABEL_PX, x, labels_y));
    }
    scene.label(centred("MLP", LABEL_PX, mlp_x + cell_w / 2.0, labels_y));
    scene.label(centred(
        "head",
        LABEL_PX,
        left + heads as f32 * cell_w / 2.0,
        axis_y,
    ));
    for (k, f) in footer.into_iter().enumerate() {
        let y = footer_y + k as f32 * (line(NOTE_PX) + 3.0);
        scene.label(Text::new(f, NOTE_PX, MARGIN, y).color(GREY));
    }
    colour_bar(
        &mut scene,
        cmap,
        range,
        bar_x,
        table.top,
        bar_h,
        "direct contribution",
    );
    let geometry = AnswerGeometry::of_cells(&scene, places);
    Ok((scene, geometry))
}
