//! The teaching views' persisted settings: which teaching view, the walkthrough step, the key
//! of the neuron view, the per-head dimension subsets, the mistake shown, presenter mode, the
//! open lesson and the sampling step's temperature, top-k, top-p and seed. Part of
//! [`crate::app::AppState`] (`teach`), so sessions keep them.

use super::ViewKind;
use crate::analysis::explain::WalkStep;
use crate::analysis::sampling::SamplingSettings;
use crate::engine::{DimSubset, Mistake};
use crate::pipeline::Positions;
use crate::render::Colormap;
use crate::render::teach::lesson::Lesson;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// The walkthrough's step after the head output: the next-token distribution, sampled
/// (`app::teach::sampling`).
pub const SAMPLING_STEP: usize = WalkStep::ALL.len();

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
    /// The walkthrough's sampling step: temperature, top-k, top-p and the next seed.
    pub sampling: SamplingControls,
}

/// The sampling step's sliders and seed (persisted; sessions without them get the defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingControls {
    /// Temperature, 0 (greedy) to [`SamplingControls::MAX_TEMPERATURE`].
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps them all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens reaching this probability; 1 keeps all.
    pub top_p: f32,
    /// The seed of the next draw ("Sample" uses it, then moves on to the next one).
    pub seed: u64,
}

impl Default for SamplingControls {
    fn default() -> Self {
        let plain = SamplingSettings::default();
        Self {
            temperature: plain.temperature,
            top_k: plain.top_k,
            top_p: plain.top_p,
            seed: 0,
        }
    }
}

impl SamplingControls {
    /// The temperature slider's end.
    pub const MAX_TEMPERATURE: f32 = 2.0;
    /// The top-k slider's end.
    pub const MAX_TOP_K: usize = 100;

    /// The settings the draw uses, repaired: a temperature outside 0..=2 or a p outside 0..=1
    /// (a hand-edited session) is clamped, NaN becomes the default.
    pub fn settings(&self) -> SamplingSettings {
        let fix = |v: f32, max: f32, default: f32| {
            if v.is_nan() {
                default
            } else {
                v.clamp(0.0, max)
            }
        };
        SamplingSettings {
            temperature: fix(self.temperature, Self::MAX_TEMPERATURE, 1.0),
            top_k: self.top_k,
            top_p: fix(self.top_p, 1.0, 1.0),
        }
    }
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
            sampling: SamplingControls::default(),
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

    /// The position whose whole next-token distribution the worker computes with the run: the
    /// walkthrough's query (the first selected token, else the last), while the sampling step
    /// is shown on a checkpoint. The demo has no vocabulary and no LM head, so it asks nothing.
    pub fn sampling_position(
        &self,
        view: ViewKind,
        checkpoint: bool,
        selected_queries: &[usize],
    ) -> Option<Positions> {
        let shown = view == ViewKind::Teach
            && self.tab == TeachTab::Walkthrough
            && self.step >= SAMPLING_STEP;
        (shown && checkpoint).then(|| {
            selected_queries
                .first()
                .map_or(Positions::Last, |&p| Positions::One(p))
        })
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

    #[test]
    fn sampling_asks_for_the_walkthrough_query_only_on_the_sampling_step_of_a_checkpoint() {
        let mut t = TeachSettings::default();
        assert_eq!(t.sampling_position(ViewKind::Teach, true, &[2]), None);
        t.step = super::SAMPLING_STEP;
        assert_eq!(
            t.sampling_position(ViewKind::Teach, true, &[2, 4]),
            Some(Positions::One(2))
        );
        assert_eq!(
            t.sampling_position(ViewKind::Teach, true, &[]),
            Some(Positions::Last)
        );
        assert_eq!(t.sampling_position(ViewKind::Teach, false, &[]), None);
        assert_eq!(t.sampling_position(ViewKind::Heatmap, true, &[]), None);
        // Older sessions have no sampling settings; odd values are repaired, not refused.
        let old: TeachSettings = serde_json::from_str(r#"{"step": 3}"#).unwrap();
        assert_eq!(old.sampling, SamplingControls::default());
        let odd: SamplingControls =
            serde_json::from_str(r#"{"temperature": 9, "top_p": -1, "top_k": 5}"#).unwrap();
        let s = odd.settings();
        assert_eq!((s.temperature, s.top_k, s.top_p), (2.0, 5, 0.0));
    }
}
