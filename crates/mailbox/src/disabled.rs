//! The `DISABLED` marker: an empty file in a mailbox directory that
//! switches the address off without deleting anything. While it exists no
//! one logs in as the address (and no account is created under it), and
//! the policy service refuses mail to it and from it; its mail, tokens and
//! password stay, and removing the file switches the address back on.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::Mailbox;

/// Marker file: present = the address is disabled.
pub const DISABLED_FILE: &str = "DISABLED";

impl Mailbox {
    /// `<dir>/DISABLED`.
    pub fn disabled_path(&self) -> PathBuf {
        self.dir().join(DISABLED_FILE)
    }

    /// Whether the address is disabled: anything named `DISABLED` in its
    /// directory (a symlink is not followed) counts.
    ///
    /// # Errors
    ///
    /// I/O errors other than `NotFound`: the caller cannot tell, so it must
    /// not let the address through.
    pub fn is_disabled(&self) -> io::Result<bool> {
        match fs::symlink_metadata(self.disabled_path()) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates (`true`) or removes (`false`) the marker; returns whether
    /// anything changed. The mailbox directory must exist.
    ///
    /// # Errors
    ///
    /// I/O errors, `NotFound` when the directory does not exist.
    pub fn set_disabled(&self, disabled: bool) -> io::Result<bool> {
        if disabled {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(self.disabled_path())
            {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        } else {
            match fs::remove_file(self.disabled_path()) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // Distinguish "not disabled" from "no such mailbox".
                    fs::metadata(self.dir())?;
                    Ok(false)
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "example.org");
        let m = store.mailbox("abcdefghi@example.org").unwrap();
        assert!(!m.is_disabled().unwrap());
        assert_eq!(
            m.set_disabled(true).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
        std::fs::create_dir(m.dir()).unwrap();
        assert!(m.set_disabled(true).unwrap());
        assert!(!m.set_disabled(true).unwrap());
        assert!(m.is_disabled().unwrap());
        assert!(m.set_disabled(false).unwrap());
        assert!(!m.set_disabled(false).unwrap());
        assert!(!m.is_disabled().unwrap());
        std::os::unix::fs::symlink("/nonexistent", m.disabled_path()).unwrap();
        assert!(m.is_disabled().unwrap(), "a dangling symlink counts");
    }
}
