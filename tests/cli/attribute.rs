//! `attnviz attribute`: the file contracts (JSON, CSV, PNG, SVG), --generate, and its errors.

use super::{assert_clean_error, run, scratch, stderr};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const PROMPT: &str = "The cat sat on the mat because it";

#[test]
fn attribute_json_has_the_contract_shape() {
    let dir = scratch("attr-json");
    let out = dir.join("ig.json");
    let gpt2 = fixture("gpt2");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        PROMPT,
        "--method",
        "integrated-gradients",
        "--target",
        "logprob",
        "--steps",
        "16",
        "--out",
        out.to_str().unwrap(),
        "--timings",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // --timings: one JSON line with the phases, the backward's weights apart from the steps.
    let timings: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stderr).trim()).unwrap();
    for key in [
        "load_ms",
        "prepare_backward_ms",
        "attribution_ms",
        "write_ms",
    ] {
        assert!(timings[key].as_f64().unwrap() >= 0.0, "{key}: {timings}");
    }
    let doc = read_json(&out);
    assert_eq!(doc["format"], "attnviz.attribution/v1");
    assert_eq!(doc["model"]["architecture"], "gpt2");
    assert_eq!(doc["mask"], "causal");
    assert_eq!(doc["method"], "integrated-gradients");
    assert_eq!(doc["steps"], 16);
    assert_eq!(doc["baseline"], "zero");
    let n = doc["tokens"].as_array().unwrap().len();
    assert_eq!(doc["token_ids"].as_array().unwrap().len(), n);
    let scores = doc["scores"].as_array().unwrap();
    assert_eq!(scores.len(), n);
    // The default target: the last position and its argmax, with its value.
    let t = &doc["target"];
    assert_eq!(t["kind"], "logprob");
    assert_eq!(t["position"].as_u64().unwrap() as usize, n - 1);
    assert!(t["token"].is_u64() && t["foil"].is_null() && t["text_b"].is_null());
    assert!(t["value"].as_f64().unwrap() < 0.0);
    // Completeness: Σ s − (T(e) − T(0)) is what the file says.
    let gap = doc["completeness_gap"].as_f64().unwrap();
    assert!(gap.is_finite());
    assert!(doc.get("generated_from").is_none());
}

#[test]
fn attribute_csv_png_and_svg_are_written() {
    let dir = scratch("attr-files");
    let bert = fixture("bert_mlm");
    for (name, method, extra) in [
        ("a.csv", "occlusion", vec![]),
        ("a.png", "input-x-gradient", vec![]),
        ("a.svg", "rollout", vec!["--aggregate", "word"]),
    ] {
        let out = dir.join(name);
        let mut args = vec![
            "attribute",
            "--model",
            &bert,
            "--text",
            "The cat sat on the mat.",
            "--method",
            method,
            "--target",
            "mlm:6",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let csv = std::fs::read_to_string(dir.join("a.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "index,token,token_id,score");
    // [CLS] the cat sat on the [MASK] . [SEP]: 9 tokens, the mask at 6 (id 4), special tokens 0.
    assert_eq!(lines.len(), 10, "{csv}");
    assert!(lines[1].starts_with("0,[CLS],2,0"), "{csv}");
    assert!(lines[7].starts_with("6,[MASK],4,0"), "{csv}");
    let png = image::open(dir.join("a.png")).unwrap().to_rgba8();
    assert!(png.width() > 300 && png.height() > 100);
    // The diverging colormap: some token background is strongly red or blue.
    assert!(
        png.pixels()
            .any(|p| (p.0[0] > 150 && p.0[2] < 80) || (p.0[2] > 150 && p.0[0] < 80)),
        "no signed colour in the figure"
    );
    let svg = std::fs::read_to_string(dir.join("a.svg")).unwrap();
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("bert_mlm · rollout · mlm"), "title missing");
    assert!(svg.contains(">[MASK]</text>"));
}

#[test]
fn attribute_generate_writes_k_rows_with_nulls() {
    let dir = scratch("attr-gen");
    let out = dir.join("g.json");
    let gpt2 = fixture("gpt2");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "The cat sat",
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--generate",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = read_json(&out);
    let n = doc["generated_from"].as_u64().unwrap() as usize;
    let total = doc["tokens"].as_array().unwrap().len();
    assert_eq!(total, n + 3);
    assert_eq!(doc["targets"].as_array().unwrap().len(), 3);
    let rows = doc["scores"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for (k, row) in rows.iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), total);
        assert!(row[..n + k].iter().all(Value::is_f64), "{row:?}");
        assert!(row[n + k..].iter().all(Value::is_null), "{row:?}");
        assert_eq!(doc["targets"][k]["position"], n + k - 1);
        assert_eq!(doc["targets"][k]["token"], doc["token_ids"][n + k]);
    }
    let csv = dir.join("g.csv");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "The cat sat",
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--generate",
        "2",
        "--out",
        csv.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(csv).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        format!("index,token,token_id,score_{n},score_{}", n + 1)
    );
}

