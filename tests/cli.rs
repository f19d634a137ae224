//! Runs the real `attnviz` binary as a user would, and checks files and exit codes.

// Test helpers outside #[test] functions may unwrap: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::needless_range_loop)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "cli/names.rs"]
mod names;
#[path = "cli/pipeline.rs"]
mod pipeline;

#[path = "cli/figures.rs"]
mod figures;

#[path = "cli/limits.rs"]
mod limits;

#[path = "cli/ablate.rs"]
mod ablate;
#[path = "cli/answer.rs"]
mod answer;
#[path = "cli/answer_figures.rs"]
mod answer_figures;
#[path = "cli/attribute.rs"]
mod attribute;
#[path = "cli/explain.rs"]
mod explain;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_attnviz"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("attnviz-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure must be exit 1 with exactly one line starting `error:`, and no panic output.
fn assert_clean_error(o: &Output, must_mention: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.contains(must_mention),
        "{err:?} should mention {must_mention:?}"
    );
    // Said once: an error whose cause is already in its message is not repeated after a colon.
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    for pair in parts.windows(2) {
        assert!(
            pair[1].len() < 12 || !pair[0].ends_with(pair[1]),
            "said twice: {err}"
        );
    }
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
}

const TEXT: &str = "The cat sat on the mat . The cat sat";

