//! A figure laid out once as rectangles and text lines, drawn to PNG or written as SVG from
//! the same coordinates.

use super::layout::MARGIN;
use super::*;
use crate::render::figure::{Rect, fill_rect};
use crate::render::svg::escape;
use crate::render::text::{self, Mask, Orientation};
use crate::render::{RenderError, checked_figure_size};
use image::{Rgba, RgbaImage};
use std::fmt::Write as _;

/// How a text line is placed relative to its x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Align {
    Start,
    End,
}

/// One drawable item, in logical pixels (× pixel_scale in a PNG).
#[derive(Clone, Debug)]
pub(super) enum Item {
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
pub(super) struct Scene {
    pub(super) width: f32,
    pub(super) height: f32,
    pub(super) items: Vec<Item>,
}

impl Scene {
    pub(super) fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, fill: [u8; 4]) {
        self.items.push(Item::Rect { x, y, w, h, fill });
        self.grow(x + w, y + h);
    }

    pub(super) fn text(
        &mut self,
        text: impl Into<String>,
        px: f32,
        x: f32,
        top: f32,
        align: Align,
    ) {
        self.text_colored(text, px, x, top, align, TEXT_DARK);
    }

    pub(super) fn text_colored(
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

    pub(super) fn grow(&mut self, right: f32, bottom: f32) {
        self.width = self.width.max(right);
        self.height = self.height.max(bottom);
    }

    /// Wraps `text` into lines no wider than `width` at `px`, from `top`; returns the y below.
    pub(super) fn paragraph(&mut self, text: &str, px: f32, x: f32, top: f32, width: f32) -> f32 {
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

    pub(super) fn png(&self, pixel_scale: u32) -> Result<RgbaImage, RenderError> {
        let s = pixel_scale.clamp(1, crate::render::figure::MAX_PIXEL_SCALE) as f32;
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

    pub(super) fn svg(&self) -> Result<String, RenderError> {
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
