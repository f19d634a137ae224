//! Presenter mode: large fonts, no side panels, a high-contrast colormap, and keyboard stepping
//! (space or → forward, ← back, F5 on and off, Escape off). Without presenter mode the same
//! keys step an open lesson; otherwise the arrow keys keep their usual meaning (layer, head).

use super::settings::TeachTab;
use crate::app::AppState;
use crate::app::state::ViewKind;
use crate::render::Colormap;

/// How much larger every text style is in presenter mode.
pub const FONT_SCALE: f32 = 1.6;

/// The colormap presenter mode switches to (unless a high-contrast one is chosen already):
/// readable on a projector.
pub const PRESENTER_COLORMAP: Colormap = Colormap::Turbo;

/// The smallest text of a walkthrough figure on screen in presenter mode, in points.
pub const MIN_FIGURE_TEXT_PX: f32 = 18.0;

/// The pixel scale presenter mode renders a walkthrough figure at for a view `width` points
/// wide: the figure is then shown at the view's width, shrunk (never enlarged, so it stays
/// sharp) by at most a factor that keeps its smallest text at [`MIN_FIGURE_TEXT_PX`].
pub fn figure_pixel_scale(width: f32) -> u32 {
    // Shown `width` wide, a figure W px wide at 1× (600 to 900 px) and rendered at scale s is
    // shrunk by width / (W s), so its smallest text (11 px at 1×) is 11 · width / W on screen
    // whatever s is: about 19 px or more in a 1,600 px window. The scale only has to make the
    // image at least `width` wide, so that it is never enlarged (blurred): s = ⌈width / 600⌉.
    ((width / 600.0).ceil() as u32).clamp(2, 8)
}

/// `img` resampled (area-averaged) to `width` pixels wide when it is wider; as it is otherwise
/// or when `width` is 0.
pub fn fit_to_width(img: image::RgbaImage, width: u32) -> image::RgbaImage {
    if width == 0 || img.width() <= width {
        return img;
    }
    let height = (u64::from(img.height()) * u64::from(width) / u64::from(img.width())).max(1);
    image::imageops::resize(
        &img,
        width,
        height as u32,
        image::imageops::FilterType::Triangle,
    )
}

/// The text colour of presenter mode: the theme's strongest, for a contrast of at least 7:1
/// on the panels (egui's default body text is grey, about 5:1 on its dark panel).
fn presenter_text(dark: bool) -> egui::Color32 {
    if dark {
        egui::Color32::from_gray(245)
    } else {
        egui::Color32::from_gray(10)
    }
}

/// Sets egui's text sizes and colour for presenter mode (`on`) or back to the defaults, only
/// when they differ from what is set (cheap to call every frame).
pub fn apply_style(ctx: &egui::Context, on: bool) {
    let scale = if on { FONT_SCALE } else { 1.0 };
    let wanted = egui::style::default_text_styles();
    let body = wanted
        .get(&egui::TextStyle::Body)
        .map_or(12.5, |f| f.size * scale);
    let style = ctx.global_style();
    let current = style
        .text_styles
        .get(&egui::TextStyle::Body)
        .map(|f| f.size);
    let colour = on.then(|| presenter_text(style.visuals.dark_mode));
    if current.is_some_and(|c| (c - body).abs() < 0.01)
        && style.visuals.override_text_color == colour
    {
        return;
    }
    ctx.all_styles_mut(|style| {
        style.visuals.override_text_color = on.then(|| presenter_text(style.visuals.dark_mode));
        style.text_styles = wanted
            .iter()
            .map(|(k, f)| {
                (
                    k.clone(),
                    egui::FontId::new(f.size * scale, f.family.clone()),
                )
            })
            .collect();
    });
}

/// Switches presenter mode: on, it remembers the colormap and takes the high-contrast one; off,
/// it puts the remembered colormap back.
pub fn toggle(state: &mut AppState) {
    let teach = &mut state.teach;
    teach.presenter = !teach.presenter;
    if teach.presenter {
        teach.colormap_before_presenter = Some(state.colormap);
        if !state.colormap.is_high_contrast() {
            state.colormap = PRESENTER_COLORMAP;
        }
    } else if let Some(before) = teach.colormap_before_presenter.take() {
        state.colormap = before;
    }
}

/// What a step key does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Space, →, Page Down.
    Forward,
    /// ←, Page Up.
    Back,
}

/// Steps the teaching view on screen when no lesson is open: the walkthrough's steps, or the
/// mistakes one after another. Other views do not step.
pub fn step_view(state: &mut AppState, step: Step) {
    if state.view != ViewKind::Teach {
        return;
    }
    let teach = &mut state.teach;
    match teach.tab {
        TeachTab::Walkthrough => {
            let last = super::walkthrough::STEP_COUNT - 1;
            teach.step = match step {
                Step::Forward => (teach.step + 1).min(last),
                Step::Back => teach.step.saturating_sub(1),
            };
        }
        TeachTab::Mistakes => super::mistakes::step_mistake(teach, step),
        TeachTab::Neurons | TeachTab::MultiHead | TeachTab::Cost => {}
    }
}
