//! The Analyze view's and the rollout map's persisted settings (part of
//! [`AppState`](super::AppState), so sessions keep them): the tab, the dashboard's metric and
//! sorting, the rollout's α, fusion and layers, the flow's normalization, the value-zeroing layer.

use crate::analysis::metrics::HeadMetrics;
use crate::analysis::rollout::{HeadFusion, RolloutOptions};
use serde::{Deserialize, Serialize};

/// The Analyze view's tabs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnalyzeTab {
    /// The head-metrics dashboard.
    #[default]
    Metrics,
    /// The attention flow into one query.
    Flow,
    /// Value zeroing, per layer and across layers.
    ValueZeroing,
}

impl AnalyzeTab {
    /// Every tab, in order.
    pub const ALL: [AnalyzeTab; 3] = [
        AnalyzeTab::Metrics,
        AnalyzeTab::Flow,
        AnalyzeTab::ValueZeroing,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            AnalyzeTab::Metrics => "Head metrics",
            AnalyzeTab::Flow => "Flow",
            AnalyzeTab::ValueZeroing => "Value zeroing",
        }
    }
}

/// A metric of the dashboard: every metric of `analysis::metrics`, named as in
/// `attnviz.metrics/v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean row entropy, nats.
    Entropy,
    /// Entropy over ln(allowed keys).
    EntropyNorm,
    /// Weight on the previous token.
    PrevToken,
    /// Weight on the query itself.
    #[serde(rename = "self")]
    SelfAttention,
    /// Weight on the first token (the sink).
    #[default]
    FirstToken,
    /// Share on special tokens.
    Special,
    /// Share on punctuation.
    Punctuation,
    /// Mean |query − key|, in tokens.
    MeanDistance,
    /// Mean row maximum.
    Confidence,
    /// Weight on earlier copies of the query's token.
    DuplicateToken,
    /// The offset with the largest mean weight.
    OffsetPeak,
    /// That weight.
    OffsetShare,
    /// The induction probe's score.
    Induction,
}

impl Metric {
    /// Every metric, in the file's order, `induction` last.
    pub const ALL: [Metric; 13] = [
        Metric::Entropy,
        Metric::EntropyNorm,
        Metric::PrevToken,
        Metric::SelfAttention,
        Metric::FirstToken,
        Metric::Special,
        Metric::Punctuation,
        Metric::MeanDistance,
        Metric::Confidence,
        Metric::DuplicateToken,
        Metric::OffsetPeak,
        Metric::OffsetShare,
        Metric::Induction,
    ];

    /// The name in `attnviz.metrics/v1`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Entropy => "entropy",
            Metric::EntropyNorm => "entropy_norm",
            Metric::PrevToken => "prev_token",
            Metric::SelfAttention => "self",
            Metric::FirstToken => "first_token",
            Metric::Special => "special",
            Metric::Punctuation => "punctuation",
            Metric::MeanDistance => "mean_distance",
            Metric::Confidence => "confidence",
            Metric::DuplicateToken => "duplicate_token",
            Metric::OffsetPeak => "offset_peak",
            Metric::OffsetShare => "offset_share",
            Metric::Induction => "induction",
        }
    }

    /// What the metric measures, for tooltips.
    pub fn help(self) -> &'static str {
        match self {
            Metric::Entropy => "mean over queries of −Σ p ln p, in nats",
            Metric::EntropyNorm => "the entropy divided by ln(allowed keys): 1 for a uniform row",
            Metric::PrevToken => "mean weight on the previous token",
            Metric::SelfAttention => "mean weight on the query itself",
            Metric::FirstToken => "mean weight on the first token; a head above 0.5 is a sink",
            Metric::Special => "mean share on special tokens",
            Metric::Punctuation => "mean share on punctuation",
            Metric::MeanDistance => "mean over queries of Σ p·|q − k|, in tokens",
            Metric::Confidence => "mean row maximum",
            Metric::DuplicateToken => "mean weight on earlier copies of the query's token",
            Metric::OffsetPeak => "the offset key − query with the largest mean weight",
            Metric::OffsetShare => "the mean weight at that offset",
            Metric::Induction => {
                "the induction probe: 50 random tokens twice; mean weight on the token after \
                 the query's earlier copy"
            }
        }
    }

    /// True for the metrics that lie in [0, 1] (the by-layer chart draws them together).
    pub fn is_share(self) -> bool {
        !matches!(
            self,
            Metric::Entropy | Metric::MeanDistance | Metric::OffsetPeak
        )
    }

    /// The metric of one head; `None` where no query qualifies, and always for `induction`
    /// (read from the probe's scores).
    pub fn of(self, m: &HeadMetrics) -> Option<f64> {
        match self {
            Metric::Entropy => m.entropy,
            Metric::EntropyNorm => m.entropy_norm,
            Metric::PrevToken => m.prev_token,
            Metric::SelfAttention => m.self_attention,
            Metric::FirstToken => m.first_token,
            Metric::Special => m.special,
            Metric::Punctuation => m.punctuation,
            Metric::MeanDistance => m.mean_distance,
            Metric::Confidence => m.confidence,
            Metric::DuplicateToken => m.duplicate_token,
            Metric::OffsetPeak => m.offset_peak.map(|o| o as f64),
            Metric::OffsetShare => m.offset_share,
            Metric::Induction => None,
        }
    }
}

