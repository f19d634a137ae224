//! Hugging Face checkpoints (BERT, GPT-2, Llama family) built onto the engine's [`Transformer`].
//!
//! The per-family weight loading lives in `loaders` (one file per family, one `load` per
//! Hugging Face module); this file holds the loaded model and what it does.

use super::config::{Family, ModelConfig, RawConfig};
use super::lm_head::{self, LmHeadInfo, PredictError, Prediction};
use super::loaders;
use super::parts::{Embeddings, HeadWeight, LmHead};
use super::weights::{LoadError, WeightFile};
use super::{Model, ModelInfo};
use crate::engine::{EngineError, Mistake, Norm, RunOptions, Transformer};
use crate::tokenize::Token;
use ndarray::{Array2, ArrayView2, s};
use std::path::{Path, PathBuf};

/// A loaded checkpoint.
pub struct Checkpoint {
    dir: PathBuf,
    /// The display name and base model (see [`super::naming`]).
    name: super::naming::CheckpointName,
    cfg: ModelConfig,
    embeddings: Embeddings,
    transformer: Transformer,
    /// The next-token head, where the checkpoint has one.
    lm_head: Option<LmHead>,
    /// The folder's tokenizer.json, when it has one.
    tokenizer: Option<crate::tokenize::HfTokenizer>,
    /// BERT's masked-LM head (`cls.predictions.*`), when the checkpoint holds it.
    mlm_head: Option<lm_head::MlmHead>,
}

