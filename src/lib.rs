//! attnviz: shows, explains and exports transformer attention maps.
//!
//! The modules, from the bottom up:
//! - [`tokenize`]: text to tokens;
//! - [`engine`]: tensors in, [`engine::AttentionRun`] out;
//! - [`model`]: the demo model (and real checkpoints);
//! - [`io`]: token inputs and attention files;
//! - [`pipeline`]: the one run path (model + input + options → run) for the CLI and the app;
//! - [`render`]: matrices to pixels and PNGs;
//! - [`cli`] and [`app`]: thin layers over the above.
//!
//! Only `app` may use egui. It exists with the `gui` feature (on by default); without it the
//! crate is the library and the CLI alone.

pub mod analysis;
#[cfg(feature = "gui")]
pub mod app;
pub mod cli;
pub mod engine;
pub mod grad;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod tokenize;