/// What the head table is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortKey {
    /// Layer, then head.
    #[default]
    Head,
    /// A metric's value (heads without one last).
    Metric(Metric),
    /// `head_order`: heads clustered by the Jensen–Shannon divergence of their maps.
    Cluster,
}

/// The rollout map's settings; the attention flow uses the same W′.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RolloutSettings {
    /// The Heatmap view shows the rollout instead of the selected head.
    pub on: bool,
    /// α: the weight of the attention against the identity.
    pub alpha: f64,
    /// How a layer's heads are fused.
    pub fusion: HeadFusion,
    /// The first and last layer (inclusive); `None`: every layer.
    pub layers: Option<(usize, usize)>,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            on: false,
            alpha: 0.5,
            fusion: HeadFusion::Mean,
            layers: None,
        }
    }
}

impl RolloutSettings {
    /// The layer range on a model of `layers` layers: the chosen one cut to the model, or all.
    pub fn span(&self, layers: usize) -> (usize, usize) {
        let last = layers.saturating_sub(1);
        match self.layers {
            Some((a, b)) => (a.min(last).min(b.min(last)), b.min(last)),
            None => (0, last),
        }
    }

    /// The analysis' options on a model of `layers` layers (α clamped to [0, 1]).
    pub fn options(&self, layers: usize) -> RolloutOptions {
        let alpha = if self.alpha.is_finite() {
            self.alpha.clamp(0.0, 1.0)
        } else {
            0.5
        };
        RolloutOptions {
            fusion: self.fusion,
            alpha,
            layers: Some(self.span(layers)),
        }
    }

    /// The figure's and the view's title: `rollout α=0.5 fusion=mean layers 0–5`.
    pub fn title(&self, layers: usize) -> String {
        let o = self.options(layers);
        let (a, b) = self.span(layers);
        format!(
            "rollout α={} fusion={} layers {a}–{b}",
            crate::render::format_significant(o.alpha),
            o.fusion.name()
        )
    }
}

/// The Analyze view's settings and the rollout map's. Persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyzeSettings {
    /// The tab.
    pub tab: AnalyzeTab,
    /// The metric the dashboard's map shows.
    pub metric: Metric,
    /// What the head table is sorted by.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// The rollout map (and the flow's W′).
    pub rollout: RolloutSettings,
    /// The flow is shown divided by its sum.
    pub flow_normalized: bool,
    /// The value-zeroing layer shown; `None`: the product across layers.
    pub vz_layer: Option<usize>,
}

impl Default for AnalyzeSettings {
    fn default() -> Self {
        AnalyzeSettings {
            tab: AnalyzeTab::Metrics,
            metric: Metric::FirstToken,
            sort: SortKey::Head,
            descending: false,
            rollout: RolloutSettings::default(),
            flow_normalized: false,
            vz_layer: None,
        }
    }
}

impl AnalyzeSettings {
    /// Repairs values a session may hold: α outside [0, 1], a reversed layer range.
    pub fn clamp(&mut self) {
        let r = &mut self.rollout;
        if !r.alpha.is_finite() {
            r.alpha = 0.5;
        }
        r.alpha = r.alpha.clamp(0.0, 1.0);
        if let Some((a, b)) = r.layers
            && a > b
        {
            r.layers = Some((b, a));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rollout_title_and_range_fit_the_model() {
        let mut r = RolloutSettings::default();
        assert_eq!(r.title(6), "rollout α=0.5 fusion=mean layers 0–5");
        r.layers = Some((2, 9));
        r.fusion = HeadFusion::Max;
        assert_eq!(r.span(6), (2, 5));
        assert_eq!(r.options(6).layers, Some((2, 5)));
        assert_eq!(r.title(6), "rollout α=0.5 fusion=max layers 2–5");
        r.layers = Some((8, 9));
        assert_eq!(r.span(6), (5, 5));
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        for (name, _) in crate::analysis::metrics::METRICS {
            assert!(names.contains(&name), "{name}");
        }
    }
}
