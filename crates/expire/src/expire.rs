//! The daily expiry (`chatmail expire`, run by a systemd timer): docs/design.md, "Expiry".
//!
//! Walks every mailbox under `mailboxes_dir` once, in parallel, and deletes:
//!
//! 1. whole mailboxes whose `password` mtime (the last-login day, docs/design.md "On disk") is
//!    older than `delete_inactive_users_after` days, and empty directories without a
//!    `password` whose own mtime is that old;
//! 2. message files (in `cur/ new/ tmp/` of the mailbox and of its Maildir++ folders) whose
//!    mtime is older than `delete_mails_after` days;
//! 3. message files over 200 kB in a `cur/` whose mtime is older than `delete_large_after`
//!    days (mail still in `new/` has not been seen by any device yet);
//! 4. the oldest remaining `cur/ new/` messages until the mailbox is at 70 % of
//!    `max_mailbox_size`, sparing the last 24 hours (see the `quota` module);
//! 5. `maildirsize` in every mailbox that lost a message;
//! 6. temp files of `password` and `metadata.json` writers older than an hour, which only
//!    a writer that crashed leaves behind.
//!
//! Without [`ExpireOptions::remove`] nothing is deleted and the same decisions are listed.
//! Symlinks are never followed and nothing outside `mailboxes_dir` is touched; directories
//! whose name has no `@` (`pending_notifications`, ...) are left alone.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chatmail_config::Config;
use chatmail_mailbox::PASSWORD_FILE;

use crate::ExpireError;
use crate::quota::{self, MAILDIRSIZE_FILE};
use crate::scan::{self, MailboxScan, Sub};

/// Messages strictly larger than this many bytes count as large (chatmaild's `200000`).
pub const LARGE_MESSAGE_BYTES: u64 = 200_000;

pub use chatmail_config::QUOTA_CLEANUP_PERCENT;

/// How [`expire`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireOptions {
    /// Actually delete; otherwise only list what would go.
    pub remove: bool,
    /// Also list each mailbox checked, and list deletions when `remove` is set.
    pub verbose: bool,
    /// Pretend today is this many days after `now`.
    pub days_offset: u32,
    /// Look at only the first this many mailboxes (by name).
    pub max_mailboxes: Option<usize>,
    /// The current time.
    pub now: SystemTime,
}

impl Default for ExpireOptions {
    /// A dry run at the current time.
    fn default() -> Self {
        ExpireOptions {
            remove: false,
            verbose: false,
            days_offset: 0,
            max_mailboxes: None,
            now: SystemTime::now(),
        }
    }
}

/// What [`expire`] did (or, in a dry run, would do). `Display` is the one-line summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpireSummary {
    /// True when nothing was deleted.
    pub dry_run: bool,
    /// Mailbox directories looked at.
    pub mailboxes_total: usize,
    /// Mailboxes removed.
    pub mailboxes_removed: usize,
    /// Message files in the mailboxes that were kept.
    pub files_total: usize,
    /// Message files removed from them (`maildirsize` not counted).
    pub files_removed: usize,
    /// Bytes of the removed messages and mailboxes.
    pub bytes_freed: u64,
    /// Entries of `mailboxes_dir` that are not mailboxes (or beyond `max_mailboxes`).
    pub skipped_entries: usize,
    /// Problems reported (one output line each); the run went on.
    pub errors: usize,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl fmt::Display for ExpireSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, free) = if self.dry_run {
            ("Dry run: would remove", "would free")
        } else {
            ("Removed", "freed")
        };
        write!(
            f,
            "{verb} {} out of {} mailboxes and {} out of {} files in existing mailboxes \
             ({free} {}) in {:.2} seconds",
            self.mailboxes_removed,
            self.mailboxes_total,
            self.files_removed,
            self.files_total,
            scan::human_bytes(self.bytes_freed),
            self.elapsed.as_secs_f64(),
        )?;
        if self.errors > 0 {
            write!(f, ", {} error(s)", self.errors)?;
        }
        Ok(())
    }
}

/// The thresholds of one run.
struct Rules {
    remove: bool,
    verbose: bool,
    list: bool,
    now: SystemTime,
    inactive_cutoff: SystemTime,
    mails_cutoff: SystemTime,
    large_cutoff: SystemTime,
    quota_target: u64,
}

