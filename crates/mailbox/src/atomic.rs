//! Whole-file replacement: readers see the old contents or the new, never a mix.
//!
//! docs/design.md ("Failure behaviour") requires every file to be written atomically; this is the
//! one place that does it, for `metadata.json` and for the temp file behind a new `password`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A name in `dir` that no other writer (thread or process) picks: dot-prefixed so that
/// directory scans for addresses and Maildir folders skip it.
pub(crate) fn unique_temp_path(dir: &Path, base: &str) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let random = getrandom::u64().map_err(|e| io::Error::other(e.to_string()))?;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    Ok(dir.join(format!(
        ".{base}.{}.{count}.{random:016x}.tmp",
        std::process::id()
    )))
}

/// Whether `name` is a temp file of [`unique_temp_path`] for a file named `base`.
pub(crate) fn is_temp_name_for(name: &str, base: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(base))
        .is_some_and(|rest| rest.starts_with('.') && rest.ends_with(".tmp"))
}

/// Creates a fresh temp file next to `path`, fills it with `contents` and flushes it to disk.
/// The file is removed again if anything fails.
pub(crate) fn write_temp(path: &Path, contents: &[u8]) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let dir = parent_dir(path);
    let temp = unique_temp_path(dir, name)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Makes a rename or link in `dir` survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Atomically replaces `path` with `contents`: writes a uniquely named temp file in the same
/// directory (mode 0600), fsyncs it, renames it over `path`, and fsyncs the directory.
///
/// # Errors
///
/// Any I/O error; the temp file is removed and `path` is left as it was. The directory
/// must exist (it is not created, so a mailbox deleted meanwhile stays deleted).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let temp = write_temp(path, contents)?;
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(parent_dir(path))
}
