//! The per-address directories under `mailboxes_dir`, laid out exactly as chatmaild leaves
//! them (see docs/design.md, "Compatibility contract"), so a relay can switch between chatmaild and
//! these helpers without migrating data.
//!
//! For an address `<addr>` the directory `<mailboxes_dir>/<addr>/` holds:
//!
//! - `password`: the Dovecot hash, one line `{SHA512-CRYPT}$6$...` written without a trailing
//!   newline (as chatmaild writes it); its mtime is the day of the last login (unix seconds,
//!   a multiple of 86400);
//! - `enforceE2EEincoming`: empty; present means incoming cleartext is refused; created with
//!   the account, removed by users who opt out;
//! - `metadata.json`: IMAP METADATA values, see [`Metadata`];
//! - Dovecot's Maildir (`cur/`, `new/`, `tmp/`, `maildirsize`, `dovecot*`), not touched here.
//!
//! This crate reads and writes the first three; it never deletes anything. Daemons that read
//! `password` at login rates use a [`PasswordCache`], which `stat`s the file on every read.
//!
//! Builds on `config` only; every daemon builds on it, so it must not depend on
//! any of them (docs/design.md, "Crates").

mod atomic;
pub mod cache;
mod disabled;
mod metadata;

use std::fs::{self, DirBuilder, File, FileTimes, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub use atomic::{write_atomic, write_atomic_keeping_mode};
pub use cache::PasswordCache;
pub use disabled::DISABLED_FILE;
pub use metadata::Metadata;

/// File holding the password hash; its mtime is the last-login day.
pub const PASSWORD_FILE: &str = "password";
/// Marker file: present = refuse incoming cleartext.
pub const ENFORCE_E2EE_FILE: &str = "enforceE2EEincoming";
/// IMAP METADATA store.
pub const METADATA_FILE: &str = "metadata.json";

/// Whether `name`, in a mailbox directory, is a temp file of this crate's atomic writes
/// (of `password` or `metadata.json`). One older than [`STALE_TEMP_AGE`] is a leftover
/// of a writer that crashed: writers keep theirs for milliseconds.
pub fn is_temp_file_name(name: &str) -> bool {
    [PASSWORD_FILE, METADATA_FILE]
        .iter()
        .any(|base| atomic::is_temp_name_for(name, base))
}

/// Age from which a temp file (see [`is_temp_file_name`]) is a leftover to remove.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// Largest `password` file read; a hash is about 120 bytes.
pub const MAX_PASSWORD_FILE_BYTES: u64 = 4096;

/// Largest `metadata.json` read. A user keeps at most 16 tokens of at most
/// 4 KiB (64 KiB of tokens); anything near this bound was not written by us.
pub const MAX_METADATA_BYTES: u64 = 1 << 20;

/// Longest address accepted (RFC 5321 path limit minus the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

const DAY: u64 = 86_400;

/// Why a string cannot name a mailbox of this relay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The address is empty.
    #[error("address is empty")]
    Empty,
    /// More than [`MAX_ADDRESS_LEN`] bytes.
    #[error("address is longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
    /// `/`, NUL or another control character, which would escape the directory or break the
    /// line-based protocols that carry addresses.
    #[error("address contains the forbidden character {0:?}")]
    ForbiddenChar(char),
    /// Starts with `.`: would be a hidden (or `.`/`..`) directory.
    #[error("address starts with '.'")]
    LeadingDot,
    /// Contains `..`.
    #[error("address contains \"..\"")]
    DotDot,
    /// No `@`.
    #[error("address has no '@'")]
    NoAt,
    /// More than one `@`.
    #[error("address has more than one '@'")]
    SeveralAt,
    /// Nothing before the `@`.
    #[error("address has an empty localpart")]
    EmptyLocalpart,
    /// The domain is not this relay's (compared exactly, as chatmaild does).
    #[error("address is not in domain {expected:?}")]
    OtherDomain {
        /// This relay's address domain.
        expected: String,
    },
}

/// The tree of mailboxes of one relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    mailboxes_dir: PathBuf,
    domain: String,
}

impl Store {
    /// A store rooted at `mailboxes_dir` for addresses `...@<address_domain>` (for an IPv4
    /// relay the domain is `[a.b.c.d]`).
    pub fn new(mailboxes_dir: impl Into<PathBuf>, address_domain: impl Into<String>) -> Store {
        Store {
            mailboxes_dir: mailboxes_dir.into(),
            domain: address_domain.into(),
        }
    }

    /// The store described by `config` (`mailboxes_dir` and [`Config::address_domain`]).
    ///
    /// [`Config::address_domain`]: chatmail_config::Config::address_domain
    pub fn from_config(config: &chatmail_config::Config) -> Store {
        Store::new(config.mailboxes_dir.clone(), config.address_domain())
    }

    /// The root directory.
    pub fn mailboxes_dir(&self) -> &Path {
        &self.mailboxes_dir
    }