impl Rules {
    fn verb(&self) -> &'static str {
        if self.remove {
            "removing"
        } else {
            "would remove"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Old,
    Large,
    Quota,
}

/// The result for one mailbox, merged on the calling thread.
#[derive(Default)]
struct Outcome {
    counted: bool,
    mailbox_removed: bool,
    files_total: usize,
    files_removed: usize,
    bytes_freed: u64,
    errors: usize,
    lines: Vec<String>,
}

impl Outcome {
    fn error(&mut self, what: impl fmt::Display) {
        self.errors += 1;
        self.lines.push(format!("error: {what}"));
    }

    /// An error on `path`.
    fn path_error(&mut self, path: &Path, e: &io::Error) {
        self.error(format_args!("{}: {e}", scan::shown(path)));
    }

    /// Whether a removal of `path` removed it; a failure is an error, and `false`.
    fn removed(&mut self, path: &Path, result: io::Result<bool>) -> bool {
        result.unwrap_or_else(|e| {
            self.path_error(path, &e);
            false
        })
    }

    /// One line for a removal (or what a dry run would remove), when the rules list them.
    fn removal(&mut self, rules: &Rules, what: fmt::Arguments<'_>) {
        if rules.list {
            self.lines.push(format!("{} {what}", rules.verb()));
        }
    }
}

/// Runs the daily expiry over `config.mailboxes_dir` (see the module docs for the rules).
///
/// Writes one line per deletion to `out` in a dry run or when verbose, one per mailbox
/// checked when verbose, and one per problem always; mailboxes are reported in name order.
/// The summary is returned, not written.
///
/// # Errors
///
/// [`ExpireError::ReadDir`] when `mailboxes_dir` cannot be listed (a missing directory is
/// not an error: there is nothing to expire, and a line says so).
/// [`ExpireError::Output`] when writing to `out` failed; the expiry itself was still
/// completed. Problems with single files or mailboxes are counted in
/// [`ExpireSummary::errors`], never returned.
pub fn expire(
    config: &Config,
    opts: &ExpireOptions,
    out: &mut dyn Write,
) -> Result<ExpireSummary, ExpireError> {
    let start = Instant::now();
    let now = opts.now + scan::days(opts.days_offset);
    let rules = Rules {
        remove: opts.remove,
        verbose: opts.verbose,
        list: opts.verbose || !opts.remove,
        now,
        inactive_cutoff: scan::before(now, scan::days(config.delete_inactive_users_after)),
        mails_cutoff: scan::before(now, scan::days(config.delete_mails_after)),
        large_cutoff: scan::before(now, scan::days(config.delete_large_after)),
        quota_target: chatmail_config::quota_cleanup_target(config.max_mailbox_size.bytes),
    };
    let mut summary = ExpireSummary {
        dry_run: !opts.remove,
        mailboxes_total: 0,
        mailboxes_removed: 0,
        files_total: 0,
        files_removed: 0,
        bytes_freed: 0,
        skipped_entries: 0,
        errors: 0,
        elapsed: Duration::ZERO,
    };
    let root = config.mailboxes_dir.as_path();
    let mut write_error = None;
    let list = match scan::list_mailboxes(root, opts.max_mailboxes) {
        Ok(list) => list,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_error = writeln!(out, "no mailboxes found at: {}", scan::shown(root)).err();
            scan::MailboxList::default()
        }
        Err(source) => {
            return Err(ExpireError::ReadDir {
                path: root.to_owned(),
                source,
            });
        }
    };
    summary.skipped_entries = list.skipped;

    scan::parallel_in_order(
        &list.names,
        |name| expire_mailbox(root, name, &rules),
        |outcome| {
            summary.mailboxes_total += usize::from(outcome.counted);
            summary.mailboxes_removed += usize::from(outcome.mailbox_removed);
            summary.files_total += outcome.files_total;
            summary.files_removed += outcome.files_removed;
            summary.bytes_freed += outcome.bytes_freed;
            summary.errors += outcome.errors;
            if write_error.is_none() {
                for line in &outcome.lines {
                    if let Err(e) = writeln!(out, "{line}") {
                        write_error = Some(e);
                        break;
                    }
                }
            }
        },
    );
    summary.elapsed = start.elapsed();
    match write_error {
        Some(e) => Err(ExpireError::Output(e)),
        None => Ok(summary),
    }
}

