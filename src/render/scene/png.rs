//! The raster backend: a [`Scene`] drawn into an [`RgbaImage`].
//!
//! Rectangles snap their edges to the nearest pixel (at least one pixel wide when they have any
//! width at all); texts are placed by their anchor and then rounded to whole pixels, so a
//! text centred as `left + width / 2` lands exactly on `left`; frames are four rectangles
//! just outside their area; lines are the rectangles their stroke covers. Map cells and grid
//! thumbnails are painted straight into the figure.

use image::{Rgba, RgbaImage};

use super::{Anchor, Area, Direction, Element, Raster, RasterKind, Scene, Text, Toward};
use crate::render::colormap::colorbar_image;
use crate::render::heatmap::{Normalizer, Target, paint_cells, try_heatmap_image};
use crate::render::layout::{MAX_PIXEL_SCALE, Rect, fill_rect};
use crate::render::pool::paint_thumbnail;
use crate::render::text::{self, Mask, Orientation};
use crate::render::{RenderError, checked_figure_size};

/// White, every figure's background.
const BACKGROUND: Rgba<u8> = Rgba([255, 255, 255, 255]);

impl Scene<'_> {
    /// The scene drawn at `scale` pixels per unit (1 to
    /// [`MAX_PIXEL_SCALE`](crate::render::figure::MAX_PIXEL_SCALE)), on white.
    ///
    /// Errors: [`RenderError::TooLarge`] or [`RenderError::TooManyPixels`] when the image would
    /// exceed the side limit or the pixel budget (checked before allocating).
    pub(crate) fn png(&self, scale: u32) -> Result<RgbaImage, RenderError> {
        let s = scale.clamp(1, MAX_PIXEL_SCALE) as f32;
        let (width, height) = checked_figure_size(
            (self.width * s).ceil() as u64,
            (self.height * s).ceil() as u64,
        )?;
        // A scene that is only a map's cells is the cells' own image (no background to fill).
        if let [Element::Image { area, raster }] = self.items.as_slice()
            && let RasterKind::Cells { cell } = raster.kind
            && (area.x, area.y) == (0.0, 0.0)
            && raster.size() == (u64::from(width), u64::from(height))
        {
            let r = raster;
            return try_heatmap_image(r.m, r.masked, r.colormap, r.range, r.scale, cell);
        }
        let mut img = RgbaImage::from_pixel(width, height, BACKGROUND);
        for item in &self.items {
            draw(&mut img, item, s);
        }
        Ok(img)
    }
}

/// The whole pixels `area` covers at `s` pixels per unit; `None` when it has no width or height.
fn pixels(area: Area, s: f32) -> Option<Rect> {
    if !(area.w > 0.0 && area.h > 0.0) {
        return None;
    }
    let (x0, y0) = ((area.x * s).round(), (area.y * s).round());
    let (x1, y1) = (
        ((area.x + area.w) * s).round(),
        ((area.y + area.h) * s).round(),
    );
    Some(Rect {
        x: x0.max(0.0) as u64,
        y: y0.max(0.0) as u64,
        w: (x1 - x0).max(1.0) as u64,
        h: (y1 - y0).max(1.0) as u64,
    })
}

