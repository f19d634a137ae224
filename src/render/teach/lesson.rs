//! Lesson files (`"format": "attnviz.lesson/v1"`, issue 11 item 6): a text, the settings to run
//! it with and a short script of steps for the teaching views. The app opens them (from its
//! Lessons menu and as `attnviz LESSON.json`); they are never token inputs, and
//! [`crate::io::load_input`] refuses them with a message that says so.
//!
//! The format lives with the teaching side, not in `io`: its settings and steps name
//! analysis and render types (walkthrough steps, claims, colormaps), and `io` sits below them.
//!
//! ```json
//! { "format": "attnviz.lesson/v1", "title": "Scaled dot-product attention",
//!   "text": "The cat sat on the mat.",
//!   "settings": { "model": "demo", "mask": "none", "scale": "inv-sqrt", "mistakes": [],
//!                 "view": "walkthrough", "layer": 0, "head": 1, "query": 3 },
//!   "steps": [ { "title": "The question", "text": "…", "view": "walkthrough", "step": "query" } ] }
//! ```

use crate::analysis::claims::Claim;
use crate::analysis::explain::WalkStep;
use crate::engine::{DimSubset, MaskSpec, Mistake, ScoreScale};
use crate::fs::{IoError, read_regular_file};
use crate::io::{MAX_SMALL_FILE, json_reason};
use crate::model::DemoConfig;
use crate::render::Colormap;
use crate::tokenize::DemoTokenizer;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The format tag of lesson files (kept in `io`, which recognises a lesson to refuse it as a
/// token input).
pub use crate::io::LESSON_FORMAT;

/// Which view a lesson (or one of its steps) shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LessonView {
    /// One head's map as a heatmap.
    #[default]
    Heatmap,
    /// Every layer × head.
    Grid,
    /// BertViz-style lines between tokens.
    HeadView,
    /// The step-by-step walkthrough of one query.
    Walkthrough,
    /// The neuron and dimension view (q_i·k_i bars, the dimension mask).
    Dimensions,
    /// How d_model splits into heads, the concatenation and the output projection.
    MultiHead,
    /// FLOPs and memory against the input length, and the sparse masks' cells.
    Cost,
    /// A mistake side by side with the correct version.
    Mistakes,
}

impl LessonView {
    /// Every view, in menu order.
    pub const ALL: [LessonView; 8] = [
        LessonView::Heatmap,
        LessonView::Grid,
        LessonView::HeadView,
        LessonView::Walkthrough,
        LessonView::Dimensions,
        LessonView::MultiHead,
        LessonView::Cost,
        LessonView::Mistakes,
    ];
}

fn default_model() -> String {
    "demo".to_owned()
}

fn default_mask() -> String {
    "none".to_owned()
}

fn default_scale() -> String {
    "inv-sqrt".to_owned()
}

/// How a lesson runs: the model, its options and what is selected when it opens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonSettings {
    /// `demo` (the default), or a checkpoint folder (relative to the lesson file or absolute).
    #[serde(default = "default_model")]
    pub model: String,
    /// The demo's settings when `model` is `demo` (missing fields take the demo's defaults).
    #[serde(default)]
    pub demo: DemoConfig,
    /// The demo tokenizer.
    #[serde(default)]
    pub tokenizer: DemoTokenizer,
    /// The mask spec, as `--mask` spells it.
    #[serde(default = "default_mask")]
    pub mask: String,
    /// The score scale, as `--scale` spells it.
    #[serde(default = "default_scale")]
    pub scale: String,
    /// Mistakes switched on when the lesson opens.
    #[serde(default)]
    pub mistakes: Vec<Mistake>,
    /// Dimension subsets, as `--dims` spells them (`L.H=0-7`).
    #[serde(default)]
    pub dims: Vec<String>,
    /// The view the lesson opens on.
    #[serde(default)]
    pub view: LessonView,
    /// Selected layer, head and query token (0-based).
    #[serde(default)]
    pub layer: usize,
    /// See `layer`.
    #[serde(default)]
    pub head: usize,
    /// See `layer`.
    #[serde(default)]
    pub query: usize,
    /// The colormap, when the lesson wants one (e.g. a high-contrast one for projectors).
    #[serde(default)]
    pub colormap: Option<Colormap>,
    /// The script also makes sense on any model and text (it relies on no crafted demo head):
    /// the app offers to run it on the user's own model and text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_input: bool,
}

impl Default for LessonSettings {
    fn default() -> Self {
        Self {
            model: default_model(),
            demo: DemoConfig::default(),
            tokenizer: DemoTokenizer::default(),
            mask: default_mask(),
            scale: default_scale(),
            mistakes: Vec::new(),
            dims: Vec::new(),
            view: LessonView::default(),
            layer: 0,
            head: 0,
            query: 0,
            colormap: None,
            any_input: false,
        }
    }
}

