//! A cache of `password` files that is checked against the disk on every read.
//!
//! Reading a `password` file costs five system calls (open, stat, read, read, close), one of
//! them a full path walk; at login rates that is most of what `chatmail auth` spends per
//! lookup. A `stat` of the path alone says whether the file can have changed, so a hit costs
//! one system call and still sees every change another process makes: accounts created,
//! passwords rewritten (in place or by rename), directories removed.
//!
//! An entry is keyed by the file's path and remembers its device, inode, size, mtime and
//! ctime, taken from the opened file (so they describe the bytes read, even if the file is
//! replaced meanwhile). A lookup whose fresh `stat` differs in any of them reads the file
//! again. The ctime cannot be set from user space and changes on every write, rename onto,
//! chmod or touch; the one way it can fail to change is a write within the file system's
//! timestamp granularity (a clock tick, or a whole second on file systems without
//! nanoseconds) of the moment it was cached. So a file is only cached once its ctime is
//! [`RACY_WINDOW`] old: any later change then gets a ctime at least that much newer, hence
//! different (the "racily clean" rule of git's index).

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Mailbox;

/// How old a file's ctime must be before its contents are cached; larger than any file
/// system's timestamp granularity (ext4 without large inodes keeps whole seconds).
pub const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Entries kept at most; beyond it an arbitrary entry makes room. About 300 bytes each, so
/// the cache stays within a few megabytes however many accounts the relay has.
pub const DEFAULT_CAPACITY: usize = 16_384;

/// What `stat` says about a file; equal stamps mean unchanged contents (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether a change after `now` is sure to give a different ctime: the ctime is more than
    /// `window` before `now`, and a file from the future (clock set back) never is.
    fn settled(&self, now: SystemTime, window: Duration) -> bool {
        let (secs, nanos) = self.ctime;
        let (Ok(secs), Ok(nanos)) = (u64::try_from(secs), u32::try_from(nanos)) else {
            return false;
        };
        let ctime = UNIX_EPOCH + Duration::new(secs, 0) + Duration::from_nanos(nanos.into());
        ctime
            .checked_add(window)
            .is_some_and(|settled| settled < now)
    }
}

#[derive(Debug)]
struct Entry {
    stamp: Stamp,
    /// The trimmed hash; `None` for an empty file.
    hash: Option<Arc<str>>,
}

/// Password hashes of many mailboxes, each validated by a `stat` on every read; see the
/// module docs. Shared by all connections of a daemon.
#[derive(Debug)]
pub struct PasswordCache {
    entries: Mutex<HashMap<Box<[u8]>, Entry>>,
    capacity: usize,
    window: Duration,
}

impl Default for PasswordCache {
    fn default() -> Self {
        PasswordCache::new(DEFAULT_CAPACITY)
    }
}

