//! SVG figures for papers: the labelled heatmap (and the grid) with vector text, axis titles,
//! colorbar and legend, and the cells as an embedded PNG raster, as matplotlib does for images,
//! or as one rectangle per run of equal cells for small maps.
//!
//! The geometry is the PNG figure's own layout (`figure::Layout`, `grid::GridLayout`) at pixel
//! scale 1, so an SVG and a PNG of the same options line up; SVG units are those pixels. The
//! embedded raster is drawn by the same pixel path as the PNG (`heatmap_image_masked`,
//! `thumbnail_image`), at the options' pixel scale, so `pixel_scale` sharpens the raster without
//! changing the figure's size. Text uses DejaVu Sans (the PNG's font) by name, with sans-serif
//! as the fallback; sizes and baselines come from the same font metrics.

use std::fmt::Write as _;
use std::path::Path;

use image::RgbaImage;
use ndarray::ArrayView2;

use super::colormap::Colormap;
use super::figure::{Colorbar, FigureOptions, Layout, MASKED_LEGEND};
use super::grid::{GridLayout, GridOptions, caption, thumbnail_image};
use super::heatmap::{Masked, Normalizer};
use super::text::{self, TEXT_COLOR};
use super::{RenderError, checked_size, encode_png};

/// Maps with at most this many cells are written as rectangles (merged along rows), larger ones
/// as an embedded PNG.
pub const MAX_RECT_CELLS: usize = 64 * 64;

/// Number of stops of the colorbar's vector gradient (evenly spaced samples of the colormap).
const GRADIENT_STOPS: usize = 33;

/// `FigureOptions` at pixel scale 1: the SVG's layout.
fn logical(opts: &FigureOptions) -> FigureOptions {
    FigureOptions {
        pixel_scale: 1,
        ..opts.clone()
    }
}

/// Writes a labelled heatmap of `m` (shape `[query, key]`) as an SVG document: the PNG figure
/// of [`heatmap_figure`](super::heatmap_figure) with vector text (title, axis titles "query" and
/// "key", token labels, tick values, the "masked" legend) and a vector colorbar. Cells are
/// rectangles when the map has at most [`MAX_RECT_CELLS`] cells, else one embedded PNG (the
/// PNG figure's cells at `cell_px × pixel_scale` pixels each). With `opts.labels == false` the
/// SVG holds only the cells.
///
/// Errors: as [`heatmap_figure`](super::heatmap_figure) (empty matrix, too large).
pub fn heatmap_svg(m: ArrayView2<f32>, opts: &FigureOptions) -> Result<String, RenderError> {
    let (rows, cols) = m.dim();
    if rows == 0 || cols == 0 {
        return Err(RenderError::Empty);
    }
    let raster_cell = opts.cell_pixels();
    checked_size(cols as u64 * raster_cell, rows as u64 * raster_cell)?;
    let flat = logical(opts);
    let cell = flat.cell_pixels();
    let mut svg = Svg::default();
    if !opts.labels {
        let (w, h) = (cols as u64 * cell, rows as u64 * cell);
        svg.open(w, h);
        cells(&mut svg, m, opts, (0, 0), cell)?;
        return Ok(svg.close());
    }
    let layout = Layout::new(rows, cols, &flat);
    checked_size(layout.width, layout.height)?;
    svg.open(layout.width, layout.height);
    svg.gradient(opts.colormap);
    if !opts.title.is_empty() {
        let x = layout.width as f32 / 2.0;
        svg.text(
            &opts.title,
            layout.title_px,
            x,
            layout.title_y as f32,
            Anchor::Middle,
        );
    }
    let (kx, ky) = layout.key_title;
    let key_w = text::text_width("key", layout.axis_px) as f32;
    svg.text(
        "key",
        layout.axis_px,
        kx as f32 + key_w / 2.0,
        ky as f32,
        Anchor::Middle,
    );
    let (qx, qy) = layout.query_title;
    let query_w = text::text_width("query", layout.axis_px) as f32;
    // The PNG's upward title occupies a box `line` wide and `query_w` tall at (qx, qy).
    svg.text_up(
        "query",
        layout.axis_px,
        qx as f32,
        qy as f32 + query_w / 2.0,
        Anchor::Middle,
    );
    let half_line = layout.label_line as f32 / 2.0;
    let half_cell = layout.cell as f32 / 2.0;
    for label in &layout.query_labels {
        let center = (layout.cells.y + label.index as u64 * layout.cell) as f32 + half_cell;
        let right = (layout.cells.x - layout.label_gap) as f32;
        svg.text(
            &label.text,
            layout.label_px,
            right,
            center - half_line,
            Anchor::End,
        );
    }
    for label in &layout.key_labels {
        let center = (layout.cells.x + label.index as u64 * layout.cell) as f32 + half_cell;
        let bottom = (layout.cells.y - layout.label_gap) as f32;
        svg.text_up(
            &label.text,
            layout.label_px,
            center - half_line,
            bottom,
            Anchor::Start,
        );
    }
    cells(&mut svg, m, opts, (layout.cells.x, layout.cells.y), cell)?;
    svg.colorbar(&layout.colorbar, opts.colormap);
    Ok(svg.close())
}

