//! The saliency figure: the tokens with backgrounds coloured by their scores, a colour legend
//! and a bar chart of the scores, titled with the model, method and target. It is laid out once
//! as a scene, drawn into pixels ([`saliency_figure`]) or written as SVG ([`saliency_svg`]). With `--generate` the
//! figure is instead the (generated × prompt + generated) matrix ([`generated_matrix`]), drawn by
//! the heatmap figure with the cells after each generated token shown as masked.

use super::colormap::Colormap;
use super::figure::{FRAME, Rect, truncate_label};
use super::scene::{Anchor, Area, Scene, Text, Toward};
use super::text::{self, TEXT_COLOR};
use super::{FigureOptions, RenderError, ValueRange};
use crate::analysis::attribution::Attribution;
use crate::grad::{ResolvedTarget, TargetKind};
use image::RgbaImage;
use ndarray::Array2;
use std::fmt::Write as _;

/// Everything the saliency figure needs besides the attribution.
#[derive(Clone, Debug)]
pub struct SaliencyOptions {
    /// The title, e.g. from [`saliency_title`].
    pub title: String,
    /// Width of the token text, in pixels at scale 1, before it wraps.
    pub wrap_px: u32,
    /// Every length is multiplied by this (1..=8).
    pub pixel_scale: u32,
    /// The colormap of unsigned methods (signed ones are always diverging): the view's.
    pub colormap: Colormap,
}

impl Default for SaliencyOptions {
    fn default() -> Self {
        Self {
            title: String::new(),
            wrap_px: 900,
            pixel_scale: 1,
            colormap: Colormap::Viridis,
        }
    }
}

/// A target in words: `logprob of "␣he" at 7`, `contrast "␣he" vs "␣she" at 7`,
/// `mlm "cat" at 2`, `similarity with "text B"`. `token_text` turns an id into its label.
pub fn target_text(t: &ResolvedTarget, token_text: &dyn Fn(u32) -> String) -> String {
    let tok =
        |id: Option<u32>| id.map_or_else(|| "?".to_owned(), |i| format!("{:?}", token_text(i)));
    let at = t.position.map_or_else(String::new, |p| format!(" at {p}"));
    match t.kind {
        TargetKind::Logprob => format!("logprob of {}{at}", tok(t.token)),
        TargetKind::Contrast => format!("contrast {} vs {}{at}", tok(t.token), tok(t.foil)),
        TargetKind::Mlm => format!("mlm {}{at}", tok(t.token)),
        TargetKind::Similarity => match &t.text_b {
            Some(b) => format!("similarity with {:?}", truncate_label(b)),
            None => "similarity".to_owned(),
        },
    }
}

/// `model · method · target (T = value)`, plus the completeness gap for integrated gradients.
pub fn saliency_title(a: &Attribution, model: &str, token_text: &dyn Fn(u32) -> String) -> String {
    let mut s = match &a.generated {
        Some(g) => format!(
            "{model} · {} · logprob of each of {} generated tokens",
            a.method,
            g.targets.len()
        ),
        None => format!(
            "{model} · {} · {} (T = {})",
            a.method,
            target_text(&a.target, token_text),
            super::format_significant(a.target.value)
        ),
    };
    if a.generated.is_none()
        && let Some(gap) = a.completeness_gap
    {
        let _ = write!(s, " · gap {}", super::format_significant(gap));
    }
    if !a.ablations.is_empty() {
        let names: Vec<String> = a.ablations.iter().map(ToString::to_string).collect();
        let _ = write!(s, " · ablated {}", names.join(", "));
    }
    s
}

/// The one colouring of saliency scores, on screen and in every export: signed methods on the
/// diverging map symmetric around 0 (±max|s|, 0 at its white middle); unsigned ones on the
/// view's colormap from their own smallest to their largest score. Non-finite scores take the
/// middle (signed) or the bottom (unsigned).
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreColouring {
    /// The colormap used.
    pub colormap: Colormap,
    /// The score at the bottom of the colormap.
    pub lo: f64,
    /// The score at the top.
    pub hi: f64,
    /// Signed scores (diverging, symmetric around 0).
    pub signed: bool,
}

