//! Teaching figures (issue 11): the walkthrough's steps as labelled small matrices and bars, and
//! a mistake side by side with the correct version, as PNG and SVG for slides.
//!
//! Each figure is laid out once as a scene of rectangles and text lines (`render::scene`), in
//! units drawn at the pixel scale into an [`RgbaImage`] or written as SVG with the same
//! coordinates, so the two outputs agree. Values colour through [`Colormap`]s: vectors
//! and matrices that can be negative (q, K, V, outputs) through the diverging map around 0,
//! attention maps through the chosen colormap. Masked keys show "−∞" and masked cells the
//! colormap's masked colour. The views' own maps are the heatmap export's labelled figure, with
//! options from [`map_options`].

use super::RenderError;
use super::colormap::Colormap;
use crate::analysis::explain::{Explanation, WalkStep};
use image::RgbaImage;
use ndarray::Array2;

mod layout;
pub mod lesson;
mod maps;

use layout::{comparison_scene, step_scene};
pub use maps::map_options;

/// How teaching figures look.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TeachStyle {
    /// The colormap of attention weights and maps (signed vectors always use `diverging`).
    pub colormap: Colormap,
    /// Multiplies every length of a PNG (1–8); SVGs are written at 1.
    pub pixel_scale: u32,
}

impl Default for TeachStyle {
    fn default() -> Self {
        Self {
            colormap: Colormap::Viridis,
            pixel_scale: 1,
        }
    }
}

/// Largest number of head dimensions drawn as separate cells; wider heads are shown by their
/// first dimensions, and the figure says how many were left out.
pub const MAX_DIMS_SHOWN: usize = 64;
/// Largest number of keys drawn one row each in a step figure; the rest are summarised.
pub const MAX_KEYS_SHOWN: usize = 40;
/// Largest map side drawn cell by cell in a comparison; longer maps are max-pooled to it.
pub const MAX_COMPARISON_SIDE: usize = 64;

pub(super) const BAR_POSITIVE: [u8; 4] = [0x3b, 0x75, 0xaf, 255];
pub(super) const BAR_NEGATIVE: [u8; 4] = [0xc4, 0x4e, 0x52, 255];
pub(super) const AXIS: [u8; 4] = [0x88, 0x88, 0x88, 255];
pub(super) const HIGHLIGHT: [u8; 4] = [0xff, 0xb0, 0x00, 255];

/// One walkthrough step as a labelled PNG figure: the step's title, the layer/head/query it
/// explains, its numbers as small matrices or bars (token labels from `labels`, one per key),
/// and the step's plain-language explanation.
pub fn step_figure(
    e: &Explanation,
    step: WalkStep,
    labels: &[String],
    style: &TeachStyle,
) -> Result<RgbaImage, RenderError> {
    step_scene(e, step, labels, style).png(style.pixel_scale)
}

/// [`step_figure`] as SVG (vector text and rectangles, same layout).
pub fn step_svg(
    e: &Explanation,
    step: WalkStep,
    labels: &[String],
    style: &TeachStyle,
) -> Result<String, RenderError> {
    step_scene(e, step, labels, style).svg()
}

/// One side of a comparison: a map with its title and, optionally, its masked cells.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonPanel {
    /// Above the map (`correct`, `no √d scaling`).
    pub title: String,
    /// The attention map. Shape: [query, key].
    pub map: Array2<f32>,
    /// True where the applied mask forbids the cell. Shape: [query, key].
    pub masked: Option<Array2<bool>>,
}

/// A mistake side by side with the correct version.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The figure's title (the mistake, the layer and head).
    pub title: String,
    /// The one-sentence lesson.
    pub lesson: String,
    /// The measured effect, one sentence.
    pub summary: String,
    /// Token labels (one per row and column).
    pub labels: Vec<String>,
    /// The correct run's map.
    pub correct: ComparisonPanel,
    /// The mistaken run's map.
    pub mistaken: ComparisonPanel,
}

/// The side-by-side comparison as PNG: the title, the correct and the mistaken map (masked
/// cells in the masked colour, maps longer than [`MAX_COMPARISON_SIDE`] max-pooled), the
/// lesson and the measured effect.
pub fn comparison_figure(c: &Comparison, style: &TeachStyle) -> Result<RgbaImage, RenderError> {
    comparison_scene(c, style).png(style.pixel_scale)
}

