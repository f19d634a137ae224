//! Files in and out: token inputs, attention tensors (JSON and NPY) and atomic writes.
//!
//! Every error names the file it is about, with the path last. Nothing here touches the UI.

mod attention_json;
mod attention_tensors;
mod format;
mod input;
pub mod lesson;
mod npy;
mod npz;
mod session;
mod write;

pub use attention_json::{
    AttentionFile, ModelMeta, estimate_attention_json_bytes, foreign_value_warnings,
    read_attention_json, write_attention_json,
};
pub use attention_tensors::{read_safetensors_attention, widen_le};
pub use format::OutputFormat;
pub use input::{InputFile, TokenInput, load_input};
pub use lesson::{LESSON_FORMAT, Lesson, LessonStep, LessonView, is_lesson_file, load_lesson};
pub use npy::{read_npy, sidecar_path, write_npy};
pub use npz::read_npz;
pub use session::{read_session, session_fields, write_session};
pub use write::{
    Staged, TEMP_PREFIX, commit_all, remove_live_temporaries, stage_atomic, write_atomic,
};

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
    /// The path is not a regular file (a device, a FIFO, a folder...).
    #[error("{kind} is not a readable file: {}", path.display())]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is larger than its format allows.
    #[error("file is larger than the {} this format allows: {}", human_bytes(*limit), path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
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

/// The most any small input file (token inputs, sessions) may hold: 64 MiB, far beyond any
/// model's position limit in text.
pub const MAX_SMALL_FILE: u64 = 64 << 20;
/// The most an attention JSON or NPY file may hold: 4 GiB. Parsing needs less memory than
/// the text (4 bytes per value against at least 2 characters), so the read bounds the peak.
pub const MAX_ATTENTION_FILE: u64 = 4 << 30;
/// The most a config.json may hold: 16 MiB.
pub const MAX_CONFIG_FILE: u64 = 16 << 20;

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

/// Opens `path` for reading if it is a regular file (after following symlinks), refusing
/// devices, FIFOs, sockets and folders before opening them (opening a FIFO would block).
/// Returns the file and its length.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64), IoError> {
    let read_err = |cause| IoError::Read {
        path: path.to_owned(),
        cause,
    };
    let not_regular = |meta: &std::fs::Metadata| IoError::NotRegular {
        path: path.to_owned(),
        kind: file_kind(meta),
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    let file = std::fs::File::open(path).map_err(read_err)?;
    // The path may have been swapped between the two calls: check what was opened.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((file, meta.len()))
}

/// Attention read from a file saved elsewhere (NPY, NPZ, safetensors): the maps, the token
/// texts, and warnings about values PyTorch's own output can carry (NaN, rows off 1).
pub type ImportedAttention = (crate::engine::AttentionMaps, Vec<String>, Vec<String>);

/// Maps `file` read-only (checkpoints and large attention files are mapped, not copied).
#[allow(unsafe_code)]
pub fn map_readonly(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: a map is only sound while nobody truncates or rewrites the file, which no
    // library can ensure; attnviz assumes that a checkpoint or attention file is not modified
    // while it is read. The map is read-only, every value is copied out into owned f32 arrays
    // while the file is read, and the map is dropped when the read ends, so the window in which
    // that assumption matters is the read itself. Lengths are taken from the map, so a file
    // truncated before mapping is a clean parse error, not a fault.
    unsafe { memmap2::Mmap::map(file) }
}

/// Reads a whole regular file of at most `max_bytes`, naming it in every error. Anything that
/// is not a regular file (after following symlinks: `/dev/zero`, a FIFO, a folder) is refused
/// before it is opened, and never more than `max_bytes + 1` bytes are read, whatever the file
/// claims its length is.
pub fn read_regular_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, IoError> {
    let (file, len) = open_regular(path)?;
    read_open(file, len, path, max_bytes)
}

/// Reads `file` (of claimed length `len`, opened from `path`) whole, refusing more than
/// `max_bytes`, however long it really is.
fn read_open(
    file: std::fs::File,
    len: u64,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<u8>, IoError> {
    use std::io::Read as _;
    let too_large = || IoError::TooLarge {
        path: path.to_owned(),
        limit: max_bytes,
    };
    if len > max_bytes {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|cause| IoError::Read {
            path: path.to_owned(),
            cause,
        })?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// What kind of file `meta` describes, for messages.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a named pipe";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// A byte count for messages: `4 GiB`, `64 MiB`, `512 bytes`.
pub(crate) fn human_bytes(n: u64) -> String {
    if n >= 1 << 30 && n.is_multiple_of(1 << 30) {
        format!("{} GiB", n >> 30)
    } else if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else {
        format!("{n} bytes")
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_regular_file_refuses_devices_and_oversized_files() {
        // Issue 10 item 8: `/dev/zero` used to be read until 4 GB.
        let err = read_regular_file(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a character device is not a readable file: /dev/zero"
        );
        let dir = std::env::temp_dir().join(format!("attnviz-readreg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = read_regular_file(&dir, 1 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                IoError::NotRegular {
                    kind: "a folder",
                    ..
                }
            ),
            "{err}"
        );
        let file = dir.join("f.txt");
        std::fs::write(&file, [7u8; 10]).unwrap();
        assert_eq!(read_regular_file(&file, 10).unwrap(), [7u8; 10]);
        let err = read_regular_file(&file, 9).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "file is larger than the 9 bytes this format allows: {}",
                file.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

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
