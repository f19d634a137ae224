//! `attnviz analyze --what metrics`: every head's metrics as `attnviz.metrics/v1`.

use super::{run, scratch, stderr};

#[test]
fn analyze_metrics_writes_every_heads_metrics() {
    let dir = scratch("analyze");
    let out = dir.join("m.json");
    let o = run(&[
        "analyze",
        "--what",
        "metrics",
        "--text",
        "the cat sat on the mat because the cat was tired",
        "--mask",
        "causal",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["format"], "attnviz.metrics/v1");
    assert_eq!(v["mask"], "causal");
    assert_eq!(v["options"]["scale"], "inv-sqrt");
    let layers = v["model"]["layers"].as_u64().unwrap() as usize;
    let heads = v["model"]["heads"].as_u64().unwrap() as usize;
    for name in [
        "entropy",
        "entropy_norm",
        "prev_token",
        "self",
        "first_token",
        "special",
        "punctuation",
        "mean_distance",
        "confidence",
        "duplicate_token",
    ] {
        let table = v["metrics"][name].as_array().unwrap();
        assert_eq!(table.len(), layers, "{name}");
        assert!(
            table
                .iter()
                .all(|row| row.as_array().unwrap().len() == heads)
        );
    }
    // The demo's previous-token head (L0·H0) and its repeat finder (L0·H3).
    assert!(v["metrics"]["prev_token"][0][0].as_f64().unwrap() > 0.9);
    assert!(v["metrics"]["duplicate_token"][0][3].as_f64().unwrap() > 0.9);
    assert_eq!(v["sink_heads"].as_array().unwrap().len(), layers);
    // It writes JSON only.
    let png = dir.join("m.png");
    let o = run(&[
        "analyze",
        "--what",
        "metrics",
        "--text",
        "a b",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("this writes .json"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_rollout_is_the_rollout_attribute_reads() {
    let dir = scratch("analyze-rollout");
    let gpt2 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let text = "the cat sat on the mat";
    let out = dir.join("r.json");
    let o = run(&[
        "analyze",
        "--what",
        "rollout",
        "--model",
        gpt2,
        "--text",
        text,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(r["format"], "attnviz.rollout/v1");
    assert_eq!(
        (r["alpha"].as_f64(), r["head_fusion"].as_str()),
        (Some(0.5), Some("mean"))
    );
    let rows = r["rollout"].as_array().unwrap();
    let n = rows.len();
    assert_eq!(r["tokens"].as_array().unwrap().len(), n);
    for row in rows {
        let sum: f64 = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }
    // attribute --method rollout scores the last position's row of the same matrix.
    let scores = dir.join("s.json");
    let o = run(&[
        "attribute",
        "--method",
        "rollout",
        "--target",
        "logprob",
        "--model",
        gpt2,
        "--text",
        text,
        "--out",
        scores.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s: serde_json::Value = serde_json::from_slice(&std::fs::read(&scores).unwrap()).unwrap();
    let got: Vec<f64> = s["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let want: Vec<f64> = rows[n - 1]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1e-6, "{got:?} vs {want:?}");
    }
    // A bad layer range is one clear error.
    let o = run(&[
        "analyze",
        "--what",
        "rollout",
        "--model",
        gpt2,
        "--text",
        text,
        "--layer-range",
        "1-9",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("layers 1-9"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
