//! The post-delivery nudge that makes Dovecot's IMAP hibernation safe.
//!
//! Dovecot 2.3 tells an IDLE connection about new mail 500 ms after the
//! inotify event (`NOTIFY_DELAY_MSECS` in `lib-storage/mailbox-watch.c`).
//! When `imap_hibernate_timeout` hands the connection to `imap-hibernate`
//! inside that window, the pending event dies with the old `imap` process
//! and the watches `imap-hibernate` sets up afterwards never see it: the
//! client sleeps on a message it was never told about. Another change in
//! the watched directory after the hand-over wakes it, so some time after
//! every delivery we create and remove a dotfile in the user's
//! `<home>/new/` (Maildir sync skips names starting with a dot, so no client
//! ever sees the file). See docs/latency.md for the source reading and the
//! measurements behind [`DEFAULT_NUDGE_DELAY`].
//!
//! The shipped Lua script signals every delivery, including mail users send
//! to themselves: their other devices need the wake-up just the same.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatmail_mailbox::Store;

/// After a delivery, when to nudge: later than Dovecot's 500 ms notify
/// delay plus a hand-over (milliseconds), early enough that a swallowed
/// message still arrives well under a second after it was delivered.
pub const DEFAULT_NUDGE_DELAY: Duration = Duration::from_millis(600);

/// The dotfile created and removed in `new/`. One fixed name: when two
/// nudges meet, one file event is as good as two.
pub const NUDGE_FILE: &str = ".chatmail-nudge";

/// Schedules nudges of users' INBOX directories.
#[derive(Clone, Debug)]
pub struct Nudger {
    store: Store,
    delay: Duration,
}

impl Nudger {
    /// A nudger for the mailboxes of `store`, `delay` after each delivery.
    pub fn new(store: Store, delay: Duration) -> Nudger {
        Nudger { store, delay }
    }

    /// Nudges `user`'s INBOX after the delay, in the background.
    ///
    /// # Errors
    ///
    /// When `user` is not a valid address of this relay (nothing is
    /// scheduled). Failures of the nudge itself are logged when it runs.
    pub fn schedule(&self, user: &str) -> Result<(), chatmail_mailbox::AddressError> {
        let new_dir = self.store.mailbox(user)?.dir().join("new");
        let delay = self.delay;
        let user = user.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match tokio::task::spawn_blocking(move || nudge(&new_dir)).await {
                Ok(Ok(())) => tracing::debug!(addr = user, "inbox nudged"),
                // The account was deleted in the meantime: nobody to wake.
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {
                    tracing::debug!(addr = user, "no inbox to nudge")
                }
                Ok(Err(e)) => tracing::warn!(addr = user, "nudging the inbox failed: {e}"),
                Err(e) => tracing::error!(addr = user, "nudge task failed: {e}"),
            }
        });
        Ok(())
    }
}

/// Creates and removes [`NUDGE_FILE`] in `new_dir`: two inotify events
/// (`IN_CREATE`, `IN_DELETE`) for whoever watches it, no lasting change.
///
/// # Errors
///
/// When the file cannot be created (`NotFound`: no such directory) or
/// removed.
pub fn nudge(new_dir: &Path) -> io::Result<()> {
    let path: PathBuf = new_dir.join(NUDGE_FILE);
    match OpenOptions::new().write(true).create_new(true).open(&path) {
        Ok(file) => drop(file),
        // Another nudge is between its create and remove, or a crash left
        // the file: removing it is an event all the same, and must happen
        // so that later nudges are not all turned into this case.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    chatmail_metrics::metadata().nudged();
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nudge_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        nudge(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn nudge_without_a_directory_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = nudge(&dir.path().join("new")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_leftover_file_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(NUDGE_FILE), b"").unwrap();
        nudge(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn invalid_users_are_refused_before_any_path_is_built() {
        let tmp = tempfile::tempdir().unwrap();
        let nudger = Nudger::new(Store::new(tmp.path(), "example.org"), DEFAULT_NUDGE_DELAY);
        for user in ["../x@example.org", "a/b@example.org", "x@other.org", ""] {
            assert!(nudger.schedule(user).is_err(), "{user}");
        }
    }
}