/// [`comparison_figure`] as SVG.
pub fn comparison_svg(c: &Comparison, style: &TeachStyle) -> Result<String, RenderError> {
    comparison_scene(c, style).svg()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::engine::{MaskSpec, RunOptions};
    use crate::model::{DemoConfig, DemoModel, Model};
    use crate::render::svg::escape;

    fn explanation(mask: &str) -> (Explanation, Vec<String>) {
        let model = DemoModel::new(DemoConfig::default()).unwrap();
        let tokens =
            crate::tokenize::tokenize("the cat sat on the mat", Default::default()).unwrap();
        let opts = RunOptions {
            mask: MaskSpec::parse(mask).unwrap(),
            trace_layer: Some(0),
            ..RunOptions::default()
        };
        let run = model.forward(&tokens, &opts).unwrap();
        let e = Explanation::from_trace(run.trace.as_ref().unwrap(), 3, 2).unwrap();
        (e, tokens.iter().map(|t| t.text.clone()).collect())
    }

    fn count_color(img: &RgbaImage, c: [u8; 4]) -> usize {
        img.pixels().filter(|p| p.0 == c).count()
    }

    #[test]
    fn every_step_draws_and_the_mask_step_shows_minus_infinity() {
        let style = TeachStyle::default();
        let masked_colour = style.colormap.masked_color();
        for mask in ["none", "causal"] {
            let (e, labels) = explanation(mask);
            for step in WalkStep::ALL {
                let png = step_figure(&e, step, &labels, &style).unwrap();
                assert!(png.width() > 300 && png.height() > 100, "{step}");
                let svg = step_svg(&e, step, &labels, &style).unwrap();
                assert!(svg.contains(&escape(step.title())), "{step}");
                assert!(svg.ends_with("</svg>\n"));
                let minus_inf = svg.matches("−∞ (masked)").count();
                let grey = count_color(&png, masked_colour);
                if step == WalkStep::Mask && mask == "causal" {
                    // Query 2 under causal: keys 3, 4 and 5 are masked.
                    assert_eq!(minus_inf, 3, "{svg}");
                    assert!(grey > 0);
                } else if step != WalkStep::Softmax || mask == "none" {
                    assert_eq!(minus_inf, 0, "{step} {mask}");
                }
            }
        }
        // A larger pixel scale doubles every length.
        let (e, labels) = explanation("none");
        let one = step_figure(&e, WalkStep::Softmax, &labels, &style).unwrap();
        let two = step_figure(
            &e,
            WalkStep::Softmax,
            &labels,
            &TeachStyle {
                pixel_scale: 2,
                ..style
            },
        )
        .unwrap();
        assert!(
            two.width().abs_diff(2 * one.width()) <= 2,
            "{} {}",
            one.width(),
            two.width()
        );
    }

    #[test]
    fn comparison_shows_both_maps_the_mask_and_the_lesson() {
        // Correct: a causal one-hot map (every query reads itself); mistaken: uniform rows.
        let n = 4;
        let eye = Array2::<f32>::eye(n);
        let uniform = Array2::<f32>::from_elem((n, n), 0.25);
        let masked = Array2::from_shape_fn((n, n), |(q, k)| k > q);
        let c = Comparison {
            title: "no-causal-mask · layer 0 head 0".into(),
            lesson: crate::engine::Mistake::NoCausalMask.lesson().into(),
            summary: "Each query puts 37.5 % of its weight on later tokens.".into(),
            labels: ["a", "b", "c", "d"].map(String::from).to_vec(),
            correct: ComparisonPanel {
                title: "correct".into(),
                map: eye,
                masked: Some(masked),
            },
            mistaken: ComparisonPanel {
                title: "no causal mask".into(),
                map: uniform,
                masked: None,
            },
        };
        let style = TeachStyle {
            colormap: Colormap::Hot,
            pixel_scale: 1,
        };
        let png = comparison_figure(&c, &style).unwrap();
        // The correct panel: 4 diagonal cells at the top colour, 6 masked cells; the mistaken
        // panel is uniform 0.25 = its own max, also the top colour: 16 more cells.
        let top = Colormap::Hot.color(1.0);
        let masked_px = count_color(&png, Colormap::Hot.masked_color());
        let top_px = count_color(&png, top);
        let cell = (320.0f32 / 4.0).clamp(3.0, 28.0) as usize;
        assert!(masked_px >= 6 * cell * cell, "{masked_px}");
        assert!(top_px >= 20 * cell * cell, "{top_px}");
        let svg = comparison_svg(&c, &style).unwrap();
        assert!(svg.contains("the cells above") && svg.contains("37.5 %"));
        assert!(svg.contains(">masked<"));
    }
}
