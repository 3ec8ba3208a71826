//! One walk over the mailbox tree, shared by expiry, quota expiry and the report.
//!
//! Reads directories and file metadata only; never opens a message, never deletes. Symlinks
//! are never followed: entry types come from `readdir` (`DirEntry::file_type`) and metadata
//! from `lstat` (`DirEntry::metadata`), so a link pointing out of `mailboxes_dir` is neither
//! walked nor counted. Entries that vanish while we look (Dovecot expunging, a user being
//! deleted) are skipped silently.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmail_mailbox::PASSWORD_FILE;

pub const DAY: Duration = Duration::from_secs(86_400);

/// Maildir++ nests folders flat (`.A.B/`), so real mailboxes are two levels deep at most;
/// the limit only stops a pathological tree from recursing without end.
const MAX_DEPTH: usize = 8;

/// Which Maildir subdirectory a message file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sub {
    Cur,
    New,
    Tmp,
}

impl Sub {
    fn from_name(name: &OsStr) -> Option<Sub> {
        match name.to_str()? {
            "cur" => Some(Sub::Cur),
            "new" => Some(Sub::New),
            "tmp" => Some(Sub::Tmp),
            _ => None,
        }
    }
}

/// A regular file in some `cur/`, `new/` or `tmp/` of a mailbox.
#[derive(Debug, Clone)]
pub struct Message {
    pub path: PathBuf,
    pub sub: Sub,
    pub mtime: SystemTime,
    pub size: u64,
}

impl Message {
    /// The arrival time (unix seconds) and size Dovecot put into the file name, falling back
    /// to the file's mtime and length for names that do not follow Dovecot's pattern.
    pub fn name_time_and_size(&self) -> (u64, u64) {
        let name = self
            .path
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or_default();
        let (ts, size) = parse_maildir_name(name);
        let mtime = self
            .mtime
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (ts.unwrap_or(mtime), size.unwrap_or(self.size))
    }
}

/// Parses `<secs>.<unique>,S=<size>[,W=<vsize>][:2,<flags>]`: the leading unix time and the
/// `S=` size, each `None` when absent.
pub fn parse_maildir_name(name: &str) -> (Option<u64>, Option<u64>) {
    let digits = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let ts = name.split_once('.').and_then(|(head, _)| digits(head));
    // The flags after ':' never contain "S=", but cut them off so that they cannot match.
    let base = name.split_once(':').map_or(name, |(b, _)| b);
    let size = base
        .split(',')
        .skip(1)
        .filter_map(|field| field.strip_prefix("S="))
        .filter_map(digits)
        .last();
    (ts, size)
}

/// What one walk of a mailbox directory found.
#[derive(Debug, Default)]
pub struct MailboxScan {
    /// False when the directory vanished before we could read it.
    pub exists: bool,
    /// Number of entries directly in the mailbox directory.
    pub root_entries: usize,
    /// mtime of `password` when it is a regular file.
    pub password_mtime: Option<SystemTime>,
    pub messages: Vec<Message>,
    /// Temp files of atomic writers directly in the mailbox, with their mtimes.
    pub temp_files: Vec<(PathBuf, SystemTime)>,
    /// Regular files outside `cur/ new/ tmp/` (password, indexes, `maildirsize`, ...).
    pub extra_files: u64,
    pub extra_bytes: u64,
    /// Problems below the mailbox root, one line each.
    pub errors: Vec<String>,
}

impl MailboxScan {
    pub fn message_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.size).sum()
    }

    pub fn total_bytes(&self) -> u64 {
        self.message_bytes() + self.extra_bytes
    }

    /// Records a failure to read `path`.
    fn failed(&mut self, path: &Path, e: &io::Error) {
        self.errors.push(format!("{}: {e}", shown(path)));
    }

    /// The value read from `path`; `None` when that failed: silently when the path
    /// vanished meanwhile, else with the error recorded.
    fn read<T>(&mut self, path: &Path, result: io::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                if !vanished(&e) {
                    self.failed(path, &e);
                }
                None
            }
        }
    }
}

fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// Walks one mailbox: every `cur/ new/ tmp/` at any folder level holds messages (as in
/// chatmaild, which recurses into all subdirectories), everything else regular is an extra
/// file.
///
/// # Errors
///
/// Only when the mailbox directory itself cannot be read for a reason other than having
/// vanished (that gives `exists: false`); deeper problems are collected in `errors`.
pub fn scan_mailbox(dir: &Path) -> io::Result<MailboxScan> {
    let mut scan = MailboxScan::default();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if vanished(&e) => return Ok(scan),
        Err(e) => return Err(e),
    };
    scan.exists = true;
    walk_folder(dir, entries, 0, &mut scan);
    Ok(scan)
}

fn walk_folder(dir: &Path, entries: fs::ReadDir, depth: usize, scan: &mut MailboxScan) {
    for entry in entries {
        let Ok(entry) = entry.inspect_err(|e| scan.failed(dir, e)) else {
            continue;
        };
        if depth == 0 {
            scan.root_entries += 1;
        }
        let name = entry.file_name();
        let path = entry.path();
        let Some(file_type) = scan.read(&path, entry.file_type()) else {
            continue;
        };
        if file_type.is_dir() {
            if let Some(sub) = Sub::from_name(&name) {
                read_messages(&path, sub, scan);
            } else if depth < MAX_DEPTH
                && let Some(sub_entries) = scan.read(&path, fs::read_dir(&path))
            {
                walk_folder(&path, sub_entries, depth + 1, scan);
            }
        } else if file_type.is_file() {
            let Some(meta) = scan.read(&path, entry.metadata()) else {
                continue;
            };
            scan.extra_files += 1;
            scan.extra_bytes += meta.len();
            if depth == 0 && name == PASSWORD_FILE {
                scan.password_mtime = meta.modified().ok();
            }
            if depth == 0
                && name
                    .to_str()
                    .is_some_and(chatmail_mailbox::is_temp_file_name)
            {
                let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
                scan.temp_files.push((path.clone(), mtime));
            }
        }
        // Symlinks, sockets, fifos: neither followed nor counted.
    }
}

fn read_messages(dir: &Path, sub: Sub, scan: &mut MailboxScan) {
    let Some(entries) = scan.read(dir, fs::read_dir(dir)) else {
        return;
    };
    for entry in entries {
        let Ok(entry) = entry.inspect_err(|e| scan.failed(dir, e)) else {
            continue;
        };
        // DirEntry::metadata is lstat: a symlink shows up as a link and is skipped.
        let Some(meta) = scan.read(&entry.path(), entry.metadata()) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        scan.messages.push(Message {
            path: entry.path(),
            sub,
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            size: meta.len(),
        });
    }
}

/// The mailbox directories under `mailboxes_dir`, sorted by name.
#[derive(Debug, Default)]
pub struct MailboxList {
    pub names: Vec<String>,
    /// Entries that are not mailboxes (`pending_notifications`, symlinks, files, dot-names).
    pub skipped: usize,
}

/// Lists mailboxes: real directories (not symlinks) whose name contains `@` and does not
/// start with `.`. chatmaild takes every name with `@`; the dot rule additionally skips the
/// temp files of atomic writers. Sorted so that `max` picks a reproducible subset.
///
/// # Errors
///
/// When `root` cannot be read.
pub fn list_mailboxes(root: &Path, max: Option<usize>) -> io::Result<MailboxList> {
    let mut list = MailboxList::default();
    for entry in fs::read_dir(root)? {
        let entry = entry?;
        let is_dir = match entry.file_type() {
            Ok(t) => t.is_dir(),
            Err(e) if vanished(&e) => continue,
            Err(e) => return Err(e),
        };
        match entry.file_name().into_string() {
            Ok(name) if is_dir && is_mailbox_name(&name) => list.names.push(name),
            _ => list.skipped += 1,
        }
    }
    list.names.sort_unstable();
    if let Some(max) = max {
        list.skipped += list.names.len().saturating_sub(max);
        list.names.truncate(max);
    }
    Ok(list)
}

pub fn is_mailbox_name(name: &str) -> bool {
    name.contains('@')
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.contains("..")
        && !name.chars().any(char::is_control)
}

