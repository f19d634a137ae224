//! The app's persisted settings: input, model, run options, selections and view settings.
//!
//! One `serde(default)` struct, saved on exit (eframe storage) and in session files. Anything
//! loaded is repaired against the model it meets by [`AppState::clamp`], so an index that no
//! longer exists is never an error.
//!
//! The views' own persisted settings are here too, one file each (`saliency`, `answer`,
//! `analyze`, `teach`): the state sits below every view, so it imports none.

pub mod analyze;
pub mod answer;
pub mod saliency;
pub mod teach;

use super::job::JobKey;
pub use super::theme::Theme;
pub use super::token_strip::QueryCombine;
use crate::analysis::{HeadSelection, LayerSelection, MapsKind, ViewSpec};
use crate::engine::{Ablation, AblationMode, MaskSpec, RunOptions, ScoreScale};
use crate::io::TokenInput;
use crate::model::DemoConfig;
use crate::render::{Colormap, RangeMode, RenderStyle, ValueScale};
use crate::tokenize::DemoTokenizer;
use serde::{Deserialize, Serialize};

/// The sample text the app opens with: repeats show the duplicate and induction heads.
pub const SAMPLE_TEXT: &str =
    "The cat sat on the mat because the cat was tired . The cat sat on the mat again .";

/// The central view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ViewKind {
    /// One head, or a combination, as a heatmap.
    #[default]
    Heatmap,
    /// Every layer × head as thumbnails.
    Grid,
    /// BertViz-style lines between two token columns.
    HeadView,
    /// Which input tokens drive a target, by gradients, occlusion and attention.
    Saliency,
    /// The teaching views (walkthrough, neurons and dimensions, multi-head, cost, mistakes).
    Teach,
    /// Where the answer forms: logit lens, contributions, routes, patching.
    Answer,
    /// Head metrics, attention flow and value zeroing.
    Analyze,
}

impl ViewKind {
    /// All views, in switcher order.
    pub const ALL: [ViewKind; 7] = [
        ViewKind::Heatmap,
        ViewKind::Grid,
        ViewKind::HeadView,
        ViewKind::Saliency,
        ViewKind::Answer,
        ViewKind::Analyze,
        ViewKind::Teach,
    ];

    /// The switcher label.
    pub fn label(self) -> &'static str {
        match self {
            ViewKind::Heatmap => "Heatmap",
            ViewKind::Grid => "Grid",
            ViewKind::HeadView => "Head view",
            ViewKind::Saliency => "Saliency",
            ViewKind::Teach => "Teach",
            ViewKind::Answer => "Answer",
            ViewKind::Analyze => "Analyze",
        }
    }
}

/// How the heatmap combines heads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadMode {
    /// The selected head.
    #[default]
    Single,
    /// The mean over the layer's heads.
    Mean,
    /// The elementwise max over the layer's heads.
    Max,
    /// The mean over `head_set`.
    Set,
}

impl HeadMode {
    /// All modes, for pickers.
    pub const ALL: [HeadMode; 4] = [
        HeadMode::Single,
        HeadMode::Mean,
        HeadMode::Max,
        HeadMode::Set,
    ];

    /// The picker label.
    pub fn label(self) -> &'static str {
        match self {
            HeadMode::Single => "one head",
            HeadMode::Mean => "mean of heads",
            HeadMode::Max => "max of heads",
            HeadMode::Set => "mean of a set",
        }
    }
}

