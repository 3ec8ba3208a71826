//! Storage and activity report over the mailbox tree (chatmaild's `fsreport`), for people
//! and as a node-exporter textfile for Prometheus.
//!
//! Reads the same tree as the expiry (see the `scan` module: no symlinks followed, only
//! directories with `@` in the name) and never writes into it. Activity comes from the
//! mtime of each `password` (the last-login day, docs/design.md "On disk").

use std::fmt::{self, Write as _};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatmail_config::Config;
use chatmail_mailbox::write_atomic;

use crate::ExpireError;
use crate::scan;

/// Last-login buckets, days (as chatmaild's fsreport).
pub const LOGIN_BUCKET_DAYS: [u32; 7] = [1, 10, 30, 40, 80, 100, 150];

/// Message size buckets, lower bounds in bytes: 0, 100 KiB, 512 KiB, 1, 2, 5, 10 MiB.
pub const SIZE_BUCKET_BYTES: [u64; 7] = [
    0,
    100 * 1024,
    512 * 1024,
    1 << 20,
    2 << 20,
    5 << 20,
    10 << 20,
];

/// File name written by [`write_textfile`]; node-exporter's textfile collector reads
/// `*.prom`.
pub const TEXTFILE_NAME: &str = "chatmail.prom";

/// Accounts active within some number of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBucket {
    /// The window, days.
    pub days: u32,
    /// Accounts (not `ci-` ones) whose last login is at most this many days before `now`.
    pub accounts: u64,
}

/// Messages of at least some size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeBucket {
    /// Lower bound, bytes (inclusive).
    pub min_bytes: u64,
    /// Messages at least this large.
    pub messages: u64,
    /// Their total size, bytes.
    pub bytes: u64,
}

/// The report. `Display` is the text for people; [`Report::prometheus`] the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The reference time of the buckets.
    pub now: SystemTime,
    /// Mailbox directories.
    pub mailboxes: u64,
    /// Mailboxes with a `password` file (accounts).
    pub accounts: u64,
    /// Accounts whose address starts with `ci-` (test accounts; left out of the buckets).
    pub ci_accounts: u64,
    /// Cumulative: each bucket counts every account active within its window.
    pub login_buckets: Vec<LoginBucket>,
    /// Cumulative: each bucket counts every message at least its size.
    pub size_buckets: Vec<SizeBucket>,
    /// Message files (in `cur/ new/ tmp/` of all folders).
    pub messages: u64,
    /// Their total size, bytes.
    pub message_bytes: u64,
    /// Other regular files (password, Dovecot indexes, ...), bytes.
    pub extra_bytes: u64,
    /// Entries that could not be read.
    pub errors: u64,
    /// How long the walk took.
    pub elapsed: Duration,
}

/// Walks `config.mailboxes_dir` (in parallel) and summarizes it relative to `now`.
///
/// # Errors
///
/// [`ExpireError::ReadDir`] when `mailboxes_dir` cannot be listed, including when it does
/// not exist (an all-zero report would look like an empty relay). Unreadable entries below
/// it are counted in [`Report::errors`].
pub fn report(config: &Config, now: SystemTime) -> Result<Report, ExpireError> {
    let start = Instant::now();
    let root = config.mailboxes_dir.as_path();
    let list = scan::list_mailboxes(root, None).map_err(|source| ExpireError::ReadDir {
        path: root.to_owned(),
        source,
    })?;
    let mut report = Report {
        now,
        mailboxes: 0,
        accounts: 0,
        ci_accounts: 0,
        login_buckets: LOGIN_BUCKET_DAYS
            .iter()
            .map(|&days| LoginBucket { days, accounts: 0 })
            .collect(),
        size_buckets: SIZE_BUCKET_BYTES
            .iter()
            .map(|&min_bytes| SizeBucket {
                min_bytes,
                messages: 0,
                bytes: 0,
            })
            .collect(),
        messages: 0,
        message_bytes: 0,
        extra_bytes: 0,
        errors: 0,
        elapsed: Duration::ZERO,
    };
    let cutoffs: Vec<SystemTime> = LOGIN_BUCKET_DAYS
        .iter()
        .map(|&d| scan::before(now, scan::days(d)))
        .collect();
    scan::parallel_in_order(
        &list.names,
        |name| {
            (
                name.starts_with("ci-"),
                scan::scan_mailbox(&root.join(name)),
            )
        },
        |(is_ci, scan)| {
            let scan = match scan {
                Ok(scan) if scan.exists => scan,
                Ok(_) => return,
                Err(_) => {
                    report.errors += 1;
                    return;
                }
            };
            report.mailboxes += 1;
            report.errors += scan.errors.len() as u64;
            if let Some(login) = scan.password_mtime {
                report.accounts += 1;
                if is_ci {
                    report.ci_accounts += 1;
                } else {
                    for (bucket, cutoff) in report.login_buckets.iter_mut().zip(&cutoffs) {
                        if login >= *cutoff {
                            bucket.accounts += 1;
                        }
                    }
                }
            }
            for m in &scan.messages {
                for bucket in &mut report.size_buckets {
                    if m.size >= bucket.min_bytes {
                        bucket.messages += 1;
                        bucket.bytes += m.size;
                    }
                }
            }
            report.messages += scan.messages.len() as u64;
            report.message_bytes += scan.message_bytes();
            report.extra_bytes += scan.extra_bytes;
        },
    );
    report.elapsed = start.elapsed();
    Ok(report)
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    // Display only: precision loss is irrelevant.
    #[allow(clippy::cast_precision_loss)]
    let ratio = part as f64 / whole as f64;
    ratio * 100.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.message_bytes + self.extra_bytes;
        writeln!(f, "## Mailbox storage use")?;
        writeln!(f, "Mailbox data total size: {}", scan::human_bytes(total))?;
        writeln!(
            f,
            "Messages total size    : {} in {} messages",
            scan::human_bytes(self.message_bytes),
            self.messages
        )?;
        writeln!(
            f,
            "Extra files            : {} ({:.2}%)",
            scan::human_bytes(self.extra_bytes),
            percent(self.extra_bytes, total)
        )?;
        writeln!(f)?;
        for b in &self.size_buckets {
            writeln!(
                f,
                "messages of at least {:>9}: {:>8} messages, {:>9} ({:.2}%)",
                scan::human_bytes(b.min_bytes),
                b.messages,
                scan::human_bytes(b.bytes),
                percent(b.bytes, self.message_bytes)
            )?;
        }
        writeln!(f)?;
        let secs = self
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (y, m, d) = scan::civil_from_days(secs / scan::DAY.as_secs());
        writeln!(f, "## Login stats, relative to {y:04}-{m:02}-{d:02} (UTC)")?;
        let users = self.accounts - self.ci_accounts;
        writeln!(f, "mailboxes: {}", self.mailboxes)?;
        writeln!(f, "accounts:  {}", self.accounts)?;
        writeln!(f, "non-ci:    {users}")?;
        writeln!(f, "ci:        {}", self.ci_accounts)?;
        for b in &self.login_buckets {
            writeln!(
                f,
                "last {:3} days: {:>8} ({:.2}%)",
                b.days,
                b.accounts,
                percent(b.accounts, users)
            )?;
        }
        if self.errors > 0 {
            writeln!(f, "\n{} entries could not be read", self.errors)?;
        }
        write!(f, "(scanned in {:.2} seconds)", self.elapsed.as_secs_f64())
    }
}

