//! The relay's housekeeping on the mailbox tree, and the `/new` CGI:
//!
//! - [`expire`]: the daily expiry of old mail, large mail, inactive accounts and mail above
//!   70 % of the quota (DESIGN.md, "Expiry"; chatmaild's `expire.py`);
//! - [`quota_expire`]: the quota step alone for one mailbox, run by Dovecot's
//!   `quota_warning` (chatmaild's `quota_expire_main`);
//! - [`report`]: storage and login statistics, as text and as Prometheus metrics
//!   (chatmaild's `fsreport.py`);
//! - [`newemail_cgi`]: fresh credentials for `https://DOMAIN/new` (chatmaild's
//!   `newemail.py`);
//! - [`bench::synthetic_tree`]: large synthetic trees for benchmarks.
//!
//! The tree is the one described in DESIGN.md, "Compatibility contract": one directory per
//! address under `mailboxes_dir`, whose `password` mtime is the last-login day, holding a
//! Dovecot Maildir. All walks are single-pass, parallel across mailboxes, never follow
//! symlinks and never leave `mailboxes_dir`; files that vanish meanwhile are not errors.

pub mod bench;
mod expire;
mod newemail;
mod quota;
mod report;
mod scan;

use std::io;
use std::path::PathBuf;

pub use expire::{
    ExpireOptions, ExpireSummary, LARGE_MESSAGE_BYTES, QUOTA_CLEANUP_PERCENT, expire,
};
pub use newemail::{dclogin_url, needs_dclogin, newemail_cgi, percent_encode};
pub use quota::{MAILDIRSIZE_FILE, QuotaSummary, quota_expire};
pub use report::{
    LOGIN_BUCKET_DAYS, LoginBucket, Report, SIZE_BUCKET_BYTES, SizeBucket, TEXTFILE_NAME, report,
    write_textfile,
};

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