fn expire_mailbox(root: &Path, name: &str, rules: &Rules) -> Outcome {
    let mut outcome = Outcome::default();
    let dir = root.join(name);
    let scan = match scan::scan_mailbox(&dir) {
        Ok(scan) if !scan.exists => return outcome,
        Ok(scan) => scan,
        Err(e) => {
            outcome.counted = true;
            outcome.path_error(&dir, &e);
            return outcome;
        }
    };
    outcome.counted = true;
    for error in &scan.errors {
        outcome.error(error);
    }

    match scan.password_mtime {
        Some(login) if login < rules.inactive_cutoff => {
            remove_inactive(&dir, &scan, login, rules, &mut outcome);
            return outcome;
        }
        None if scan.root_entries == 0 => {
            remove_empty(&dir, rules, &mut outcome);
            return outcome;
        }
        _ => {}
    }

    if rules.verbose {
        outcome.lines.push(match scan.password_mtime {
            Some(login) => format!(
                "checking mailbox {} {}",
                scan::month_day(login),
                scan::shown_str(name)
            ),
            None => format!("checking mailbox (no last_login) {}", scan::shown_str(name)),
        });
    }
    outcome.files_total = scan.messages.len();
    expire_messages(&dir, &scan, rules, &mut outcome);
    remove_stale_temps(&scan, rules, &mut outcome);
    outcome
}

/// Removes temp files that a crashed writer (account creation, a `metadata.json` update)
/// left in the mailbox directory; a live writer's are younger than `STALE_TEMP_AGE`.
fn remove_stale_temps(scan: &MailboxScan, rules: &Rules, outcome: &mut Outcome) {
    let cutoff = scan::before(rules.now, chatmail_mailbox::STALE_TEMP_AGE);
    for (path, mtime) in &scan.temp_files {
        if *mtime >= cutoff {
            continue;
        }
        if rules.remove && !outcome.removed(path, quota::remove_if_exists(path)) {
            continue;
        }
        outcome.removal(
            rules,
            format_args!("{} (stale temp file)", scan::shown(path)),
        );
    }
}

/// Removes a mailbox whose last login is too old, unless a login happened since the scan.
fn remove_inactive(
    dir: &Path,
    scan: &MailboxScan,
    login: SystemTime,
    rules: &Rules,
    outcome: &mut Outcome,
) {
    if rules.remove {
        // The user may have logged in between the scan and now; the lastlogin daemon then
        // moved the mtime forward and the mailbox must stay.
        match fs::symlink_metadata(dir.join(PASSWORD_FILE)).and_then(|m| m.modified()) {
            Ok(t) if t >= rules.inactive_cutoff => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                outcome.path_error(&dir.join(PASSWORD_FILE), &e);
                return;
            }
        }
        match fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                outcome.path_error(dir, &e);
                return;
            }
        }
    }
    outcome.removal(
        rules,
        format_args!(
            "{} (last login {})",
            scan::shown(dir),
            scan::month_day(login)
        ),
    );
    outcome.mailbox_removed = true;
    outcome.bytes_freed = scan.total_bytes();
}

/// Removes an empty mailbox directory without `password` when the directory is as old as
/// an inactive account (a leftover of an account creation that never completed).
fn remove_empty(dir: &Path, rules: &Rules, outcome: &mut Outcome) {
    let mtime = match fs::symlink_metadata(dir).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            outcome.path_error(dir, &e);
            return;
        }
    };
    if mtime >= rules.inactive_cutoff {
        return;
    }
    if rules.remove {
        // rmdir, not a recursive removal: it fails harmlessly if an account is being
        // created in it right now.
        match fs::remove_dir(dir) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
                ) =>
            {
                return;
            }
            Err(e) => {
                outcome.path_error(dir, &e);
                return;
            }
        }
    }
    outcome.removal(
        rules,
        format_args!("{} (empty, no password)", scan::shown(dir)),
    );
    outcome.mailbox_removed = true;
}