/// Appends one metric family (HELP, TYPE, samples) in the Prometheus text format 0.0.4.
fn family(out: &mut String, name: &str, help: &str, samples: &[(String, String)]) {
    let _ = writeln!(out, "# HELP chatmail_{name} {help}");
    let _ = writeln!(out, "# TYPE chatmail_{name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "chatmail_{name}{labels} {value}");
    }
}

impl Report {
    /// The report as Prometheus metrics (text exposition format 0.0.4, all gauges, names
    /// prefixed `chatmail_`), for node-exporter's textfile collector.
    pub fn prometheus(&self) -> String {
        let plain = |v: u64| vec![(String::new(), v.to_string())];
        let mut out = String::new();
        family(
            &mut out,
            "mailboxes",
            "Mailbox directories under mailboxes_dir.",
            &plain(self.mailboxes),
        );
        family(
            &mut out,
            "accounts",
            "Mailboxes with a password file.",
            &plain(self.accounts),
        );
        family(
            &mut out,
            "ci_accounts",
            "Accounts whose address starts with ci- (test accounts).",
            &plain(self.ci_accounts),
        );
        let logins: Vec<_> = self
            .login_buckets
            .iter()
            .map(|b| (format!("{{days=\"{}\"}}", b.days), b.accounts.to_string()))
            .collect();
        family(
            &mut out,
            "active_accounts",
            "Non-ci accounts whose last login is within the given number of days.",
            &logins,
        );
        let label = |b: &SizeBucket| format!("{{min_bytes=\"{}\"}}", b.min_bytes);
        let counts: Vec<_> = self
            .size_buckets
            .iter()
            .map(|b| (label(b), b.messages.to_string()))
            .collect();
        family(
            &mut out,
            "messages",
            "Message files of at least min_bytes bytes.",
            &counts,
        );
        let bytes: Vec<_> = self
            .size_buckets
            .iter()
            .map(|b| (label(b), b.bytes.to_string()))
            .collect();
        family(
            &mut out,
            "message_bytes",
            "Total size of the message files of at least min_bytes bytes.",
            &bytes,
        );
        family(
            &mut out,
            "extra_bytes",
            "Total size of the other files in mailboxes (password, indexes).",
            &plain(self.extra_bytes),
        );
        family(
            &mut out,
            "report_errors",
            "Entries that could not be read during the report.",
            &plain(self.errors),
        );
        family(
            &mut out,
            "report_duration_seconds",
            "Time the report took.",
            &[(String::new(), format!("{:.3}", self.elapsed.as_secs_f64()))],
        );
        let ts = self
            .now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        family(
            &mut out,
            "report_timestamp_seconds",
            "Unix time the report refers to.",
            &plain(ts),
        );
        out
    }
}

/// Writes [`Report::prometheus`] to `dir/chatmail.prom` atomically (via
/// [`write_atomic`], whose dot-prefixed temp file the collector ignores), then makes it
/// world-readable, since node-exporter does not run as the user writing it.
///
/// # Errors
///
/// Any I/O error; the previous file is then left as it was.
pub fn write_textfile(dir: &Path, report: &Report) -> io::Result<()> {
    let path = dir.join(TEXTFILE_NAME);
    write_atomic(&path, report.prometheus().as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
}
