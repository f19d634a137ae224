//! The one run path shared by the CLI and the app: model + token input + [`RunOptions`] → [`Run`].
//!
//! A [`LoadedModel`] (the demo or a checkpoint) owns everything that depends on the model: how
//! text, token strings and token ids become [`Token`]s, how its vocabulary is labelled, its
//! key/value groups and the mask it really applies. [`run`] checks the token limit (cutting the
//! input when asked), runs the forward pass and returns the tokens, maps and effective mask.
//! Attention files come through [`from_attention_file`] into the same [`Run`] shape, keeping
//! their token ids. Errors stay typed ([`PipelineError`]) until the CLI's `main` or the app's
//! error line turns them into text; they name the input file where one is involved.

pub mod answer;
pub mod answer_json;
mod attribute;
mod budget;
mod error;
mod explain;
mod export;
mod metrics;
mod next;
pub mod patching;
mod probe;
mod teach;

pub use attribute::{attribute, point_batches, supported_targets};
pub(crate) use budget::maps_shape;
use budget::{check_budget, check_budget_plus};
pub use budget::{default_memory_budget, estimate_run_bytes};
pub(crate) use error::in_file;
pub use error::{OptionMisfit, PipelineError, RunSetting, TextRole, output_size, too_long_text};
pub use explain::explain;
pub use export::{
    DEFAULT_MAX_OUTPUT, TensorFormat, check_output_ahead, estimate_tensor_bytes, write_tensors,
};
pub use metrics::{MetricData, head_metrics_of, induction_scores};
pub use next::{NextChoices, next_choices};
pub use next::{NextDistribution, NextTokens, Positions, lm_head, next_distribution, next_tokens};
pub use probe::{PROBE_PERIOD, PROBE_SEED, induction_probe, value_zeroing_of};
pub use teach::mistake_effect;

use crate::analysis::{MapsKind, difference_maps};
pub use crate::engine::ByteSize;
use crate::engine::{
    Ablation, AppliedMask, AttentionMaps, AttentionRun, Captured, EngineError, Interventions,
    Resume, RunOptions, Site, Trace,
};
use crate::io::{AttentionFile, ModelMeta, TokenInput};
use crate::model::{LoadedModel, ModelInfo};
use crate::tokenize::{Token, VocabStyle};
use ndarray::Array2;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

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

/// `20000` as `20,000`.
pub(crate) fn thousands(n: usize) -> String {
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

/// Wall-clock time of a run's phases.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunTimings {
    /// Turning the input into tokens.
    pub tokenize_ms: f64,
    /// The forward pass.
    pub forward_ms: f64,
}

/// A finished run, from a model or from an attention file: the one type the app, the CLI and
/// `render` read. It carries every decision the run made (the applied mask, the model's name,
/// label style and key/value groups, the input text), so that no caller re-derives one.
#[derive(Clone, Debug)]
pub struct Run {
    /// The tokens that went in (ids and vocabulary strings).
    pub tokens: Vec<Token>,
    /// Every layer's and head's probabilities. Shape: [layer, head, query, key].
    pub maps: AttentionMaps,
    /// The mask that was applied: the user's spec, the architecture's and any mistake's.
    pub mask: AppliedMask,
    /// Query indices whose rows the mask left empty.
    pub fully_masked_queries: Vec<usize>,
    /// The trace of one layer, when asked for.
    pub trace: Option<Trace>,
    /// The final hidden states, when asked for. Shape: [token, d_model].
    pub hidden: Option<ndarray::Array2<f32>>,
    /// With `keep_layer_norms`, the mean row norm of the residual stream after each block.
    pub layer_norms: Option<Vec<f32>>,
    /// The model, as attention files record it.
    pub model: ModelMeta,
    /// How the model's tokenizer spells its vocabulary (plain for the demo and for files).
    pub vocab_style: VocabStyle,
    /// Per key/value head, the query heads that share it.
    pub kv_groups: Vec<Vec<usize>>,
    /// The input text, when the input was text.
    pub text: Option<String>,
    /// The heads the run ablated (or, for a file, that the file records), in their one order.
    pub ablations: Vec<Ablation>,
    /// The options a model run was made with (`None` for a file).
    pub options: Option<RunOptions>,
    /// What `maps` holds: attention, or (from [`Run::ablation_difference`]) the ablated run's
    /// attention minus the unablated run's.
    pub kind: MapsKind,
    /// With [`RunOptions::keep_residuals`], the input of every block (`Resid(l)`, l = 0 the
    /// embeddings), shared: what [`run_resumed`] starts a later run from. Empty otherwise.
    pub residuals: Vec<Arc<Array2<f32>>>,
    /// How long the phases took (zero for a file).
    pub timings: RunTimings,
}

