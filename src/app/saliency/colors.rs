//! Colours of scores: `render::ScoreColouring` (one colouring on screen and in every export:
//! signed methods on the diverging map symmetric around 0, unsigned ones on the view's colormap
//! from their own smallest to their largest score), converted to egui's colours.

use crate::render::{Colormap, ScoreColouring};
use egui::Color32;

/// How scores map to colours for one set of scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreColors(ScoreColouring);

impl ScoreColors {
    /// The colours of `scores`; `signed` picks the diverging map, else `colormap` is used.
    pub fn new(scores: &[f32], signed: bool, colormap: Colormap) -> Self {
        Self(ScoreColouring::new(scores, signed, colormap))
    }

    /// The position of `v` on the colormap, in [0, 1].
    #[cfg(test)]
    pub fn t(&self, v: f32) -> f32 {
        self.0.t(v)
    }

    /// The colour of `v`.
    pub fn color(&self, v: f32) -> Color32 {
        let [r, g, b, _] = self.0.color(v);
        Color32::from_rgb(r, g, b)
    }

    /// One line saying what the colours mean.
    pub fn legend(&self) -> String {
        self.0.legend()
    }
}

/// The text colour on a chip of colour `bg` (render's choice, as in the exports).
pub fn text_on(bg: Color32) -> Color32 {
    let [r, g, b] = crate::render::saliency_text_on([bg.r(), bg.g(), bg.b(), 255]);
    Color32::from_rgb(r, g, b)
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
    fn unsigned_scores_span_their_own_range_on_the_view_colormap() {
        // Scores 1..5: 2 → (2 − 1) / (5 − 1) = 0.25.
        let c = ScoreColors::new(&[1.0, 5.0, 2.0], false, Colormap::Magma);
        assert_eq!(c.t(2.0), 0.25);
        let [r, g, b, _] = Colormap::Magma.color(1.0);
        assert_eq!(c.color(5.0), Color32::from_rgb(r, g, b));
        assert_eq!(c.legend(), "colours: 1 to 5 (magma)");
        // All-equal scores do not divide by zero.
        assert_eq!(ScoreColors::new(&[0.0], false, Colormap::Magma).t(0.0), 0.0);
        assert_eq!(
            ScoreColors::new(&[f32::NAN], true, Colormap::Magma).t(f32::NAN),
            0.5
        );
    }

    #[test]
    fn text_is_dark_on_light_backgrounds() {
        assert_eq!(text_on(Color32::WHITE), Color32::from_rgb(0x22, 0x22, 0x22));
        assert_eq!(text_on(Color32::from_rgb(20, 20, 80)), Color32::WHITE);
    }
}
