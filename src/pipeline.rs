//! The one run path shared by the CLI and the app: model + token input + [`RunOptions`] → [`Run`].
//!
//! A [`LoadedModel`] (the demo or a checkpoint) owns everything that depends on the model: how
//! text, token strings and token ids become [`Token`]s, how its vocabulary is labelled, its
//! key/value groups and the mask it really applies. [`run`] checks the token limit (cutting the
//! input when asked), runs the forward pass and returns the tokens, maps and effective mask.
//! Attention files come through [`from_attention_file`] into the same [`Run`] shape, keeping
//! their token ids. Errors stay typed ([`PipelineError`]) until the CLI's `main` or the app's
//! error line turns them into text; they name the input file where one is involved.

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
    #[error("demo model: {0}")]
    Demo(#[from] demo::DemoConfigError),
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
    #[error("{count} tokens exceed the model's limit of {limit}{}", in_file(file.as_deref()))]
    TooLong {
        /// Tokens in the input.
        count: usize,
        /// The model's limit.
        limit: usize,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// The forward pass failed.
    #[error("{source}{}", in_file(file.as_deref()))]
    Engine {
        /// Why.
        source: EngineError,
        /// The input file, when the input came from one.
        file: Option<PathBuf>,
    },
    /// A newer job or the user stopped the run.
    #[error("cancelled")]
    Cancelled,
}

/// `" in FILE"`, or nothing.
fn in_file(file: Option<&Path>) -> String {
    file.map_or_else(String::new, |f| format!(" in {}", f.display()))
}

/// What to run: the tokens' source, the file it came from (for messages), and whether an input
/// longer than the model's limit is cut (`true`) or refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInput {
    /// Text, token strings or token ids.
    pub input: TokenInput,
    /// The file the input was read from, if any.
    pub file: Option<PathBuf>,
    /// Cut the input at the model's limit instead of failing.
    pub truncate: bool,
}

impl RunInput {
    /// An input typed or given on the command line: no file, no truncation.
    pub fn new(input: TokenInput) -> Self {
        Self {
            input,
            file: None,
            truncate: false,
        }
    }
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

    /// The tokens for `input`, before the length check. Errors name `file` when given.
    pub fn tokens(
        &self,
        input: &TokenInput,
        file: Option<&Path>,
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
                // The tokenizer's own errors name its tokenizer.json.
                Some(t) => t.encode(text).map_err(fail)?,
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
    let mut tokens = model.tokens(&input.input, file)?;
    let limit = model.info().max_positions;
    if tokens.len() > limit {
        if !input.truncate {
            return Err(PipelineError::TooLong {
                count: tokens.len(),
                limit,
                file: file.map(Path::to_owned),
            });
        }
        tokens.truncate(limit);
    }
    let tokenize_ms = ms_since(start);
    let mask = model.effective_mask(&opts.mask, tokens.len()).to_string();
    let start = Instant::now();
    let attention = match model.model().forward_with_progress(&tokens, opts, progress) {
        Ok(run) => run,
        Err(EngineError::Cancelled) => return Err(PipelineError::Cancelled),
        Err(source) => {
            return Err(PipelineError::Engine {
                source,
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
}
