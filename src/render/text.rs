//! Text rasterisation with `ab_glyph` and the embedded DejaVu Sans font, with Noto Sans
//! Devanagari as a fallback for the script DejaVu lacks.
//!
//! Text is first rendered into a coverage [`Mask`] and then blended into the
//! image, either upright or rotated 90° counter-clockwise (reading upward).
//! Each character is drawn with the first font that has it; a character no font has (an emoji)
//! is written as its code point (`U+1F469`) rather than a blank box. Invisible joiners and
//! variation selectors take no space; control characters are drawn as spaces. There is no
//! shaping: Devanagari conjuncts show as their letters and a virama. Nothing here panics on odd
//! input.

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, Glyph, PxScale, ScaleFont, point};
use image::RgbaImage;

/// The embedded font file.
static FONT_DATA: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The embedded DejaVu Sans, for the app to use as a fallback so that token labels (`␣`, `↵`,
/// `⇥`) draw the same glyphs on screen as in figures.
pub fn embedded_font() -> &'static [u8] {
    FONT_DATA
}

/// Dark grey used for all text and tick marks.
pub(crate) const TEXT_COLOR: [u8; 3] = [0x22, 0x22, 0x22];

/// The embedded fallback font for Devanagari (Noto Sans Devanagari, OFL-1.1).
static DEVANAGARI_DATA: &[u8] = include_bytes!("../../assets/NotoSansDevanagari-Regular.ttf");

/// The embedded fallback fonts after DejaVu Sans, for the app's font list too.
pub fn fallback_fonts() -> &'static [(&'static str, &'static [u8])] {
    FALLBACKS
}

/// See [`fallback_fonts`].
static FALLBACKS: &[(&str, &[u8])] = &[("NotoSansDevanagari", DEVANAGARI_DATA)];

/// The parsed embedded font, or `None` if it could not be parsed (then no text is drawn).
fn font() -> Option<&'static FontRef<'static>> {
    fonts().first()
}

/// DejaVu Sans then the fallbacks, each that parses.
fn fonts() -> &'static [FontRef<'static>] {
    static FONTS: OnceLock<Vec<FontRef<'static>>> = OnceLock::new();
    FONTS.get_or_init(|| {
        std::iter::once(FONT_DATA)
            .chain(fallback_fonts().iter().map(|(_, data)| *data))
            .filter_map(|data| FontRef::try_from_slice(data).ok())
            .collect()
    })
}

/// Characters that draw nothing and take no space: joiners, variation selectors, tags.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// `(font index, character)` pieces of `text`: each character with the first font that has it,
/// a character none has spelled out as `U+XXXX` in the first font.
fn pieces(text: &str) -> Vec<(usize, char)> {
    let fonts = fonts();
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if is_invisible(c) {
            continue;
        }
        match fonts.iter().position(|f| f.glyph_id(c).0 != 0) {
            Some(i) => out.push((i, c)),
            None if c == ' ' => out.push((0, ' ')),
            None => out.extend(format!("U+{:04X}", u32::from(c)).chars().map(|d| (0, d))),
        }
    }
    out
}

/// Height in pixels of one line of text at `px` (the font's ascent minus descent).
pub(crate) fn line_height(px: f32) -> u32 {
    // ab_glyph's PxScale is exactly the ascent-to-descent height.
    px.max(1.0).ceil() as u32
}

/// For vector output (SVG) of a line drawn here at `px`: the font size in CSS pixels (an em,
/// where `px` is ab_glyph's ascent-to-descent height) and the baseline's distance below the
/// line's top. Falls back to `(px, 0.8 px)` without a font.
pub(crate) fn svg_metrics(px: f32) -> (f32, f32) {
    let Some(f) = font() else {
        return (px, 0.8 * px);
    };
    let px = px.max(1.0);
    let em = f.units_per_em().unwrap_or(2048.0);
    let height = f.height_unscaled().max(1.0);
    let ascent = f.as_scaled(PxScale::from(px)).ascent();
    (px * em / height, ascent)
}

/// Width in pixels of `text` at `px`, rounded up.
pub(crate) fn text_width(text: &str, px: f32) -> u32 {
    font().map_or(0, |_| layout(text, px).1.ceil() as u32)
}

/// Positions the glyphs of `text` on a baseline at the first font's ascent,
/// starting at x = 0. Returns the glyphs with the index of the font each comes from, and the
/// total advance width.
fn layout(text: &str, px: f32) -> (Vec<(usize, Glyph)>, f32) {
    let fonts = fonts();
    let scale = PxScale::from(px.max(1.0));
    let Some(first) = fonts.first() else {
        return (Vec::new(), 0.0);
    };
    let baseline = first.as_scaled(scale).ascent();
    let mut glyphs = Vec::with_capacity(text.len());
    let mut caret = 0.0f32;
    let mut previous = None;
    for (index, c) in pieces(text) {
        let scaled = fonts[index].as_scaled(scale);
        let id = scaled.glyph_id(c);
        // Kerning only between glyphs of one font.
        if let Some((prev_index, prev)) = previous
            && prev_index == index
        {
            caret += scaled.kern(prev, id);
        }
        glyphs.push((
            index,
            id.with_scale_and_position(scale, point(caret, baseline)),
        ));
        caret += scaled.h_advance(id);
        previous = Some((index, id));
    }
    (glyphs, caret)
}

