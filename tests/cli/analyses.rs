//! `attnviz analyze --what flow|value-zeroing`, and the metrics' offsets, head order and
//! induction probe: the files' contracts, the options they follow and their one-line errors.

use super::{assert_clean_error, fixture_dir, run, scratch, stderr};
use serde_json::Value;

fn read(path: &std::path::Path) -> Value {
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

#[test]
fn analyze_flow_writes_one_flow_per_token() {
    let dir = scratch("analyze-flow");
    let out = dir.join("f.json");
    let o = run(&[
        "analyze",
        "--what",
        "flow",
        "--text",
        "the cat sat on the mat",
        "--mask",
        "causal",
        "--normalize-flow",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = read(&out);
    assert_eq!(f["format"], "attnviz.flow/v1");
    assert_eq!(f["mask"], "causal");
    assert_eq!(f["options"]["scale"], "inv-sqrt");
    assert_eq!(f["tokens"].as_array().unwrap().len(), 6);
    // The last token by default; the rollout's defaults for W′.
    assert_eq!(
        (f["query"].as_u64(), f["alpha"].as_f64()),
        (Some(5), Some(0.5))
    );
    assert_eq!(f["layers"], serde_json::json!([0, 5]));
    let flow = floats(&f["flow"]);
    assert_eq!(flow.len(), 6);
    // What enters Q is at most its row of W′, which sums to 1.
    assert!(
        flow.iter().all(|&v| (0.0..=1.0 + 1e-9).contains(&v)),
        "{flow:?}"
    );
    let norm = floats(&f["flow_normalized"]);
    assert!((norm.iter().sum::<f64>() - 1.0).abs() < 1e-9);
    // Q = 0 under the causal mask: only token 0 flows into it, and all of it.
    let o = run(&[
        "analyze",
        "--what",
        "flow",
        "--text",
        "the cat sat on the mat",
        "--mask",
        "causal",
        "--query",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let f = read(&out);
    assert_eq!(floats(&f["flow"]), vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    assert!(f.get("flow_normalized").is_none());
    // A query past the last token, and --query where it does not apply: one clear line each.
    let o = run(&[
        "analyze",
        "--what",
        "flow",
        "--text",
        "a b c",
        "--query",
        "3",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "query 3 does not exist (the input has 3 tokens, 0..2)");
    let o = run(&[
        "analyze",
        "--what",
        "metrics",
        "--text",
        "a b c",
        "--query",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "--query applies to --what flow only");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_flow_refuses_non_finite_capacities() {
    // One head of two tokens from NumPy with a NaN: drawn with a warning elsewhere, but no
    // flow network can carry it.
    let dir = scratch("analyze-flow-nan");
    let path = dir.join("nan.npy");
    let bytes = crate::npy_support::npy_f32("(2, 2)", &[f32::NAN, 1.0, 0.25, 0.75]);
    std::fs::write(&path, &bytes).unwrap();
    let out = dir.join("f.json");
    let o = run(&[
        "analyze",
        path.to_str().unwrap(),
        "--what",
        "flow",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("error: the flow capacity W′[0, 0] of layer 0 is NaN"),
        "{err}"
    );
    assert!(!out.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_value_zeroing_writes_normalised_maps_and_their_product() {
    let dir = scratch("analyze-vz");
    let gpt2 = fixture_dir("gpt2");
    let out = dir.join("v.json");
    let o = run(&[
        "analyze",
        "--what",
        "value-zeroing",
        "--model",
        gpt2.to_str().unwrap(),
        "--text",
        "the cat sat on the mat",
        "--ablate",
        "1.2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = read(&out);
    assert_eq!(v["format"], "attnviz.value_zeroing/v1");
    assert_eq!(v["options"]["ablations"], serde_json::json!(["1.2"]));
    let n = v["tokens"].as_array().unwrap().len();
    let maps: Vec<Vec<Vec<f64>>> = v["maps"].as_array().unwrap().iter().map(matrix).collect();
    assert_eq!(maps.len(), 2);
    let sums: Vec<Vec<f64>> = matrix(&v["row_sums"]);
    for (map, sums) in maps.iter().zip(&sums) {
        assert_eq!((map.len(), sums.len()), (n, n));
        for (i, row) in map.iter().enumerate() {
            // GPT-2 is causal: zeroing a later token changes nothing.
            assert!(row[i + 1..].iter().all(|&x| x == 0.0), "{row:?}");
            assert!(sums[i] > 0.0);
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
    }
    // The product is the maps multiplied, last times first.
    let product = matrix(&v["product"]);
    for i in 0..n {
        for j in 0..n {
            let want: f64 = (0..n).map(|k| maps[1][i][k] * maps[0][k][j]).sum();
            assert!((product[i][j] - want).abs() < 1e-5);
        }
    }
    // An attention file has no values to zero.
    let exported = dir.join("att.json");
    let o = run(&[
        "export",
        "--text",
        "a b",
        "--out",
        exported.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "analyze",
        exported.to_str().unwrap(),
        "--what",
        "value-zeroing",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "value zeroing needs a model run, not an attention file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn analyze_metrics_has_offsets_a_head_order_and_the_induction_probe() {
    let dir = scratch("analyze-probe");
    let out = dir.join("m.json");
    let o = run(&[
        "analyze",
        "--what",
        "metrics",
        "--probe",
        "induction",
        "--text",
        "the cat sat on the mat because the cat was tired",
        "--mask",
        "causal",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = read(&out);
    let (layers, heads) = (6, 8);
    // The demo's previous-token head peaks at offset −1 with all its weight, its self head at 0.
    assert_eq!(m["metrics"]["offset_peak"][0][0], -1);
    assert_eq!(m["metrics"]["offset_peak"][0][1], 0);
    assert!(m["metrics"]["offset_share"][0][0].as_f64().unwrap() > 0.9);
    // Every head once in the clustered order.
    let mut order: Vec<(u64, u64)> = m["head_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect();
    assert_eq!(order.len(), layers * heads);
    order.sort_unstable();
    order.dedup();
    assert_eq!(order.len(), layers * heads);
    // The probe: 50 words twice, and the last layer's H0 on top of the induction scores.
    assert_eq!(m["induction_probe"]["period"], 50);
    assert_eq!(
        m["induction_probe"]["token_ids"].as_array().unwrap().len(),
        100
    );
    let scores = matrix(&m["metrics"]["induction"]);
    let mut best = (0.0, (0, 0));
    for (l, row) in scores.iter().enumerate() {
        for (h, &v) in row.iter().enumerate() {
            if v > best.0 {
                best = (v, (l, h));
            }
        }
    }
    assert_eq!(best.1, (5, 0), "{scores:?}");
    assert!(best.0 > 0.9);
    // --probe on another analysis is refused.
    let o = run(&[
        "analyze",
        "--what",
        "flow",
        "--probe",
        "induction",
        "--text",
        "a b",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "--probe applies to --what metrics only");
    std::fs::remove_dir_all(&dir).unwrap();
}
