//! The logit-lens table.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The logit-lens table.
pub(super) fn lens_scene(
    style: &AnswerStyle<'_>,
    title: &[String],
    target: Target,
    positions: &[usize],
    cells: &[Vec<LensCell>],
    at_target: &[LensCell],
) -> Result<(Scene<'static>, AnswerGeometry), RenderError> {
    let rows = cells.len();
    let cols = positions.len();
    if rows == 0 || cols == 0 || cells.iter().any(|r| r.len() != cols) {
        return Err(RenderError::Empty);
    }
    let ctx = style.ctx;
    let token = |p: usize| short(ctx.labels.get(p).map_or("", String::as_str), CELL_CHARS);
    let texts: Vec<Vec<String>> = cells
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| {
                    c.top.first().map_or_else(String::new, |&(id, _)| {
                        short(&(style.token_label)(id), CELL_CHARS)
                    })
                })
                .collect()
        })
        .collect();
    let widest_cell = texts
        .iter()
        .flatten()
        .map(|t| width(t, CELL_PX))
        .chain(positions.iter().map(|&p| width(&token(p), LABEL_PX)))
        .fold(0.0f32, f32::max);
    let cell_w = (widest_cell + 2.0 * CELL_PAD).max(34.0).ceil();
    // The colours: log p(T) from the lowest shown (not below LENS_FLOOR) to 0.
    let lowest = cells
        .iter()
        .flatten()
        .filter_map(|c| c.target_logprob)
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::min);
    let range = ValueRange {
        min: lowest.max(LENS_FLOOR).floor().min(-1.0),
        max: 0.0,
    };
    let cmap = Colormap::Viridis;
    let ranks: Vec<String> = at_target
        .iter()
        .map(|c| match c.target_rank {
            Some(r) if r >= 10_000 => format!("{}k", r / 1000),
            Some(r) => r.to_string(),
            None => "–".to_owned(),
        })
        .collect();
    let rank_head = "rank";
    let rank_w = ranks
        .iter()
        .map(|r| width(r, CELL_PX))
        .chain([width(rank_head, LABEL_PX)])
        .fold(0.0f32, f32::max);
    let left = Table::cells_left(rows);
    let cells_w = cols as f32 * cell_w;
    let rank_x = left + cells_w + 10.0;
    let bar_x = rank_x + rank_w + 18.0;
    let content_w = bar_x + colour_bar_width(range) + MARGIN;
    let (title_lines, fig_w) = fit_title(title, content_w);
    let top = (MARGIN + title_height(&title_lines) + 4.0).ceil();
    let table = Table::new(rows, left, top, cell_w, "layer (0 = embeddings)");
    let labels_y = table.bottom() + 5.0;
    let index_y = labels_y + line(LABEL_PX) + 2.0;
    let axis_y = index_y + line(NOTE_PX) + 6.0;
    let bar_h = table.height().max(MIN_BAR_H);
    let fig_h = (axis_y + line(LABEL_PX)).max(table.top + bar_h + line(TICK_PX)) + MARGIN;
    let mut scene = Scene::new(fig_w.ceil(), fig_h.ceil());
    draw_title(&mut scene, &title_lines);
    table.layer_axis(&mut scene);
    let mut places = Vec::with_capacity(rows * cols);
    for (l, row) in cells.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            let area = table.cell(l, left + c as f32 * cell_w);
            places.push(CellPlace {
                cell: CellId::Lens {
                    layer: l,
                    position: positions[c],
                },
                area: area.into(),
            });
            let fill = colour_of(cmap, range, cell.target_logprob.unwrap_or(f32::NAN));
            scene.fill(area, fill);
            Table::cell_text(&mut scene, area, &texts[l][c], fill);
        }
        if let Some(r) = ranks.get(l) {
            let area = table.cell(l, rank_x);
            let y = area.y + (area.h - line(CELL_PX)) / 2.0;
            scene.label(Text::new(r.clone(), CELL_PX, rank_x + rank_w, y).anchor(Anchor::End));
        }
    }
    // The target's column, framed.
    if let Some(c) = positions.iter().position(|&p| p == target.position) {
        let x = left + c as f32 * cell_w;
        let area = Area::new(x, table.top, cell_w - 1.0, table.height() - 1.0);
        scene.frame(area, 2.0, INK);
    }
    for (c, &p) in positions.iter().enumerate() {
        let x = left + (c as f32 + 0.5) * cell_w;
        let t = centred(token(p), LABEL_PX, x, labels_y);
        scene.label(if p == target.position {
            t.color([ACCENT[0], ACCENT[1], ACCENT[2]])
        } else {
            t
        });
        scene.label(centred(p.to_string(), NOTE_PX, x, index_y).color(GREY));
    }
    scene.label(
        Text::new(rank_head, LABEL_PX, rank_x + rank_w, labels_y)
            .anchor(Anchor::End)
            .color(GREY),
    );
    let axis = "position (each cell: the prediction after that token)";
    let axis = if width(axis, LABEL_PX) <= cells_w {
        axis
    } else {
        "position"
    };
    scene.label(centred(axis, LABEL_PX, left + cells_w / 2.0, axis_y));
    let caption = format!("log p({})", quoted(&(style.token_label)(target.token)));
    colour_bar(&mut scene, cmap, range, bar_x, table.top, bar_h, &caption);
    let geometry = AnswerGeometry::of_cells(&scene, places);
    Ok((scene, geometry))
}
