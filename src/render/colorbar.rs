//! Colorbars: the gradient image and the ticks with their texts (nice linear values, powers of
//! ten on a log scale, significant digits for small ends). The PNG and SVG figures and the app's
//! colorbar all take them from here.

use super::colormap::Colormap;
use super::heatmap::{ValueRange, ValueScale, log_floor, normalize};
use super::layout::{
    FRAME, LEGEND_GAP, LEGEND_SWATCH, MASKED_LEGEND, Rect, TICK_GAP, TICK_LEN, TICK_PX,
};
use super::scene::{Area, Scene, Text, Toward};
use super::text::{self, TEXT_COLOR};

/// One tick of a vertical colorbar.
#[derive(Clone, Debug, PartialEq)]
pub struct ColorbarTick {
    /// Distance from the top of the bar (the range's maximum), a whole number in `0..=length`.
    pub offset: f32,
    /// The value as text: nice round numbers, powers of ten on a log scale, significant digits
    /// (or scientific notation) for small ends.
    pub text: String,
}

/// The ticks of a vertical colorbar `length` units long (pixels in a PNG, points on screen)
/// whose top shows `range.max`: 3–5 nice values (powers of ten on a log scale), placed where
/// [`normalize`] puts them, most important first kept, and any tick closer than `min_gap` to
/// a kept one dropped. Sorted top to bottom. The PNG figure and the app's colorbar both use it.
pub fn colorbar_ticks(
    range: ValueRange,
    scale: ValueScale,
    length: f32,
    min_gap: f32,
) -> Vec<ColorbarTick> {
    let length = length.max(0.0);
    let mut placed: Vec<ColorbarTick> = Vec::new();
    for (value, text) in tick_values(range, scale) {
        let t = normalize(value as f32, range, scale);
        let offset = ((1.0 - t) * length).round();
        if placed.iter().all(|p| (p.offset - offset).abs() >= min_gap) {
            placed.push(ColorbarTick { offset, text });
        }
    }
    placed.sort_by(|a, b| a.offset.total_cmp(&b.offset));
    placed
}

pub use super::colormap::colorbar_image;

/// Tick values and their texts, most important first.
pub(crate) fn tick_values(range: ValueRange, scale: ValueScale) -> Vec<(f64, String)> {
    match scale {
        ValueScale::Linear => linear_ticks(f64::from(range.min), f64::from(range.max)),
        ValueScale::Log => log_ticks(range),
    }
}

/// 3–5 "nice" ticks (multiples of 1, 2, 2.5 or 5 times a power of ten) inside
/// `min..=max`; falls back to min, middle and max.
pub(crate) fn linear_ticks(min: f64, max: f64) -> Vec<(f64, String)> {
    let span = max - min;
    if !(span > 0.0 && span.is_finite()) {
        return vec![(max, format_significant(max))];
    }
    let magnitude = 10f64.powf((span / 4.0).log10().floor());
    for multiple in [1.0, 2.0, 2.5, 5.0, 10.0] {
        let step = multiple * magnitude;
        let first = (min / step - 1e-9).ceil();
        let last = (max / step + 1e-9).floor();
        let count = last - first + 1.0;
        if count > 5.0 {
            continue;
        }
        if count < 3.0 {
            break;
        }
        let decimals = decimals_for_step(step, multiple);
        let largest = min.abs().max(max.abs());
        // Scientific notation keeps huge or very precise labels short.
        let scientific = largest >= 1e6 || decimals > 6;
        let precision = ((largest.log10().floor() - step.log10().floor()) as i64
            + i64::from(multiple == 2.5))
        .clamp(1, 8) as usize;
        return (first as i64..=last as i64)
            .map(|k| {
                let value = k as f64 * step;
                let text = if scientific {
                    format!("{value:.precision$e}")
                } else {
                    format_fixed(value, decimals)
                };
                (value, text)
            })
            .collect();
    }
    let middle = min + span / 2.0;
    [max, min, middle]
        .into_iter()
        .map(|v| (v, format_significant(v)))
        .collect()
}

/// Decimal places that show every multiple of `step` exactly.
pub(crate) fn decimals_for_step(step: f64, multiple: f64) -> usize {
    let whole = (-(step.log10() + 1e-9).floor()).max(0.0) as usize;
    let extra = usize::from(multiple == 2.5);
    (whole + extra).min(8)
}

/// Formats `value` with a fixed number of decimals, never as "-0.00".
pub(crate) fn format_fixed(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    match text.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_owned(),
        _ => text,
    }
}

/// Formats `value` with up to three significant digits, without trailing zeros: `0.25`,
/// `0.00123`, `1.20e-5`, `0`. Used for the colorbar's range ends and the app's hover values.
pub fn format_significant(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude == 0.0 {
        "0".to_owned()
    } else if (1e-3..1e5).contains(&magnitude) {
        let decimals = (2.0 - magnitude.log10().floor()).max(0.0) as usize;
        let text = format_fixed(value, decimals);
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        }
    } else {
        format!("{value:.2e}")
    }
}

/// Formats 10^exponent: plain decimals for 0.0001..=10000, else "1e{exponent}".
pub(crate) fn format_power_of_ten(exponent: i32) -> String {
    match exponent {
        0..=4 => 10u32.pow(exponent.unsigned_abs()).to_string(),
        -4..=-1 => format!(
            "{:.*}",
            exponent.unsigned_abs() as usize,
            10f64.powi(exponent)
        ),
        _ => format!("1e{exponent}"),
    }
}

