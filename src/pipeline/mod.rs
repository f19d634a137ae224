//! The one run path shared by the CLI and the app: model + token input + [`RunOptions`] → [`Run`].
//!
//! A [`LoadedModel`] (the demo or a checkpoint) owns everything that depends on the model: how
//! text, token strings and token ids become [`Token`]s, how its vocabulary is labelled, its
//! key/value groups and the mask it really applies. [`run`] checks the token limit (cutting the
//! input when asked), runs the forward pass and returns the tokens, maps and effective mask.
//! Attention files come through [`from_attention_file`] into the same [`Run`] shape, keeping
//! their token ids. Errors stay typed ([`PipelineError`]) until the CLI's `main` or the app's
//! error line turns them into text; they name the input file where one is involved.

mod attribute;
mod explain;

pub use attribute::{attribute, supported_targets};
pub use explain::explain;

use crate::engine::{AttentionRun, EngineError, MaskSpec, RunOptions};
use crate::io::{AttentionFile, ModelMeta, TokenInput};
use crate::model::{
    Checkpoint, DemoConfig, DemoModel, LoadError, LoadProgress, Model, ModelInfo, demo,
};
use crate::tokenize::{self, DemoTokenizer, Token, VocabStyle};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Why a run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The demo model's settings are impossible.
    // No `#[from]`: that would make the cause a source too, said twice on the CLI's line.
    #[error("demo model: {0}")]
    Demo(demo::DemoConfigError),
    /// A checkpoint folder could not be loaded (the message names the file).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The input cannot be turned into tokens for this model.
    #[error("{reason}{}", in_file(file.as_deref()))]
    Input {
        /// What is wrong.
        reason: String,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The input is longer than the model's position limit.
    #[error(
        "{count} tokens exceed the model's limit of {limit}{}{}",
        limit_source(config.as_deref()),
        in_file(file.as_deref())
    )]
    TooLong {
        /// Tokens in the input.
        count: usize,
        /// The model's limit.
        limit: usize,
        /// The checkpoint's config.json that sets the limit (`None` for the demo).
        config: Option<PathBuf>,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The forward pass failed.
    // Not named `source`: the message already says why, and a source would make `{:#}` (the
    // CLI's error line) say it twice.
    #[error("{error}{}", in_file(file.as_deref()))]
    Engine {
        /// Why.
        error: EngineError,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The run would need more memory than its budget allows.
    #[error(
        "needs {} for {} tokens; the budget is {} (--memory-budget){}",
        ByteSize(*needs),
        thousands(*tokens),
        ByteSize(*budget),
        in_file(file.as_deref())
    )]
    OverBudget {
        /// Estimated peak bytes of the run.
        needs: u64,
        /// Tokens in the run.
        tokens: usize,
        /// The budget, in bytes.
        budget: u64,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// A newer job or the user stopped the run.
    #[error("cancelled")]
    Cancelled,
    /// An attribution could not be computed (unsupported target, missing special token, …).
    #[error(transparent)]
    Attribution(crate::analysis::attribution::AttributionError),
}

impl From<demo::DemoConfigError> for PipelineError {
    fn from(e: demo::DemoConfigError) -> Self {
        Self::Demo(e)
    }
}

/// `" (set by CONFIG)"`, or nothing.
fn limit_source(config: Option<&Path>) -> String {
    config.map_or_else(String::new, |c| format!(" (set by {})", c.display()))
}

/// `" in FILE"`, or nothing.
fn in_file(file: Option<&Path>) -> String {
    file.map_or_else(String::new, |f| format!(" in {}", f.display()))
}

/// What to run: the tokens' source, the file it came from (for messages), whether an input
/// longer than the model's limit is cut (`true`) or refused, and the run's memory budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInput {
    /// Text, token strings or token ids.
    pub input: TokenInput,
    /// The file the input was read from, if any.
    pub file: Option<PathBuf>,
    /// Cut the input at the model's limit instead of failing.
    pub truncate: bool,
    /// The most memory the run may need, in bytes ([`estimate_run_bytes`]); by default
    /// [`default_memory_budget`].
    pub memory_budget: u64,
}

impl RunInput {
    /// An input typed or given on the command line: no file, no truncation, the default
    /// memory budget.
    pub fn new(input: TokenInput) -> Self {
        Self {
            input,
            file: None,
            truncate: false,
            memory_budget: default_memory_budget(),
        }
    }

