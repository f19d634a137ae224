//! The teaching views' persisted settings: which teaching view, the walkthrough step, the key
//! of the neuron view, the per-head dimension subsets, the mistake shown, presenter mode and
//! the open lesson. Part of [`crate::app::AppState`] (`teach`), so sessions keep them.

use crate::app::state::ViewKind;
use crate::engine::{DimSubset, Mistake};
use crate::io::lesson::Lesson;
use crate::render::Colormap;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The teaching views, in switcher order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeachTab {
    /// Step by step through one head for one query.
    #[default]
    Walkthrough,
    /// Per-dimension products and the live dimension mask.
    Neurons,
    /// How d_model splits into heads and comes back together.
    MultiHead,
    /// FLOPs and memory of attention as the input grows.
    Cost,
    /// The classic mistakes, side by side with the correct version.
    Mistakes,
}

impl TeachTab {
    /// All teaching views, in switcher order.
    pub const ALL: [TeachTab; 5] = [
        TeachTab::Walkthrough,
        TeachTab::Neurons,
        TeachTab::MultiHead,
        TeachTab::Cost,
        TeachTab::Mistakes,
    ];

    /// The switcher label.
    pub fn label(self) -> &'static str {
        match self {
            TeachTab::Walkthrough => "Walkthrough",
            TeachTab::Neurons => "Neurons and dimensions",
            TeachTab::MultiHead => "Multi-head",
            TeachTab::Cost => "Cost",
            TeachTab::Mistakes => "Mistakes",
        }
    }

    /// Whether the view reads the engine's trace of the selected layer.
    pub fn needs_trace(self) -> bool {
        matches!(
            self,
            TeachTab::Walkthrough | TeachTab::Neurons | TeachTab::Mistakes
        )
    }
}

/// Everything the teaching views remember.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TeachSettings {
    /// The teaching view shown when the central view is "Teach".
    pub tab: TeachTab,
    /// The walkthrough step (0-based).
    pub step: usize,
    /// The key token of the neuron view (the query is the first selected token).
    pub key_idx: usize,
    /// Per head, the query/key dimensions kept (a head without an entry keeps all of them).
    pub dims: Vec<DimSubset>,
    /// The mistake the mistakes view shows beside the correct version.
    pub mistake: Option<Mistake>,
    /// Mistakes every run makes on purpose (a lesson can switch them on); empty normally.
    pub run_mistakes: Vec<Mistake>,
    /// Large fonts, no side panels, keyboard stepping, a high-contrast colormap.
    pub presenter: bool,
    /// The colormap to restore when presenter mode ends.
    pub colormap_before_presenter: Option<Colormap>,
    /// The open lesson (not saved in sessions: a lesson is opened from its file).
    #[serde(skip)]
    pub lesson: Option<Arc<OpenLesson>>,
    /// The step of the open lesson's script (0-based).
    pub lesson_step: usize,
}

/// A lesson opened from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct OpenLesson {
    /// The file it came from.
    pub path: PathBuf,
    /// Its text, settings and script.
    pub lesson: Lesson,
}

impl Default for TeachSettings {
    fn default() -> Self {
        Self {
            tab: TeachTab::Walkthrough,
            step: 0,
            key_idx: 0,
            dims: Vec::new(),
            mistake: None,
            run_mistakes: Vec::new(),
            presenter: false,
            colormap_before_presenter: None,
            lesson: None,
            lesson_step: 0,
        }
    }
}

impl TeachSettings {
    /// The mistake whose effect the worker measures: the mistakes view's, while it is shown.
    pub fn shown_mistake(&self, view: ViewKind) -> Option<Mistake> {
        (view == ViewKind::Teach && self.tab == TeachTab::Mistakes)
            .then_some(self.mistake)
            .flatten()
    }

    /// The dimensions head (`layer_idx`, `head_idx`) keeps, or `None` when it keeps all.
    pub fn kept_dims(&self, layer_idx: usize, head_idx: usize) -> Option<&[usize]> {
        self.dims
            .iter()
            .find(|d| d.layer_idx == layer_idx && d.head_idx == head_idx)
            .map(|d| d.dims.as_slice())
    }

    /// Keeps exactly `dims` of the head (sorted, without repeats); all of `0..d_head` removes
    /// the subset.
    pub fn set_kept_dims(
        &mut self,
        layer_idx: usize,
        head_idx: usize,
        d_head: usize,
        mut dims: Vec<usize>,
    ) {
        dims.retain(|&d| d < d_head);
        dims.sort_unstable();
        dims.dedup();
        self.dims
            .retain(|d| !(d.layer_idx == layer_idx && d.head_idx == head_idx));
        if dims.len() < d_head {
            self.dims.push(DimSubset {
                layer_idx,
                head_idx,
                dims,
            });
            self.dims.sort_by_key(|d| (d.layer_idx, d.head_idx));
        }
    }

    /// Switches dimension `dim` of the head on or off.
    pub fn toggle_dim(&mut self, layer_idx: usize, head_idx: usize, d_head: usize, dim: usize) {
        let mut kept: Vec<usize> = match self.kept_dims(layer_idx, head_idx) {
            Some(k) => k.to_vec(),
            None => (0..d_head).collect(),
        };
        if let Some(pos) = kept.iter().position(|&d| d == dim) {
            kept.remove(pos);
        } else {
            kept.push(dim);
        }
        self.set_kept_dims(layer_idx, head_idx, d_head, kept);
    }

    /// Drops subsets that do not fit a model of `layers` × `heads` heads of `d_head`
    /// dimensions (a session saved with another model is no error).
    pub fn clamp(&mut self, layers: usize, heads: usize, d_head: usize) {
        self.dims
            .retain(|d| d.layer_idx < layers && d.head_idx < heads);
        for d in &mut self.dims {
            d.dims.retain(|&i| i < d_head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggling_every_dimension_back_removes_the_subset() {
        let mut t = TeachSettings::default();
        t.toggle_dim(1, 2, 4, 3);
        assert_eq!(t.kept_dims(1, 2), Some(&[0, 1, 2][..]));
        t.toggle_dim(1, 2, 4, 0);
        assert_eq!(t.kept_dims(1, 2), Some(&[1, 2][..]));
        t.toggle_dim(1, 2, 4, 3);
        t.toggle_dim(1, 2, 4, 0);
        assert_eq!(t.kept_dims(1, 2), None, "all four kept again");
        t.set_kept_dims(0, 0, 4, vec![9, 2, 2]);
        assert_eq!(t.kept_dims(0, 0), Some(&[2][..]), "9 ≥ d_head is dropped");
        t.clamp(1, 1, 2);
        assert_eq!(t.dims.len(), 1);
        t.clamp(1, 1, 2);
        t.clamp(0, 0, 0);
        assert!(t.dims.is_empty());
    }
}
