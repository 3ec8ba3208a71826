//! Builds large synthetic mailbox trees for benchmarking the expiry and the report
//! (docs/design.md, "How we test", item 5). Writes only below the directory it is given.
//!
//! Message files are sparse (`set_len`), so a tree of 10 000 mailboxes × 20 messages with
//! realistic sizes costs inodes, not gigabytes, and builds in seconds.

use std::fs::{self, File, FileTimes};
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::scan;

/// What [`synthetic_tree`] built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyntheticTree {
    /// Mailbox directories created.
    pub mailboxes: usize,
    /// Mailboxes whose last login is over 90 days ago.
    pub inactive_mailboxes: usize,
    /// Message files created.
    pub messages: usize,
    /// Their apparent total size, bytes.
    pub message_bytes: u64,
    /// Messages older than 20 days (by mtime).
    pub old_messages: usize,
}

/// splitmix64: tiny, fast, and deterministic per seed, which is all a fixture needs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Builds `mailboxes` mailboxes of `messages_per_mailbox` messages each under `dir`
/// (created if needed), deterministically from `seed`, relative to the current time.
///
/// Each mailbox `<n>@bench.example` has a `password` whose mtime is the last-login day
/// (5 % over 90 days ago), `enforceE2EEincoming`, `maildirsize`, and messages named as
/// Dovecot names them, with mtime equal to the name's time: ages up to 30 days, 80 % in
/// `cur/`, 10 % in `new/`, 10 % in `.DeltaChat/cur/`, sizes mostly 1–30 kB with 5 % of
/// 200 kB–3 MB.
///
/// # Errors
///
/// The first I/O error met (creation stops for that mailbox; others may be complete).
pub fn synthetic_tree(
    dir: &Path,
    mailboxes: usize,
    messages_per_mailbox: usize,
    seed: u64,
) -> io::Result<SyntheticTree> {
    fs::create_dir_all(dir)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let indices: Vec<usize> = (0..mailboxes).collect();
    let mut total = SyntheticTree::default();
    let mut first_error = None;
    scan::parallel_in_order(
        &indices,
        |&i| build_mailbox(dir, i, messages_per_mailbox, seed, now),
        |result| match result {
            Ok(t) => {
                total.mailboxes += t.mailboxes;
                total.inactive_mailboxes += t.inactive_mailboxes;
                total.messages += t.messages;
                total.message_bytes += t.message_bytes;
                total.old_messages += t.old_messages;
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        },
    );
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

fn at(secs: u64) -> FileTimes {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    FileTimes::new().set_accessed(t).set_modified(t)
}

fn build_mailbox(
    root: &Path,
    index: usize,
    messages: usize,
    seed: u64,
    now: u64,
) -> io::Result<SyntheticTree> {
    const DAY: u64 = 86_400;
    let mut rng = Rng(seed ^ (index as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut stats = SyntheticTree {
        mailboxes: 1,
        ..SyntheticTree::default()
    };
    let mbox = root.join(format!("{index:09}@bench.example"));
    for sub in [
        "cur",
        "new",
        "tmp",
        ".DeltaChat/cur",
        ".DeltaChat/new",
        ".DeltaChat/tmp",
    ] {
        fs::create_dir_all(mbox.join(sub))?;
    }
    let login_days = if rng.below(100) < 5 {
        91 + rng.below(100)
    } else {
        rng.below(60)
    };
    if login_days > 90 {
        stats.inactive_mailboxes = 1;
    }
    let password = mbox.join("password");
    fs::write(
        &password,
        "{SHA512-CRYPT}$6$benchbenchbench0$notarealhashnotarealhashnotarealhash",
    )?;
    File::options()
        .write(true)
        .open(&password)?
        .set_times(at((now / DAY).saturating_sub(login_days) * DAY))?;
    fs::write(mbox.join("enforceE2EEincoming"), "")?;
    fs::write(mbox.join("maildirsize"), "524288000S\n0 0\n")?;
    for n in 0..messages {
        let age = rng.below(30 * DAY);
        let ts = now.saturating_sub(age);
        let size = if rng.below(100) < 5 {
            200_000 + rng.below(2_800_000)
        } else {
            1_000 + rng.below(29_000)
        };
        let (folder, flags) = match rng.below(10) {
            0 => ("new", ""),
            1 => (".DeltaChat/cur", ":2,S"),
            _ => ("cur", ":2,S"),
        };
        let name = format!(
            "{ts}.M{n}P{index}.bench,S={size},W={}{flags}",
            size + size / 50
        );
        let file = File::create(mbox.join(folder).join(name))?;
        file.set_len(size)?;
        file.set_times(at(ts))?;
        stats.messages += 1;
        stats.message_bytes += size;
        stats.old_messages += usize::from(age > 20 * DAY);
    }
    Ok(stats)
}
