//! The analyses that run a model beyond the run itself: the induction probe's run (issue 23's
//! `induction` metric) and value zeroing, both under the run's options (mask, ablations, …).

use super::{PipelineError, Run, RunInput, run};
use crate::analysis::metrics::InductionProbe;
use crate::analysis::value_zeroing::{ValueZeroing, value_zeroing};
use crate::engine::{EngineError, RunOptions};
use crate::io::TokenInput;
use crate::model::LoadedModel;
use crate::model::rng::Rng;
use crate::tokenize::Token;
use std::path::Path;

/// Tokens in one copy of the induction probe's sequence.
pub const PROBE_PERIOD: usize = 50;
/// The probe's seed: the same sequence on every run of a model.
pub const PROBE_SEED: u64 = 23;

/// The induction probe: `PROBE_PERIOD` random tokens repeated twice (fewer when the model's
/// window is shorter), run under `opts`. A checkpoint draws distinct ids that its tokenizer
/// does not mark special and adds the special tokens its tokenizer adds around a text (BOS,
/// [CLS] … [SEP]); the demo tokenizes 50 distinct random words with its own tokenizer.
pub fn induction_probe(
    model: &LoadedModel,
    opts: &RunOptions,
    progress: &mut dyn FnMut(usize) -> bool,
) -> Result<(Run, InductionProbe), PipelineError> {
    let limit = model.info().max_positions;
    let mut rng = Rng::new(PROBE_SEED, 0x1d0c, 0);
    let (input, probe) = match model.as_checkpoint() {
        None => {
            let period = PROBE_PERIOD.min(limit / 2);
            let words = distinct(period, &mut || random_word(&mut rng));
            let text = format!("{} {}", words.join(" "), words.join(" "));
            (TokenInput::Text(text), InductionProbe { start: 0, period })
        }
        Some(ckpt) => {
            let (prefix, suffix) = match ckpt.tokenizer() {
                Some(t) => {
                    let around = t.encode("a").map_err(|reason| {
                        PipelineError::Input(crate::model::InputError { reason, file: None })
                    })?;
                    let lead = around.iter().take_while(|t| t.is_special).count();
                    let trail = around.iter().rev().take_while(|t| t.is_special).count();
                    let ids = |ts: &[Token]| ts.iter().map(|t| t.id).collect::<Vec<u32>>();
                    let trail_from = around.len().saturating_sub(trail).max(lead);
                    (ids(&around[..lead]), ids(&around[trail_from..]))
                }
                None => (Vec::new(), Vec::new()),
            };
            let vocab = model.info().vocab.unwrap_or(0);
            let usable = |id: u32| {
                ckpt.tokenizer()
                    .is_none_or(|t| !t.is_special(id) && t.id_to_text(id).is_some())
            };
            let room = limit.saturating_sub(prefix.len() + suffix.len()) / 2;
            let period = PROBE_PERIOD.min(room).min(vocab / 2);
            let mut draw = || loop {
                let id = (rng.next_u64() % vocab.max(1) as u64) as u32;
                if usable(id) {
                    return id;
                }
            };
            let seq = distinct(period, &mut draw);
            let mut ids = prefix.clone();
            ids.extend(&seq);
            ids.extend(&seq);
            ids.extend(suffix);
            (
                TokenInput::Ids(ids),
                InductionProbe {
                    start: prefix.len(),
                    period,
                },
            )
        }
    };
    if probe.period < 2 {
        return Err(PipelineError::Engine {
            error: EngineError::Unsupported(format!(
                "the induction probe needs at least 4 tokens; the model takes {limit}"
            )),
            file: model.dir().map(Path::to_owned),
        });
    }
    let run = run(model, &RunInput::new(input), opts, progress)?;
    Ok((run, probe))
}

