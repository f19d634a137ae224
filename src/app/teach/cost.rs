//! The cost view (placeholder until the engine side lands).

use super::TeachCx;

/// The cost view.
#[derive(Default)]
pub struct CostView;

impl CostView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, _tc: &mut TeachCx<'_, '_>) {
        ui.label("cost");
    }
}
