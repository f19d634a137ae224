//! Files in and out: token inputs, attention tensors (JSON and NPY) and atomic writes.
//!
//! Every error names the file it is about, with the path last. Nothing here touches the UI.

mod attention_json;
mod input;
mod npy;
mod session;

pub use attention_json::{AttentionFile, ModelMeta, read_attention_json, write_attention_json};
pub use input::{InputFile, TokenInput, load_input};
pub use npy::{read_npy, sidecar_path, write_npy};
pub use session::{read_session, session_fields, write_session};

use std::io::Write;
use std::path::{Path, PathBuf};

/// The format tag of attention JSON files.
pub const ATTENTION_FORMAT: &str = "attnviz.attention/v1";
/// The format tag of session files.
pub const SESSION_FORMAT: &str = "attnviz.session/v1";

/// Errors from reading or writing files.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The file could not be read.
    #[error("{cause} while reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file could not be written.
    #[error("{cause} while writing {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file's content is not what it should be.
    #[error("{reason} in {}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl IoError {
    pub(crate) fn invalid(path: &Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, IoError> {
    std::fs::read(path).map_err(|cause| IoError::Read {
        path: path.to_owned(),
        cause,
    })
}

/// Writes a file atomically: into a temporary file beside it, then renamed over it, so that a
/// crash never leaves half a file. `write` gets a buffered writer.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), IoError> {
    let err = |cause| IoError::Write {
        path: path.to_owned(),
        cause,
    };
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        write(&mut out)?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

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
