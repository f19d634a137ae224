//! attnviz: shows, explains and exports transformer attention maps.
//!
//! The modules, from the bottom up; each imports only the ones before it (ARCHITECTURE.md,
//! "Floors"):
//! - [`fs`]: the ground floor: bounded readers of regular files, atomic writes, [`fs::IoError`];
//!   it imports nothing from the crate;
//! - [`tokenize`]: text to tokens, tokenizer.json, display labels, [`tokenize::TokenInput`];
//! - [`engine`]: tensors in, [`engine::AttentionRun`] out (the forward pass, with the applied
//!   mask decided once in [`engine::AppliedMask::decide`]), and the backward pass;
//! - [`model`]: the demo model and real checkpoints, and [`model::LoadedModel`], the model the
//!   pipeline runs;
//! - [`io`]: file formats: token inputs, attention files (JSON, NPY, NPZ, safetensors), sessions;
//! - [`grad`]: differentiable targets over models (the saliency methods' gradients);
//! - [`analysis`]: pure functions of runs: head fusion, attribution, teaching numbers, the
//!   walkthrough;
//! - [`pipeline`]: the one run path (model + input + options → [`pipeline::Run`]) for the CLI
//!   and the app, with every extra run (attributions, next tokens, the mistakes' effect,
//!   tensor exports) and its token limit, memory budget and cancellation;
//! - [`render`]: matrices to pixels, figures, PNG and SVG, and the lesson format;
//! - [`cli`] and [`app`]: thin layers over the above.
//!
//! Only `app` may use egui. It exists with the `gui` feature (on by default); without it the
//! crate is the library and the CLI alone.

pub mod analysis;
#[cfg(feature = "gui")]
pub mod app;
pub mod cli;
pub mod engine;
pub mod fs;
pub mod grad;
pub mod io;
pub mod model;
pub mod pipeline;
pub mod render;
pub mod tokenize;
