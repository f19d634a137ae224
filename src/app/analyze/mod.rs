//! The Analyze view and the rollout map (issue 23), as `attnviz analyze` computes them: the
//! head-metrics dashboard (a layers × heads map of one metric, a sortable table, charts, the
//! induction probe), the attention flow into the selected query, value zeroing, and the
//! rollout map the Heatmap view shows instead of one head.
//!
//! One file per part: the persisted settings (`app::state::analyze`), the work that reads only the maps and
//! runs on its own thread (`background`), the work that runs the model on the worker
//! (`compute`), the controller's scheduling, cache and Cancel (`controller`), the rollout map
//! (`rollout`), the dashboard (`dashboard`) and the view's tabs (`view`).

pub mod background;
pub mod compute;
pub mod controller;
pub mod dashboard;
pub mod rollout;
pub mod view;

pub use crate::app::state::analyze::*;
pub use controller::Controller;
pub use view::AnalyzeView;