    /// The domain part every address must have.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Checks that `addr` is a safe name for an address of this relay and returns its handle.
    /// Never touches the disk.
    ///
    /// # Errors
    ///
    /// An [`AddressError`] saying what is wrong. chatmaild only refuses empty addresses,
    /// addresses without `@` and addresses with `/`; the extra checks refuse names that
    /// could not have been created by a client (random lowercase localparts) but could
    /// reach outside the tree or into hidden files.
    pub fn mailbox(&self, addr: &str) -> Result<Mailbox, AddressError> {
        if addr.is_empty() {
            return Err(AddressError::Empty);
        }
        if addr.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if let Some(c) = addr.chars().find(|&c| c == '/' || c.is_control()) {
            return Err(AddressError::ForbiddenChar(c));
        }
        if addr.starts_with('.') {
            return Err(AddressError::LeadingDot);
        }
        if addr.contains("..") {
            return Err(AddressError::DotDot);
        }
        let (localpart, domain) = addr.split_once('@').ok_or(AddressError::NoAt)?;
        if domain.contains('@') {
            return Err(AddressError::SeveralAt);
        }
        if localpart.is_empty() {
            return Err(AddressError::EmptyLocalpart);
        }
        if domain != self.domain {
            return Err(AddressError::OtherDomain {
                expected: self.domain.clone(),
            });
        }
        Ok(Mailbox {
            addr: addr.to_owned(),
            dir: self.mailboxes_dir.join(addr),
        })
    }

    /// The addresses that have a directory here (for Dovecot userdb iteration), sorted.
    /// Anything that is not a directory named like a valid address of this domain
    /// (`pending_notifications`, temp files, symlinks, foreign domains) is skipped.
    ///
    /// # Errors
    ///
    /// An I/O error reading `mailboxes_dir` (including `NotFound` when it does not exist).
    pub fn addresses(&self) -> io::Result<Vec<String>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.mailboxes_dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if self.mailbox(&name).is_err() {
                continue;
            }
            if entry.file_type()?.is_dir() {
                found.push(name);
            }
        }
        found.sort();
        Ok(found)
    }
}

/// Result of [`Mailbox::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// This call created the account.
    New,
    /// The account already existed (possibly created a moment ago by a concurrent call);
    /// this is its stored hash, trimmed. Empty when the stored file is empty.
    Existing(String),
}

/// One address's directory. Obtained from [`Store::mailbox`], so the address is validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    addr: String,
    dir: PathBuf,
}

impl Mailbox {
    /// The address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `<mailboxes_dir>/<addr>`, Dovecot's home for the user.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/password`.
    pub fn password_path(&self) -> PathBuf {
        self.dir.join(PASSWORD_FILE)
    }

    /// `<dir>/enforceE2EEincoming`.
    pub fn enforce_e2ee_path(&self) -> PathBuf {
        self.dir.join(ENFORCE_E2EE_FILE)
    }

    /// `<dir>/metadata.json`.
    pub fn metadata_path(&self) -> PathBuf {
        self.dir.join(METADATA_FILE)
    }