/// Anti-aliased coverage of a line of text, row-major, values in `[0, 1]`.
#[derive(Clone, Debug)]
pub(crate) struct Mask {
    width: usize,
    height: usize,
    coverage: Vec<f32>,
}

impl Mask {
    /// Renders `text` at `px` into a mask `text_width` x `line_height` pixels.
    pub(crate) fn render(text: &str, px: f32) -> Mask {
        let height = line_height(px) as usize;
        let fonts = fonts();
        let (glyphs, advance) = layout(text, px);
        let width = advance.ceil().max(0.0) as usize;
        let mut coverage = vec![0.0f32; width * height];
        for (index, glyph) in glyphs {
            let Some(outlined) = fonts[index].outline_glyph(glyph) else {
                continue; // e.g. a space: nothing to draw
            };
            let bounds = outlined.px_bounds();
            let left = bounds.min.x as i64;
            let top = bounds.min.y as i64;
            outlined.draw(|gx, gy, c| {
                let x = left + i64::from(gx);
                let y = top + i64::from(gy);
                if (0..width as i64).contains(&x) && (0..height as i64).contains(&y) {
                    let cell = &mut coverage[y as usize * width + x as usize];
                    *cell = (*cell + c).min(1.0);
                }
            });
        }
        Mask {
            width,
            height,
            coverage,
        }
    }
}

/// A line of text as a coverage bitmap, for hosts that draw glyphs themselves (the app's egui
/// fallback for characters no font has: it shows them as `U+XXXX`, as figures do).
#[derive(Clone, Debug, PartialEq)]
pub struct CoverageBitmap {
    /// Width in pixels (the advance, rounded up).
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Distance in pixels from the top row to the baseline.
    pub ascent: f32,
    /// The advance width in pixels.
    pub advance: f32,
    /// Row-major coverage, 0 to 255.
    pub alpha: Vec<u8>,
}

