//! `chatmail report`: storage and login statistics of the mailbox tree, as
//! text and as a Prometheus textfile (chatmaild's `fsreport.py`).
//!
//! It reads the tree with the same single-pass walk as expiry
//! ([`chatmail_expire::scan`]) and fails the same way ([`ExpireError`]); it
//! never writes to a mailbox. This crate must not depend on a daemon crate.

mod report;

use chatmail_expire::scan;

pub use chatmail_expire::ExpireError;
pub use report::{
    LOGIN_BUCKET_DAYS, LoginBucket, Report, SIZE_BUCKET_BYTES, SizeBucket, TEXTFILE_NAME, report,
    write_textfile,
};