/// Writes the cells of `m` at `origin`, `cell` units each: rectangles for small maps, else an
/// embedded PNG at the options' pixel scale.
fn cells(
    svg: &mut Svg,
    m: ArrayView2<f32>,
    opts: &FigureOptions,
    origin: (u64, u64),
    cell: u64,
) -> Result<(), RenderError> {
    let (rows, cols) = m.dim();
    let masked = opts.masked_view(rows, cols);
    if rows * cols <= MAX_RECT_CELLS {
        let norm = Normalizer::new(opts.range, opts.scale);
        let masked = Masked::new(masked, (rows, cols), opts.colormap);
        let colour = |q: usize, k: usize| -> [u8; 4] {
            match masked {
                Some(mask) if mask.is_masked(q, k) => mask.color(),
                _ => opts.colormap.color(norm.apply(m[(q, k)])),
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
                svg.rect(
                    origin.0 + k as u64 * cell,
                    origin.1 + q as u64 * cell,
                    (end - k) as u64 * cell,
                    cell,
                    c,
                );
                k = end;
            }
        }
        return Ok(());
    }
    let raster_cell = u32::try_from(opts.cell_pixels()).unwrap_or(u32::MAX);
    let image = super::heatmap::try_heatmap_image(
        m,
        masked,
        opts.colormap,
        opts.range,
        opts.scale,
        raster_cell,
    )?;
    svg.image(&image, origin, (cols as u64 * cell, rows as u64 * cell))?;
    Ok(())
}

/// Writes the grid of [`grid_figure`](super::grid_figure) as an SVG document: vector title,
/// input text, captions, KV brackets, colorbar and legend; each thumbnail an embedded PNG (the
/// very [`thumbnail_image`](super::thumbnail_image), at `thumb_px × pixel_scale` pixels).
/// Without labels, only the thumbnails.
///
/// Errors: as [`grid_figure`](super::grid_figure).
pub fn grid_svg(maps: &[Vec<ArrayView2<f32>>], opts: &GridOptions) -> Result<String, RenderError> {
    let (n_layers, n_heads, masked) = super::grid::grid_shape(maps, opts)?;
    let flat = GridOptions {
        pixel_scale: 1,
        ..opts.clone()
    };
    let layout = GridLayout::new(n_layers, n_heads, &flat, masked.is_some());
    checked_size(layout.width, layout.height)?;
    let raster = u32::try_from(u64::from(opts.thumb_px.max(1)) * opts.s()).unwrap_or(u32::MAX);
    let mut svg = Svg::default();
    svg.open(layout.width, layout.height);
    svg.gradient(opts.colormap);
    if let Some((_, y)) = layout.title_pos {
        let x = layout.width as f32 / 2.0;
        svg.text(&opts.title, layout.title_px, x, y as f32, Anchor::Middle);
    }
    if let Some((_, y, line)) = &layout.text_line {
        let x = layout.width as f32 / 2.0;
        svg.text(line, layout.text_px, x, *y as f32, Anchor::Middle);
    }
    let label_h = u64::from(text::line_height(layout.caption_px));
    let stroke_y = layout.bracket_top + label_h + 2 * layout.line;
    let ink = [TEXT_COLOR[0], TEXT_COLOR[1], TEXT_COLOR[2], 255];
    for b in &layout.brackets {
        let cx = (b.left + b.right) as f32 / 2.0;
        svg.text(
            &b.label,
            layout.caption_px,
            cx,
            layout.bracket_top as f32,
            Anchor::Middle,
        );
        svg.rect(b.left, stroke_y, b.right - b.left, layout.line, ink);
        for x in [b.left, b.right.saturating_sub(layout.line)] {
            svg.rect(x, stroke_y, layout.line, 5 * layout.line, ink);
        }
    }
    for (layer, layer_maps) in maps.iter().enumerate() {
        for head in 0..n_heads {
            let (x, y) = layout.thumb_origin(layer, head);
            if opts.labels {
                let cx = (x + layout.thumb / 2) as f32;
                let top = (y - layout.caption_h) as f32;
                svg.text(
                    &caption(layer, head),
                    layout.caption_px,
                    cx,
                    top,
                    Anchor::Middle,
                );
            }
            match layer_maps.get(head) {
                Some(m) if !m.is_empty() => {
                    let range = opts.head_range(*m);
                    let head_mask = masked.filter(|mask| mask.dim() == m.dim());
                    let image =
                        thumbnail_image(*m, head_mask, raster, opts.colormap, range, opts.scale);
                    svg.image(&image, (x, y), (layout.thumb, layout.thumb))?;
                }
                _ => svg.rect(x, y, layout.thumb, layout.thumb, [0xe4, 0xe4, 0xe4, 255]),
            }
        }
    }
    if let Some(bar) = &layout.colorbar {
        svg.colorbar(bar, opts.colormap);
    }
    Ok(svg.close())
}