impl Run {
    /// A run of `model`'s forward pass `forward` (on `text`, when the input was text).
    pub fn from_forward(
        model: &LoadedModel,
        forward: AttentionRun,
        opts: &RunOptions,
        text: Option<String>,
        timings: RunTimings,
    ) -> Self {
        let info = model.info();
        Self {
            kv_groups: info.kv_groups(),
            model: ModelMeta::from(&info),
            vocab_style: model.vocab_style(),
            text,
            // The checked list in its one order (checked by `check_options` before any run).
            ablations: Ablation::normalized(&opts.ablations)
                .unwrap_or_else(|_| opts.ablations.clone()),
            options: Some(opts.clone()),
            kind: MapsKind::Attention,
            residuals: Vec::new(),
            timings,
            tokens: forward.tokens,
            maps: forward.maps,
            mask: forward.mask,
            fully_masked_queries: forward.fully_masked_queries,
            trace: forward.trace,
            hidden: forward.hidden,
            layer_norms: forward.layer_norms,
        }
    }

    /// Maps and tokens with nothing known of the model that made them (tests, views fed by
    /// hand): a model named `maps` with the maps' layers and heads, no mask.
    pub fn of_maps(tokens: Vec<Token>, maps: AttentionMaps) -> Self {
        let [layers, heads, _, _] = maps.shape();
        let model = ModelMeta {
            name: "maps".to_owned(),
            architecture: "unknown".to_owned(),
            layers,
            heads,
            kv_heads: heads,
            d_model: 0,
        };
        Self::from_maps(tokens, maps, AppliedMask::default(), model)
    }

    /// Maps and tokens alone, under `model` and `mask` (attention files, tests): no trace, no
    /// hidden states, plain labels.
    pub fn from_maps(
        tokens: Vec<Token>,
        maps: AttentionMaps,
        mask: AppliedMask,
        model: ModelMeta,
    ) -> Self {
        Self {
            kv_groups: crate::model::kv_groups(model.heads, model.kv_heads),
            model,
            vocab_style: VocabStyle::Plain,
            text: None,
            ablations: Vec::new(),
            options: None,
            kind: MapsKind::Attention,
            residuals: Vec::new(),
            timings: RunTimings::default(),
            tokens,
            maps,
            mask,
            fully_masked_queries: Vec::new(),
            trace: None,
            hidden: None,
            layer_norms: None,
        }
    }
}

/// The tokens of `input` for `model`, with room for `extra` more (generated) tokens: the one
/// token-limit check. Over the limit, the input is cut when it asks for that (`truncate`) and
/// refused otherwise.
fn input_tokens(
    model: &LoadedModel,
    input: &RunInput,
    extra: usize,
) -> Result<Vec<Token>, PipelineError> {
    let file = input.file.as_deref();
    let mut tokens = model.tokens_cut(&input.input, file, input.truncate)?;
    let limit = model.info().max_positions;
    let total = tokens.len().saturating_add(extra);
    if total > limit {
        if !input.truncate || extra >= limit {
            return Err(PipelineError::TooLong {
                which: TextRole::Input,
                count: total,
                generated: extra,
                limit,
                truncate: input.truncate,
                config: model.dir().map(|d| d.join("config.json")),
                file: file.map(Path::to_owned),
            });
        }
        tokens.truncate(limit - extra);
    }
    Ok(tokens)
}