/// Powers of ten inside the (floored) range, at most five, anchored at the
/// top; with fewer than three, the range ends are added.
pub(crate) fn log_ticks(range: ValueRange) -> Vec<(f64, String)> {
    let max = f64::from(range.max);
    let floor = f64::from(log_floor(range.max));
    let low = f64::from(range.min).max(floor);
    let high = max.max(floor);
    if !(high > low && high.is_finite()) {
        return vec![(max, format_significant(max))];
    }
    let first = (low.log10() - 1e-6).ceil() as i32;
    let last = (high.log10() + 1e-6).floor() as i32;
    let count = (last - first + 1).max(0);
    let stride = ((count + 4) / 5).max(1);
    let mut ticks: Vec<(f64, String)> = (0..count)
        .step_by(stride as usize)
        .map(|i| last - i)
        .map(|e| (10f64.powi(e), format_power_of_ten(e)))
        .collect();
    if ticks.len() < 3 {
        ticks.push((high, format_significant(high)));
        ticks.push((low, format_significant(low)));
    }
    ticks
}

/// One colorbar tick: its vertical position and its text.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Tick {
    pub(crate) y: u64,
    pub(crate) text: String,
}

/// A vertical colorbar with its ticks and optional "masked" legend, in pixels: the PNG figures
/// draw it and the SVG writer writes the same geometry as vector shapes.
#[derive(Clone, Debug)]
pub(crate) struct Colorbar {
    /// The gradient's rectangle (the frame lies one `line` outside it).
    pub(crate) bar: Rect,
    /// Ticks, top to bottom.
    pub(crate) ticks: Vec<Tick>,
    /// Tick mark length, gap to the text, and the frame's line width.
    pub(crate) tick_len: u64,
    pub(crate) tick_gap: u64,
    pub(crate) line: u64,
    /// Font size of the tick texts.
    pub(crate) tick_px: f32,
    /// The "masked" swatch (same width as the bar), when cells are masked.
    pub(crate) legend: Option<Rect>,
}

impl Colorbar {
    /// A bar at `bar` with `ticks` from [`colorbar_ticks`] (or any texts), at pixel scale `s`,
    /// with a legend swatch below it when `masked`.
    pub(crate) fn new(bar: Rect, ticks: Vec<Tick>, s: u64, masked: bool) -> Colorbar {
        let legend = masked.then(|| Rect {
            x: bar.x,
            y: bar.y + bar.h + LEGEND_GAP * s,
            w: bar.w,
            h: LEGEND_SWATCH * s,
        });
        Colorbar {
            bar,
            ticks,
            tick_len: TICK_LEN * s,
            tick_gap: TICK_GAP * s,
            line: s,
            tick_px: TICK_PX * s as f32,
            legend,
        }
    }

    /// Left edge of the tick texts (and of the legend's text).
    pub(crate) fn text_x(&self) -> u64 {
        self.bar.x + self.bar.w + self.line + self.tick_len + self.tick_gap
    }

    /// The rightmost pixel column any part of the bar uses, plus one.
    pub(crate) fn right(&self) -> u64 {
        let widest = self
            .ticks
            .iter()
            .map(|t| t.text.as_str())
            .chain(self.legend.map(|_| MASKED_LEGEND))
            .map(|t| u64::from(text::text_width(t, self.tick_px)))
            .max()
            .unwrap_or(0);
        self.text_x() + widest
    }

    /// The lowest pixel row any part of the bar uses, plus one.
    pub(crate) fn bottom(&self) -> u64 {
        let tick_line = u64::from(text::line_height(self.tick_px));
        let below_bar = self.bar.y + self.bar.h + self.line + tick_line / 2 + 1;
        match self.legend {
            Some(l) => below_bar.max(l.y + l.h + self.line),
            None => below_bar,
        }
    }

    /// Adds the gradient (high values on top), its frame, the ticks (marks and values) and the
    /// "masked" legend to `scene`, in that order.
    pub(crate) fn add_to(&self, scene: &mut Scene<'_>, colormap: Colormap) {
        let bar = Area::of(self.bar);
        let line = self.line as f32;
        scene.gradient(bar, colormap, Toward::Up, "colorbar");
        scene.frame(bar, line, FRAME.0);
        let half_line = u64::from(text::line_height(self.tick_px)) / 2;
        let right = (self.bar.x + self.bar.w + self.line) as f32;
        let text_x = self.text_x() as f32;
        let ink = [TEXT_COLOR[0], TEXT_COLOR[1], TEXT_COLOR[2], 255];
        for tick in &self.ticks {
            // The mark's stroke covers the `line` pixels from `tick.y - line / 2`.
            let y = tick.y.saturating_sub(self.line / 2) as f32 + line / 2.0;
            scene.line((right, y), (right + self.tick_len as f32, y), line, ink);
            let top = tick.y as f32 - half_line as f32;
            scene.label(Text::new(&tick.text, self.tick_px, text_x, top));
        }
        if let Some(swatch) = self.legend {
            scene.fill(Area::of(swatch), colormap.masked_color());
            scene.frame(Area::of(swatch), line, FRAME.0);
            let top = (swatch.y + swatch.h / 2) as f32 - half_line as f32;
            scene.label(Text::new(MASKED_LEGEND, self.tick_px, text_x, top));
        }
    }
}
