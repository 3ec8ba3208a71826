//! Why `chatmail setup` stopped, and the helpers that turn an I/O failure
//! into that error with the file it concerns.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why `setup` stopped. Files already written stay written (each one is
/// complete); running `setup` again continues.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The domain cannot be a relay's `mail_domain`.
    #[error("{domain:?} is not a usable mail domain: {reason}")]
    BadDomain {
        /// As given.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The existing `chatmail.ini` is for another domain.
    #[error(
        "{path} has mail_domain = {configured}, not {requested}; \
         edit it or pass --domain {configured}"
    )]
    DomainMismatch {
        /// The config file.
        path: PathBuf,
        /// Its `mail_domain`.
        configured: String,
        /// `--domain`.
        requested: String,
    },
    /// The existing `chatmail.ini` cannot be used.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        source: chatmail_config::ConfigError,
    },
    /// A stock config file we merge into is missing.
    #[error("{path} not found; install the package first: apt-get install {package}")]
    NotInstalled {
        /// The missing file.
        path: PathBuf,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// "reading", "writing", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An external command (`openssl`, `systemctl`) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr, or why it could not start.
        detail: String,
    },
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SetupError {
    let path = path.to_owned();
    move |source| SetupError::Io { what, path, source }
}

/// Writes one line of progress to `out`.
pub(crate) fn wln(out: &mut dyn Write, args: fmt::Arguments<'_>) -> Result<(), SetupError> {
    writeln!(out, "{args}").map_err(io_err("printing", Path::new("-")))
}
