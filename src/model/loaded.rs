//! A model ready to run: the demo (with the demo tokenizer to use) or a checkpoint (with its
//! tokenizer.json, parsed once at load), and how each turns text, token strings and token ids
//! into [`Token`]s. The pipeline runs it (`crate::pipeline::run`); the token limit, the memory
//! budget and cancellation are the pipeline's.

use super::{Checkpoint, DemoConfig, DemoModel, LoadError, LoadProgress, Model, ModelInfo, demo};
use crate::tokenize::{self, DemoTokenizer, Token, TokenInput, VocabStyle};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a model could not be built or loaded.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The demo model's settings are impossible.
    // No `#[from]` source: the CLI's line would say the cause twice.
    #[error("demo model: {0}")]
    Demo(demo::DemoConfigError),
    /// A checkpoint folder could not be loaded (the message names the file).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The demo's weights alone would need more than the memory budget.
    #[error(
        "the demo model at {layers} layers × d_model {d_model} needs {} for its weights; the \
         memory budget is {}",
        crate::engine::ByteSize(*needs),
        crate::engine::ByteSize(*budget)
    )]
    OverBudget {
        /// Layers asked for.
        layers: usize,
        /// Width asked for.
        d_model: usize,
        /// Bytes its weights need.
        needs: u64,
        /// The budget, in bytes.
        budget: u64,
    },
}

impl From<demo::DemoConfigError> for OpenError {
    fn from(e: demo::DemoConfigError) -> Self {
        Self::Demo(e)
    }
}

/// The input cannot be turned into tokens for this model.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{reason}{}", in_file(file.as_deref()))]
pub struct InputError {
    /// What is wrong.
    pub reason: String,
    /// The input file, when the input came from one.
    pub file: Option<PathBuf>,
}

/// `" in FILE"`, or nothing.
fn in_file(file: Option<&Path>) -> String {
    file.map_or_else(String::new, |f| format!(" in {}", f.display()))
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
    pub fn demo(config: DemoConfig, tokenizer: DemoTokenizer) -> Result<Self, OpenError> {
        Ok(Self::Demo {
            model: Box::new(DemoModel::new(config)?),
            tokenizer,
        })
    }

    /// Loads the checkpoint in `dir`, reporting to `progress` (which can cancel it).
    pub fn checkpoint(dir: &Path, progress: Arc<LoadProgress>) -> Result<Self, OpenError> {
        Ok(Self::Checkpoint {
            dir: dir.to_owned(),
            model: Box::new(Checkpoint::load_with_progress(dir, progress)?),
        })
    }

    /// Builds the demo model unless its weights alone ([`DemoConfig::weight_bytes`]) would
    /// need more than `budget` bytes: refused before anything is allocated.
    pub fn demo_within(
        config: DemoConfig,
        tokenizer: DemoTokenizer,
        budget: u64,
    ) -> Result<Self, OpenError> {
        let needs = config.weight_bytes();
        if needs > budget {
            return Err(OpenError::OverBudget {
                layers: config.layers,
                d_model: config.d_model,
                needs,
                budget,
            });
        }
        Self::demo(config, tokenizer)
    }

    /// `demo` (with `config` and `tokenizer`, within `budget` bytes), or a checkpoint folder.
    pub fn load(
        model: &str,
        config: DemoConfig,
        tokenizer: DemoTokenizer,
        budget: u64,
    ) -> Result<Self, OpenError> {
        if model == "demo" {
            Self::demo_within(config, tokenizer, budget)
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

    /// The tokens for `input`, before the length check. Errors name `file` when given.
    pub fn tokens(
        &self,
        input: &TokenInput,
        file: Option<&Path>,
    ) -> Result<Vec<Token>, InputError> {
        self.tokens_cut(input, file, false)
    }

    /// [`Self::tokens`]; with `truncate`, a text far longer than the model can take is cut
    /// (at [`text_cut_bytes`]) before it is tokenized.
    pub fn tokens_cut(
        &self,
        input: &TokenInput,
        file: Option<&Path>,
        truncate: bool,
    ) -> Result<Vec<Token>, InputError> {
        let fail = |reason: String| InputError {
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
                    let tokens = t.encode(text).map_err(fail)?;
                    // A tokenizer that disagrees with the model's vocabulary: name both files.
                    let vocab = model.config().vocab;
                    if let Some((i, token)) = tokens
                        .iter()
                        .enumerate()
                        .find(|(_, t)| t.id as usize >= vocab)
                    {
                        return Err(fail(format!(
                            "{} gives token id {} (position {i}, {:?}), outside the vocabulary of {vocab} that {} sets",
                            t.path().display(),
                            token.id,
                            token.text,
                            dir.join("config.json").display()
                        )));
                    }
                    tokens
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

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
