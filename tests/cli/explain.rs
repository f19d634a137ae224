//! `attnviz explain` (issue 11): the `attnviz.explain/v1` file against transformers' own q, keys,
//! values, weights and head output (read with hooks by tests/fixtures/explain/
//! make_explain_fixtures.py), its self-consistency, `--dims` keeping one dimension, and
//! `--mistake` on the command line.

use super::{assert_clean_error, fixture_dir, run, scratch};
use serde_json::Value;
use std::path::Path;

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn matrix(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn max_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn max_err2(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| max_err(x, y))
        .fold(0.0, f64::max)
}

/// Runs `attnviz explain` with `args` and reads the file it wrote.
fn explain(name: &str, args: &[&str]) -> Value {
    let dir = scratch(&format!("explain-{name}"));
    let out = dir.join("e.json");
    let mut all = vec!["explain"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().unwrap()]);
    let o = run(&all);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    read_json(&out)
}

/// Checks the arithmetic between the fields: scores = K·q, scaled = scores × scale + bias,
/// masked = scaled or null, weights = softmax(masked), output = weights·V.
fn assert_self_consistent(e: &Value) {
    let q = floats(&e["q"]);
    let keys = matrix(&e["keys"]);
    let values = matrix(&e["values"]);
    let scores = floats(&e["scores"]);
    let scaled = floats(&e["scaled"]);
    let weights = floats(&e["weights"]);
    let output = floats(&e["output"]);
    let scale = e["scale"].as_f64().unwrap();
    let bias = (!e["bias"].is_null()).then(|| floats(&e["bias"]));
    let n = keys.len();
    assert_eq!(e["d_head"].as_u64().unwrap() as usize, q.len());
    for j in 0..n {
        let dot: f64 = q.iter().zip(&keys[j]).map(|(a, b)| a * b).sum();
        assert!(
            (dot - scores[j]).abs() <= 1e-5 * (1.0 + dot.abs()),
            "score {j}: {dot} vs {}",
            scores[j]
        );
        let want = scores[j] * scale + bias.as_ref().map_or(0.0, |b| b[j]);
        assert!(
            (want - scaled[j]).abs() <= 1e-5 * (1.0 + want.abs()),
            "scaled {j}"
        );
    }
    let masked: Vec<Option<f64>> = e["masked"]
        .as_array()
        .unwrap()
        .iter()
        .map(Value::as_f64)
        .collect();
    let allowed: Vec<f64> = masked.iter().flatten().copied().collect();
    assert_eq!(e["fully_masked"].as_bool().unwrap(), allowed.is_empty());
    let max = allowed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let total: f64 = allowed.iter().map(|s| (s - max).exp()).sum();
    for j in 0..n {
        match masked[j] {
            Some(m) => {
                assert!(
                    (m - scaled[j]).abs() <= 1e-5 * (1.0 + m.abs()),
                    "masked {j}"
                );
                let p = (m - max).exp() / total;
                assert!(
                    (p - weights[j]).abs() < 1e-6,
                    "weight {j}: {p} vs {}",
                    weights[j]
                );
            }
            None => assert_eq!(weights[j], 0.0, "masked key {j} has weight"),
        }
    }
    for c in 0..q.len() {
        let o: f64 = (0..n).map(|j| weights[j] * values[j][c]).sum();
        assert!(
            (o - output[c]).abs() < 1e-5,
            "output {c}: {o} vs {}",
            output[c]
        );
    }
}

