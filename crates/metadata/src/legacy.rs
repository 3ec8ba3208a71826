//! One-time import of chatmaild's push queue.
//!
//! chatmaild keeps each pending notification as a file
//! `<mailboxes_dir>/pending_notifications/<uuid4 hex>` holding
//! `<addr>\n<start unix ts>\n<token>` (the token is the rest of the file),
//! written as `<name>.tmp` and renamed. A `.tmp` file is an unfinished write
//! and is deleted, as chatmaild does on start. Files that do not parse are
//! deleted with a warning, also as chatmaild does.

use std::fs;
use std::io;

use chatmail_mailbox::Store;

use crate::queue::{Queue, QueueError};

/// Name of chatmaild's queue directory under `mailboxes_dir`.
pub const LEGACY_QUEUE_DIR: &str = "pending_notifications";

/// Counts of one import.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// Notifications queued.
    pub queued: usize,
    /// Files removed without queuing (temp, malformed, coalesced).
    pub skipped: usize,
}

/// Why the import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Listing or removing files failed.
    #[error("legacy push queue: {0}")]
    Io(#[from] io::Error),
    /// Writing the queue failed; no file was removed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Parses one chatmaild queue file.
pub fn parse(text: &str) -> Option<(&str, i64, &str)> {
    let mut parts = text.splitn(3, '\n');
    let addr = parts.next()?;
    let start_ts = parts.next()?.trim().parse().ok()?;
    let token = parts.next()?;
    (!addr.is_empty() && !token.is_empty()).then_some((addr, start_ts, token))
}

/// Moves every notification in `<store root>/pending_notifications/` into
/// `queue` (in one transaction), then deletes the files and, when it is
/// empty, the directory. A missing directory is nothing to do.
///
/// # Errors
///
/// I/O errors listing the directory, or queue errors (then no file is
/// removed, so the next start tries again).
pub fn import(store: &Store, queue: &Queue, now: i64) -> Result<Imported, ImportError> {
    let dir = store.mailboxes_dir().join(LEGACY_QUEUE_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Imported::default()),
        Err(e) => return Err(e.into()),
    };
    let mut done = Imported::default();
    let mut remove = Vec::new();
    let tx = queue
        .conn()
        .unchecked_transaction()
        .map_err(QueueError::from)?;
    for entry in entries {
        let path = entry?.path();
        if !path.is_file() {
            continue;
        }
        let is_tmp = path.extension().is_some_and(|e| e == "tmp");
        let parsed = if is_tmp {
            None
        } else {
            fs::read(&path)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|text| {
                    let (addr, start_ts, token) = parse(&text)?;
                    store.mailbox(addr).ok()?;
                    Some((addr.to_owned(), start_ts, token.to_owned()))
                })
        };
        match parsed {
            Some((addr, start_ts, token)) => {
                if queue.enqueue(&addr, &token, start_ts, now)? {
                    done.queued += 1;
                } else {
                    done.skipped += 1;
                }
            }
            None => {
                tracing::warn!(file = %path.display(), "removing spurious legacy queue file");
                done.skipped += 1;
            }
        }
        remove.push(path);
    }
    tx.commit().map_err(QueueError::from)?;
    for path in remove {
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            return Err(e.into());
        }
    }
    // Only if empty: anything we did not understand stays for a human.
    let _ = fs::remove_dir(&dir);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_chatmaild_files() {
        assert_eq!(
            parse("a@example.org\n432\nopenpgp:x\ny "),
            Some(("a@example.org", 432, "openpgp:x\ny "))
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("a@example.org\nnope\ntok"), None);
        assert_eq!(parse("a@example.org\n432\n"), None);
        assert_eq!(parse("a@example.org\n432"), None);
    }
}
