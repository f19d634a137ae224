//! The SVG backend: a [`Scene`] written as an SVG document for papers and slides, with vector
//! text (DejaVu Sans by name, the PNG's font, then sans-serif; sizes and baselines from the same
//! font metrics), vector gradients, and map cells as one rectangle per run of equal cells for
//! small maps or an embedded PNG (as matplotlib does for images) for larger ones. SVG units are
//! scene units (CSS pixels).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use image::RgbaImage;

use super::{Anchor, Area, Direction, Element, Raster, RasterKind, Scene, Text, Toward};
use crate::render::colormap::Colormap;
use crate::render::heatmap::{Masked, Normalizer, try_heatmap_image};
use crate::render::pool::thumbnail_image;
use crate::render::text;
use crate::render::{RenderError, checked_size, encode_png};

/// Maps with at most this many cells are written as rectangles (merged along rows), larger ones
/// as an embedded PNG.
pub const MAX_RECT_CELLS: usize = 64 * 64;

/// Number of stops of a vector gradient (evenly spaced samples of the colormap).
const GRADIENT_STOPS: usize = 33;

impl Scene<'_> {
    /// The scene as an SVG document, one unit per CSS pixel, on white.
    ///
    /// Errors: [`RenderError::TooLarge`] beyond the side limit; an embedded raster's errors.
    pub(crate) fn svg(&self) -> Result<String, RenderError> {
        let (w, h) = (self.width.ceil() as u64, self.height.ceil() as u64);
        checked_size(w, h)?;
        let mut out = String::new();
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" \
             xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" \
             width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        let ids = gradients(&self.items, &mut out);
        for item in &self.items {
            match item {
                Element::Rect { area, fill } => rect(&mut out, *area, *fill),
                Element::Frame { area, stroke } => {
                    let width = stroke.width;
                    let _ = writeln!(
                        out,
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" \
                         stroke=\"{}\" stroke-width=\"{}\"/>",
                        num(area.x - width / 2.0),
                        num(area.y - width / 2.0),
                        num(area.w + width),
                        num(area.h + width),
                        hex(stroke.color),
                        num(width)
                    );
                }
                Element::Line { from, to, stroke } => {
                    let _ = writeln!(
                        out,
                        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" \
                         stroke-width=\"{}\"/>",
                        num(from.0),
                        num(from.1),
                        num(to.0),
                        num(to.1),
                        hex(stroke.color),
                        num(stroke.width)
                    );
                }
                Element::Disc {
                    centre,
                    radius,
                    fill,
                } => {
                    let _ = writeln!(
                        out,
                        "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"{}\"/>",
                        num(centre.0),
                        num(centre.1),
                        num(*radius),
                        hex(*fill)
                    );
                }
                Element::Text(t) => write_text(&mut out, t),
                Element::Gradient {
                    area,
                    colormap,
                    toward,
                    id,
                } => {
                    let id = ids
                        .get(&(*id, *colormap, *toward))
                        .map_or(*id, String::as_str);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#{id})\"/>",
                        num(area.x),
                        num(area.y),
                        num(area.w),
                        num(area.h)
                    );
                }
                Element::Image { area, raster } => write_raster(&mut out, *area, raster)?,
            }
        }
        out.push_str("</svg>\n");
        Ok(out)
    }
}