/// One step of a lesson's script: a title, the words to show, and what to show with them.
/// Fields left out keep what the previous step (or the settings) selected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LessonStep {
    /// A short heading.
    pub title: String,
    /// The explanation, in plain language.
    pub text: String,
    /// The view to show.
    #[serde(default)]
    pub view: Option<LessonView>,
    /// The walkthrough step, with the walkthrough view.
    #[serde(default)]
    pub step: Option<WalkStep>,
    /// The layer to select.
    #[serde(default)]
    pub layer: Option<usize>,
    /// The head to select.
    #[serde(default)]
    pub head: Option<usize>,
    /// The query token to select.
    #[serde(default)]
    pub query: Option<usize>,
    /// The mistake to show side by side (the mistakes view).
    #[serde(default)]
    pub mistake: Option<Mistake>,
    /// A mask spec to switch to.
    #[serde(default)]
    pub mask: Option<String>,
    /// What the step's words say about its numbers, checked on the lesson's own run by the
    /// tests (`analysis::claims`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
}

/// A lesson file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// Always [`LESSON_FORMAT`].
    pub format: String,
    /// The lesson's title.
    pub title: String,
    /// The input text it runs on.
    pub text: String,
    /// An optional introduction shown before the first step.
    #[serde(default)]
    pub intro: String,
    /// How it runs.
    #[serde(default)]
    pub settings: LessonSettings,
    /// The script, at least one step.
    pub steps: Vec<LessonStep>,
}

impl Lesson {
    /// Parses a lesson from JSON text and checks it ([`Self::validate`]); the error says what
    /// is wrong, without the file (see [`load_lesson`]).
    pub fn from_json(text: &str) -> Result<Self, String> {
        let lesson: Lesson = serde_json::from_str(text).map_err(|e| json_reason(&e))?;
        lesson.validate()?;
        Ok(lesson)
    }

    /// Checks what serde cannot: the format tag, non-empty title, text and steps, the mask,
    /// scale and dims spellings, the demo's limits, and on the demo that layer, head and
    /// query indices exist for this text.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != LESSON_FORMAT {
            return Err(format!(
                "format is {:?}, expected {LESSON_FORMAT:?}",
                self.format
            ));
        }
        if self.title.trim().is_empty() {
            return Err("the lesson has no title".to_owned());
        }
        if self.text.trim().is_empty() {
            return Err("the lesson has no text to run on".to_owned());
        }
        if self.steps.is_empty() {
            return Err("the lesson has no steps".to_owned());
        }
        // Everything the app lays out is bounded, so a huge field is an error, not an abort.
        bounded("title", &self.title, MAX_TITLE_BYTES)?;
        bounded("intro", &self.intro, MAX_PROSE_BYTES)?;
        bounded("text", &self.text, MAX_LESSON_TEXT_BYTES)?;
        if self.steps.len() > MAX_LESSON_STEPS {
            return Err(format!(
                "{} steps; a lesson may have at most {MAX_LESSON_STEPS}",
                self.steps.len()
            ));
        }
        for (i, step) in self.steps.iter().enumerate() {
            bounded(
                &format!("step {} title", i + 1),
                &step.title,
                MAX_TITLE_BYTES,
            )?;
            bounded(&format!("step {} text", i + 1), &step.text, MAX_PROSE_BYTES)?;
        }
        let s = &self.settings;
        MaskSpec::parse(&s.mask).map_err(|e| format!("settings: {e}"))?;
        s.scale
            .parse::<ScoreScale>()
            .map_err(|e| format!("settings: {e}"))?;
        for d in &s.dims {
            d.parse::<DimSubset>()
                .map_err(|e| format!("settings: {e}"))?;
        }
        let demo = s.model == "demo";
        let tokens = if demo {
            s.demo
                .validate()
                .map_err(|e| format!("settings: demo model: {e}"))?;
            let tokens = crate::tokenize::tokenize(&self.text, s.tokenizer)
                .map_err(|e| format!("text: {e}"))?;
            Some(tokens.len())
        } else {
            None
        };
        let check = |what: &str, layer: usize, head: usize, query: usize| -> Result<(), String> {
            if !demo {
                return Ok(());
            }
            let cfg = &s.demo;
            if layer >= cfg.layers {
                return Err(format!(
                    "{what}: layer {layer} does not exist (the demo has {} layers)",
                    cfg.layers
                ));
            }
            if head >= cfg.heads {
                return Err(format!(
                    "{what}: head {head} does not exist (the demo has {} heads)",
                    cfg.heads
                ));
            }
            if let Some(n) = tokens
                && query >= n
            {
                return Err(format!(
                    "{what}: query {query} does not exist (the text has {n} tokens)"
                ));
            }
            Ok(())
        };
        check("settings", s.layer, s.head, s.query)?;
        let (mut layer, mut head, mut query) = (s.layer, s.head, s.query);
        for (i, step) in self.steps.iter().enumerate() {
            let what = format!("step {}", i + 1);
            if step.title.trim().is_empty() {
                return Err(format!("{what} has no title"));
            }
            if let Some(mask) = &step.mask {
                MaskSpec::parse(mask).map_err(|e| format!("{what}: {e}"))?;
            }
            layer = step.layer.unwrap_or(layer);
            head = step.head.unwrap_or(head);
            query = step.query.unwrap_or(query);
            check(&what, layer, head, query)?;
        }
        Ok(())
    }
}