/// The tokens of `text`, the similarity target's second text, within the model's limit (it is
/// never cut: a shortened comparison text would be a different target).
pub(crate) fn text_b_tokens(
    model: &LoadedModel,
    text: &str,
    input: &RunInput,
) -> Result<Vec<Token>, PipelineError> {
    let tokens = model.tokens(&TokenInput::Text(text.to_owned()), None)?;
    let limit = model.info().max_positions;
    if tokens.len() > limit {
        return Err(PipelineError::TooLong {
            which: TextRole::TextB,
            count: tokens.len(),
            generated: 0,
            limit,
            truncate: input.truncate,
            config: model.dir().map(|d| d.join("config.json")),
            file: None,
        });
    }
    Ok(tokens)
}

/// Refuses options that do not fit `info` (a dimension subset of a head or a dimension that
/// does not exist, a traced layer past the last), naming the option and its valid range.
pub fn check_options(info: &ModelInfo, opts: &RunOptions) -> Result<(), PipelineError> {
    let misfit = |option: OptionMisfit| Err(PipelineError::Misfit(option));
    for d in &opts.dims {
        if d.layer_idx >= info.layers || d.head_idx >= info.heads {
            return misfit(OptionMisfit::DimsHead {
                layer_idx: d.layer_idx,
                head_idx: d.head_idx,
                layers: info.layers,
                heads: info.heads,
            });
        }
        if let Some(&dim) = d.dims.iter().find(|&&dim| dim >= info.d_head) {
            return misfit(OptionMisfit::DimsDimension {
                dim,
                layer_idx: d.layer_idx,
                head_idx: d.head_idx,
                d_head: info.d_head,
            });
        }
    }
    if let Some(layer_idx) = opts.trace_layer
        && layer_idx >= info.layers
    {
        return misfit(OptionMisfit::TraceLayer {
            layer_idx,
            layers: info.layers,
        });
    }
    for a in &opts.ablations {
        if a.layer_idx >= info.layers || a.head_idx >= info.heads {
            return misfit(OptionMisfit::AblatedHead {
                ablation: *a,
                layers: info.layers,
                heads: info.heads,
            });
        }
    }
    if let Err(reason) = Ablation::normalized(&opts.ablations) {
        return misfit(OptionMisfit::AblatedTwice(reason));
    }
    Ok(())
}

