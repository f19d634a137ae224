//! The app's panels, one file each: the menu bar, the side panel's sections (input and run
//! options, model, view), the status bar and the central area. Each is a [`super::view::View`].

pub mod central;
pub mod controls;
pub mod menu;
pub mod model;
pub mod status;
pub mod view_controls;