impl ScoreColouring {
    /// The colouring of `scores`; `colormap` is the view's, used for unsigned methods.
    pub fn new(scores: &[f32], signed: bool, colormap: Colormap) -> Self {
        let finite = scores
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v));
        if signed {
            let m = finite.fold(0.0f64, |m, v| m.max(v.abs()));
            let m = if m > 0.0 { m } else { 1.0 };
            Self {
                colormap: Colormap::Diverging,
                lo: -m,
                hi: m,
                signed,
            }
        } else {
            let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
            Self {
                colormap,
                lo,
                hi: if hi > lo { hi } else { lo + 1.0 },
                signed,
            }
        }
    }

    /// The position of `v` on the colormap, in [0, 1].
    pub fn t(&self, v: f32) -> f32 {
        if !v.is_finite() {
            return if self.signed { 0.5 } else { 0.0 };
        }
        (((f64::from(v) - self.lo) / (self.hi - self.lo)) as f32).clamp(0.0, 1.0)
    }

    /// The colour of `v`.
    pub fn color(&self, v: f32) -> [u8; 4] {
        self.colormap.color(self.t(v))
    }

    /// One line saying what the colours mean (the range the colour scale spans).
    pub fn legend(&self) -> String {
        if self.signed {
            let m = super::format_significant(self.hi);
            format!("colours: blue −{m} · white 0 · red +{m} (diverging)")
        } else {
            format!(
                "colours: {} to {} ({})",
                super::format_significant(self.lo),
                super::format_significant(self.hi),
                self.colormap.name()
            )
        }
    }
}

/// The text colour on a chip of colour `bg`: white on dark backgrounds, dark grey on light ones
/// (relative luminance below or above 128 of 255), the same on screen and in exports.
pub fn text_on(bg: [u8; 4]) -> [u8; 3] {
    let l = 0.2126 * f32::from(bg[0]) + 0.7152 * f32::from(bg[1]) + 0.0722 * f32::from(bg[2]);
    if l < 128.0 {
        [255, 255, 255]
    } else {
        TEXT_COLOR
    }
}

/// One token's (or word's) box in the text, and its bar.
struct Item {
    label: String,
    value: f32,
    chip: Rect,
    bar_row: u64,
}

/// Where everything goes, shared by the PNG and the SVG.
struct Layout {
    width: u64,
    height: u64,
    px: f32,
    small_px: f32,
    line: u64,
    title_y: u64,
    legend: Rect,
    legend_text_y: u64,
    items: Vec<Item>,
    /// The chip of the target position, framed.
    target: Option<usize>,
    label_x: u64,
    bars_w: u64,
    zero_x: u64,
    value_x: u64,
    row_h: u64,
}