/// Draws one element at `s` pixels per unit.
fn draw(img: &mut RgbaImage, item: &Element<'_>, s: f32) {
    match item {
        Element::Rect { area, fill } => {
            if let Some(rect) = pixels(*area, s) {
                fill_rect(img, rect, Rgba(*fill));
            }
        }
        Element::Frame { area, stroke } => {
            if let Some(rect) = pixels(*area, s) {
                let line = (stroke.width * s).round().max(1.0) as u64;
                frame(img, rect, line, Rgba(stroke.color));
            }
        }
        Element::Line { from, to, stroke } if from.0 != to.0 && from.1 != to.1 => {
            segment(img, *from, *to, stroke.width, stroke.color, s);
        }
        Element::Line { from, to, stroke } => {
            let (width, half) = (stroke.width, stroke.width / 2.0);
            let area = if from.1 == to.1 {
                Area::new(
                    from.0.min(to.0),
                    from.1 - half,
                    (to.0 - from.0).abs(),
                    width,
                )
            } else {
                Area::new(
                    from.0 - half,
                    from.1.min(to.1),
                    width,
                    (to.1 - from.1).abs(),
                )
            };
            if let Some(rect) = pixels(area, s) {
                fill_rect(img, rect, Rgba(stroke.color));
            }
        }
        Element::Disc {
            centre,
            radius,
            fill,
        } => disc(img, *centre, *radius, *fill, s),
        Element::Text(t) => draw_text(img, t, s),
        Element::Gradient {
            area,
            colormap,
            toward,
            ..
        } => {
            let Some(r) = pixels(*area, s) else { return };
            match toward {
                Toward::Up => {
                    // Inside the checked image, so the sides fit in u32.
                    let gradient = colorbar_image(*colormap, r.w as u32, r.h as u32);
                    image::imageops::replace(img, &gradient, r.x as i64, r.y as i64);
                }
                Toward::Right => {
                    let last = (r.w.max(2) - 1) as f32;
                    for dx in 0..r.w {
                        let color = Rgba(colormap.color(dx as f32 / last));
                        let column = Rect {
                            x: r.x + dx,
                            w: 1,
                            ..r
                        };
                        fill_rect(img, column, color);
                    }
                }
            }
        }
        Element::Image { area, raster } => draw_raster(img, *area, raster, s),
    }
}

/// Paints a raster at its own resolution with its top-left corner at `area`'s; a raster that
/// would not fit inside the image is skipped (layouts size the figure to hold it).
fn draw_raster(img: &mut RgbaImage, area: Area, r: &Raster<'_>, s: f32) {
    let (x, y) = ((area.x * s).round().max(0.0), (area.y * s).round().max(0.0));
    let (x, y) = (x as u64, y as u64);
    let (w, h) = r.size();
    if r.m.is_empty() || x + w > u64::from(img.width()) || y + h > u64::from(img.height()) {
        return;
    }
    let (x, y) = (x as usize, y as usize);
    match r.kind {
        RasterKind::Cells { cell } => {
            let cell = cell as usize;
            paint_cells(img, x, y, r.m, r.masked, r.colormap, r.range, r.scale, cell);
        }
        RasterKind::Thumbnail { side } => {
            let norm = Normalizer::new(r.range, r.scale);
            let masked = r.masked.filter(|mask| mask.dim() == r.m.dim());
            let lut = r.colormap.lut();
            let target = Target::new(img, x, y);
            paint_thumbnail(target, r.m, masked, side as usize, r.colormap, lut, &norm);
        }
    }
}

/// Draws a text: its drawn box placed by its anchor, then rounded to whole pixels.
fn draw_text(img: &mut RgbaImage, t: &Text, s: f32) {
    let px = t.px * s;
    let mask = Mask::render(&t.content, px);
    let w = text::text_width(&t.content, px) as f32;
    let before = match t.anchor {
        Anchor::Start => 0.0,
        Anchor::Middle => w / 2.0,
        Anchor::End => w,
    };
    let (left, top, orientation) = match t.direction {
        Direction::Right => (t.x * s - before, t.y * s, Orientation::Horizontal),
        // Reading upward, the text starts at the bottom of its box.
        Direction::Up => (t.x * s, t.y * s - (w - before), Orientation::Up),
    };
    text::draw_mask(
        img,
        &mask,
        left.round() as i64,
        top.round() as i64,
        orientation,
        t.color,
    );
}