/// Everything the user chose. Persisted across restarts and saved in session files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppState {
    /// The input text.
    pub text: String,
    /// Token strings from a `{"tokens": [...]}` file, run as they are instead of `text`;
    /// cleared when the text is edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    /// Token ids from a `{"token_ids": [...]}` file, run as they are instead of `text`;
    /// cleared when the text is edited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
    /// The demo tokenizer.
    pub tokenizer: DemoTokenizer,
    /// The demo model's settings.
    pub demo: DemoConfig,
    /// A Hugging Face checkpoint folder, or `None` for the demo.
    pub model_dir: Option<std::path::PathBuf>,
    /// Checkpoint folders opened before, newest first.
    pub recent_models: Vec<std::path::PathBuf>,
    /// The mask spec, as typed (see ARCHITECTURE.md).
    pub mask_text: String,
    /// Cut inputs longer than the model's token limit instead of failing (the CLI's
    /// `--truncate`).
    pub truncate: bool,
    /// The most memory one run may need (`8GiB`, `512MB`, the CLI's `--memory-budget`);
    /// empty for the default, the smaller of 8 GiB and half the physical memory.
    pub memory_budget: String,
    /// The largest tensor export written (`4GiB`, the CLI's `--max-output`); empty for the
    /// default, 1 GiB.
    pub max_output: String,
    /// Score scale.
    pub scale: ScoreScale,
    /// The central view.
    pub view: ViewKind,
    /// Selected layer.
    pub layer_idx: usize,
    /// Show the mean over all layers instead of one.
    pub all_layers: bool,
    /// Selected head.
    pub head_idx: usize,
    /// How heads combine in the heatmap.
    pub head_mode: HeadMode,
    /// Heads averaged in [`HeadMode::Set`].
    pub head_set: Vec<usize>,
    /// Colormap.
    pub colormap: Colormap,
    /// Linear or log colours.
    pub value_scale: ValueScale,
    /// Per-head or shared colour range.
    pub range: RangeMode,
    /// Hide special tokens and renormalise rows.
    pub hide_special: bool,
    /// Selected query tokens; their rows are highlighted and charted.
    pub selected_queries: Vec<usize>,
    /// How several selected rows combine.
    pub query_combine: QueryCombine,
    /// Heads switched off in the head view.
    pub head_view_hidden: Vec<usize>,
    /// Lines below this weight are not drawn in the head view.
    pub head_view_threshold: f32,
    /// Light or dark.
    pub theme: Theme,
    /// The Saliency view's method, target and options.
    pub saliency: saliency::SaliencySettings,
    /// The Answer view's tab, target, threshold and patching input.
    pub answer: answer::AnswerSettings,
    /// The Analyze view's tab, metric and sorting, and the rollout map's settings.
    pub analyze: analyze::AnalyzeSettings,
    /// The teaching views' settings (dimension subsets, walkthrough step, presenter mode, …).
    pub teach: teach::TeachSettings,
    /// Heads whose output every run ablates (the CLI's `--ablate`), in their one order.
    pub ablations: Vec<Ablation>,
    /// With ablations, the Heatmap and the Grid show the ablated run's attention minus the
    /// unablated run's.
    pub show_difference: bool,
    /// Files opened before (inputs, attention files, sessions, lessons), newest first.
    pub recent_files: Vec<std::path::PathBuf>,
    /// The folder each kind of file dialog last used, by `DialogPurpose::folder_key`
    /// (`open`, `session`, `model`, `export`, …).
    pub dialog_folders: std::collections::BTreeMap<String, std::path::PathBuf>,
}

impl Default for AppState {
    fn default() -> Self {
        Self {
            text: SAMPLE_TEXT.to_owned(),
            tokens: None,
            token_ids: None,
            tokenizer: DemoTokenizer::Words,
            demo: DemoConfig::default(),
            model_dir: None,
            recent_models: Vec::new(),
            mask_text: "none".to_owned(),
            truncate: false,
            memory_budget: String::new(),
            max_output: String::new(),
            scale: ScoreScale::InvSqrtDHead,
            view: ViewKind::Heatmap,
            layer_idx: 0,
            all_layers: false,
            head_idx: 0,
            head_mode: HeadMode::Single,
            head_set: Vec::new(),
            colormap: Colormap::Viridis,
            value_scale: ValueScale::Linear,
            range: RangeMode::PerHead,
            hide_special: false,
            selected_queries: Vec::new(),
            query_combine: QueryCombine::Mean,
            head_view_hidden: Vec::new(),
            head_view_threshold: 0.05,
            theme: Theme::Dark,
            saliency: saliency::SaliencySettings::default(),
            answer: answer::AnswerSettings::default(),
            analyze: analyze::AnalyzeSettings::default(),
            teach: teach::TeachSettings::default(),
            ablations: Vec::new(),
            show_difference: false,
            recent_files: Vec::new(),
            dialog_folders: std::collections::BTreeMap::new(),
        }
    }
}