/// `count` distinct values of `draw` (which must have at least `count` values).
fn distinct<T: PartialEq>(count: usize, draw: &mut dyn FnMut() -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let v = draw();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// A pronounceable random word of two or three syllables.
fn random_word(rng: &mut Rng) -> String {
    const CONSONANTS: &[u8] = b"bdfgklmnprstvz";
    const VOWELS: &[u8] = b"aeiou";
    let syllables = 2 + (rng.next_u64() % 2) as usize;
    let mut word = String::new();
    for _ in 0..syllables {
        word.push(char::from(
            CONSONANTS[(rng.next_u64() % CONSONANTS.len() as u64) as usize],
        ));
        word.push(char::from(
            VOWELS[(rng.next_u64() % VOWELS.len() as u64) as usize],
        ));
    }
    word
}

/// Value zeroing (`analysis::value_zeroing`) of `run`'s tokens on `model`, under the run's
/// options; `progress` gets the fraction done, returning false cancels. A run from an attention
/// file has no model to zero values in.
pub fn value_zeroing_of(
    model: &LoadedModel,
    run: &Run,
    progress: &mut dyn FnMut(f32) -> bool,
) -> Result<ValueZeroing, PipelineError> {
    let opts = run.options.clone().unwrap_or_default();
    value_zeroing(model.model(), &run.tokens, &opts, progress).map_err(|error| match error {
        EngineError::Cancelled => PipelineError::Cancelled,
        error => PipelineError::Engine {
            error,
            file: model.dir().map(Path::to_owned),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::analysis::metrics::induction_score;

    #[test]
    fn the_probe_finds_the_demo_induction_head_on_top() {
        let model = LoadedModel::demo(Default::default(), Default::default()).unwrap();
        let (run, probe) = induction_probe(&model, &RunOptions::default(), &mut |_| true).unwrap();
        assert_eq!(
            probe,
            InductionProbe {
                start: 0,
                period: 50
            }
        );
        assert_eq!(run.tokens.len(), 100);
        // The two copies are the same tokens, and the 50 are distinct.
        let ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids[..50], ids[50..]);
        let scores = |run: &Run, probe: &InductionProbe| {
            let [layers, heads, _, _] = run.maps.shape();
            let mut scores = Vec::new();
            for l in 0..layers {
                for h in 0..heads {
                    let map = run.maps.head(l, h).unwrap();
                    scores.push((induction_score(map.view(), probe).unwrap(), (l, h)));
                }
            }
            scores.sort_by(|a, b| b.0.total_cmp(&a.0));
            scores
        };
        // The demo's crafted induction head, the last layer's head 0, on top. Without a
        // causal mask it also sees the token after the query's own copy (j − 1 = q), so it
        // splits its weight between the two; with one it puts nearly all on the target.
        let open = scores(&run, &probe);
        assert_eq!(open[0].1, (5, 0), "{open:?}");
        assert!(open[0].0 > 0.35 && open[1].0 < 0.1, "{open:?}");
        let causal = RunOptions {
            mask: crate::engine::MaskSpec::parse("causal").unwrap(),
            ..RunOptions::default()
        };
        let (run, probe) = induction_probe(&model, &causal, &mut |_| true).unwrap();
        let closed = scores(&run, &probe);
        assert_eq!(closed[0].1, (5, 0), "{closed:?}");
        assert!(closed[0].0 > 0.9 && closed[1].0 < 0.1, "{closed:?}");
        // Ablating the previous-token head it reads (L0·H0) breaks it.
        let ablated = RunOptions {
            ablations: vec![crate::engine::Ablation::zero(0, 0)],
            ..causal
        };
        let (run, probe) = induction_probe(&model, &ablated, &mut |_| true).unwrap();
        let map = run.maps.head(5, 0).unwrap();
        assert!(induction_score(map.view(), &probe).unwrap() < 0.2);
    }

    #[test]
    fn a_checkpoint_probe_is_wrapped_in_its_special_tokens() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
        let model = LoadedModel::checkpoint(&dir, Default::default()).unwrap();
        let (run, probe) = induction_probe(&model, &RunOptions::default(), &mut |_| true).unwrap();
        let n = run.tokens.len();
        assert_eq!(probe.start, 1);
        assert_eq!(n, 2 * probe.period + 2);
        assert!(run.tokens[0].is_special && run.tokens[n - 1].is_special);
        assert!(run.tokens[1..n - 1].iter().all(|t| !t.is_special));
        let ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
        assert_eq!(ids[1..1 + probe.period], ids[1 + probe.period..n - 1]);
    }
}
