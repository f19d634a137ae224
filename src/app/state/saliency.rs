//! The Saliency view's persisted settings (part of [`AppState`](crate::app::AppState), so they
//! are saved in sessions) and the attribution requests they ask for.

use crate::analysis::attribution::{Aggregate, AttributeRequest, Baseline, Method, Occlude};
use crate::grad::{TargetKind, TargetSpec, TokenRef};
use serde::{Deserialize, Serialize};

/// Integrated-gradients steps when nothing else is chosen (the CLI's default).
pub const DEFAULT_STEPS: usize = 32;
/// Next-token candidates listed per position by default.
pub const DEFAULT_TOP_K: usize = 10;
/// The second text of the similarity target the app opens with (it shares words with the
/// sample text, so the scores are not flat).
pub const DEFAULT_TEXT_B: &str = "A tired cat slept on the mat .";

/// What the Saliency view explains and how. Every field has a default, so sessions saved before
/// the view existed still load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaliencySettings {
    /// The method whose scores colour the text and fill the bar chart.
    pub method: Method,
    /// The target kind; `None` means the model's default (see [`default_kind`]).
    pub kind: Option<TargetKind>,
    /// The position P (0-based); `None` means the default (the last position for `logprob`).
    pub position: Option<usize>,
    /// The token T (an id, or a vocabulary string); `None` means the argmax at P.
    pub token: Option<TokenRef>,
    /// The foil F of `contrast`.
    pub foil: Option<TokenRef>,
    /// The second text of `similarity`.
    pub text_b: String,
    /// Integrated-gradients steps.
    pub steps: usize,
    /// Integrated-gradients baseline.
    pub baseline: Baseline,
    /// How occlusion hides a token; `None` means the model's default.
    pub occlude: Option<Occlude>,
    /// Scores per token or per word.
    pub aggregate: Aggregate,
    /// Next-token candidates listed for the chosen position.
    pub top_k: usize,
    /// Also compute every other method for the table and its rank correlations.
    pub compare: bool,
    /// Greedy tokens to generate and attribute (0: none).
    pub generate: usize,
    /// With ablated heads, also compute the chosen method without them and show both.
    pub compare_unablated: bool,
}

impl Default for SaliencySettings {
    fn default() -> Self {
        Self {
            method: Method::Gradient,
            kind: None,
            position: None,
            token: None,
            foil: None,
            text_b: DEFAULT_TEXT_B.to_owned(),
            steps: DEFAULT_STEPS,
            baseline: Baseline::Zero,
            occlude: None,
            aggregate: Aggregate::Token,
            top_k: DEFAULT_TOP_K,
            compare: false,
            generate: 0,
            compare_unablated: false,
        }
    }
}

/// The target kind used when none is chosen: next-token log-probability for causal LMs,
/// similarity for sentence models and the demo, the masked-LM target otherwise.
pub fn default_kind(supported: &[TargetKind]) -> Option<TargetKind> {
    [TargetKind::Logprob, TargetKind::Similarity, TargetKind::Mlm]
        .into_iter()
        .chain(supported.iter().copied())
        .find(|k| supported.contains(k))
}

impl SaliencySettings {
    /// The target kind in use for a model supporting `supported`: the chosen one when the model
    /// has it, else the model's default.
    pub fn kind_for(&self, supported: &[TargetKind]) -> Option<TargetKind> {
        self.kind
            .filter(|k| supported.contains(k))
            .or_else(|| default_kind(supported))
    }

    /// The target these settings ask for, on an input of `tokens` tokens, or why they cannot.
    pub fn target(&self, supported: &[TargetKind], tokens: usize) -> Result<TargetSpec, String> {
        let kind = self
            .kind_for(supported)
            .ok_or("this model supports no saliency target")?;
        let position = self.position.filter(|&p| p < tokens);
        let spec = match kind {
            TargetKind::Logprob => TargetSpec {
                kind,
                position,
                token: position.and(self.token.clone()),
                foil: None,
            },
            TargetKind::Contrast => {
                let (Some(p), Some(t), Some(f)) = (position, &self.token, &self.foil) else {
                    return Err(
                        "contrast needs a position, a target token and a foil: click a token, \
                         then pick the target and the foil among its next tokens"
                            .to_owned(),
                    );
                };
                TargetSpec {
                    kind,
                    position: Some(p),
                    token: Some(t.clone()),
                    foil: Some(f.clone()),
                }
            }
            TargetKind::Mlm => {
                let Some(p) = position else {
                    return Err("click a token to mask it".to_owned());
                };
                TargetSpec {
                    kind,
                    position: Some(p),
                    token: self.token.clone(),
                    foil: None,
                }
            }
            TargetKind::Similarity => {
                if self.text_b.trim().is_empty() {
                    return Err("type a second text (text B) to compare with".to_owned());
                }
                TargetSpec {
                    kind,
                    position: None,
                    token: None,
                    foil: None,
                }
            }
        };
        Ok(spec)
    }

