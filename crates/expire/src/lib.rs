//! The relay's expiry on the mailbox tree:
//!
//! - [`expire`]: the daily expiry of old mail, large mail, inactive accounts and mail above
//!   70 % of the quota (docs/design.md, "Expiry"; chatmaild's `expire.py`);
//! - [`quota_expire`]: the quota step alone for one mailbox, run by Dovecot's
//!   `quota_warning` (chatmaild's `quota_expire_main`);
//! - `synthetic::synthetic_tree` (feature `synthetic`): large synthetic trees for the
//!   benchmark and tests, never in the shipped binary.
//!
//! The tree is the one described in docs/design.md, "Compatibility contract": one directory per
//! address under `mailboxes_dir`, whose `password` mtime is the last-login day, holding a
//! Dovecot Maildir. All walks are single-pass, parallel across mailboxes, never follow
//! symlinks and never leave `mailboxes_dir`; files that vanish meanwhile are not errors.
//! The walk itself ([`scan`]) is shared with the storage report (the `chatmail-report`
//! crate). The `/new` CGI lives in `chatmail-web`.
//!
//! Owns expiry and the mailbox-tree walk the report shares; must not depend on
//! a daemon crate (docs/design.md, "Crates").

mod expire;
mod quota;
pub mod scan;
#[cfg(feature = "synthetic")]
pub mod synthetic;

use std::io;
use std::path::PathBuf;

pub use expire::{
    ExpireOptions, ExpireSummary, LARGE_MESSAGE_BYTES, QUOTA_CLEANUP_PERCENT, expire,
};
pub use quota::{MAILDIRSIZE_FILE, QuotaSummary, quota_expire};

/// Why a run could not be done (problems with single files are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum ExpireError {
    /// A directory that must be read (`mailboxes_dir`, or the mailbox given to
    /// [`quota_expire`]) could not be.
    #[error("cannot read {}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The mailbox given to [`quota_expire`] is a symlink or not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Writing the per-file lines failed; the run itself was completed.
    #[error("cannot write the output")]
    Output(#[source] io::Error),
}