impl Checkpoint {
    /// Loads `config.json`, `model.safetensors` and (if present) the vocabulary of
    /// `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, LoadError> {
        Self::load_with_progress(dir, std::sync::Arc::default())
    }

    /// [`Self::load`], reporting the bytes converted to `progress` and stopping with
    /// [`LoadError::Cancelled`] when it is cancelled.
    pub fn load_with_progress(
        dir: &Path,
        progress: std::sync::Arc<super::weights::LoadProgress>,
    ) -> Result<Self, LoadError> {
        // A .gguf file holds its config and tokenizer too; a folder has config.json and (maybe)
        // tokenizer.json, read after the weights.
        let (name, cfg, weights, gguf_tokenizer) = if super::gguf::is_gguf_path(dir) {
            let gguf = super::gguf::open(dir)?;
            let name = super::naming::gguf_name(dir, gguf.general_name.as_deref());
            let tokenizer = crate::tokenize::HfTokenizer::from_json_value(gguf.tokenizer_json, dir)
                .map_err(|e| LoadError::Config {
                    path: e.path,
                    reason: e.reason,
                })?;
            let weights = WeightFile::from_source(Box::new(gguf.weights), progress);
            (name, gguf.config, weights, Some(tokenizer))
        } else {
            let raw = RawConfig::read(dir)?;
            let name = super::naming::checkpoint_name(dir, raw.name_or_path.as_deref());
            let cfg = raw.into_config(&dir.join("config.json"))?;
            let weights = WeightFile::open_with_progress(dir, progress)?;
            (name, cfg, weights, None)
        };
        let weights_path = weights.path().to_owned();
        let (embeddings, parts) = match cfg.family {
            Family::Bert => loaders::bert::load(&weights, &cfg)?,
            Family::Gpt2 => loaders::gpt2::load(&weights, &cfg)?,
            Family::Llama => loaders::llama::load(&weights, &cfg)?,
        };
        // Named as the file names it (`output.weight`, `token_embd.weight` in a GGUF).
        let lm_head = loaders::load_lm_head(&weights, &cfg)?.map(|mut head| {
            head.tensor = weights.stored_name(&head.tensor);
            head
        });
        let mlm_head = match cfg.family {
            Family::Bert => loaders::bert::load_mlm_head(&weights, &cfg)?,
            Family::Gpt2 | Family::Llama => None,
        };
        // The weights (and their file maps) are released here: everything is owned from now on.
        drop(weights);
        // Checked and packed for the matrix kernel now, as part of loading, so that the first
        // forward pass costs what every later one does.
        let transformer = Transformer::new(parts).map_err(|e| LoadError::Weights {
            path: weights_path.clone(),
            reason: e.to_string(),
        })?;
        // tokenizer.json is parsed once: the tokenizer, its vocabulary and its special ids.
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = if gguf_tokenizer.is_some() {
            gguf_tokenizer
        } else if tokenizer_path.exists() {
            Some(
                crate::tokenize::HfTokenizer::from_file(&tokenizer_path).map_err(|e| {
                    LoadError::Config {
                        path: e.path,
                        reason: e.reason,
                    }
                })?,
            )
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_owned(),
            name,
            cfg,
            embeddings,
            transformer,
            lm_head,
            tokenizer,
            mlm_head,
        })
    }

    /// The next-token head, if the checkpoint has one: `lm_head.weight`, or the input embedding
    /// when `tie_word_embeddings` ties them (GPT-2 by default). BERT checkpoints report none.
    pub fn lm_head(&self) -> Option<LmHeadInfo> {
        self.lm_head.as_ref().map(|h| LmHeadInfo {
            tensor: h.tensor.clone(),
            tied: matches!(h.weight, HeadWeight::Tied),
            vocab: self.cfg.vocab,
        })
    }

    /// The head's matrix. Shape: [vocab, d_model].
    pub fn head_weight(&self) -> Option<ArrayView2<'_, f32>> {
        self.lm_head.as_ref().map(|h| match &h.weight {
            HeadWeight::Tied => self.embeddings.word.view(),
            HeadWeight::Own(w) => w.view(),
        })
    }

    /// Next-token log-probabilities after each row of `hidden` (final hidden states, shape
    /// [position, d_model], as `AttentionRun::hidden` holds them with
    /// `RunOptions { keep_hidden: true, .. }`; the final norm is already applied).
    ///
    /// Returns None when the checkpoint has no head; otherwise shape [position, vocab], each row
    /// a log-softmax. Pass a slice of rows to bound the memory (position × vocab f32).
    pub fn next_token_logprobs(
        &self,
        hidden: ArrayView2<'_, f32>,
    ) -> Result<Option<Array2<f32>>, PredictError> {
        self.head_weight()
            .map(|w| lm_head::logprobs_from_hidden(hidden, w))
            .transpose()
    }

    /// The `k` most likely next tokens after `position` (0-based), largest first, with their
    /// vocabulary strings. `hidden` is the run's final hidden states, [position, d_model].
    pub fn top_next_tokens(
        &self,
        hidden: ArrayView2<'_, f32>,
        position: usize,
        k: usize,
    ) -> Result<Vec<Prediction>, PredictError> {
        if position >= hidden.nrows() {
            return Err(PredictError::Position {
                position,
                len: hidden.nrows(),
            });
        }
        let row = hidden.slice(s![position..=position, ..]);
        let logprobs = self
            .next_token_logprobs(row)?
            .ok_or_else(|| PredictError::NoHead {
                dir: Some(self.dir.clone()),
            })?;
        // NaN or ±∞ would print as `log-prob NaN` for every token: refuse, naming the weights.
        if logprobs.iter().any(|v| !v.is_finite()) {
            return Err(PredictError::NonFinite {
                file: self.weights_path(),
            });
        }
        let ids: Vec<(u32, f32)> = lm_head::top_k(logprobs.row(0), k);
        let texts = self.tokens_from_ids(&ids.iter().map(|&(id, _)| id).collect::<Vec<_>>());
        Ok(ids
            .into_iter()
            .zip(texts)
            .map(|((id, logprob), t)| Prediction {
                id,
                token: t.text,
                logprob,
            })
            .collect())
    }

    /// Tokenizes `text` with the folder's tokenizer.json, adding special tokens as
    /// transformers' `tokenizer(text)` does.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>, String> {
        match &self.tokenizer {
            Some(t) => t.encode(text),
            None => Err(format!(
                "no tokenizer.json in {}, so text cannot be tokenized; give token ids instead",
                self.dir.display()
            )),
        }
    }

    /// The validated config.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Tokens for raw ids, with vocabulary texts when the folder has a tokenizer.json.
    pub fn tokens_from_ids(&self, ids: &[u32]) -> Vec<Token> {
        let tok = self.tokenizer.as_ref();
        ids.iter()
            .map(|&id| Token {
                text: tok
                    .and_then(|t| t.id_to_text(id))
                    .map_or_else(|| id.to_string(), str::to_owned),
                id,
                is_special: tok.is_some_and(|t| t.is_special(id)),
                byte_span: None,
            })
            .collect()
    }

    /// The folder's weights file: `model.safetensors`, or the index of its shards; the GGUF
    /// file itself.
    pub fn weights_path(&self) -> PathBuf {
        if super::gguf::is_gguf_path(&self.dir) {
            return self.dir.clone();
        }
        let single = self.dir.join("model.safetensors");
        if single.exists() {
            single
        } else {
            self.dir.join("model.safetensors.index.json")
        }
    }

    /// The folder's tokenizer.json, parsed once at load, when it has one.
    pub fn tokenizer(&self) -> Option<&crate::tokenize::HfTokenizer> {
        self.tokenizer.as_ref()
    }

    /// Which query heads share each key/value head: entry g lists the query heads of group g.
    pub fn kv_groups(&self) -> Vec<Vec<usize>> {
        super::kv_groups(self.cfg.heads, self.cfg.kv_heads)
    }

    /// The embeddings of `tokens`: word, plus learned positions (skipped under
    /// [`Mistake::NoPositions`]) and BERT's segment, then BERT's embedding norm (skipped under
    /// [`Mistake::NoLayerNorm`]). Shape: [token, d_model].
    fn embed(&self, tokens: &[Token], opts: &RunOptions) -> Result<Array2<f32>, EngineError> {
        let mut x = self.input_embeddings(tokens)?;
        self.add_positions_with(&mut x, !opts.has(Mistake::NoPositions))?;
        if let Some(norm) = &self.embeddings.norm
            && !opts.has(Mistake::NoLayerNorm)
        {
            norm.apply(&mut x);
        }
        Ok(x)
    }

    /// The word-embedding rows of `tokens`, as transformers' `inputs_embeds` holds them (before
    /// positions, token types and any embedding norm). Shape: [token, d_model].
    pub(crate) fn input_embeddings(&self, tokens: &[Token]) -> Result<Array2<f32>, EngineError> {
        let word = &self.embeddings.word;
        let vocab = word.nrows();
        let mut x = Array2::<f32>::zeros((tokens.len(), self.cfg.d_model));
        for (token, mut row) in tokens.iter().zip(x.rows_mut()) {
            let id = token.id as usize;
            if id >= vocab {
                return Err(EngineError::OutOfRange(format!(
                    "token id {id} is outside the vocabulary (size {vocab})"
                )));
            }
            row.assign(&word.row(id));
        }
        Ok(x)
    }

    /// Adds the learned positions and BERT's segment-0 embedding to input embeddings.
    pub fn add_positions(&self, x: &mut Array2<f32>) -> Result<(), EngineError> {
        self.add_positions_with(x, true)
    }

    /// Adds BERT's segment-0 embedding, and the learned positions when `positions` is true.
    /// The token limit is the pipeline's to enforce (`pipeline::run`); a position past the
    /// learned table is only refused here, never indexed.
    fn add_positions_with(&self, x: &mut Array2<f32>, positions: bool) -> Result<(), EngineError> {
        let e = &self.embeddings;
        if let Some(p) = &e.position
            && positions
            && x.nrows() > p.nrows()
        {
            return Err(EngineError::OutOfRange(format!(
                "position {} has no learned embedding (the table has {})",
                x.nrows() - 1,
                p.nrows()
            )));
        }
        for (pos, mut row) in x.rows_mut().into_iter().enumerate() {
            if let Some(p) = &e.position
                && positions
            {
                row += &p.row(pos);
            }
            if let Some(seg) = &e.segment {
                row += seg;
            }
        }
        Ok(())
    }

    /// BERT's LayerNorm over the summed embeddings, if any.
    pub fn embedding_norm(&self) -> Option<&Norm> {
        self.embeddings.norm.as_ref()
    }

    /// The input embedding matrix. Shape: [vocab, d_model].
    pub fn word_embeddings(&self) -> ArrayView2<'_, f32> {
        self.embeddings.word.view()
    }

    /// The transformer stack.
    pub fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    /// BERT's masked-LM head, when the checkpoint holds `cls.predictions.*`.
    pub fn mlm_head(&self) -> Option<&lm_head::MlmHead> {
        self.mlm_head.as_ref()
    }
}