    /// The same input under another memory budget (bytes).
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes;
        self
    }
}

/// The budget used when fallback is needed: physical memory unknown.
const FALLBACK_BUDGET: u64 = 4 << 30;
/// The largest default budget.
const MAX_DEFAULT_BUDGET: u64 = 8 << 30;

/// The default memory budget of a run: the smaller of 8 GiB and half the physical memory
/// (`MemTotal` in /proc/meminfo), or 4 GiB where that cannot be read; and at most half the
/// process's address-space limit (`ulimit -v`, from /proc/self/limits) when one is set.
pub fn default_memory_budget() -> u64 {
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_bytes(&text));
    let budget = total.map_or(FALLBACK_BUDGET, |t| (t / 2).min(MAX_DEFAULT_BUDGET));
    let address_space = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| address_space_limit(&text));
    address_space.map_or(budget, |limit| budget.min(limit / 2))
}

/// The soft "Max address space" of a /proc/self/limits text, in bytes; `None` when unlimited.
fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line.trim_start_matches("Max address space")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => value.checked_mul(1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// A number of bytes, read from `8GiB`, `512MB`, `1.5G`, `64k` or `1000000` (K/M/G/T are
/// binary: 1024-based, with or without `iB`/`B`), and written as `12.3 GiB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("bad size {s:?}; expected a number with an optional unit, e.g. 8GiB or 512MB")
        };
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kb" | "kib" => 10,
            "m" | "mb" | "mib" => 20,
            "g" | "gb" | "gib" => 30,
            "t" | "tb" | "tib" => 40,
            _ => return Err(bad()),
        };
        let bytes = number * (1u64 << shift) as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(Self(bytes as u64))
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
        let mut value = self.0 as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 {
            write!(f, "{} bytes", self.0)
        } else if (value - value.round()).abs() < 0.05 {
            write!(f, "{:.0} {}", value.round(), UNITS[unit])
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

/// `20000` as `20,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The estimated peak memory, in bytes, of running a model shaped `info` on `len` tokens with
/// `opts` (the weights, already loaded, are not counted):
/// - the maps, layers × heads × len² × 4, when `keep_maps`;
/// - without them, per head in flight (up to the engine's threads) one block of 48 query rows
///   of scores, len × 48 × 4;
/// - a traced layer: four [len, len] matrices per head (raw, masked, probabilities, a copy);
/// - activations: the residual stream three times, q/k/v, the heads' concatenation and their
///   per-head copies, and the MLP's two hidden [len, d_ff] arrays, 4 bytes each;
/// - the mask, len² booleans;
/// - with `keep_hidden` and an LM head, the log-probabilities `next` computes: len × vocab,
///   at most 2²⁸ values at once.
pub fn estimate_run_bytes(info: &ModelInfo, len: usize, opts: &RunOptions) -> u64 {
    let n = len as u64;
    let (l, h, kv) = (info.layers as u64, info.heads as u64, info.kv_heads as u64);
    let (d, dh, ff) = (info.d_model as u64, info.d_head as u64, info.d_ff as u64);
    let sq = n.saturating_mul(n);
    let mut bytes = 0u64;
    if opts.keep_maps {
        bytes = bytes.saturating_add(l.saturating_mul(h).saturating_mul(sq).saturating_mul(4));
    } else {
        // The engine runs at most 8 heads at once.
        let in_flight = h.min(8);
        bytes = bytes.saturating_add(in_flight.saturating_mul(n).saturating_mul(48 * 4));
    }
    if opts.trace_layer.is_some() {
        bytes = bytes.saturating_add(h.saturating_mul(sq).saturating_mul(4 * 4));
    }
    let widths = 3 * d + (h + 2 * kv) * dh + 2 * h * dh + 3 * dh * h.min(8) + 2 * ff;
    bytes = bytes.saturating_add(n.saturating_mul(widths).saturating_mul(4));
    bytes = bytes.saturating_add(sq);
    if opts.keep_hidden
        && let Some(head) = &info.lm_head
    {
        let values = n.saturating_mul(head.vocab as u64).min(1 << 28);
        bytes = bytes.saturating_add(values.saturating_mul(4));
    }
    bytes
}

/// Wall-clock time of a run's phases.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunTimings {
    /// Turning the input into tokens.
    pub tokenize_ms: f64,
    /// The forward pass.
    pub forward_ms: f64,
}