impl Layout {
    fn new(a: &Attribution, opts: &SaliencyOptions, colouring: &ScoreColouring) -> Self {
        let s = u64::from(opts.pixel_scale.clamp(1, super::figure::MAX_PIXEL_SCALE));
        let px = 14.0 * s as f32;
        let small_px = 11.0 * s as f32;
        let margin = 12 * s;
        let pad = 4 * s;
        let gap = 3 * s;
        let line = s;
        let text_h = u64::from(text::line_height(px));
        let chip_h = text_h + 2 * pad;
        let title_y = margin;
        let legend_y = title_y + text_h + 3 * pad;
        let legend = Rect {
            x: margin,
            y: legend_y,
            w: 200 * s,
            h: 10 * s,
        };
        let legend_text_y = legend.y + legend.h + pad;
        let strip_top = legend_text_y + u64::from(text::line_height(small_px)) + 3 * pad;
        let wrap = u64::from(opts.wrap_px.max(100)) * s;
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|l| truncate_label(l).into_owned())
            .collect();
        let (mut x, mut y) = (margin, strip_top);
        let mut chips = Vec::with_capacity(labels.len());
        for label in &labels {
            let w = u64::from(text::text_width(label, px)).max(4 * s) + 2 * pad;
            if x > margin && x + w > margin + wrap {
                x = margin;
                y += chip_h + gap;
            }
            chips.push(Rect { x, y, w, h: chip_h });
            x += w + gap;
        }
        let strip_bottom = chips.last().map_or(strip_top, |c| c.y + c.h);
        let strip_right = chips.iter().map(|c| c.x + c.w).max().unwrap_or(margin);
        let row_h = u64::from(text::line_height(small_px)) + 3 * s;
        let label_w = labels
            .iter()
            .map(|l| u64::from(text::text_width(l, small_px)))
            .max()
            .unwrap_or(0);
        let label_x = margin;
        let bars_x = label_x + label_w + 2 * pad;
        let bars_w = 320 * s;
        let signed = colouring.signed;
        let zero_x = if signed { bars_x + bars_w / 2 } else { bars_x };
        let value_x = bars_x + bars_w + 2 * pad;
        let bars_top = strip_bottom + 4 * pad;
        let items = labels
            .into_iter()
            .zip(chips)
            .enumerate()
            .map(|(i, (label, chip))| Item {
                value: a.scores.get(i).copied().unwrap_or(0.0),
                label,
                chip,
                bar_row: bars_top + i as u64 * row_h,
            })
            .collect::<Vec<_>>();
        let bars_bottom = bars_top + items.len() as u64 * row_h;
        let value_w = u64::from(text::text_width("-0.000000e-00", small_px));
        let title_w = u64::from(text::text_width(&opts.title, px));
        let width = (strip_right + margin)
            .max(value_x + value_w + margin)
            .max(margin + title_w + margin);
        let target = match (a.words.is_some(), a.target.position) {
            (false, Some(p)) if p < items.len() => Some(p),
            _ => None,
        };
        Self {
            width,
            height: bars_bottom + margin,
            px,
            small_px,
            line,
            title_y,
            legend,
            legend_text_y,
            items,
            target,
            label_x,
            bars_w,
            zero_x,
            value_x,
            row_h,
        }
    }

    /// The bar of `v`: from the zero line to its length, and its vertical extent.
    fn bar(&self, item: &Item, colouring: &ScoreColouring) -> Rect {
        let signed = colouring.signed;
        let half = if signed { self.bars_w / 2 } else { self.bars_w };
        let m = colouring
            .hi
            .abs()
            .max(colouring.lo.abs())
            .max(f64::MIN_POSITIVE);
        let v = f64::from(item.value);
        let len = if v.is_finite() {
            ((v.abs() / m).min(1.0) * half as f64).round() as u64
        } else {
            0
        };
        let (x, w) = if v < 0.0 {
            (self.zero_x.saturating_sub(len), len)
        } else {
            (self.zero_x, len)
        };
        let inset = self.row_h / 6;
        Rect {
            x,
            y: item.bar_row + inset,
            w,
            h: self.row_h.saturating_sub(2 * inset),
        }
    }

    fn legend_labels(colouring: &ScoreColouring) -> (String, String) {
        (
            super::format_significant(colouring.lo),
            super::format_significant(colouring.hi),
        )
    }
}

/// Draws the saliency figure of `a` (per-token or per-word scores).
///
/// Errors: [`RenderError::Empty`] without scores, [`RenderError::TooLarge`] beyond the size
/// limits (checked before allocating).
pub fn saliency_figure(a: &Attribution, opts: &SaliencyOptions) -> Result<RgbaImage, RenderError> {
    let (l, colouring) = checked_layout(a, opts)?;
    saliency_scene(&l, &colouring, opts).png(1)
}

/// The saliency figure of `a` as SVG: the same layout as [`saliency_figure`], with vector text
/// and rectangles.
pub fn saliency_svg(a: &Attribution, opts: &SaliencyOptions) -> Result<String, RenderError> {
    let (l, colouring) = checked_layout(a, opts)?;
    saliency_scene(&l, &colouring, opts).svg()
}

/// The colouring and layout of `a`'s figure. Errors: no scores.
fn checked_layout(
    a: &Attribution,
    opts: &SaliencyOptions,
) -> Result<(Layout, ScoreColouring), RenderError> {
    if a.scores.is_empty() {
        return Err(RenderError::Empty);
    }
    let colouring = ScoreColouring::new(&a.scores, a.method.is_signed(), opts.colormap);
    Ok((Layout::new(a, opts, &colouring), colouring))
}