/// The longest title a lesson or step may have, in bytes.
const MAX_TITLE_BYTES: usize = 1 << 10;
/// The longest intro or step text, in bytes.
const MAX_PROSE_BYTES: usize = 64 << 10;
/// The longest text a lesson runs on, in bytes.
const MAX_LESSON_TEXT_BYTES: usize = 256 << 10;
/// The most steps a lesson may have.
const MAX_LESSON_STEPS: usize = 200;

/// `field` of at most `max` bytes, or an error naming it with its size and the bound.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!(
            "{field} is {} bytes; a lesson's {field} may have at most {} KiB",
            value.len(),
            max >> 10
        ));
    }
    Ok(())
}

/// Loads and checks a lesson file. Every error is one line naming the file, path last:
/// `step 2: unknown variant "walk", expected one of … in lessons/x.json`.
pub fn load_lesson(path: &Path) -> Result<Lesson, IoError> {
    let bytes = read_regular_file(path, MAX_SMALL_FILE)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        IoError::invalid(
            path,
            format!("not UTF-8 (bad byte at offset {})", e.valid_up_to()),
        )
    })?;
    Lesson::from_json(text)
        .map_err(|reason| IoError::invalid(path, format!("bad lesson: {reason}")))
}

/// True when `path` is a lesson: a `.json` file within [`MAX_SMALL_FILE`] whose parsed JSON
/// names [`LESSON_FORMAT`] as its `format`, wherever the field stands (for listing the lesson
/// folder; opening a file goes through [`crate::io::load_input`], which reads the same field).
pub fn is_lesson_file(path: &Path) -> bool {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !is_json {
        return false;
    }
    let Ok(bytes) = read_regular_file(path, MAX_SMALL_FILE) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .is_ok_and(|v| v.get("format").and_then(|f| f.as_str()) == Some(LESSON_FORMAT))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const GOOD: &str = r#"{"format": "attnviz.lesson/v1", "title": "T", "text": "the cat sat",
        "settings": {"mask": "causal", "mistakes": ["no-scaling"], "view": "walkthrough",
                     "head": 2, "query": 2, "colormap": "grays"},
        "steps": [{"title": "q", "text": "the query", "view": "walkthrough", "step": "query"},
                  {"title": "m", "text": "mistake", "view": "mistakes", "mistake": "wrong-axis"}]}"#;

    #[test]
    fn parses_a_lesson() {
        let l = Lesson::from_json(GOOD).unwrap();
        assert_eq!(l.settings.mistakes, [Mistake::NoScaling]);
        assert_eq!(l.settings.view, LessonView::Walkthrough);
        assert_eq!(l.settings.colormap, Some(Colormap::Grays));
        assert_eq!(l.steps[0].step, Some(WalkStep::Query));
        assert_eq!(l.steps[1].mistake, Some(Mistake::SoftmaxWrongAxis));
        // Defaults: demo model, inv-sqrt.
        assert_eq!(l.settings.model, "demo");
        assert_eq!(l.settings.scale, "inv-sqrt");
        // A lesson is known by its parsed `format` field, wherever it stands (after a 70 KiB
        // intro here), and not by the words in a text.
        let dir = tempfile::tempdir().unwrap();
        let late = dir.path().join("late.json");
        let long_intro = format!(
            "{{\"intro\": \"{}\", {}",
            "x".repeat(70 << 10),
            GOOD.trim_start_matches('{')
        );
        std::fs::write(&late, &long_intro).unwrap();
        assert!(is_lesson_file(&late));
        assert!(matches!(
            crate::io::load_input(&late).unwrap(),
            crate::io::InputFile::Lesson
        ));
        let words = dir.path().join("words.json");
        std::fs::write(&words, r#"{"text": "format attnviz.lesson/v1"}"#).unwrap();
        assert!(!is_lesson_file(&words));
    }

    #[test]
    fn bad_lessons_say_what_is_wrong() {
        let huge_intro = GOOD.replacen(
            "\"title\": \"T\"",
            &format!("\"title\": \"T\", \"intro\": \"{}\"", "x".repeat(10 << 20)),
            1,
        );
        assert_eq!(
            Lesson::from_json(&huge_intro).unwrap_err(),
            "intro is 10485760 bytes; a lesson's intro may have at most 64 KiB"
        );
        let cases = [
            (GOOD.replace("lesson/v1", "lesson/v2"), "format is"),
            (GOOD.replace("\"causal\"", "\"casual\""), "bad mask spec"),
            (
                GOOD.replace("\"query\": 2", "\"query\": 3"),
                "query 3 does not exist (the text has 3 tokens)",
            ),
            (
                GOOD.replace("\"head\": 2", "\"head\": 8"),
                "head 8 does not exist",
            ),
            (GOOD.replace("no-scaling", "no-scale"), "unknown variant"),
            (
                GOOD.replace("\"step\": \"query\"", "\"step\": \"walk\""),
                "unknown variant",
            ),
            (
                GOOD.replace("\"title\": \"T\"", "\"title\": \"\""),
                "no title",
            ),
            (
                GOOD.replace(
                    "\"view\": \"mistakes\",",
                    "\"view\": \"mistakes\", \"extra\": 1,",
                ),
                "unknown field",
            ),
            (GOOD.replace("\"steps\"", "\"stepz\""), "unknown field"),
        ];
        for (text, want) in cases {
            let err = Lesson::from_json(&text).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    /// Every lesson in sample_inputs/lessons/ parses, and its settings and every step's mask
    /// and mistake run on the demo it names.
    #[test]
    fn shipped_lessons_parse_and_run() {
        use crate::engine::RunOptions;
        use crate::model::{DemoModel, Model};
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_inputs/lessons");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        assert!(paths.len() >= 5, "{paths:?}");
        let mut titles = Vec::new();
        let mut views = std::collections::HashSet::new();
        for path in &paths {
            assert!(is_lesson_file(path), "{}", path.display());
            let lesson = load_lesson(path).unwrap_or_else(|e| panic!("{e}"));
            // Lessons are never token inputs: the loader says what the file is.
            assert!(matches!(
                crate::io::load_input(path).unwrap(),
                crate::io::InputFile::Lesson
            ));
            let s = &lesson.settings;
            assert_eq!(s.model, "demo");
            let model = DemoModel::new(s.demo).unwrap();
            let tokens = crate::tokenize::tokenize(&lesson.text, s.tokenizer).unwrap();
            let opts = RunOptions {
                mask: MaskSpec::parse(&s.mask).unwrap(),
                scale: s.scale.parse().unwrap(),
                dims: s.dims.iter().map(|d| d.parse().unwrap()).collect(),
                mistakes: s.mistakes.clone(),
                ..RunOptions::default()
            };
            model.forward(&tokens, &opts).unwrap();
            for step in &lesson.steps {
                assert!(step.text.len() > 40, "{}: {}", path.display(), step.title);
                views.insert(step.view.unwrap_or(s.view));
                let mut opts = opts.clone();
                if let Some(mask) = &step.mask {
                    opts.mask = MaskSpec::parse(mask).unwrap();
                }
                match step.mistake {
                    Some(m) => {
                        let info = crate::model::Model::info(&model);
                        crate::analysis::teach::mistake_effect(
                            &info,
                            &tokens,
                            &opts,
                            m,
                            &mut |t, o| crate::model::Model::forward(&model, t, o),
                        )
                        .unwrap();
                    }
                    None => {
                        model.forward(&tokens, &opts).unwrap();
                    }
                }
            }
            titles.push(lesson.title);
        }
        let all = titles.join(" | ").to_lowercase();
        for topic in [
            "scaled dot-product",
            "multi-head",
            "padding",
            "positional",
            "sparse",
        ] {
            assert!(all.contains(topic), "no lesson about {topic}: {all}");
        }
        for view in [
            LessonView::Walkthrough,
            LessonView::Mistakes,
            LessonView::Cost,
        ] {
            assert!(views.contains(&view), "{view:?}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        std::fs::write(&path, GOOD.replace("\"causal\"", "\"casual\"")).unwrap();
        let err = load_lesson(&path).unwrap_err().to_string();
        assert!(
            err.starts_with("bad lesson: settings: bad mask spec"),
            "{err}"
        );
        assert!(err.ends_with(&format!("in {}", path.display())), "{err}");
        assert!(is_lesson_file(&path));
        std::fs::write(&path, GOOD).unwrap();
        assert_eq!(load_lesson(&path).unwrap().title, "T");
    }
}
