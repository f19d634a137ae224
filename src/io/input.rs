//! Token inputs: `.txt` files and the three `.json` shapes, and recognising the other JSON
//! files (attention, session) by their `format` field.

use super::{json_reason, read_bytes};
use crate::fs::IoError;
use crate::tokenize::TokenInput;
use std::path::Path;

/// What a file given on the command line or dropped on the app turned out to be.
#[derive(Clone, Debug)]
pub enum InputFile {
    /// A token input (`.txt`, or JSON without a `format` field).
    Input(TokenInput),
    /// An attention file (`attnviz.attention/v1`).
    Attention(Box<super::AttentionFile>),
    /// A session file (`attnviz.session/v1`), as raw JSON for the app to interpret.
    Session(serde_json::Value),
    /// A lesson (`attnviz.lesson/v1`), recognised by the `format` field of the parsed JSON
    /// wherever it stands; the app opens it with `render::teach::lesson::load_lesson`.
    Lesson,
}

/// Loads a token input, an attention file (JSON; NPY, NPZ or safetensors with their tokens) or a
/// session file.
pub fn load_input(path: &Path) -> Result<InputFile, IoError> {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    // Tensors saved by NumPy or PyTorch: the maps, and tokens from a sidecar.
    let tensors = match extension.as_deref() {
        Some("npy") => Some(super::read_npy(path)?),
        Some("safetensors") => Some(super::read_safetensors_attention(path)?),
        Some("npz") => Some(super::read_npz(path)?),
        _ => None,
    };
    if let Some((maps, tokens, warnings)) = tensors {
        let [layers, heads, _, _] = maps.shape();
        let name = path
            .file_stem()
            .map_or("attention".to_owned(), |s| s.to_string_lossy().into_owned());
        return Ok(InputFile::Attention(Box::new(super::AttentionFile {
            model: super::ModelMeta {
                name,
                architecture: "unknown".to_owned(),
                layers,
                heads,
                kv_heads: heads,
                d_model: 0,
            },
            tokens,
            token_ids: Vec::new(),
            mask: crate::engine::AppliedMask::default(),
            ablations: Vec::new(),
            maps,
            warnings,
        })));
    }
    let bytes = read_bytes(path)?;
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if !is_json {
        let text = String::from_utf8(bytes).map_err(|e| {
            IoError::invalid(
                path,
                format!(
                    "not UTF-8 text (bad byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        return Ok(InputFile::Input(TokenInput::Text(text)));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| IoError::invalid(path, json_reason(&e)))?;
    let Some(object) = value.as_object() else {
        return Err(IoError::invalid(
            path,
            "expected a JSON object with \"text\", \"tokens\" or \"token_ids\"",
        ));
    };
    if let Some(format) = object.get("format") {
        return match format.as_str() {
            Some(super::ATTENTION_FORMAT) => Ok(InputFile::Attention(Box::new(
                super::attention_json::from_value(path, value)?,
            ))),
            Some(super::SESSION_FORMAT) => Ok(InputFile::Session(value)),
            // A lesson is never read as tokens: it opens in the app (`attnviz LESSON.json`).
            Some(super::LESSON_FORMAT) => Ok(InputFile::Lesson),
            _ => Err(IoError::invalid(
                path,
                format!(
                    "unknown format {format}; expected {:?} or {:?}",
                    super::ATTENTION_FORMAT,
                    super::SESSION_FORMAT
                ),
            )),
        };
    }
    let shape_error = || {
        IoError::invalid(
            path,
            "expected {\"text\": \"...\"}, {\"tokens\": [\"...\"]} or {\"token_ids\": [1, 2]}",
        )
    };
    if let Some(text) = object.get("text") {
        let text = text.as_str().ok_or_else(shape_error)?;
        return Ok(InputFile::Input(TokenInput::Text(text.to_owned())));
    }
    if let Some(tokens) = object.get("tokens") {
        let tokens = tokens
            .as_array()
            .ok_or_else(shape_error)?
            .iter()
            .map(|t| t.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| IoError::invalid(path, "\"tokens\" must be a list of strings"))?;
        return Ok(InputFile::Input(TokenInput::Tokens(tokens)));
    }
    if let Some(ids) = object.get("token_ids") {
        let ids = ids
            .as_array()
            .ok_or_else(shape_error)?
            .iter()
            .map(|t| t.as_u64().and_then(|v| u32::try_from(v).ok()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                IoError::invalid(path, "\"token_ids\" must be a list of integers in 0..2^32")
            })?;
        return Ok(InputFile::Input(TokenInput::Ids(ids)));
    }
    Err(shape_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, content: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn reads_every_token_shape_and_rejects_bad_ones() {
        let dir = std::env::temp_dir().join(format!("attnviz-input-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let txt = write(&dir, "a.txt", "hello world");
        assert!(
            matches!(load_input(&txt).unwrap(), InputFile::Input(TokenInput::Text(t)) if t == "hello world")
        );
        let j = write(&dir, "b.json", r#"{"tokens": ["a", "b"]}"#);
        assert!(
            matches!(load_input(&j).unwrap(), InputFile::Input(TokenInput::Tokens(t)) if t == ["a", "b"])
        );
        let j = write(&dir, "c.json", r#"{"token_ids": [1, 2, 3]}"#);
        assert!(
            matches!(load_input(&j).unwrap(), InputFile::Input(TokenInput::Ids(t)) if t == [1, 2, 3])
        );
        let j = write(&dir, "d.json", r#"{"text": "hi"}"#);
        assert!(matches!(
            load_input(&j).unwrap(),
            InputFile::Input(TokenInput::Text(_))
        ));

        let bad = write(&dir, "bad.json", "{\"text\": ");
        let msg = load_input(&bad).unwrap_err().to_string();
        assert!(
            msg.starts_with("malformed JSON") && msg.ends_with("bad.json"),
            "{msg}"
        );
        let bad = write(&dir, "ids.json", r#"{"token_ids": [-1]}"#);
        assert!(
            load_input(&bad)
                .unwrap_err()
                .to_string()
                .contains("token_ids")
        );
        let bad = write(&dir, "fmt.json", r#"{"format": "other/v9"}"#);
        assert!(
            load_input(&bad)
                .unwrap_err()
                .to_string()
                .contains("unknown format")
        );
        let missing = dir.join("missing.txt");
        assert!(
            load_input(&missing)
                .unwrap_err()
                .to_string()
                .ends_with(&format!("while reading {}", missing.display()))
        );
        std::fs::write(dir.join("bin.txt"), [0xff, 0xfe]).unwrap();
        assert!(
            load_input(&dir.join("bin.txt"))
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
