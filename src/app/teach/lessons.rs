//! Lessons (placeholder until the engine side lands).

use crate::app::view::ViewCx;

/// The bar above a teaching view while a lesson is open.
pub fn lesson_bar_ui(_ui: &mut egui::Ui, _cx: &mut ViewCx<'_>) {}

impl crate::app::AttnApp {
    /// One step forward or back: through the open lesson's script, else through the teaching
    /// view on screen.
    pub(crate) fn teach_step(&mut self, step: super::presenter::Step) {
        super::presenter::step_view(&mut self.state, step);
    }
}
