//! Session files (`*.attnviz.json`, format `attnviz.session/v1`): the app's whole state as JSON.
//!
//! This module only frames the document (format tag, atomic write, clear errors); the app owns
//! what goes inside.

use super::{json_reason, read_bytes};
use crate::fs::{IoError, write_atomic};
use std::path::Path;

/// Writes `state` (a JSON object) as a session file, atomically, adding the format tag.
pub fn write_session(path: &Path, state: &serde_json::Value) -> Result<(), IoError> {
    let mut doc = serde_json::Map::new();
    doc.insert(
        "format".to_owned(),
        serde_json::Value::from(super::SESSION_FORMAT),
    );
    if let Some(fields) = state.as_object() {
        for (k, v) in fields {
            doc.insert(k.clone(), v.clone());
        }
    }
    write_atomic(path, |out| {
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        out.write_all(b"\n")
    })
}

/// Reads a session file and returns its fields (without the format tag).
pub fn read_session(path: &Path) -> Result<serde_json::Value, IoError> {
    let bytes = read_bytes(path)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| IoError::invalid(path, json_reason(&e)))?;
    session_fields(path, value)
}

/// Checks the format tag of an already parsed session document and strips it.
pub fn session_fields(
    path: &Path,
    mut value: serde_json::Value,
) -> Result<serde_json::Value, IoError> {
    let Some(doc) = value.as_object_mut() else {
        return Err(IoError::invalid(
            path,
            "a session file must hold a JSON object",
        ));
    };
    match doc.remove("format") {
        Some(f) if f == super::SESSION_FORMAT => Ok(value),
        Some(f) => Err(IoError::invalid(
            path,
            format!("format is {f}, expected {:?}", super::SESSION_FORMAT),
        )),
        None => Err(IoError::invalid(
            path,
            format!("no \"format\" field; expected {:?}", super::SESSION_FORMAT),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_format_check() {
        let dir = std::env::temp_dir().join(format!("attnviz-session-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.attnviz.json");
        write_session(&path, &serde_json::json!({"text": "hi", "layer_idx": 3})).unwrap();
        let back = read_session(&path).unwrap();
        assert_eq!(back, serde_json::json!({"text": "hi", "layer_idx": 3}));
        std::fs::write(&path, r#"{"format": "attnviz.attention/v1"}"#).unwrap();
        assert!(
            read_session(&path)
                .unwrap_err()
                .to_string()
                .contains("expected \"attnviz.session/v1\"")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
