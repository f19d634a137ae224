//! `--ablate L.H[:mean]` on every command that runs a model: recorded in the JSON and titles,
//! followed by the numbers, and refused with one line naming the flag and the valid range.

use super::*;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn ablate_works_on_every_command_and_is_recorded() {
    let dir = scratch("ablate");
    let gpt2 = fixture_dir("gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let text = "the cat sat on the mat";
    let out = |name: &str| dir.join(name).to_str().unwrap().to_owned();

    // export: the JSON records the ablations in their one order; later layers change.
    let (plain, ablated) = (out("plain.json"), out("ablated.json"));
    let o = run(&["export", "--model", gpt2, "--text", text, "--out", &plain]);
    assert!(o.status.success(), "{}", stderr(&o));
    let args = ["export", "--model", gpt2, "--text", text, "--out", &ablated];
    let o = run(&[&args[..], &["--ablate", "1.3:mean", "--ablate", "0.1"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let (p, a) = (json(Path::new(&plain)), json(Path::new(&ablated)));
    assert_eq!(p["ablations"], serde_json::json!([]));
    assert_eq!(a["ablations"], serde_json::json!(["0.1", "1.3:mean"]));
    assert_eq!(
        p["attentions"][0], a["attentions"][0],
        "layer 0 is before the change"
    );
    assert_ne!(
        p["attentions"][1], a["attentions"][1],
        "layer 1 reads the ablated head"
    );

    // render: the title names them (SVG keeps the text).
    let svg = out("r.svg");
    let o = run(&[
        "render", "--model", gpt2, "--text", text, "--ablate", "0.1", "--out", &svg,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let svg_text = std::fs::read_to_string(&svg).unwrap();
    assert!(svg_text.contains("ablated 0.1"), "{svg_text:.400}");
    // The grid too.
    let grid = out("g.svg");
    let args = ["render", "--model", gpt2, "--text", text, "--view", "grid"];
    let o = run(&[&args[..], &["--ablate", "1.2:mean", "--out", &grid]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        std::fs::read_to_string(&grid)
            .unwrap()
            .contains("ablated 1.2:mean")
    );

    // next: the log-probabilities follow the ablation.
    let next = |extra: &[&str]| {
        let args = ["next", "--model", gpt2, "--text", text, "--json"];
        let o = run(&[&args[..], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_ne!(next(&[]), next(&["--ablate", "1.0"]));

    // explain: recorded, and the walkthrough reads the ablated run (layer 1 after 0.1).
    let (e0, e1) = (out("e0.json"), out("e1.json"));
    for (path, extra) in [(&e0, &[][..]), (&e1, &["--ablate", "0.1"][..])] {
        let args = [
            "explain", "--model", gpt2, "--text", text, "--layer", "1", "--head", "0",
        ];
        let o = run(&[&args[..], &["--query", "3", "--out", path], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (e0, e1) = (json(Path::new(&e0)), json(Path::new(&e1)));
    assert_eq!(e1["ablations"], serde_json::json!(["0.1"]));
    assert_ne!(e0["weights"], e1["weights"]);

    // attribute: recorded, the scores and the title follow it.
    let (a0, a1, fig) = (out("a0.json"), out("a1.json"), out("a1.svg"));
    for (path, extra) in [
        (&a0, &[][..]),
        (&a1, &["--ablate", "0.1:mean"][..]),
        (&fig, &["--ablate", "0.1:mean"][..]),
    ] {
        let args = [
            "attribute",
            "--model",
            gpt2,
            "--text",
            text,
            "--method",
            "gradient",
        ];
        let o = run(&[&args[..], &["--target", "logprob", "--out", path], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (s0, s1) = (json(Path::new(&a0)), json(Path::new(&a1)));
    assert_eq!(s1["ablations"], serde_json::json!(["0.1:mean"]));
    assert_ne!(s0["scores"], s1["scores"]);
    assert!(
        std::fs::read_to_string(&fig)
            .unwrap()
            .contains("ablated 0.1:mean")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_ablations_give_one_line_naming_the_flag() {
    let dir = scratch("ablate-bad");
    let out = dir.join("x.json");
    let out = out.to_str().unwrap();
    let export =
        |extra: &[&str]| run(&[&["export", "--text", TEXT, "--out", out][..], extra].concat());
    // The demo: 6 layers × 8 heads.
    assert_clean_error(
        &export(&["--ablate", "6.0"]),
        "--ablate: cannot ablate head 6.0: it does not exist (layers 0–5, heads 0–7)",
    );
    assert_clean_error(&export(&["--ablate", "0.8:mean"]), "heads 0–7");
    assert_clean_error(
        &export(&["--ablate", "2.1", "--ablate", "2.1:mean"]),
        "--ablate: head 2.1 is ablated twice, as 2.1 and as 2.1:mean",
    );
    // A malformed spec is a usage error (exit 2) naming the flag.
    let o = export(&["--ablate", "2:mean"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("'--ablate <L.H[:mean]>'"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("expected LAYER.HEAD or LAYER.HEAD:mean"));
    // The same head twice with the same mode is one ablation.
    let o = export(&["--ablate", "2.1", "--ablate", "2.1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        json(Path::new(out))["ablations"],
        serde_json::json!(["2.1"])
    );
    // An attention file's maps are fixed.
    assert_clean_error(
        &run(&["export", out, "--ablate", "0.0", "--out", out]),
        "--ablate changes a model run",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
