//! Where the answer forms: the logit lens, direct contributions, activation patching and routes
//! against transformers with hooks (tests/fixtures/answer_golden.json, written by
//! make_answer_golden.py), on the GPT-2 and Llama fixtures and, with ATTNVIZ_SMOLLM2_DIR, on
//! SmolLM2-135M; and the `analyze` files and errors through the binary.

use super::{assert_clean_error, fixture_dir, run, scratch};
use attnviz::analysis::answer::patching::PatchSite;
use attnviz::engine::RunOptions;
use attnviz::grad::TargetSpec;
use attnviz::io::TokenInput;
use attnviz::model::LoadedModel;
use attnviz::pipeline::answer::{self, LensPositions};
use attnviz::pipeline::{self, RunInput};
use serde_json::Value;
use std::path::Path;

fn golden() -> Value {
    let path = fixture_dir("answer_golden.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn input(ids: Vec<u32>) -> RunInput {
    RunInput::new(TokenInput::Ids(ids))
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    let err = (got - want).abs() / want.abs().max(1.0);
    assert!(
        err <= tol,
        "{what}: {got} vs transformers {want} (error {err:e})"
    );
}

/// Every check of one golden case on `model`.
fn check_case(model: &LoadedModel, case: &Value, name: &str) {
    let clean = ids(&case["input_ids"]);
    let corrupted = ids(&case["corrupted_ids"]);
    let p = case["position"].as_u64().unwrap() as usize;
    let (t, f) = (
        case["target"].as_u64().unwrap(),
        case["foil"].as_u64().unwrap(),
    );
    let opts = RunOptions::default();
    let spec: TargetSpec = format!("contrast:{p}:{t}:{f}").parse().unwrap();
    let lp_spec: TargetSpec = format!("logprob:{p}:{t}").parse().unwrap();

    // The lens: the target's log-prob, rank and each layer's top-1 as transformers reads them.
    let lens = answer::logit_lens(
        model,
        &input(clean.clone()),
        &opts,
        Some(&lp_spec),
        &LensPositions::These(vec![p]),
        3,
        &mut |_, _| true,
    )
    .unwrap();
    for (l, (cell, want)) in lens
        .at_target
        .iter()
        .zip(case["lens"].as_array().unwrap())
        .enumerate()
    {
        let lp = f64::from(cell.target_logprob.unwrap());
        close(
            lp,
            want["target_logprob"].as_f64().unwrap(),
            1e-4,
            &format!("{name} lens {l}"),
        );
        assert_eq!(
            cell.target_rank.unwrap() as u64,
            want["target_rank"].as_u64().unwrap()
        );
        assert_eq!(u64::from(cell.top[0].0), want["top1"].as_u64().unwrap());
    }
    // At l = L the lens is `attnviz next`.
    let (_, _, next) = pipeline::next_tokens(
        model,
        &input(clean.clone()),
        &opts,
        pipeline::Positions::One(p),
        3,
        &mut |_| true,
    )
    .unwrap();
    let last = lens.at_target.last().unwrap();
    for (a, b) in last.top.iter().zip(&next[0].top) {
        assert_eq!(a.0, b.id);
        assert!(
            (a.1 - b.logprob).abs() <= 1e-5,
            "{name}: lens {} vs next {}",
            a.1,
            b.logprob
        );
    }

    // Contributions: each part as the hooks split it, and all of them add up to the metric.
    let c = answer::contributions(
        model,
        &input(clean.clone()),
        &opts,
        Some(&spec),
        &mut |_, _| true,
    )
    .unwrap()
    .contributions;
    let want = &case["contributions"];
    close(c.metric, want["metric"].as_f64().unwrap(), 1e-4, "metric");
    close(c.sum, c.metric, 1e-4, "sum of contributions");
    close(
        c.embeddings,
        want["embeddings"].as_f64().unwrap(),
        1e-4,
        "embeddings",
    );
    close(
        c.norm_term,
        want["norm_term"].as_f64().unwrap(),
        1e-4,
        "norm term",
    );
    for (l, row) in c.heads.iter().enumerate() {
        for (h, &v) in row.iter().enumerate() {
            let w = want["heads"][l][h].as_f64().unwrap();
            close(v, w, 1e-4, &format!("{name} head {l}.{h}"));
        }
        close(
            c.mlp[l],
            want["mlp"][l].as_f64().unwrap(),
            1e-4,
            &format!("mlp {l}"),
        );
        close(
            c.attn_bias[l],
            want["attn_bias"][l].as_f64().unwrap(),
            1e-4,
            "bias",
        );
    }

    // Patching, every site, as the hooks patch.
    let first_diff = clean
        .iter()
        .zip(&corrupted)
        .position(|(a, b)| a != b)
        .unwrap();
    for site in PatchSite::ALL {
        let report = attnviz::pipeline::patching::patching(
            model,
            &input(clean.clone()),
            &input(corrupted.clone()),
            &opts,
            Some(&spec),
            site,
            &mut |_, _| true,
        )
        .unwrap();
        let w = &case["patching"];
        close(
            report.patching.metric_clean,
            w["metric_clean"].as_f64().unwrap(),
            1e-4,
            "clean",
        );
        close(
            report.patching.metric_corrupted,
            w["metric_corrupted"].as_f64().unwrap(),
            1e-4,
            "corrupted",
        );
        for (l, row) in report.patching.recovery.iter().enumerate() {
            for (i, &r) in row.iter().enumerate() {
                let want = w[site.name()][l][i].as_f64().unwrap();
                assert!(
                    (r - want).abs() <= 1e-4,
                    "{name} {} ({l}, {i}): {r} vs transformers {want}",
                    site.name()
                );
            }
        }
        if site == PatchSite::Resid {
            // With one differing token, its clean embeddings make the clean run: exactly 1;
            // the tokens before the first difference are the same in both runs: exactly 0
            // (causal models).
            let differing = clean.iter().zip(&corrupted).filter(|(a, b)| a != b).count();
            if differing == 1 {
                assert_eq!(report.patching.recovery[0][first_diff], 1.0);
            }
            for row in &report.patching.recovery {
                assert!(row[..first_diff].iter().all(|&r| r == 0.0), "{row:?}");
            }
        }
    }
}

#[test]
fn gpt2_and_llama_match_transformers_hooks() {
    let g = golden();
    for name in ["gpt2", "llama"] {
        let model = LoadedModel::checkpoint(&fixture_dir(name), Default::default()).unwrap();
        check_case(&model, &g[name], name);
    }
}

#[test]
fn smollm2_matches_transformers_hooks() {
    let Ok(dir) = std::env::var("ATTNVIZ_SMOLLM2_DIR") else {
        eprintln!("skipped: set ATTNVIZ_SMOLLM2_DIR to the SmolLM2-135M-Instruct folder");
        return;
    };
    let model = LoadedModel::checkpoint(Path::new(&dir), Default::default()).unwrap();
    check_case(&model, &golden()["smollm2"], "smollm2");
}

#[test]
fn routes_add_up_and_follow_the_output() {
    let model = LoadedModel::checkpoint(&fixture_dir("gpt2"), Default::default()).unwrap();
    let g = golden();
    let clean = ids(&g["gpt2"]["input_ids"]);
    let n = clean.len();
    let (run, graph) = answer::routes(
        &model,
        &input(clean),
        &RunOptions::default(),
        &mut |_, _| true,
    )
    .unwrap();
    assert_eq!(run.tokens.len(), n);
    let routes = graph.routes(n - 1, 0.04).unwrap();
    assert!(!routes.edges.is_empty());
    // Every kept edge ends on a node that leads to the output, and respects the threshold.
    for e in &routes.edges {
        assert!(e.importance >= 0.04);
        assert!(routes.nodes.contains(&e.to) && routes.nodes.contains(&e.from));
        if let Some(heads) = &e.heads {
            let sum: f32 = heads.iter().sum();
            assert!(sum <= e.importance + 1e-5, "{sum} > {}", e.importance);
        }
    }
    // A causal model never routes from a later token.
    assert!(routes.edges.iter().all(|e| e.from.1 <= e.to.1));
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn analyze_writes_each_answer_format() {
    let dir = scratch("answer");
    let model = fixture_dir("llama");
    let m = model.to_str().unwrap();
    let g = golden();
    let ids_text: Vec<String> = ids(&g["llama"]["input_ids"])
        .iter()
        .map(u32::to_string)
        .collect();
    let ids_arg = ids_text.join(",");
    for (what, format) in [
        ("logit-lens", "attnviz.logit_lens/v1"),
        ("contributions", "attnviz.contributions/v1"),
        ("routes", "attnviz.routes/v1"),
    ] {
        let out = dir.join(format!("{what}.json"));
        let o = run(&[
            "analyze",
            "--ids",
            &ids_arg,
            "--model",
            m,
            "--what",
            what,
            "--ablate",
            "1.0",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{what}: {}", super::stderr(&o));
        let doc = read(&out);
        assert_eq!(doc["format"], format);
        assert_eq!(doc["options"]["ablations"][0], "1.0", "{what}");
        assert!(doc["model"]["name"].is_string() && doc["mask"].is_string());
        match what {
            "logit-lens" => {
                assert_eq!(doc["layers"], 3);
                assert_eq!(doc["top"][0].as_array().unwrap().len(), ids_text.len());
                assert_eq!(doc["target_rank"][2], 1);
            }
            "contributions" => {
                let heads = doc["heads"].as_array().unwrap();
                assert_eq!(heads.len(), 2);
                // The ablated head contributes nothing.
                assert_eq!(doc["heads"][1][0], 0.0);
                let (sum, metric) = (
                    doc["sum"].as_f64().unwrap(),
                    doc["metric"].as_f64().unwrap(),
                );
                assert!((sum - metric).abs() <= 1e-4 * metric.abs().max(1.0));
            }
            _ => {
                assert_eq!(doc["position"], ids_text.len() - 1);
                let edge = &doc["edges"][0];
                assert!(edge["from"].is_array() && edge["kind"].is_string());
                assert!(doc["nodes"][0]["stage"].is_string());
            }
        }
    }
}

#[test]
fn answer_analyses_refuse_what_they_cannot_do() {
    let dir = scratch("answer-bad");
    let out = dir.join("x.json");
    let o = out.to_str().unwrap();
    let llama = fixture_dir("llama");
    let bert = fixture_dir("bert_mlm");
    // Patching needs two inputs of one length, both counts named.
    let r = run(&[
        "analyze",
        "--ids",
        "1,2,3",
        "--text-b",
        "x",
        "--model",
        llama.to_str().unwrap(),
        "--what",
        "patching",
        "--out",
        o,
    ]);
    assert!(!r.status.success());
    let r = run(&[
        "analyze",
        "--ids",
        "1,2,3",
        "--model",
        llama.to_str().unwrap(),
        "--what",
        "patching",
        "--out",
        o,
    ]);
    assert_clean_error(&r, "--text-b");
    // A post-norm encoder has no sum of parts.
    let r = run(&[
        "analyze",
        "--text",
        "the cat",
        "--model",
        bert.to_str().unwrap(),
        "--what",
        "contributions",
        "--out",
        o,
    ]);
    assert_clean_error(&r, "pre-norm");
    // The demo model has no LM head.
    let r = run(&[
        "analyze",
        "--text",
        "the cat",
        "--what",
        "logit-lens",
        "--out",
        o,
    ]);
    assert_clean_error(&r, "no LM head");
    // A threshold out of range, a position past the end.
    let r = run(&[
        "analyze",
        "--ids",
        "1,2,3",
        "--model",
        llama.to_str().unwrap(),
        "--what",
        "routes",
        "--threshold",
        "2",
        "--out",
        o,
    ]);
    assert_clean_error(&r, "threshold 2");
    let r = run(&[
        "analyze",
        "--ids",
        "1,2,3",
        "--model",
        llama.to_str().unwrap(),
        "--what",
        "logit-lens",
        "--position",
        "9",
        "--out",
        o,
    ]);
    assert_clean_error(&r, "position 9");
    assert!(!out.exists());
}

#[test]
fn patching_refuses_inputs_of_different_lengths() {
    let model = LoadedModel::checkpoint(&fixture_dir("llama"), Default::default()).unwrap();
    let err = attnviz::pipeline::patching::patching(
        &model,
        &input(vec![1, 2, 3]),
        &input(vec![1, 2]),
        &RunOptions::default(),
        None,
        PatchSite::Resid,
        &mut |_, _| true,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("3 tokens") && err.contains('2'), "{err}");
    // Identical inputs: recovery is undefined.
    let err = attnviz::pipeline::patching::patching(
        &model,
        &input(vec![1, 2, 3]),
        &input(vec![1, 2, 3]),
        &RunOptions::default(),
        None,
        PatchSite::Resid,
        &mut |_, _| true,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("undefined"), "{err}");
    // Cancel stops it.
    let err = attnviz::pipeline::patching::patching(
        &model,
        &input(vec![1, 2, 3]),
        &input(vec![1, 5, 3]),
        &RunOptions::default(),
        None,
        PatchSite::Resid,
        &mut |done, _| done < 3,
    )
    .err()
    .unwrap();
    assert!(matches!(err, pipeline::PipelineError::Cancelled), "{err}");
}