/// A finished run, from a model or from an attention file.
#[derive(Clone, Debug)]
pub struct Run {
    /// Tokens (ids and vocabulary strings), maps, and the optional trace and hidden states.
    pub attention: AttentionRun,
    /// The mask that was applied, as a spec string (`causal`, `causal+window:3`, `none`).
    pub mask: String,
    /// How long the phases took (zero for a file).
    pub timings: RunTimings,
}

/// A model ready to run: the demo (with the demo tokenizer to use) or a checkpoint (with its
/// tokenizer.json, parsed once at load).
pub enum LoadedModel {
    /// The built-in demo model.
    Demo {
        /// The model.
        model: Box<DemoModel>,
        /// How it splits text.
        tokenizer: DemoTokenizer,
    },
    /// A Hugging Face checkpoint, with the folder it came from.
    Checkpoint {
        /// The folder.
        dir: PathBuf,
        /// The model.
        model: Box<Checkpoint>,
    },
}

impl LoadedModel {
    /// Builds the demo model.
    pub fn demo(config: DemoConfig, tokenizer: DemoTokenizer) -> Result<Self, PipelineError> {
        Ok(Self::Demo {
            model: Box::new(DemoModel::new(config)?),
            tokenizer,
        })
    }

    /// Loads the checkpoint in `dir`, reporting to `progress` (which can cancel it).
    pub fn checkpoint(dir: &Path, progress: Arc<LoadProgress>) -> Result<Self, PipelineError> {
        Ok(Self::Checkpoint {
            dir: dir.to_owned(),
            model: Box::new(Checkpoint::load_with_progress(dir, progress)?),
        })
    }

    /// `demo` (with `config` and `tokenizer`), or a checkpoint folder.
    pub fn load(
        model: &str,
        config: DemoConfig,
        tokenizer: DemoTokenizer,
    ) -> Result<Self, PipelineError> {
        if model == "demo" {
            Self::demo(config, tokenizer)
        } else {
            Self::checkpoint(Path::new(model), Arc::default())
        }
    }

    /// The model as the engine sees it.
    pub fn model(&self) -> &dyn Model {
        match self {
            Self::Demo { model, .. } => model.as_ref(),
            Self::Checkpoint { model, .. } => model.as_ref(),
        }
    }

    /// The architecture summary.
    pub fn info(&self) -> ModelInfo {
        self.model().info()
    }