/// Writes `svg` to `path`, atomically (through [`crate::io::write_atomic`]); errors name `path`.
pub fn write_svg(svg: &str, path: &Path) -> Result<(), RenderError> {
    crate::io::write_atomic(path, |out| out.write_all(svg.as_bytes())).map_err(|err| {
        RenderError::Io {
            path: path.to_path_buf(),
            cause: match err {
                crate::io::IoError::Write { cause, .. } => cause,
                other => std::io::Error::other(other.to_string()),
            },
        }
    })
}

/// How a text is placed relative to its x coordinate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// An SVG document being written.
#[derive(Default)]
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    /// Starts a document `width` x `height` units (CSS pixels) with a white background.
    pub(crate) fn open(&mut self, width: u64, height: u64) {
        let _ = write!(
            self.out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" \
             xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" \
             width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
    }

    /// Ends the document and returns it.
    pub(crate) fn close(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }

    /// Defines the colorbar gradient `colorbar` (top: the colormap's last colour).
    pub(crate) fn gradient(&mut self, colormap: Colormap) {
        self.out.push_str(
            "<defs><linearGradient id=\"colorbar\" x1=\"0\" y1=\"0\" x2=\"0\" y2=\"1\">\n",
        );
        let last = (GRADIENT_STOPS - 1) as f32;
        for i in 0..GRADIENT_STOPS {
            let t = i as f32 / last;
            let _ = writeln!(
                self.out,
                "<stop offset=\"{t:.4}\" stop-color=\"{}\"/>",
                hex(colormap.color(1.0 - t))
            );
        }
        self.out.push_str("</linearGradient></defs>\n");
    }

    /// A filled rectangle.
    pub(crate) fn rect(&mut self, x: u64, y: u64, w: u64, h: u64, fill: [u8; 4]) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{w}\" height=\"{h}\" fill=\"{}\"/>",
            hex(fill)
        );
    }

    /// `image` as an embedded PNG stretched over `size` units at `origin`, without smoothing.
    pub(crate) fn image(
        &mut self,
        image: &RgbaImage,
        origin: (u64, u64),
        size: (u64, u64),
    ) -> Result<(), RenderError> {
        let mut png = Vec::new();
        encode_png(image, &mut png)?;
        let _ = writeln!(
            self.out,
            "<image x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" preserveAspectRatio=\"none\" \
             image-rendering=\"optimizeSpeed\" style=\"image-rendering:pixelated\" \
             xlink:href=\"data:image/png;base64,{}\"/>",
            origin.0,
            origin.1,
            size.0,
            size.1,
            base64(&png)
        );
        Ok(())
    }

    /// A horizontal line of text whose line box (as the PNG draws it, `px` high) has its top
    /// at `top`, placed at `x` by `anchor`.
    pub(crate) fn text(&mut self, content: &str, px: f32, x: f32, top: f32, anchor: Anchor) {
        let (size, ascent) = text::svg_metrics(px);
        let _ = writeln!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{:.1}\" font-family=\"DejaVu Sans, sans-serif\" \
             font-size=\"{size:.2}\" fill=\"{}\" text-anchor=\"{}\">{}</text>",
            top + ascent,
            hex_rgb(TEXT_COLOR),
            anchor.name(),
            escape(content)
        );
    }

    /// A line of text reading upward (rotated 90° counter-clockwise): its line box's left edge
    /// (the letters' tops) at `left`, and `y` the point `anchor` refers to along the line.
    pub(crate) fn text_up(&mut self, content: &str, px: f32, left: f32, y: f32, anchor: Anchor) {
        let (size, ascent) = text::svg_metrics(px);
        let _ = writeln!(
            self.out,
            "<text transform=\"translate({:.1} {y:.1}) rotate(-90)\" \
             font-family=\"DejaVu Sans, sans-serif\" font-size=\"{size:.2}\" fill=\"{}\" \
             text-anchor=\"{}\">{}</text>",
            left + ascent,
            hex_rgb(TEXT_COLOR),
            anchor.name(),
            escape(content)
        );
    }

    /// The colorbar: the gradient, its frame, tick marks and values, and the "masked" legend.
    pub(crate) fn colorbar(&mut self, bar: &Colorbar, colormap: Colormap) {
        let b = bar.bar;
        let line = bar.line as f32;
        let frame = |out: &mut String, x: u64, y: u64, w: u64, h: u64| {
            let _ = writeln!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" \
                 stroke=\"#888888\" stroke-width=\"{line}\"/>",
                x as f32 - line / 2.0,
                y as f32 - line / 2.0,
                w as f32 + line,
                h as f32 + line,
            );
        };
        let _ = writeln!(
            self.out,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"url(#colorbar)\"/>",
            b.x, b.y, b.w, b.h
        );
        frame(&mut self.out, b.x, b.y, b.w, b.h);
        let right = (b.x + b.w + bar.line) as f32;
        let half = text::line_height(bar.tick_px) as f32 / 2.0;
        for tick in &bar.ticks {
            let y = tick.y as f32 + 0.5;
            let _ = writeln!(
                self.out,
                "<line x1=\"{right}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" \
                 stroke-width=\"{line}\"/>",
                right + bar.tick_len as f32,
                hex_rgb(TEXT_COLOR)
            );
            self.text(
                &tick.text,
                bar.tick_px,
                bar.text_x() as f32,
                tick.y as f32 - half,
                Anchor::Start,
            );
        }
        if let Some(s) = bar.legend {
            self.rect(s.x, s.y, s.w, s.h, colormap.masked_color());
            frame(&mut self.out, s.x, s.y, s.w, s.h);
            let top = (s.y + s.h / 2) as f32 - half;
            self.text(
                MASKED_LEGEND,
                bar.tick_px,
                bar.text_x() as f32,
                top,
                Anchor::Start,
            );
        }
    }
}

