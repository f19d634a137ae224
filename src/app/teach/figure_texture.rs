//! A teaching view's labelled map: `render`'s figure (token labels, colorbar, masked legend;
//! [`crate::render::fitted_figure`]) uploaded through [`KeyedTexture`] and shown at one texel
//! per screen pixel, with where its cells landed on screen for the view's outlines. The view
//! draws no labels or scales of its own.

use super::texture::KeyedTexture;
use crate::render::{FigureOptions, FittedFigure};

/// The largest cell of a teaching map, in points.
pub const MAX_CELL_PT: u32 = 24;

/// An uploaded figure, the options it was drawn with and where its cells are in it.
pub struct FigureTexture<K> {
    texture: Option<KeyedTexture<K>>,
    /// How the figure uploaded was drawn.
    drawn: Option<Drawn>,
}

/// What [`crate::render::fitted_figure`] chose: the options, the cells' rectangle in pixels and
/// the rows and columns drawn.
struct Drawn {
    options: FigureOptions,
    cells: (u32, u32, u32, u32),
    shape: (usize, usize),
}

impl<K> Default for FigureTexture<K> {
    fn default() -> Self {
        Self {
            texture: None,
            drawn: None,
        }
    }
}

/// Where a figure was drawn, in points.
pub struct Shown {
    /// The cells' rectangle.
    pub cells: egui::Rect,
    /// Rows and columns drawn (fewer than the tokens when the map was pooled to fit).
    pub shape: (usize, usize),
}

impl Shown {
    /// Says so when the map of `n_tokens` was max-pooled to fit; `None` when every token has
    /// its cell.
    pub fn pooled_note(&self, n_tokens: usize) -> Option<String> {
        let (rows, cols) = self.shape;
        (rows < n_tokens || cols < n_tokens).then(|| {
            format!(
                "{n_tokens} tokens max-pooled to {rows} × {cols} cells to fit; the labels are \
                 token indices"
            )
        })
    }
}

/// The screen's pixels per point as a figure pixel scale (1–8).
pub fn pixel_scale(ctx: &egui::Context) -> u32 {
    (ctx.pixels_per_point().round() as u32).clamp(1, crate::render::figure::MAX_PIXEL_SCALE)
}

/// The most pixels a figure may take for `room` points at `scale` pixels per point: the room,
/// within the largest texture the GPU takes.
pub fn max_pixels(ctx: &egui::Context, room: egui::Vec2, scale: u32) -> (u32, u32) {
    let side = ctx.input(|i| i.max_texture_side).max(1) as u32;
    let px = |v: f32| ((v.max(1.0) as u32).saturating_mul(scale)).min(side);
    (px(room.x), px(room.y))
}

impl<K: PartialEq> FigureTexture<K> {
    /// Makes sure the figure for `key` is uploaded (`make()`'s, drawn only when the key
    /// changed); `false` when there is none.
    pub fn prepare(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        key: K,
        make: impl FnOnce() -> Option<FittedFigure>,
    ) -> bool {
        let drawn = &mut self.drawn;
        let tex = KeyedTexture::get(&mut self.texture, ctx, name, key, || {
            let fig = make()?;
            *drawn = Some(Drawn {
                options: fig.options,
                cells: fig.cells,
                shape: fig.shape,
            });
            Some(fig.image)
        });
        let ok = tex.is_some();
        if !ok {
            self.drawn = None;
        }
        ok
    }

    /// The figure's pixels and options, for tests.
    pub fn on_screen(&self) -> Option<(&image::RgbaImage, &FigureOptions)> {
        let tex = self.texture.as_ref()?;
        let drawn = self.drawn.as_ref()?;
        Some((&tex.image, &drawn.options))
    }

    /// Draws the figure at one texel per pixel (smaller when `max`, in points, is smaller), with
    /// an accessible `label`.
    pub fn show(&self, ui: &mut egui::Ui, max: egui::Vec2, label: &str) -> Option<Shown> {
        let tex = self.texture.as_ref()?;
        let drawn = self.drawn.as_ref()?;
        let (x, y, w, h) = drawn.cells;
        let scale = drawn.options.effective_pixel_scale() as f32;
        let image = tex.show(ui, max, 1.0 / scale, label)?;
        let zoom = image.width() / tex.size().x.max(1.0);
        let cells = egui::Rect::from_min_size(
            image.min + egui::vec2(x as f32, y as f32) * zoom,
            egui::vec2(w as f32, h as f32) * zoom,
        );
        Some(Shown {
            cells,
            shape: drawn.shape,
        })
    }
}
