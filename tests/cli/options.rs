//! Every figure title and every `attnviz.*/v1` JSON says how its numbers were made: the
//! options that change them (scale, dims, mistakes, ablations) in one `options` object, and in
//! the title when they are not the defaults.

use super::{run, scratch, stderr};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn mistakes_dims_and_scale_are_named_in_titles_and_in_every_json() {
    let dir = scratch("options");
    let text = "the cat sat on the mat";
    // Titles: the SVG's text says the mistake, the dims and a scale that is not the default.
    for (flags, want) in [
        (&["--mistake", "no-scaling"][..], "mistake no-scaling"),
        (&["--dims", "0.0=0-7"][..], "dims 0.0=0-7"),
        (&["--scale", "none"][..], "scale none"),
    ] {
        let svg = dir.join("t.svg");
        let mut args = vec!["render", "--text", text, "--out", svg.to_str().unwrap()];
        args.extend_from_slice(flags);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let doc = std::fs::read_to_string(&svg).unwrap();
        assert!(doc.contains(want), "{flags:?}: no {want:?} in the title");
    }
    // A default run's title says none of them.
    let svg = dir.join("plain.svg");
    let o = run(&["render", "--text", text, "--out", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc = std::fs::read_to_string(&svg).unwrap();
    assert!(!doc.contains("mistake") && !doc.contains("dims") && !doc.contains("scale none"));

    // JSON: export, explain and attribute carry the same options object.
    let flags = [
        "--mistake",
        "no-scaling",
        "--dims",
        "0.0=0-7,12",
        "--ablate",
        "1.2:mean",
    ];
    let want = serde_json::json!({
        "scale": "inv-sqrt",
        "dims": ["0.0=0-7,12"],
        "mistakes": ["no-scaling"],
        "ablations": ["1.2:mean"],
    });
    let out = dir.join("a.json");
    let mut args = vec!["export", "--text", text, "--out", out.to_str().unwrap()];
    args.extend_from_slice(&flags);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&out)["options"], want);
    let out = dir.join("e.json");
    let mut args = vec![
        "explain",
        "--text",
        text,
        "--layer",
        "0",
        "--head",
        "0",
        "--query",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(&flags);
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&out)["options"], want);
    // attribute needs an LM head: the GPT-2 fixture, without the demo-only flags' dims.
    let gpt2 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2");
    let out = dir.join("s.json");
    let o = run(&[
        "attribute",
        "--model",
        gpt2.to_str().unwrap(),
        "--text",
        text,
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--scale",
        "temperature:2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(json(&out)["options"]["scale"], "temperature:2");
    std::fs::remove_dir_all(&dir).unwrap();
}