/// The figure laid out by `l`: the title, the colour legend with its ends, each token's chip
/// (the target framed) and its bar (label, bar, value), and the zero line over the bars.
fn saliency_scene(
    l: &Layout,
    colouring: &ScoreColouring,
    opts: &SaliencyOptions,
) -> Scene<'static> {
    let mut scene = Scene::new(l.width as f32, l.height as f32);
    let at = |content: &str, px: f32, x: u64, y: u64| Text::new(content, px, x as f32, y as f32);
    scene.label(at(&opts.title, l.px, l.label_x, l.title_y));
    // Legend: the colormap from lo to hi, with its ends written below.
    scene.gradient(
        Area::of(l.legend),
        colouring.colormap,
        Toward::Right,
        "legend",
    );
    let (lo, hi) = Layout::legend_labels(colouring);
    scene.label(at(&lo, l.small_px, l.legend.x, l.legend_text_y));
    let right = l.legend.x + l.legend.w;
    scene.label(at(&hi, l.small_px, right, l.legend_text_y).anchor(Anchor::End));
    let pad = l.chip_pad();
    for (i, item) in l.items.iter().enumerate() {
        let bg = colouring.color(item.value);
        let chip = Area::of(item.chip);
        if l.target == Some(i) {
            scene.frame(chip, (2 * l.line) as f32, [0, 0, 0, 255]);
        }
        scene.fill(chip, bg);
        let on_chip = at(&item.label, l.px, item.chip.x + pad, item.chip.y + pad);
        scene.label(on_chip.color(text_on(bg)));
        // The bar chart: label, bar, value.
        scene.label(at(&item.label, l.small_px, l.label_x, item.bar_row));
        scene.fill(Area::of(l.bar(item, colouring)), bg);
        let value = super::format_significant(f64::from(item.value));
        scene.label(at(&value, l.small_px, l.value_x, item.bar_row));
    }
    // The zero line over the bars.
    if let (Some(first), Some(last)) = (l.items.first(), l.items.last()) {
        let zero = Rect {
            x: l.zero_x,
            y: first.bar_row,
            w: l.line,
            h: last.bar_row + l.row_h - first.bar_row,
        };
        scene.fill(Area::of(zero), FRAME.0);
    }
    scene
}

impl Layout {
    fn chip_pad(&self) -> u64 {
        self.items.first().map_or(0, |i| {
            (i.chip.h - u64::from(text::line_height(self.px))) / 2
        })
    }
}

