//! The Answer view's figures on screen: `render::answer`'s figure (the export's layout and
//! style, drawn at the screen's pixel scale) uploaded as a NEAREST texture, re-drawn only when
//! what it shows changes, and the pointer mapped through the figure's own geometry (the cells,
//! edges and nodes its layout placed) to the cell or edge under it. The view paints only
//! selection outlines over the figure, never the figure itself.

use super::compute::Item;
use crate::analysis::answer::routes::Routes;
use crate::app::texture::upload;
use crate::pipeline::Run;
use crate::render::answer::{AnswerFigure, AnswerGeometry, AnswerPlot, AnswerStyle, UnitRect};
use crate::render::{FigureContext, RenderError};
use egui::{Rect, Response, Sense, TextureHandle, Vec2, vec2};
use std::sync::{Arc, Weak};

/// The plot of `item`, with the labels of the token ids it names. `routes` are the routes the
/// view cut from a routes graph (its target's position, the slider's τ); `None` for the other
/// items. `None` for an error item.
pub(super) fn plot_of<'a>(
    item: &'a Item,
    routes: Option<&'a Routes>,
) -> Option<(AnswerPlot<'a>, &'a [(u32, String)])> {
    Some(match item {
        Item::Lens(Ok(r)) => (
            AnswerPlot::Lens {
                target: r.target,
                positions: &r.positions,
                cells: &r.cells,
                at_target: &r.at_target,
            },
            &r.names,
        ),
        Item::Contributions(Ok(r)) => (
            AnswerPlot::Contributions {
                target: r.target,
                contributions: &r.contributions,
            },
            &r.names,
        ),
        Item::Routes(Ok(g)) => (
            AnswerPlot::Routes {
                routes: routes?,
                layers: g.layers(),
            },
            &[],
        ),
        Item::Patching(Ok(r)) => (
            AnswerPlot::Patching {
                target: r.target,
                patching: &r.patching,
                labels_b: &r.labels_b,
            },
            &r.names,
        ),
        _ => return None,
    })
}

/// Draws `plot` for `run` at `pixel_scale`, as an export at that scale draws it.
pub(super) fn draw(
    plot: AnswerPlot<'_>,
    names: &[(u32, String)],
    ctx: &FigureContext,
    pixel_scale: u32,
) -> Result<AnswerFigure, RenderError> {
    let label = |id: u32| super::compute::name_in(names, id);
    let style = AnswerStyle {
        ctx,
        token_label: &label,
        pixel_scale,
    };
    plot.figure(&style)
}

/// What a figure on screen was drawn from: the result (the same `Arc`s), the run (its labels,
/// model and settings are in the title), the routes' cut and the pixel scale.
#[derive(Clone, Debug)]
pub(super) struct FigureKey {
    pub(super) item: Item,
    pub(super) run: Weak<Run>,
    /// The routes' target position and τ's bits (0 for the other tabs).
    pub(super) cut: (usize, u64),
    pub(super) pixel_scale: u32,
}

impl PartialEq for FigureKey {
    fn eq(&self, other: &Self) -> bool {
        let same_item = match (&self.item, &other.item) {
            (Item::Lens(Ok(a)), Item::Lens(Ok(b))) => Arc::ptr_eq(a, b),
            (Item::Contributions(Ok(a)), Item::Contributions(Ok(b))) => Arc::ptr_eq(a, b),
            (Item::Routes(Ok(a)), Item::Routes(Ok(b))) => Arc::ptr_eq(a, b),
            (Item::Patching(Ok(a)), Item::Patching(Ok(b))) => Arc::ptr_eq(a, b),
            _ => false,
        };
        // A held `Weak` keeps its allocation, so another run cannot take its address.
        same_item
            && Weak::ptr_eq(&self.run, &other.run)
            && self.cut == other.cut
            && self.pixel_scale == other.pixel_scale
    }
}

/// One tab's uploaded figure.
pub(super) struct Shown {
    key: FigureKey,
    texture: TextureHandle,
    /// The pixels uploaded and where the figure's parts are.
    pub(super) figure: AnswerFigure,
    /// Where the figure was drawn last, in points.
    pub(super) rect: Option<Rect>,
}

/// The figure of one tab.
#[derive(Default)]
pub(super) struct FigureSlot {
    shown: Option<Shown>,
    /// Why the figure could not be drawn.
    error: Option<String>,
    /// Uploads so far (hovering and clicking must not add to it).
    pub(super) uploads: usize,
}

