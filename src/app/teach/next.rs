//! The sampling step's next-token choices: computed on the worker by
//! [`crate::pipeline::next_choices`] (the LM head `attnviz next` uses), ranked once and labelled,
//! so that the UI thread only reshapes them when a slider moves.

pub use crate::app::job::NextOutcome;
pub use crate::pipeline::{NextChoices, next_choices};