/// One forward pass of `model` through the engine, its errors named: the weights' fault names
/// the checkpoint, anything else the input file.
fn forward(
    model: &LoadedModel,
    tokens: &[Token],
    opts: &RunOptions,
    file: Option<&Path>,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<AttentionRun, PipelineError> {
    let iv = Interventions::default();
    forward_intervened(model, tokens, opts, &iv, None, file, progress).map(|(run, _)| run)
}

/// [`forward`] with interventions, from `resume` when given.
fn forward_intervened(
    model: &LoadedModel,
    tokens: &[Token],
    opts: &RunOptions,
    iv: &Interventions,
    resume: Option<Resume>,
    file: Option<&Path>,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(AttentionRun, Captured), PipelineError> {
    match model
        .model()
        .forward_intervened(tokens, opts, iv, resume, progress)
    {
        Ok(run) => Ok(run),
        Err(EngineError::Cancelled) => Err(PipelineError::Cancelled),
        // Overflow inside the model is the weights' fault: name the checkpoint, not the input.
        Err(error @ EngineError::BadWeights(_)) if model.dir().is_some() => {
            Err(PipelineError::Engine {
                error,
                file: model.dir().map(Path::to_owned),
            })
        }
        Err(error) => Err(PipelineError::Engine {
            error,
            file: file.map(Path::to_owned),
        }),
    }
}

/// Runs `model` on `input`: tokens, the length check (or cut), the options and the memory
/// budget, the forward pass. `progress` is called after each layer with the layers done;
/// returning false cancels the run.
pub fn run(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Run, PipelineError> {
    run_observed(model, input, opts, &mut |_| {}, progress)
}

/// [`run`], telling `tokenized` how many tokens the run has as soon as the input is tokenized
/// (the app's status bar says "computing … (N tokens)" from it).
pub fn run_observed(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    tokenized: &mut dyn FnMut(usize),
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Run, PipelineError> {
    run_resumed(model, input, opts, None, tokenized, progress)
}

/// Faults in the memory that [`run`] of `input` under `opts` will allocate for its maps
/// ([`crate::engine::Transformer::reserve`]), for a one-shot process whose first run would
/// otherwise fault in every page of them. Returns the bytes touched: none when the run keeps
/// no maps or would fail its checks (the run itself then says why).
pub fn reserve(model: &LoadedModel, input: &RunInput, opts: &RunOptions) -> usize {
    if !opts.keep_maps {
        return 0;
    }
    let Ok(tokens) = input_tokens(model, input, 0) else {
        return 0;
    };
    let fits = check_options(&model.info(), opts).is_ok()
        && check_budget(model, input, opts, tokens.len(), 1).is_ok();
    if !fits {
        return 0;
    }
    model.model().transformer().reserve(tokens.len())
}

/// [`run_observed`], starting from `base` where it can: when `base` kept its residuals, ran the
/// same tokens under the same options but for the ablations, and its trace and layer norms
/// cover what is asked, only the layers from the first whose ablations differ run again (the
/// earlier layers' maps and residuals are shared with `base`). The result equals a full run
/// bit for bit; anything else is a full run.
pub fn run_resumed(
    model: &LoadedModel,
    input: &RunInput,
    opts: &RunOptions,
    base: Option<&Run>,
    tokenized: &mut dyn FnMut(usize),
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<Run, PipelineError> {
    let start = Instant::now();
    let tokens = input_tokens(model, input, 0)?;
    tokenized(tokens.len());
    let tokenize_ms = ms_since(start);
    check_options(&model.info(), opts)?;
    check_budget(model, input, opts, tokens.len(), 1)?;
    let start = Instant::now();
    let layers = model.info().layers;
    let resume = base.and_then(|b| b.resume_point(&tokens, opts, layers));
    let first = resume.as_ref().map_or(0, |r| r.layer);
    let iv = if opts.keep_residuals {
        Interventions::capture((first..layers).map(Site::Resid))
    } else {
        Interventions::default()
    };
    let (attention, mut captured) = forward_intervened(
        model,
        &tokens,
        opts,
        &iv,
        resume,
        input.file.as_deref(),
        progress,
    )?;
    let text = match &input.input {
        TokenInput::Text(text) => Some(text.clone()),
        _ => None,
    };
    let timings = RunTimings {
        tokenize_ms,
        forward_ms: ms_since(start),
    };
    let mut run = Run::from_forward(model, attention, opts, text, timings);
    if opts.keep_residuals {
        let earlier = base.map_or(&[][..], |b| &b.residuals[..first.min(b.residuals.len())]);
        run.residuals = earlier.to_vec();
        for l in first..layers {
            let resid = captured
                .take(Site::Resid(l))
                .ok_or_else(|| PipelineError::Engine {
                    error: EngineError::Unsupported(format!("residual {l} was not captured")),
                    file: None,
                })?;
            run.residuals.push(Arc::new(resid));
        }
    }
    Ok(run)
}

impl Run {
    /// This ablated run with its maps replaced by its attention minus `baseline`'s: the same
    /// tokens under the same options without the ablations. Everything else (tokens, mask,
    /// ablations, model) stays this run's, so titles and chips name the ablations.
    pub fn ablation_difference(&self, baseline: &Run) -> Result<Run, String> {
        if self.kind != MapsKind::Attention || baseline.kind != MapsKind::Attention {
            return Err("a difference of differences is not attention".into());
        }
        if !baseline.ablations.is_empty() {
            return Err("the baseline run has ablations of its own".into());
        }
        if self.tokens != baseline.tokens {
            return Err("the baseline run has other tokens".into());
        }
        let maps = difference_maps(&self.maps, &baseline.maps)?;
        Ok(Run {
            maps,
            kind: MapsKind::AblationDifference,
            trace: None,
            residuals: Vec::new(),
            ..self.clone()
        })
    }

    /// Where a run of `tokens` under `opts` can start from this one: the first layer whose
    /// ablations differ, with this run's residual there and its earlier maps and norms. `None`
    /// when the runs differ in anything else, when this one kept no residuals, or when the
    /// ablations are the same (nothing to recompute is not this function's case: the caller's
    /// cache answers it).
    fn resume_point(&self, tokens: &[Token], opts: &RunOptions, layers: usize) -> Option<Resume> {
        let without_ablations = |o: &RunOptions| RunOptions {
            ablations: Vec::new(),
            ..o.clone()
        };
        let same_options = self
            .options
            .as_ref()
            .is_some_and(|mine| without_ablations(mine) == without_ablations(opts));
        if self.residuals.len() != layers || self.tokens != tokens || !same_options {
            return None;
        }
        let layer = Ablation::first_difference(&self.ablations, &opts.ablations)?;
        if opts.trace_layer.is_some_and(|t| t < layer) {
            return None;
        }
        let layer_norms = match (&self.layer_norms, opts.keep_layer_norms) {
            (Some(norms), true) => norms.get(..layer)?.to_vec(),
            (None, true) => return None,
            (_, false) => Vec::new(),
        };
        let maps = if opts.keep_maps {
            if self.maps.layers() != layers {
                return None;
            }
            self.maps.layers_before(layer)
        } else {
            Vec::new()
        };
        Some(Resume {
            layer,
            resid: self.residuals.get(layer)?.as_ref().clone(),
            maps,
            layer_norms,
            frozen: None,
        })
    }
}

/// An attention file as a [`Run`], keeping its token ids (the demo's hashed ids where the file
/// has none, as for an NPY sidecar), the model it names and the mask it records.
pub fn from_attention_file(file: AttentionFile) -> Run {
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
    let mut run = Run::from_maps(tokens, file.maps, file.mask, file.model);
    run.ablations = file.ablations;
    run
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
    use crate::engine::MaskSpec;
    use crate::model::DemoConfig;
    use crate::tokenize::DemoTokenizer;

    #[test]
    fn kv_groups_text_lists_the_groups() {
        assert_eq!(
            kv_groups_text(&crate::model::kv_groups(4, 2)),
            "query heads 0,1 | 2,3"
        );
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
    fn nothing_is_reserved_for_runs_without_maps_or_that_would_fail() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let input = |text: String, memory_budget: u64| RunInput {
            input: TokenInput::Text(text),
            file: None,
            truncate: false,
            memory_budget,
        };
        let fine = input("the cat sat on the mat".into(), 8 << 30);
        let no_maps = RunOptions {
            keep_maps: false,
            ..RunOptions::default()
        };
        // With freed memory kept (only allocator parameters: harmless in the test binary), a
        // run that keeps maps gets its memory touched…
        if crate::engine::memory::keep_freed_memory() {
            assert!(reserve(&model, &fine, &RunOptions::default()) > 0);
        }
        // …and one that keeps none does not.
        assert_eq!(reserve(&model, &fine, &no_maps), 0);
        // Past the token limit without --truncate, or over the memory budget: the run will
        // refuse, so its memory is not touched first.
        let limit = model.info().max_positions;
        let long = input("word ".repeat(limit + 10), 8 << 30);
        assert!(run(&model, &long, &RunOptions::default(), &mut |_| true).is_err());
        assert_eq!(reserve(&model, &long, &RunOptions::default()), 0);
        let tight = input("the cat sat on the mat".into(), 1);
        assert!(run(&model, &tight, &RunOptions::default(), &mut |_| true).is_err());
        assert_eq!(reserve(&model, &tight, &RunOptions::default()), 0);
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
        assert_eq!(with.maps.layers(), 6);
        assert_eq!(without.maps.layers(), 0);
        assert!(without.maps.head(0, 0).is_none());
        assert_eq!(with.hidden, without.hidden);
        // The budget is checked before the run: 1 KiB is too little for anything.
        let err = run(
            &model,
            &input.clone().with_memory_budget(1024),
            &RunOptions::default(),
            &mut |_| true,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("; the memory budget is 1 KiB"), "{err}");
    }

    /// A run of the demo on `text` with `ablations`, resumed from `base` when given; the
    /// layers it ran.
    fn ablated_run(
        model: &LoadedModel,
        text: &str,
        ablations: Vec<Ablation>,
        base: Option<&Run>,
    ) -> (Run, Vec<usize>) {
        let input = RunInput::new(TokenInput::Text(text.to_owned()));
        let opts = RunOptions {
            ablations,
            keep_residuals: true,
            keep_hidden: true,
            mask: MaskSpec::parse("causal").unwrap(),
            ..RunOptions::default()
        };
        let mut ran = Vec::new();
        let run = run_resumed(model, &input, &opts, base, &mut |_| {}, &mut |done| {
            ran.push(done);
            true
        })
        .unwrap();
        (run, ran)
    }

    #[test]
    fn a_resumed_ablation_equals_a_full_run_and_runs_only_the_later_layers() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let text = "the cat sat on the mat and the dog sat on the cat";
        let (base, ran) = ablated_run(&model, text, Vec::new(), None);
        assert_eq!(ran, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(base.residuals.len(), 6);
        for (ablations, first) in [
            (vec![Ablation::zero(5, 1)], 5),
            (vec![Ablation::mean(2, 3), Ablation::zero(4, 0)], 2),
            (vec![Ablation::zero(0, 0)], 0),
        ] {
            let (full, _) = ablated_run(&model, text, ablations.clone(), None);
            let (resumed, ran) = ablated_run(&model, text, ablations.clone(), Some(&base));
            assert_eq!(ran, ((first + 1)..=6).collect::<Vec<_>>(), "{ablations:?}");
            assert_eq!(resumed.maps, full.maps, "{ablations:?}");
            assert_eq!(resumed.hidden, full.hidden, "{ablations:?}");
            assert_eq!(resumed.residuals.len(), 6);
            for (a, b) in resumed.residuals.iter().zip(&full.residuals) {
                assert_eq!(a, b);
            }
            assert_eq!(resumed.ablations, full.ablations);
            // From an ablated run back to another ablation: from the first layer that differs.
            let other = vec![Ablation::mean(5, 2)];
            let (back, ran) = ablated_run(&model, text, other.clone(), Some(&full));
            assert_eq!(ran.first(), Some(&(first + 1)), "{ablations:?}");
            let (want, _) = ablated_run(&model, text, other, None);
            assert_eq!(back.maps, want.maps);
        }
        // Other options or other tokens: a full run.
        let (_, ran) = ablated_run(
            &model,
            "another text",
            vec![Ablation::zero(5, 1)],
            Some(&base),
        );
        assert_eq!(ran.len(), 6);
        // Keeping residuals costs its bytes in the estimate: 6 layers × 100 × 256 × 4.
        let info = model.info();
        let keep = RunOptions {
            keep_residuals: true,
            ..RunOptions::default()
        };
        assert_eq!(
            estimate_run_bytes(&info, 100, &keep)
                - estimate_run_bytes(&info, 100, &RunOptions::default()),
            6 * 100 * 256 * 4
        );
    }

    /// The README's claim: the last layer's H0 is an induction head built on L0·H0 (previous
    /// token); ablating L0·H0 breaks it. The score is the mean weight a token in the second
    /// copy of a repeated random sequence puts on the token after its first copy.
    #[test]
    fn ablating_the_previous_token_head_breaks_the_induction_head() {
        let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
        let words: Vec<String> = (0..20).map(|i| format!("w{}", (i * 7919) % 101)).collect();
        let text = format!("{} {}", words.join(" "), words.join(" "));
        let score = |ablations: Vec<Ablation>| -> f64 {
            let (run, _) = ablated_run(&model, &text, ablations, None);
            let map = run.maps.head(5, 0).unwrap();
            let n = 20;
            (n + 1..2 * n)
                .map(|i| f64::from(map[(i, i - n + 1)]))
                .sum::<f64>()
                / (n - 1) as f64
        };
        let intact = score(Vec::new());
        let zeroed = score(vec![Ablation::zero(0, 0)]);
        let meaned = score(vec![Ablation::mean(0, 0)]);
        let other = score(vec![Ablation::zero(0, 5)]);
        eprintln!(
            "induction score: intact {intact:.3}, L0·H0 zeroed {zeroed:.3}, mean {meaned:.3}, L0·H5 zeroed {other:.3}"
        );
        assert!(intact > 0.9, "{intact}");
        assert!(zeroed < 0.2 && meaned < 0.2, "{zeroed} {meaned}");
        // A random head of layer 0 is not what the induction head reads.
        assert!(other > 0.8, "{other}");
    }
}