impl Model for Checkpoint {
    fn transformer(&self) -> &Transformer {
        &self.transformer
    }

    fn info(&self) -> ModelInfo {
        let c = &self.cfg;
        let t = &self.transformer;
        let mut params = self.embeddings.word.len() as u64
            + self
                .embeddings
                .position
                .as_ref()
                .map_or(0, |p| p.len() as u64);
        for b in t.blocks() {
            let a = &b.attention;
            params += (a.wq.len()
                + a.wk.len()
                + a.wv.len()
                + a.wo.len()
                + b.mlp.w_in.len()
                + b.mlp.w_out.len()) as u64;
            params += b.mlp.w_gate.as_ref().map_or(0, |g| g.len() as u64);
        }
        if let Some(LmHead {
            weight: HeadWeight::Own(w),
            ..
        }) = &self.lm_head
        {
            params += w.len() as u64;
        }
        ModelInfo {
            name: self.name.name.clone(),
            base_model: self.name.base.clone(),
            architecture: c.family.name().to_owned(),
            layers: c.layers,
            heads: c.heads,
            kv_heads: c.kv_heads,
            d_model: c.d_model,
            d_head: c.d_head,
            d_ff: c.d_ff,
            vocab: Some(c.vocab),
            params,
            dtype: c.dtype.clone(),
            max_positions: c.max_positions,
            positional: match c.family {
                Family::Bert | Family::Gpt2 => "learned".to_owned(),
                Family::Llama => {
                    let mut text = format!("rope (theta {})", c.rope_theta);
                    if let Some(s) = c.rope_llama3 {
                        text += &format!(", llama3 scaling ×{}", s.factor);
                    }
                    if let Some(window) = c.sliding_window {
                        text += &format!(", sliding window {window}");
                    }
                    text
                }
            },
            norm: match c.family {
                Family::Bert => "post".to_owned(),
                Family::Gpt2 | Family::Llama => "pre".to_owned(),
            },
            causal: t.causal(),
            lm_head: self.lm_head(),
        }
    }

    fn input_embeddings(
        &self,
        tokens: &[Token],
        opts: &RunOptions,
    ) -> Result<Array2<f32>, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::NoTokens);
        }
        self.embed(tokens, opts)
    }
}