/// A figure placed on screen: where, and how screen points map to its scene units.
pub(super) struct Placed<'a> {
    /// The image's response (hover and clicks).
    pub(super) response: Response,
    /// The image's rectangle in points.
    pub(super) rect: Rect,
    /// The figure's geometry, in scene units.
    pub(super) geometry: &'a AnswerGeometry,
    /// Scene units per point, along x and y.
    units_per_point: Vec2,
}

impl Placed<'_> {
    /// The scene units under the screen point `pos`.
    pub(super) fn unit_from_screen(&self, pos: egui::Pos2) -> (f32, f32) {
        let d = (pos - self.rect.min) * self.units_per_point;
        (d.x, d.y)
    }

    /// The screen rectangle of a rectangle in scene units.
    pub(super) fn screen_from_unit(&self, r: UnitRect) -> Rect {
        let per_unit = vec2(1.0 / self.units_per_point.x, 1.0 / self.units_per_point.y);
        Rect::from_min_size(
            self.rect.min + vec2(r.x, r.y) * per_unit,
            vec2(r.w, r.h) * per_unit,
        )
    }

    /// The scene units under the pointer, while it is over the figure.
    pub(super) fn hovered_unit(&self) -> Option<(f32, f32)> {
        self.response.hover_pos().map(|p| self.unit_from_screen(p))
    }

    /// The scene units clicked (primary) this frame.
    pub(super) fn clicked_unit(&self) -> Option<(f32, f32)> {
        if !self.response.clicked() {
            return None;
        }
        self.response
            .interact_pointer_pos()
            .map(|p| self.unit_from_screen(p))
    }
}

/// The screen's pixels per point as a figure pixel scale (1–8).
pub(super) fn pixel_scale(ctx: &egui::Context) -> u32 {
    (ctx.pixels_per_point().round() as u32).clamp(1, crate::render::figure::MAX_PIXEL_SCALE)
}

impl FigureSlot {
    /// The figure on screen, if one is drawn.
    pub(super) fn shown(&self) -> Option<&Shown> {
        self.shown.as_ref()
    }

    /// Makes sure the figure for `key` is uploaded (drawn by `make` only when the key
    /// changed), then shows it at one texel per screen pixel (a figure wider than the room
    /// scrolls sideways rather than shrinking its 10–12 px texts), with the accessible `label`. `None` when there is no figure; the reason is
    /// then written where it would be.
    pub(super) fn ui<'s>(
        &'s mut self,
        ui: &mut egui::Ui,
        key: FigureKey,
        label: &str,
        make: impl FnOnce() -> Option<Result<AnswerFigure, RenderError>>,
    ) -> Option<Placed<'s>> {
        if self.shown.as_ref().is_none_or(|s| s.key != key) {
            self.shown = None;
            self.error = None;
            match make() {
                Some(Ok(figure)) if figure.image.width() > 0 && figure.image.height() > 0 => {
                    let texture = upload(ui.ctx(), "answer-figure", &figure.image);
                    self.uploads += 1;
                    self.shown = Some(Shown {
                        key,
                        texture,
                        figure,
                        rect: None,
                    });
                }
                Some(Ok(_)) => self.error = Some("the figure is empty".to_owned()),
                Some(Err(e)) => self.error = Some(e.to_string()),
                None => {}
            }
        }
        if let Some(e) = &self.error {
            ui.colored_label(ui.visuals().error_fg_color, e);
        }
        let shown = self.shown.as_mut()?;
        let img = &shown.figure.image;
        let px = vec2(img.width() as f32, img.height() as f32);
        let scale = shown.figure.pixel_scale as f32;
        // One texel per screen pixel: the pixels an export at this scale writes.
        let size = px / scale;
        let id = shown.texture.id();
        let label = label.to_owned();
        let response = egui::ScrollArea::horizontal()
            .id_salt("answer-figure-scroll")
            .show(ui, |ui| {
                let r = ui.add(egui::Image::new((id, size)).sense(Sense::click()));
                r.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &label));
                r
            })
            .inner;
        let rect = Rect::from_min_size(response.rect.min, size);
        shown.rect = Some(rect);
        let units = vec2(
            px.x / scale / size.x.max(1e-3),
            px.y / scale / size.y.max(1e-3),
        );
        Some(Placed {
            response,
            rect,
            geometry: &shown.figure.geometry,
            units_per_point: units,
        })
    }
}
