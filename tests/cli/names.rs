//! A checkpoint's name in `attnviz info` and in exports: its folder's (the parent's when the
//! folder is called `model`), or its config's `_name_or_path` where that names the model itself
//! (see `model::naming`).

use super::{bin, scratch};
use std::path::Path;

/// Copies the BERT fixture into `dir`, with `_name_or_path` set to `name` when given.
fn bert_copy(dir: &Path, name: Option<&str>) {
    std::fs::create_dir_all(dir).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert");
    for file in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(file), dir.join(file)).unwrap();
    }
    let text = std::fs::read_to_string(src.join("config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    if let Some(name) = name {
        config["_name_or_path"] = serde_json::Value::from(name);
    }
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
}

/// `attnviz info --json --model DIR`'s name.
fn info_name(dir: &Path) -> String {
    let out = bin()
        .args(["info", "--json", "--model"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    info["name"].as_str().unwrap().to_owned()
}

#[test]
fn checkpoint_names_come_from_the_config_or_the_folder() {
    let root = scratch("names");
    // The config names the model itself: its id agrees with the folder's name, or the folder's
    // name is generic.
    let with_name = root.join("bert-tiny/model");
    bert_copy(&with_name, Some("google/bert-tiny"));
    assert_eq!(info_name(&with_name), "google/bert-tiny");
    let snapshot = root.join("0123456789abcdef0123456789abcdef01234567");
    bert_copy(&snapshot, Some("google/bert-tiny"));
    assert_eq!(info_name(&snapshot), "google/bert-tiny");
    // The config names another model (what this one was fine-tuned from): the folder names
    // it, and the config's id is its base model.
    let tuned = root.join("my-sentiment-tuned");
    bert_copy(&tuned, Some("google/bert-tiny"));
    assert_eq!(info_name(&tuned), "my-sentiment-tuned");
    let out = bin()
        .args(["info", "--json", "--model"])
        .arg(&tuned)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["base_model"], "google/bert-tiny");

    let packaged = root.join("pkg_bert_tiny/model");
    bert_copy(&packaged, None);
    assert_eq!(info_name(&packaged), "pkg_bert_tiny");

    let plain = root.join("my-bert");
    bert_copy(&plain, None);
    assert_eq!(info_name(&plain), "my-bert");

    // The exported attention file's model meta carries the same name.
    let out = root.join("a.json");
    let status = bin()
        .args(["export", "--text", "hello world", "--model"])
        .arg(&packaged)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(file["model"]["name"], "pkg_bert_tiny", "{}", file["model"]);
    std::fs::remove_dir_all(&root).unwrap();
}