    /// The checkpoint folder, or `None` for the demo.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Self::Demo { .. } => None,
            Self::Checkpoint { dir, .. } => Some(dir),
        }
    }

    /// The checkpoint, if this is one.
    pub fn as_checkpoint(&self) -> Option<&Checkpoint> {
        match self {
            Self::Demo { .. } => None,
            Self::Checkpoint { model, .. } => Some(model),
        }
    }

    /// The demo model, if this is it.
    pub fn as_demo(&self) -> Option<&DemoModel> {
        match self {
            Self::Demo { model, .. } => Some(model),
            Self::Checkpoint { .. } => None,
        }
    }

    /// Switches the demo tokenizer (no effect on a checkpoint, which uses its tokenizer.json).
    pub fn set_demo_tokenizer(&mut self, kind: DemoTokenizer) {
        if let Self::Demo { tokenizer, .. } = self {
            *tokenizer = kind;
        }
    }

    /// How token strings are labelled: plain for the demo, the tokenizer.json's style for a
    /// checkpoint (plain without one).
    pub fn vocab_style(&self) -> VocabStyle {
        self.as_checkpoint()
            .and_then(Checkpoint::tokenizer)
            .map(|t| t.vocab_style().clone())
            .unwrap_or_default()
    }

    /// Per key/value head, the query heads that share it (one group per head without GQA).
    pub fn kv_groups(&self) -> Vec<Vec<usize>> {
        let info = self.info();
        kv_groups(info.heads, info.kv_heads)
    }

    /// The mask a run of `len` tokens applies under the user's `spec`: see
    /// [`crate::model::effective_mask`].
    pub fn effective_mask(&self, spec: &MaskSpec, len: usize) -> MaskSpec {
        let window = self.as_checkpoint().and_then(|c| c.config().sliding_window);
        crate::model::effective_mask(spec, self.info().causal, window, len)
    }

    /// The mask a run of `len` tokens under `opts` applies, its mistakes included: see
    /// [`crate::model::applied_mask`]. Equals [`Self::effective_mask`] without mistakes.
    pub fn applied_mask(&self, opts: &RunOptions, len: usize) -> MaskSpec {
        let window = self.as_checkpoint().and_then(|c| c.config().sliding_window);
        let info = self.info();
        crate::model::applied_mask(
            &opts.mask,
            info.causal,
            window,
            len,
            info.heads,
            &opts.mistakes,
        )
    }

    /// The tokens for `input`, before the length check. Errors name `file` when given.
    pub fn tokens(
        &self,
        input: &TokenInput,
        file: Option<&Path>,
    ) -> Result<Vec<Token>, PipelineError> {
        self.tokens_cut(input, file, false)
    }

    /// [`Self::tokens`]; with `truncate`, a text far longer than the model can take is cut
    /// (at [`text_cut_bytes`]) before it is tokenized.
    fn tokens_cut(
        &self,
        input: &TokenInput,
        file: Option<&Path>,
        truncate: bool,
    ) -> Result<Vec<Token>, PipelineError> {
        let fail = |reason: String| PipelineError::Input {
            reason,
            file: file.map(Path::to_owned),
        };
        let empty = || fail(tokenize::TokenizeError::Empty.to_string());
        let tokens = match (self, input) {
            (Self::Demo { tokenizer, .. }, TokenInput::Text(text)) => {
                tokenize::tokenize(text, *tokenizer).map_err(|e| fail(e.to_string()))?
            }
            (Self::Demo { .. }, TokenInput::Tokens(texts)) => {
                texts.iter().map(|t| Token::from_text(t)).collect()
            }
            (Self::Demo { .. }, TokenInput::Ids(ids)) => tokenize::tokens_from_ids(ids),
            (Self::Checkpoint { dir, model }, TokenInput::Text(text)) => match model.tokenizer() {
                // The tokenizer's own errors name its tokenizer.json. The normalized text is
                // bounded first: the tokenizer cannot be stopped once it runs.
                Some(t) => {
                    let positions = model.config().max_positions;
                    let bound = normalized_text_bound(positions);
                    let text = if truncate {
                        cut_at_char(text, text_cut_bytes(positions, t.expansion()))
                    } else {
                        text.as_str()
                    };
                    t.check_normalized_len(text, bound).map_err(fail)?;
                    t.encode(text).map_err(fail)?
                }
                None => {
                    return Err(fail(format!(
                        "no tokenizer.json in {}, so text cannot be tokenized; give token ids",
                        dir.display()
                    )));
                }
            },
            (Self::Checkpoint { dir, model }, TokenInput::Tokens(texts)) => {
                let Some(t) = model.tokenizer() else {
                    return Err(fail(format!(
                        "no tokenizer.json in {}, so token strings cannot be looked up; give token ids",
                        dir.display()
                    )));
                };
                let mut ids = Vec::with_capacity(texts.len());
                for (i, text) in texts.iter().enumerate() {
                    match t.token_to_id(text) {
                        Some(id) => ids.push(id),
                        None => {
                            return Err(fail(format!(
                                "token {text:?} (position {i}) is not in the vocabulary of {}",
                                t.path().display()
                            )));
                        }
                    }
                }
                model.tokens_from_ids(&ids)
            }
            (Self::Checkpoint { model, .. }, TokenInput::Ids(ids)) => {
                let vocab = model.config().vocab;
                if let Some((i, id)) = ids
                    .iter()
                    .enumerate()
                    .find(|(_, id)| **id as usize >= vocab)
                {
                    return Err(fail(format!(
                        "token id {id} (position {i}) is outside the vocabulary (size {vocab})"
                    )));
                }
                model.tokens_from_ids(ids)
            }
        };
        if tokens.is_empty() {
            return Err(empty());
        }
        Ok(tokens)
    }
}

/// Bytes of normalized text allowed for a model of `max_positions` positions: 64 per position,
/// at least 1 MiB. Longer texts are refused before the tokenizer runs (issue 10 item 3).
pub fn normalized_text_bound(max_positions: usize) -> usize {
    max_positions.saturating_mul(64).max(1 << 20)
}

