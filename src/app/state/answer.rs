//! The Answer view's persisted settings (part of [`AppState`](super::AppState), so sessions keep
//! them): the tab, the target, the routes' threshold and the patching input. What they ask the
//! worker for is `app::answer`'s (`AnswerSettings::kind`, `TargetChoice::spec`).

use crate::analysis::answer::patching::PatchSite;
use crate::analysis::answer::routes::DEFAULT_THRESHOLD;
use serde::{Deserialize, Serialize};

/// The Answer view's tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnswerTab {
    /// The logit lens.
    #[default]
    Lens,
    /// Direct contributions.
    Contributions,
    /// Information-flow routes.
    Routes,
    /// Activation patching.
    Patching,
}

/// The target the user picked: position P (default the last token), token T (default the
/// model's own top-1 there) and an optional foil F.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TargetChoice {
    /// P; `None` for the last token.
    pub position: Option<usize>,
    /// T's id; `None` for the model's top-1.
    pub token: Option<u32>,
    /// F's id.
    pub foil: Option<u32>,
}

/// What the Answer view shows and for which target. Persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnswerSettings {
    /// The tab.
    pub tab: AnswerTab,
    /// The target (position, token, foil).
    pub target: TargetChoice,
    /// The routes' threshold τ.
    pub threshold: f64,
    /// The corrupted text for patching; empty until the view fills it from the input.
    pub text_b: String,
    /// The site patching patches.
    pub site: PatchSite,
    /// The head whose per-key contribution is shown.
    pub head: Option<(usize, usize)>,
    /// The lens cell whose candidates are listed: (layer, position).
    pub lens_cell: Option<(usize, usize)>,
}

impl Default for AnswerSettings {
    fn default() -> Self {
        Self {
            tab: AnswerTab::default(),
            target: TargetChoice::default(),
            threshold: DEFAULT_THRESHOLD,
            text_b: String::new(),
            site: PatchSite::default(),
            head: None,
            lens_cell: None,
        }
    }
}
