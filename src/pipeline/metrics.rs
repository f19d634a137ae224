//! Head metrics of a run, for `attnviz analyze --what metrics` and the app's head-metrics
//! dashboard alike: what the metrics read besides the maps (the applied mask's allowed pairs,
//! the token ids, special and punctuation tokens), every head's metrics, and the induction
//! probe's scores.

use super::{PipelineError, Run, induction_probe};
use crate::analysis::metrics::{HeadMetrics, MetricInput, head_metrics, induction_score};
use crate::analysis::metrics::{InductionProbe, is_punctuation};
use crate::engine::RunOptions;
use crate::model::LoadedModel;
use ndarray::{Array2, ArrayView2};

/// What the metrics of a run's heads read besides the maps, owned (see [`MetricInput`]).
#[derive(Clone, Debug)]
pub struct MetricData {
    /// The applied mask's allowed (query, key) pairs; `None` when nothing is masked.
    allowed: Option<Array2<bool>>,
    ids: Vec<u32>,
    special: Vec<bool>,
    punctuation: Vec<bool>,
}

impl MetricData {
    /// The data of `run`: its applied mask, its token ids, the tokens its tokenizer marks
    /// special and those whose label (in the run's vocabulary style) is all punctuation. An
    /// error when the mask does not fit the tokens.
    pub fn of(run: &Run) -> Result<MetricData, String> {
        let n = run.tokens.len();
        let is_pad: Vec<bool> = run
            .tokens
            .iter()
            .map(crate::tokenize::Token::is_pad)
            .collect();
        let allowed = run.mask.allowed(n, &is_pad).map_err(|e| e.to_string())?;
        let labels = crate::tokenize::display_labels(&run.tokens, &run.vocab_style);
        Ok(MetricData {
            allowed,
            ids: run.tokens.iter().map(|t| t.id).collect(),
            special: run.tokens.iter().map(|t| t.is_special).collect(),
            punctuation: labels.iter().map(|l| is_punctuation(l)).collect(),
        })
    }

    /// The allowed pairs, `None` when nothing is masked.
    pub fn allowed(&self) -> Option<ArrayView2<'_, bool>> {
        self.allowed.as_ref().map(|a| a.view())
    }

    /// The borrowed form [`head_metrics`] reads.
    pub fn input(&self) -> MetricInput<'_> {
        MetricInput {
            allowed: self.allowed(),
            ids: &self.ids,
            special: &self.special,
            punctuation: &self.punctuation,
        }
    }
}

/// Every head's metrics. Shape: [layer][head]. `keep_going(heads done, heads)` is called after
/// each head; returning false stops, and the result is `None`.
pub fn head_metrics_of(
    run: &Run,
    data: &MetricData,
    keep_going: &mut dyn FnMut(usize, usize) -> bool,
) -> Option<Vec<Vec<HeadMetrics>>> {
    let [layers, heads, _, _] = run.maps.shape();
    let input = data.input();
    let mut out = Vec::with_capacity(layers);
    for l in 0..layers {
        let mut row = Vec::with_capacity(heads);
        for h in 0..heads {
            row.push(match run.maps.head(l, h) {
                Some(map) => head_metrics(map.view(), &input),
                None => HeadMetrics::default(),
            });
            if !keep_going(l * heads + h + 1, layers * heads) {
                return None;
            }
        }
        out.push(row);
    }
    Some(out)
}

/// Every head's induction score. Shape: [layer][head]; `None` where the probe does not fit.
pub type InductionScores = Vec<Vec<Option<f64>>>;

/// The induction probe ([`induction_probe`]) under `opts`: its run, where the sequence sits,
/// and every head's score on it ([`induction_score`]).
pub fn induction_scores(
    model: &LoadedModel,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(Run, InductionProbe, InductionScores), PipelineError> {
    let (run, probe) = induction_probe(model, opts, progress)?;
    let [layers, heads, _, _] = run.maps.shape();
    let scores = (0..layers)
        .map(|l| {
            (0..heads)
                .map(|h| {
                    run.maps
                        .head(l, h)
                        .and_then(|m| induction_score(m.view(), &probe))
                })
                .collect()
        })
        .collect();
    Ok((run, probe, scores))
}
