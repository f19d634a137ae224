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
