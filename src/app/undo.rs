//! Undo and redo of settings edits: a bounded history of earlier values of one setting.
//!
//! The app watches a setting (today the ablated heads) rather than hooking every control that
//! edits it: whatever changed it (the grid's menu, a chip, the head picker, a session), the value
//! before the change is pushed once, and Undo brings it back.

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