impl AppState {
    /// The job these settings ask for, or why they cannot run.
    pub fn job_key(&self) -> Result<JobKey, String> {
        let mask = MaskSpec::parse(&self.mask_text).map_err(|e| e.to_string())?;
        if self.model_dir.is_none() {
            self.demo.validate().map_err(|e| e.to_string())?;
        }
        Ok(JobKey {
            input: self.input(),
            tokenizer: self.tokenizer,
            demo: self.demo,
            model_dir: self.model_dir.clone(),
            opts: RunOptions {
                mask,
                scale: self.scale,
                dims: self.teach.dims.clone(),
                mistakes: self.teach.run_mistakes.clone(),
                // The teaching views read the selected layer's trace; other views never
                // recompute when the layer changes.
                trace_layer: (self.view == ViewKind::Teach && self.teach.tab.needs_trace())
                    .then_some(self.layer_idx),
                ablations: self.ablations.clone(),
                // A change of ablations then recomputes from the first layer it touches.
                keep_residuals: true,
                ..RunOptions::default()
            },
            truncate: self.truncate,
            memory_budget: self.memory_budget_bytes()?,
            mistake: self.teach.shown_mistake(self.view),
            sampling: self.teach.sampling_position(
                self.view,
                self.model_dir.is_some(),
                &self.selected_queries,
            ),
        })
    }

    /// The memory budget in bytes: the typed size, or the default when the field is empty.
    pub fn memory_budget_bytes(&self) -> Result<u64, String> {
        if self.memory_budget.trim().is_empty() {
            return Ok(crate::pipeline::default_memory_budget());
        }
        self.memory_budget
            .parse::<crate::pipeline::ByteSize>()
            .map(|b| b.0)
            .map_err(|e| format!("memory budget: {e}"))
    }

    /// The largest tensor export in bytes: the typed size, or 1 GiB when the field is empty.
    pub fn max_output_bytes(&self) -> Result<u64, String> {
        if self.max_output.trim().is_empty() {
            return Ok(crate::pipeline::DEFAULT_MAX_OUTPUT);
        }
        self.max_output
            .parse::<crate::pipeline::ByteSize>()
            .map(|b| b.0)
            .map_err(|e| format!("largest export: {e}"))
    }

    /// What runs: the token ids or strings of an opened token file, else the text.
    pub fn input(&self) -> TokenInput {
        match (&self.token_ids, &self.tokens) {
            (Some(ids), _) => TokenInput::Ids(ids.clone()),
            (None, Some(tokens)) => TokenInput::Tokens(tokens.clone()),
            (None, None) => TokenInput::Text(self.text.clone()),
        }
    }

    /// Sets the input: text replaces any token file; token strings and ids are kept as they
    /// are, with their space-joined form in the text box.
    pub fn set_input(&mut self, input: TokenInput) {
        self.tokens = None;
        self.token_ids = None;
        match input {
            TokenInput::Text(text) => self.text = text,
            TokenInput::Tokens(tokens) => {
                self.text = tokens.join(" ");
                self.tokens = Some(tokens);
            }
            TokenInput::Ids(ids) => {
                self.text = ids.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
                self.token_ids = Some(ids);
            }
        }
    }

    /// The heatmap's selection.
    pub fn view_spec(&self) -> ViewSpec {
        ViewSpec {
            layer: if self.all_layers {
                LayerSelection::Mean
            } else {
                LayerSelection::One(self.layer_idx)
            },
            heads: match self.head_mode {
                HeadMode::Single => HeadSelection::Head(self.head_idx),
                HeadMode::Mean => HeadSelection::Mean,
                HeadMode::Max => HeadSelection::Max,
                HeadMode::Set if self.head_set.is_empty() => HeadSelection::Head(self.head_idx),
                HeadMode::Set => HeadSelection::Set(self.head_set.clone()),
            },
            hide_special: self.hide_special,
        }
    }

    /// How the current view draws maps of `kind`, on screen and in exports: the chosen
    /// colours, fitted to differences where `kind` is one (see [`RenderStyle::fitted_to`]).
    pub fn render_style(&self, cell_px: u32, labels: bool, kind: MapsKind) -> RenderStyle {
        RenderStyle {
            colormap: self.colormap,
            scale: self.value_scale,
            range: self.range,
            cell_px,
            labels,
            pixel_scale: 1,
            centred: false,
        }
        .fitted_to(kind)
    }

    /// The mode head (layer, head) is ablated with, if it is.
    pub fn ablation_of(&self, layer_idx: usize, head_idx: usize) -> Option<AblationMode> {
        Ablation::find(&self.ablations, layer_idx, head_idx)
    }