    /// The stored password hash, trimmed; `None` when there is no account.
    ///
    /// An empty `password` file also gives `None`, as in chatmaild (which logs "password is
    /// empty" and treats the user as unknown); [`Mailbox::create`] will not overwrite it, so
    /// such an address stays blocked.
    ///
    /// # Errors
    ///
    /// I/O errors other than `NotFound`; `InvalidData` when the file is not UTF-8, is a
    /// symlink, is not a regular file or holds more than [`MAX_PASSWORD_FILE_BYTES`].
    pub fn password_hash(&self) -> io::Result<Option<String>> {
        match read_password_file(&self.password_path()) {
            Ok((_, text)) => Ok(stored_hash(&text).map(str::to_owned)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates the account with `hash` unless it exists; the first creator wins and an
    /// existing `password` is never overwritten.
    ///
    /// Creates the directory (mode 0700, with parents) and `enforceE2EEincoming`, writes
    /// the hash to a unique temp file and hard-links it to `password`: the link either
    /// creates `password` complete or fails because another creator got there first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` when `hash` is empty or not a single line; any I/O error. A temp file
    /// is never left behind.
    pub fn create(&self, hash: &str) -> io::Result<Created> {
        if hash.is_empty() || hash.contains(['\n', '\r', '\0']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a password hash is one non-empty line",
            ));
        }
        // An existing account's opt-out (removed enforceE2EEincoming) must not be undone.
        if let Some(existing) = self.read_password_raw()? {
            return Ok(Created::Existing(existing));
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        // Before the password, so that no account is ever visible without it.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.enforce_e2ee_path())?;
        let password = self.password_path();
        let temp = atomic::write_temp(&password, hash.as_bytes())?;
        let linked = fs::hard_link(&temp, &password);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {
                atomic::sync_dir(&self.dir)?;
                Ok(Created::New)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Existing(
                self.read_password_raw()?.unwrap_or_default(),
            )),
            Err(e) => Err(e),
        }
    }

    fn read_password_raw(&self) -> io::Result<Option<String>> {
        match read_password_file(&self.password_path()) {
            Ok((_, text)) => Ok(Some(text.trim().to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The last-login day (unix seconds at 00:00 UTC), from the mtime of `password`;
    /// `None` when there is no account.
    ///
    /// # Errors
    ///
    /// I/O errors other than `NotFound`.
    pub fn last_login(&self) -> io::Result<Option<u64>> {
        match fs::metadata(self.password_path()) {
            Ok(meta) => Ok(Some(u64::try_from(meta.mtime()).unwrap_or(0) / DAY * DAY)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records a login at `unix_ts`: sets the mtime and atime of `password` to the start of
    /// that day, but only when the whole-second mtime differs from it (as chatmaild does), so
    /// a file is touched at most once a day. Returns whether anything changed; `false` when
    /// there is no account.
    ///
    /// # Errors
    ///
    /// I/O errors other than `NotFound`; `InvalidInput` for a time the system
    /// cannot represent.
    pub fn set_last_login(&self, unix_ts: u64) -> io::Result<bool> {
        let day = unix_ts / DAY * DAY;
        let path = self.password_path();
        let result = fs::metadata(&path).and_then(|meta| {
            if i64::try_from(day).is_ok_and(|d| d == meta.mtime()) {
                return Ok(false);
            }
            let time = UNIX_EPOCH
                .checked_add(Duration::from_secs(day))
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "time out of range"))?;
            File::open(&path)?.set_times(FileTimes::new().set_accessed(time).set_modified(time))?;
            Ok(true)
        });
        match result {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            other => other,
        }
    }

    /// Whether incoming cleartext must be refused.
    ///
    /// Fails closed: if the marker's presence cannot be determined, it counts as present.
    pub fn enforce_e2ee_incoming(&self) -> bool {
        match fs::symlink_metadata(self.enforce_e2ee_path()) {
            Ok(_) => true,
            Err(e) => e.kind() != io::ErrorKind::NotFound,
        }
    }

    /// Reads `metadata.json`; a missing file is empty metadata.
    ///
    /// The file is opened without following a symlink and without waiting for a writer,
    /// and must be a regular file of at most [`MAX_METADATA_BYTES`]: a symlink to
    /// `/dev/zero` or a FIFO planted there must neither exhaust memory nor hang the reader.
    ///
    /// # Errors
    ///
    /// I/O errors other than `NotFound`; `InvalidData` when the file is a symlink, not a
    /// regular file, too large, or not valid JSON of the expected shape (chatmaild treats
    /// such a file as empty; the caller decides).
    pub fn read_metadata(&self) -> io::Result<Metadata> {
        match read_regular_bounded(&self.metadata_path(), MAX_METADATA_BYTES) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(e),
        }
    }

    /// Atomically replaces `metadata.json` with `metadata`.
    ///
    /// Callers that read, modify and write must serialize those steps themselves.
    ///
    /// # Errors
    ///
    /// Any I/O error; `NotFound` when the mailbox directory does not exist (it is not
    /// created, so an address deleted by expiry is not brought back).
    pub fn write_metadata(&self, metadata: &Metadata) -> io::Result<()> {
        let json = serde_json::to_vec(metadata).map_err(io::Error::other)?;
        write_atomic(&self.metadata_path(), &json)
    }
}

/// Reads the regular file at `path` (not through a symlink) if it holds at most `max`
/// bytes.
fn read_regular_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    open_regular_bounded(path, max).map(|(_, bytes)| bytes)
}

/// [`read_regular_bounded`], also returning the metadata of the file the bytes came from.
pub(crate) fn open_regular_bounded(path: &Path, max: u64) -> io::Result<(fs::Metadata, Vec<u8>)> {
    use nix::fcntl::OFlag;
    use std::io::Read;

    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            return Err(invalid(format!(
                "{} is a symlink; not followed",
                path.display()
            )));
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > max {
        return Err(invalid(format!(
            "{} has {} bytes, more than the {max} allowed",
            path.display(),
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow after the check.
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(invalid(format!(
            "{} grew to more than the {max} allowed",
            path.display()
        )));
    }
    Ok((meta, bytes))
}

/// Reads a `password` file as text: a regular file (not through a symlink) of at most
/// [`MAX_PASSWORD_FILE_BYTES`].
pub(crate) fn read_password_file(path: &Path) -> io::Result<(fs::Metadata, String)> {
    let (meta, bytes) = open_regular_bounded(path, MAX_PASSWORD_FILE_BYTES)?;
    let text =
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((meta, text))
}

/// The hash a `password` file's `text` holds: trimmed, `None` when empty
/// (see [`Mailbox::password_hash`]).
fn stored_hash(text: &str) -> Option<&str> {
    let hash = text.trim();
    (!hash.is_empty()).then_some(hash)
}

#[cfg(test)]
mod tests;