    /// The request for `method` with `target`: method-specific options only where they apply.
    pub fn request(&self, method: Method, target: &TargetSpec) -> AttributeRequest {
        let ig = method == Method::IntegratedGradients;
        AttributeRequest {
            method,
            target: target.clone(),
            text_b: (target.kind == TargetKind::Similarity).then(|| self.text_b.clone()),
            steps: ig.then_some(self.steps.max(1)),
            baseline: ig.then_some(self.baseline),
            occlude: if method == Method::Occlusion {
                self.occlude
            } else {
                None
            },
            aggregate: self.aggregate,
            generate: None,
        }
    }

    /// The requests the view needs: the chosen method first, then (when comparing) every other.
    pub fn requests(&self, target: &TargetSpec) -> Vec<AttributeRequest> {
        let mut methods = vec![self.method];
        if self.compare {
            methods.extend(Method::ALL.iter().copied().filter(|&m| m != self.method));
        }
        methods
            .into_iter()
            .map(|m| self.request(m, target))
            .collect()
    }

    /// The continuation request (`generate` greedy tokens, each attributed with the chosen
    /// method), when asked for and the model is a causal LM.
    pub fn continuation(&self, supported: &[TargetKind]) -> Option<AttributeRequest> {
        if self.generate == 0 || !supported.contains(&TargetKind::Logprob) {
            return None;
        }
        let target = TargetSpec {
            kind: TargetKind::Logprob,
            position: None,
            token: None,
            foil: None,
        };
        let mut req = self.request(self.method, &target);
        req.generate = Some(self.generate);
        Some(req)
    }

    /// Repairs loaded settings: a position past the input is dropped, counts stay in range.
    pub fn clamp(&mut self, tokens: Option<usize>) {
        if let Some(n) = tokens
            && self.position.is_some_and(|p| p >= n)
        {
            self.position = None;
            self.token = None;
            self.foil = None;
        }
        self.steps = self.steps.clamp(1, 1024);
        self.top_k = self.top_k.clamp(1, 100);
        self.generate = self.generate.min(64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_kind_prefers_logprob_then_similarity() {
        use TargetKind::*;
        assert_eq!(default_kind(&[Logprob, Contrast]), Some(Logprob));
        assert_eq!(default_kind(&[Mlm, Similarity]), Some(Similarity));
        assert_eq!(default_kind(&[Mlm]), Some(Mlm));
        assert_eq!(default_kind(&[Contrast]), Some(Contrast));
        assert_eq!(default_kind(&[]), None);
    }

    #[test]
    fn contrast_without_a_foil_says_what_to_pick() {
        let s = SaliencySettings {
            kind: Some(TargetKind::Contrast),
            position: Some(3),
            token: Some(TokenRef::Id(7)),
            ..SaliencySettings::default()
        };
        let supported = [TargetKind::Logprob, TargetKind::Contrast];
        let e = s.target(&supported, 5).unwrap_err();
        assert!(e.contains("foil"), "{e}");
        // A position past the input is the default, not an error.
        let s = SaliencySettings {
            position: Some(9),
            token: Some(TokenRef::Id(7)),
            ..SaliencySettings::default()
        };
        let t = s.target(&supported, 5).unwrap();
        assert_eq!((t.position, t.token), (None, None));
    }

    #[test]
    fn only_integrated_gradients_gets_steps_and_a_baseline() {
        let s = SaliencySettings {
            compare: true,
            ..SaliencySettings::default()
        };
        let t = s.target(&[TargetKind::Similarity], 4).unwrap();
        let reqs = s.requests(&t);
        assert_eq!(reqs.len(), Method::ALL.len());
        assert_eq!(reqs[0].method, Method::Gradient);
        for r in &reqs {
            let ig = r.method == Method::IntegratedGradients;
            assert_eq!(r.steps.is_some(), ig);
            assert_eq!(r.baseline.is_some(), ig);
            assert_eq!(r.text_b.as_deref(), Some(DEFAULT_TEXT_B));
        }
    }

    #[test]
    fn old_sessions_without_the_field_load_with_defaults() {
        let s: SaliencySettings = serde_json::from_str(r#"{"steps": 8}"#).unwrap();
        assert_eq!(s.steps, 8);
        assert_eq!(s.top_k, DEFAULT_TOP_K);
    }
}