/// Rasterises `text` at `px` with the figures' fonts and fallbacks (see the module docs).
pub fn rasterize_line(text: &str, px: f32) -> CoverageBitmap {
    let mask = Mask::render(text, px);
    let ascent = font().map_or(0.0, |f| f.as_scaled(PxScale::from(px.max(1.0))).ascent());
    CoverageBitmap {
        width: mask.width,
        height: mask.height,
        ascent,
        advance: layout(text, px).1,
        alpha: mask
            .coverage
            .iter()
            .map(|&c| (c * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect(),
    }
}

/// How a mask is placed into an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Orientation {
    /// Normal left-to-right text.
    Horizontal,
    /// Rotated 90° counter-clockwise: the text reads bottom to top and the
    /// tops of the letters face left. The drawn box is `height` wide and
    /// `width` tall.
    Up,
}

/// Blends `mask` in `color` into `img` with the drawn box's top-left corner at
/// `(x, y)`. Pixels outside the image are skipped.
pub(crate) fn draw_mask(
    img: &mut RgbaImage,
    mask: &Mask,
    x: i64,
    y: i64,
    orientation: Orientation,
    color: [u8; 3],
) {
    let (img_w, img_h) = (i64::from(img.width()), i64::from(img.height()));
    for v in 0..mask.height {
        for u in 0..mask.width {
            let a = mask.coverage[v * mask.width + u];
            if a <= 0.0 {
                continue;
            }
            let (px, py) = match orientation {
                Orientation::Horizontal => (x + u as i64, y + v as i64),
                Orientation::Up => (x + v as i64, y + (mask.width - 1 - u) as i64),
            };
            if (0..img_w).contains(&px) && (0..img_h).contains(&py) {
                let pixel = img.get_pixel_mut(px as u32, py as u32);
                for (dst, &src) in pixel.0.iter_mut().zip(&color) {
                    let blended = f32::from(*dst) * (1.0 - a) + f32::from(src) * a;
                    *dst = blended.round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Renders `text` and draws it horizontally with its top-left corner at `(x, y)`.
#[cfg(test)]
pub(crate) fn draw_text(img: &mut RgbaImage, text: &str, px: f32, x: i64, y: i64) {
    let mask = Mask::render(text, px);
    draw_mask(img, &mask, x, y, Orientation::Horizontal, TEXT_COLOR);
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgba;

    fn dark_pixels(img: &RgbaImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0[0] < 128)
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn font_parses_and_measures() {
        assert!(font().is_some());
        assert_eq!(text_width("", 12.0), 0);
        let short = text_width("ab", 12.0);
        let long = text_width("abcdef", 12.0);
        assert!(short > 5 && long > 2 * short, "{short} {long}");
        assert_eq!(line_height(12.0), 12);
    }

    #[test]
    fn horizontal_text_is_wider_than_tall_and_up_text_taller_than_wide() {
        let mut img = RgbaImage::from_pixel(120, 120, Rgba([255; 4]));
        draw_text(&mut img, "horizontal", 12.0, 5, 5);
        let dark = dark_pixels(&img);
        let (w, h) = extent(&dark);
        assert!(w > 3 * h, "{w}x{h}");

        let mut img = RgbaImage::from_pixel(120, 120, Rgba([255; 4]));
        let mask = Mask::render("vertical", 12.0);
        draw_mask(&mut img, &mask, 5, 5, Orientation::Up, TEXT_COLOR);
        let dark = dark_pixels(&img);
        let (w, h) = extent(&dark);
        assert!(h > 3 * w, "{w}x{h}");
    }

    #[test]
    fn up_text_reads_bottom_to_top() {
        // "l......" : the tall 'l' comes first, so after rotation its column of
        // ink must sit at the bottom of the drawn box.
        let mask = Mask::render("l.....", 16.0);
        let mut img = RgbaImage::from_pixel(40, 80, Rgba([255; 4]));
        draw_mask(&mut img, &mask, 0, 0, Orientation::Up, TEXT_COLOR);
        let dark = dark_pixels(&img);
        let lowest = dark.iter().map(|&(_, y)| y).max().unwrap_or(0);
        let highest = dark.iter().map(|&(_, y)| y).min().unwrap_or(0);
        // Pixels of the 'l' span many columns (its full height) near the bottom.
        let bottom_cols = dark.iter().filter(|&&(_, y)| y + 3 >= lowest).count();
        let top_cols = dark.iter().filter(|&&(_, y)| y <= highest + 3).count();
        assert!(bottom_cols > top_cols, "{bottom_cols} vs {top_cols}");
    }

    #[test]
    fn devanagari_draws_ink_from_the_fallback_font() {
        // DejaVu Sans has no Devanagari: without the fallback every letter would be the notdef
        // box. With it, each letter's glyph comes from the second font.
        assert_eq!(fonts()[0].glyph_id('न').0, 0);
        assert!(pieces("नमस्ते").iter().all(|&(i, _)| i == 1));
        let mut img = RgbaImage::from_pixel(120, 30, Rgba([255; 4]));
        draw_text(&mut img, "नमस्ते", 16.0, 2, 2);
        let ink = dark_pixels(&img).len();
        // Letters have far more ink than the outline of a notdef box; and the label has width.
        assert!(ink > 60, "{ink} dark pixels");
        assert!(text_width("नमस्ते", 16.0) > 20);
    }

    #[test]
    fn characters_no_font_has_are_spelled_as_code_points() {
        // 👩 ZWJ 💻: the joiner takes no space; each emoji becomes its code point in DejaVu.
        let text: String = pieces("👩\u{200D}💻").into_iter().map(|(_, c)| c).collect();
        assert_eq!(text, "U+1F469U+1F4BB");
        assert_eq!(
            text_width("👩\u{200D}💻", 12.0),
            text_width("U+1F469U+1F4BB", 12.0)
        );
        // A flag's regional indicators likewise; é from e + U+0301 stays one drawn letter pair.
        let flag: String = pieces("🇫🇷").into_iter().map(|(_, c)| c).collect();
        assert_eq!(flag, "U+1F1EBU+1F1F7");
        assert!(pieces("e\u{301}").iter().all(|&(i, _)| i == 0));
    }

    #[test]
    fn missing_glyphs_and_control_characters_do_not_panic() {
        let mut img = RgbaImage::from_pixel(200, 30, Rgba([255; 4]));
        draw_text(
            &mut img,
            "日本語 🦀 \u{0}\t\n\u{FFFF}\u{10FFFF}",
            12.0,
            0,
            0,
        );
        draw_text(&mut img, "clipped", 12.0, -30, -5);
        draw_text(&mut img, "clipped", 12.0, 190, 25);
        // The code points leave some ink.
        assert!(!dark_pixels(&img).is_empty());
    }

    fn extent(points: &[(u32, u32)]) -> (u32, u32) {
        let xs = points.iter().map(|p| p.0);
        let ys = points.iter().map(|p| p.1);
        let w = xs.clone().max().unwrap_or(0) - xs.min().unwrap_or(0) + 1;
        let h = ys.clone().max().unwrap_or(0) - ys.min().unwrap_or(0) + 1;
        (w, h)
    }
}
