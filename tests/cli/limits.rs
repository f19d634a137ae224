//! Limits and quiet endings through the real binary (issue 10 items 3, 5, 6, 7, 8; issue 9
//! item 20): a closed stdout, memory and pixel budgets, amplifying tokenizers, non-finite
//! weights, messages naming the file, special files as model files.

use super::{assert_clean_error, bin, copy_fixture, fixture_dir, run, scratch, stderr};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `args` with stdout a pipe whose read end is already closed.
fn run_into_closed_pipe(args: &[&str]) -> std::process::Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    bin()
        .args(args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly() {
    // Issue 9 item 20: `attnviz next --json | head` printed "internal error: … Broken pipe".
    let gpt2 = fixture_dir("gpt2");
    let gpt2 = gpt2.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["next", "--model", gpt2, "--text", "the cat sat", "--json"],
        &["next", "--model", gpt2, "--text", "the cat sat"],
        &["info", "--model", gpt2, "--json"],
        &["info"],
    ];
    for args in cases {
        let o = run_into_closed_pipe(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
        // The same command into an open pipe does print (so the pipe really was the cause).
        let open = run(args);
        assert_eq!(open.status.code(), Some(0), "{args:?}");
        assert!(!open.stdout.is_empty(), "{args:?}");
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `dir/config.json` with `key` set to `value`.
fn set_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg[key] = value;
    std::fs::write(&path, cfg.to_string()).unwrap();
}

/// Rewrites the f32 values of tensor `name` in `dir/model.safetensors` with `f(index)`.
fn poke_tensor(dir: &Path, name: &str, f: impl Fn(usize) -> Option<f32>) {
    let path = dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let info = &header[name];
    assert_eq!(info["dtype"], "F32");
    let start = 8 + n + info["data_offsets"][0].as_u64().unwrap() as usize;
    let end = 8 + n + info["data_offsets"][1].as_u64().unwrap() as usize;
    for (i, chunk) in bytes[start..end].chunks_exact_mut(4).enumerate() {
        if let Some(v) = f(i) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_run_over_its_memory_budget_is_refused_before_it_allocates() {
    // Demo: 6 layers × 8 heads × 4096² × 4 bytes = 3 GiB of maps, plus 4096 × 4864 × 4 =
    // 80 MB of activations (d_model 256, d_ff 1024) and a 4096² = 17 MB mask: 3.09 GiB,
    // over a 1 GiB budget.
    let text = vec!["w"; 4096].join(" ");
    let dir = scratch("budget");
    let out = dir.join("out.json");
    let o = run(&[
        "export",
        "--text",
        &text,
        "--memory-budget",
        "1GiB",
        "--out",
        p(&out),
    ]);
    assert_clean_error(
        &o,
        "needs 3.1 GiB for 4,096 tokens; the memory budget is 1 GiB (--memory-budget)",
    );
    assert!(!out.exists());
    // A bad size is a usage error.
    let o = run(&[
        "export",
        "--text",
        "a b",
        "--memory-budget",
        "lots",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // `next` keeps no maps: 3000 ids on a Llama allowed 4096 positions need about 16 MB
    // (the mask 9 MB, activations, 3000 × 400 log-probs), while `export` needs
    // 2 layers × 4 heads × 3000² × 4 = 288 MB of maps; a 64 MiB budget separates them.
    let model = copy_fixture("llama", &dir);
    set_config(&model, "max_position_embeddings", serde_json::json!(4096));
    let ids: Vec<String> = (0..3000).map(|i| (i % 400).to_string()).collect();
    let ids = ids.join(",");
    let common = [
        "--model",
        p(&model),
        "--ids",
        &ids,
        "--memory-budget",
        "64MiB",
    ];
    let mut next = vec!["next", "--json"];
    next.extend(common);
    let o = run(&next);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["predictions"][0]["position"], 2999);
    let mut export = vec!["export", "--out", p(&out)];
    export.extend(common);
    let o = run(&export);
    assert_clean_error(&o, "for 3,000 tokens; the memory budget is 64 MiB");
}

#[test]
fn a_figure_over_the_pixel_budget_is_refused_before_drawing() {
    let dir = scratch("pixels");
    let out = dir.join("big.png");
    // 8 tokens × 4096 px = 32768 px a side: 2^30 pixels (4 GiB), over the 2^26 allowed.
    let start = std::time::Instant::now();
    let o = run(&[
        "render",
        "--text",
        "a b c d e f g h",
        "--cell",
        "4096",
        "--no-labels",
        "--out",
        p(&out),
    ]);
    assert_clean_error(
        &o,
        "is 1073741824 pixels, more than the 67108864 allowed (--max-pixels)",
    );
    assert!(start.elapsed().as_secs() < 20);
    assert!(!out.exists());
    // The budget is a flag: 3 tokens at 32 px, bare cells, are 96 × 96 = 9216 pixels.
    let o = run(&[
        "render",
        "--text",
        "a b c",
        "--cell",
        "32",
        "--no-labels",
        "--max-pixels",
        "9000",
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "image too large: 96x96 pixels");
    // The budget is said as it was typed, not in 2^20-pixel units.
    assert!(
        stderr(&o).contains("more than the 9000 allowed"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "render",
        "--text",
        "a b c",
        "--cell",
        "32",
        "--no-labels",
        "--max-pixels",
        "9216",
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// BERT's fixture with a normalizer that first replaces "l" by `content`.
fn amplifying_bert(dir: &Path, content: &str) -> std::path::PathBuf {
    let model = copy_fixture("bert", dir);
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let bert = tok["normalizer"].take();
    tok["normalizer"] = serde_json::json!({"type": "Sequence", "normalizers": [
        {"type": "Replace", "pattern": {"String": "l"}, "content": content},
        bert,
    ]});
    std::fs::write(&path, tok.to_string()).unwrap();
    model
}

/// Runs `args` under a 1 GiB address-space cap.
fn run_capped(args: &[&str]) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 1048576; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_attnviz"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn an_amplifying_normalizer_is_refused_before_encoding() {
    // Issue 10 item 3: "l" → 1 MB made 20 million tokens and 3.6 GB of a 41-character text.
    let text = "hello world, all is well; let us all tell";
    assert_eq!(text.len(), 41);
    let dir = scratch("amplify");
    let out = dir.join("out.json");
    // 1 MB content: one character can become 18 MB (× BERT's 18), more than the 4 MiB the
    // check normalizes at once, so the tokenizer is refused without running.
    let model = amplifying_bert(&dir.join("big"), &"x".repeat(1 << 20));
    let o = run_capped(&[
        "export",
        "--model",
        p(&model),
        "--text",
        text,
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "can turn one character into more than 4 MiB");
    assert!(stderr(&o).contains("tokenizer.json"), "{}", stderr(&o));
    // 100 KB content: measured. The text's 12 "l"s make 12 × 100,000 = 1.2 MB, over the
    // 1 MiB floor of the bound (64 × 64 positions is less).
    assert_eq!(text.matches('l').count(), 12);
    let model = amplifying_bert(&dir.join("mid"), &"x".repeat(100_000));
    let o = run_capped(&[
        "export",
        "--model",
        p(&model),
        "--text",
        text,
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "normalizes to more than 1048576 bytes");
    assert!(stderr(&o).contains("tokenizer.json"), "{}", stderr(&o));
    // 7 "l"s make 700 KB: within the bound, so the text is tokenized (WordPiece makes each
    // over-long word one [UNK]) and the export succeeds.
    let short = "hello world, all is well";
    assert_eq!(short.matches('l').count(), 7);
    let o = run_capped(&[
        "export",
        "--model",
        p(&model),
        "--text",
        short,
        "--out",
        p(&out),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(
        json["tokens"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("[UNK]"))
    );
}

#[test]
fn a_non_finite_weight_is_refused_at_load_naming_tensor_and_file() {
    let dir = scratch("nan");
    let model = copy_fixture("gpt2", &dir);
    poke_tensor(&model, "transformer.h.1.attn.c_attn.weight", |i| {
        (i == 5).then_some(f32::NAN)
    });
    let o = run(&["next", "--model", p(&model), "--text", "the cat sat"]);
    assert_clean_error(
        &o,
        "tensor \"transformer.h.1.attn.c_attn.weight\" holds NaN at flat index 5",
    );
    assert!(
        stderr(&o).trim_end().ends_with("model.safetensors"),
        "{}",
        stderr(&o)
    );

    // Finite weights that overflow: every q/k/v weight of layer 0 at 3e38 makes the sums ±inf
    // and the softmax NaN; the run stops at that layer, naming the model folder.
    let model = copy_fixture("gpt2", &dir.join("overflow"));
    poke_tensor(&model, "transformer.h.0.attn.c_attn.weight", |i| {
        Some(if i % 2 == 0 { 3e38 } else { -3e38 })
    });
    let o = run(&["next", "--model", p(&model), "--text", "the cat sat"]);
    assert_clean_error(&o, "non-finite values after layer 0's attention");
    assert!(stderr(&o).contains(p(&model)), "{}", stderr(&o));
}

#[test]
fn input_messages_name_their_file() {
    let dir = scratch("messages");
    let out = dir.join("out.json");
    let bert = fixture_dir("bert");
    // Too long for 64 positions.
    let long = dir.join("long.txt");
    std::fs::write(&long, vec!["cat"; 100].join(" ")).unwrap();
    let o = run(&["export", p(&long), "--model", p(&bert), "--out", p(&out)]);
    assert_clean_error(&o, "exceed the model's limit of 64");
    assert!(
        stderr(&o).trim_end().ends_with("long.txt"),
        "{}",
        stderr(&o)
    );
    // Typed text has no file: the message names the config.json that sets the limit (a fuzz
    // mutant with max_position_embeddings 2 found it naming nothing).
    let text = vec!["cat"; 100].join(" ");
    let o = run(&[
        "export",
        "--model",
        p(&bert),
        "--text",
        &text,
        "--out",
        p(&out),
    ]);
    let config = bert.join("config.json");
    assert_clean_error(
        &o,
        &format!(
            "exceed the model's limit of 64 (set by {})",
            config.display()
        ),
    );
    // An id outside the 300-entry vocabulary, from a file.
    let ids = dir.join("ids.json");
    std::fs::write(&ids, r#"{"token_ids": [1, 400]}"#).unwrap();
    let o = run(&["export", p(&ids), "--model", p(&bert), "--out", p(&out)]);
    assert_clean_error(&o, "token id 400 (position 1) is outside the vocabulary");
    assert!(
        stderr(&o).trim_end().ends_with("ids.json"),
        "{}",
        stderr(&o)
    );
    // WordPiece without its [UNK] token: the message names tokenizer.json, once.
    let model = copy_fixture("bert", &dir);
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tok["model"]["unk_token"] = serde_json::json!("[NOT-THERE]");
    std::fs::write(&path, tok.to_string()).unwrap();
    let o = run(&[
        "export",
        "--model",
        p(&model),
        "--text",
        "zqxjv",
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "Missing [UNK] token");
    assert_eq!(
        stderr(&o).matches("tokenizer.json").count(),
        1,
        "{}",
        stderr(&o)
    );
    // Only special tokens left after --hide-special, from a file.
    let specials = dir.join("specials.json");
    std::fs::write(&specials, r#"{"tokens": ["[CLS]", "[SEP]"]}"#).unwrap();
    let png = dir.join("out.png");
    let o = run(&["render", p(&specials), "--hide-special", "--out", p(&png)]);
    assert_clean_error(&o, "every token is special");
    assert!(
        stderr(&o).trim_end().ends_with("specials.json"),
        "{}",
        stderr(&o)
    );
}

/// Runs `args`, failing the test if it takes more than 30 s (a FIFO read would block forever).
fn run_with_timeout(args: &[&str]) -> std::process::Output {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("{args:?} still running after 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn special_files_as_weights_index_or_tokenizer_are_refused_quickly() {
    let dir = scratch("special");
    let llama = fixture_dir("llama");
    let fresh = |name: &str| {
        let d = dir.join(name);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(llama.join("config.json"), d.join("config.json")).unwrap();
        d
    };
    let cases = [
        (
            "model.safetensors",
            true,
            "a named pipe is not a readable file",
        ),
        (
            "model.safetensors",
            false,
            "a character device is not a readable file",
        ),
        (
            "model.safetensors.index.json",
            true,
            "a named pipe is not a readable file",
        ),
        (
            "model.safetensors.index.json",
            false,
            "a character device is not a readable file",
        ),
    ];
    for (i, (file, fifo, message)) in cases.into_iter().enumerate() {
        let model = fresh(&format!("case{i}"));
        let path = model.join(file);
        if fifo {
            mkfifo(&path);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        }
        let o = run_with_timeout(&["info", "--model", p(&model)]);
        assert_clean_error(&o, message);
        assert!(stderr(&o).trim_end().ends_with(file), "{}", stderr(&o));
    }
    // tokenizer.json as a FIFO next to good weights.
    let model = copy_fixture("llama", &dir.join("tok"));
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    mkfifo(&model.join("tokenizer.json"));
    let o = run_with_timeout(&["info", "--model", p(&model)]);
    assert_clean_error(&o, "a named pipe is not a readable file");
    assert!(
        stderr(&o).trim_end().ends_with("tokenizer.json"),
        "{}",
        stderr(&o)
    );
}

/// The too-long hints fit what was asked (issue 20 item 13): `--truncate` given cannot make room
/// for a continuation as long as the model's window, and a long `--text-b` is named as such.
#[test]
fn too_long_hints_say_which_text_and_what_to_change() {
    let dir = scratch("hints");
    let out = dir.join("o.json");
    let gpt2 = fixture_dir("gpt2");
    // GPT-2's fixture has 64 positions: 64 generated tokens leave none for the input.
    let o = run(&[
        "attribute",
        "--model",
        p(&gpt2),
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "logprob",
        "--generate",
        "64",
        "--truncate",
        "--out",
        p(&out),
    ]);
    assert_clean_error(
        &o,
        "--generate 64 leaves no room for the input: at most 63 fit",
    );
    assert!(!stderr(&o).contains("pass --truncate"), "{}", stderr(&o));
    // Without --truncate, a too-long input gets the hint.
    let long = vec!["cat"; 100].join(" ");
    let o = run(&[
        "export",
        "--model",
        p(&gpt2),
        "--text",
        &long,
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "; pass --truncate to cut the input");
    // A second text over the limit is named, and cutting the input would not help.
    let bert = fixture_dir("bert");
    let o = run(&[
        "attribute",
        "--model",
        p(&bert),
        "--text",
        "the cat",
        "--method",
        "gradient",
        "--target",
        "similarity",
        "--text-b",
        &long,
        "--out",
        p(&out),
    ]);
    assert_clean_error(&o, "text B: 102 tokens exceed the model's limit of 64");
    assert!(
        stderr(&o).contains("give a shorter --text-b"),
        "{}",
        stderr(&o)
    );
}

/// A tokenizer.json that gives an id beyond the model's vocabulary is named, with the
/// config.json that sets the vocabulary (issue 20 item 8).
#[test]
fn a_tokenizer_beyond_the_vocabulary_names_both_files() {
    let dir = scratch("vocab");
    let model = copy_fixture("bert", &dir);
    let path = model.join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    tok["added_tokens"].as_array_mut().unwrap().push(
        serde_json::json!({"id": 1399, "content": "zzzq", "single_word": false,
            "lstrip": false, "rstrip": false, "normalized": false, "special": false}),
    );
    std::fs::write(&path, serde_json::to_vec(&tok).unwrap()).unwrap();
    let out = dir.join("o.json");
    let o = run(&[
        "export",
        "--model",
        p(&model),
        "--text",
        "zzzq cat",
        "--out",
        p(&out),
    ]);
    // The tokenizer numbers the added token after its vocabulary: 300, one past the model's.
    assert_clean_error(
        &o,
        "tokenizer.json gives token id 300 (position 1, \"zzzq\")",
    );
    let err = stderr(&o);
    assert!(
        err.contains("tokenizer.json") && err.contains("config.json"),
        "{err}"
    );
    assert!(err.contains("vocabulary of 300"), "{err}");
}

/// `export` estimates the file before writing and refuses above `--max-output` (1 GiB by
/// default), saying the estimate and the flag (issue 20 item 5).
#[test]
fn export_refuses_a_file_over_max_output() {
    let dir = scratch("max-output");
    let export = |max: &str, out: &Path| {
        run(&[
            "export",
            "--text",
            "the cat sat on the mat",
            "--max-output",
            max,
            "--out",
            p(out),
        ])
    };
    let out = dir.join("att.json");
    let o = export("1KiB", &out);
    assert_clean_error(
        &o,
        "more than the 1 KiB allowed (raise it with --max-output)",
    );
    assert!(
        stderr(&o).trim_end().ends_with("att.json"),
        "{}",
        stderr(&o)
    );
    // Refused before the forward pass: only that check knows no more than the least size.
    assert!(
        stderr(&o).contains("would take at least "),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // NPY's size is known exactly before the run: 6 tokens × 8 heads × … on the demo.
    let npy = dir.join("att.npy");
    let o = export("1KiB", &npy);
    assert_clean_error(&o, "would take about ");
    assert!(!npy.exists());
    let o = export("1MiB", &out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The estimate is close to what was written: 6 × 8 × 6² values.
    let written = std::fs::metadata(&out).unwrap().len();
    assert!(written > 10_000, "{written}");
}

/// The demo's weights count against the memory budget before anything is allocated, for every
/// command that builds it, `info` included (issue 20 item 14: 24 × 1024 needs 2.25 GiB).
#[test]
fn a_demo_too_large_for_the_budget_is_refused_before_it_is_built() {
    let dir = scratch("demo-budget");
    let out = dir.join("o.json");
    let big = ["--layers", "24", "--heads", "32", "--d-model", "1024"];
    let mut args = vec![
        "attribute",
        "--text",
        "the cat sat",
        "--method",
        "gradient",
        "--target",
        "similarity",
        "--text-b",
        "a dog",
        "--memory-budget",
        "1GiB",
        "--out",
        p(&out),
    ];
    args.extend(big);
    let o = run(&args);
    // 24 layers × 12 · 1024² values × 4 bytes, twice (weights and packed copy): 2.25 GiB.
    assert_clean_error(&o, "the demo model at 24 layers × d_model 1024 needs 2.");
    assert!(
        stderr(&o).contains("GiB for its weights; the memory budget is 1 GiB (--memory-budget)"),
        "{}",
        stderr(&o)
    );
    // `info` has no budget flag: the default one (half of `ulimit -v` here) refuses it too.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 4194304; exec '{}' info {}",
            env!("CARGO_BIN_EXE_attnviz"),
            big.join(" ")
        ))
        .output()
        .unwrap();
    assert_clean_error(&o, "GiB for its weights; the memory budget is 2 GiB");
}
