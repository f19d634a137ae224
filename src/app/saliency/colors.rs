//! Colours of scores, all from `render::colormap`: signed methods on the diverging map with 0 at
//! its white middle and ±max|s| at its ends; unsigned ones on the view's colormap from 0 to the
//! largest score.

use crate::render::{Colormap, format_significant};
use egui::Color32;

/// How scores map to colours for one set of scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreColors {
    signed: bool,
    /// The largest |score| (signed) or score (unsigned); scores are divided by it.
    max: f32,
    colormap: Colormap,
}

impl ScoreColors {
    /// The colours of `scores`; `signed` picks the diverging map, else `colormap` is used.
    pub fn new(scores: &[f32], signed: bool, colormap: Colormap) -> Self {
        let max = scores
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| if signed { v.abs() } else { v.max(0.0) })
            .fold(0.0_f32, f32::max);
        Self {
            signed,
            max,
            colormap: if signed {
                Colormap::Diverging
            } else {
                colormap
            },
        }
    }

    /// The position of `v` on the colormap, in [0, 1].
    pub fn t(&self, v: f32) -> f32 {
        if !v.is_finite() || self.max <= 0.0 {
            return if self.signed { 0.5 } else { 0.0 };
        }
        if self.signed {
            (0.5 + 0.5 * v / self.max).clamp(0.0, 1.0)
        } else {
            (v / self.max).clamp(0.0, 1.0)
        }
    }

    /// The colour of `v`.
    pub fn color(&self, v: f32) -> Color32 {
        let [r, g, b, _] = self.colormap.color(self.t(v));
        Color32::from_rgb(r, g, b)
    }

    /// One line saying what the colours mean.
    pub fn legend(&self) -> String {
        let m = format_significant(f64::from(self.max));
        if self.signed {
            format!("colours: blue -{m} · white 0 · red +{m} (diverging)")
        } else {
            format!("colours: 0 to {m} ({})", self.colormap.name())
        }
    }
}

/// Black or white, whichever reads better on `bg`.
pub fn text_on(bg: Color32) -> Color32 {
    let l = 0.2126 * f32::from(bg.r()) + 0.7152 * f32::from(bg.g()) + 0.0722 * f32::from(bg.b());
    if l > 140.0 {
        Color32::BLACK
    } else {
        Color32::WHITE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_scores_centre_zero_on_the_diverging_white() {
        let c = ScoreColors::new(&[-2.0, 1.0, 0.5], true, Colormap::Viridis);
        // max |s| = 2: -2 → 0, 0 → 0.5, 1 → 0.5 + 0.5·1/2 = 0.75.
        assert_eq!(c.t(-2.0), 0.0);
        assert_eq!(c.t(0.0), 0.5);
        assert_eq!(c.t(1.0), 0.75);
        let [r, g, b, _] = Colormap::Diverging.color(0.5);
        assert_eq!(c.color(0.0), Color32::from_rgb(r, g, b));
    }

    #[test]
    fn unsigned_scores_span_the_view_colormap() {
        let c = ScoreColors::new(&[0.0, 4.0, 1.0], false, Colormap::Magma);
        assert_eq!(c.t(1.0), 0.25);
        let [r, g, b, _] = Colormap::Magma.color(1.0);
        assert_eq!(c.color(4.0), Color32::from_rgb(r, g, b));
        // All-zero scores do not divide by zero.
        assert_eq!(ScoreColors::new(&[0.0], false, Colormap::Magma).t(0.0), 0.0);
        assert_eq!(
            ScoreColors::new(&[f32::NAN], true, Colormap::Magma).t(f32::NAN),
            0.5
        );
    }

    #[test]
    fn text_is_dark_on_light_backgrounds() {
        assert_eq!(text_on(Color32::WHITE), Color32::BLACK);
        assert_eq!(text_on(Color32::from_rgb(20, 20, 80)), Color32::WHITE);
    }
}
