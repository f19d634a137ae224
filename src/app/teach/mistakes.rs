//! The mistakes view (placeholder until the engine side lands).

use super::TeachCx;
use super::presenter::Step;
use super::settings::TeachSettings;

/// The mistakes view.
#[derive(Default)]
pub struct MistakesView;

/// Shows the next or previous mistake.
pub fn step_mistake(_teach: &mut TeachSettings, _step: Step) {}

impl MistakesView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, _tc: &mut TeachCx<'_, '_>) {
        ui.label("mistakes");
    }
}
