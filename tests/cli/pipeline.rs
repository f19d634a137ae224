//! The pipeline through the real binary: token strings on a checkpoint, the recorded mask, and
//! tokenizer.json files that make the `tokenizers` crate panic.

use super::{assert_clean_error, copy_fixture, fixture_dir, run, scratch};
use std::path::Path;

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn checkpoint_token_strings_map_to_their_ids() {
    let dir = scratch("pipe-tokens");
    let golden = read_json(&fixture_dir("bert").join("golden.json"));
    let input = dir.join("tokens.json");
    std::fs::write(
        &input,
        serde_json::json!({ "tokens": golden[0]["tokens"] }).to_string(),
    )
    .unwrap();
    let out = dir.join("out.json");
    let model = fixture_dir("bert");
    let o = run(&[
        "export",
        input.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", super::stderr(&o));
    let doc = read_json(&out);
    // The golden's ids are what transformers' tokenizer gave for these very strings.
    assert_eq!(doc["token_ids"], golden[0]["input_ids"]);
    assert_eq!(doc["tokens"], golden[0]["tokens"]);

    // The first string outside the vocabulary is named, with the file.
    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"tokens": ["[CLS]", "zzqq", "xxyy"]}"#).unwrap();
    let o = run(&[
        "export",
        bad.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "\"zzqq\" (position 1) is not in the vocabulary");
    assert!(super::stderr(&o).trim_end().ends_with("bad.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn exports_record_mistrals_sliding_window() {
    let dir = scratch("pipe-window");
    let out = dir.join("out.json");
    let model = fixture_dir("mistral");
    let export = |ids: &str| {
        let o = run(&[
            "export",
            "--ids",
            ids,
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", super::stderr(&o));
        read_json(&out)["mask"].as_str().unwrap().to_owned()
    };
    // sliding_window 6: 6 tokens all fit; at 7, query 6 loses key 0 (6 − 0 is not < 6).
    assert_eq!(export("1,2,3,4,5,6"), "causal");
    assert_eq!(export("1,2,3,4,5,6,7"), "causal+window:5");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn token_files_too_long_or_out_of_vocabulary_name_the_file() {
    let dir = scratch("pipe-limits");
    let model = fixture_dir("gpt2");
    let out = dir.join("out.json");
    // 70 ids against n_positions 64.
    let ids: Vec<u32> = (0..70).collect();
    let long = dir.join("long.json");
    std::fs::write(&long, serde_json::json!({ "token_ids": ids }).to_string()).unwrap();
    let o = run(&[
        "export",
        long.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "70 tokens exceed the model's limit of 64");
    assert!(super::stderr(&o).trim_end().ends_with("long.json"));
    let bad = dir.join("ids.json");
    std::fs::write(&bad, r#"{"token_ids": [1, 400]}"#).unwrap();
    let o = run(&[
        "export",
        bad.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "token id 400 (position 1) is outside the vocabulary");
    assert!(super::stderr(&o).trim_end().ends_with("ids.json"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Exports `--text` on a copy of the GPT-2 fixture whose tokenizer.json went through `edit`;
/// the run must fail with one clean line naming tokenizer.json exactly once.
fn assert_tokenizer_error(name: &str, edit: impl FnOnce(&Path)) {
    let dir = scratch(name);
    let model = copy_fixture("gpt2", &dir);
    let tokenizer = model.join("tokenizer.json");
    edit(&tokenizer);
    let out = dir.join("out.json");
    let o = run(&[
        "export",
        "--text",
        "hello world",
        "--model",
        model.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_clean_error(&o, "tokenizer.json");
    let err = super::stderr(&o);
    assert_eq!(
        err.matches("tokenizer.json").count(),
        1,
        "the path once: {err}"
    );
    assert!(!err.contains("internal error"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = read_json(path);
    f(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

#[test]
fn a_truncated_tokenizer_is_one_clean_error() {
    assert_tokenizer_error("pipe-tok-trunc", |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    });
}

#[test]
fn a_replace_normalizer_with_an_empty_pattern_is_one_clean_error() {
    assert_tokenizer_error("pipe-tok-replace", |p| {
        edit_json(p, |v| {
            v["normalizer"] = serde_json::json!({
                "type": "Replace", "pattern": {"String": ""}, "content": "x"
            });
        });
    });
}

#[test]
fn a_template_naming_an_undefined_special_token_is_one_clean_error() {
    assert_tokenizer_error("pipe-tok-template", |p| {
        edit_json(p, |v| {
            v["post_processor"] = serde_json::json!({
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": "<nope>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}
                ],
                "pair": [
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"Sequence": {"id": "B", "type_id": 1}}
                ],
                "special_tokens": {}
            });
        });
    });
}