/// With `--truncate`, the bytes of text kept before tokenizing: enough for far more than
/// `max_positions` tokens (16 bytes per position at least), yet within
/// [`normalized_text_bound`] at the normalizer's worst `expansion`.
fn text_cut_bytes(max_positions: usize, expansion: u64) -> usize {
    let within = normalized_text_bound(max_positions)
        / usize::try_from(expansion.max(1)).unwrap_or(usize::MAX);
    within.max(max_positions.saturating_mul(16))
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Key/value groups as Hugging Face models share KV heads (`repeat_kv`): query head h uses KV
/// head h / (heads / kv_heads). One group per head when `kv_heads` is 0 or does not divide
/// `heads`.
pub fn kv_groups(heads: usize, kv_heads: usize) -> Vec<Vec<usize>> {
    if kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
        return (0..heads).map(|h| vec![h]).collect();
    }
    let per = heads / kv_heads;
    (0..kv_heads)
        .map(|g| (g * per..(g + 1) * per).collect())
        .collect()
}

/// Runs `model` on `input`: tokens, the length check (or cut), the forward pass. `progress` is
/// called after each layer with the layers done; returning false cancels the run.
pub fn run(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Run, PipelineError> {
    let file = input.file.as_deref();
    let start = Instant::now();
    let mut tokens = model.tokens_cut(&input.input, file, input.truncate)?;
    let limit = model.info().max_positions;
    if tokens.len() > limit {
        if !input.truncate {
            return Err(PipelineError::TooLong {
                count: tokens.len(),
                limit,
                config: model.dir().map(|d| d.join("config.json")),
                file: file.map(Path::to_owned),
            });
        }
        tokens.truncate(limit);
    }
    let tokenize_ms = ms_since(start);
    let needs = estimate_run_bytes(&model.info(), tokens.len(), opts);
    if needs > input.memory_budget {
        return Err(PipelineError::OverBudget {
            needs,
            tokens: tokens.len(),
            budget: input.memory_budget,
            file: file.map(Path::to_owned),
        });
    }
    let mask = model.applied_mask(opts, tokens.len()).to_string();
    let start = Instant::now();
    let attention = match model.model().forward_with_progress(&tokens, opts, progress) {
        Ok(run) => run,
        Err(EngineError::Cancelled) => return Err(PipelineError::Cancelled),
        // Overflow inside the model is the weights' fault: name the checkpoint, not the input.
        Err(error @ EngineError::BadWeights(_)) if model.dir().is_some() => {
            return Err(PipelineError::Engine {
                error,
                file: model.dir().map(Path::to_owned),
            });
        }
        Err(error) => {
            return Err(PipelineError::Engine {
                error,
                file: file.map(Path::to_owned),
            });
        }
    };
    Ok(Run {
        attention,
        mask,
        timings: RunTimings {
            tokenize_ms,
            forward_ms: ms_since(start),
        },
    })
}

/// An attention file as a [`Run`], keeping its token ids (the demo's hashed ids where the file
/// has none, as for an NPY sidecar), and the model it names.
pub fn from_attention_file(file: AttentionFile) -> (Run, ModelMeta) {
    let tokens = file
        .tokens
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let mut t = Token::from_text(text);
            if let Some(&id) = file.token_ids.get(i) {
                t.id = id;
            }
            t
        })
        .collect();
    let run = Run {
        attention: AttentionRun {
            tokens,
            maps: file.maps,
            fully_masked_queries: Vec::new(),
            trace: None,
            hidden: None,
            layer_norms: None,
        },
        mask: file.mask,
        timings: RunTimings::default(),
    };
    (run, file.model)
}

fn ms_since(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e6).round() / 1e3
}

