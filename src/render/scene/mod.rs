//! A figure laid out once, drawn twice: every figure (the labelled heatmap, the grid, the
//! saliency figure, the teaching figures) is built as a [`Scene`] of rectangles, frames, lines,
//! texts, gradients and images, in scene units, and the scene is then drawn into pixels
//! ([`Scene::png`], in [`png`]) or written as SVG ([`Scene::svg`], in [`svg`]) from the same
//! coordinates, as plotters draws one chart through a bitmap and an SVG backend.
//!
//! Units: a PNG is drawn at `scale` pixels per unit (the teaching figures are laid out at 1 and
//! drawn at their pixel scale; the heatmap, the grid and the saliency figure are laid out in
//! output pixels and drawn at 1); an SVG's units are CSS pixels. The pixel rules that keep
//! today's figures' pixels are the backends' (rounding, which edge of a centred text is
//! whole); layouts only say where things go.
//!
//! Images are not pixels in the scene but what to paint: a map's cells ([`Raster::Cells`]) or
//! a grid thumbnail ([`Raster::Thumbnail`]). The PNG backend paints them straight into the
//! figure (the fast path of [`paint_cells`](super::heatmap::paint_cells)); the SVG backend
//! writes small maps as rectangles and everything else as an embedded PNG at the raster's
//! own resolution, which may be finer than the scene's units.

pub(crate) mod png;
pub mod svg;

use super::colormap::Colormap;
use super::heatmap::{ValueRange, ValueScale};
use super::text;
use ndarray::ArrayView2;

/// A rectangle in scene units.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Area {
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) w: f32,
    pub(crate) h: f32,
}

impl Area {
    pub(crate) fn new(x: f32, y: f32, w: f32, h: f32) -> Area {
        Area { x, y, w, h }
    }

    /// The whole-pixel rectangle `rect` (u64 pixels) as an area.
    pub(crate) fn of(rect: super::layout::Rect) -> Area {
        Area::new(rect.x as f32, rect.y as f32, rect.w as f32, rect.h as f32)
    }
}

/// Which point of a text its position names, along its reading direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// Where the text starts (left of a horizontal text, bottom of an upward one).
    Start,
    /// Its middle.
    Middle,
    /// Where it ends.
    End,
}

/// Which way a text reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Left to right.
    Right,
    /// Bottom to top (rotated 90° counter-clockwise; the letters' tops face left).
    Up,
}

/// One line of text. A horizontal text's `y` is the top of its line box and `x` its anchor; an
/// upward text's `x` is the left edge of its (rotated) line box and `y` its anchor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Text {
    pub(crate) content: String,
    /// Line height in units (ab_glyph's ascent-to-descent size).
    pub(crate) px: f32,
    pub(crate) x: f32,
    pub(crate) y: f32,
    pub(crate) anchor: Anchor,
    pub(crate) direction: Direction,
    pub(crate) color: [u8; 3],
}

impl Text {
    /// Dark text reading right from `(x, top)`.
    pub(crate) fn new(content: impl Into<String>, px: f32, x: f32, y: f32) -> Text {
        Text {
            content: content.into(),
            px,
            x,
            y,
            anchor: Anchor::Start,
            direction: Direction::Right,
            color: text::TEXT_COLOR,
        }
    }

    /// The text centred on the box of width `width` (whole units) starting at `left`, as
    /// figures centre their titles: `left` is the drawn box's left edge, the anchor its middle.
    pub(crate) fn centred(content: impl Into<String>, px: f32, left: u64, width: u64) -> Text {
        Text::new(content, px, left as f32 + width as f32 / 2.0, 0.0).anchor(Anchor::Middle)
    }

    pub(crate) fn anchor(mut self, anchor: Anchor) -> Text {
        self.anchor = anchor;
        self
    }

    pub(crate) fn up(mut self) -> Text {
        self.direction = Direction::Up;
        self
    }

    pub(crate) fn top(mut self, y: f32) -> Text {
        self.y = y;
        self
    }

    pub(crate) fn color(mut self, color: [u8; 3]) -> Text {
        self.color = color;
        self
    }
}

/// Which end of a gradient shows the colormap's top colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Toward {
    /// Bottom row the first colour, top row the last (a colorbar).
    Up,
    /// Left column the first colour, right column the last (a legend strip).
    Right,
}

/// What an image element paints: a map in a colormap, masked cells in the masked colour and
/// non-finite values in the non-finite colour, at a resolution of its own.
#[derive(Clone, Debug)]
pub(crate) struct Raster<'a> {
    pub(crate) m: ArrayView2<'a, f32>,
    /// Cells the mask forbids; ignored unless it has the map's shape.
    pub(crate) masked: Option<ArrayView2<'a, bool>>,
    pub(crate) colormap: Colormap,
    pub(crate) range: ValueRange,
    pub(crate) scale: ValueScale,
    pub(crate) kind: RasterKind,
}