impl PasswordCache {
    /// An empty cache holding at most `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> PasswordCache {
        PasswordCache::with_window(capacity, RACY_WINDOW)
    }

    /// Tests use a zero window so that files they just wrote are cached.
    pub(crate) fn with_window(capacity: usize, window: Duration) -> PasswordCache {
        PasswordCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
            window,
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Entry>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Mailbox::password_hash`], answered from the cache when the file's `stat` is the one
    /// cached with it.
    ///
    /// # Errors
    ///
    /// As [`Mailbox::password_hash`]: I/O errors other than `NotFound`; `InvalidData` when
    /// the file is not UTF-8. Nothing is cached then.
    pub fn password_hash(&self, mailbox: &Mailbox) -> io::Result<Option<Arc<str>>> {
        let path = mailbox.password_path();
        let key = path.as_os_str().as_bytes();
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => return self.forget(key, e),
        };
        if let Some(entry) = self.lock().get(key)
            && entry.stamp == Stamp::of(&meta)
        {
            return Ok(entry.hash.clone());
        }
        self.read(&path)
    }

    /// Drops `key` after `e` reading its file: no file is no account, any
    /// other error is the caller's.
    fn forget(&self, key: &[u8], e: io::Error) -> io::Result<Option<Arc<str>>> {
        self.lock().remove(key);
        if e.kind() == io::ErrorKind::NotFound {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Reads the file and caches it if its ctime is old enough.
    fn read(&self, path: &Path) -> io::Result<Option<Arc<str>>> {
        let key = path.as_os_str().as_bytes();
        // Before the open: a change after it is after this moment, so its ctime is newer than
        // this moment less the timestamp granularity.
        let now = SystemTime::now();
        // The stamp is from the open file, so it belongs to the bytes read even if the path
        // is renamed over meanwhile; a change after this stat gets a new ctime.
        let read = crate::read_password_file(path).map(|(meta, text)| (Stamp::of(&meta), text));
        let (stamp, text) = match read {
            Ok(read) => read,
            Err(e) => return self.forget(key, e),
        };
        let hash = crate::stored_hash(&text).map(Arc::<str>::from);
        let mut entries = self.lock();
        if !stamp.settled(now, self.window) || self.capacity == 0 {
            entries.remove(key);
            return Ok(hash);
        }
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            // The hasher is randomly keyed, so the first entry is an arbitrary one.
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(
            key.into(),
            Entry {
                stamp,
                hash: hash.clone(),
            },
        );
        Ok(hash)
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{FileTimes, OpenOptions};
    use std::io::Write;

    use super::*;
    use crate::{Created, Store};

    const D: &str = "chat.example.org";
    const HASH: &str = "{SHA512-CRYPT}$6$abcdefghijklmnop$xyz";
    /// Same length as [`HASH`], so only the contents differ.
    const HASH2: &str = "{SHA512-CRYPT}$6$ABCDEFGHIJKLMNOP$XYZ";

    fn mailbox() -> (tempfile::TempDir, Mailbox) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("mail"), D);
        let mb = store.mailbox(&format!("abcdefghi@{D}")).unwrap();
        (dir, mb)
    }

    fn get(cache: &PasswordCache, mb: &Mailbox) -> Option<String> {
        let cached = cache.password_hash(mb).unwrap().map(|h| h.to_string());
        assert_eq!(
            cached,
            mb.password_hash().unwrap(),
            "cache and disk disagree"
        );
        cached
    }

    /// Rewrites `password` in place (same inode) and puts its old mtime back, so only the
    /// contents and the ctime tell that it changed.
    fn rewrite_in_place(mb: &Mailbox, text: &str) {
        let path = mb.password_path();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.set_times(FileTimes::new().set_modified(mtime)).unwrap();
    }

    #[test]
    fn every_change_on_disk_is_seen() {
        let (_dir, mb) = mailbox();
        let cache = PasswordCache::default();
        assert_eq!(get(&cache, &mb), None);
        assert_eq!(mb.create(HASH).unwrap(), Created::New);
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        // Within RACY_WINDOW of the write, nothing is cached: a rewrite within the same
        // timestamp tick could keep every field of the stamp.
        assert!(cache.is_empty());
        rewrite_in_place(&mb, HASH2);
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH2));
        rewrite_in_place(&mb, "");
        assert_eq!(get(&cache, &mb), None);
        fs::remove_dir_all(mb.dir()).unwrap();
        assert_eq!(get(&cache, &mb), None);
        assert_eq!(mb.create(HASH).unwrap(), Created::New);
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
    }

    #[test]
    fn cached_entries_see_renames_removals_and_recreations() {
        let (_dir, mb) = mailbox();
        let cache = PasswordCache::with_window(10, Duration::ZERO);
        mb.create(HASH).unwrap();
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        assert_eq!(cache.len(), 1);
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        // Renamed over: another inode, even with the same size and mtime.
        crate::write_atomic(&mb.password_path(), HASH2.as_bytes()).unwrap();
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH2));
        // The directory removed (expiry, an operator): gone, and forgotten.
        fs::remove_dir_all(mb.dir()).unwrap();
        assert_eq!(get(&cache, &mb), None);
        assert!(cache.is_empty());
        // Created again by another process with another hash.
        let other = format!("{HASH}-another-account");
        mb.create(&other).unwrap();
        assert_eq!(get(&cache, &mb).as_deref(), Some(other.as_str()));
    }

    #[test]
    fn settled_files_are_cached_and_in_place_rewrites_still_seen() {
        let (_dir, mb) = mailbox();
        let cache = PasswordCache::default();
        mb.create(HASH).unwrap();
        std::thread::sleep(RACY_WINDOW + Duration::from_millis(200));
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        assert_eq!(cache.len(), 1, "a settled file is cached");
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        // Same inode, size and mtime: only the ctime differs, and it must.
        rewrite_in_place(&mb, HASH2);
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH2));
        // Touched (the last-login day) without a change of contents: read again, same hash.
        mb.set_last_login(86_400 * 3).unwrap();
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH2));
    }

    #[test]
    fn errors_are_reported_and_not_cached() {
        let (_dir, mb) = mailbox();
        let cache = PasswordCache::with_window(10, Duration::ZERO);
        mb.create(HASH).unwrap();
        assert_eq!(get(&cache, &mb).as_deref(), Some(HASH));
        fs::write(mb.password_path(), b"\xff\xfe not utf-8").unwrap();
        let err = cache.password_hash(&mb).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(cache.is_empty());
        // A directory where the file should be: an error, not "no account".
        fs::remove_file(mb.password_path()).unwrap();
        fs::create_dir(mb.password_path()).unwrap();
        assert!(cache.password_hash(&mb).is_err());
        assert!(mb.password_hash().is_err());
    }

    #[test]
    fn a_password_that_is_no_plain_small_file_is_an_error_at_once() {
        let (_dir, mb) = mailbox();
        let cache = PasswordCache::with_window(10, Duration::ZERO);
        mb.create(HASH).unwrap();
        let path = mb.password_path();
        let check = |what: &str| {
            // In a thread, so that a read that hangs fails the test instead of blocking it.
            let (mb2, cache2) = (mb.clone(), PasswordCache::with_window(10, Duration::ZERO));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let _ = tx.send((cache2.password_hash(&mb2), mb2.password_hash()));
            });
            let (cached, direct) = rx
                .recv_timeout(Duration::from_secs(5))
                .expect("reading the password hangs");
            for err in [cached.unwrap_err(), direct.unwrap_err()] {
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
                assert!(err.to_string().contains(what), "{err}");
            }
        };
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        check("symlink");
        fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        check("not a regular file");
        fs::remove_file(&path).unwrap();
        fs::write(&path, vec![b'x'; 4097]).unwrap();
        check("more than the 4096 allowed");
        assert!(cache.is_empty());
        // An existing account is never overwritten, whatever its file is.
        assert!(mb.create(HASH).is_err());
    }

    #[test]
    fn capacity_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("mail"), D);
        let cache = PasswordCache::with_window(2, Duration::ZERO);
        let boxes: Vec<Mailbox> = (0..5)
            .map(|i| store.mailbox(&format!("user{i}@{D}")).unwrap())
            .collect();
        for (i, mb) in boxes.iter().enumerate() {
            mb.create(&format!("{HASH}{i}")).unwrap();
        }
        for _ in 0..2 {
            for (i, mb) in boxes.iter().enumerate() {
                assert_eq!(get(&cache, mb), Some(format!("{HASH}{i}")));
                assert!(cache.len() <= 2);
            }
        }
        let none = PasswordCache::new(0);
        assert_eq!(get(&none, &boxes[0]), Some(format!("{HASH}0")));
        assert!(none.is_empty());
    }
}
