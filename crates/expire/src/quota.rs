//! Oldest-first removal down to a size target: the last step of the daily expiry and all of
//! `chatmail quota-expire`, which Dovecot's `quota_warning` runs at 75 % of the quota
//! (docs/design.md, "Expiry").
//!
//! Reads the messages in `cur/` and `new/` of the mailbox and of its Maildir++ folders
//! (`.Name/cur`, `.Name/new`), orders them by the arrival time in their Dovecot file name
//! (`<unix time>.<unique>,S=<size>...`) and counts the `S=` size, falling back to the
//! file's mtime and length for other names. Deletes message files and, when any went,
//! `maildirsize`, so that Dovecot recalculates the quota instead of trusting stale sums.
//! Mail that arrived within the last 24 hours is never deleted: a mailbox filling that fast
//! has a problem its owner's devices should notice through the quota-full error.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::ExpireError;
use crate::scan::{self, DAY, Message, Sub};

/// Name of Dovecot's cached quota sums in a Maildir.
pub const MAILDIRSIZE_FILE: &str = "maildirsize";

/// A message that counts towards the quota and may be removed to meet it.
pub(crate) struct Candidate<'a> {
    /// Index into the scan's message list.
    pub index: usize,
    pub time: u64,
    pub size: u64,
    path: &'a Path,
}

/// The messages of `messages` (selected by `eligible`) that count towards the quota: those in
/// `cur/` and `new/`, with their file-name time and size.
pub(crate) fn candidates<'a>(
    messages: &'a [Message],
    mut eligible: impl FnMut(usize) -> bool,
) -> Vec<Candidate<'a>> {
    messages
        .iter()
        .enumerate()
        .filter(|&(i, m)| matches!(m.sub, Sub::Cur | Sub::New) && eligible(i))
        .map(|(index, m)| {
            let (time, size) = m.name_time_and_size();
            Candidate {
                index,
                time,
                size,
                path: &m.path,
            }
        })
        .collect()
}

/// Sorts `candidates` oldest first (ties by size, then path, as chatmaild sorts its
/// tuples) and returns how many from the front must go to bring their total down to
/// `target` bytes, stopping at the first one that arrived after `now - 24 h`.
pub(crate) fn oldest_first(
    candidates: &mut [Candidate<'_>],
    target: u64,
    now: SystemTime,
) -> usize {
    candidates.sort_unstable_by(|a, b| (a.time, a.size, a.path).cmp(&(b.time, b.size, b.path)));
    let protect_after = scan::before(now, DAY);
    let mut total: u64 = candidates.iter().map(|c| c.size).sum();
    let mut count = 0;
    for c in candidates.iter() {
        if total <= target {
            break;
        }
        let arrived = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(c.time);
        if arrived > protect_after {
            break;
        }
        total -= c.size;
        count += 1;
    }
    count
}

/// Removes one file; `Ok(false)` when it was already gone.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `<mailbox>/maildirsize` if it is a regular file (never a symlink's target).
pub(crate) fn remove_maildirsize(mailbox_dir: &Path) -> io::Result<bool> {
    let path = mailbox_dir.join(MAILDIRSIZE_FILE);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => remove_if_exists(&path),
        Ok(_) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// What [`quota_expire`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaSummary {
    /// The mailbox directory.
    pub mailbox: PathBuf,
    /// The target, bytes.
    pub target_bytes: u64,
    /// Quota-counted bytes (`S=` sizes of `cur/` and `new/` messages) before.
    pub size_before: u64,
    /// The same after the removal; above the target only when the rest is younger than
    /// 24 hours.
    pub size_after: u64,
    /// Messages removed.
    pub removed: usize,
    /// Whether `maildirsize` was removed.
    pub maildirsize_removed: bool,
    /// Files that could not be removed, one line each (`path: error`).
    pub errors: Vec<String>,
}

impl fmt::Display for QuotaSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.mailbox.file_name().map_or_else(
            || crate::scan::shown(&self.mailbox),
            |n| n.to_string_lossy().into_owned(),
        );
        write!(
            f,
            "quota-expire: removed {} message(s) from {name} ({} -> {}, target {})",
            self.removed,
            scan::human_bytes(self.size_before),
            scan::human_bytes(self.size_after),
            scan::human_bytes(self.target_bytes),
        )?;
        if self.size_after > self.target_bytes {
            f.write_str("; the rest arrived within 24 hours and is kept")?;
        }
        if !self.errors.is_empty() {
            write!(f, "; {} error(s)", self.errors.len())?;
        }
        Ok(())
    }
}

/// Removes the oldest messages of the mailbox at `mailbox_dir` until the quota-counted size
/// is at most `target_bytes`, sparing mail that arrived within 24 hours of `now`; removes
/// `maildirsize` when anything was removed.
///
/// A mailbox that does not exist (deleted meanwhile) is not an error: nothing is removed.
///
/// # Errors
///
/// [`ExpireError::NotADirectory`] when `mailbox_dir` is a symlink or not a directory,
/// [`ExpireError::ReadDir`] when it cannot be read. Files that cannot be removed are
/// listed in [`QuotaSummary::errors`] instead.
pub fn quota_expire(
    mailbox_dir: &Path,
    target_bytes: u64,
    now: SystemTime,
) -> Result<QuotaSummary, ExpireError> {
    let mut summary = QuotaSummary {
        mailbox: mailbox_dir.to_owned(),
        target_bytes,
        size_before: 0,
        size_after: 0,
        removed: 0,
        maildirsize_removed: false,
        errors: Vec::new(),
    };
    let read_err = |source| ExpireError::ReadDir {
        path: mailbox_dir.to_owned(),
        source,
    };
    match fs::symlink_metadata(mailbox_dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ExpireError::NotADirectory {
                path: mailbox_dir.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(summary),
        Err(e) => return Err(read_err(e)),
    }
    let scan = scan::scan_mailbox(mailbox_dir).map_err(read_err)?;
    summary.errors = scan.errors;
    let mut candidates = candidates(&scan.messages, |_| true);
    summary.size_before = candidates.iter().map(|c| c.size).sum();
    summary.size_after = summary.size_before;
    let count = oldest_first(&mut candidates, target_bytes, now);
    for c in &candidates[..count] {
        let message = &scan.messages[c.index];
        match remove_if_exists(&message.path) {
            Ok(removed) => {
                summary.removed += usize::from(removed);
                // A file that vanished (expunged meanwhile) no longer counts either.
                summary.size_after -= c.size;
            }
            Err(e) => summary
                .errors
                .push(format!("{}: {e}", crate::scan::shown(&message.path))),
        }
    }
    if summary.removed > 0 {
        match remove_maildirsize(mailbox_dir) {
            Ok(removed) => summary.maildirsize_removed = removed,
            Err(e) => summary.errors.push(format!(
                "{}: {e}",
                crate::scan::shown(&mailbox_dir.join(MAILDIRSIZE_FILE))
            )),
        }
    }
    Ok(summary)
}