fn expire_messages(dir: &Path, scan: &MailboxScan, rules: &Rules, outcome: &mut Outcome) {
    let messages = &scan.messages;
    let mut reasons: Vec<Option<Reason>> = messages
        .iter()
        .map(|m| {
            if m.mtime < rules.mails_cutoff {
                Some(Reason::Old)
            } else if m.sub == Sub::Cur
                && m.size > LARGE_MESSAGE_BYTES
                && m.mtime < rules.large_cutoff
            {
                Some(Reason::Large)
            } else {
                None
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..messages.len())
        .filter(|&i| reasons[i].is_some())
        .collect();
    order.sort_unstable_by(|&a, &b| messages[a].path.cmp(&messages[b].path));

    let mut candidates = quota::candidates(messages, |i| reasons[i].is_none());
    let count = quota::oldest_first(&mut candidates, rules.quota_target, rules.now);
    for c in &candidates[..count] {
        reasons[c.index] = Some(Reason::Quota);
        order.push(c.index);
    }
    drop(candidates);

    let mut changed = false;
    for i in order {
        let message = &messages[i];
        let gone =
            !rules.remove || outcome.removed(&message.path, quota::remove_if_exists(&message.path));
        if !gone {
            continue;
        }
        changed = true;
        outcome.files_removed += 1;
        outcome.bytes_freed += message.size;
        let why = match reasons[i] {
            Some(Reason::Old) => "old",
            Some(Reason::Large) => "large",
            _ => "quota",
        };
        outcome.removal(
            rules,
            format_args!(
                "{} {} ({why})",
                scan::month_day(message.mtime),
                scan::shown(&message.path)
            ),
        );
    }
    if changed {
        remove_maildirsize(dir, rules, outcome);
    }
}

fn remove_maildirsize(dir: &Path, rules: &Rules, outcome: &mut Outcome) {
    let path: PathBuf = dir.join(MAILDIRSIZE_FILE);
    let present = if rules.remove {
        outcome.removed(&path, quota::remove_maildirsize(dir))
    } else {
        fs::symlink_metadata(&path).is_ok_and(|m| m.is_file())
    };
    if present {
        outcome.removal(rules, format_args!("{}", scan::shown(&path)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(remove: bool, now: SystemTime) -> Rules {
        Rules {
            remove,
            verbose: false,
            list: true,
            now,
            inactive_cutoff: scan::before(now, scan::days(90)),
            mails_cutoff: scan::before(now, scan::days(20)),
            large_cutoff: scan::before(now, scan::days(7)),
            quota_target: u64::MAX,
        }
    }

    /// [`remove_inactive`] with removing rules at the current time.
    fn remove_inactive_now(dir: &Path, scan: &MailboxScan, login: SystemTime) -> Outcome {
        let mut outcome = Outcome::default();
        remove_inactive(
            dir,
            scan,
            login,
            &rules(true, SystemTime::now()),
            &mut outcome,
        );
        outcome
    }

    #[test]
    fn files_vanishing_between_scan_and_removal_are_not_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a@example.org");
        fs::create_dir_all(dir.join("cur")).unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for name in ["1.M1P1.x,S=1", "2.M1P1.x,S=1"] {
            let file = fs::File::create(dir.join("cur").join(name)).unwrap();
            file.set_modified(old).unwrap();
        }
        let scan = scan::scan_mailbox(&dir).unwrap();
        assert_eq!(scan.messages.len(), 2);
        // Dovecot expunges one, and the maildirsize is not there at all.
        fs::remove_file(dir.join("cur").join("1.M1P1.x,S=1")).unwrap();
        let mut outcome = Outcome::default();
        expire_messages(&dir, &scan, &rules(true, SystemTime::now()), &mut outcome);
        assert_eq!(outcome.errors, 0, "{:?}", outcome.lines);
        assert_eq!(outcome.files_removed, 1);
        assert!(fs::read_dir(dir.join("cur")).unwrap().next().is_none());

        // The whole mailbox vanishing is not an error either.
        fs::remove_dir_all(&dir).unwrap();
        let outcome = expire_mailbox(tmp.path(), "a@example.org", &rules(true, SystemTime::now()));
        assert!(!outcome.counted);
        assert_eq!(outcome.errors, 0);
        let outcome = remove_inactive_now(&dir, &scan, old);
        assert_eq!(outcome.errors, 0);
        assert!(!outcome.mailbox_removed, "someone else removed it");
    }

    #[test]
    fn a_login_after_the_scan_saves_the_mailbox() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a@example.org");
        fs::create_dir_all(&dir).unwrap();
        let password = dir.join(PASSWORD_FILE);
        let file = fs::File::create(&password).unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        file.set_modified(old).unwrap();
        let scan = scan::scan_mailbox(&dir).unwrap();
        assert_eq!(scan.password_mtime, Some(old));
        // The lastlogin daemon touches the file now.
        file.set_modified(SystemTime::now()).unwrap();
        let outcome = remove_inactive_now(&dir, &scan, old);
        assert!(!outcome.mailbox_removed);
        assert!(dir.exists());
    }
}
