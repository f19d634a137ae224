//! The Saliency view: which input tokens drive a model's output, by gradients, occlusion and
//! attention, computed on the worker through the one attribution pipeline
//! (`pipeline::attribute`, shared with `attnviz attribute`).
//!
//! One file per part: the persisted settings (`settings`), the worker-side work (`compute`),
//! the controller's cache, scheduling and Cancel (`controller`), the view (`view`), the score
//! colours (`colors`), the method table (`table`), the attributed continuation
//! (`continuation`) and the exports (`export`). `api` names the attribution types used.

pub mod api;
mod chart;
mod colors;
pub mod compute;
pub mod continuation;
pub mod controller;
pub mod export;
mod table;
pub mod view;

pub use crate::app::state::saliency as settings;
pub use controller::Controller;
pub use settings::SaliencySettings;
pub use view::{SaliencyExport, SaliencyView};
