#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `pipeline::attribute` against torch: every method and target kind on the saliency fixtures
//! (tests/fixtures/saliency/*.json, written by make_saliency_fixtures.py in float64 with eager
//! attention), and the pipeline's own behaviour (mlm masking, --generate, errors, cancelling).

use super::*;
use crate::analysis::attribution::{Aggregate, Baseline, Occlude};
use crate::grad::TokenRef;
use crate::model::{DemoConfig, LoadProgress};
use crate::tokenize::DemoTokenizer;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(dir: &Path) -> LoadedModel {
    LoadedModel::checkpoint(dir, Arc::new(LoadProgress::default())).unwrap()
}

fn reference(name: &str) -> Value {
    let path = fixtures().join("saliency").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// max|s − t| ≤ 1e-3 · max|t|.
fn assert_close(what: &str, s: &[f32], t: &[f64]) {
    assert_eq!(s.len(), t.len(), "{what}: {s:?} vs {t:?}");
    let scale = t.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = s
        .iter()
        .zip(t)
        .fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
    assert!(
        err <= 1e-3 * scale,
        "{what}: max error {err:e} against max |t| {scale:e}\n  ours  {s:?}\n  torch {t:?}"
    );
}

/// The request a fixture case describes, with an explicit target (the first case of a causal LM
/// leaves the position and token to the defaults, which must resolve to the same).
fn spec_of(case: &Value, defaults: bool) -> (TargetSpec, Option<String>) {
    let t = &case["target"];
    let kind = match t["kind"].as_str().unwrap() {
        "logprob" => TargetKind::Logprob,
        "contrast" => TargetKind::Contrast,
        "mlm" => TargetKind::Mlm,
        _ => TargetKind::Similarity,
    };
    let id = |v: &Value| v.as_u64().map(|x| TokenRef::Id(x as u32));
    let spec = TargetSpec {
        kind,
        position: if defaults {
            None
        } else {
            t["position"].as_u64().map(|p| p as usize)
        },
        token: if defaults { None } else { id(&t["token"]) },
        foil: id(&t["foil"]),
    };
    (spec, t["text_b"].as_str().map(str::to_owned))
}

fn run_case(
    model: &LoadedModel,
    case: &Value,
    defaults: bool,
    method: Method,
    tweak: impl FnOnce(&mut AttributeRequest),
) -> Attribution {
    let ids: Vec<u32> = case["original_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let (spec, text_b) = spec_of(case, defaults);
    let mut req = AttributeRequest::new(method, spec);
    req.text_b = text_b;
    tweak(&mut req);
    let input = RunInput::new(TokenInput::Ids(ids));
    attribute(model, &input, &RunOptions::default(), &req, &mut |_| true).unwrap()
}

/// Every method of every case of one fixture against torch.
fn compare_fixture(name: &str, dir: &Path) {
    let model = load(dir);
    let doc = reference(name);
    for (c, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
        let kind = case["target"]["kind"].as_str().unwrap().to_owned();
        let label = |m: &str| format!("{name} case {c} ({kind}) {m}");
        let scores = &case["scores"];
        let defaults = c == 0 && kind == "logprob";
        let a = run_case(&model, case, defaults, Method::Gradient, |_| {});
        // The model saw the fixture's ids (masked at P for mlm) and resolved the same target.
        let seen: Vec<u64> = a.tokens.iter().map(|t| u64::from(t.id)).collect();
        let want: Vec<u64> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(seen, want, "{}", label("ids"));
        let t = &case["target"];
        assert_eq!(
            a.target.position.map(|p| p as u64),
            t["position"].as_u64(),
            "{}",
            label("position")
        );
        assert_eq!(
            a.target.token.map(u64::from),
            t["token"].as_u64(),
            "{}",
            label("token")
        );
        let value = t["value"].as_f64().unwrap();
        assert!(
            (a.target.value - value).abs() <= 1e-4 * value.abs().max(1.0),
            "{}: T = {} against {value}",
            label("value"),
            a.target.value
        );
        assert_close(&label("gradient"), &a.scores, &floats(&scores["gradient"]));
        for (method, key) in [
            (Method::InputXGradient, "input_x_gradient"),
            (Method::AttentionGradient, "attention_gradient"),
            (Method::Attention, "attention"),
            (Method::Rollout, "rollout"),
        ] {
            let a = run_case(&model, case, false, method, |_| {});
            assert_close(&label(key), &a.scores, &floats(&scores[key]));
        }
        for (b, expected) in scores["integrated_gradients"].as_object().unwrap() {
            let baseline: Baseline = b.parse().unwrap();
            let a = run_case(&model, case, false, Method::IntegratedGradients, |r| {
                r.baseline = Some(baseline);
            });
            assert_eq!(a.steps, Some(32));
            assert_close(
                &label(&format!("integrated-gradients {b}")),
                &a.scores,
                &floats(&expected["scores"]),
            );
            if let Some(gap) = expected["completeness_gap"].as_f64() {
                let ours = a.completeness_gap.unwrap();
                let scale = (value - expected["baseline_value"].as_f64().unwrap()).abs();
                assert!(
                    (ours - gap).abs() <= 1e-3 * scale.max(1e-3),
                    "{}: gap {ours} against {gap}",
                    label("gap")
                );
            }
        }
        for (o, expected) in scores["occlusion"].as_object().unwrap() {
            let how: Occlude = o.parse().unwrap();
            let a = run_case(&model, case, false, Method::Occlusion, |r| {
                r.occlude = Some(how);
            });
            assert_close(
                &label(&format!("occlusion {o}")),
                &a.scores,
                &floats(expected),
            );
        }
    }
}

#[test]
fn bert_mlm_matches_torch() {
    compare_fixture("bert_mlm", &fixtures().join("bert_mlm"));
}

#[test]
fn gpt2_matches_torch() {
    compare_fixture("gpt2", &fixtures().join("gpt2"));
}

#[test]
fn llama_matches_torch() {
    compare_fixture("llama", &fixtures().join("llama"));
}

/// all-MiniLM-L6-v2 (similarity), when ATTNVIZ_MINILM_DIR names its folder.
#[test]
fn minilm_matches_torch() {
    let Ok(dir) = std::env::var("ATTNVIZ_MINILM_DIR") else {
        eprintln!("ATTNVIZ_MINILM_DIR is not set; skipping the MiniLM saliency check");
        return;
    };
    compare_fixture("minilm", Path::new(&dir));
}

/// Integrated gradients' completeness gap with the zero baseline at 8, 32 and 256 steps, against
/// torch's; ≤ 1e-2·|T(e) − T(0)| at 256 steps and shrinking with steps wherever torch's does.
/// (The peaked gpt2 fixture converges slowly, and for Llama T jumps at e = 0: RMSNorm maps
/// t·e to the same vector for every t > 0, so its gap does not shrink; see the fixture script.)
#[test]
fn integrated_gradient_gaps_shrink_as_torch_says() {
    let mut checked_bound = 0;
    for name in ["bert_mlm", "gpt2", "llama"] {
        let model = load(&fixtures().join(name));
        let doc = reference(name);
        for (c, case) in doc["cases"].as_array().unwrap().iter().enumerate() {
            let torch = &case["scores"]["ig_gaps_zero"];
            let Some(t256) = torch["256"].as_f64() else {
                continue;
            };
            let value = case["target"]["value"].as_f64().unwrap();
            let base = case["scores"]["integrated_gradients"]["zero"]["baseline_value"]
                .as_f64()
                .unwrap();
            let scale = (value - base).abs();
            let mut ours = Vec::new();
            for steps in [8, 32, 256] {
                let a = run_case(&model, case, false, Method::IntegratedGradients, |r| {
                    r.steps = Some(steps);
                });
                let gap = a.completeness_gap.unwrap();
                let t = torch[steps.to_string().as_str()].as_f64().unwrap();
                assert!(
                    (gap - t).abs() <= 2e-3 * scale,
                    "{name} case {c}: gap at {steps} steps {gap} against torch {t}"
                );
                ours.push(gap.abs());
            }
            let t8 = torch["8"].as_f64().unwrap().abs();
            if t256.abs() < torch["32"].as_f64().unwrap().abs() && t8 > t256.abs() {
                assert!(
                    ours[2] < ours[1] && ours[2] < ours[0],
                    "{name} case {c}: {ours:?}"
                );
            }
            if t256.abs() <= 1e-2 * scale {
                assert!(
                    ours[2] <= 1e-2 * scale,
                    "{name} case {c}: {ours:?} vs {scale}"
                );
                checked_bound += 1;
            }
        }
    }
    // bert_mlm's two mlm cases meet the 1e-2 bound in torch.
    assert!(checked_bound >= 2, "{checked_bound}");
}

#[test]
fn unsupported_targets_name_the_supported_ones() {
    let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
    assert_eq!(supported_targets(&model), vec![TargetKind::Similarity]);
    let req = AttributeRequest::new(Method::Gradient, "logprob".parse().unwrap());
    let input = RunInput::new(TokenInput::Text("the cat sat".into()));
    let err = attribute(&model, &input, &RunOptions::default(), &req, &mut |_| true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("does not support the logprob target; it supports: similarity"),
        "{err}"
    );
    let gpt2 = load(&fixtures().join("gpt2"));
    assert_eq!(
        supported_targets(&gpt2),
        vec![
            TargetKind::Logprob,
            TargetKind::Contrast,
            TargetKind::Similarity
        ]
    );
    let mlm = load(&fixtures().join("bert_mlm"));
    assert_eq!(
        supported_targets(&mlm),
        vec![TargetKind::Mlm, TargetKind::Similarity]
    );
}

#[test]
fn the_demo_attributes_similarity_and_cancels() {
    let model = LoadedModel::demo(DemoConfig::default(), DemoTokenizer::Words).unwrap();
    let mut req = AttributeRequest::new(Method::IntegratedGradients, "similarity".parse().unwrap());
    req.text_b = Some("a dog lay on the rug".into());
    req.steps = Some(8);
    let input = RunInput::new(TokenInput::Text("the cat sat on the mat".into()));
    let mut seen = Vec::new();
    let a = attribute(&model, &input, &RunOptions::default(), &req, &mut |f| {
        seen.push(f);
        true
    })
    .unwrap();
    assert_eq!(a.scores.len(), 6);
    assert_eq!(a.target.text_b.as_deref(), Some("a dog lay on the rug"));
    assert!(a.completeness_gap.unwrap().is_finite());
    assert!(seen.windows(2).all(|w| w[0] <= w[1]) && seen.last() == Some(&1.0));
    let err = attribute(&model, &input, &RunOptions::default(), &req, &mut |f| {
        f < 0.5
    })
    .unwrap_err();
    assert!(matches!(err, PipelineError::Cancelled), "{err}");
    // Word aggregation on the demo: words are its tokens, and the sum is kept.
    req.aggregate = Aggregate::Word;
    let w = attribute(&model, &input, &RunOptions::default(), &req, &mut |_| true).unwrap();
    let sum = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>();
    assert!((sum(&w.scores) - sum(&a.scores)).abs() < 1e-5);
}

#[test]
fn generate_attributes_each_token_over_its_prefix() {
    let model = load(&fixtures().join("gpt2"));
    let mut req = AttributeRequest::new(Method::Gradient, "logprob".parse().unwrap());
    req.generate = Some(3);
    let input = RunInput::new(TokenInput::Text("The cat sat on".into()));
    let a = attribute(&model, &input, &RunOptions::default(), &req, &mut |_| true).unwrap();
    let g = a.generated.as_ref().unwrap();
    let n = g.from;
    assert_eq!(a.tokens.len(), n + 3);
    assert_eq!(g.scores.len(), 3);
    for (k, row) in g.scores.iter().enumerate() {
        assert_eq!(row.len(), n + 3);
        // Scores up to the token before generated token k, null from its own position on.
        assert!(row[..n + k].iter().all(Option::is_some), "{row:?}");
        assert!(row[n + k..].iter().all(Option::is_none), "{row:?}");
        // Its target: logprob of the generated token at the position before it, the argmax.
        assert_eq!(g.targets[k].position, Some(n + k - 1));
        assert_eq!(g.targets[k].token, Some(a.tokens[n + k].id));
        // The same as attributing that token on the prefix alone.
        let spec = TargetSpec {
            kind: TargetKind::Logprob,
            position: Some(n + k - 1),
            token: Some(TokenRef::Id(a.tokens[n + k].id)),
            foil: None,
        };
        let ids: Vec<u32> = a.tokens[..n + k].iter().map(|t| t.id).collect();
        let one = attribute(
            &model,
            &RunInput::new(TokenInput::Ids(ids)),
            &RunOptions::default(),
            &AttributeRequest::new(Method::Gradient, spec),
            &mut |_| true,
        )
        .unwrap();
        let row: Vec<f32> = row[..n + k].iter().map(|v| v.unwrap()).collect();
        assert_eq!(row, one.scores);
    }
}
