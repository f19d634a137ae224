//! Head metrics on the demo model: its crafted heads come out on top of their own metrics.

use attnviz::analysis::metrics::{HeadMetrics, MetricInput, head_metrics};
use attnviz::engine::RunOptions;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::{self, RunInput};

#[test]
fn the_demo_crafted_heads_top_their_metrics() {
    let model = LoadedModel::demo(Default::default(), Default::default()).unwrap();
    let text = "the cat sat on the mat because the cat was tired and the mat was warm";
    let input = RunInput::new(TokenInput::Text(text.to_owned()));
    let run = pipeline::run(&model, &input, &RunOptions::default(), &mut |_| true).unwrap();
    let ids: Vec<u32> = run.tokens.iter().map(|t| t.id).collect();
    let special: Vec<bool> = run.tokens.iter().map(|t| t.is_special).collect();
    let punctuation = vec![false; ids.len()];
    let [layers, heads, _, _] = run.maps.shape();
    let metrics: Vec<Vec<HeadMetrics>> = (0..layers)
        .map(|l| {
            (0..heads)
                .map(|h| {
                    let map = run.maps.head(l, h).unwrap();
                    head_metrics(
                        map.view(),
                        &MetricInput {
                            allowed: None,
                            ids: &ids,
                            special: &special,
                            punctuation: &punctuation,
                        },
                    )
                })
                .collect()
        })
        .collect();
    // The head with the highest value of `metric`, over every layer and head.
    let top = |metric: &dyn Fn(&HeadMetrics) -> Option<f64>| {
        let mut best = ((0, 0), f64::MIN);
        for (l, layer) in metrics.iter().enumerate() {
            for (h, m) in layer.iter().enumerate() {
                if let Some(v) = metric(m)
                    && v > best.1
                {
                    best = ((l, h), v);
                }
            }
        }
        best
    };
    // The crafted heads of layer 0 (see the demo model and lesson 2): previous token, itself,
    // the first token, earlier copies of the same word.
    let (head, v) = top(&|m| m.prev_token);
    assert_eq!(head, (0, 0), "prev_token {v}");
    assert!(v > 0.9, "{v}");
    let (head, v) = top(&|m| m.self_attention);
    assert_eq!(head, (0, 1), "self {v}");
    let (head, v) = top(&|m| m.first_token);
    assert_eq!(head, (0, 2), "first_token {v}");
    let (head, v) = top(&|m| m.duplicate_token);
    assert_eq!(head, (0, 3), "duplicate_token {v}");
}
