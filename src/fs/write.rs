//! The one writer for every output file (attention JSON, NPY and its sidecar, PNG, sessions).
//!
//! A file is written completely into a uniquely named temporary file, created exclusively in
//! the destination's folder (`.attnviz-tmp-<pid>-XXXXXX`, by the `tempfile` crate, so a symlink
//! or another run can never be followed or clobbered), flushed to disk, given the permissions
//! of the file it replaces, and only then renamed over the destination. Several files can be
//! staged and then committed together ([`commit_all`]): every failure before the renames
//! leaves all the old files untouched.
//!
//! Temporaries still being written are listed, so that the binary's SIGINT/SIGTERM handler can
//! remove them ([`remove_live_temporaries`]). Those left by a killed process (SIGKILL cannot be
//! handled) are removed by the next write into the same folder once their process is gone.

use super::IoError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The start of every temporary file's name; the process id and a random part follow.
pub const TEMP_PREFIX: &str = ".attnviz-tmp-";

/// Temporaries of this process that exist right now.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    // A panic while the lock was held cannot leave the list inconsistent: take it anyway.
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temporary file this process is writing. For signal handlers: call it, then
/// exit. Files already renamed into place are not touched.
pub fn remove_live_temporaries() {
    for path in live().drain(..) {
        let _ = std::fs::remove_file(path);
    }
}

/// A file written completely beside its destination, not yet renamed into place. Dropping it
/// removes the temporary file.
#[derive(Debug)]
pub struct Staged {
    /// `None` only once committed.
    tmp: Option<tempfile::NamedTempFile>,
    dest: PathBuf,
}

impl Staged {
    /// Renames the temporary file over the destination.
    pub fn commit(mut self) -> Result<(), IoError> {
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        let tmp_path = tmp.path().to_owned();
        let result = tmp.persist(&self.dest);
        forget_live(&tmp_path);
        result.map(drop).map_err(|e| IoError::Write {
            path: self.dest.clone(),
            cause: e.error,
        })
    }

    /// The destination.
    pub fn dest(&self) -> &Path {
        &self.dest
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // NamedTempFile removes the file itself when it drops, right after this.
        if let Some(tmp) = &self.tmp {
            forget_live(tmp.path());
        }
    }
}

fn forget_live(path: &Path) {
    live().retain(|p| p != path);
}

/// Writes `dest` atomically: see the module docs. `write` gets a buffered writer. Every error
/// names `dest`.
pub fn write_atomic(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), IoError> {
    stage_atomic(dest, write)?.commit()
}

/// Renames every staged file into place, in order. Nothing is renamed before all were written,
/// so the renames themselves are the only window in which some files are new and some old.
pub fn commit_all(staged: Vec<Staged>) -> Result<(), IoError> {
    for file in staged {
        file.commit()?;
    }
    Ok(())
}

/// Writes the contents of `dest` into a new temporary file beside it, flushed to disk and with
/// the permissions of the existing `dest` (a 0444 file stays 0444), ready to [`Staged::commit`].
pub fn stage_atomic(
    dest: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Staged, IoError> {
    let err = |cause| IoError::Write {
        path: dest.to_owned(),
        cause,
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if dest.file_name().is_none() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the output path has no file name",
        )));
    }
    remove_stale_temporaries(dir);
    let old_permissions = match std::fs::metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "the output path is a folder",
            )));
        }
        Ok(meta) => Some(meta.permissions()),
        Err(_) => None,
    };
    let prefix = format!("{TEMP_PREFIX}{}-", std::process::id());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        // The umask applies, as for any new file (tempfile's default would be 0600).
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    // Register before anything can be interrupted: hold the list while creating the file.
    let tmp = {
        let mut list = live();
        let tmp = builder
            .tempfile_in(dir)
            .map_err(|cause| err(creation_error(dir, cause)))?;
        list.push(tmp.path().to_owned());
        tmp
    };
    let file = tmp.as_file().try_clone();
    let staged = Staged {
        tmp: Some(tmp),
        dest: dest.to_owned(),
    };
    let result = (|| {
        let file = file?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &file);
        write(&mut out)?;
        out.flush()?;
        drop(out);
        if let Some(perms) = old_permissions {
            file.set_permissions(perms)?;
        }
        file.sync_all()
    })();
    // On error `staged` drops here and removes the temporary file.
    result.map_err(err)?;
    Ok(staged)
}