/// Writes `<defs>` with each distinct gradient of `items` and returns their ids: the element's
/// own, or `id-N` for a second gradient of the same name.
fn gradients<'s>(
    items: &[Element<'s>],
    out: &mut String,
) -> HashMap<(&'static str, Colormap, Toward), String> {
    let mut ids: HashMap<(&'static str, Colormap, Toward), String> = HashMap::new();
    for item in items {
        let Element::Gradient {
            colormap,
            toward,
            id,
            ..
        } = item
        else {
            continue;
        };
        let key = (*id, *colormap, *toward);
        if ids.contains_key(&key) {
            continue;
        }
        let name = match ids.keys().filter(|k| k.0 == *id).count() {
            0 => (*id).to_owned(),
            n => format!("{id}-{n}"),
        };
        if ids.is_empty() {
            out.push_str("<defs>");
        }
        let (x2, y2) = match toward {
            // From the top: the colormap's last colour first.
            Toward::Up => (0, 1),
            Toward::Right => (1, 0),
        };
        let _ = writeln!(
            out,
            "<linearGradient id=\"{name}\" x1=\"0\" y1=\"0\" x2=\"{x2}\" y2=\"{y2}\">"
        );
        let last = (GRADIENT_STOPS - 1) as f32;
        for i in 0..GRADIENT_STOPS {
            let t = i as f32 / last;
            let c = match toward {
                Toward::Up => colormap.color(1.0 - t),
                Toward::Right => colormap.color(t),
            };
            let _ = writeln!(out, "<stop offset=\"{t:.4}\" stop-color=\"{}\"/>", hex(c));
        }
        out.push_str("</linearGradient>");
        ids.insert(key, name);
    }
    if !ids.is_empty() {
        out.push_str("</defs>\n");
    }
    ids
}

/// A filled rectangle.
fn rect(out: &mut String, area: Area, fill: [u8; 4]) {
    let _ = writeln!(
        out,
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"/>",
        num(area.x),
        num(area.y),
        num(area.w),
        num(area.h),
        hex(fill)
    );
}

/// A line of text: horizontal with its line box's top at `y`, or reading upward (rotated 90°
/// counter-clockwise) with its line box's left edge (the letters' tops) at `x`.
fn write_text(out: &mut String, t: &Text) {
    let (size, ascent) = text::svg_metrics(t.px);
    let anchor = match t.anchor {
        Anchor::Start => "start",
        Anchor::Middle => "middle",
        Anchor::End => "end",
    };
    let place = match t.direction {
        Direction::Right => format!("x=\"{}\" y=\"{}\"", num(t.x), num(t.y + ascent)),
        Direction::Up => format!(
            "transform=\"translate({} {}) rotate(-90)\"",
            num(t.x + ascent),
            num(t.y)
        ),
    };
    let _ = writeln!(
        out,
        "<text {place} font-family=\"DejaVu Sans, sans-serif\" font-size=\"{size:.2}\" \
         fill=\"{}\" text-anchor=\"{anchor}\">{}</text>",
        hex([t.color[0], t.color[1], t.color[2], 255]),
        escape(&t.content)
    );
}

/// A raster over `area`: a small map's cells as rectangles (runs of equal colour along a row
/// merged), anything else as an embedded PNG at the raster's own resolution.
fn write_raster(out: &mut String, area: Area, r: &Raster<'_>) -> Result<(), RenderError> {
    let (rows, cols) = r.m.dim();
    let image = match r.kind {
        RasterKind::Cells { .. } if rows * cols <= MAX_RECT_CELLS => {
            write_cells(out, area, r);
            return Ok(());
        }
        RasterKind::Cells { cell } => {
            try_heatmap_image(r.m, r.masked, r.colormap, r.range, r.scale, cell)?
        }
        RasterKind::Thumbnail { side } => {
            thumbnail_image(r.m, r.masked, side, r.colormap, r.range, r.scale)
        }
    };
    embed(out, &image, area)
}

/// The cells of `r` as rectangles over `area`, one per run of equal colour along a row.
fn write_cells(out: &mut String, area: Area, r: &Raster<'_>) {
    let (rows, cols) = r.m.dim();
    let (cw, ch) = (area.w / cols.max(1) as f32, area.h / rows.max(1) as f32);
    let norm = Normalizer::new(r.range, r.scale);
    let masked = Masked::new(r.masked, (rows, cols), r.colormap);
    let colour = |q: usize, k: usize| -> [u8; 4] {
        let v = r.m[(q, k)];
        match masked {
            Some(mask) if mask.is_masked(q, k) => mask.color(),
            _ if !v.is_finite() => r.colormap.non_finite_color(),
            _ => r.colormap.color(norm.apply(v)),
        }
    };
    for q in 0..rows {
        let mut k = 0;
        while k < cols {
            let c = colour(q, k);
            let mut end = k + 1;
            while end < cols && colour(q, end) == c {
                end += 1;
            }
            let run = Area::new(
                area.x + k as f32 * cw,
                area.y + q as f32 * ch,
                (end - k) as f32 * cw,
                ch,
            );
            rect(out, run, c);
            k = end;
        }
    }
}

/// `image` as an embedded PNG stretched over `area`, without smoothing.
fn embed(out: &mut String, image: &RgbaImage, area: Area) -> Result<(), RenderError> {
    let mut png = Vec::new();
    encode_png(image, &mut png)?;
    let _ = writeln!(
        out,
        "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" \
         image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" \
         xlink:href=\"data:image/png;base64,{}\"/>",
        num(area.x),
        num(area.y),
        num(area.w),
        num(area.h),
        base64(&png)
    );
    Ok(())
}

/// A coordinate: whole numbers as integers, others with one decimal.
fn num(v: f32) -> String {
    if v.fract() == 0.0 && v.abs() < 1e9 {
        format!("{}", v as i64)
    } else {
        format!("{v:.1}")
    }
}

/// `#rrggbb` of an RGBA colour (alpha is always opaque here).
fn hex(c: [u8; 4]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Writes `svg` to `path`, atomically (through [`crate::fs::write_atomic`]); errors name `path`.
pub fn write_svg(svg: &str, path: &Path) -> Result<(), RenderError> {
    crate::fs::write_atomic(path, |out| out.write_all(svg.as_bytes())).map_err(|err| {
        RenderError::Io {
            path: path.to_path_buf(),
            cause: match err {
                crate::fs::IoError::Write { cause, .. } => cause,
                other => std::io::Error::other(other.to_string()),
            },
        }
    })
}

/// `text` with XML's special characters escaped, and control characters (not allowed in XML
/// 1.0) replaced by spaces, as the PNG draws them.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 (RFC 4648, with padding) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Decodes standard base64 (test helper, the inverse of [`base64`]).
    pub(crate) fn unbase64(text: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(4) {
            let pad = chunk.iter().filter(|&&c| c == b'=').count();
            let n = chunk
                .iter()
                .map(|&c| if c == b'=' { 0 } else { u32::from(value(c)) })
                .fold(0u32, |acc, v| (acc << 6) | v);
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&bytes[..3 - pad]);
        }
        out
    }

    #[test]
    fn base64_matches_rfc_4648() {
        // RFC 4648 section 10 test vectors.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unbase64(&base64(&bytes)), bytes);
    }

    #[test]
    fn text_is_escaped_for_xml() {
        assert_eq!(
            escape("a<b & \"c\" 'd'>"),
            "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;"
        );
        assert_eq!(escape("x\u{0}\ny"), "x  y");
        assert_eq!(escape("␣the ↵"), "␣the ↵");
    }
}