    /// Ablates (layer, head) with `mode` (replacing another mode of the same head), or
    /// restores it with `None`; the list stays in its one order.
    pub fn set_ablation(&mut self, layer_idx: usize, head_idx: usize, mode: Option<AblationMode>) {
        self.ablations
            .retain(|a| (a.layer_idx, a.head_idx) != (layer_idx, head_idx));
        if let Some(mode) = mode {
            self.ablations.push(Ablation {
                layer_idx,
                head_idx,
                mode,
            });
            self.ablations.sort();
        }
    }

    /// Remembers a file at the top of the recent files (at most 10).
    pub fn remember_file(&mut self, path: &std::path::Path) {
        self.recent_files.retain(|p| p != path);
        self.recent_files.insert(0, path.to_owned());
        self.recent_files.truncate(10);
    }

    /// Remembers the folder a dialog for `key` ended in (the next one starts there).
    pub fn remember_folder(&mut self, key: &str, folder: &std::path::Path) {
        self.dialog_folders
            .insert(key.to_owned(), folder.to_owned());
    }

    /// Remembers a checkpoint folder at the top of the recent list (at most 8).
    pub fn remember_model(&mut self, dir: &std::path::Path) {
        self.recent_models.retain(|d| d != dir);
        self.recent_models.insert(0, dir.to_owned());
        self.recent_models.truncate(8);
    }

    /// Checks the fields a session file sets that the app lays out or runs against their
    /// bounds (a 20 MB text would abort the text box), naming the first one too large.
    pub fn check_bounds(&self) -> Result<(), String> {
        const MAX_TEXT_BYTES: usize = 4 << 20;
        const MAX_TOKENS: usize = 1 << 20;
        const MAX_FIELD_BYTES: usize = 64 << 10;
        let too_long = |field: &str, len: usize, max: usize, unit: &str| {
            Err(format!("{field:?} has {len} {unit}; at most {max}"))
        };
        if self.text.len() > MAX_TEXT_BYTES {
            return too_long("text", self.text.len(), MAX_TEXT_BYTES, "bytes");
        }
        if let Some(t) = self.tokens.as_ref().filter(|t| t.len() > MAX_TOKENS) {
            return too_long("tokens", t.len(), MAX_TOKENS, "tokens");
        }
        if let Some(t) = self.token_ids.as_ref().filter(|t| t.len() > MAX_TOKENS) {
            return too_long("token_ids", t.len(), MAX_TOKENS, "ids");
        }
        if self.saliency.text_b.len() > MAX_TEXT_BYTES {
            return too_long(
                "saliency.text_b",
                self.saliency.text_b.len(),
                MAX_TEXT_BYTES,
                "bytes",
            );
        }
        if self.recent_files.len() > MAX_FIELD_BYTES || self.dialog_folders.len() > MAX_FIELD_BYTES
        {
            return too_long(
                "recent_files",
                self.recent_files.len(),
                MAX_FIELD_BYTES,
                "files",
            );
        }
        if self.ablations.len() > MAX_FIELD_BYTES {
            return too_long("ablations", self.ablations.len(), MAX_FIELD_BYTES, "heads");
        }
        Ablation::normalized(&self.ablations).map_err(|e| format!("\"ablations\": {e}"))?;
        for (field, value) in [
            ("mask_text", &self.mask_text),
            ("memory_budget", &self.memory_budget),
            ("max_output", &self.max_output),
        ] {
            if value.len() > MAX_FIELD_BYTES {
                return too_long(field, value.len(), MAX_FIELD_BYTES, "bytes");
            }
        }
        Ok(())
    }

    /// Drops what is bound to token positions from `from` on, for when the tokens change there
    /// (the tokens before `from` are the same): entries of the mask's `drop-cells`, `drop-keys`,
    /// `drop-queries` and `global` parts naming a position ≥ `from` (a part left empty goes),
    /// and those selected queries. Returns what was dropped, for the status bar.
    pub fn drop_position_bound(&mut self, from: usize) -> Vec<String> {
        use crate::engine::MaskPart;
        let mut dropped = Vec::new();
        if let Ok(spec) = MaskSpec::parse(&self.mask_text) {
            let keep = |v: &[usize]| v.iter().copied().filter(|&i| i < from).collect::<Vec<_>>();
            let mut parts = Vec::with_capacity(spec.parts.len());
            for part in spec.parts {
                let mapped = match &part {
                    MaskPart::DropCells(cells) => MaskPart::DropCells(
                        cells
                            .iter()
                            .copied()
                            .filter(|&(q, k)| q < from && k < from)
                            .collect(),
                    ),
                    MaskPart::DropKeys(v) => MaskPart::DropKeys(keep(v)),
                    MaskPart::DropQueries(v) => MaskPart::DropQueries(keep(v)),
                    MaskPart::Global(v) => MaskPart::Global(keep(v)),
                    other => other.clone(),
                };
                if mapped != part {
                    dropped.push(part.to_string());
                }
                let empty = matches!(
                    &mapped,
                    MaskPart::DropKeys(v) | MaskPart::DropQueries(v) | MaskPart::Global(v)
                        if v.is_empty()
                ) || matches!(&mapped, MaskPart::DropCells(c) if c.is_empty());
                if !empty {
                    parts.push(mapped);
                }
            }
            if !dropped.is_empty() {
                self.mask_text = MaskSpec { parts }.to_string();
            }
        }
        if self.selected_queries.iter().any(|&q| q >= from) {
            dropped.push("the selected queries past the change".to_owned());
            self.selected_queries.retain(|&q| q < from);
        }
        dropped
    }