impl Raster<'_> {
    /// The raster's size in pixels, `(width, height)`.
    pub(crate) fn size(&self) -> (u64, u64) {
        match self.kind {
            RasterKind::Cells { cell } => {
                let cell = u64::from(cell);
                (self.m.ncols() as u64 * cell, self.m.nrows() as u64 * cell)
            }
            RasterKind::Thumbnail { side } => (u64::from(side), u64::from(side)),
        }
    }
}

/// How a [`Raster`]'s map becomes pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RasterKind {
    /// Each cell a block of `cell` x `cell` pixels (`heatmap_image`).
    Cells { cell: u32 },
    /// A grid thumbnail (`thumbnail_image`): max-pooled and scaled to `side` x `side` pixels.
    Thumbnail { side: u32 },
}

/// A line's width (in units) and colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Stroke {
    pub(crate) width: f32,
    pub(crate) color: [u8; 4],
}

/// One drawable element, in scene units.
#[derive(Clone, Debug)]
pub(crate) enum Element<'a> {
    /// A filled rectangle.
    Rect { area: Area, fill: [u8; 4] },
    /// A border just outside `area`, the stroke's width thick.
    Frame { area: Area, stroke: Stroke },
    /// A segment, the stroke centred on the points: horizontal and vertical ones snap to whole
    /// pixels like rectangles, others (the routes graph's edges) are drawn anti-aliased.
    Line {
        from: (f32, f32),
        to: (f32, f32),
        stroke: Stroke,
    },
    /// A filled disc (a graph's node), anti-aliased in a PNG.
    Disc {
        centre: (f32, f32),
        radius: f32,
        fill: [u8; 4],
    },
    /// A line of text.
    Text(Text),
    /// A colormap's gradient over `area`; `id` names it in an SVG.
    Gradient {
        area: Area,
        colormap: Colormap,
        toward: Toward,
        id: &'static str,
    },
    /// A raster stretched over `area`.
    Image { area: Area, raster: Raster<'a> },
}

/// A figure laid out once, for both outputs: its size in units and its elements, drawn in
/// order (later ones over earlier ones).
#[derive(Clone, Debug, Default)]
pub(crate) struct Scene<'a> {
    pub(crate) width: f32,
    pub(crate) height: f32,
    pub(crate) items: Vec<Element<'a>>,
}

impl<'a> Scene<'a> {
    /// An empty scene `width` x `height` units.
    pub(crate) fn new(width: f32, height: f32) -> Self {
        Scene {
            width,
            height,
            items: Vec::new(),
        }
    }

    /// Adds a filled rectangle.
    pub(crate) fn fill(&mut self, area: Area, fill: [u8; 4]) {
        self.items.push(Element::Rect { area, fill });
    }

    /// Adds a border `width` thick just outside `area`.
    pub(crate) fn frame(&mut self, area: Area, width: f32, color: [u8; 4]) {
        let stroke = Stroke { width, color };
        self.items.push(Element::Frame { area, stroke });
    }

    /// Adds an axis-aligned segment.
    pub(crate) fn line(&mut self, from: (f32, f32), to: (f32, f32), width: f32, color: [u8; 4]) {
        let stroke = Stroke { width, color };
        self.items.push(Element::Line { from, to, stroke });
    }

    /// Adds a filled disc.
    pub(crate) fn disc(&mut self, centre: (f32, f32), radius: f32, fill: [u8; 4]) {
        self.items.push(Element::Disc {
            centre,
            radius,
            fill,
        });
    }

    /// Adds a text.
    pub(crate) fn label(&mut self, text: Text) {
        self.items.push(Element::Text(text));
    }

    /// Adds a colormap's gradient.
    pub(crate) fn gradient(
        &mut self,
        area: Area,
        colormap: Colormap,
        toward: Toward,
        id: &'static str,
    ) {
        self.items.push(Element::Gradient {
            area,
            colormap,
            toward,
            id,
        });
    }

    /// Adds an image.
    pub(crate) fn image(&mut self, area: Area, raster: Raster<'a>) {
        self.items.push(Element::Image { area, raster });
    }

    // Helpers for figures that grow to fit what they hold (the teaching figures): each adds an
    // element and widens the scene to hold it.

