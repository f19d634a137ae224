//! The Answer view: where the answer forms. The logit lens (what each layer would predict),
//! direct contributions (what each head and MLP adds to the target's logit), information-flow
//! routes and activation patching, computed on the worker through `pipeline::answer` (as
//! `attnviz analyze`), following the current input, mask and ablations.
//!
//! One file per part: the persisted settings (`app::state::answer`, their methods here), the
//! worker-side work (`compute`), the controller's cache, scheduling and Cancel (`controller`),
//! the view (`view`), its figures on screen (`figure`: `render::answer`'s pixels and geometry)
//! and its exports (`export`).

pub mod compute;
pub mod controller;
pub mod export;
mod figure;
pub mod view;

use compute::{Kind, TargetChoice};

pub use crate::app::state::answer::{AnswerSettings, AnswerTab};
pub use controller::Controller;
pub use export::AnswerExport;
pub use view::AnswerView;

/// The lens table shows at most this many positions: the last ones.
pub const LENS_POSITIONS: usize = 12;
/// Candidates per lens cell.
pub const LENS_TOP: usize = 5;

impl AnswerTab {
    /// Every tab, in order.
    pub const ALL: [AnswerTab; 4] = [
        AnswerTab::Lens,
        AnswerTab::Contributions,
        AnswerTab::Routes,
        AnswerTab::Patching,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            AnswerTab::Lens => "Logit lens",
            AnswerTab::Contributions => "Contributions",
            AnswerTab::Routes => "Routes",
            AnswerTab::Patching => "Patching",
        }
    }
}

impl AnswerSettings {
    /// The target on an input of `n` tokens (a position past the end falls back to the last).
    pub fn target_on(&self, n: usize) -> TargetChoice {
        let mut t = self.target.clone();
        if t.position.is_some_and(|p| p >= n) {
            t = TargetChoice::default();
        }
        t
    }

    /// The positions the lens table shows on `n` tokens: the last [`LENS_POSITIONS`], and the
    /// target's.
    pub fn lens_positions(&self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (n.saturating_sub(LENS_POSITIONS)..n).collect();
        if let Some(t) = self.target_on(n).position
            && !p.contains(&t)
        {
            p.insert(0, t);
        }
        p
    }

    /// The work of `tab` on `n` tokens.
    pub fn kind(&self, tab: AnswerTab, n: usize) -> Kind {
        let target = self.target_on(n);
        match tab {
            AnswerTab::Lens => Kind::Lens {
                target,
                positions: self.lens_positions(n),
                k: LENS_TOP,
            },
            AnswerTab::Contributions => Kind::Contributions { target },
            AnswerTab::Routes => Kind::Routes,
            AnswerTab::Patching => Kind::Patching {
                text_b: self.text_b.clone(),
                site: self.site,
                target,
            },
        }
    }
}

/// A corrupted text to start patching from: `text` with its longest word replaced by
/// another (a capital's name, as in the classic "Eiffel Tower → Paris" demo); the user edits
/// it to taste.
pub fn suggest_corrupted(text: &str) -> String {
    let longest = text
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .max_by_key(|w| w.chars().count());
    match longest {
        Some(word) => {
            let other = if word == "London" { "Paris" } else { "London" };
            text.replacen(word, other, 1)
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suggestion_swaps_the_longest_word() {
        assert_eq!(
            suggest_corrupted("The Eiffel Tower is in the city of"),
            "The London Tower is in the city of"
        );
        // "London" is the longest word here: it becomes the other capital.
        assert_eq!(suggest_corrupted("London is big"), "Paris is big");
        assert_eq!(suggest_corrupted("   "), "   ");
    }

    #[test]
    fn lens_positions_are_the_last_and_the_target() {
        let mut s = AnswerSettings::default();
        assert_eq!(s.lens_positions(3), vec![0, 1, 2]);
        assert_eq!(s.lens_positions(20).len(), LENS_POSITIONS);
        s.target.position = Some(1);
        assert_eq!(s.lens_positions(20)[0], 1);
        // A position past the end is the default again.
        assert_eq!(s.target_on(1), TargetChoice::default());
    }
}