#[test]
fn explain_matches_transformers_hooks() {
    for name in ["bert", "gpt2", "llama"] {
        let want = read_json(&fixture_dir("explain").join(format!("{name}.json")));
        let ids: Vec<String> = want["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        let ids = ids.join(",");
        let (layer, head, query) = (
            want["layer"].to_string(),
            want["head"].to_string(),
            want["query"].to_string(),
        );
        let model = fixture_dir(name);
        let args = [
            "--model",
            model.to_str().unwrap(),
            "--ids",
            &ids,
            "--layer",
            &layer,
            "--head",
            &head,
            "--query",
            &query,
        ];
        let got = explain(name, &args);
        assert_eq!(got["format"], "attnviz.explain/v1");
        assert_eq!(got["model"]["architecture"], name);
        assert_eq!(got["kv_head"], want["kv_head"], "{name}");
        assert_eq!(got["token_ids"], want["input_ids"]);
        let errs = [
            ("q", max_err(&floats(&got["q"]), &floats(&want["q"]))),
            (
                "keys",
                max_err2(&matrix(&got["keys"]), &matrix(&want["keys"])),
            ),
            (
                "values",
                max_err2(&matrix(&got["values"]), &matrix(&want["values"])),
            ),
            (
                "weights",
                max_err(&floats(&got["weights"]), &floats(&want["weights"])),
            ),
            (
                "output",
                max_err(&floats(&got["output"]), &floats(&want["output"])),
            ),
        ];
        eprintln!("{name} max errors against transformers: {errs:?}");
        for (field, err) in errs {
            assert!(err <= 1e-5, "{name} {field}: {err}");
        }
        assert_eq!(
            got["position"],
            if name == "llama" { "rope" } else { "none" }
        );
        assert_eq!(got["mask"], if name == "bert" { "none" } else { "causal" });
        assert_self_consistent(&got);

        // The weights are the maps' row, as `export` writes them.
        let dir = scratch(&format!("explain-export-{name}"));
        let out = dir.join("a.json");
        let o = run(&[
            "export",
            "--model",
            model.to_str().unwrap(),
            "--ids",
            &ids,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let maps = read_json(&out);
        let (l, h, q) = (
            want["layer"].as_u64().unwrap() as usize,
            want["head"].as_u64().unwrap() as usize,
            want["query"].as_u64().unwrap() as usize,
        );
        assert_eq!(
            floats(&maps["attentions"][l][h][q]),
            floats(&got["weights"]),
            "{name}"
        );
    }
}

#[test]
fn explain_is_self_consistent_on_the_demo() {
    let text = "the cat sat on the mat and the dog sat too";
    for (pe, mask, scale) in [
        ("sinusoidal", "causal+window:3", "inv-sqrt"),
        ("alibi", "none", "temperature:2"),
        ("rope", "block:4+drop-keys:5", "none"),
        ("learned", "drop-queries:6", "inv-sqrt"),
    ] {
        let e = explain(
            "demo",
            &[
                "--text", text, "--pe", pe, "--mask", mask, "--scale", scale, "--layer", "2",
                "--head", "3", "--query", "6",
            ],
        );
        assert_self_consistent(&e);
        // d_model 256 / 8 heads = 32; 1/√32 = 0.1767767, halved at temperature 2.
        let want_scale = match scale {
            "none" => 1.0,
            "temperature:2" => 0.5 / 32f64.sqrt(),
            _ => 1.0 / 32f64.sqrt(),
        };
        assert!(
            (e["scale"].as_f64().unwrap() - want_scale).abs() < 1e-7,
            "{pe}"
        );
        assert_eq!(e["bias"].is_null(), pe != "alibi");
        assert_eq!(
            e["fully_masked"].as_bool().unwrap(),
            mask == "drop-queries:6"
        );
        if pe == "alibi" {
            // Head 3 of 8: slope 2^-4; query 6 against key 0 is −6/16 = −0.375.
            assert!((e["bias"][0].as_f64().unwrap() + 0.375).abs() < 1e-7);
        }
    }
}

/// Keeping one dimension i of a head: its map row is softmax(q_i·k_i × scale) over the allowed
/// keys, with q_i and k_i read from the unrestricted run (the subset zeroes, it does not change).
#[test]
fn one_dimension_gives_softmax_of_its_product() {
    let llama = fixture_dir("llama");
    let cases: [(&[&str], &str, usize, f64); 2] = [
        (
            &["--text", "the cat sat on the mat"],
            "0.2=5",
            5,
            1.0 / 32f64.sqrt(),
        ),
        (
            &["--model", llama.to_str().unwrap(), "--ids", "1,7,30,12,9,4"],
            "1.3=6",
            6,
            1.0 / 8f64.sqrt(),
        ),
    ];
    for (input, dims, dim, scale) in cases {
        let (layer, head) = dims.split_once('=').unwrap().0.split_once('.').unwrap();
        for query in 0..6 {
            let query = query.to_string();
            let mut args: Vec<&str> = input.to_vec();
            args.extend_from_slice(&["--layer", layer, "--head", head, "--query", &query]);
            let full = explain("dims-full", &args);
            args.extend_from_slice(&["--dims", dims]);
            let kept = explain("dims-one", &args);
            let qi = floats(&full["q"])[dim];
            let ki: Vec<f64> = matrix(&full["keys"]).iter().map(|k| k[dim]).collect();
            let masked = kept["masked"].as_array().unwrap();
            let logits: Vec<Option<f64>> = (0..ki.len())
                .map(|j| (!masked[j].is_null()).then(|| qi * ki[j] * scale))
                .collect();
            let max = logits
                .iter()
                .flatten()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits.iter().flatten().map(|s| (s - max).exp()).sum();
            let weights = floats(&kept["weights"]);
            for (j, logit) in logits.iter().enumerate() {
                let want = logit.map_or(0.0, |s| (s - max).exp() / total);
                assert!(
                    (want - weights[j]).abs() < 1e-6,
                    "{dims} query {query} key {j}"
                );
            }
            // Every other dimension of q is zeroed.
            let q = floats(&kept["q"]);
            assert!(q.iter().enumerate().all(|(c, &v)| c == dim || v == 0.0));
        }
    }
}

#[test]
fn explain_errors_are_one_clean_line() {
    let dir = scratch("explain-errors");
    let out = dir.join("e.json");
    let out = out.to_str().unwrap();
    let o = run(&[
        "explain", "--text", "a b c", "--layer", "0", "--head", "0", "--query", "3", "--out", out,
    ]);
    assert_clean_error(&o, "query 3 does not exist (the input has 3 tokens)");
    let o = run(&[
        "explain", "--text", "a b", "--layer", "6", "--head", "0", "--query", "0", "--out", out,
    ]);
    assert_clean_error(&o, "layer 6 does not exist");
    let o = run(&[
        "explain", "--text", "a b", "--layer", "0", "--head", "8", "--query", "0", "--out", out,
    ]);
    assert_clean_error(&o, "head 8 does not exist");
    // A lesson is not a token input; the message says what to do with it.
    let lesson = dir.join("lesson.json");
    std::fs::write(
        &lesson,
        r#"{"format": "attnviz.lesson/v1", "title": "t", "text": "a b", "steps": [{"title": "s", "text": "x"}]}"#,
    )
    .unwrap();
    let o = run(&[
        "explain",
        lesson.to_str().unwrap(),
        "--layer",
        "0",
        "--head",
        "0",
        "--query",
        "0",
        "--out",
        out,
    ]);
    assert_clean_error(&o, "this is a lesson");
    assert!(
        super::stderr(&o)
            .trim_end()
            .ends_with(lesson.to_str().unwrap())
    );
    let o = run(&["export", lesson.to_str().unwrap(), "--out", out]);
    assert_clean_error(&o, "not a token input");
    assert!(!Path::new(out).exists());
}

#[test]
fn mistakes_on_the_command_line() {
    let dir = scratch("mistakes");
    let out = dir.join("a.json");
    let out_s = out.to_str().unwrap();
    let gpt2 = fixture_dir("gpt2");
    // GPT-2 adds a causal mask; forgetting it is recorded as the applied mask.
    let o = run(&[
        "export",
        "--model",
        gpt2.to_str().unwrap(),
        "--ids",
        "5,17,42,8",
        "--mistake",
        "no-causal-mask",
        "--out",
        out_s,
    ]);
    assert!(o.status.success(), "{}", super::stderr(&o));
    let a = read_json(&out);
    assert_eq!(a["mask"], "none");
    assert!(a["attentions"][0][0][0][3].as_f64().unwrap() > 0.0);
    // 2 demo heads chunk by 2² = 4 tokens.
    let o = run(&[
        "export",
        "--text",
        "a b c d e f",
        "--heads",
        "2",
        "--mistake",
        "chunk-by-heads",
        "--out",
        out_s,
    ]);
    assert!(o.status.success(), "{}", super::stderr(&o));
    let a = read_json(&out);
    assert_eq!(a["mask"], "block:4");
    assert_eq!(a["attentions"][0][0][0][4].as_f64().unwrap(), 0.0);
    // No scaling: the explain file says scale 1.
    let e = explain(
        "mistake",
        &[
            "--text",
            "a b c",
            "--mistake",
            "no-scaling",
            "--layer",
            "0",
            "--head",
            "0",
            "--query",
            "1",
        ],
    );
    assert_eq!(e["scale"].as_f64().unwrap(), 1.0);
    // The wrong axis gives maps whose rows do not sum to 1: export refuses them, as any such maps.
    let o = run(&[
        "export",
        "--text",
        "a b c",
        "--mistake",
        "wrong-axis",
        "--out",
        out_s,
    ]);
    assert_clean_error(&o, "refusing to export");
    let o = run(&[
        "export",
        "--text",
        "a b c",
        "--mistake",
        "no-scale",
        "--out",
        out_s,
    ]);
    assert_eq!(o.status.code(), Some(2));
}
