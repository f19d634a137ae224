//! The walkthrough (placeholder until the engine side lands).

use super::TeachCx;

/// How many steps the walkthrough has.
pub const STEP_COUNT: usize = 8;

/// The walkthrough view.
#[derive(Default)]
pub struct WalkthroughView;

impl WalkthroughView {
    /// Draws the view.
    pub fn ui(&mut self, ui: &mut egui::Ui, _tc: &mut TeachCx<'_, '_>) {
        ui.label("walkthrough");
    }
}
