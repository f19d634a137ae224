//! A head's attention map as the teaching views show it (the neuron view's map, the mistakes'
//! correct and mistaken maps): the heatmap export's labelled figure, with the tokens on both
//! axes, a colorbar with ticks over the weights' 0…1 and the masked legend. The views fit it to
//! their room with [`crate::render::fitted_figure`] and upload its pixels; they draw no labels
//! or scales of their own.

use crate::render::colormap::Colormap;
use crate::render::figure::FigureOptions;
use crate::render::heatmap::{ValueRange, ValueScale};
use ndarray::Array2;

/// The figure options of an attention map in a teaching view: `labels` (one per token) on the
/// query and the key axis, `colormap` over 0…1 (attention weights, linear), `masked` cells
/// (shape [query, key]) in the masked colour with their legend, no title (the view heads it),
/// at `pixel_scale` (the screen's pixels per point).
pub fn map_options(
    labels: &[String],
    masked: Option<Array2<bool>>,
    colormap: Colormap,
    pixel_scale: u32,
) -> FigureOptions {
    FigureOptions {
        title: String::new(),
        query_labels: labels.to_vec(),
        key_labels: labels.to_vec(),
        colormap,
        range: ValueRange { min: 0.0, max: 1.0 },
        scale: ValueScale::Linear,
        labels: true,
        masked,
        pixel_scale,
        ..FigureOptions::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::render::figure::{Layout, fitted_figure};
    use crate::render::heatmap_svg;

    fn labels() -> Vec<String> {
        ["the", "cat", "sat", "on", "mat"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn a_teaching_map_has_every_token_on_both_axes_and_a_colorbar() {
        let n = 5;
        let map = Array2::from_shape_fn(
            (n, n),
            |(q, k)| if k <= q { 1.0 / (q + 1) as f32 } else { 0.0 },
        );
        let masked = Array2::from_shape_fn((n, n), |(q, k)| k > q);
        let opts = map_options(&labels(), Some(masked), Colormap::Viridis, 1);
        let fig = fitted_figure(map.view(), &opts, 340, 400, 24).unwrap();
        assert!(fig.image.width() <= 340 && fig.image.height() <= 400);
        assert_eq!(
            fig.image,
            crate::render::heatmap_figure(map.view(), &fig.options).unwrap()
        );
        // The largest cell that fits: one more pixel per cell would not.
        let bigger = FigureOptions {
            cell_px: fig.options.cell_px + 1,
            ..fig.options.clone()
        };
        let (w, h) = crate::render::figure_size(n, n, &bigger);
        assert!(fig.options.cell_px == 24 || w > 340 || h > 400, "{w}x{h}");
        let layout = Layout::new(n, n, &fig.options);
        let texts = |l: &[crate::render::figure::Label]| -> Vec<String> {
            l.iter().map(|l| l.text.clone()).collect()
        };
        assert_eq!(texts(&layout.query_labels), labels());
        assert_eq!(texts(&layout.key_labels), labels());
        let ticks: Vec<&str> = layout
            .colorbar
            .ticks
            .iter()
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(ticks, ["1.00", "0.75", "0.50", "0.25", "0.00"]);
        assert!(layout.colorbar.legend.is_some(), "the masked legend");
        // The colorbar sits right of the cells, its top in the colormap's top colour.
        let bar = layout.colorbar.bar;
        let (cx, _, cw, _) = fig.cells;
        assert!(bar.x >= u64::from(cx + cw));
        let top = fig
            .image
            .get_pixel((bar.x + bar.w / 2) as u32, bar.y as u32)
            .0;
        assert_eq!(top, Colormap::Viridis.color(1.0));
        // The SVG of the same figure names every token and every tick.
        let svg = heatmap_svg(map.view(), &fig.options).unwrap();
        for t in labels().iter().map(String::as_str).chain(ticks) {
            assert!(svg.contains(&format!(">{t}</text>")), "{t}");
        }
        assert!(svg.contains(">masked</text>"));
    }

    #[test]
    fn a_map_too_long_for_the_room_is_pooled_with_ranges_for_labels() {
        let n = 300;
        let map = Array2::from_shape_fn((n, n), |(q, k)| if q == k { 1.0 } else { 0.0 });
        let names: Vec<String> = (0..n).map(|i| format!("t{i}")).collect();
        let opts = map_options(&names, None, Colormap::Hot, 1);
        let fig = fitted_figure(map.view(), &opts, 260, 260, 24).unwrap();
        assert!(fig.image.width() <= 260 && fig.image.height() <= 260);
        let (rows, cols) = fig.shape;
        assert!(rows < n && rows == cols, "{:?}", fig.shape);
        // Each pooled row is labelled with the tokens it holds; the blocks cover every token.
        let first = crate::render::pool_block(0, n, rows);
        assert_eq!(
            fig.options.query_labels[0],
            format!("{}–{}", first.start, first.end - 1)
        );
        let covered: usize = (0..rows)
            .map(|b| crate::render::pool_block(b, n, rows).len())
            .sum();
        assert_eq!(covered, n);
        // Max-pooling keeps the diagonal at full weight.
        let pooled = crate::render::max_pool(map.view(), rows);
        assert_eq!(
            fig.image,
            crate::render::heatmap_figure(pooled.view(), &fig.options).unwrap()
        );
        // A room that fits the map keeps every token.
        let fig = fitted_figure(map.view(), &opts, 800, 800, 24).unwrap();
        assert_eq!(fig.shape, (n, n));
        assert_eq!(fig.options.query_labels, names);
    }
}
