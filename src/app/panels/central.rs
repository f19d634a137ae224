//! The central area: the view switcher, the token strip and the chosen view (heatmap, grid or
//! head view).

use crate::app::grid::GridView;
use crate::app::head_view::HeadView;
use crate::app::heatmap::HeatmapView;
use crate::app::state::ViewKind;
use crate::app::token_strip::TokenStrip;
use crate::app::view::{View, ViewCx};

/// The central area and the views it switches between.
#[derive(Default)]
pub struct Central {
    /// One head or a combination, as a heatmap.
    pub heatmap: HeatmapView,
    /// Every layer × head as thumbnails.
    pub grid: GridView,
    /// Lines between two token columns.
    pub head_view: HeadView,
    /// The tokens, clickable to select queries.
    pub token_strip: TokenStrip,
}

impl View for Central {
    fn ui(&mut self, ui: &mut egui::Ui, cx: &mut ViewCx<'_>) {
        ui.horizontal(|ui| {
            for v in ViewKind::ALL {
                ui.selectable_value(&mut cx.state.view, v, v.label());
            }
        });
        let Some(run) = cx.run.clone() else {
            ui.spinner();
            return;
        };
        let labels = cx.labels.clone();
        self.token_strip.ui(ui, &run, &labels, cx.state);
        ui.separator();
        match cx.state.view {
            ViewKind::Heatmap => self.heatmap.ui(ui, &run, &labels, cx.state),
            ViewKind::Grid => self.grid.ui(ui, &run, cx.state, &cx.kv_groups),
            ViewKind::HeadView => self.head_view.ui(ui, &run, &labels, cx.state),
        }
    }
}