/// The model's key/value sharing in words, for the CLI's `info` (`query heads 0,1 | 2,3`).
pub fn kv_groups_text(groups: &[Vec<usize>]) -> String {
    let mut s = String::from("query heads ");
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            s.push_str(" | ");
        }
        let ids: Vec<String> = g.iter().map(usize::to_string).collect();
        let _ = write!(s, "{}", ids.join(","));
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn kv_groups_follow_repeat_kv() {
        // 4 query heads over 2 KV heads: heads 0,1 share KV head 0 and 2,3 share KV head 1.
        assert_eq!(kv_groups(4, 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(kv_groups(3, 3), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(kv_groups(3, 2), vec![vec![0], vec![1], vec![2]]);
        assert_eq!(kv_groups_text(&kv_groups(4, 2)), "query heads 0,1 | 2,3");
    }

    #[test]
    fn mistral_window_joins_the_mask_only_past_the_window() {
        let none = MaskSpec::parse("none").unwrap();
        // W = 4: at 4 tokens every key is within the window; at 5, query 4 loses key 0
        // (4 − 0 = 4 is not < 4), which window:3 (|q − k| ≤ 3) expresses.
        assert_eq!(
            crate::model::effective_mask(&none, true, Some(4), 4).to_string(),
            "causal"
        );
        assert_eq!(
            crate::model::effective_mask(&none, true, Some(4), 5).to_string(),
            "causal+window:3"
        );
        assert_eq!(
            crate::model::effective_mask(&none, false, None, 5).to_string(),
            "none"
        );
    }

    #[test]
    fn demo_token_inputs_and_errors_name_the_file() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let tokens = model
            .tokens(
                &TokenInput::Tokens(vec!["[CLS]".into(), "##ing".into()]),
                None,
            )
            .unwrap();
        assert_eq!(tokens[1].text, "##ing");
        assert!(tokens[0].is_special);
        let err = model
            .tokens(&TokenInput::Ids(Vec::new()), Some(Path::new("x.json")))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "nothing to tokenize: the input is empty in x.json");
    }

    #[test]
    fn byte_sizes_read_and_print() {
        assert_eq!("8GiB".parse::<ByteSize>(), Ok(ByteSize(8 << 30)));
        assert_eq!("512MB".parse::<ByteSize>(), Ok(ByteSize(512 << 20)));
        assert_eq!("1.5g".parse::<ByteSize>(), Ok(ByteSize(3 << 29)));
        assert_eq!("2T".parse::<ByteSize>(), Ok(ByteSize(2 << 40)));
        assert_eq!("1000".parse::<ByteSize>(), Ok(ByteSize(1000)));
        for bad in ["", "GiB", "8 parsecs", "0", "-1G", "1e400"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        // 12.3 GiB = 13,207,024,435 bytes (12.3 × 2³⁰, rounded down).
        assert_eq!(ByteSize(13_207_024_435).to_string(), "12.3 GiB");
        assert_eq!(ByteSize(8 << 30).to_string(), "8 GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 bytes");
        assert_eq!(thousands(20_000), "20,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn the_default_budget_is_half_the_memory_at_most_8_gib() {
        assert_eq!(
            mem_total_bytes("MemTotal:       24000000 kB\nMemFree: 1 kB\n"),
            Some(24_000_000 * 1024)
        );
        assert_eq!(mem_total_bytes("MemFree: 1 kB\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         2147483648           unlimited            bytes\n";
        assert_eq!(address_space_limit(limits), Some(2 << 30));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
        let budget = default_memory_budget();
        assert!(budget <= 8 << 30 && budget > 0, "{budget}");
    }

    #[test]
    fn the_estimate_counts_maps_only_when_kept() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let info = model.info();
        let keep = RunOptions::default();
        let skip = RunOptions {
            keep_maps: false,
            ..RunOptions::default()
        };
        let n = 1000u64;
        let maps = info.layers as u64 * info.heads as u64 * n * n * 4;
        let with = estimate_run_bytes(&info, 1000, &keep);
        let without = estimate_run_bytes(&info, 1000, &skip);
        // Without maps: 8 heads × 1000 rows × 48 × 4 bytes of score blocks in their place.
        assert_eq!(with - without, maps - 8 * n * 48 * 4);
        // 22 MB of activations, mask and blocks against 192 MB of maps.
        assert!(without < maps / 5, "{without}");
    }

    #[test]
    fn a_run_without_maps_has_the_same_hidden_states() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let input = RunInput::new(TokenInput::Text("the cat sat on the mat".repeat(20)));
        let base = RunOptions {
            keep_hidden: true,
            mask: MaskSpec::parse("causal").unwrap(),
            ..RunOptions::default()
        };
        let with = run(&model, &input, &base, &mut |_| true).unwrap();
        let without = run(
            &model,
            &input,
            &RunOptions {
                keep_maps: false,
                ..base
            },
            &mut |_| true,
        )
        .unwrap();
        assert_eq!(with.attention.maps.layers(), 6);
        assert_eq!(without.attention.maps.layers(), 0);
        assert!(without.attention.maps.head(0, 0).is_none());
        assert_eq!(with.attention.hidden, without.attention.hidden);
        // The budget is checked before the run: 1 KiB is too little for anything.
        let err = run(
            &model,
            &input.clone().with_memory_budget(1024),
            &RunOptions::default(),
            &mut |_| true,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("; the budget is 1 KiB (--memory-budget)"),
            "{err}"
        );
    }
}