    /// Adds a filled rectangle, growing the scene to hold it.
    pub(crate) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: [u8; 4]) {
        self.fill(Area::new(x, y, w, h), fill);
        self.grow(x + w, y + h);
    }

    /// Adds a dark text at `(x, top)` placed by `anchor` (start or end), growing the scene.
    pub(crate) fn text(
        &mut self,
        content: impl Into<String>,
        px: f32,
        x: f32,
        top: f32,
        anchor: Anchor,
    ) {
        let content = content.into();
        let w = text::text_width(&content, px) as f32;
        let right = match anchor {
            Anchor::Start => x + w,
            Anchor::Middle => x + w / 2.0,
            Anchor::End => x,
        };
        self.grow(right, top + text::line_height(px) as f32);
        self.label(Text::new(content, px, x, top).anchor(anchor));
    }

    /// Widens the scene to reach `right` and `bottom`.
    pub(crate) fn grow(&mut self, right: f32, bottom: f32) {
        self.width = self.width.max(right);
        self.height = self.height.max(bottom);
    }

    /// Wraps `text` into lines no wider than `width` at `px`, from `top`; returns the y below.
    pub(crate) fn paragraph(&mut self, text: &str, px: f32, x: f32, top: f32, width: f32) -> f32 {
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
                self.text(std::mem::take(&mut current), px, x, y, Anchor::Start);
                y += line;
                current = word.to_owned();
            } else {
                current = candidate;
            }
        }
        if !current.is_empty() {
            self.text(current, px, x, y, Anchor::Start);
            y += line;
        }
        y
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::render::RenderError;
    use image::RgbaImage;
    use ndarray::Array2;

    const INK: [u8; 4] = [0x22, 0x22, 0x22, 255];
    const WHITE: [u8; 4] = [255, 255, 255, 255];

    /// The pixels of `img` that are not white, as (x, y).
    fn ink(img: &RgbaImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 != WHITE)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn a_centred_text_lands_on_the_left_edge_it_was_centred_from() {
        // "key" at 12 px is 21 pixels wide (odd): centred from left 7, its anchor is 17.5, and
        // the PNG draws it exactly where a text starting at 7 is drawn. Upward, centred on a
        // box whose top is 5, it is drawn where a text ending (reading up) at 5 is.
        let w = text::text_width("key", 12.0);
        assert_eq!(w % 2, 1, "the case of interest is an odd width ({w})");
        let draw = |t: Text| {
            let mut scene = Scene::new(60.0, 60.0);
            scene.label(t.top(9.0));
            scene.png(1).unwrap()
        };
        let centred = draw(Text::centred("key", 12.0, 7, u64::from(w)));
        let started = draw(Text::new("key", 12.0, 7.0, 0.0));
        assert_eq!(centred, started);
        assert!(!ink(&centred).is_empty());
        let up = |y: f32, anchor: Anchor| {
            let mut scene = Scene::new(60.0, 60.0);
            scene.label(Text::new("key", 12.0, 9.0, y).anchor(anchor).up());
            scene.png(1).unwrap()
        };
        let middle = up(5.0 + w as f32 / 2.0, Anchor::Middle);
        assert_eq!(middle, up(5.0, Anchor::End));
        assert_eq!(middle, up(5.0 + w as f32, Anchor::Start));
        // The upward text's ink lies inside its box: 12 px wide from x 9, w tall from y 5.
        for (x, y) in ink(&middle) {
            assert!(
                (9..21).contains(&x) && (5..5 + w).contains(&y),
                "({x}, {y})"
            );
        }
    }

    #[test]
    fn rects_frames_and_lines_snap_to_whole_pixels() {
        let mut scene = Scene::new(20.0, 20.0);
        // A frame 2 units thick around a 4 x 3 area at (5, 6): 8 x 7 outside, minus the inside.
        scene.frame(Area::new(5.0, 6.0, 4.0, 3.0), 2.0, INK);
        // A tick mark: a line 1 unit thick centred half a pixel below row 15 covers row 15.
        scene.line((2.0, 15.5), (6.0, 15.5), 1.0, INK);
        // Nothing is drawn for a rectangle without width (a bar of value 0).
        scene.fill(Area::new(12.0, 12.0, 0.0, 5.0), INK);
        let img = scene.png(1).unwrap();
        let mut want: Vec<(u32, u32)> = (4..11)
            .flat_map(|y| (3..11).map(move |x| (x, y)))
            .filter(|&(x, y)| !((5..9).contains(&x) && (6..9).contains(&y)))
            .collect();
        want.extend((2..6).map(|x| (x, 15)));
        want.sort_unstable();
        let mut got = ink(&img);
        got.sort_unstable();
        assert_eq!(got, want);
        // At scale 2 every length doubles.
        let two = scene.png(2).unwrap();
        assert_eq!(two.dimensions(), (40, 40));
        assert_eq!(ink(&two).len(), 4 * got.len());
    }

    #[test]
    fn slanted_lines_and_discs_are_drawn_anti_aliased() {
        let red = [200, 0, 0, 255];
        let mut scene = Scene::new(40.0, 40.0);
        // From (5, 5) to (25, 25), 2 units wide; a disc of radius 4 around (32, 8).
        scene.line((5.0, 5.0), (25.0, 25.0), 2.0, red);
        scene.disc((32.0, 8.0), 4.0, red);
        for scale in [1u32, 2] {
            let img = scene.png(scale).unwrap();
            let at = |x: f32, y: f32| {
                let s = scale as f32;
                img.get_pixel((x * s) as u32, (y * s) as u32).0
            };
            // On the line's middle and the disc's centre: the colour; 3 units across the
            // line, past the ends, and outside the disc: white.
            assert_eq!(at(15.0, 15.0), red);
            assert_eq!(at(32.0, 8.0), red);
            assert_eq!(at(17.5, 12.5), WHITE, "3.5 units across the line");
            assert_eq!(at(27.5, 27.5), WHITE, "past the end");
            assert_eq!(at(37.5, 8.0), WHITE, "outside the disc");
            // The edges blend: some pixels are neither white nor the colour.
            assert!(img.pixels().any(|p| p.0 != WHITE && p.0 != red));
        }
        let svg = scene.svg().unwrap();
        assert!(svg.contains("<line x1=\"5\" y1=\"5\" x2=\"25\" y2=\"25\" stroke=\"#c80000\""));
        assert!(svg.contains("<circle cx=\"32\" cy=\"8\" r=\"4\" fill=\"#c80000\"/>"));
    }

    #[test]
    fn the_svg_writes_each_element_once_at_the_same_coordinates() {
        let m = Array2::from_shape_fn((2, 3), |(q, k)| (q * 3 + k) as f32);
        let mut scene = Scene::new(40.5, 30.0);
        scene.fill(Area::new(1.0, 2.0, 3.0, 4.0), [255, 0, 0, 255]);
        scene.frame(Area::new(10.0, 10.0, 5.0, 5.0), 1.0, INK);
        scene.line((0.0, 0.5), (4.0, 0.5), 1.0, INK);
        scene.label(Text::new("a<b", 12.0, 20.0, 3.0).anchor(Anchor::End));
        scene.label(Text::new("up", 11.0, 4.0, 28.0).up());
        scene.gradient(
            Area::new(30.0, 0.0, 4.0, 20.0),
            Colormap::Magma,
            Toward::Up,
            "bar",
        );
        scene.gradient(
            Area::new(0.0, 25.0, 8.0, 2.0),
            Colormap::Hot,
            Toward::Right,
            "bar",
        );
        let raster = Raster {
            m: m.view(),
            masked: None,
            colormap: Colormap::Grays,
            range: ValueRange { min: 0.0, max: 5.0 },
            scale: ValueScale::Linear,
            kind: RasterKind::Cells { cell: 2 },
        };
        scene.image(Area::new(0.0, 10.0, 6.0, 4.0), raster);
        let svg = scene.svg().unwrap();
        assert!(
            svg.contains("width=\"41\" height=\"30\""),
            "whole units, rounded up"
        );
        assert!(svg.contains("<rect x=\"1\" y=\"2\" width=\"3\" height=\"4\" fill=\"#ff0000\"/>"));
        assert!(svg.contains(
            "<rect x=\"9.5\" y=\"9.5\" width=\"6\" height=\"6\" fill=\"none\" stroke=\"#222222\" \
             stroke-width=\"1\"/>"
        ));
        assert!(svg.contains("<line x1=\"0\" y1=\"0.5\" x2=\"4\" y2=\"0.5\""));
        assert!(svg.contains("text-anchor=\"end\">a&lt;b</text>"));
        assert!(svg.contains("rotate(-90)") && svg.contains(">up</text>"));
        // Two gradients of one name get two ids; each rect fills with its own.
        assert!(svg.contains("id=\"bar\"") && svg.contains("id=\"bar-1\""));
        assert!(svg.contains("fill=\"url(#bar)\"") && svg.contains("fill=\"url(#bar-1)\""));
        // Six cells of six different values: six rects of 2 x 2 units (6 / 3 by 4 / 2).
        assert_eq!(svg.matches("width=\"2\" height=\"2\"").count(), 6);
        // An empty scene too large for the side limit is refused, not written.
        let huge = Scene::new(40_000.0, 10.0);
        assert!(matches!(huge.svg(), Err(RenderError::TooLarge { .. })));
        assert!(matches!(huge.png(1), Err(RenderError::TooLarge { .. })));
    }
}