/// With `--generate`: the [K][N+K] scores as a matrix (NaN where a token does not precede the
/// generated one), the cells to show as masked, and heatmap options for it (rows labelled by
/// the generated tokens, columns by every token; the diverging map around 0 for signed methods).
pub fn generated_matrix(a: &Attribution, title: &str) -> Option<(Array2<f32>, FigureOptions)> {
    let g = a.generated.as_ref()?;
    let (k, n) = (g.scores.len(), a.tokens.len());
    let mut m = Array2::<f32>::zeros((k, n));
    let mut masked = Array2::<bool>::from_elem((k, n), false);
    for (r, row) in g.scores.iter().enumerate() {
        for c in 0..n {
            match row.get(c).copied().flatten() {
                Some(v) => m[[r, c]] = v,
                None => masked[[r, c]] = true,
            }
        }
    }
    // The scores shown (not the masked cells' placeholders) decide the colour range.
    let values: Vec<f32> = g.scores.iter().flatten().flatten().copied().collect();
    let colouring = ScoreColouring::new(&values, a.method.is_signed(), Colormap::Viridis);
    let opts = FigureOptions {
        title: title.to_owned(),
        query_labels: a
            .labels
            .get(g.from..)
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
        key_labels: a.labels.clone(),
        colormap: colouring.colormap,
        range: ValueRange {
            min: colouring.lo as f32,
            max: colouring.hi as f32,
        },
        masked: Some(masked),
        ..FigureOptions::default()
    };
    Some((m, opts))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::analysis::attribution::{Method, test_attribution};

    fn hex(c: [u8; 4]) -> String {
        format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
    }

    fn attribution(method: Method, scores: Vec<f32>) -> Attribution {
        test_attribution(method, &["a", "b", "c"], scores)
    }

    #[test]
    fn signed_scores_use_the_diverging_map_around_zero() {
        let c = ScoreColouring::new(&[-2.0, 1.0, 0.5], true, Colormap::Magma);
        assert_eq!((c.lo, c.hi), (-2.0, 2.0));
        // 0 sits in the middle of the diverging map (white), −2 at its blue end, 2 at its red end.
        assert_eq!(c.color(0.0), Colormap::Diverging.color(0.5));
        assert_eq!(c.color(-2.0), Colormap::Diverging.color(0.0));
        // Unsigned scores span their own range, on the view's colormap.
        let u = ScoreColouring::new(&[0.25, 0.75], false, Colormap::Magma);
        assert_eq!((u.lo, u.hi, u.colormap), (0.25, 0.75, Colormap::Magma));
        assert_eq!(u.legend(), "colours: 0.25 to 0.75 (magma)");
        assert_eq!(text_on([0, 0, 0, 255]), [255, 255, 255]);
        assert_eq!(text_on([255, 255, 255, 255]), TEXT_COLOR);
    }

    #[test]
    fn each_chip_in_the_export_has_the_colour_the_screen_gives_its_score() {
        // An unsigned method on the view's colormap (plasma) and a signed one: each chip's
        // inside pixel is `ScoreColouring::color`, which the app's view converts to egui's.
        for (method, scores) in [
            (Method::Attention, vec![0.1f32, 0.6, 0.3]),
            (Method::InputXGradient, vec![-0.5, 0.2, 1.0]),
        ] {
            let a = attribution(method, scores.clone());
            let opts = SaliencyOptions {
                colormap: Colormap::Plasma,
                ..SaliencyOptions::default()
            };
            let img = saliency_figure(&a, &opts).unwrap();
            let colouring = ScoreColouring::new(&scores, method.is_signed(), Colormap::Plasma);
            let layout = Layout::new(&a, &opts, &colouring);
            for (item, &v) in layout.items.iter().zip(&scores) {
                let p = img.get_pixel(item.chip.x as u32, item.chip.y as u32).0;
                assert_eq!(p, colouring.color(v), "{method:?} {}", item.label);
            }
        }
    }

    #[test]
    fn the_figure_colours_each_token_and_frames_the_target() {
        let a = attribution(Method::InputXGradient, vec![-1.0, 0.0, 1.0]);
        let opts = SaliencyOptions {
            title: saliency_title(&a, "toy", &|id| format!("t{id}")),
            ..SaliencyOptions::default()
        };
        assert_eq!(
            opts.title,
            "toy · input-x-gradient · logprob of \"t7\" at 2 (T = -1.5)"
        );
        let img = saliency_figure(&a, &opts).unwrap();
        let colouring = ScoreColouring::new(&a.scores, true, Colormap::Viridis);
        let layout = Layout::new(&a, &opts, &colouring);
        for (item, t) in layout.items.iter().zip([0.0, 0.5, 1.0]) {
            // The chip's top-left inside pixel has the score's colour.
            let p = img.get_pixel(item.chip.x as u32, item.chip.y as u32).0;
            assert_eq!(p, Colormap::Diverging.color(t), "{}", item.label);
        }
        // The target (position 2) is framed in black just outside its chip.
        let c = layout.items[2].chip;
        assert_eq!(img.get_pixel(c.x as u32 - 1, c.y as u32).0, [0, 0, 0, 255]);
        assert_ne!(
            img.get_pixel(layout.items[1].chip.x as u32 - 1, c.y as u32)
                .0,
            [0, 0, 0, 255]
        );
        // The negative bar ends left of the zero line, the positive one right of it.
        let neg = layout.bar(&layout.items[0], &colouring);
        let pos = layout.bar(&layout.items[2], &colouring);
        assert_eq!(neg.x + neg.w, layout.zero_x);
        assert_eq!(pos.x, layout.zero_x);
        assert_eq!(neg.w, pos.w);
        let svg = saliency_svg(&a, &opts).unwrap();
        assert!(svg.contains(&format!("fill=\"{}\"", hex(Colormap::Diverging.color(1.0)))));
        assert!(svg.contains(">c</text>"));
        let empty = attribution(Method::Gradient, Vec::new());
        assert!(matches!(
            saliency_figure(&empty, &opts),
            Err(RenderError::Empty)
        ));
    }
}
