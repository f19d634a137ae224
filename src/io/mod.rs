//! File formats: token inputs, attention tensors (JSON, NPY, NPZ, safetensors) and sessions.
//!
//! Reading and writing bytes is the ground floor's ([`crate::fs`]): bounded readers, atomic
//! writes and [`IoError`], re-exported here for the callers that know them by this path.
//!
//! Every error names the file it is about, with the path last. Nothing here touches the UI.

mod attention_json;
mod attention_tensors;
mod format;
mod input;
mod npy;
mod npz;
mod session;

pub use crate::fs::{IoError, write_atomic};
pub use crate::tokenize::TokenInput;
pub use attention_json::{
    AttentionFile, ModelMeta, estimate_attention_json_bytes, foreign_value_warnings,
    least_attention_json_bytes, read_attention_json, write_attention_json,
};
pub use attention_tensors::read_safetensors_attention;
pub use format::OutputFormat;
pub use input::{InputFile, load_input};
pub use npy::{read_npy, sidecar_path, write_npy};
pub use npz::read_npz;
pub use session::{read_session, session_fields, write_session};

use crate::fs::{open_regular, read_open};
use std::path::Path;

/// The format tag of attention JSON files.
pub const ATTENTION_FORMAT: &str = "attnviz.attention/v1";
/// The format tag of lesson files (`render::teach::lesson` reads them; `load_input` refuses
/// them as token inputs).
pub const LESSON_FORMAT: &str = "attnviz.lesson/v1";
/// The format tag of session files.
pub const SESSION_FORMAT: &str = "attnviz.session/v1";

/// The most any small input file (token inputs, sessions) may hold: 64 MiB, far beyond any
/// model's position limit in text.
pub const MAX_SMALL_FILE: u64 = 64 << 20;
/// The most an attention JSON or NPY file may hold: 4 GiB. Parsing needs less memory than
/// the text (4 bytes per value against at least 2 characters), so the read bounds the peak.
pub const MAX_ATTENTION_FILE: u64 = 4 << 30;

/// How far into a large `.json` input [`read_bytes`] looks for the attention format tag.
const FORMAT_SNIFF_BYTES: u64 = 64 << 10;

/// Reads a whole input file (regular files only), naming it in the error, with the limit of
/// the format it turns out to be: [`MAX_SMALL_FILE`] for text, token JSON and sessions; up to
/// [`MAX_ATTENTION_FILE`] only for a `.json` whose first 64 KiB name the attention format
/// (`attnviz.attention/v1`; attnviz writes it first). A 3 GB `{"text": …}` is refused before
/// it is read, not after.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, IoError> {
    use std::io::{Read as _, Seek as _};
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let (mut file, len) = open_regular(path)?;
    let read_err = |cause| IoError::Read {
        path: path.to_owned(),
        cause,
    };
    let mut limit = MAX_SMALL_FILE;
    if is_json && len > MAX_SMALL_FILE {
        let mut head = Vec::new();
        (&mut file)
            .take(FORMAT_SNIFF_BYTES)
            .read_to_end(&mut head)
            .map_err(read_err)?;
        let tag = format!("\"{ATTENTION_FORMAT}\"");
        if head.windows(tag.len()).any(|w| w == tag.as_bytes()) {
            limit = MAX_ATTENTION_FILE;
        }
        file.rewind().map_err(read_err)?;
    }
    read_open(file, len, path, limit)
}

/// Attention read from a file saved elsewhere (NPY, NPZ, safetensors): the maps, the token
/// texts, and warnings about values PyTorch's own output can carry (NaN, rows off 1).
pub type ImportedAttention = (crate::engine::AttentionMaps, Vec<String>, Vec<String>);

/// A one-line description of a serde_json error, with its position.
pub(crate) fn json_reason(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "malformed JSON",
        serde_json::error::Category::Data => "unexpected JSON content",
        serde_json::error::Category::Io => "unreadable JSON",
    };
    // serde_json's message ends with " at line L column C"; keep it, it helps.
    format!("{what}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_json_is_read_only_when_it_names_the_attention_format() {
        // Sparse files of 64 MiB + 1 byte: over the small-file limit, cheap to make.
        let dir = std::env::temp_dir().join(format!("attnviz-sniff-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let make = |name: &str, head: &str| {
            let path = dir.join(name);
            std::fs::write(&path, head).unwrap();
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(MAX_SMALL_FILE + 1).unwrap();
            path
        };
        let tokens = make("tokens.json", r#"{"text": ""#);
        let err = read_bytes(&tokens).unwrap_err().to_string();
        assert!(err.starts_with("file is larger than the 64 MiB"), "{err}");
        let att = make("att.json", r#"{"format":"attnviz.attention/v1","shape":"#);
        assert_eq!(read_bytes(&att).unwrap().len() as u64, MAX_SMALL_FILE + 1);
        // The same bytes as .txt are text: 64 MiB at most, whatever they say.
        let txt = make("att.txt", r#"{"format":"attnviz.attention/v1""#);
        assert!(read_bytes(&txt).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
