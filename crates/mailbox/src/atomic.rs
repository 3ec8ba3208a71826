//! Whole-file replacement: readers see the old contents or the new, never a mix.
//!
//! docs/design.md ("Failure behaviour") requires every file to be written atomically; this is the
//! one place that does it: for `metadata.json` and the temp file behind a new `password`, and,
//! keeping a file's mode and owner, for the configuration files `chatmail setup` writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
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
    write_temp_then(path, contents, |_| Ok(()))
}

/// [`write_temp`], calling `before_sync` on the filled file before it is flushed (to set its
/// mode and owner).
fn write_temp_then(
    path: &Path,
    contents: &[u8],
    before_sync: impl FnOnce(&File) -> io::Result<()>,
) -> io::Result<PathBuf> {
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
    let written = file
        .write_all(contents)
        .and_then(|()| before_sync(&file))
        .and_then(|()| file.sync_all());
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
    rename_into_place(write_temp(path, contents)?, path)
}

/// Atomically replaces the configuration file `path` with `contents`, as [`write_atomic`]
/// does, so a crash leaves either the old or the new file and no reader (Postfix, Dovecot)
/// ever sees half of one.
///
/// Unlike [`write_atomic`], an existing file's mode and owner are kept (operators tighten
/// them, and key files must stay private); a new file gets `new_mode` and the owner of whoever
/// runs us. Missing parent directories are created.
///
/// # Errors
///
/// Any I/O error, including not being allowed to change the owner; the temp file is removed
/// and `path` is left as it was.
pub fn write_atomic_keeping_mode(path: &Path, contents: &[u8], new_mode: u32) -> io::Result<()> {
    fs::create_dir_all(parent_dir(path))?;
    let temp = write_temp_then(path, contents, |file| match fs::metadata(path) {
        Ok(meta) => {
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let (uid, gid) = (meta.uid(), meta.gid());
            let cur = file.metadata()?;
            if (cur.uid(), cur.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            file.set_permissions(fs::Permissions::from_mode(new_mode))
        }
        Err(e) => Err(e),
    })?;
    rename_into_place(temp, path)
}

/// Renames the synced `temp` over `path` and makes the rename durable; the temp file is removed
/// when the rename fails.
fn rename_into_place(temp: PathBuf, path: &Path) -> io::Result<()> {
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is only durable once the directory is synced too.
    sync_dir(parent_dir(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic_keeping_mode(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        let q = dir.path().join("sub/y");
        write_atomic_keeping_mode(&q, b"y", 0o600).unwrap();
        assert_eq!(fs::metadata(&q).unwrap().mode() & 0o777, 0o600);
    }
}