/// `--warm-runs N` repeats the forward after the first and reports the repeats' median next to
/// it; the file written is the first run's, byte for byte what a plain export writes.
#[test]
fn export_warm_runs_reports_the_repeated_forward_and_writes_the_same_file() {
    let dir = scratch("warm_runs");
    let plain = dir.join("plain.npy");
    let warm = dir.join("warm.npy");
    let o = run(&["export", "--text", TEXT, "--out", plain.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        "export",
        "--text",
        TEXT,
        "--out",
        warm.to_str().unwrap(),
        "--timings",
        "--warm-runs",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let timings: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    assert!(timings["forward_warm_ms"].as_f64().unwrap() > 0.0);
    assert!(timings["forward_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        std::fs::read(&warm).unwrap()
    );
}

#[test]
fn export_json_has_the_contract_shape_and_row_sums() {
    let dir = scratch("json");
    let out = dir.join("a.json");
    let o = run(&[
        "export",
        "--text",
        TEXT,
        "--out",
        out.to_str().unwrap(),
        "--timings",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let timings: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
    for key in ["load_ms", "tokenize_ms", "forward_ms", "write_ms"] {
        assert!(timings[key].as_f64().unwrap() >= 0.0, "{key}");
    }
    assert!(
        timings.get("forward_warm_ms").is_none(),
        "only with --warm-runs"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["format"], "attnviz.attention/v1");
    assert_eq!(v["shape"], serde_json::json!([6, 8, 10, 10]));
    assert_eq!(v["model"]["architecture"], "demo");
    assert_eq!(v["tokens"][1], "cat");
    assert_eq!(v["token_ids"].as_array().unwrap().len(), 10);
    let layers = v["attentions"].as_array().unwrap();
    assert_eq!(layers.len(), 6);
    for layer in layers {
        let heads = layer.as_array().unwrap();
        assert_eq!(heads.len(), 8);
        for head in heads {
            let rows = head.as_array().unwrap();
            assert_eq!(rows.len(), 10);
            for row in rows {
                let sum: f64 = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap())
                    .sum();
                assert!((sum - 1.0).abs() < 1e-5, "row sum {sum}");
            }
        }
    }
    // Layer 0 head 0 is the previous-token head: row 3 puts its weight on token 2.
    let row3: Vec<f64> = v["attentions"][0][0][3]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert!(row3[2] > 0.99, "{row3:?}");
}

#[test]
fn export_npy_writes_array_and_sidecar() {
    let dir = scratch("npy");
    let out = dir.join("att.npy");
    let o = run(&[
        "export",
        "--text",
        "a b c",
        "--mask",
        "causal",
        "--layers",
        "2",
        "--heads",
        "4",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'shape': (2, 4, 3, 3)"), "{header}");
    assert_eq!(bytes.len() - 10 - header_len, 2 * 4 * 3 * 3 * 4);
    // Causal: the first row is [1, 0, 0] in every head.
    let f = |i: usize| {
        let s = 10 + header_len + 4 * i;
        f32::from_le_bytes(bytes[s..s + 4].try_into().unwrap())
    };
    assert_eq!((f(0), f(1), f(2)), (1.0, 0.0, 0.0));
    let tokens: Vec<String> =
        serde_json::from_slice(&std::fs::read(dir.join("att.tokens.json")).unwrap()).unwrap();
    assert_eq!(tokens, ["a", "b", "c"]);
    // An NPY file renders like any attention file, with its sidecar's labels.
    let png = dir.join("from-npy.png");
    let o = run(&[
        "render",
        out.to_str().unwrap(),
        "--layer",
        "1",
        "--head",
        "3",
        "--out",
        png.to_str().unwrap(),
        "--no-labels",
        "--cell",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(decode(&png).dimensions(), (6, 6));
}

fn decode(path: &Path) -> image::RgbaImage {
    image::open(path).unwrap().to_rgba8()
}

fn distinct_colors(img: &image::RgbaImage) -> usize {
    let mut colors: Vec<[u8; 4]> = img.pixels().map(|p| p.0).collect();
    colors.sort_unstable();
    colors.dedup();
    colors.len()
}

#[test]
fn render_png_labelled_and_bare() {
    let dir = scratch("png");
    let labelled = dir.join("l.png");
    let o = run(&[
        "render",
        "--text",
        TEXT,
        "--out",
        labelled.to_str().unwrap(),
        "--cell",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = decode(&labelled);
    // Labels, title and colorbar make the figure bigger than the 10×20 px of cells.
    assert!(
        img.width() > 200 && img.height() > 200,
        "{:?}",
        img.dimensions()
    );
    assert!(distinct_colors(&img) > 20);

    let bare = dir.join("b.png");
    let o = run(&[
        "render",
        "--text",
        TEXT,
        "--out",
        bare.to_str().unwrap(),
        "--cell",
        "3",
        "--no-labels",
        "--head",
        "mean",
        "--colormap",
        "magma",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = decode(&bare);
    assert_eq!(img.dimensions(), (30, 30));
    assert!(distinct_colors(&img) > 2, "a uniform image");

    let grid = dir.join("g.png");
    let o = run(&[
        "render",
        "--text",
        TEXT,
        "--out",
        grid.to_str().unwrap(),
        "--view",
        "grid",
        "--cell",
        "40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = decode(&grid);
    assert!(
        img.width() >= 8 * 40 && img.height() >= 6 * 40,
        "{:?}",
        img.dimensions()
    );
}

#[test]
fn rendering_an_exported_file_gives_the_same_pixels() {
    let dir = scratch("same");
    let json = dir.join("a.json");
    let (direct, from_file) = (dir.join("direct.png"), dir.join("file.png"));
    assert!(
        run(&["export", "--text", TEXT, "--out", json.to_str().unwrap()])
            .status
            .success()
    );
    let common = ["--layer", "5", "--head", "0", "--cell", "4", "--no-labels"];
    let o = run(&[
        &["render", "--text", TEXT, "--out", direct.to_str().unwrap()][..],
        &common,
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&[
        &[
            "render",
            json.to_str().unwrap(),
            "--out",
            from_file.to_str().unwrap(),
        ][..],
        &common,
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(decode(&direct), decode(&from_file));
    // Options that change a model run cannot apply to a file's fixed maps: refused, named.
    let o = run(&[
        "render",
        json.to_str().unwrap(),
        "--mistake",
        "no-scaling",
        "--mask",
        "causal",
        "--out",
        from_file.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "--mask, --mistake change a model run");
    assert!(stderr(&o).contains("a.json"), "{}", stderr(&o));
}

#[test]
fn sample_inputs_all_render() {
    let dir = scratch("samples");
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_inputs");
    let mut count = 0;
    for entry in std::fs::read_dir(samples).unwrap() {
        let path = entry.unwrap().path();
        // sample_inputs/lessons/ holds lessons, which open in the app (tested in cli/explain.rs).
        if path.is_dir() {
            continue;
        }
        let out = dir.join(path.file_name().unwrap()).with_extension("png");
        let o = run(&[
            "render",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--mask",
            "padding",
        ]);
        assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        count += 1;
    }
    assert!(count >= 5);
}

#[test]
fn info_prints_the_architecture() {
    let o = run(&["info", "--json", "--heads", "4", "--d-model", "128"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            v["heads"].as_u64(),
            v["d_model"].as_u64(),
            v["d_head"].as_u64()
        ),
        (Some(4), Some(128), Some(32))
    );
    let text = String::from_utf8(run(&["info"]).stdout).unwrap();
    assert!(text.contains("L0·H0 previous token"), "{text}");
}

#[test]
fn bad_inputs_give_one_clean_error_line() {
    let dir = scratch("bad");
    let out = dir.join("o.json");
    let out = out.to_str().unwrap();
    // render writes PNG or SVG (any other name is refused before the input is read).
    let out_png = dir.join("o.png");
    let out_png = out_png.to_str().unwrap();
    let missing = dir.join("missing.txt");
    assert_clean_error(
        &run(&["export", missing.to_str().unwrap(), "--out", out]),
        "missing.txt",
    );

    let malformed = dir.join("broken.json");
    std::fs::write(&malformed, "{\"tokens\": [\"a\",").unwrap();
    assert_clean_error(
        &run(&["export", malformed.to_str().unwrap(), "--out", out]),
        "broken.json",
    );

    let wrong = dir.join("wrong.json");
    std::fs::write(
        &wrong,
        "{\"format\": \"attnviz.attention/v1\", \"shape\": [1]}",
    )
    .unwrap();
    assert_clean_error(
        &run(&["render", wrong.to_str().unwrap(), "--out", out_png]),
        "wrong.json",
    );

    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "   \n").unwrap();
    assert_clean_error(
        &run(&["export", empty.to_str().unwrap(), "--out", out]),
        "nothing to tokenize",
    );
    assert_clean_error(
        &run(&["export", "--text", "", "--out", out]),
        "nothing to tokenize",
    );

    assert_clean_error(
        &run(&[
            "export", "--text", "a b", "--mask", "window:x", "--out", out,
        ]),
        "bad mask spec",
    );
    assert_clean_error(
        &run(&[
            "export",
            "--text",
            "a b",
            "--mask",
            "drop-keys:7",
            "--out",
            out,
        ]),
        "drop-keys:7",
    );
    assert_clean_error(
        &run(&["export", "--text", "a b", "--heads", "7", "--out", out]),
        "divide",
    );
    assert_clean_error(
        &run(&["render", "--text", "a b", "--layer", "9", "--out", out_png]),
        "layer 9",
    );
    assert_clean_error(
        &run(&["export", "--text", "a b", "--dims", "0.0=99", "--out", out]),
        "dimension 99",
    );
    let unwritable = dir.join("no/such/dir/o.json");
    assert_clean_error(
        &run(&[
            "export",
            "--text",
            "a b",
            "--out",
            unwritable.to_str().unwrap(),
        ]),
        "o.json",
    );

    // Usage errors are clap's: exit 2.
    assert_eq!(
        run(&["export", "--text", "a", "--out", out, "--bogus"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&["render", "--text", "a", "--out", out, "--view", "nope"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&["export", "--out", out]).status.code(), Some(2));
}

fn copy_fixture(name: &str, to: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = to.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
    }
    dir
}

#[test]
fn checkpoint_export_tokenizes_like_transformers() {
    let dir = scratch("ckpt");
    let golden: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/golden.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let record = &golden[1];
    let out = dir.join("gpt2.json");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2");
    let o = run(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--text",
        record["text"].as_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["tokens"], record["tokens"]);
    assert_eq!(v["token_ids"], record["input_ids"]);
    assert_eq!(v["model"]["architecture"], "gpt2");
    assert_eq!(v["mask"], "causal");
}

#[test]
fn bad_checkpoints_give_one_clean_error_line() {
    let dir = scratch("badckpt");
    let out = dir.join("o.json");
    let out = out.to_str().unwrap();
    let export = |model: &Path, extra: &[&str]| {
        run(&[
            &["export", "--model", model.to_str().unwrap(), "--out", out][..],
            extra,
        ]
        .concat())
    };

    let unsupported = copy_fixture("bert", &dir.join("a"));
    let cfg = std::fs::read_to_string(unsupported.join("config.json"))
        .unwrap()
        .replace("\"bert\"", "\"t5\"");
    std::fs::write(unsupported.join("config.json"), cfg).unwrap();
    assert_clean_error(
        &export(&unsupported, &["--ids", "1,2"]),
        "unsupported model_type \"t5\"",
    );

    let malformed = copy_fixture("bert", &dir.join("b"));
    std::fs::write(malformed.join("config.json"), "{\"model_type\": ").unwrap();
    assert_clean_error(&export(&malformed, &["--ids", "1,2"]), "config.json");

    let huge = copy_fixture("llama", &dir.join("c"));
    let cfg = std::fs::read_to_string(huge.join("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 32", "\"hidden_size\": 99999999");
    std::fs::write(huge.join("config.json"), cfg).unwrap();
    assert_clean_error(&export(&huge, &["--ids", "1,2"]), "hidden_size");

    let wrong_shape = copy_fixture("gpt2", &dir.join("d"));
    let cfg = std::fs::read_to_string(wrong_shape.join("config.json"))
        .unwrap()
        .replace("\"n_positions\": 64", "\"n_positions\": 65");
    std::fs::write(wrong_shape.join("config.json"), cfg).unwrap();
    assert_clean_error(&export(&wrong_shape, &["--ids", "1,2"]), "wpe.weight");

    let garbage = copy_fixture("bert", &dir.join("e"));
    let mut bytes = std::fs::read(garbage.join("model.safetensors")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(garbage.join("model.safetensors"), &bytes).unwrap();
    assert_clean_error(&export(&garbage, &["--ids", "1,2"]), "model.safetensors");
    std::fs::write(garbage.join("model.safetensors"), u64::MAX.to_le_bytes()).unwrap();
    assert_clean_error(&export(&garbage, &["--ids", "1,2"]), "model.safetensors");

    let no_tokenizer = copy_fixture("bert", &dir.join("f"));
    std::fs::remove_file(no_tokenizer.join("tokenizer.json")).unwrap();
    assert_clean_error(
        &export(&no_tokenizer, &["--text", "hello"]),
        "no tokenizer.json",
    );

    let model = copy_fixture("bert", &dir.join("g"));
    assert_clean_error(
        &export(&model, &["--ids", "1,2,5000"]),
        "outside the vocabulary",
    );
    let long = "word ".repeat(100);
    assert_clean_error(&export(&model, &["--text", &long]), "--truncate");
    let o = export(&model, &["--text", &long, "--truncate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    assert_eq!(v["shape"], serde_json::json!([2, 4, 64, 64]));

    std::fs::write(model.join("pytorch_model.bin"), b"pickle").unwrap();
    std::fs::remove_file(model.join("model.safetensors")).unwrap();
    assert_clean_error(&export(&model, &["--ids", "1"]), "never loads pickle");
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn golden_record(name: &str, idx: usize) -> serde_json::Value {
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture_dir(name).join("golden.json")).unwrap())
            .unwrap();
    golden[idx].clone()
}

/// `attnviz next --json` gives transformers' top-5 ids and log-probs at every position (gpt2:
/// head tied to wte) and at the last one by default (llama: own lm_head.weight).
#[test]
fn next_prints_the_fixtures_predictions() {
    for (name, idx, all) in [("gpt2", 1, true), ("llama", 2, false)] {
        let record = golden_record(name, idx);
        let model = fixture_dir(name);
        let mut args = vec![
            "next",
            "--model",
            model.to_str().unwrap(),
            "--text",
            record["text"].as_str().unwrap(),
            "--json",
        ];
        if all {
            args.extend(["--position", "all"]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["format"], "attnviz.next/v1");
        assert_eq!(v["tokens"], record["tokens"]);
        assert_eq!(v["token_ids"], record["input_ids"]);
        assert_eq!(v["lm_head"]["tied"], name == "gpt2");
        let n = record["input_ids"].as_array().unwrap().len();
        let predictions = v["predictions"].as_array().unwrap();
        assert_eq!(predictions.len(), if all { n } else { 1 });
        for p in predictions {
            let position = p["position"].as_u64().unwrap() as usize;
            if !all {
                assert_eq!(position, n - 1);
            }
            assert_eq!(p["token"], record["tokens"][position]);
            let top = p["top"].as_array().unwrap();
            assert_eq!(top.len(), 5);
            for (rank, t) in top.iter().enumerate() {
                assert_eq!(
                    t["id"], record["top5_ids"][position][rank],
                    "{name} {position}"
                );
                let want = record["top5_logprobs"][position][rank].as_f64().unwrap();
                let got = t["logprob"].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{name} {position}: {got} vs {want}"
                );
            }
        }
    }
    // Text output: one line per prediction, ranked.
    let model = fixture_dir("llama");
    let o = run(&[
        "next",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        "1,50,60",
        "--top",
        "3",
        "--position",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.starts_with("lm head untied, lm_head.weight (vocab 400)\nafter position 1 "),
        "{text}"
    );
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.contains("   3. "), "{text}");
}

#[test]
fn next_and_info_report_heads_and_clean_errors() {
    let gpt2 = fixture_dir("gpt2");
    let bert = fixture_dir("bert");
    let o = run(&["info", "--model", gpt2.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("lm head       tied to transformer.wte.weight (vocab 400)\n"),
        "{text}"
    );
    let o = run(&["info", "--model", bert.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["lm_head"].is_null(), "{v}");
    let o = run(&[
        "info",
        "--model",
        fixture_dir("llama").to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v["lm_head"],
        serde_json::json!({"tensor": "lm_head.weight", "tied": false, "vocab": 400})
    );

    assert_clean_error(
        &run(&["next", "--text", "The cat"]),
        "demo model has no LM head",
    );
    let o = run(&["next", "--model", bert.to_str().unwrap(), "--ids", "2,5,3"]);
    assert_clean_error(&o, "no next-token LM head");
    // The same words as the Saliency view's target picker: both come from `pipeline::lm_head`.
    let loaded = attnviz::model::LoadedModel::checkpoint(&bert, Default::default()).unwrap();
    let message = attnviz::pipeline::lm_head(&loaded)
        .err()
        .unwrap()
        .to_string();
    assert_eq!(stderr(&o).trim_end(), format!("error: {message}"));
    let gpt2 = gpt2.to_str().unwrap();
    assert_clean_error(
        &run(&["next", "--model", gpt2, "--ids", "5,6,7", "--position", "3"]),
        "--position 3 is out of range: the input has 3 tokens",
    );
    assert_clean_error(
        &run(&["next", "--model", gpt2, "--ids", "5,6,7", "--position", "x"]),
        "bad --position",
    );
    let o = run(&["next", "--model", gpt2, "--ids", "5", "--top", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// `next` on a checkpoint whose LM head overflows f32 refuses, naming the weights file, instead
/// of printing `log-prob NaN` for every token with exit 0 (issue 20 item 7).
#[test]
fn next_refuses_non_finite_log_probabilities() {
    let dir = scratch("overflow");
    let model = copy_fixture("llama", &dir);
    let path = model.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    // Every tensor as it is, but the LM head at 3e38: its logits overflow to ±∞.
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let mut data = view.data().to_vec();
        if name == "lm_head.weight" {
            for chunk in data.chunks_exact_mut(4) {
                chunk.copy_from_slice(&3e38f32.to_le_bytes());
            }
        }
        owned.push((name, view.shape().to_vec(), data));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(name, shape, data)| {
            let view =
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .unwrap();
            (name.clone(), view)
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    let o = run(&[
        "next",
        "--model",
        model.to_str().unwrap(),
        "--ids",
        "1,50,60",
    ]);
    assert_clean_error(&o, "the LM head gives non-finite log-probabilities");
    assert!(
        stderr(&o).trim_end().ends_with("model.safetensors"),
        "{}",
        stderr(&o)
    );
}
#[path = "cli/extensions.rs"]
mod extensions;
#[path = "cli/imports.rs"]
mod imports;

#[path = "cli/analyses.rs"]
mod analyses;
#[path = "cli/analyze.rs"]
mod analyze;
#[path = "support/npy.rs"]
mod npy_support;
#[path = "cli/options.rs"]
mod options;

/// `ATTNVIZ_ISA` forces each instruction-set path of the kernels (the ones this CPU lacks fall
/// back to the best it has): every path gives transformers' predictions, and `--timings` names
/// the path it ran.
#[test]
fn every_instruction_set_path_gives_the_fixtures_predictions() {
    let record = golden_record("gpt2", 1);
    let model = fixture_dir("gpt2");
    for isa in ["portable", "avx2", "avx512"] {
        let o = bin()
            .env("ATTNVIZ_ISA", isa)
            .args([
                "next",
                "--model",
                model.to_str().unwrap(),
                "--text",
                record["text"].as_str().unwrap(),
                "--json",
                "--position",
                "all",
                "--timings",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{isa}: {}", stderr(&o));
        let timings: serde_json::Value = serde_json::from_str(stderr(&o).trim()).unwrap();
        let used = timings["isa"].as_str().unwrap();
        assert!(
            used == isa
                || isa != "portable" && used == "portable"
                || isa == "avx512" && used == "avx2",
            "{isa} ran as {used}"
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        for p in v["predictions"].as_array().unwrap() {
            let position = p["position"].as_u64().unwrap() as usize;
            for (rank, t) in p["top"].as_array().unwrap().iter().enumerate() {
                assert_eq!(t["id"], record["top5_ids"][position][rank], "{isa}");
                let want = record["top5_logprobs"][position][rank].as_f64().unwrap();
                let got = t["logprob"].as_f64().unwrap();
                assert!(
                    (got - want).abs() <= 1e-4,
                    "{isa} {position}: {got} vs {want}"
                );
            }
        }
    }
}
