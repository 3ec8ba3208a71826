//! A synthetic mailbox tree with controlled mtimes, relative to a fixed `NOW`.

#![allow(dead_code)]

use std::fs::{self, File, FileTimes};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmail_config::Config;
use tempfile::TempDir;

pub const DAY: u64 = 86_400;
pub const HOUR: u64 = 3_600;
pub const DOMAIN: &str = "example.org";

/// 2025-06-15 16:26:40 UTC: far from the real clock, so nothing depends on it.
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_004_800)
}

pub fn ago(secs: u64) -> SystemTime {
    now() - Duration::from_secs(secs)
}

pub fn set_mtime(path: &Path, t: SystemTime) {
    File::options()
        .write(true)
        .open(path)
        .or_else(|_| File::open(path))
        .unwrap()
        .set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

/// Whether `path` itself exists (a dangling symlink counts).
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

pub struct Tree {
    _tmp: TempDir,
    /// A directory beside `root`, for things outside the tree.
    pub outside: PathBuf,
    pub root: PathBuf,
}

impl Tree {
    pub fn new() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("mailboxes");
        let outside = tmp.path().join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        Tree {
            _tmp: tmp,
            outside,
            root,
        }
    }

    pub fn config(&self) -> Config {
        Config::for_tests(DOMAIN, &self.root)
    }

    /// A mailbox directory with Maildir subdirectories and no password yet.
    pub fn mailbox(&self, localpart: &str) -> Mb {
        let dir = self.root.join(format!("{localpart}@{DOMAIN}"));
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(dir.join(sub)).unwrap();
        }
        Mb { dir, seq: 0.into() }
    }

    /// An active account (logged in today) with a `maildirsize`.
    pub fn account(&self, localpart: &str) -> Mb {
        let mb = self.mailbox(localpart);
        mb.password(0);
        mb.file("maildirsize", b"524288000S\n");
        mb
    }
}

pub struct Mb {
    pub dir: PathBuf,
    seq: std::cell::Cell<u32>,
}

impl Mb {
    /// Writes `password` with its mtime at the start of the day `days_ago` days before now.
    pub fn password(&self, days_ago: u64) -> PathBuf {
        let path = self.file("password", b"{SHA512-CRYPT}$6$xxxxxxxxxxxxxxxx$yyyy");
        let day = (now().duration_since(UNIX_EPOCH).unwrap().as_secs() / DAY - days_ago) * DAY;
        set_mtime(&path, UNIX_EPOCH + Duration::from_secs(day));
        path
    }

    pub fn file(&self, rel: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, contents).unwrap();
        path
    }

    /// A message in `folder` (`cur`, `new`, `tmp`, `.DeltaChat/cur`, ...) named as Dovecot
    /// names it, arrived `age` seconds ago (name time and mtime), `size` bytes (sparse).
    pub fn message(&self, folder: &str, age: u64, size: u64) -> PathBuf {
        let ts = now().duration_since(UNIX_EPOCH).unwrap().as_secs() - age;
        let n = self.seq.get();
        self.seq.set(n + 1);
        let flags = if folder.ends_with("cur") { ":2,S" } else { "" };
        let name = format!("{ts}.M{n}P1.test,S={size},W={size}{flags}");
        self.raw_message(folder, &name, ago(age), size)
    }

    /// A file with any name in `folder`, with the given mtime and size.
    pub fn raw_message(&self, folder: &str, name: &str, mtime: SystemTime, size: u64) -> PathBuf {
        let dir = self.dir.join(folder);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let file = File::create(&path).unwrap();
        file.set_len(size).unwrap();
        file.set_times(FileTimes::new().set_accessed(mtime).set_modified(mtime))
            .unwrap();
        path
    }

    pub fn maildirsize(&self) -> PathBuf {
        self.dir.join("maildirsize")
    }
}