    /// Clamps what was saved with another model to `info` (the layer and head on screen, the
    /// head set, the dimension mask: heads, layers and dimensions the model lacks) and returns
    /// one line per change, for the status bar. DESIGN.md: settings are clamped to the loaded
    /// model, and the app says so instead of dropping them silently.
    pub fn fit_to_model(&mut self, info: &crate::model::ModelInfo) -> Vec<String> {
        let mut changes = Vec::new();
        let (layers, heads) = (info.layers.max(1), info.heads.max(1));
        if self.layer_idx >= layers {
            changes.push(format!(
                "layer {} → {} ({} has {layers} layers)",
                self.layer_idx,
                layers - 1,
                info.name
            ));
            self.layer_idx = layers - 1;
        }
        if self.head_idx >= heads {
            changes.push(format!(
                "head {} → {} ({} has {heads} heads)",
                self.head_idx,
                heads - 1,
                info.name
            ));
            self.head_idx = heads - 1;
        }
        let before = self.head_set.len();
        self.head_set.retain(|&h| h < heads);
        if self.head_set.len() < before {
            changes.push(format!("head set: heads ≥ {heads} removed"));
        }
        self.head_view_hidden.retain(|&h| h < heads);
        let ablations_before = self.ablations.len();
        self.ablations
            .retain(|a| a.layer_idx < layers && a.head_idx < heads);
        if self.ablations.len() < ablations_before {
            changes.push(format!(
                "ablations: heads {} lacks removed ({layers} layers × {heads} heads)",
                info.name
            ));
        }
        let dims_before = self.teach.dims.clone();
        self.teach.clamp(layers, heads, info.d_head);
        if self.teach.dims != dims_before {
            changes.push(format!(
                "dimension mask: heads or dimensions {} lacks removed ({layers} layers × {heads} heads × {} dimensions)",
                info.name, info.d_head
            ));
        }
        changes
    }

    /// Repairs the settings against the model and input they meet: out-of-range selections are
    /// clamped or dropped, impossible model settings fall back to the defaults.
    pub fn clamp(&mut self, tokens: Option<usize>) {
        if self.demo.validate().is_err() {
            self.demo = DemoConfig::default();
        }
        if MaskSpec::parse(&self.mask_text).is_err() {
            self.mask_text = "none".to_owned();
        }
        if let ScoreScale::Temperature(t) = self.scale
            && !(t.is_finite() && t > 0.0)
        {
            self.scale = ScoreScale::InvSqrtDHead;
        }
        // A checkpoint's size is only known once it loads; the app clamps against it then.
        if self.model_dir.is_none() {
            let (layers, heads) = (self.demo.layers, self.demo.heads);
            self.layer_idx = self.layer_idx.min(layers - 1);
            self.head_idx = self.head_idx.min(heads - 1);
            self.head_set.retain(|&h| h < heads);
            self.head_view_hidden.retain(|&h| h < heads);
            self.ablations
                .retain(|a| a.layer_idx < layers && a.head_idx < heads);
            self.teach.clamp(layers, heads, self.demo.d_model / heads);
        }
        self.head_set.sort_unstable();
        self.head_set.dedup();
        if let Some(n) = tokens {
            self.selected_queries.retain(|&q| q < n);
        }
        if !self.head_view_threshold.is_finite() {
            self.head_view_threshold = 0.05;
        }
        self.head_view_threshold = self.head_view_threshold.clamp(0.0, 1.0);
        self.saliency.clamp(tokens);
        self.analyze.clamp();
    }
}
