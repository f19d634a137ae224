//! The ground floor: bounded readers of regular files, atomic writes, and the [`IoError`] they
//! return. Every module that reads or writes a file goes through here.
//!
//! It imports nothing from the rest of the crate, and knows no file format: what a file holds
//! is for the module that reads it (`tokenize`, `model`, `io`, `render`, ...).

mod write;

pub use write::{
    Staged, TEMP_PREFIX, commit_all, remove_live_temporaries, stage_atomic, write_atomic,
};

use std::path::{Path, PathBuf};

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
pub(crate) fn read_open(
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
}