/// `#rrggbb` of an RGBA colour (alpha is always opaque here).
fn hex(c: [u8; 4]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// `#rrggbb` of an RGB colour.
fn hex_rgb(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
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
mod tests {
    use super::*;
    use crate::render::heatmap::{ValueRange, ValueScale, heatmap_image_masked};
    use ndarray::Array2;

    /// Decodes standard base64 (test helper, the inverse of [`base64`]).
    fn unbase64(text: &str) -> Vec<u8> {
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

    fn causal(n: usize) -> (Array2<f32>, Array2<bool>) {
        let m = Array2::from_shape_fn(
            (n, n),
            |(q, k)| {
                if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 }
            },
        );
        (m, Array2::from_shape_fn((n, n), |(q, k)| k > q))
    }

    fn options(n: usize, masked: Option<Array2<bool>>) -> FigureOptions {
        FigureOptions {
            title: "layer 0 · head 1 · <demo> & co".to_owned(),
            query_labels: (0..n).map(|i| format!("q{i}")).collect(),
            key_labels: (0..n).map(|i| format!("k{i}")).collect(),
            cell_px: 10,
            masked,
            ..FigureOptions::default()
        }
    }

    /// The value of attribute `name` in each element `<tag ...>` of `svg`.
    fn attributes(svg: &str, tag: &str, name: &str) -> Vec<String> {
        svg.split(&format!("<{tag} "))
            .skip(1)
            .filter_map(|element| {
                let element = &element[..element.find('>').unwrap_or(element.len())];
                let element = format!(" {element}");
                let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
                let rest = element[start..].to_owned();
                rest.find('"').map(|end| rest[..end].to_owned())
            })
            .collect()
    }

    #[test]
    fn a_small_map_is_vector_text_and_rects() {
        let (m, masked) = causal(4);
        let svg = heatmap_svg(m.view(), &options(4, Some(masked))).unwrap();
        assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
        for text in [
            ">layer 0 · head 1 · &lt;demo&gt; &amp; co</text>",
            ">query</text>",
            ">key</text>",
            ">q3</text>",
            ">k2</text>",
            ">masked</text>",
            ">1.00</text>",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("<image"), "4x4 cells are rects");
        // Rows merge runs of equal colour: the masked cells of rows 0, 1 and 2 (three, two and
        // one cells) are one rect each, row 3 has none; plus the legend's swatch: 4 grey rects.
        let grey = hex(Colormap::Viridis.masked_color());
        let fills = attributes(&svg, "rect", "fill");
        let greys = fills.iter().filter(|f| **f == grey).count();
        assert_eq!(greys, 4, "{fills:?}");
        // The colorbar is a vector gradient, top colour first.
        assert!(svg.contains("fill=\"url(#colorbar)\""));
        let stops = attributes(&svg, "stop", "stop-color");
        assert_eq!(stops.len(), GRADIENT_STOPS);
        assert_eq!(stops[0], hex(Colormap::Viridis.color(1.0)));
        assert_eq!(stops[GRADIENT_STOPS - 1], hex(Colormap::Viridis.color(0.0)));
    }

    #[test]
    fn a_large_map_embeds_the_png_figures_cells() {
        let (m, masked) = causal(80);
        let opts = FigureOptions {
            cell_px: 3,
            pixel_scale: 2,
            ..options(80, Some(masked.clone()))
        };
        let svg = heatmap_svg(m.view(), &opts).unwrap();
        let hrefs = attributes(&svg, "image", "xlink:href");
        assert_eq!(hrefs.len(), 1);
        let data = hrefs[0].strip_prefix("data:image/png;base64,").unwrap();
        let png = image::load_from_memory(&unbase64(data)).unwrap().to_rgba8();
        // The raster is the PNG figure's cells at 3 × 2 pixels per cell.
        let expected = heatmap_image_masked(
            m.view(),
            Some(masked.view()),
            opts.colormap,
            ValueRange::unit(),
            ValueScale::Linear,
            6,
        );
        assert!(png == expected, "the embedded raster differs");
        // ... stretched over the logical cells (3 units each) at the PNG layout's place.
        let layout = Layout::new(80, 80, &logical(&opts));
        assert_eq!(attributes(&svg, "image", "width"), [&*(80 * 3).to_string()]);
        assert_eq!(
            attributes(&svg, "image", "x"),
            [&*layout.cells.x.to_string()]
        );
        assert_eq!(
            attributes(&svg, "svg", "width"),
            [&*layout.width.to_string()]
        );
    }

    #[test]
    fn an_unlabelled_svg_is_just_the_cells() {
        let (m, _) = causal(3);
        let opts = FigureOptions {
            labels: false,
            ..options(3, None)
        };
        let svg = heatmap_svg(m.view(), &opts).unwrap();
        assert!(!svg.contains("<text"));
        assert_eq!(attributes(&svg, "svg", "width"), ["30"]);
        assert!(matches!(
            heatmap_svg(Array2::<f32>::zeros((0, 0)).view(), &opts),
            Err(RenderError::Empty)
        ));
    }
}
