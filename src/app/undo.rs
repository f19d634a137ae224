//! Undo and redo of settings edits: a bounded history of earlier values of the settings the
//! user edits ([`Undoable`]: the mask, the selection, dims, mistakes, ablations, the model's and
//! the view's settings).
//!
//! The app watches those settings rather than hooking every control that edits them: whatever
//! changed them (a right-click, a chip, a slider, a session), the value before the change is
//! pushed once. It only looks while no pointer button is down and no text field has the keyboard,
//! so a slider drag or a typed mask is one edit, not one per frame or keystroke. The text itself
//! is not here: its text box has its own undo.

/// The most edits kept.
const MAX_EDITS: usize = 100;

/// Earlier and undone values of a setting, and the value last seen.
#[derive(Clone, Debug, PartialEq)]
pub struct History<T> {
    /// Values before each edit, oldest first.
    past: Vec<T>,
    /// Values undone, most recently undone last.
    future: Vec<T>,
    /// The value the last [`History::observe`] saw.
    seen: Option<T>,
}

impl<T> Default for History<T> {
    fn default() -> Self {
        Self {
            past: Vec::new(),
            future: Vec::new(),
            seen: None,
        }
    }
}

impl<T: Clone + PartialEq> History<T> {
    /// Records `now` as the current value; when it differs from the value seen before, that
    /// value becomes undoable and the redo list is dropped (a new edit ends it).
    pub fn observe(&mut self, now: &T) {
        match &self.seen {
            Some(seen) if seen == now => {}
            Some(seen) => {
                self.past.push(seen.clone());
                if self.past.len() > MAX_EDITS {
                    self.past.remove(0);
                }
                self.future.clear();
                self.seen = Some(now.clone());
            }
            None => self.seen = Some(now.clone()),
        }
    }

    /// True when there is an edit to undo.
    pub fn can_undo(&self) -> bool {
        !self.past.is_empty()
    }

    /// True when there is an undone edit to redo.
    pub fn can_redo(&self) -> bool {
        !self.future.is_empty()
    }

    /// The value before the last edit, replacing `current` (which becomes redoable); `None`
    /// when there is nothing to undo.
    pub fn undo(&mut self, current: &T) -> Option<T> {
        let before = self.past.pop()?;
        self.future.push(current.clone());
        self.seen = Some(before.clone());
        Some(before)
    }

    /// The value the last undo replaced; `None` when nothing was undone since the last edit.
    pub fn redo(&mut self, current: &T) -> Option<T> {
        let after = self.future.pop()?;
        self.past.push(current.clone());
        self.seen = Some(after.clone());
        Some(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_undo_and_redo_in_order() {
        let mut h = History::default();
        h.observe(&0);
        assert!(!h.can_undo());
        h.observe(&0);
        h.observe(&1);
        h.observe(&2);
        assert_eq!(h.undo(&2), Some(1));
        assert_eq!(h.undo(&1), Some(0));
        assert_eq!(h.undo(&0), None);
        assert_eq!(h.redo(&0), Some(1));
        // Observing the value an undo or redo set is no new edit.
        h.observe(&1);
        assert!(h.can_redo());
        // A new edit drops what was undone.
        h.observe(&5);
        assert!(!h.can_redo());
        assert_eq!(h.undo(&5), Some(1));
    }
}

/// The settings Undo brings back, copied out of the app's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Undoable {
    tokenizer: crate::tokenize::DemoTokenizer,
    demo: crate::model::DemoConfig,
    mask_text: String,
    truncate: bool,
    memory_budget: String,
    max_output: String,
    scale: crate::engine::ScoreScale,
    layer_idx: usize,
    all_layers: bool,
    head_idx: usize,
    head_mode: super::state::HeadMode,
    head_set: Vec<usize>,
    colormap: crate::render::Colormap,
    value_scale: crate::render::ValueScale,
    range: crate::render::RangeMode,
    hide_special: bool,
    selected_queries: Vec<usize>,
    query_combine: super::state::QueryCombine,
    head_view_hidden: Vec<usize>,
    head_view_threshold: f32,
    saliency: super::saliency::SaliencySettings,
    dims: Vec<crate::engine::DimSubset>,
    run_mistakes: Vec<crate::engine::Mistake>,
    ablations: Vec<crate::engine::Ablation>,
    show_difference: bool,
}

impl Undoable {
    /// The undoable settings of `s`.
    pub fn of(s: &super::AppState) -> Self {
        Self {
            tokenizer: s.tokenizer,
            demo: s.demo,
            mask_text: s.mask_text.clone(),
            truncate: s.truncate,
            memory_budget: s.memory_budget.clone(),
            max_output: s.max_output.clone(),
            scale: s.scale,
            layer_idx: s.layer_idx,
            all_layers: s.all_layers,
            head_idx: s.head_idx,
            head_mode: s.head_mode,
            head_set: s.head_set.clone(),
            colormap: s.colormap,
            value_scale: s.value_scale,
            range: s.range,
            hide_special: s.hide_special,
            selected_queries: s.selected_queries.clone(),
            query_combine: s.query_combine,
            head_view_hidden: s.head_view_hidden.clone(),
            head_view_threshold: s.head_view_threshold,
            saliency: s.saliency.clone(),
            dims: s.teach.dims.clone(),
            run_mistakes: s.teach.run_mistakes.clone(),
            ablations: s.ablations.clone(),
            show_difference: s.show_difference,
        }
    }

    /// Writes these settings back into `s`.
    pub fn apply(self, s: &mut super::AppState) {
        s.tokenizer = self.tokenizer;
        s.demo = self.demo;
        s.mask_text = self.mask_text;
        s.truncate = self.truncate;
        s.memory_budget = self.memory_budget;
        s.max_output = self.max_output;
        s.scale = self.scale;
        s.layer_idx = self.layer_idx;
        s.all_layers = self.all_layers;
        s.head_idx = self.head_idx;
        s.head_mode = self.head_mode;
        s.head_set = self.head_set;
        s.colormap = self.colormap;
        s.value_scale = self.value_scale;
        s.range = self.range;
        s.hide_special = self.hide_special;
        s.selected_queries = self.selected_queries;
        s.query_combine = self.query_combine;
        s.head_view_hidden = self.head_view_hidden;
        s.head_view_threshold = self.head_view_threshold;
        s.saliency = self.saliency;
        s.teach.dims = self.dims;
        s.teach.run_mistakes = self.run_mistakes;
        s.ablations = self.ablations;
        s.show_difference = self.show_difference;
    }
}