#[test]
fn attribute_errors_are_clear() {
    let dir = scratch("attr-err");
    let out = dir.join("x.json");
    let out = out.to_str().unwrap();
    let gpt2 = fixture("gpt2");
    // The demo only supports similarity.
    let o = run(&[
        "attribute",
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--out",
        out,
    ]);
    assert_clean_error(
        &o,
        "does not support the logprob target; it supports: similarity",
    );
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "mlm:1",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "it supports: logprob, contrast, similarity");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "occlusion",
        "--steps",
        "8",
        "--target",
        "logprob",
        "--out",
        out,
    ]);
    assert_clean_error(
        &o,
        "a step count only applies to integrated-gradients, not to occlusion (--steps)",
    );
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "similarity",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "--text-b");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "occlusion",
        "--occlude",
        "mask",
        "--target",
        "logprob",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "occluding with mask needs the tokenizer's mask token");
    assert!(
        stderr(&o).trim_end().ends_with("(--occlude)"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "logprob:99",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "position 99 is out of range");
    let o = run(&[
        "attribute",
        "--model",
        &gpt2,
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--out",
        dir.join("x.txt").to_str().unwrap(),
    ]);
    assert_clean_error(&o, "this writes .json, .csv, .png or .svg");
    // clap rejects an unknown method with usage status 2, naming the methods.
    let o = run(&[
        "attribute",
        "--text",
        "a",
        "--method",
        "saliency",
        "--target",
        "similarity",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("integrated-gradients"));
}

#[test]
fn attribute_similarity_on_the_demo_and_info_lists_targets() {
    let dir = scratch("attr-demo");
    let out = dir.join("d.json");
    let o = run(&[
        "attribute",
        "--text",
        "the cat sat on the mat",
        "--method",
        "attention-gradient",
        "--target",
        "similarity",
        "--text-b",
        "a dog lay on the rug",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc = read_json(&out);
    assert_eq!(doc["target"]["kind"], "similarity");
    assert_eq!(doc["target"]["text_b"], "a dog lay on the rug");
    // R − I leaves the identity out (issue 20 item 10): no score carries its 1/n share, so the
    // scores are no longer flat. Here one token ("on") carries the relevance: ~1.8e-4 against
    // ~2e-8 for the others (with the identity every score was 1/6 + that).
    let mut scores: Vec<f64> = doc["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(scores.iter().all(|&s| s >= -1e-9), "{scores:?}");
    scores.sort_by(f64::total_cmp);
    let (median, max) = (scores[scores.len() / 2], scores[scores.len() - 1]);
    assert!(max < 0.01 && max > 100.0 * median, "{scores:?}");
    let o = run(&["info", "--model", &fixture("bert_mlm"), "--json"]);
    let info: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(info["targets"], serde_json::json!(["mlm", "similarity"]));
    let o = run(&["info", "--model", &fixture("llama")]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("targets       logprob, contrast, similarity"),
        "{text}"
    );
}

/// The mask belongs to the input it was written for (issue 20 item 12): text B runs without it,
/// and occlusion by removal maps it onto the shortened input.
#[test]
fn attribute_keeps_the_mask_on_its_own_input() {
    let dir = scratch("attr-mask");
    let out = dir.join("m.json");
    let out = out.to_str().unwrap();
    for method in [vec!["gradient"], vec!["occlusion", "--occlude", "remove"]] {
        let mut args = vec![
            "attribute",
            "--ids",
            "40,41,42,43,44",
            "--target",
            "similarity",
            "--text-b",
            "a dog ran",
            "--mask",
            "drop-keys:4",
            "--out",
            out,
            "--method",
        ];
        args.extend(method.iter().copied());
        let o = run(&args);
        assert_eq!(o.status.code(), Some(0), "{method:?}: {}", stderr(&o));
    }
}