/// Why the temporary file could not be created in `dir`, naming the folder rather than the
/// temporary file: tempfile's errors end in " at path <the temporary file>", a name the user
/// never chose and that no longer exists.
fn creation_error(dir: &Path, cause: std::io::Error) -> std::io::Error {
    if let Err(missing) = std::fs::metadata(dir)
        && missing.kind() == std::io::ErrorKind::NotFound
    {
        return std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("the folder {} does not exist", dir.display()),
        );
    }
    let text = cause.to_string();
    match text.find(" at path ") {
        Some(at) => std::io::Error::new(cause.kind(), &text[..at]),
        None => cause,
    }
}

/// Removes temporaries in `dir` whose process is gone (killed by SIGKILL, a crash, power
/// loss). Only where process ids can be checked (Linux's /proc); best effort.
fn remove_stale_temporaries(dir: &Path) {
    let proc = Path::new("/proc/self");
    if !proc.exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TEMP_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != own && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("attnviz-write-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn failed_write_leaves_old_file_and_no_temporary() {
        let dir = scratch("fail");
        let dest = dir.join("att.json");
        std::fs::write(&dest, "old").unwrap();
        let err = write_atomic(&dest, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().ends_with("att.json"), "{err}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "old");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_folder_is_named_not_the_temporary_file() {
        let root = tempfile::tempdir().unwrap();
        let nope = root.path().join("nope");
        let dest = nope.join("x.json");
        let err = write_atomic(&dest, |out| out.write_all(b"{}"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "the folder {} does not exist while writing {}",
                nope.display(),
                dest.display()
            )
        );
        // A "folder" that is a file: the system's reason, still without the temporary name.
        let file = root.path().join("file.txt");
        std::fs::write(&file, "x").unwrap();
        let dest = file.join("x.json");
        let err = write_atomic(&dest, |out| out.write_all(b"{}"))
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains(TEMP_PREFIX)
                && err.ends_with(&format!("while writing {}", dest.display())),
            "{err}"
        );
    }

    #[test]
    fn symlink_at_a_temporary_name_is_never_followed() {
        // The old PNG writer used `<out>.tmp`: a symlink there redirected the write.
        let dir = scratch("symlink");
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&victim, dir.join("out.png.tmp")).unwrap();
        write_atomic(&dir.join("out.png"), |out| out.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(dir.join("out.png")).unwrap(), "new");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn read_only_destination_keeps_its_permissions() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = scratch("perm");
        let dest = dir.join("att.npy");
        std::fs::write(&dest, "old").unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o444)).unwrap();
        write_atomic(&dest, |out| out.write_all(b"new")).unwrap();
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "new");
        // A new file gets the usual 0666 & !umask, not tempfile's private 0600.
        let fresh = dir.join("fresh.json");
        write_atomic(&fresh, |out| out.write_all(b"x")).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode, 0o600, "mode {mode:o}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = scratch("stale");
        // pid 4294967295 cannot exist; our own pid's files are live.
        let dead = dir.join(format!("{TEMP_PREFIX}4294967295-abc123"));
        let ours = dir.join(format!("{TEMP_PREFIX}{}-abc123", std::process::id()));
        let other = dir.join("notes.txt");
        for p in [&dead, &ours, &other] {
            std::fs::write(p, "x").unwrap();
        }
        write_atomic(&dir.join("out.json"), |out| out.write_all(b"{}")).unwrap();
        if Path::new("/proc/self").exists() {
            assert!(!dead.exists());
        }
        assert!(ours.exists() && other.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn staged_files_change_nothing_until_committed() {
        let dir = scratch("pair");
        let a = dir.join("a.npy");
        let b = dir.join("a.tokens.json");
        std::fs::write(&a, "old a").unwrap();
        std::fs::write(&b, "old b").unwrap();
        let sa = stage_atomic(&a, |out| out.write_all(b"new a")).unwrap();
        let tmp = sa.tmp.as_ref().unwrap().path().to_owned();
        assert!(live().contains(&tmp));
        // The second file fails: the first is dropped, both old files stay.
        let fail = stage_atomic(&b, |_| Err(std::io::Error::other("no space")));
        assert!(fail.is_err());
        drop(sa);
        assert!(!live().contains(&tmp) && !tmp.exists());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old a");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old b");
        assert!(leftovers(&dir).is_empty());
        let sa = stage_atomic(&a, |out| out.write_all(b"new a")).unwrap();
        let sb = stage_atomic(&b, |out| out.write_all(b"new b")).unwrap();
        commit_all(vec![sa, sb]).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new b");
        assert!(leftovers(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
