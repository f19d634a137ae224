//! The information-flow routes graph.

#[allow(clippy::wildcard_imports)]
use super::*;

/// The colour of an edge of `kind`.
pub(super) fn edge_colour(kind: EdgeKind) -> [u8; 4] {
    match kind {
        EdgeKind::Attn => [0xe6, 0x7e, 0x22, 255],
        EdgeKind::Mlp => [0x27, 0xae, 0x60, 255],
        EdgeKind::Resid => [0xa0, 0xa0, 0xa0, 255],
    }
}

/// An edge's stroke width: importance 1 is 6 units, the thinnest 0.75.
pub(super) fn edge_width(importance: f32) -> f32 {
    0.75 + 5.25 * importance.clamp(0.0, 1.0)
}

/// The routes graph: nodes (l, i, in) and (l, i, mid) on levels 2l and 2l + 1 from the bottom,
/// tokens left to right, the kept edges drawn residual first, then MLP, then attention.
pub(super) fn routes_scene(
    style: &AnswerStyle<'_>,
    title: &[String],
    routes: &Routes,
    layers: usize,
) -> Result<(Scene<'static>, AnswerGeometry), RenderError> {
    let labels = &style.ctx.labels;
    let n = labels
        .len()
        .max(routes.nodes.iter().map(|n| n.1 + 1).max().unwrap_or(0));
    if n == 0 || layers == 0 {
        return Err(RenderError::Empty);
    }
    let token = |i: usize| short(labels.get(i).map_or("", String::as_str), CELL_CHARS);
    // Columns wide enough for their labels, and a graph at least 440 units wide.
    let dx = (0..n)
        .map(|i| width(&token(i), LABEL_PX))
        .fold(0.0f32, f32::max)
        .max(30.0)
        .ceil()
        + 14.0;
    let dx = dx.max((440.0 / n as f32).min(110.0).floor());
    let dy = 12.0;
    let left = Table::cells_left(layers + 1) + 4.0;
    let graph_w = n as f32 * dx;
    let legend: [(&str, EdgeKind); 3] = [
        ("attention", EdgeKind::Attn),
        ("MLP", EdgeKind::Mlp),
        ("residual", EdgeKind::Resid),
    ];
    let note = "width ∝ importance";
    let legend_w = legend
        .iter()
        .map(|(t, _)| 28.0 + 6.0 + width(t, LABEL_PX) + 18.0)
        .sum::<f32>()
        + width(note, LABEL_PX);
    let content_w = (left + graph_w + MARGIN).max(MARGIN + legend_w + MARGIN);
    let (title_lines, fig_w) = fit_title(title, content_w);
    let legend_y = (MARGIN + title_height(&title_lines) + 2.0).ceil();
    let top = legend_y + line(LABEL_PX) + 16.0;
    let levels = 2 * layers;
    // The axis title, shortened or given room when the graph is short.
    let axis = "layer (block input x_l)";
    let axis = if width(axis, LABEL_PX) <= levels as f32 * dy {
        axis
    } else {
        "layer"
    };
    let dy = dy.max(((width(axis, LABEL_PX) + 4.0) / levels as f32).ceil());
    let bottom = top + levels as f32 * dy;
    let labels_y = bottom + 10.0;
    let index_y = labels_y + line(LABEL_PX) + 2.0;
    let axis_y = index_y + line(NOTE_PX) + 6.0;
    let fig_h = axis_y + line(LABEL_PX) + MARGIN;
    let mut scene = Scene::new(fig_w.ceil(), fig_h.ceil());
    draw_title(&mut scene, &title_lines);
    // The legend.
    let mut x = MARGIN;
    let mid = legend_y + line(LABEL_PX) / 2.0;
    for (t, kind) in legend {
        scene.line((x, mid), (x + 28.0, mid), 3.0, edge_colour(kind));
        x += 34.0;
        scene.label(Text::new(t, LABEL_PX, x, legend_y));
        x += width(t, LABEL_PX) + 18.0;
    }
    scene.label(Text::new(note, LABEL_PX, x, legend_y).color(GREY));
    let xy = |Node(l, i, stage): Node| {
        let level = 2 * l + usize::from(stage == Stage::Mid);
        (left + (i as f32 + 0.5) * dx, bottom - level as f32 * dy)
    };
    // Guides: a faint line up each token's column, one across each block's input.
    let guide = [0xee, 0xee, 0xee, 255];
    for i in 0..n {
        let (x, _) = xy(Node(0, i, Stage::In));
        scene.line((x, top), (x, bottom), 1.0, guide);
    }
    for l in 0..=layers {
        let (_, y) = xy(Node(l, 0, Stage::In));
        scene.line((left, y), (left + graph_w, y), 1.0, guide);
        let t = Text::new(
            l.to_string(),
            NOTE_PX.max(LABEL_PX - 1.0),
            left - 8.0,
            y - line(LABEL_PX - 1.0) / 2.0,
        );
        scene.label(t.anchor(Anchor::End));
    }
    scene.label(
        Text::new(axis, LABEL_PX, MARGIN, (top + bottom) / 2.0)
            .anchor(Anchor::Middle)
            .up(),
    );
    // An MLP edge runs beside the residual stream it adds to, clear of the widest residual.
    let offset = |e: &Edge| -> f32 {
        if e.kind == EdgeKind::Mlp {
            edge_width(1.0) / 2.0 + 1.5 + edge_width(e.importance) / 2.0
        } else {
            0.0
        }
    };
    let mut edges = Vec::with_capacity(routes.edges.len());
    for kind in [EdgeKind::Resid, EdgeKind::Mlp, EdgeKind::Attn] {
        for (index, e) in routes
            .edges
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == kind)
        {
            let (a, b) = (xy(e.from), xy(e.to));
            let o = offset(e);
            let (a, b) = ((a.0 + o, a.1), (b.0 + o, b.1));
            let width = edge_width(e.importance);
            scene.line(a, b, width, edge_colour(kind));
            edges.push(EdgePlace {
                index,
                kind,
                from: e.from,
                to: e.to,
                a,
                b,
                width,
            });
        }
    }
    let output = Node(layers, routes.position, Stage::In);
    let nodes = routes.nodes.iter().map(|&node| (node, xy(node))).collect();
    for &node in &routes.nodes {
        let radius = if node.2 == Stage::In { 2.2 } else { 1.6 };
        if node != output {
            scene.disc(xy(node), radius, [0x44, 0x44, 0x44, 255]);
        }
    }
    scene.disc(xy(output), 5.0, ACCENT);
    let accent = [ACCENT[0], ACCENT[1], ACCENT[2]];
    for i in 0..n {
        let (x, _) = xy(Node(0, i, Stage::In));
        let t = centred(token(i), LABEL_PX, x, labels_y);
        scene.label(if i == routes.position {
            t.color(accent)
        } else {
            t
        });
        scene.label(centred(i.to_string(), NOTE_PX, x, index_y).color(GREY));
    }
    scene.label(centred("position", LABEL_PX, left + graph_w / 2.0, axis_y));
    let geometry = AnswerGeometry {
        edges,
        nodes,
        ..AnswerGeometry::of_cells(&scene, Vec::new())
    };
    Ok((scene, geometry))
}
