//! Where the parts of an answer figure landed: each table cell's rectangle, each routes edge's
//! segment and each node's centre, in scene units, recorded by the layout that drew them (so the
//! app maps a click to a cell without laying the figure out a second time).

use super::{Area, Scene};
use crate::analysis::answer::routes::{EdgeKind, Node};

/// A rectangle in scene units (a PNG drawn at pixel scale `s` covers `s` pixels per unit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UnitRect {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub w: f32,
    /// Height.
    pub h: f32,
}

impl UnitRect {
    /// Whether (`x`, `y`) lies inside (left and top edges included).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x && x < self.x + self.w && y >= self.y && y < self.y + self.h
    }

    /// The centre.
    pub fn centre(&self) -> (f32, f32) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }
}

impl From<Area> for UnitRect {
    fn from(a: Area) -> Self {
        UnitRect {
            x: a.x,
            y: a.y,
            w: a.w,
            h: a.h,
        }
    }
}

/// Which cell of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CellId {
    /// A logit-lens cell: the residual stream x_`layer` read at `position` (a token index).
    Lens {
        /// 0 = embeddings, L = the output.
        layer: usize,
        /// The token index.
        position: usize,
    },
    /// A head's direct contribution.
    Head {
        /// The layer.
        layer: usize,
        /// The head.
        head: usize,
    },
    /// A layer's MLP's direct contribution.
    Mlp {
        /// The layer.
        layer: usize,
    },
    /// A patching cell: the recovery of patching `layer` at `column` (a position, or a head
    /// for the by-head site).
    Patch {
        /// The layer.
        layer: usize,
        /// The position or head.
        column: usize,
    },
}

/// A cell and where it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellPlace {
    /// Which cell.
    pub cell: CellId,
    /// Its filled rectangle.
    pub area: UnitRect,
}

/// A routes edge as drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdgePlace {
    /// Its index in the drawn [`Routes::edges`](crate::analysis::answer::routes::Routes).
    pub index: usize,
    /// Attention, MLP or residual.
    pub kind: EdgeKind,
    /// The node it leaves (lower in the graph).
    pub from: Node,
    /// The node it reaches.
    pub to: Node,
    /// The drawn segment's ends (an MLP edge beside the residual it shares its ends with).
    pub a: (f32, f32),
    /// The other end.
    pub b: (f32, f32),
    /// The stroke's width.
    pub width: f32,
}

impl EdgePlace {
    /// The distance from (`x`, `y`) to the segment's centre line.
    pub fn distance(&self, x: f32, y: f32) -> f32 {
        let (dx, dy) = (self.b.0 - self.a.0, self.b.1 - self.a.1);
        let len_sq = (dx * dx + dy * dy).max(1e-6);
        let t = (((x - self.a.0) * dx + (y - self.a.1) * dy) / len_sq).clamp(0.0, 1.0);
        let (px, py) = (self.a.0 + t * dx - x, self.a.1 + t * dy - y);
        (px * px + py * py).sqrt()
    }
}

/// Where the parts of one answer figure are, in scene units.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AnswerGeometry {
    /// The figure's width in units.
    pub width: f32,
    /// The figure's height in units.
    pub height: f32,
    /// The table's cells (lens, contributions, patching), in drawing order.
    pub cells: Vec<CellPlace>,
    /// The routes graph's kept edges, in drawing order (residual, MLP, attention).
    pub edges: Vec<EdgePlace>,
    /// The routes graph's kept nodes and their centres.
    pub nodes: Vec<(Node, (f32, f32))>,
}

impl AnswerGeometry {
    /// The geometry of a table figure: `scene`'s size and its `cells`.
    pub(super) fn of_cells(scene: &Scene<'_>, cells: Vec<CellPlace>) -> Self {
        AnswerGeometry {
            width: scene.width,
            height: scene.height,
            cells,
            edges: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// The cell under (`x`, `y`), if any.
    pub fn cell_at(&self, x: f32, y: f32) -> Option<CellId> {
        self.cells
            .iter()
            .find(|c| c.area.contains(x, y))
            .map(|c| c.cell)
    }

    /// The area of `cell`, if the figure has it.
    pub fn area_of(&self, cell: CellId) -> Option<UnitRect> {
        self.cells.iter().find(|c| c.cell == cell).map(|c| c.area)
    }

    /// The edge nearest (`x`, `y`) within `slack` units of its stroke's edge, the one drawn
    /// on top winning a tie.
    pub fn edge_at(&self, x: f32, y: f32, slack: f32) -> Option<&EdgePlace> {
        self.edges
            .iter()
            .map(|e| (e, e.distance(x, y) - e.width / 2.0))
            .filter(|(_, d)| *d <= slack)
            .min_by(|a, b| a.1.total_cmp(&b.1).then(std::cmp::Ordering::Greater))
            .map(|(e, _)| e)
    }
}