/// Blends `color` into the pixel at (`x`, `y`) with coverage `a` in [0, 1], if it is inside.
fn blend(img: &mut RgbaImage, x: i64, y: i64, color: [u8; 4], a: f32) {
    if a <= 0.0 || x < 0 || y < 0 || x >= i64::from(img.width()) || y >= i64::from(img.height()) {
        return;
    }
    let a = a.min(1.0) * f32::from(color[3]) / 255.0;
    let pixel = img.get_pixel_mut(x as u32, y as u32);
    for (dst, &src) in pixel.0.iter_mut().zip(&color[..3]) {
        let blended = f32::from(*dst) * (1.0 - a) + f32::from(src) * a;
        *dst = blended.round().clamp(0.0, 255.0) as u8;
    }
}

/// The pixels within `reach` pixels of the box spanned by `a` and `b` (pixel coordinates),
/// clipped to the image: `(x0, x1, y0, y1)`, half-open.
fn span(img: &RgbaImage, a: (f32, f32), b: (f32, f32), reach: f32) -> (i64, i64, i64, i64) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    let clip = |v: f32, hi: i64| (v as i64).clamp(0, hi);
    (
        clip((a.0.min(b.0) - reach).floor(), w),
        clip((a.0.max(b.0) + reach).ceil() + 1.0, w),
        clip((a.1.min(b.1) - reach).floor(), h),
        clip((a.1.max(b.1) + reach).ceil() + 1.0, h),
    )
}

/// An anti-aliased segment `width` units wide from `from` to `to` (units, at `s` pixels per
/// unit): each pixel covered by how far its centre lies inside the stroke, with flat ends.
/// Strokes thinner than a pixel are drawn one pixel wide and fainter.
fn segment(img: &mut RgbaImage, from: (f32, f32), to: (f32, f32), width: f32, c: [u8; 4], s: f32) {
    let (a, b) = ((from.0 * s, from.1 * s), (to.0 * s, to.1 * s));
    let w = width * s;
    let (half, faint) = if w < 1.0 {
        (0.5, w.max(0.0))
    } else {
        (w / 2.0, 1.0)
    };
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt();
    if !(len > 0.0 && len.is_finite()) {
        return;
    }
    let (ux, uy) = (dx / len, dy / len);
    let (x0, x1, y0, y1) = span(img, a, b, half + 1.0);
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5 - a.0, y as f32 + 0.5 - a.1);
            let along = px * ux + py * uy;
            let across = (px * uy - py * ux).abs();
            let cover_across = (half + 0.5 - across).clamp(0.0, 1.0);
            let cover_along = (along + 0.5).min(len + 0.5 - along).clamp(0.0, 1.0);
            blend(img, x, y, c, cover_across * cover_along * faint);
        }
    }
}

/// An anti-aliased disc of `radius` units around `centre`, at `s` pixels per unit.
fn disc(img: &mut RgbaImage, centre: (f32, f32), radius: f32, c: [u8; 4], s: f32) {
    let (cx, cy, r) = (centre.0 * s, centre.1 * s, radius * s);
    let (x0, x1, y0, y1) = span(img, (cx, cy), (cx, cy), r + 1.0);
    for y in y0..y1 {
        for x in x0..x1 {
            let d = ((x as f32 + 0.5 - cx).powi(2) + (y as f32 + 0.5 - cy).powi(2)).sqrt();
            blend(img, x, y, c, r + 0.5 - d);
        }
    }
}

/// A `line`-pixel frame just outside `rect`.
fn frame(img: &mut RgbaImage, rect: Rect, line: u64, color: Rgba<u8>) {
    let outer = Rect {
        x: rect.x.saturating_sub(line),
        y: rect.y.saturating_sub(line),
        w: rect.w + 2 * line,
        h: rect.h + 2 * line,
    };
    for side in [
        Rect { h: line, ..outer },
        Rect {
            y: rect.y + rect.h,
            h: line,
            ..outer
        },
        Rect { w: line, ..outer },
        Rect {
            x: rect.x + rect.w,
            w: line,
            ..outer
        },
    ] {
        fill_rect(img, side, color);
    }
}