/// Runs `work` on every item on about `available_parallelism` threads and hands the results
/// to `sink` on the calling thread, in item order (so output is reproducible and `sink` may
/// hold a `&mut dyn Write`).
pub fn parallel_in_order<T, R>(items: &[T], work: impl Fn(&T) -> R + Sync, mut sink: impl FnMut(R))
where
    T: Sync,
    R: Send,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    if tx.send((i, work(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Workers take indices in increasing order, so the reorder buffer stays about as
        // small as the number of threads.
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&want) {
                sink(result);
                want += 1;
            }
        }
        // Only reached with gaps if a worker panicked; the scope re-raises that panic.
        for (_, result) in pending {
            sink(result);
        }
    });
}

/// `t - d`, clamped at the epoch.
pub fn before(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_sub(d).unwrap_or(UNIX_EPOCH)
}

pub fn days(n: u32) -> Duration {
    DAY * n
}

/// A path for one line of output: control characters (a newline in a file name would
/// forge a line), whitespace other than a space and backslashes are escaped as in Rust
/// string literals.
pub fn shown(path: &Path) -> String {
    shown_str(&path.to_string_lossy())
}

/// [`shown`] for a string.
pub fn shown_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || c == '\\' || (c.is_whitespace() && c != ' ') {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `Mon DD` in UTC, as chatmaild prints dates in its verbose lines.
pub fn month_day(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (_, month, day) = civil_from_days(secs / DAY.as_secs());
    format!("{} {day:02}", MONTHS[usize::from(month - 1)])
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u8::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u8::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Decimal byte count for people, like chatmaild's `HSize` (K = 1000).
pub fn human_bytes(n: u64) -> String {
    // Precision loss above 2^53 bytes is irrelevant for display.
    #[allow(clippy::cast_precision_loss)]
    let f = n as f64;
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", f / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", f / 1e6),
        _ => format!("{:.2} GB", f / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_names() {
        assert_eq!(
            parse_maildir_name("1775324677.M448978P3029757.exam,S=3235,W=3305:2,S"),
            (Some(1_775_324_677), Some(3235))
        );
        assert_eq!(
            parse_maildir_name("1700000000.M1P2.host,S=10:2,"),
            (Some(1_700_000_000), Some(10))
        );
        assert_eq!(
            parse_maildir_name("1700000000.M1P2.host"),
            (Some(1_700_000_000), None)
        );
        assert_eq!(parse_maildir_name("garbage,S=12"), (None, Some(12)));
        assert_eq!(parse_maildir_name("x.y,S=abc"), (None, None));
        assert_eq!(parse_maildir_name(""), (None, None));
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(
            month_day(UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
            "Feb 29"
        );
    }

    #[test]
    fn mailbox_names() {
        assert!(is_mailbox_name("abc@example.org"));
        assert!(is_mailbox_name("abc@[1.2.3.4]"));
        assert!(!is_mailbox_name("pending_notifications"));
        assert!(!is_mailbox_name(".abc@x.tmp"));
        assert!(!is_mailbox_name("a..b@x"));
    }

    #[test]
    fn parallel_keeps_order() {
        let items: Vec<u32> = (0..500).collect();
        let mut out = Vec::new();
        parallel_in_order(&items, |&i| i * 2, |r| out.push(r));
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let mut none = Vec::new();
        parallel_in_order(&[] as &[u32], |&i| i, |r| none.push(r));
        assert!(none.is_empty());
    }

    #[test]
    fn shown_paths_stay_on_one_line() {
        let cases = [
            ("/m/a@x/cur/1.host:2,S", "/m/a@x/cur/1.host:2,S"),
            (
                "/m/a@x/cur/evil\nremoving /m/b@x",
                "/m/a@x/cur/evil\\nremoving /m/b@x",
            ),
            ("a\rb\tc\u{1b}[31m", "a\\rb\\tc\\u{1b}[31m"),
            ("back\\slash", "back\\\\slash"),
            ("caf\u{e9} \u{2028}", "caf\u{e9} \\u{2028}"),
        ];
        for (raw, want) in cases {
            assert_eq!(shown(Path::new(raw)), want, "{raw:?}");
            assert!(!shown(Path::new(raw)).contains('\n'));
        }
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }
}
