//! Textures made from `render`'s images, uploaded once per key (the one pixel path: the app
//! draws render's pixels, NEAREST-filtered, and never makes its own).

use crate::app::texture::upload;
use egui::TextureHandle;
use image::RgbaImage;

/// One uploaded image and the key it was made for.
pub struct KeyedTexture<K> {
    key: K,
    texture: TextureHandle,
    /// The pixels uploaded (what an export of the same figure writes).
    pub image: RgbaImage,
}

impl<K: PartialEq> KeyedTexture<K> {
    /// The texture for `key`: the one in `slot` when it was made for the same key, else
    /// `make()`'s image, uploaded as `name`. `None` when `make` fails.
    pub fn get<'a>(
        slot: &'a mut Option<Self>,
        ctx: &egui::Context,
        name: &str,
        key: K,
        make: impl FnOnce() -> Option<RgbaImage>,
    ) -> Option<&'a Self> {
        if slot.as_ref().is_none_or(|t| t.key != key) {
            *slot = None;
            let image = make()?;
            let texture = upload(ctx, name, &image);
            *slot = Some(Self {
                key,
                texture,
                image,
            });
        }
        slot.as_ref()
    }

    /// The texture's id, for painting.
    pub fn id(&self) -> egui::TextureId {
        self.texture.id()
    }

    /// The texture's size in pixels.
    pub fn size(&self) -> egui::Vec2 {
        egui::vec2(self.image.width() as f32, self.image.height() as f32)
    }

    /// Draws the image scaled to fit `max` (never above `max_zoom` × its pixel size), with an
    /// accessible label; returns where it was drawn.
    pub fn show(
        &self,
        ui: &mut egui::Ui,
        max: egui::Vec2,
        max_zoom: f32,
        label: &str,
    ) -> Option<egui::Rect> {
        let size = self.size();
        if size.x <= 0.0 || size.y <= 0.0 {
            return None;
        }
        let zoom = (max.x / size.x).min(max.y / size.y).min(max_zoom).max(0.05);
        let shown = size * zoom;
        let response =
            ui.add(egui::Image::new((self.texture.id(), shown)).sense(egui::Sense::hover()));
        let label = label.to_owned();
        response.widget_info(move || egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
        // A justified layout can hand the widget more room than the image takes; the image is
        // painted at the top left of it, so outlines use the image's own size.
        Some(egui::Rect::from_min_size(response.rect.min, shown))
    }
}
